//! Phone numbers, normalised to E.164, with what kind of line they are.

use std::fmt;

use phonenumber::{country, Mode, Type};

use super::Invalid;

/// What kind of line a number is, which decides whether it can receive SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneKind {
    /// A mobile, or a number that may be one (some countries cannot tell): can receive SMS.
    Mobile,
    /// A landline: kept for the record, never used for SMS.
    Landline,
    /// Anything else (freephone, premium rate, pagers...): never used for SMS.
    Other,
}

/// A valid phone number in E.164 form (`+447700900123`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    kind: PhoneKind,
}

/// Ofcom reserves 07700 900000 to 07700 900999 for drama and tests. libphonenumber
/// calls them invalid; we accept them as mobiles so demos and tests never reach a real phone.
const DRAMA_MOBILES: std::ops::RangeInclusive<u64> = 7_700_900_000..=7_700_900_999;

/// The longest text read as a phone number: room for any way of writing one (spaces,
/// brackets, an extension), while a long paste is refused before libphonenumber sees it.
const MAX_INPUT_BYTES: usize = 64;

impl PhoneNumber {
    /// Parses a UK number (with or without +44) or an international one in `+CC...` form.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let reject = |reason: &str| {
            Err(Invalid::new(
                "address",
                format!("{input:?} is not a phone number: {reason}"),
            ))
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return reject("it is empty");
        }
        if trimmed.len() > MAX_INPUT_BYTES {
            return Err(Invalid::new(
                "address",
                format!("a phone number is at most {MAX_INPUT_BYTES} characters long"),
            ));
        }
        let Ok(parsed) = phonenumber::parse(Some(country::Id::GB), trimmed) else {
            return reject("it could not be read as a UK or international number");
        };
        let code = parsed.code().value();
        let national = parsed.national().value();
        if code == 44 && DRAMA_MOBILES.contains(&national) {
            return Ok(Self {
                e164: format!("+44{national}"),
                kind: PhoneKind::Mobile,
            });
        }
        if !parsed.is_valid() {
            return reject("no such number is in use (check the digits and the country code)");
        }
        // The kind comes from the number plan of the country code, not from a region, so
        // Guernsey, Jersey and Isle of Man mobiles (+44 7781..., 7797..., 7624...) are mobiles too.
        let kind = match parsed.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => PhoneKind::Mobile,
            Type::FixedLine => PhoneKind::Landline,
            _ => PhoneKind::Other,
        };
        Ok(Self {
            e164: parsed.format().mode(Mode::E164).to_string(),
            kind,
        })
    }

    /// The E.164 form, such as `+447700900123`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// What kind of line this is.
    pub fn kind(&self) -> PhoneKind {
        self.kind
    }

    /// Whether SMS may be sent to this number.
    pub fn can_receive_sms(&self) -> bool {
        self.kind == PhoneKind::Mobile
    }

    /// Loads the numbering-plan metadata now, so the first message does not pay for it.
    pub fn load_metadata() {
        let _ = phonenumber::metadata::DATABASE.by_code(&44);
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uk_numbers_are_normalised_to_e164() {
        for input in [
            "07911 123456",
            "+44 7911 123456",
            "447911123456",
            "(07911) 123-456",
        ] {
            let n = PhoneNumber::parse(input).unwrap();
            assert_eq!(n.as_str(), "+447911123456", "{input}");
            assert!(n.can_receive_sms());
        }
    }

    #[test]
    fn drama_range_is_accepted_as_mobile() {
        let first = PhoneNumber::parse("07700 900000").unwrap();
        let last = PhoneNumber::parse("+447700900999").unwrap();
        assert_eq!(first.as_str(), "+447700900000");
        assert_eq!(last.kind(), PhoneKind::Mobile);
    }

    #[test]
    fn landlines_are_kept_but_not_for_sms() {
        let n = PhoneNumber::parse("020 7946 0000").unwrap();
        assert_eq!(n.as_str(), "+442079460000");
        assert_eq!(n.kind(), PhoneKind::Landline);
        assert!(!n.can_receive_sms());
    }

    #[test]
    fn crown_dependency_mobiles_share_44_and_are_mobiles() {
        // Jersey, Guernsey and Isle of Man mobiles.
        for input in ["07797 123456", "07781 123456", "07624 123456"] {
            let n = PhoneNumber::parse(input).unwrap();
            assert!(n.as_str().starts_with("+44"), "{input}");
            assert_eq!(n.kind(), PhoneKind::Mobile, "{input}");
        }
    }

    #[test]
    fn international_numbers_are_accepted() {
        let n = PhoneNumber::parse("+33 6 12 34 56 78").unwrap();
        assert_eq!(n.as_str(), "+33612345678");
        assert!(n.can_receive_sms());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Anything at all, of any length up to a few hundred characters: an answer,
            /// never a panic, and an accepted number is E.164 and parses to itself again.
            #[test]
            fn any_text_is_answered_without_panic(text in "\\PC{0,300}") {
                let parsed = PhoneNumber::parse(&text);
                if text.trim().len() > MAX_INPUT_BYTES {
                    prop_assert!(parsed.is_err());
                }
                if let Ok(number) = parsed {
                    prop_assert!(number.as_str().starts_with('+'));
                    prop_assert!(number.as_str().len() <= 16, "{}", number.as_str());
                    prop_assert_eq!(PhoneNumber::parse(number.as_str()).unwrap(), number);
                }
            }

            /// Number-like text (digits, pluses, spaces, brackets, dashes) too.
            #[test]
            fn number_like_text_is_answered_without_panic(text in "[+0-9 ()#*.x-]{0,40}") {
                if let Ok(number) = PhoneNumber::parse(&text) {
                    prop_assert_eq!(PhoneNumber::parse(number.as_str()).unwrap(), number);
                }
            }

            /// Every UK mobile in the drama range, however it is written, round-trips.
            #[test]
            fn drama_mobiles_round_trip(n in 0u32..1000, spaced in any::<bool>(), plus in any::<bool>()) {
                let national = format!("7700900{n:03}");
                let text = match (plus, spaced) {
                    (true, true) => format!("+44 {} {}", &national[..4], &national[4..]),
                    (true, false) => format!("+44{national}"),
                    (false, true) => format!("0{} {}", &national[..4], &national[4..]),
                    (false, false) => format!("0{national}"),
                };
                let number = PhoneNumber::parse(&text).unwrap();
                prop_assert_eq!(number.as_str(), format!("+44{national}"));
                prop_assert_eq!(PhoneNumber::parse(&number.to_string()).unwrap(), number);
            }
        }
    }

    #[test]
    fn junk_and_impossible_numbers_are_rejected() {
        for bad in ["", "hello", "0791112", "+44 7911 1234567890", "00000000000"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
