//! Email addresses, checked for the syntax a mail server will accept.

use std::fmt;

use super::Invalid;

/// An email address in `local@domain` form, with the domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address. Rejects missing parts, spaces, a domain without a dot,
    /// and anything over the 254 characters SMTP allows.
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let trimmed = input.trim();
        let reject = |reason: &str| {
            Err(Invalid::new(
                "address",
                format!("{input:?} is not an email address: {reason}"),
            ))
        };
        if trimmed.len() > 254 {
            return reject("longer than 254 characters");
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return reject("it has no @");
        };
        if local.is_empty() || local.len() > 64 {
            return reject("the part before @ must be 1 to 64 characters");
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@".contains(c))
        {
            return reject("the part before @ has a character mail servers refuse");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return reject("the part before @ has a misplaced dot");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return reject("the domain needs a dot, as in example.com");
        }
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if !labels.iter().all(label_ok) {
            return reject("the domain is not a valid host name");
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_the_domain() {
        assert_eq!(
            EmailAddress::parse(" Jo.Bloggs+gp@Example.COM ")
                .unwrap()
                .as_str(),
            "Jo.Bloggs+gp@example.com"
        );
        assert!(EmailAddress::parse("a@b.co.uk").is_ok());
    }

    #[test]
    fn rejects_broken_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "jo@",
            "jo@localhost",
            "jo bloggs@example.com",
            "jo@exa mple.com",
            "jo..b@example.com",
            "jo@-example.com",
            "jo@example..com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
