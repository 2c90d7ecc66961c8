//! The template keys the gateway knows, the variables each one offers, and sample values
//! to preview and validate against.

use serde::Serialize;
use serde_json::{json, Value};

use chrono::{DateTime, Utc};

use super::context::{time_words, TimeWords};
use crate::domain::{Channel, Language};
use crate::schedule::PracticeZone;

/// One variable a template may use.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Variable {
    /// Its path, such as `practice.name`.
    pub name: &'static str,
    /// What it holds, for the editor.
    pub about: &'static str,
}

const PRACTICE: &[Variable] = &[
    Variable {
        name: "practice.name",
        about: "the practice's name",
    },
    Variable {
        name: "practice.phone",
        about: "its public phone number (may be empty)",
    },
    Variable {
        name: "practice.website",
        about: "its website (may be empty)",
    },
    Variable {
        name: "practice.ods_code",
        about: "its ODS code",
    },
];

const STATUS: &[Variable] = &[
    Variable {
        name: "status.kind",
        about: "closed, phones_down, systems_down, restored or custom",
    },
    Variable {
        name: "status.headline",
        about: "the one-line notice the surgery wrote, as typed (often without a full stop: `status.headline | sentence` ends it as a sentence)",
    },
    Variable {
        name: "status.details",
        about: "more detail (may be empty)",
    },
    Variable {
        name: "status.starts",
        about: "when it started, in words: \"on Monday 22 July at 10:30\" (may be empty)",
    },
    Variable {
        name: "status.until",
        about: "when it should end, in words (may be empty)",
    },
];

const PATIENT: &[Variable] = &[
    Variable {
        name: "patient.given_name",
        about: "the patient's first name (may be empty); makes the message personal",
    },
    Variable {
        name: "patient.family_name",
        about: "the patient's surname (may be empty)",
    },
];

const APPOINTMENT: &[Variable] = &[
    Variable {
        name: "appointment.when",
        about: "\"Monday 22 July at 10:30\", practice time",
    },
    Variable {
        name: "appointment.on",
        about: "the time as an adverb: \"on Monday 22 July at 10:30\"; in Welsh soft-mutated, \"ddydd Llun 22 Gorffennaf am 10:30\", as it must be after o, i, tan or ar",
    },
    Variable {
        name: "appointment.date",
        about: "\"Monday 22 July\"",
    },
    Variable {
        name: "appointment.time",
        about: "\"10:30\"",
    },
    Variable {
        name: "appointment.place",
        about: "where (may be empty)",
    },
    Variable {
        name: "appointment.clinician",
        about: "who with (may be empty)",
    },
    Variable {
        name: "appointment.reason",
        about: "why it changed (may be empty)",
    },
    Variable {
        name: "appointment.previous_when",
        about: "the old time, for a moved appointment (may be empty)",
    },
    Variable {
        name: "appointment.previous_on",
        about: "the old time as an adverb, like appointment.on, for a moved appointment (may be empty)",
    },
    Variable {
        name: "appointment.previous_place",
        about: "the old place, for a moved appointment (may be empty)",
    },
    Variable {
        name: "appointment.previous_clinician",
        about: "who it was with before, for a new clinician (may be empty)",
    },
    Variable {
        name: "appointment.starts_at",
        about: "the start as an RFC 3339 time, for the uk_date_time, uk_date and uk_time filters (lang=\"cy\" for Welsh)",
    },
    Variable {
        name: "appointment.previous_starts_at",
        about: "the old start as an RFC 3339 time, for a moved appointment (may be empty)",
    },
];

const INVITE: &[Variable] = &[
    Variable {
        name: "invite.link",
        about: "the patient's personal sign-up link for browser notifications",
    },
    Variable {
        name: "invite.expires",
        about: "when the link stops working, in words",
    },
];

/// Filters templates may use besides Tera's own (`upper`, `default`, `truncate`, ...), for
/// the editor's help and `docs/templates.md`.
pub const FILTERS: &[Variable] = &[
    Variable {
        name: "sentence",
        about: "ends typed text as a sentence: `{{ status.headline | sentence }}` adds a full stop when it has none",
    },
    Variable {
        name: "uk_date_time",
        about: "an RFC 3339 time in words, practice time: \"Monday 22 July at 10:30\"; with lang=\"cy\" \"dydd Llun 22 Gorffennaf am 10:30\", and with lang=\"cy\", mutated=true \"ddydd Llun ...\" (after tan, ar, o, i); timezone=\"...\" for another zone",
    },
    Variable {
        name: "uk_date",
        about: "the day only: \"Monday 22 July\"; lang=\"cy\" and mutated=true as for uk_date_time",
    },
    Variable {
        name: "uk_time",
        about: "the time only: \"10:30\"",
    },
];

/// A template key and what it is for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KeyInfo {
    /// The key.
    pub key: &'static str,
    /// What the message is for.
    pub about: &'static str,
    /// The channels it has wording for.
    #[serde(skip)]
    pub channels: &'static [Channel],
}

const ALL_CHANNELS: &[Channel] = &[Channel::Sms, Channel::Email, Channel::Push, Channel::NhsApp];

/// Every key, in the order the console lists them.
pub const KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "status.closed",
        about: "the practice is closed",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "status.phones_down",
        about: "the phone lines are down",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "status.systems_down",
        about: "clinical systems are down",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "status.restored",
        about: "back to normal",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "status.custom",
        about: "any other notice",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "appointment.cancelled",
        about: "one patient's appointment is cancelled",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "appointment.moved",
        about: "one patient's appointment has moved",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "appointment.affected_by_closure",
        about: "a closure affects one patient's appointment",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "appointment.changed_to_phone",
        about: "one patient's appointment is now a phone call",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "appointment.changed_clinician",
        about: "one patient's appointment is now with another clinician",
        channels: ALL_CHANNELS,
    },
    KeyInfo {
        key: "push.invite",
        about: "an invitation to get browser notifications",
        channels: &[Channel::Sms, Channel::Email, Channel::NhsApp],
    },
];

/// What is known of `key`, if it is one.
pub fn key_info(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.key == key)
}

/// The variables templates of `key` may use.
pub fn variables(key: &str) -> Vec<Variable> {
    let mut vars: Vec<Variable> = PRACTICE.to_vec();
    if key.starts_with("status.") {
        vars.extend_from_slice(STATUS);
        vars.extend_from_slice(PATIENT);
    } else if key.starts_with("appointment.") {
        vars.extend_from_slice(PATIENT);
        vars.extend_from_slice(APPOINTMENT);
        if key == "appointment.affected_by_closure" {
            vars.extend_from_slice(STATUS);
        }
    } else if key == "push.invite" {
        vars.extend_from_slice(PATIENT);
        vars.extend_from_slice(INVITE);
    }
    vars
}

/// The sample's times (RFC 3339): a status change from Monday 22 July 2024 08:00 to the
/// next morning, an appointment moved from Friday 19 July 09:00 to Monday 22 July 10:30,
/// and an invitation that expires on Monday 29 July 10:30 (UK time).
const SAMPLE_STARTS: &str = "2024-07-22T07:00:00+00:00";
const SAMPLE_UNTIL: &str = "2024-07-23T07:00:00+00:00";
const SAMPLE_APPOINTMENT: &str = "2024-07-22T09:30:00+00:00";
const SAMPLE_PREVIOUS: &str = "2024-07-19T08:00:00+00:00";
const SAMPLE_EXPIRES: &str = "2024-07-29T09:30:00+00:00";

/// A sample time in words in `language`, made as the gateway makes real ones, so the sample
/// is in the language of the template it checks.
fn sample_words(at: &str, language: Language) -> TimeWords {
    let at = DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    time_words(at, PracticeZone::UK, language)
}

/// Sample values for every variable of `key`, in `language`, with every optional value set
/// (so validation reaches every branch that prints one), as JSON. Times in words are made
/// by the same code as real messages' ([`time_words`]), in `language`.
pub fn sample_json(key: &str, language: Language) -> Value {
    let welsh = language == Language::Welsh;
    let words = |at: &str| sample_words(at, language);
    let names: Vec<&str> = variables(key).iter().map(|v| v.name).collect();
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    let mut sample = serde_json::Map::new();
    sample.insert(
        "practice".into(),
        json!({
            "name": "Riverside Surgery",
            "phone": "01632 960000",
            "website": "riverside-surgery.example.com",
            "ods_code": "A81001",
            "timezone": "Europe/London",
        }),
    );
    if has("status.") {
        let kind = key.strip_prefix("status.").unwrap_or("closed");
        sample.insert(
            "status".into(),
            json!({
                "kind": kind,
                "headline": if welsh { "Mae'r feddygfa ar gau heddiw." } else { "The surgery is closed today." },
                "details": if welsh { "Mae pibell ddŵr wedi byrstio." } else { "A water pipe has burst." },
                "starts": words(SAMPLE_STARTS).on,
                "until": words(SAMPLE_UNTIL).on,
                "starts_at": SAMPLE_STARTS,
                "until_at": SAMPLE_UNTIL,
            }),
        );
    }
    if has("patient.") {
        sample.insert(
            "patient".into(),
            json!({ "given_name": "Alex", "family_name": "Jones" }),
        );
    }
    if has("appointment.") {
        let (now, previous) = (words(SAMPLE_APPOINTMENT), words(SAMPLE_PREVIOUS));
        sample.insert(
            "appointment".into(),
            json!({
                "when": now.when,
                "on": now.on,
                "date": now.date,
                "time": now.time,
                "place": "Riverside Surgery, room 2",
                "clinician": "Dr Patel",
                "reason": if welsh { "mae'r meddyg yn sâl" } else { "the doctor is unwell" },
                "previous_when": previous.when,
                "previous_on": previous.on,
                "previous_place": "Riverside Surgery, room 1",
                "previous_clinician": "Dr Smith",
                "starts_at": SAMPLE_APPOINTMENT,
                "previous_starts_at": SAMPLE_PREVIOUS,
            }),
        );
    }
    if has("invite.") {
        sample.insert(
            "invite".into(),
            json!({
                "link": "https://gw.example.nhs.uk/p/A81001/notifications?t=abcdefghij0123456789",
                "expires": words(SAMPLE_EXPIRES).when,
            }),
        );
    }
    Value::Object(sample)
}

/// [`sample_json`] as a Tera context.
pub fn sample(key: &str, language: Language) -> tera::Context {
    context_of(&sample_json(key, language))
}

/// A JSON object as a Tera context (anything else gives an empty context).
pub fn context_of(data: &Value) -> tera::Context {
    tera::Context::from_serialize(data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_offers_its_variables() {
        let names = |key: &str| variables(key).iter().map(|v| v.name).collect::<Vec<_>>();
        assert!(names("status.closed").contains(&"status.headline"));
        assert!(!names("status.closed").contains(&"appointment.when"));
        assert!(names("appointment.moved").contains(&"appointment.previous_when"));
        assert!(names("appointment.changed_clinician").contains(&"appointment.previous_clinician"));
        assert!(key_info("appointment.changed_to_phone").is_some());
        assert!(names("appointment.affected_by_closure").contains(&"status.until"));
        assert!(names("push.invite").contains(&"invite.link"));
        assert!(names("appointment.moved").contains(&"appointment.previous_on"));
        assert!(key_info("status.nope").is_none());
    }

    /// English names of days and months, which no Welsh sample may hold.
    const ENGLISH_DATE_WORDS: &[&str] = &[
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];

    #[test]
    fn samples_are_in_the_language_they_check() {
        for info in KEYS {
            let welsh = sample_json(info.key, Language::Welsh).to_string();
            for word in ENGLISH_DATE_WORDS {
                assert!(!welsh.contains(word), "{}: {word} in {welsh}", info.key);
            }
        }
        let invite = sample_json("push.invite", Language::Welsh);
        assert_eq!(
            invite["invite"]["expires"],
            "dydd Llun 29 Gorffennaf am 10:30"
        );
        let english = sample_json("appointment.moved", Language::English);
        assert_eq!(english["appointment"]["when"], "Monday 22 July at 10:30");
        assert_eq!(
            english["appointment"]["previous_when"],
            "Friday 19 July at 09:00"
        );
        let status = sample_json("status.closed", Language::English);
        assert_eq!(status["status"]["until"], "on Tuesday 23 July at 08:00");
    }

    #[test]
    fn shipped_welsh_wording_prints_no_english_dates_with_the_sample() {
        let templates = crate::render::MessageTemplates::builtin().unwrap();
        for info in KEYS {
            for channel in info.channels {
                let Some(chosen) = templates.global(info.key, *channel, Language::Welsh) else {
                    continue;
                };
                let rendered = templates
                    .render_chosen(chosen, &sample(info.key, Language::Welsh))
                    .unwrap();
                let text = format!(
                    "{} {} {}",
                    rendered.subject.unwrap_or_default(),
                    rendered.body,
                    rendered.html.unwrap_or_default()
                );
                for word in ENGLISH_DATE_WORDS {
                    assert!(!text.contains(word), "{} {channel}: {text}", info.key);
                }
            }
        }
    }
}
