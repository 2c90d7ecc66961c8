//! Kinds of practice status change that start a broadcast.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// What happened at the practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
