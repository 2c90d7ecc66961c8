//! The variables a template sees, built from stored records.

use chrono::{DateTime, Datelike, Utc};
use serde_json::json;

use crate::domain::Language;
use crate::schedule::PracticeZone;
use crate::store::{Broadcast, FanoutPatient, Practice};

/// A time in words in the practice's timezone, as patients read it: "Monday 22 July at 10:30".
pub fn uk_date_time(at: DateTime<Utc>, timezone: PracticeZone) -> String {
    at.with_timezone(&timezone.tz())
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
        "timezone": practice.timezone.to_string(),
    })
}

/// A time in words, in the practice's timezone and a message language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWords {
    /// "Monday 22 July at 10:30"; in Welsh "dydd Llun 22 Gorffennaf am 10:30" (not mutated).
    pub when: String,
    /// "Monday 22 July"; "dydd Llun 22 Gorffennaf".
    pub date: String,
    /// "10:30".
    pub time: String,
    /// As an adverb: "on Monday 22 July at 10:30"; "ddydd Llun 22 Gorffennaf am 10:30".
    pub on: String,
}

const WELSH_DAYS: [&str; 7] = [
    "Llun", "Mawrth", "Mercher", "Iau", "Gwener", "Sadwrn", "Sul",
];
const WELSH_MONTHS: [&str; 12] = [
    "Ionawr",
    "Chwefror",
    "Mawrth",
    "Ebrill",
    "Mai",
    "Mehefin",
    "Gorffennaf",
    "Awst",
    "Medi",
    "Hydref",
    "Tachwedd",
    "Rhagfyr",
];

/// `at` in words in the practice's `timezone`, in `language`.
pub fn time_words(at: DateTime<Utc>, timezone: PracticeZone, language: Language) -> TimeWords {
    let local = at.with_timezone(&timezone.tz());
    let time = local.format("%H:%M").to_string();
    match language {
        Language::English => TimeWords {
            when: uk_date_time(at, timezone),
            date: local.format("%A %-d %B").to_string(),
            on: format!("on {}", uk_date_time(at, timezone)),
            time,
        },
        Language::Welsh => {
            let day = WELSH_DAYS[local.weekday().num_days_from_monday() as usize];
            let month = WELSH_MONTHS[local.month0() as usize];
            let date = format!("{day} {} {month}", local.day());
            TimeWords {
                when: format!("dydd {date} am {time}"),
                // "dydd" takes the soft mutation as an adverb of time.
                on: format!("ddydd {date} am {time}"),
                date: format!("dydd {date}"),
                time,
            }
        }
    }
}

/// The context of a status broadcast: `practice`, `status`, and `patient` when given, with
/// times in English.
pub fn status_context(
    practice: &Practice,
    broadcast: &Broadcast,
    patient: Option<&FanoutPatient>,
) -> tera::Context {
    status_context_in(practice, broadcast, patient, Language::English)
}

/// [`status_context`] with times in words in `language`, for that language's template.
pub fn status_context_in(
    practice: &Practice,
    broadcast: &Broadcast,
    patient: Option<&FanoutPatient>,
    language: Language,
) -> tera::Context {
    let mut context = tera::Context::new();
    context.insert("practice", &practice_json(practice));
    context.insert("status", &status_json(practice, broadcast, language));
    if let Some(p) = patient {
        context.insert("patient", &patient_json(p));
    }
    context
}

/// What templates know of a status change: `status.{kind, headline, details, starts, until}`
/// (times as adverbs in `language`) and the raw `starts_at`, `until_at`.
pub fn status_json(
    practice: &Practice,
    broadcast: &Broadcast,
    language: Language,
) -> serde_json::Value {
    let when = |t: Option<DateTime<Utc>>| t.map(|t| time_words(t, practice.timezone, language).on);
    json!({
        "kind": broadcast.kind.as_str(),
        "headline": broadcast.headline,
        "details": broadcast.details,
        "starts": when(broadcast.starts_at),
        "until": when(broadcast.ends_at),
        "starts_at": broadcast.starts_at.map(|t| t.to_rfc3339()),
        "until_at": broadcast.ends_at.map(|t| t.to_rfc3339()),
    })
}

/// What templates know of the patient: `patient.{given_name, family_name}`.
pub fn patient_json(patient: &FanoutPatient) -> serde_json::Value {
    json!({ "given_name": patient.given_name, "family_name": patient.family_name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_read_in_practice_time_across_the_clock_change() {
        let summer = Utc.with_ymd_and_hms(2024, 7, 22, 9, 30, 0).unwrap();
        assert_eq!(
            uk_date_time(summer, PracticeZone::UK),
            "Monday 22 July at 10:30"
        );
        let winter = Utc.with_ymd_and_hms(2024, 12, 2, 9, 30, 0).unwrap();
        assert_eq!(
            uk_date_time(winter, PracticeZone::UK),
            "Monday 2 December at 09:30"
        );
    }

    #[test]
    fn welsh_words_name_the_day_and_month_and_mutate_only_as_an_adverb() {
        let summer = Utc.with_ymd_and_hms(2024, 7, 23, 7, 0, 0).unwrap();
        let cy = time_words(summer, PracticeZone::UK, Language::Welsh);
        assert_eq!(cy.when, "dydd Mawrth 23 Gorffennaf am 08:00");
        assert_eq!(cy.on, "ddydd Mawrth 23 Gorffennaf am 08:00");
        assert_eq!(cy.date, "dydd Mawrth 23 Gorffennaf");
        let en = time_words(summer, PracticeZone::UK, Language::English);
        assert_eq!(en.on, "on Tuesday 23 July at 08:00");
        assert_eq!(en.date, "Tuesday 23 July");
        assert_eq!(en.time, "08:00");
    }
}
