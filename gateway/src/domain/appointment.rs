//! Appointments: how they take place, whether they stand, how a practice changes them, and
//! the times practices write them in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// Declares a stored word enum: its names, `as_str`, `FromStr` naming the field, `Display`.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let words: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    Invalid::new($field, format!("{s:?} is not one of {}", words.join(", ")))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// How an appointment takes place.
    AppointmentMode, "mode", {
        /// At the surgery (or wherever `location` says).
        InPerson = "in_person",
        /// The clinician phones the patient.
        Phone = "phone",
        /// A video call.
        Video = "video",
    }
);

word_enum!(
    /// Whether an appointment still stands.
    AppointmentState, "status", {
        /// Booked and going ahead.
        Booked = "booked",
        /// Called off.
        Cancelled = "cancelled",
    }
);

word_enum!(
    /// What a practice did to one appointment; each tells the patient in its own words.
    AppointmentChangeKind, "kind", {
        /// Called off.
        Cancelled = "cancelled",
        /// Moved to another time (and perhaps place or clinician).
        Moved = "moved",
        /// Now a phone call instead of a visit.
        ChangedToPhone = "changed_to_phone",
        /// With another clinician, at the same time.
        ChangedClinician = "changed_clinician",
    }
);

impl AppointmentChangeKind {
    /// The message template that tells the patient, such as `appointment.moved`.
    pub fn template_key(self) -> String {
        format!("appointment.{}", self.as_str())
    }

    /// The state the appointment is left in.
    pub fn leaves(self) -> AppointmentState {
        match self {
            AppointmentChangeKind::Cancelled => AppointmentState::Cancelled,
            _ => AppointmentState::Booked,
        }
    }
}

/// Longest accepted external reference (the practice system's appointment id).
pub const MAX_EXTERNAL_REF: usize = 100;

/// Checks an external reference: 1 to [`MAX_EXTERNAL_REF`] characters, no control
/// characters, surrounding spaces ignored.
pub fn parse_external_ref(input: &str) -> Result<String, Invalid> {
    let text = input.trim();
    if text.is_empty() {
        return Err(Invalid::new("external_ref", "is empty"));
    }
    if text.chars().count() > MAX_EXTERNAL_REF {
        return Err(Invalid::new(
            "external_ref",
            format!("longer than {MAX_EXTERNAL_REF} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new("external_ref", "contains control characters"));
    }
    Ok(text.to_string())
}

/// Local date and time layouts accepted besides RFC 3339, as UK clinical systems export them.
const LOCAL_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
];

/// Parses an appointment time: RFC 3339 with an offset, or a local time in `timezone`
/// (`2024-07-22 10:30`, `2024-07-22T10:30`, `22/07/2024 10:30`). A local time the clocks
/// skip or repeat is refused, since the patient could be told the wrong hour.
pub fn parse_start(input: &str, field: &str, timezone: Tz) -> Result<DateTime<Utc>, Invalid> {
    let text = input.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let naive = LOCAL_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(|| {
            Invalid::new(
                field,
                format!("{text:?} is not a time: use 2024-07-22 10:30 (UK time), 22/07/2024 10:30, or RFC 3339 such as 2024-07-22T09:30:00Z"),
            )
        })?;
    match timezone.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(_, _) => Err(Invalid::new(
            field,
            format!("{text} happens twice in {timezone} (the clocks go back): give it with its offset, such as {}+01:00", naive.format("%Y-%m-%dT%H:%M:%S")),
        )),
        LocalResult::None => Err(Invalid::new(
            field,
            format!("{text} does not exist in {timezone} (the clocks go forward)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const LONDON: Tz = chrono_tz::Europe::London;

    #[test]
    fn uk_local_times_are_read_in_the_practice_timezone() {
        let summer = Utc.with_ymd_and_hms(2024, 7, 22, 9, 30, 0).unwrap();
        for text in [
            "2024-07-22 10:30",
            "2024-07-22T10:30",
            "2024-07-22 10:30:00",
            "22/07/2024 10:30",
            " 2024-07-22T09:30:00Z ",
            "2024-07-22T10:30:00+01:00",
        ] {
            assert_eq!(parse_start(text, "starts_at", LONDON), Ok(summer), "{text}");
        }
        let winter = Utc.with_ymd_and_hms(2024, 12, 2, 9, 30, 0).unwrap();
        assert_eq!(
            parse_start("02/12/2024 09:30", "starts_at", LONDON),
            Ok(winter)
        );
    }

    #[test]
    fn clock_change_gaps_and_repeats_are_refused_with_the_field() {
        let gap = parse_start("2024-03-31 01:30", "starts_at", LONDON).unwrap_err();
        assert_eq!(gap.field, "starts_at");
        assert!(gap.reason.contains("does not exist"), "{}", gap.reason);
        let twice = parse_start("2024-10-27 01:30", "new.starts_at", LONDON).unwrap_err();
        assert_eq!(twice.field, "new.starts_at");
        assert!(twice.reason.contains("twice"), "{}", twice.reason);
        // With its offset it is clear.
        assert!(parse_start("2024-10-27T01:30:00+01:00", "starts_at", LONDON).is_ok());
        assert!(parse_start("next Tuesday", "starts_at", LONDON).is_err());
        assert!(parse_start("2024-07-32 10:30", "starts_at", LONDON).is_err());
    }

    #[test]
    fn words_round_trip_and_unknown_ones_are_named() {
        for kind in AppointmentChangeKind::ALL {
            assert_eq!(kind.as_str().parse::<AppointmentChangeKind>(), Ok(*kind));
        }
        assert_eq!(
            AppointmentChangeKind::ChangedToPhone.template_key(),
            "appointment.changed_to_phone"
        );
        let e = "postponed".parse::<AppointmentChangeKind>().unwrap_err();
        assert_eq!(e.field, "kind");
        assert!(e.reason.contains("changed_clinician"));
        assert_eq!(
            "phone".parse::<AppointmentMode>(),
            Ok(AppointmentMode::Phone)
        );
        assert!("gone".parse::<AppointmentState>().is_err());
    }

    #[test]
    fn external_refs_are_trimmed_and_bounded() {
        assert_eq!(parse_external_ref(" EMIS-123 ").unwrap(), "EMIS-123");
        assert!(parse_external_ref("  ").is_err());
        assert!(parse_external_ref(&"x".repeat(101)).is_err());
        assert!(parse_external_ref("a\u{0}b").is_err());
    }
}
