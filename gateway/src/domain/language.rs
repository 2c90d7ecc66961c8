//! The languages messages are written in: English, and Welsh beside it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// A message language, by its ISO 639-1 code.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Language {
    /// English (`en`), every template's base.
    #[serde(rename = "en")]
    English,
    /// Welsh (`cy`).
    #[serde(rename = "cy")]
    Welsh,
}

impl Language {
    /// Both, English first.
    pub const ALL: [Language; 2] = [Language::English, Language::Welsh];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Welsh => "cy",
        }
    }

    /// A patient's stored preference; anything but Welsh reads as English.
    pub fn of_patient(code: &str) -> Self {
        code.parse().unwrap_or(Language::English)
    }
}

impl FromStr for Language {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" | "eng" | "english" => Ok(Language::English),
            "cy" | "cym" | "welsh" => Ok(Language::Welsh),
            other => Err(Invalid::new(
                "language",
                format!("{other:?} is not a message language: use en (English) or cy (Welsh)"),
            )),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_refused() {
        for l in Language::ALL {
            assert_eq!(l.as_str().parse::<Language>().unwrap(), l);
        }
        assert_eq!("Welsh".parse::<Language>().unwrap(), Language::Welsh);
        assert!("fr".parse::<Language>().is_err());
        assert_eq!(Language::of_patient("fr"), Language::English);
        assert_eq!(Language::of_patient("cy"), Language::Welsh);
    }
}
