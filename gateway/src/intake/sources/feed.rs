//! RSS 2.0 and Atom status feeds, parsed with `feed-rs` (which also reads RSS 0.9x, RSS 1.0
//! and JSON Feed; those are accepted as they come).
//!
//! Each entry is one incident. A feed has no machine-readable status, so the words decide:
//! an entry whose title or text contains one of [`RESOLVED_WORDS`] as a whole word
//! (case-insensitive) is [`IncidentStatus::Resolved`], any other is
//! [`IncidentStatus::Reported`]. The rule errs towards "resolved" when an entry says
//! "until this is resolved"; that only ever proposes `restored` for a person to approve,
//! and only where a practice is marked down because of this very incident.

use feed_rs::model::{Entry, Link, Text};
use sha2::{Digest, Sha256};

use super::{
    check_size, clean_text, contains_word, Incident, IncidentStatus, SourceError, MAX_FIELD_CHARS,
    MAX_INCIDENTS, MAX_TEXT_CHARS, MAX_TITLE_CHARS,
};

/// Words that mark a feed entry as the end of an incident. The one list of them.
pub const RESOLVED_WORDS: &[&str] = &["resolved", "restored", "fixed"];

/// Reads an RSS or Atom document into its entries as incidents, in the document's order
/// (feeds list the newest first), at most [`MAX_INCIDENTS`]. An entry's text is its summary,
/// or its content when it has no summary, with HTML markup removed.
///
/// Give the raw bytes, not text decoded by an HTTP client: the XML prolog names the
/// encoding and `feed-rs` decodes it.
pub fn parse_feed(document: &[u8]) -> Result<Vec<Incident>, SourceError> {
    check_size(document)?;
    let parser = feed_rs::parser::Builder::new()
        .id_generator(stable_entry_id)
        .build();
    let feed = parser.parse(document).map_err(SourceError::malformed)?;
    Ok(feed
        .entries
        .into_iter()
        .take(MAX_INCIDENTS)
        .map(incident)
        .collect())
}

fn incident(entry: Entry) -> Incident {
    let title = entry
        .title
        .as_ref()
        .map(|t| clean_text(&plain_text(t), MAX_TITLE_CHARS))
        .unwrap_or_default();
    let text = entry
        .summary
        .as_ref()
        .map(plain_text)
        .or_else(|| {
            let content = entry.content.as_ref()?;
            let body = content.body.as_deref()?;
            Some(if is_html(content.content_type.as_ref()) {
                html_to_text(body)
            } else {
                body.to_owned()
            })
        })
        .map(|text| clean_text(&text, MAX_TEXT_CHARS))
        .unwrap_or_default();
    let status = if says_resolved(&title) || says_resolved(&text) {
        IncidentStatus::Resolved
    } else {
        IncidentStatus::Reported
    };
    Incident {
        id: clean_text(&entry.id, MAX_FIELD_CHARS),
        title,
        status,
        link: entry
            .links
            .first()
            .map(|link| clean_text(&link.href, MAX_FIELD_CHARS))
            .filter(|link| !link.is_empty()),
        updated_at: entry.updated.or(entry.published),
        components: Vec::new(),
        text,
    }
}

fn says_resolved(text: &str) -> bool {
    let text = text.to_lowercase();
    RESOLVED_WORDS.iter().any(|word| contains_word(&text, word))
}

fn plain_text(text: &Text) -> String {
    if is_html(text.content_type.as_ref()) {
        html_to_text(&text.content)
    } else {
        text.content.clone()
    }
}

fn is_html(media_type: &str) -> bool {
    media_type.to_ascii_lowercase().contains("html")
}

/// Markup removed crudely but safely: every tag becomes a space and the common entities
/// are decoded. Good enough for a headline and keyword matching; nothing here is rendered
/// as HTML.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An id for an entry that has none, the same on every poll: `feed-rs` would fall back to
/// a random UUID when there is no link, and a new id each poll would propose the same
/// incident again and again.
fn stable_entry_id(links: &[Link], title: &Option<Text>, _base: Option<&str>) -> String {
    let mut hash = Sha256::new();
    if let Some(link) = links.first() {
        hash.update(link.href.as_bytes());
    }
    hash.update(b"\n");
    if let Some(title) = title {
        hash.update(title.content.as_bytes());
    }
    format!("entry-{}", hex::encode(&hash.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::sources::{MappingRule, SourceMapping};
    use chrono::{DateTime, Utc};

    const ATOM: &str = include_str!("../../../../tests/fixtures/sources/supplier_status.atom");
    const RSS: &str = include_str!("../../../../tests/fixtures/sources/supplier_status.rss");

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
    }

    #[test]
    fn an_atom_feed_gives_an_open_and_a_resolved_incident() {
        let incidents = parse_feed(ATOM.as_bytes()).expect("fixture parses");
        assert_eq!(incidents.len(), 2);

        let open = &incidents[0];
        assert_eq!(
            open.id,
            "tag:status.example-supplier.test,2019:Incident/k1v8rq0zt3yw"
        );
        assert_eq!(open.title, "EMIS Web unavailable");
        assert_eq!(open.status, IncidentStatus::Reported);
        assert_eq!(
            open.link.as_deref(),
            Some("https://status.example-supplier.test/incidents/k1v8rq0zt3yw")
        );
        assert_eq!(open.updated_at, at("2024-07-19T07:40:02Z"));
        assert!(open.components.is_empty());
        assert_eq!(
            open.text,
            "Jul 19 , 07:40 BST Identified - Windows machines will not start after a \
             third-party update; practices cannot reach EMIS Web & the appointment book."
        );

        let resolved = &incidents[1];
        assert_eq!(resolved.title, "Prescriptions not reaching the Spine");
        assert_eq!(resolved.status, IncidentStatus::Resolved);
    }

    #[test]
    fn an_rss_feed_gives_an_open_and_a_resolved_incident() {
        let incidents = parse_feed(RSS.as_bytes()).expect("fixture parses");
        assert_eq!(incidents.len(), 2);

        let open = &incidents[0];
        assert_eq!(open.id, "incident-2024-07-19-login");
        assert_eq!(open.title, "SystmOne: users unable to log in");
        assert_eq!(open.status, IncidentStatus::Reported);
        assert_eq!(
            open.link.as_deref(),
            Some("https://www.example-gp-systems.test/status/2024-07-19-login")
        );
        assert_eq!(open.updated_at, at("2024-07-19T08:15:00Z"));
        assert_eq!(
            open.text,
            "Some practices report that SystmOne will not open. We are investigating."
        );

        let resolved = &incidents[1];
        assert_eq!(resolved.title, "Telephony outage in the North West");
        assert_eq!(
            resolved.status,
            IncidentStatus::Resolved,
            "text says restored"
        );
    }

    #[test]
    fn feed_incidents_map_by_keyword() {
        let mapping = SourceMapping {
            rules: vec![
                MappingRule::Keyword {
                    keyword: "EMIS Web".into(),
                    tag: "emis-web".into(),
                },
                MappingRule::Keyword {
                    keyword: "spine".into(),
                    tag: "spine".into(),
                },
                MappingRule::Keyword {
                    keyword: "systmone".into(),
                    tag: "systmone".into(),
                },
                MappingRule::Keyword {
                    keyword: "telephony".into(),
                    tag: "phones-north-west".into(),
                },
            ],
        };
        let tags = |doc: &str| -> Vec<Vec<String>> {
            parse_feed(doc.as_bytes())
                .expect("fixture parses")
                .iter()
                .map(|i| mapping.tags_for(i).into_iter().collect())
                .collect()
        };
        // The Atom entry's text has "EMIS&nbsp;Web": decoded, it matches the phrase.
        assert_eq!(tags(ATOM), [vec!["emis-web"], vec!["spine"]]);
        assert_eq!(tags(RSS), [vec!["systmone"], vec!["phones-north-west"]]);
    }

    #[test]
    fn each_resolved_word_resolves_and_only_as_a_whole_word() {
        for word in RESOLVED_WORDS {
            let title = format!("Login problem {}", word.to_uppercase());
            assert!(says_resolved(&title), "{title}");
        }
        assert!(!says_resolved("Unresolved login problem"));
        assert!(!says_resolved("Prefixed headers rejected"));
        assert!(!says_resolved("We are investigating"));
    }

    #[test]
    fn an_entry_without_id_or_link_keeps_the_same_id_across_polls() {
        let doc = br#"<rss version="2.0"><channel><title>t</title>
            <item><title>Spine slow</title></item></channel></rss>"#;
        let first = parse_feed(doc).expect("parses");
        let second = parse_feed(doc).expect("parses");
        assert_eq!(first[0].id, second[0].id);
        assert!(first[0].id.starts_with("entry-"), "{}", first[0].id);
    }

    #[test]
    fn malformed_xml_is_an_error_with_a_short_reason() {
        for doc in [
            &b""[..],
            b"not a feed at all",
            b"<html><body>502 Bad Gateway</body></html>",
            b"<rss version=\"2.0\"><channel><item><title>cut off",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry></feed>",
        ] {
            match parse_feed(doc) {
                Err(SourceError::Malformed(reason)) => assert!(reason.len() <= 200, "{reason}"),
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(doc)),
            }
        }
    }

    #[test]
    fn an_oversized_feed_is_refused_before_parsing() {
        let mut doc = RSS.as_bytes().to_vec();
        doc.resize(super::super::MAX_DOCUMENT_BYTES + 1, b' ');
        assert!(matches!(
            parse_feed(&doc),
            Err(SourceError::TooLarge { .. })
        ));
    }

    #[test]
    fn entries_titles_and_texts_are_capped() {
        let long = "word ".repeat(MAX_TEXT_CHARS);
        let item = format!("<item><title>{long}</title><description>{long}</description></item>");
        let doc = format!(
            r#"<rss version="2.0"><channel><title>t</title>{}</channel></rss>"#,
            item.repeat(MAX_INCIDENTS + 3)
        );
        let incidents = parse_feed(doc.as_bytes()).expect("parses");
        assert_eq!(incidents.len(), MAX_INCIDENTS);
        assert!(incidents[0].title.chars().count() <= MAX_TITLE_CHARS);
        assert!(incidents[0].title.chars().count() >= MAX_TITLE_CHARS - 5);
        assert!(incidents[0].text.chars().count() <= MAX_TEXT_CHARS);
        assert!(incidents[0].text.chars().count() >= MAX_TEXT_CHARS - 5);
    }

    #[test]
    fn html_is_reduced_to_text() {
        assert_eq!(
            clean_text(
                &html_to_text("<p>Fixed &amp; <b>monitoring</b></p><p>&lt;EMIS&gt;</p>"),
                100
            ),
            "Fixed & monitoring <EMIS>"
        );
    }

    /// Nesting is handled without recursion deep enough to overflow a 2 MiB stack (a tokio
    /// worker's), which would abort the process rather than panic; past feed-rs's own limit
    /// of 65,535 levels it is an error.
    #[test]
    fn deeply_nested_xml_neither_overflows_the_stack_nor_is_taken_silently() {
        let nested = |depth: usize| {
            format!(
                r#"<rss version="2.0"><channel><title>t</title><item><title>Spine</title><x>{}{}</x></item></channel></rss>"#,
                "<a>".repeat(depth),
                "</a>".repeat(depth)
            )
        };
        let worker = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                (
                    parse_feed(nested(65_000).as_bytes()),
                    parse_feed(nested(70_000).as_bytes()),
                )
            })
            .expect("thread starts");
        let (within, beyond) = worker.join().expect("no overflow or panic");
        assert_eq!(within.expect("parses").len(), 1);
        assert!(matches!(beyond, Err(SourceError::Malformed(_))));
    }
}
