//! The data a template is checked against before it is saved: not only the friendly sample,
//! but every optional value absent, every string at its longest allowed length, and Welsh
//! characters at that length. A template that fails or goes over the render budget for any
//! of them would fail for some real broadcast, so it is refused, naming the case.

use serde_json::Value;

use super::catalogue::{sample_json, variables};
use crate::domain::Language;

/// Longest value each free-text variable may hold, in characters, as the gateway accepts
/// them (practice settings, status changes, patient lists, appointment feeds).
const LONGEST: &[(&str, usize)] = &[
    ("practice.name", 200),
    ("practice.phone", 32),
    ("practice.website", 200),
    ("status.headline", 300),
    ("status.details", 2000),
    ("patient.given_name", 100),
    ("patient.family_name", 100),
    ("appointment.place", 200),
    ("appointment.clinician", 200),
    ("appointment.reason", 200),
    ("appointment.previous_place", 200),
    ("appointment.previous_clinician", 200),
];

/// Raw times that are absent whenever their words are.
const ABSENT_WITH: &[(&str, &str)] = &[
    ("status.starts", "status.starts_at"),
    ("status.until", "status.until_at"),
    (
        "appointment.previous_when",
        "appointment.previous_starts_at",
    ),
    ("appointment.previous_on", "appointment.previous_starts_at"),
];

/// One set of data a template must render with.
#[derive(Debug, Clone)]
pub struct HardCase {
    /// What the case is, as a save problem names it.
    pub name: &'static str,
    /// The values.
    pub data: Value,
}

/// The cases a draft of `key` in `language` is rendered with at save, the sample first.
pub fn cases(key: &str, language: Language) -> Vec<HardCase> {
    let sample = sample_json(key, language);
    let mut absent = sample.clone();
    for v in variables(key) {
        if v.about.contains("may be empty") {
            set(&mut absent, v.name, Value::Null);
            for (words, raw) in ABSENT_WITH {
                if *words == v.name {
                    set(&mut absent, raw, Value::Null);
                }
            }
        }
    }
    let names: Vec<&str> = variables(key).iter().map(|v| v.name).collect();
    let longest_with = |text: &str| {
        let mut data = sample.clone();
        for (name, chars) in LONGEST.iter().filter(|(n, _)| names.contains(n)) {
            set(&mut data, name, Value::String(filled(text, *chars)));
        }
        data
    };
    vec![
        HardCase {
            name: "sample values",
            data: sample.clone(),
        },
        HardCase {
            name: "optional values absent",
            data: absent,
        },
        HardCase {
            name: "longest values",
            data: longest_with("Riverside Surgery, room 2 (the doctor is unwell). "),
        },
        HardCase {
            name: "Welsh characters",
            data: longest_with("Mae'r ffôn i lawr; dŵr yn y tŷ, ŵyn â chân – ‘Ŷ’ ïe. "),
        },
    ]
}

/// `text` repeated to exactly `chars` characters.
fn filled(text: &str, chars: usize) -> String {
    text.chars().cycle().take(chars).collect()
}

/// Sets `object.field` in `data` when the object is there.
fn set(data: &mut Value, path: &str, value: Value) {
    if let Some((object, field)) = path.split_once('.') {
        if let Some(Value::Object(fields)) = data.get_mut(object) {
            fields.insert(field.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_cover_absent_longest_and_welsh() {
        let cases = cases("status.custom", Language::English);
        let names: Vec<_> = cases.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "sample values",
                "optional values absent",
                "longest values",
                "Welsh characters"
            ]
        );
        assert_eq!(cases[1].data["status"]["until"], Value::Null);
        assert_eq!(cases[1].data["status"]["until_at"], Value::Null);
        assert_eq!(cases[1].data["practice"]["phone"], Value::Null);
        assert_ne!(cases[1].data["status"]["headline"], Value::Null);
        let details = cases[2].data["status"]["details"].as_str().unwrap();
        assert_eq!(details.chars().count(), 2000);
        let welsh = cases[3].data["status"]["details"].as_str().unwrap();
        assert!(welsh.contains('ŵ') && welsh.chars().count() == 2000);
    }
}

#[cfg(test)]
mod shipped {
    use crate::render::shipped_defaults;
    use crate::render::validate::{check, Draft, Limits};

    #[test]
    fn every_shipped_template_passes_the_save_checks() {
        for t in shipped_defaults().unwrap() {
            let draft = Draft {
                subject: t.subject.clone(),
                body: t.body.clone(),
                html: t.html.clone(),
                link: t.link.clone(),
            };
            let result = check(&t.key, t.channel, t.language, &draft, &Limits::default());
            assert!(
                result.is_ok(),
                "{} {} {}: {:?}",
                t.key,
                t.channel,
                t.language,
                result.err()
            );
        }
    }
}
