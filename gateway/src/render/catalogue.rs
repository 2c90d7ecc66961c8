//! The template keys the gateway knows, the variables each one offers, and sample values
//! to preview and validate against.

use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::{Channel, Language};

/// One variable a template may use.
#[derive(Debug, Clone, Copy, Serialize)]
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
        name: "appointment.previous_place",
        about: "the old place, for a moved appointment (may be empty)",
    },
    Variable {
        name: "appointment.previous_clinician",
        about: "who it was with before, for a new clinician (may be empty)",
    },
    Variable {
        name: "appointment.starts_at",
        about: "the start as an RFC 3339 time, for the uk_date_time, uk_date and uk_time filters",
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

const ALL_CHANNELS: &[Channel] = &[Channel::Sms, Channel::Email, Channel::Push];

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
        channels: &[Channel::Sms, Channel::Email],
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

/// Sample values for every variable of `key`, in `language`, with every optional value set
/// (so validation reaches every branch that prints one), as JSON.
pub fn sample_json(key: &str, language: Language) -> Value {
    let welsh = language == Language::Welsh;
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
                "starts": if welsh { "ddydd Llun 22 Gorffennaf am 08:00" } else { "on Monday 22 July at 08:00" },
                "until": if welsh { "ddydd Mawrth 23 Gorffennaf am 08:00" } else { "on Tuesday 23 July at 08:00" },
                "starts_at": "2024-07-22T07:00:00+00:00",
                "until_at": "2024-07-23T07:00:00+00:00",
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
        sample.insert(
            "appointment".into(),
            json!({
                "when": if welsh { "dydd Llun 22 Gorffennaf am 10:30" } else { "Monday 22 July at 10:30" },
                "date": if welsh { "dydd Llun 22 Gorffennaf" } else { "Monday 22 July" },
                "time": "10:30",
                "place": "Riverside Surgery, room 2",
                "clinician": "Dr Patel",
                "reason": if welsh { "mae'r meddyg yn sâl" } else { "the doctor is unwell" },
                "previous_when": if welsh { "dydd Gwener 19 Gorffennaf am 09:00" } else { "Friday 19 July at 09:00" },
                "previous_place": "Riverside Surgery, room 1",
                "previous_clinician": "Dr Smith",
                "starts_at": "2024-07-22T09:30:00+00:00",
                "previous_starts_at": "2024-07-19T08:00:00+00:00",
            }),
        );
    }
    if has("invite.") {
        sample.insert(
            "invite".into(),
            json!({
                "link": "https://gw.example.nhs.uk/p/A81001/notifications?t=abcdefghij0123456789",
                "expires": "Monday 29 July at 10:30",
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
        assert!(key_info("status.nope").is_none());
    }
}
