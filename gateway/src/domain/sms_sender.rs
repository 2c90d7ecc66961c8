//! A practice's SMS sender: what a patient's phone shows a text is from.
//!
//! Either an alphanumeric sender ID (`OAKSURGERY`, `Oak Surgery`) or a phone number. UK
//! networks take an alphanumeric sender ID of at most 11 characters, letters, digits and
//! spaces, with at least one letter (all digits would read as a number that cannot be
//! replied to). They block generic words used alone (`INFO`, `ALERT`, `NHS`...), which
//! anyone could claim, because fraudsters use them to look official; we refuse those here
//! rather than have every text of the practice fail at the network.

use std::fmt;

use super::PhoneNumber;

/// The fewest characters of an alphanumeric sender ID.
pub const MIN_SENDER_ID: usize = 3;
/// The most characters of an alphanumeric sender ID (the GSM limit).
pub const MAX_SENDER_ID: usize = 11;

/// Generic words refused as a whole sender ID (compared without case or spaces): the ones
/// the UK SMS SenderID Protection Registry and the networks block, or that say nothing of
/// who is writing.
const GENERIC: &[&str] = &[
    "ALERT", "ALERTS", "ADMIN", "BANK", "DOCTOR", "GP", "GOVUK", "HELLO", "HELP", "INFO",
    "MESSAGE", "MSG", "NHS", "NOREPLY", "NOTICE", "NOTIFY", "REMINDER", "SECURITY", "SERVICE",
    "SMS", "SURGERY", "TEST", "TEXT", "UPDATE", "VERIFY",
];

/// Who a practice's texts are from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsSender {
    /// An alphanumeric sender ID, as written (networks show its case as sent).
    Alphanumeric(String),
    /// A phone number patients can reply to.
    Number(PhoneNumber),
}

/// Why a text is not an SMS sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsSenderError {
    /// Nothing but spaces.
    #[error("a sender is 3 to 11 letters and digits, or a phone number; it is empty")]
    Empty,
    /// Fewer than [`MIN_SENDER_ID`] characters.
    #[error("{0:?} is too short: a sender ID has at least {MIN_SENDER_ID} characters")]
    TooShort(String),
    /// More than [`MAX_SENDER_ID`] characters.
    #[error("a sender ID has at most {MAX_SENDER_ID} characters (UK networks cut or refuse longer ones); this has {0}")]
    TooLong(usize),
    /// A character networks do not carry in a sender ID.
    #[error("a sender ID may hold only letters A to Z, digits and single spaces, not {0:?}")]
    Character(char),
    /// Two spaces in a row.
    #[error("a sender ID may not hold two spaces in a row")]
    DoubleSpace,
    /// A generic word alone.
    #[error("{0:?} is a generic word that UK networks block as a sender ID: use the practice's own name, such as OAKSURGERY")]
    Generic(String),
    /// No letter, and not a phone number either.
    #[error("a sender with no letter must be a phone number: {0}")]
    NotANumber(String),
}

impl SmsSender {
    /// Parses a sender: text with a letter is a sender ID, anything else a phone number
    /// (stored in E.164). Spaces around it are dropped.
    pub fn parse(input: &str) -> Result<Self, SmsSenderError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(SmsSenderError::Empty);
        }
        if !text.chars().any(|c| c.is_ascii_alphabetic()) {
            return PhoneNumber::parse(text)
                .map(Self::Number)
                .map_err(|e| SmsSenderError::NotANumber(e.reason));
        }
        let length = text.chars().count();
        if length > MAX_SENDER_ID {
            return Err(SmsSenderError::TooLong(length));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != ' ')
        {
            return Err(SmsSenderError::Character(bad));
        }
        if length < MIN_SENDER_ID {
            return Err(SmsSenderError::TooShort(text.to_string()));
        }
        if text.contains("  ") {
            return Err(SmsSenderError::DoubleSpace);
        }
        let bare: String = text
            .chars()
            .filter(|c| *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if GENERIC.contains(&bare.as_str()) {
            return Err(SmsSenderError::Generic(text.to_string()));
        }
        Ok(Self::Alphanumeric(text.to_string()))
    }

    /// The sender as providers take it: the sender ID, or the number in E.164.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Alphanumeric(id) => id,
            Self::Number(number) => number.as_str(),
        }
    }
}

impl fmt::Display for SmsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn practice_names_are_sender_ids() {
        for good in [
            "OAKSURGERY",
            "Oak Surgery",
            "Riverside",
            "Beta 2",
            "Dr Ali",
            "ABC",
        ] {
            assert_eq!(
                SmsSender::parse(good),
                Ok(SmsSender::Alphanumeric(good.to_string())),
                "{good}"
            );
        }
        assert_eq!(SmsSender::parse("  OAK  ").unwrap().as_str(), "OAK");
    }

    #[test]
    fn numbers_are_kept_in_e164() {
        let sender = SmsSender::parse("07700 900123").unwrap();
        assert!(matches!(sender, SmsSender::Number(_)));
        assert_eq!(sender.as_str(), "+447700900123");
        assert_eq!(
            SmsSender::parse("+447700900001").unwrap().as_str(),
            "+447700900001"
        );
    }

    #[test]
    fn each_refusal_says_why() {
        assert_eq!(SmsSender::parse(" "), Err(SmsSenderError::Empty));
        assert_eq!(
            SmsSender::parse("AB"),
            Err(SmsSenderError::TooShort("AB".into()))
        );
        assert_eq!(
            SmsSender::parse("Riverside Surgery"),
            Err(SmsSenderError::TooLong(17))
        );
        assert_eq!(
            SmsSender::parse("Oak-Surgery"),
            Err(SmsSenderError::Character('-'))
        );
        assert_eq!(
            SmsSender::parse("Oakés"),
            Err(SmsSenderError::Character('é'))
        );
        assert_eq!(
            SmsSender::parse("Oak  Lane"),
            Err(SmsSenderError::DoubleSpace)
        );
        assert!(matches!(
            SmsSender::parse("12345"),
            Err(SmsSenderError::NotANumber(_))
        ));
        let reason = SmsSender::parse("AB").unwrap_err().to_string();
        assert!(reason.contains("at least 3"), "{reason}");
    }

    #[test]
    fn generic_words_alone_are_refused_in_any_case_or_spacing() {
        for generic in [
            "INFO", "info", "Alert", "TEST", "SMS", "NHS", "N H S", "Gov UK",
        ] {
            assert!(
                matches!(SmsSender::parse(generic), Err(SmsSenderError::Generic(_))),
                "{generic}"
            );
        }
        // Within a practice's own name they are fine.
        for named in ["OakNHS", "Info Oak", "NHS Oak"] {
            assert!(SmsSender::parse(named).is_ok(), "{named}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any text gets an answer, never a panic; a sender ID that is accepted keeps
            /// every network rule and parses to itself again.
            #[test]
            fn any_text_is_answered_and_accepted_ids_keep_the_rules(text in "\\PC{0,40}") {
                match SmsSender::parse(&text) {
                    Ok(SmsSender::Alphanumeric(id)) => {
                        prop_assert!((MIN_SENDER_ID..=MAX_SENDER_ID).contains(&id.len()));
                        prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '));
                        prop_assert!(id.chars().any(|c| c.is_ascii_alphabetic()));
                        prop_assert_eq!(id.trim(), id.as_str());
                        prop_assert_eq!(
                            SmsSender::parse(&id),
                            Ok(SmsSender::Alphanumeric(id.clone()))
                        );
                    }
                    Ok(SmsSender::Number(number)) => {
                        prop_assert!(number.as_str().starts_with('+'));
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            /// Letters and digits, starting with a letter, 4 to 11 long: always accepted
            /// unless a generic word.
            #[test]
            fn names_of_letters_and_digits_are_accepted(id in "[A-Za-z][A-Za-z0-9]{3,10}") {
                let generic = GENERIC.contains(&id.to_ascii_uppercase().as_str());
                prop_assert_eq!(SmsSender::parse(&id).is_ok(), !generic);
            }

            /// Twelve or more characters with a letter are always refused as too long.
            #[test]
            fn longer_than_eleven_is_refused(id in "[A-Z][A-Z0-9 ]{10,28}[A-Z0-9]") {
                prop_assert!(
                    matches!(SmsSender::parse(&id), Err(SmsSenderError::TooLong(_))),
                    "{id:?}"
                );
            }
        }
    }
}
