//! The variables a template sees, built from stored records.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

use crate::store::{Broadcast, FanoutPatient, Practice};

/// A time in words in the practice's timezone, as patients read it: "Monday 22 July at 10:30".
pub fn uk_date_time(at: DateTime<Utc>, timezone: &str) -> String {
    let tz: Tz = timezone.parse().unwrap_or(chrono_tz::Europe::London);
    at.with_timezone(&tz)
        .format("%A %-d %B at %H:%M")
        .to_string()
}

/// What every template knows of the practice: `practice.{name, phone, website, ods_code,
/// timezone}`.
pub fn practice_json(practice: &Practice) -> serde_json::Value {
    json!({
        "name": practice.name,
        "phone": practice.phone,
        "website": practice.website,
        "ods_code": practice.ods_code.as_str(),
        "timezone": practice.timezone,
    })
}

/// The context of a status broadcast: `practice`, `status`, and `patient` when given.
pub fn status_context(
    practice: &Practice,
    broadcast: &Broadcast,
    patient: Option<&FanoutPatient>,
) -> tera::Context {
    let mut context = tera::Context::new();
    context.insert("practice", &practice_json(practice));
    let when =
        |t: Option<DateTime<Utc>>| t.map(|t| format!("on {}", uk_date_time(t, &practice.timezone)));
    context.insert(
        "status",
        &json!({
            "kind": broadcast.kind.as_str(),
            "headline": broadcast.headline,
            "details": broadcast.details,
            "starts": when(broadcast.starts_at),
            "until": when(broadcast.ends_at),
            "starts_at": broadcast.starts_at.map(|t| t.to_rfc3339()),
            "until_at": broadcast.ends_at.map(|t| t.to_rfc3339()),
        }),
    );
    if let Some(p) = patient {
        context.insert(
            "patient",
            &json!({ "given_name": p.given_name, "family_name": p.family_name }),
        );
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_read_in_practice_time_across_the_clock_change() {
        let summer = Utc.with_ymd_and_hms(2024, 7, 22, 9, 30, 0).unwrap();
        assert_eq!(
            uk_date_time(summer, "Europe/London"),
            "Monday 22 July at 10:30"
        );
        let winter = Utc.with_ymd_and_hms(2024, 12, 2, 9, 30, 0).unwrap();
        assert_eq!(
            uk_date_time(winter, "Europe/London"),
            "Monday 2 December at 09:30"
        );
    }
}
