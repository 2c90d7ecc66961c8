//! A practice's timezone, parsed once, with the one fall-back to UK time.

use std::fmt;

use chrono_tz::Tz;

/// A practice's timezone (an IANA name such as `Europe/London`): quiet hours and the times
/// in patients' messages are judged in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PracticeZone(Tz);

/// A name that is not an IANA timezone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IANA timezone such as Europe/London")]
pub struct UnknownZone(pub String);

impl PracticeZone {
    /// UK time: the default for new practices, and the zone of a stored practice whose
    /// name does not parse.
    pub const UK: Self = Self(chrono_tz::Europe::London);

    /// Parses an IANA name as given (settings, a new practice), refusing an unknown one.
    pub fn parse(name: &str) -> Result<Self, UnknownZone> {
        name.parse()
            .map(Self)
            .map_err(|_| UnknownZone(name.to_string()))
    }

    /// The zone of a stored practice. Names are checked when a practice is created, so the
    /// fall-back to [`PracticeZone::UK`] only serves a row written some other way: its
    /// messages keep going, in UK time, rather than failing.
    pub fn of_stored(name: &str) -> Self {
        Self::parse(name).unwrap_or(Self::UK)
    }

    /// The zone for chrono.
    pub fn tz(self) -> Tz {
        self.0
    }
}

/// The IANA name exactly as it was parsed (chrono-tz keeps every link, such as
/// `Europe/Belfast`, under its own name), so a stored name is written back unchanged.
impl fmt::Display for PracticeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly_and_stored_ones_fall_back_to_uk_time() {
        assert_eq!(
            PracticeZone::parse("Europe/Dublin").map(PracticeZone::tz),
            Ok(chrono_tz::Europe::Dublin)
        );
        assert_eq!(
            PracticeZone::parse("Mars/Olympus").unwrap_err().to_string(),
            "\"Mars/Olympus\" is not an IANA timezone such as Europe/London"
        );
        assert_eq!(PracticeZone::of_stored("Mars/Olympus"), PracticeZone::UK);
        assert_eq!(PracticeZone::of_stored(""), PracticeZone::UK);
        assert_eq!(PracticeZone::UK.to_string(), "Europe/London");
        for name in ["Europe/Belfast", "GB", "UTC", "America/New_York"] {
            assert_eq!(PracticeZone::parse(name).unwrap().to_string(), name);
        }
    }
}
