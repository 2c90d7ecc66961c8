//! ODS codes: the NHS Organisation Data Service code that identifies a practice.

use std::fmt;

use super::Invalid;

/// A practice's ODS code (e.g. `A81001`), upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

impl OdsCode {
    /// Parses an ODS code: 3 to 8 letters and digits, starting with a letter.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let code = input.trim().to_ascii_uppercase();
        let well_formed = (3..=8).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_alphanumeric())
            && code.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if well_formed {
            Ok(Self(code))
        } else {
            Err(Invalid::new(
                "ods_code",
                format!("{input:?} is not an ODS code: expected 3 to 8 letters and digits starting with a letter, such as A81001"),
            ))
        }
    }

    /// The code, upper-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_rejects_junk() {
        assert_eq!(OdsCode::parse(" a81001 ").unwrap().as_str(), "A81001");
        for bad in ["", "A1", "181001", "A81-001", "A810010000"] {
            assert!(OdsCode::parse(bad).is_err(), "{bad}");
        }
    }
}
