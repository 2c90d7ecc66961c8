//! NHS numbers: ten digits whose last is a Modulus 11 check digit.

use std::fmt;

use super::Invalid;

/// The longest text read as an NHS number (ten digits with any spacing fit easily).
const MAX_INPUT_BYTES: usize = 32;

/// A valid NHS number, held as its ten digits without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Parses an NHS number, accepting the usual `943 476 5919` or `943-476-5919` spacing.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        if input.len() > MAX_INPUT_BYTES {
            // Not echoed: a long paste would fill the error report.
            return Err(Invalid::new(
                "nhs_number",
                format!(
                    "an NHS number is 10 digits, not {} characters",
                    input.chars().count()
                ),
            ));
        }
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "nhs_number",
                format!("{input:?} is not an NHS number: it must be 10 digits"),
            ));
        }
        let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        match check_digit(&values[..9]) {
            Some(check) if check == values[9] => Ok(Self(digits)),
            _ => Err(Invalid::new(
                "nhs_number",
                format!("{input:?} is not a valid NHS number: its check digit is wrong"),
            )),
        }
    }

    /// Builds the NHS number whose first nine digits are `stem`, if one exists
    /// (a tenth of stems have no valid check digit). Used for synthetic test data.
    pub fn from_stem(stem: u32) -> Option<Self> {
        if stem > 999_999_999 {
            return None;
        }
        let text = format!("{stem:09}");
        let values: Vec<u32> = text.bytes().map(|b| u32::from(b - b'0')).collect();
        let check = check_digit(&values)?;
        Some(Self(format!("{text}{check}")))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Modulus 11 check digit of nine digits, or `None` where the remainder makes it 10
/// (such numbers are never issued).
fn check_digit(first_nine: &[u32]) -> Option<u32> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(digit, weight)| digit * weight)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        check => Some(check),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers_with_or_without_spacing() {
        for input in ["9434765919", "943 476 5919", "943-476-5919", "4010232137"] {
            assert!(NhsNumber::parse(input).is_ok(), "{input}");
        }
        assert_eq!(
            NhsNumber::parse("943 476 5919").unwrap().as_str(),
            "9434765919"
        );
    }

    #[test]
    fn rejects_wrong_check_digit_length_and_letters() {
        for input in ["9434765918", "943476591", "94347659190", "94347659A9", ""] {
            let err = NhsNumber::parse(input).unwrap_err();
            assert_eq!(err.field, "nhs_number");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Anything at all: an answer, never a panic; an accepted number is ten digits
            /// and parses to itself again.
            #[test]
            fn any_text_is_answered_without_panic(text in "\\PC{0,200}") {
                let parsed = NhsNumber::parse(&text);
                if let Err(e) = &parsed {
                    prop_assert!(e.reason.len() <= 10 * MAX_INPUT_BYTES + 100, "{}", e.reason);
                }
                if let Ok(n) = parsed {
                    prop_assert_eq!(n.as_str().len(), 10);
                    prop_assert_eq!(NhsNumber::parse(n.as_str()).unwrap(), n);
                }
            }

            /// Digits with the usual separators, valid or not.
            #[test]
            fn digit_text_is_answered_without_panic(text in "[0-9 -]{0,14}") {
                let _ = NhsNumber::parse(&text);
            }

            /// Every valid number round-trips, however it is spaced; a wrong check digit is
            /// refused.
            #[test]
            fn valid_numbers_round_trip(stem in 0u32..=999_999_999, dashes in any::<bool>()) {
                if let Some(n) = NhsNumber::from_stem(stem) {
                    let digits = n.as_str();
                    let sep = if dashes { "-" } else { " " };
                    let spaced = format!("{}{sep}{}{sep}{}", &digits[..3], &digits[3..6], &digits[6..]);
                    prop_assert_eq!(NhsNumber::parse(&spaced).unwrap(), n.clone());
                    let last = digits.as_bytes()[9] - b'0';
                    let wrong = format!("{}{}", &digits[..9], (last + 1) % 10);
                    prop_assert!(NhsNumber::parse(&wrong).is_err());
                }
            }
        }
    }

    #[test]
    fn stems_whose_check_digit_would_be_ten_are_refused() {
        // 123456788: weighted sum 2+6+12+20+30+42+56+64+8*2... computed below.
        let stems_without: Vec<u32> = (999_000_000..999_000_100)
            .filter(|s| NhsNumber::from_stem(*s).is_none())
            .collect();
        assert!(!stems_without.is_empty());
        for stem in 999_000_000..999_000_100 {
            if let Some(n) = NhsNumber::from_stem(stem) {
                assert_eq!(NhsNumber::parse(n.as_str()).unwrap(), n);
            }
        }
    }
}
