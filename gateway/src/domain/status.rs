//! Kinds of practice status change that start a broadcast.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Invalid, Language};

/// What happened at the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// The practice is closed.
    Closed,
    /// The phone lines are down.
    PhonesDown,
    /// Clinical systems are down: records and bookings cannot be reached.
    SystemsDown,
    /// Normal service is back.
    Restored,
    /// Anything else, described by the headline and details.
    Custom,
}

impl StatusKind {
    /// Every kind.
    pub const ALL: [StatusKind; 5] = [
        StatusKind::Closed,
        StatusKind::PhonesDown,
        StatusKind::SystemsDown,
        StatusKind::Restored,
        StatusKind::Custom,
    ];

    /// The stored name, such as `systems_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Closed => "closed",
            StatusKind::PhonesDown => "phones_down",
            StatusKind::SystemsDown => "systems_down",
            StatusKind::Restored => "restored",
            StatusKind::Custom => "custom",
        }
    }

    /// The message template key for this kind, such as `status.systems_down`.
    pub fn template_key(self) -> String {
        format!("status.{}", self.as_str())
    }

    /// The headline patients see in `language` when the practice types none; `custom` has
    /// none. The Welsh ones were checked by a Welsh speaker: keep them as whole sentences.
    pub fn default_headline(self, language: Language) -> Option<&'static str> {
        match (self, language) {
            (StatusKind::Closed, Language::English) => Some("The surgery is closed."),
            (StatusKind::Closed, Language::Welsh) => Some("Mae'r feddygfa ar gau."),
            (StatusKind::PhonesDown, Language::English) => Some("Our phone lines are down."),
            (StatusKind::PhonesDown, Language::Welsh) => Some("Mae ein llinellau ffôn i lawr."),
            (StatusKind::SystemsDown, Language::English) => Some("Our computer systems are down."),
            (StatusKind::SystemsDown, Language::Welsh) => {
                Some("Mae ein systemau cyfrifiadurol i lawr.")
            }
            (StatusKind::Restored, Language::English) => Some("We are back to normal service."),
            (StatusKind::Restored, Language::Welsh) => Some("Rydym yn ôl i'r drefn arferol."),
            (StatusKind::Custom, _) => None,
        }
    }
}

impl FromStr for StatusKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::new(
                    "kind",
                    format!("{s:?} is not a status kind: use closed, phones_down, systems_down, restored or custom"),
                )
            })
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a status change is for, when it names an affected period.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusAudience {
    /// Every patient gets the general notice.
    #[default]
    All,
    /// Only patients with an appointment in the affected period, told about their appointment.
    Booked,
    /// Patients with an appointment in the period are told about it; everyone else gets
    /// the general notice. Nobody gets both.
    Both,
}

impl StatusAudience {
    /// Every audience.
    pub const ALL: [StatusAudience; 3] = [
        StatusAudience::All,
        StatusAudience::Booked,
        StatusAudience::Both,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusAudience::All => "all",
            StatusAudience::Booked => "booked",
            StatusAudience::Both => "both",
        }
    }

    /// Whether patients with an appointment in the period are told about it.
    pub fn names_appointments(self) -> bool {
        self != StatusAudience::All
    }
}

impl FromStr for StatusAudience {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusAudience::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::new(
                    "audience",
                    format!("{s:?} is not an audience: use all, booked or both"),
                )
            })
    }
}

impl fmt::Display for StatusAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_but_custom_has_a_default_headline_in_each_language() {
        for kind in StatusKind::ALL {
            for language in Language::ALL {
                let headline = kind.default_headline(language);
                assert_eq!(
                    headline.is_none(),
                    kind == StatusKind::Custom,
                    "{kind} {language}"
                );
                if let Some(h) = headline {
                    assert!(h.ends_with('.'), "{h}");
                }
            }
        }
        assert_eq!(
            StatusKind::Closed.default_headline(Language::Welsh),
            Some("Mae'r feddygfa ar gau.")
        );
    }
}
