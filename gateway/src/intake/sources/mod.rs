//! Supplier status sources: a supplier's own status document (Atlassian Statuspage v2
//! `summary.json`, RSS 2.0 or Atom) read into [`Incident`]s, and an incident mapped to the
//! systems a practice is tagged with (`emis-web`, `systmone`, `spine`, ...).
//!
//! The parsers are pure: bytes in, incidents out. [`poller`] fetches the documents on the
//! leader and hands each reading to a sink; [`watch`] turns a reading into proposals. A
//! status document comes from outside, so the parsers are bounded: a document above
//! [`MAX_DOCUMENT_BYTES`] is refused before parsing, at most [`MAX_INCIDENTS`] incidents are
//! taken from one document, and every text is stripped of control characters and cut to a
//! fixed length (the headline of a proposed status change comes from an incident title).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

/// RSS 2.0 and Atom feeds.
pub mod feed;
/// Fetching each configured source on its interval, on the leader, into an incident sink.
pub mod poller;
/// Atlassian Statuspage v2 `summary.json`.
pub mod statuspage;
/// A source's readings turned into proposed status changes.
pub mod watch;

#[cfg(test)]
mod proptests;

/// The largest status document read, in bytes. The poller stops reading a response at this
/// size too, so a source serving 50 MB costs at most this much memory.
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;
/// Incidents taken from one document; the rest are dropped (documents list the newest
/// first, and a supplier with more open incidents than this is down anyway).
pub const MAX_INCIDENTS: usize = 50;
/// Characters kept of an incident title (Statuspage itself allows 255).
pub const MAX_TITLE_CHARS: usize = 255;
/// Characters kept of an incident's text (the latest update, or a feed entry's summary).
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Characters kept of an incident id, a link, or a component's id or name.
pub const MAX_FIELD_CHARS: usize = 500;
/// Components kept per incident.
pub const MAX_COMPONENTS: usize = 50;

/// Where an incident stands, in Statuspage's words. A feed entry carries no machine status:
/// it is [`IncidentStatus::Reported`] unless its words say it is over (see [`feed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
    /// Open, stage unknown: a feed entry, or a Statuspage status this code does not know.
    Reported,
}

impl IncidentStatus {
    /// Reads a Statuspage incident status. `postmortem` comes after resolution, so it is
    /// [`IncidentStatus::Resolved`]; an unknown word is [`IncidentStatus::Reported`] rather
    /// than an error, so a new status on the supplier's side never hides an incident.
    pub fn from_statuspage(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "investigating" => Self::Investigating,
            "identified" => Self::Identified,
            "monitoring" => Self::Monitoring,
            "resolved" | "postmortem" => Self::Resolved,
            _ => Self::Reported,
        }
    }

    /// Whether the incident is over, so a practice marked down because of it may be
    /// proposed `restored`. Monitoring is not over: the supplier is still watching.
    pub fn is_resolved(self) -> bool {
        self == Self::Resolved
    }
}

/// A component of the supplier's service that an incident affects (Statuspage only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedComponent {
    /// The supplier's stable id for the component; survives a rename.
    pub id: String,
    pub name: String,
}

/// One supplier incident as read from a status document, already bounded and cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The supplier's id; stable across polls, so an update changes a proposal rather than
    /// making a second one. For a feed entry without an id it is derived from the link and
    /// title (see [`feed`]).
    pub id: String,
    /// Becomes the headline of a proposed status change.
    pub title: String,
    pub status: IncidentStatus,
    /// The supplier's notice, for the practice to read before approving.
    pub link: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Empty for feed entries, which name no components.
    pub components: Vec<AffectedComponent>,
    /// The latest update's words (Statuspage) or the entry's summary (feeds), as plain text.
    pub text: String,
}

/// Why a status document gave no incidents. The reason is short and safe to log: it never
/// repeats the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("status document of {bytes} bytes is over the {cap}-byte cap")]
    TooLarge { bytes: usize, cap: usize },
    #[error("malformed status document: {0}")]
    Malformed(String),
}

impl SourceError {
    /// A parser's own message cut to one short line: parsers may quote the input.
    pub(crate) fn malformed(reason: impl std::fmt::Display) -> Self {
        Self::Malformed(clean_text(&reason.to_string(), 200))
    }
}

/// Refuses a document over [`MAX_DOCUMENT_BYTES`] before any parsing.
pub(crate) fn check_size(document: &[u8]) -> Result<(), SourceError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(SourceError::TooLarge {
            bytes: document.len(),
            cap: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

/// One rule of a source's mapping: when it matches an incident, the incident touches the
/// practices tagged with `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingRule {
    /// A Statuspage component, by its id (exact) or its name (case-insensitive, ignoring
    /// surrounding spaces), e.g. `EMIS Web` -> `emis-web`.
    Component { component: String, tag: String },
    /// A keyword in the incident's title or text, case-insensitive and as a whole word or
    /// phrase, so `EMIS` does not match `emissions`. The way to map feeds, which name no
    /// components.
    Keyword { keyword: String, tag: String },
}

/// How one source's incidents map to the systems practices are tagged with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMapping {
    pub rules: Vec<MappingRule>,
}

impl SourceMapping {
    /// The tags an incident touches, each once, trimmed and lower-cased (as practices'
    /// tags are to be stored). Empty means the incident concerns none of the systems this
    /// source is mapped for, and proposes nothing.
    pub fn tags_for(&self, incident: &Incident) -> BTreeSet<String> {
        let title = incident.title.to_lowercase();
        let text = incident.text.to_lowercase();
        self.rules
            .iter()
            .filter_map(|rule| match rule {
                MappingRule::Component { component, tag } => {
                    let wanted = component.trim();
                    incident
                        .components
                        .iter()
                        .any(|c| c.id == wanted || c.name.trim().eq_ignore_ascii_case(wanted))
                        .then_some(tag)
                }
                MappingRule::Keyword { keyword, tag } => {
                    let keyword = keyword.trim().to_lowercase();
                    (contains_word(&title, &keyword) || contains_word(&text, &keyword))
                        .then_some(tag)
                }
            })
            .map(|tag| tag.trim().to_ascii_lowercase())
            .filter(|tag| !tag.is_empty())
            .collect()
    }
}

/// Whether `needle` occurs in `haystack` with no letter or digit right before or after it.
/// Both are expected lower-cased already; an empty needle matches nothing.
pub(crate) fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Text from a status document made safe to show and to put into an SMS: control
/// characters and invisible direction or zero-width marks are dropped, every run of
/// whitespace becomes one space, and the result is cut to `max_chars` characters.
pub(crate) fn clean_text(raw: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_invisible_mark(c) {
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if kept + needed > max_chars {
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        kept += needed;
    }
    out
}

/// Zero-width characters and bidirectional overrides: invisible, but able to reorder or
/// hide what a person approving a headline reads.
fn is_invisible_mark(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(title: &str, text: &str, components: &[(&str, &str)]) -> Incident {
        Incident {
            id: "i1".into(),
            title: title.into(),
            status: IncidentStatus::Investigating,
            link: None,
            updated_at: None,
            components: components
                .iter()
                .map(|(id, name)| AffectedComponent {
                    id: (*id).into(),
                    name: (*name).into(),
                })
                .collect(),
            text: text.into(),
        }
    }

    fn mapping() -> SourceMapping {
        SourceMapping {
            rules: vec![
                MappingRule::Component {
                    component: "EMIS Web".into(),
                    tag: "emis-web".into(),
                },
                MappingRule::Component {
                    component: "r7k2spine0001".into(),
                    tag: "spine".into(),
                },
                MappingRule::Keyword {
                    keyword: "SystmOne".into(),
                    tag: "systmone".into(),
                },
                MappingRule::Keyword {
                    keyword: "EMIS".into(),
                    tag: "emis-web".into(),
                },
            ],
        }
    }

    fn tags(incident: &Incident) -> Vec<String> {
        mapping().tags_for(incident).into_iter().collect()
    }

    #[test]
    fn a_component_maps_by_name_ignoring_case_and_spaces() {
        let i = incident("Login failures", "", &[("c1", "  emis web ")]);
        assert_eq!(tags(&i), ["emis-web"]);
    }

    #[test]
    fn a_component_maps_by_id_even_when_renamed() {
        let i = incident("Slow", "", &[("r7k2spine0001", "National services")]);
        assert_eq!(tags(&i), ["spine"]);
    }

    #[test]
    fn a_component_id_must_match_exactly() {
        let i = incident("Slow", "", &[("R7K2SPINE0001", "Other")]);
        assert!(tags(&i).is_empty());
    }

    #[test]
    fn keywords_match_title_or_text_ignoring_case() {
        assert_eq!(
            tags(&incident("SYSTMONE unavailable", "", &[])),
            ["systmone"]
        );
        assert_eq!(
            tags(&incident("Outage", "Users of systmone cannot log in", &[])),
            ["systmone"]
        );
    }

    #[test]
    fn a_keyword_matches_whole_words_only() {
        assert!(tags(&incident("Lower emissions at the data centre", "", &[])).is_empty());
        assert_eq!(tags(&incident("EMIS-wide outage", "", &[])), ["emis-web"]);
    }

    #[test]
    fn several_rules_give_each_tag_once() {
        let i = incident(
            "EMIS and SystmOne down",
            "EMIS Web users affected",
            &[("c1", "EMIS Web")],
        );
        assert_eq!(tags(&i), ["emis-web", "systmone"]);
    }

    #[test]
    fn an_unmapped_incident_touches_nothing() {
        let i = incident(
            "Billing portal slow",
            "Invoices delayed",
            &[("c9", "Billing")],
        );
        assert!(tags(&i).is_empty());
        assert!(SourceMapping::default().tags_for(&i).is_empty());
    }

    #[test]
    fn an_empty_keyword_matches_nothing() {
        let m = SourceMapping {
            rules: vec![MappingRule::Keyword {
                keyword: "  ".into(),
                tag: "spine".into(),
            }],
        };
        assert!(m.tags_for(&incident("anything", "at all", &[])).is_empty());
    }

    #[test]
    fn clean_text_drops_controls_and_invisible_marks_and_folds_spaces() {
        assert_eq!(
            clean_text("  EMIS\u{0}\u{7}  Web\r\n\tdown\u{202E}now \u{200B} ", 100),
            "EMIS Web downnow"
        );
    }

    #[test]
    fn clean_text_cuts_at_the_cap_in_characters() {
        assert_eq!(clean_text("ĉĉĉĉĉ", 3), "ĉĉĉ");
        assert_eq!(clean_text("ab cd", 3), "ab");
        assert_eq!(clean_text("ab cd", 4), "ab c");
    }

    #[test]
    fn statuspage_words_map_to_statuses() {
        use IncidentStatus::*;
        for (word, status) in [
            ("investigating", Investigating),
            ("Identified", Identified),
            ("monitoring", Monitoring),
            ("resolved", Resolved),
            ("postmortem", Resolved),
            ("something_new", Reported),
        ] {
            assert_eq!(IncidentStatus::from_statuspage(word), status, "{word}");
        }
        assert!(!Monitoring.is_resolved());
        assert!(Resolved.is_resolved());
    }

    #[test]
    fn a_document_over_the_cap_is_refused() {
        assert_eq!(check_size(&vec![b' '; MAX_DOCUMENT_BYTES]), Ok(()));
        assert_eq!(
            check_size(&vec![b' '; MAX_DOCUMENT_BYTES + 1]),
            Err(SourceError::TooLarge {
                bytes: MAX_DOCUMENT_BYTES + 1,
                cap: MAX_DOCUMENT_BYTES
            })
        );
    }
}
