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

    #[test]
    fn junk_and_impossible_numbers_are_rejected() {
        for bad in ["", "hello", "0791112", "+44 7911 1234567890", "00000000000"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
