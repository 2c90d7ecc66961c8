//! Properties of both status parsers: any bytes give incidents or an error, never a panic,
//! and whatever is accepted keeps within the caps with no control characters left.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::feed::parse_feed;
use super::statuspage::parse_summary;
use super::{
    Incident, MAX_COMPONENTS, MAX_FIELD_CHARS, MAX_INCIDENTS, MAX_TEXT_CHARS, MAX_TITLE_CHARS,
};

const SUMMARY: &str = include_str!("../../../../tests/fixtures/sources/statuspage_summary.json");
const ATOM: &str = include_str!("../../../../tests/fixtures/sources/supplier_status.atom");
const RSS: &str = include_str!("../../../../tests/fixtures/sources/supplier_status.rss");

fn clean(field: &str, value: &str, cap: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        value.chars().count() <= cap,
        "{field} over {cap}: {value:?}"
    );
    prop_assert!(
        !value.chars().any(|c| c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{FEFF}')),
        "{field} keeps a control or invisible character: {value:?}"
    );
    prop_assert_eq!(value.trim(), value, "{} has untrimmed spaces", field);
    Ok(())
}

fn within_caps(incidents: &[Incident]) -> Result<(), TestCaseError> {
    prop_assert!(incidents.len() <= MAX_INCIDENTS);
    for incident in incidents {
        clean("id", &incident.id, MAX_FIELD_CHARS)?;
        clean("title", &incident.title, MAX_TITLE_CHARS)?;
        clean("text", &incident.text, MAX_TEXT_CHARS)?;
        if let Some(link) = &incident.link {
            clean("link", link, MAX_FIELD_CHARS)?;
        }
        prop_assert!(incident.components.len() <= MAX_COMPONENTS);
        for component in &incident.components {
            clean("component id", &component.id, MAX_FIELD_CHARS)?;
            clean("component name", &component.name, MAX_FIELD_CHARS)?;
        }
    }
    Ok(())
}

/// A fixture with a few bytes overwritten and its tail cut: closer to the parsers' deep
/// paths than random bytes get.
fn damaged(fixture: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(edits, cut)| {
            let mut bytes = fixture.as_bytes().to_vec();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        })
}

/// Any text, or text dense with what cleaning must remove (control characters, zero-width
/// and direction marks), which uniform characters would almost never produce.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f\\u{85}\\u{200B}-\\u{200F}\\u{202A}-\\u{202E}\\u{FEFF} a-zA-Z]{0,60}",
    ]
}

fn xml_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_as_a_summary_give_bounded_incidents_or_an_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Ok(incidents) = parse_summary(&bytes) {
            within_caps(&incidents)?;
        }
    }

    #[test]
    fn any_bytes_as_a_feed_give_bounded_incidents_or_an_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Ok(incidents) = parse_feed(&bytes) {
            within_caps(&incidents)?;
        }
    }

    #[test]
    fn a_damaged_summary_gives_bounded_incidents_or_an_error(bytes in damaged(SUMMARY)) {
        if let Ok(incidents) = parse_summary(&bytes) {
            within_caps(&incidents)?;
        }
    }

    #[test]
    fn a_damaged_feed_gives_bounded_incidents_or_an_error(
        bytes in prop_oneof![damaged(ATOM), damaged(RSS)],
    ) {
        if let Ok(incidents) = parse_feed(&bytes) {
            within_caps(&incidents)?;
        }
    }

    /// Any strings in a well-formed summary, control characters and all: accepted, and
    /// cleaned to the caps.
    #[test]
    fn any_strings_in_a_summary_are_accepted_and_cleaned(
        name in hostile_text(),
        body in hostile_text(),
        component in hostile_text(),
        repeat in 1usize..(MAX_INCIDENTS + 5),
        long in 0usize..3,
    ) {
        let name = name.repeat(1 + long * 100);
        let incident = serde_json::json!({
            "id": "i1", "name": name, "status": "investigating",
            "shortlink": component, "updated_at": body,
            "components": [{"id": component, "name": component}],
            "incident_updates": [{"body": body.repeat(1 + long * 500)}],
        });
        let doc = serde_json::json!({ "incidents": vec![incident; repeat] });
        let bytes = serde_json::to_vec(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assume!(bytes.len() <= super::MAX_DOCUMENT_BYTES);
        let incidents = parse_summary(&bytes)
            .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(incidents.len(), repeat.min(MAX_INCIDENTS));
        within_caps(&incidents)?;
    }

    /// Printable strings in a well-formed RSS feed: accepted, and cleaned to the caps.
    #[test]
    fn any_printable_strings_in_a_feed_are_accepted_and_cleaned(
        title in "\\PC{0,300}",
        description in "[\\PC\t\n]{0,600}",
        repeat in 1usize..(MAX_INCIDENTS + 5),
    ) {
        let item = format!(
            "<item><title>{}</title><description>{}</description></item>",
            xml_escaped(&title),
            xml_escaped(&description),
        );
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>{}</channel></rss>"#,
            item.repeat(repeat)
        );
        let incidents = parse_feed(doc.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(incidents.len(), repeat.min(MAX_INCIDENTS));
        within_caps(&incidents)?;
    }
}
