//! One patient's appointment message: the `appointment` variables in the patient's language,
//! and rendering in that language (Welsh then English for a bilingual practice).

use serde_json::{json, Value};

use super::context::{patient_json, practice_json, status_json, time_words};
use super::{MessageTemplates, RenderError, Rendered};
use crate::domain::{Channel, Language};
use crate::store::{AppointmentDetails, Broadcast, FanoutPatient, Practice};

/// What an appointment message says: the appointment as it is now, and as it was before a
/// change (for a moved appointment or a new clinician), with the practice's reason.
#[derive(Debug, Clone, Copy)]
pub struct AppointmentWording<'a> {
    /// The appointment as the patient should now know it.
    pub now: &'a AppointmentDetails,
    /// As it was, for a change.
    pub before: Option<&'a AppointmentDetails>,
    /// Why it changed.
    pub reason: Option<&'a str>,
}

impl AppointmentWording<'_> {
    /// `appointment.{when, on, date, time, place, clinician, reason, previous_when,
    /// previous_on, previous_place, previous_clinician, starts_at, previous_starts_at}` in
    /// `language`. `on` and `previous_on` are the adverb forms ("on Monday ..."; in Welsh the
    /// soft-mutated "ddydd Llun ...", which also follows `o`, `i`, `tan` and `ar`).
    pub fn json(&self, practice: &Practice, language: Language) -> Value {
        let words = time_words(self.now.starts_at, practice.timezone, language);
        let before = self.before;
        let moved = before.filter(|b| b.starts_at != self.now.starts_at);
        let previous = moved.map(|b| time_words(b.starts_at, practice.timezone, language));
        let (previous_when, previous_on) = match previous {
            Some(words) => (Some(words.when), Some(words.on)),
            None => (None, None),
        };
        json!({
            "when": words.when,
            "on": words.on,
            "date": words.date,
            "time": words.time,
            "place": self.now.location,
            "clinician": self.now.clinician,
            "reason": self.reason,
            "previous_when": previous_when,
            "previous_on": previous_on,
            "previous_place": before.and_then(|b| b.location.clone()),
            "previous_clinician": before
                .and_then(|b| b.clinician.clone())
                .filter(|c| Some(c) != self.now.clinician.as_ref()),
            "starts_at": self.now.starts_at.to_rfc3339(),
            "previous_starts_at": moved.map(|b| b.starts_at.to_rfc3339()),
        })
    }

    /// The whole context: `practice`, `patient`, `appointment`, and `status` when a status
    /// change is why the appointment cannot go ahead.
    pub fn context(
        &self,
        practice: &Practice,
        patient: &FanoutPatient,
        status: Option<&Broadcast>,
        language: Language,
    ) -> tera::Context {
        let mut context = tera::Context::new();
        context.insert("practice", &practice_json(practice));
        context.insert("patient", &patient_json(patient));
        context.insert("appointment", &self.json(practice, language));
        if let Some(broadcast) = status {
            context.insert("status", &status_json(practice, broadcast, language));
        }
        context
    }
}

/// Renders `key` on `channel` for one patient: in their language, or Welsh then English for
/// a bilingual practice, each language with its own context. Returns the wording and the
/// version of the (English, when bilingual) template used.
pub fn render_for_patient(
    templates: &MessageTemplates,
    practice: &Practice,
    patient_language: &str,
    key: &str,
    channel: Channel,
    context: impl Fn(Language) -> tera::Context,
) -> Result<(Rendered, i32), RenderError> {
    let render = |language: Language| -> Result<(Rendered, i32), RenderError> {
        let chosen = templates
            .choose(practice.id, key, channel, language)
            .ok_or_else(|| RenderError::Missing {
                key: key.to_string(),
                channel,
            })?;
        Ok((
            templates.render_chosen(chosen, &context(language))?,
            chosen.version,
        ))
    };
    if practice.bilingual {
        let (welsh, _) = render(Language::Welsh)?;
        let (english, version) = render(Language::English)?;
        return Ok((Rendered::bilingual(welsh, english), version));
    }
    render(Language::of_patient(patient_language))
}

/// [`render_for_patient`] on the blocking pool, so rendering never holds an async worker
/// (each part is still bounded by the render budget).
pub async fn render_for_patient_off_runtime(
    templates: std::sync::Arc<MessageTemplates>,
    practice: &Practice,
    patient_language: &str,
    key: &str,
    channel: Channel,
    context: impl Fn(Language) -> tera::Context,
) -> Result<(Rendered, i32), RenderError> {
    let contexts: Vec<(Language, tera::Context)> =
        Language::ALL.iter().map(|l| (*l, context(*l))).collect();
    let (practice, language, key) = (
        practice.clone(),
        patient_language.to_string(),
        key.to_string(),
    );
    let name = key.clone();
    tokio::task::spawn_blocking(move || {
        render_for_patient(&templates, &practice, &language, &key, channel, |l| {
            contexts
                .iter()
                .find(|(language, _)| *language == l)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        })
    })
    .await
    .map_err(|e| RenderError::Tera {
        name,
        reason: format!("rendering task failed: {e}"),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppointmentMode, ChannelOrder, OdsCode};
    use chrono::{TimeZone, Utc};

    fn practice(bilingual: bool) -> Practice {
        Practice {
            id: crate::domain::PracticeId::new(1),
            ods_code: OdsCode::parse("A81001").unwrap(),
            name: "Riverside Surgery".into(),
            phone: Some("01632 960000".into()),
            website: None,
            email: None,
            timezone: crate::schedule::PracticeZone::UK,
            channel_order: ChannelOrder::parse("sms,email").unwrap(),
            urgent_channel_order: ChannelOrder::fastest_first(),
            order_overrides_preference: false,
            bilingual,
            senders: Default::default(),
            quiet_hours: None,
            created_at: Utc::now(),
        }
    }

    fn patient(language: &str) -> FanoutPatient {
        FanoutPatient {
            id: crate::domain::PatientId::new(7),
            nhs_number: "9434765919".into(),
            given_name: Some("Alex".into()),
            family_name: None,
            preferred_channel: None,
            language: language.into(),
            in_nhs_app: false,
            contacts: Vec::new(),
        }
    }

    fn details(hour: u32, clinician: &str) -> AppointmentDetails {
        AppointmentDetails {
            starts_at: Utc.with_ymd_and_hms(2024, 7, 22, hour, 30, 0).unwrap(),
            clinician: Some(clinician.into()),
            location: Some("Room 2".into()),
            mode: AppointmentMode::InPerson,
        }
    }

    #[test]
    fn moved_names_old_and_new_in_practice_time() {
        let (old, new) = (details(8, "Dr Patel"), details(13, "Dr Patel"));
        let wording = AppointmentWording {
            now: &new,
            before: Some(&old),
            reason: Some("the doctor is unwell"),
        };
        let json = wording.json(&practice(false), Language::English);
        assert_eq!(json["when"], "Monday 22 July at 14:30");
        assert_eq!(json["previous_when"], "Monday 22 July at 09:30");
        assert_eq!(json["previous_clinician"], Value::Null, "unchanged");
        assert_eq!(json["on"], "on Monday 22 July at 14:30");
        assert_eq!(json["previous_on"], "on Monday 22 July at 09:30");
        let welsh = wording.json(&practice(false), Language::Welsh);
        assert_eq!(welsh["when"], "dydd Llun 22 Gorffennaf am 14:30");
        assert_eq!(welsh["on"], "ddydd Llun 22 Gorffennaf am 14:30");
        assert_eq!(welsh["previous_on"], "ddydd Llun 22 Gorffennaf am 09:30");
        let unmoved = AppointmentWording {
            now: &new,
            before: Some(&new),
            reason: None,
        };
        let json = unmoved.json(&practice(false), Language::Welsh);
        assert_eq!(json["previous_on"], Value::Null);
        assert_eq!(json["previous_when"], Value::Null);
    }

    #[test]
    fn the_welsh_moved_sms_names_the_old_time_and_the_new_with_mutations() {
        let templates = MessageTemplates::builtin().unwrap();
        let (old, new) = (details(8, "Dr Patel"), details(13, "Dr Patel"));
        let wording = AppointmentWording {
            now: &new,
            before: Some(&old),
            reason: None,
        };
        let practice = practice(false);
        let p = patient("cy");
        let (rendered, _) = render_for_patient(
            &templates,
            &practice,
            "cy",
            "appointment.moved",
            Channel::Sms,
            |l| wording.context(&practice, &p, None, l),
        )
        .unwrap();
        assert!(
            rendered.body.contains(
                "wedi symud eich apwyntiad o ddydd Llun 22 Gorffennaf am 09:30 i ddydd Llun 22 Gorffennaf am 14:30"
            ),
            "{}",
            rendered.body
        );
    }

    #[test]
    fn patients_get_their_language_and_bilingual_practices_welsh_first() {
        let templates = MessageTemplates::builtin().unwrap();
        let (old, new) = (details(8, "Dr Patel"), details(8, "Dr Jones"));
        let wording = AppointmentWording {
            now: &new,
            before: Some(&old),
            reason: None,
        };
        let render = |practice: &Practice, language: &str| {
            let p = patient(language);
            render_for_patient(
                &templates,
                practice,
                language,
                "appointment.changed_clinician",
                Channel::Sms,
                |l| wording.context(practice, &p, None, l),
            )
            .unwrap()
            .0
            .body
        };
        let english = render(&practice(false), "en");
        assert!(english.contains("Dr Jones"), "{english}");
        assert!(english.contains("instead of Dr Patel"), "{english}");
        assert!(english.contains("Monday 22 July at 09:30"), "{english}");
        let welsh = render(&practice(false), "cy");
        assert!(
            welsh.contains("dydd Llun 22 Gorffennaf am 09:30"),
            "{welsh}"
        );
        let both = render(&practice(true), "en");
        assert!(both.starts_with(&welsh), "{both}");
        assert!(both.ends_with(&english), "{both}");
    }
}
