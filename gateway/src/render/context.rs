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
/// (wording and times in `language`) and the raw `starts_at`, `until_at`.
pub fn status_json(
    practice: &Practice,
    broadcast: &Broadcast,
    language: Language,
) -> serde_json::Value {
    let when = |t: Option<DateTime<Utc>>| t.map(|t| time_words(t, practice.timezone, language).on);
    let (headline, details) = status_wording(broadcast, language);
    json!({
        "kind": broadcast.kind.as_str(),
        "headline": headline,
        "details": details,
        "starts": when(broadcast.starts_at),
        "until": when(broadcast.ends_at),
        "starts_at": broadcast.starts_at.map(|t| t.to_rfc3339()),
        "until_at": broadcast.ends_at.map(|t| t.to_rfc3339()),
    })
}

/// A status change's headline and details in `language`. In Welsh: the Welsh ones the
/// practice gave; without a Welsh headline, the kind's Welsh default when the English
/// headline is the English default, else the English as typed (better than nothing);
/// without Welsh details, the English ones.
pub fn status_wording(broadcast: &Broadcast, language: Language) -> (&str, Option<&str>) {
    let english = (broadcast.headline.as_str(), broadcast.details.as_deref());
    if language == Language::English {
        return english;
    }
    let kind = broadcast.kind;
    let headline = broadcast.headline_cy.as_deref().unwrap_or_else(|| {
        match kind.default_headline(Language::English) {
            Some(default) if default == broadcast.headline => {
                kind.default_headline(language).unwrap_or(english.0)
            }
            _ => english.0,
        }
    });
    (headline, broadcast.details_cy.as_deref().or(english.1))
}

/// What templates know of the patient: `patient.{given_name, family_name}`.
pub fn patient_json(patient: &FanoutPatient) -> serde_json::Value {
    json!({ "given_name": patient.given_name, "family_name": patient.family_name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StatusKind;
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

    fn broadcast(kind: StatusKind, headline: &str) -> Broadcast {
        Broadcast {
            id: crate::domain::BroadcastId::new(1),
            practice_id: crate::domain::PracticeId::new(1),
            status_change_id: crate::domain::StatusChangeId::new(1),
            kind,
            headline: headline.into(),
            details: Some("A pipe has burst.".into()),
            headline_cy: None,
            details_cy: None,
            starts_at: None,
            ends_at: None,
            created_by: "test".into(),
            created_at: Utc::now(),
            fanout_done_at: None,
            skipped_no_contact: 0,
            superseded_by: None,
            failed_at: None,
            failure: None,
            reach: Default::default(),
            cancel: None,
            traceparent: None,
        }
    }

    #[test]
    fn welsh_wording_uses_the_welsh_given_else_the_welsh_default_else_the_english() {
        use Language::{English, Welsh};
        let closed = broadcast(StatusKind::Closed, "The surgery is closed.");
        assert_eq!(
            status_wording(&closed, Welsh),
            ("Mae'r feddygfa ar gau.", Some("A pipe has burst."))
        );
        assert_eq!(
            status_wording(&closed, English),
            ("The surgery is closed.", Some("A pipe has burst."))
        );
        let typed = broadcast(StatusKind::Closed, "Flooding in the waiting room");
        assert_eq!(
            status_wording(&typed, Welsh).0,
            "Flooding in the waiting room"
        );
        let both = Broadcast {
            headline_cy: Some("Llifogydd yn yr ystafell aros".into()),
            details_cy: Some("Mae pibell wedi byrstio.".into()),
            ..typed
        };
        assert_eq!(
            status_wording(&both, Welsh),
            (
                "Llifogydd yn yr ystafell aros",
                Some("Mae pibell wedi byrstio.")
            )
        );
        assert_eq!(
            status_wording(&both, English),
            ("Flooding in the waiting room", Some("A pipe has burst."))
        );
        for kind in [
            StatusKind::PhonesDown,
            StatusKind::SystemsDown,
            StatusKind::Restored,
        ] {
            let english = kind.default_headline(English).unwrap();
            let standard = broadcast(kind, english);
            let welsh = status_wording(&standard, Welsh).0;
            assert_eq!(Some(welsh), kind.default_headline(Welsh));
        }
        let custom = broadcast(StatusKind::Custom, "Flu clinic on Saturday");
        assert_eq!(status_wording(&custom, Welsh).0, "Flu clinic on Saturday");
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
