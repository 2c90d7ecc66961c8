//! Atlassian Statuspage v2 `summary.json` (`/api/v2/summary.json` on a supplier's status
//! page). Its `incidents` list holds only the unresolved incidents, so an incident that
//! disappears from it has been resolved: the poller delivers the whole list at every poll,
//! and its sink (`watch`), which remembers what it saw, turns a disappearance into a
//! resolution. An incident listed here as `resolved` or `postmortem` (a page caught
//! mid-update) is read as resolved all the same.
//!
//! Only the fields used are read; unknown fields are ignored and every field but an
//! incident's `id`, `name` and `status` may be missing or null, so a supplier adding or
//! dropping a field does not stop the feed.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    check_size, clean_text, AffectedComponent, Incident, IncidentStatus, SourceError,
    MAX_COMPONENTS, MAX_FIELD_CHARS, MAX_INCIDENTS, MAX_TEXT_CHARS, MAX_TITLE_CHARS,
};

#[derive(Deserialize)]
struct Summary {
    /// Required: a document without it is not a summary (say, `status.json` configured by
    /// mistake), and reading it as "no incidents" would hide every outage.
    incidents: Vec<SummaryIncident>,
}

#[derive(Deserialize)]
struct SummaryIncident {
    id: String,
    name: String,
    status: String,
    #[serde(default)]
    shortlink: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    components: Vec<SummaryComponent>,
    #[serde(default, deserialize_with = "null_as_empty")]
    incident_updates: Vec<SummaryUpdate>,
}

#[derive(Deserialize)]
struct SummaryComponent {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct SummaryUpdate {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads a `summary.json` document into its open incidents, in the document's order, at
/// most [`MAX_INCIDENTS`]. An incident's text is its latest update's body (by `created_at`;
/// the first listed when dates are missing, as Statuspage lists the newest first).
/// A timestamp that does not parse is left out rather than failing the document.
pub fn parse_summary(document: &[u8]) -> Result<Vec<Incident>, SourceError> {
    check_size(document)?;
    let summary: Summary = serde_json::from_slice(document).map_err(SourceError::malformed)?;
    Ok(summary
        .incidents
        .into_iter()
        .take(MAX_INCIDENTS)
        .map(incident)
        .collect())
}

fn incident(raw: SummaryIncident) -> Incident {
    let latest = raw
        .incident_updates
        .iter()
        .min_by_key(|u| std::cmp::Reverse(u.created_at.as_deref().and_then(timestamp)));
    let text = latest
        .and_then(|u| u.body.as_deref())
        .map(|body| clean_text(body, MAX_TEXT_CHARS))
        .unwrap_or_default();
    Incident {
        id: clean_text(&raw.id, MAX_FIELD_CHARS),
        title: clean_text(&raw.name, MAX_TITLE_CHARS),
        status: IncidentStatus::from_statuspage(&raw.status),
        link: raw
            .shortlink
            .map(|link| clean_text(&link, MAX_FIELD_CHARS))
            .filter(|link| !link.is_empty()),
        updated_at: raw.updated_at.as_deref().and_then(timestamp),
        components: raw
            .components
            .into_iter()
            .map(|c| AffectedComponent {
                id: clean_text(c.id.as_deref().unwrap_or_default(), MAX_FIELD_CHARS),
                name: clean_text(c.name.as_deref().unwrap_or_default(), MAX_FIELD_CHARS),
            })
            .filter(|c| !(c.id.is_empty() && c.name.is_empty()))
            .take(MAX_COMPONENTS)
            .collect(),
        text,
    }
}

/// Statuspage writes RFC 3339 with milliseconds and an offset.
fn timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::sources::{MappingRule, SourceMapping};

    /// Written from the documented shape of `summary.json` (page, status, components,
    /// incidents with their updates and components, scheduled maintenances).
    const SUMMARY: &str =
        include_str!("../../../../tests/fixtures/sources/statuspage_summary.json");

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
    }

    #[test]
    fn the_documented_summary_gives_its_open_incidents() {
        let incidents = parse_summary(SUMMARY.as_bytes()).expect("fixture parses");
        assert_eq!(incidents.len(), 2);

        let emis = &incidents[0];
        assert_eq!(emis.id, "k1v8rq0zt3yw");
        assert_eq!(emis.title, "EMIS Web unavailable");
        assert_eq!(emis.status, IncidentStatus::Identified);
        assert_eq!(emis.link.as_deref(), Some("https://stspg.io/k1v8rq0z"));
        assert_eq!(emis.updated_at, at("2024-07-19T07:40:02Z"));
        assert_eq!(
            emis.components,
            [AffectedComponent {
                id: "b8mz0kq1w4tn".into(),
                name: "EMIS Web".into()
            }]
        );
        // The latest update, its line break folded to a space.
        assert_eq!(
            emis.text,
            "We have identified the cause: a third-party update has stopped Windows \
             machines from starting. Practices cannot reach EMIS Web."
        );

        let online = &incidents[1];
        assert_eq!(online.status, IncidentStatus::Monitoring);
        assert_eq!(online.components[0].name, "Online Services");
    }

    #[test]
    fn an_incident_on_the_emis_web_component_maps_to_emis_web() {
        let mapping = SourceMapping {
            rules: vec![
                MappingRule::Component {
                    component: "EMIS Web".into(),
                    tag: "emis-web".into(),
                },
                MappingRule::Component {
                    component: "p2hd7c5rj9vs".into(),
                    tag: "online-services".into(),
                },
            ],
        };
        let incidents = parse_summary(SUMMARY.as_bytes()).expect("fixture parses");
        let tags: Vec<Vec<String>> = incidents
            .iter()
            .map(|i| mapping.tags_for(i).into_iter().collect())
            .collect();
        assert_eq!(tags, [vec!["emis-web"], vec!["online-services"]]);
    }

    #[test]
    fn missing_and_null_optional_fields_are_tolerated() {
        let doc = br#"{"incidents": [
            {"id": "a", "name": "Down", "status": "investigating"},
            {"id": "b", "name": "Slow", "status": "resolved", "shortlink": null,
             "updated_at": "not a date", "components": null, "incident_updates": null,
             "extra": {"nested": [1, 2]}},
            {"id": "c", "name": "Gone", "status": "postmortem",
             "components": [{"id": "x"}, {"name": "Spine"}, {}],
             "incident_updates": [{"body": "older", "created_at": "2024-07-19T06:00:00Z"},
                                  {"body": "newer", "created_at": "2024-07-19T08:00:00Z"},
                                  {"body": "undated"}]}
        ]}"#;
        let incidents = parse_summary(doc).expect("tolerant");
        assert_eq!(incidents.len(), 3);
        assert_eq!(incidents[0].text, "");
        assert_eq!(incidents[0].link, None);
        assert_eq!(incidents[1].status, IncidentStatus::Resolved);
        assert_eq!(incidents[1].updated_at, None);
        assert!(incidents[1].components.is_empty());
        assert_eq!(incidents[2].status, IncidentStatus::Resolved);
        assert_eq!(incidents[2].components.len(), 2, "the empty one is dropped");
        assert_eq!(incidents[2].text, "newer");
    }

    #[test]
    fn no_open_incidents_is_an_empty_list() {
        let doc = br#"{"page": {"id": "p"}, "components": [], "incidents": []}"#;
        assert_eq!(parse_summary(doc), Ok(vec![]));
    }

    #[test]
    fn a_document_without_incidents_is_malformed() {
        // status.json configured where summary.json was meant.
        let doc = br#"{"page": {"id": "p"}, "status": {"indicator": "none"}}"#;
        assert!(matches!(parse_summary(doc), Err(SourceError::Malformed(_))));
    }

    #[test]
    fn broken_json_and_wrong_types_are_malformed_with_a_short_reason() {
        for doc in [
            &b"{\"incidents\": ["[..],
            b"<html>Bad gateway</html>",
            b"",
            br#"{"incidents": [{"id": 7, "name": "x", "status": "investigating"}]}"#,
            br#"{"incidents": [{"name": "no id", "status": "investigating"}]}"#,
        ] {
            match parse_summary(doc) {
                Err(SourceError::Malformed(reason)) => assert!(reason.len() <= 200, "{reason}"),
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(doc)),
            }
        }
    }

    #[test]
    fn an_oversized_document_is_refused_before_parsing() {
        let mut doc = br#"{"incidents": []}"#.to_vec();
        doc.resize(super::super::MAX_DOCUMENT_BYTES + 1, b' ');
        assert!(matches!(
            parse_summary(&doc),
            Err(SourceError::TooLarge { .. })
        ));
    }

    #[test]
    fn incidents_titles_and_texts_are_capped() {
        let long = "x".repeat(MAX_TEXT_CHARS * 2);
        let one = format!(
            r#"{{"id": "i", "name": "{long}", "status": "investigating",
                "incident_updates": [{{"body": "{long}"}}]}}"#
        );
        let doc = format!(
            r#"{{"incidents": [{}]}}"#,
            vec![one; MAX_INCIDENTS + 5].join(",")
        );
        let incidents = parse_summary(doc.as_bytes()).expect("parses");
        assert_eq!(incidents.len(), MAX_INCIDENTS);
        assert_eq!(incidents[0].title.chars().count(), MAX_TITLE_CHARS);
        assert_eq!(incidents[0].text.chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn control_characters_in_a_title_are_stripped() {
        let doc = br#"{"incidents": [{"id": "i", "name": "EMIS\u0000 Web\u001b[31m down\u202e",
                       "status": "investigating"}]}"#;
        let incidents = parse_summary(doc).expect("parses");
        assert_eq!(incidents[0].title, "EMIS Web[31m down");
    }
}
