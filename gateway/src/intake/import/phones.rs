//! Phone numbers in bulk. Parsing with libphonenumber costs tens of microseconds a number,
//! most of a large import's time; UK mobiles, the bulk of any patient list, are instead
//! looked up by their range.
//!
//! Why a range decides: in the numbering plans sharing +44 (GB, Guernsey, Isle of Man,
//! Jersey), every pattern for a ten-digit national number starting with 7 ends in at least
//! four free digits, so whether such a number is valid, and its kind, depend on its first six
//! digits only. The first number met in a range is parsed in full and the answer kept for
//! the range. Ofcom's drama range, which `PhoneNumber::parse` treats specially at seven
//! digits, is always parsed in full. The test below checks the shortcut against the full
//! parse, so an update of the plans that breaks the rule is caught.

use std::collections::HashMap;

use crate::domain::{Invalid, PhoneKind, PhoneNumber};

/// Most ranges remembered; beyond this the memory is cleared (it never grows with a file).
const MAX_RANGES: usize = 100_000;

/// The first six digits of the drama range 07700 900000-999, which is parsed in full.
const DRAMA_RANGE: u32 = 770_090;

/// A number in E.164 form with its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// Such as `+447700900123`.
    pub e164: String,
    /// Mobile, landline or other.
    pub kind: PhoneKind,
}

impl From<PhoneNumber> for Phone {
    fn from(p: PhoneNumber) -> Self {
        Self {
            e164: p.as_str().to_string(),
            kind: p.kind(),
        }
    }
}

/// Parses phone numbers, remembering what each UK mobile range is.
#[derive(Debug, Default)]
pub struct PhoneBook {
    ranges: HashMap<u32, Option<PhoneKind>>,
}

impl PhoneBook {
    /// Parses a number as `PhoneNumber::parse` does.
    pub fn parse(&mut self, text: &str) -> Result<Phone, Invalid> {
        let Some(national) = uk_mobile_range(text) else {
            return PhoneNumber::parse(text).map(Phone::from);
        };
        let range = national[..6]
            .bytes()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
        if range == DRAMA_RANGE {
            return PhoneNumber::parse(text).map(Phone::from);
        }
        let kind = match self.ranges.get(&range) {
            Some(kind) => *kind,
            None => {
                let kind = PhoneNumber::parse(&format!("+44{}", national))
                    .ok()
                    .map(|p| p.kind());
                if self.ranges.len() >= MAX_RANGES {
                    self.ranges.clear();
                }
                self.ranges.insert(range, kind);
                kind
            }
        };
        match kind {
            Some(kind) => Ok(Phone {
                e164: format!("+44{national}"),
                kind,
            }),
            // Invalid: the full parse gives the reason in its words.
            None => PhoneNumber::parse(text).map(Phone::from),
        }
    }
}

/// The ten-digit national number of `07XXX XXXXXX`, `+44 7XXX XXXXXX`, `447...` or
/// `00447...` (spaces, dashes, dots and brackets ignored), or `None` for any other form.
fn uk_mobile_range(text: &str) -> Option<String> {
    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for (i, c) in text.trim().chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let national = match (plus, digits.len()) {
        (false, 11) => digits.strip_prefix('0')?,
        (true, 12) | (false, 12) => digits.strip_prefix("44")?,
        (false, 14) => digits.strip_prefix("0044")?,
        _ => return None,
    };
    national.starts_with('7').then(|| national.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> Result<Phone, String> {
        PhoneNumber::parse(text)
            .map(Phone::from)
            .map_err(|e| e.reason)
    }

    #[test]
    fn ranges_give_what_a_full_parse_gives() {
        let mut book = PhoneBook::default();
        // A spread of ten-digit 7 numbers (a simple LCG), twice over so ranges are reused,
        // plus the ranges that need care: drama, Crown dependencies, pagers, personal numbers.
        let mut x: u64 = 12345;
        let mut numbers = Vec::new();
        for _ in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            numbers.push(format!("07{:09}", (x >> 20) % 1_000_000_000));
        }
        for special in [
            "07700 900123",
            "07700 901123",
            "07624 123456",
            "07624 500123",
            "07797 123456",
            "07781 123456",
            "07911 123456",
            "07640 123456",
            "07015 111234",
            "+44 7911 123456",
            "447911123456",
            "0044 7911 123456",
        ] {
            numbers.push(special.to_string());
        }
        let twice: Vec<String> = numbers.iter().chain(numbers.iter()).cloned().collect();
        for n in &twice {
            assert_eq!(book.parse(n).map_err(|e| e.reason), full(n), "{n}");
        }
    }

    #[test]
    fn other_forms_are_parsed_in_full() {
        assert_eq!(uk_mobile_range("020 7946 0000"), None);
        assert_eq!(uk_mobile_range("+33 6 12 34 56 78"), None);
        assert_eq!(uk_mobile_range("07911 12345x"), None);
        assert_eq!(uk_mobile_range("+44 (0)7911 123456"), None);
        assert_eq!(
            uk_mobile_range("(07911) 123-456").as_deref(),
            Some("7911123456")
        );
        let mut book = PhoneBook::default();
        assert_eq!(
            book.parse("020 7946 0000").unwrap().kind,
            PhoneKind::Landline
        );
        assert!(book.parse("0791112").is_err());
    }
}
