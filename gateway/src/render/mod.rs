//! Message wording: Tera templates per (key, channel), rendered against a context.
//!
//! The shipped defaults live in `templates/messages/<key>.toml`, one table per channel,
//! and are built into the binary.

pub mod appointment;
pub mod budget;
pub mod catalogue;
mod context;
mod date_filters;
pub mod editor;
pub mod hard_data;
#[cfg(test)]
mod proptests;
mod registry;
pub mod sentence;
pub mod sms;
pub mod structure;
pub mod validate;

use std::collections::HashMap;

use serde::Deserialize;
use tera::Tera;

pub use budget::RenderBudget;
pub use context::{
    patient_json, practice_json, status_context, status_context_in, status_json, status_wording,
    time_words, uk_date_time, TimeWords,
};
pub use registry::{LoadError, TemplateRegistry};

use crate::domain::{Channel, Language, PracticeId, TemplateVersionId};
use crate::store::{NewTemplate, TemplateVersion};

/// The shipped templates: one TOML file per key, English in `templates/messages/`, Welsh
/// in `templates/messages/cy/`.
macro_rules! shipped {
    ($($key:literal),* $(,)?) => {
        &[$(
            ($key, Language::English, include_str!(concat!("../../../templates/messages/", $key, ".toml"))),
            ($key, Language::Welsh, include_str!(concat!("../../../templates/messages/cy/", $key, ".toml"))),
        )*]
    };
}

const BUILTIN: &[(&str, Language, &str)] = shipped!(
    "status.closed",
    "status.phones_down",
    "status.systems_down",
    "status.restored",
    "status.custom",
    "appointment.cancelled",
    "appointment.moved",
    "appointment.affected_by_closure",
    "appointment.changed_to_phone",
    "appointment.changed_clinician",
    "push.invite",
);

/// Who the shipped templates are recorded as written by.
pub const SHIPPED_AUTHOR: &str = "shipped with the gateway";

/// A template that would not load or render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The TOML file holding a key's templates is malformed.
    #[error("template file for {key}: {reason}")]
    File {
        /// Template key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// No template for this key and channel.
    #[error("no {channel} template for {key}")]
    Missing {
        /// Template key.
        key: String,
        /// Channel.
        channel: Channel,
    },
    /// The template went over the render budget (output size, loop iterations or time)
    /// and was stopped.
    #[error("template {name} was stopped: it {exceeded}")]
    Limit {
        /// Template name (`key/channel/part`).
        name: String,
        /// Which limit.
        exceeded: budget::Exceeded,
    },
    /// The template uses a construct message templates may not use.
    #[error("template {name}: {reason}")]
    NotAllowed {
        /// Template name (`key/channel/part`).
        name: String,
        /// What, in words.
        reason: String,
    },
    /// Tera refused the template or failed to render it.
    #[error("template {name}: {reason}")]
    Tera {
        /// Template name (`key/channel/part`).
        name: String,
        /// Tera's explanation.
        reason: String,
    },
}

/// The wording of one message: subject (email) or title (push), body, HTML and link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    /// Email subject or push title; `None` for SMS.
    pub subject: Option<String>,
    /// The text.
    pub body: String,
    /// The HTML part (email, when the template has one).
    pub html: Option<String>,
    /// Where a push notification leads, when the template has a link.
    pub link: Option<String>,
}

impl Rendered {
    /// One message in Welsh and English, Welsh first, for a bilingual practice.
    pub fn bilingual(welsh: Rendered, english: Rendered) -> Rendered {
        let join = |cy: Option<String>, en: Option<String>, between: &str| match (cy, en) {
            (Some(cy), Some(en)) if cy != en => Some(format!("{cy}{between}{en}")),
            (cy, en) => cy.or(en),
        };
        Rendered {
            subject: join(welsh.subject, english.subject, " / "),
            body: format!("{}\n\n{}", welsh.body, english.body),
            html: join(
                welsh.html.map(|h| format!("<div lang=\"cy\">{h}</div>")),
                english.html.map(|h| format!("<div lang=\"en\">{h}</div>")),
                "<hr>",
            ),
            link: english.link.or(welsh.link),
        }
    }
}

/// One key's wording in one language, as the shipped TOML files hold it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    sms: Option<SmsParts>,
    email: Option<EmailParts>,
    push: Option<PushParts>,
    nhsapp: Option<NhsAppParts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsParts {
    body: String,
}

/// The NHS App's wording: plain text only (NHS Notify takes it as personalisation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NhsAppParts {
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailParts {
    subject: String,
    text: String,
    html: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushParts {
    title: String,
    body: String,
    link: Option<String>,
}

/// The shipped wording of every key, channel and language, as templates to seed.
pub fn shipped_defaults() -> Result<Vec<NewTemplate>, RenderError> {
    let mut defaults = Vec::new();
    for (key, language, source) in BUILTIN {
        let file: KeyFile = toml::from_str(source).map_err(|e| RenderError::File {
            key: format!("{key} ({language})"),
            reason: e.to_string(),
        })?;
        let template = |channel, subject, body, html, link| NewTemplate {
            practice_id: None,
            key: key.to_string(),
            channel,
            language: *language,
            subject,
            body,
            html,
            link,
            author: SHIPPED_AUTHOR.into(),
            note: None,
        };
        if let Some(sms) = file.sms {
            defaults.push(template(Channel::Sms, None, sms.body, None, None));
        }
        if let Some(email) = file.email {
            defaults.push(template(
                Channel::Email,
                Some(email.subject),
                email.text,
                email.html,
                None,
            ));
        }
        if let Some(push) = file.push {
            defaults.push(template(
                Channel::Push,
                Some(push.title),
                push.body,
                None,
                push.link,
            ));
        }
        if let Some(nhsapp) = file.nhsapp {
            defaults.push(template(Channel::NhsApp, None, nhsapp.body, None, None));
        }
    }
    Ok(defaults)
}

/// Which template a message uses: its row, version and whether it reads the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// The template row (its compiled parts are named after it).
    pub id: TemplateVersionId,
    /// Its version number, recorded on every message.
    pub version: i32,
    /// Whether it reads the patient's own fields, so differs per patient.
    pub personal: bool,
    /// The channel it is for.
    pub channel: Channel,
}

type Scope = (Option<PracticeId>, String, Channel, Language);

/// A compiled set of templates: the versions in use, global and per practice.
pub struct MessageTemplates {
    tera: Tera,
    chosen: HashMap<Scope, Chosen>,
    /// Names of the compiled parts, to know which a template has.
    parts: std::collections::HashSet<String>,
    /// Limits on rendering each part.
    budget: RenderBudget,
}

impl MessageTemplates {
    /// The shipped templates alone, as version 1 (tests and benchmarks).
    pub fn builtin() -> Result<Self, RenderError> {
        let versions: Vec<TemplateVersion> = shipped_defaults()?
            .into_iter()
            .enumerate()
            .map(|(i, t)| TemplateVersion {
                // Ids no stored row has, so the shipped parts never share a name with one.
                id: TemplateVersionId::new(-(i as i64) - 1),
                practice_id: None,
                key: t.key,
                channel: t.channel,
                language: t.language,
                version: 1,
                subject: t.subject,
                body: t.body,
                html: t.html,
                link: t.link,
                author: t.author,
                note: None,
                created_at: chrono::Utc::now(),
            })
            .collect();
        let (templates, broken) = Self::compile(&versions);
        match broken.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(templates),
        }
    }

    /// Compiles stored versions; those that fail (which validation should have prevented)
    /// are left out, so their scope falls back to the global default, and returned.
    pub fn compile(versions: &[TemplateVersion]) -> (Self, Vec<RenderError>) {
        let mut templates = Self {
            tera: safe_tera(),
            chosen: HashMap::new(),
            parts: Default::default(),
            budget: RenderBudget::default(),
        };
        let mut broken = Vec::new();
        for v in versions {
            match templates.add(v) {
                Ok(chosen) => {
                    templates.chosen.insert(
                        (v.practice_id, v.key.clone(), v.channel, v.language),
                        chosen,
                    );
                }
                Err(e) => broken.push(e),
            }
        }
        (templates, broken)
    }

    /// Renders every part within `budget` from now on.
    pub fn with_budget(mut self, budget: RenderBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The limits each part is rendered within.
    pub fn budget(&self) -> RenderBudget {
        self.budget
    }

    /// Compiles a version's parts, refusing those whose structure is not allowed (a stored
    /// template that bypassed or predates the save checks), each loop body counted.
    fn add(&mut self, v: &TemplateVersion) -> Result<Chosen, RenderError> {
        let mut parts: Vec<(&str, &str)> = vec![("body", v.body.as_str())];
        if let Some(subject) = &v.subject {
            parts.push(("subject", subject));
        }
        if let Some(html) = &v.html {
            parts.push(("html.html", html));
        }
        if let Some(link) = &v.link {
            parts.push(("link", link));
        }
        let mut personal = false;
        for (part, text) in parts {
            let name = part_name(v.id, part);
            add_counted(&mut self.tera, &name, text)?;
            personal |= self
                .tera
                .get_template_variables(&name)
                .map_err(|e| tera_error(&name, &e))?
                .contains("patient");
            self.parts.insert(name);
        }
        Ok(Chosen {
            id: v.id,
            version: v.version,
            personal,
            channel: v.channel,
        })
    }

    /// The template for a practice's message: its own override in `language`, else the
    /// global one in `language`, else the same in English.
    pub fn choose(
        &self,
        practice_id: PracticeId,
        key: &str,
        channel: Channel,
        language: Language,
    ) -> Option<Chosen> {
        let find = |scope: Option<PracticeId>, language: Language| {
            self.chosen
                .get(&(scope, key.to_string(), channel, language))
                .copied()
        };
        find(Some(practice_id), language)
            .or_else(|| find(None, language))
            .or_else(|| find(Some(practice_id), Language::English))
            .or_else(|| find(None, Language::English))
    }

    /// The global template for (key, channel, language), without falling back.
    pub fn global(&self, key: &str, channel: Channel, language: Language) -> Option<Chosen> {
        self.chosen
            .get(&(None, key.to_string(), channel, language))
            .copied()
    }

    /// Whether a practice has wording of its own (not the global one) for this template.
    pub fn has_own(
        &self,
        practice_id: PracticeId,
        key: &str,
        channel: Channel,
        language: Language,
    ) -> bool {
        self.chosen
            .contains_key(&(Some(practice_id), key.to_string(), channel, language))
    }

    /// Renders a chosen template against `context`.
    pub fn render_chosen(
        &self,
        chosen: Chosen,
        context: &tera::Context,
    ) -> Result<Rendered, RenderError> {
        let has = |part: &str| self.parts.contains(&part_name(chosen.id, part));
        let part = |part: &str| -> Result<Option<String>, RenderError> {
            if !has(part) {
                return Ok(None);
            }
            let name = part_name(chosen.id, part);
            let text = render_part(&self.tera, &name, context, &self.budget)?;
            Ok(Some(tidy(&text, part == "subject" || part == "link")))
        };
        Ok(Rendered {
            subject: part("subject")?,
            body: part("body")?.unwrap_or_default(),
            html: part("html.html")?,
            link: part("link")?.filter(|l| !l.is_empty()),
        })
    }

    /// Renders the global English template for (key, channel) against `context`.
    pub fn render(
        &self,
        key: &str,
        channel: Channel,
        context: &tera::Context,
    ) -> Result<Rendered, RenderError> {
        let chosen = self
            .chosen
            .get(&(None, key.to_string(), channel, Language::English))
            .copied()
            .ok_or_else(|| RenderError::Missing {
                key: key.to_string(),
                channel,
            })?;
        self.render_chosen(chosen, context)
    }
}

/// A Tera with HTML escaping for `.html` parts only, and `range` capped so a template
/// cannot loop for long (admin-edited templates are data, not code).
pub(crate) fn safe_tera() -> Tera {
    let mut tera = Tera::new();
    tera.autoescape_on([".html"]);
    tera.register_function("range", capped_range);
    budget::register(&mut tera);
    date_filters::register(&mut tera);
    tera.register_filter("sentence", sentence::filter);
    tera
}

/// Most items `range` gives an edited template.
pub const MAX_RANGE: i64 = 50;

/// Checks `text`'s structure and compiles it as `name` with every loop body counted.
pub(crate) fn add_counted(tera: &mut Tera, name: &str, text: &str) -> Result<(), RenderError> {
    if let Some(problem) = structure::problems(text).into_iter().next() {
        return Err(RenderError::NotAllowed {
            name: name.to_string(),
            reason: problem.reason,
        });
    }
    let counted = structure::instrument(text).unwrap_or_else(|| text.to_string());
    tera.add_raw_template(name, &counted)
        .map_err(|e| tera_error(name, &e))
}

/// Renders the compiled part `name` within `budget`.
pub(crate) fn render_part(
    tera: &Tera,
    name: &str,
    context: &tera::Context,
    budget: &RenderBudget,
) -> Result<String, RenderError> {
    budget::render(tera, name, context, budget).map_err(|e| match e {
        Ok(exceeded) => RenderError::Limit {
            name: name.to_string(),
            exceeded,
        },
        Err(e) => tera_error(name, &e),
    })
}

fn capped_range(kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<Vec<i64>> {
    let start: i64 = kwargs.get::<i64>("start")?.unwrap_or(0);
    let end: i64 = kwargs.must_get::<i64>("end")?;
    let step: i64 = kwargs.get::<i64>("step_by")?.unwrap_or(1).max(1);
    if end.saturating_sub(start) / step > MAX_RANGE {
        return Err(tera::Error::message(format!(
            "range would give more than {MAX_RANGE} items"
        )));
    }
    Ok((start..end).step_by(step as usize).collect())
}

fn part_name(id: TemplateVersionId, part: &str) -> String {
    format!("t{id}/{part}")
}

fn tera_error(name: &str, error: &tera::Error) -> RenderError {
    RenderError::Tera {
        name: name.to_string(),
        reason: error.to_string(),
    }
}

/// Trims the ends, joins a one-line part (subject, title) onto one line, and keeps
/// at most one blank line in a row, so optional sections leave no gaps.
fn tidy(text: &str, one_line: bool) -> String {
    if one_line {
        return text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StatusKind;

    fn context(until: Option<&str>) -> tera::Context {
        let mut ctx = tera::Context::new();
        ctx.insert(
            "practice",
            &serde_json::json!({"name": "Riverside Surgery", "phone": "01632 960000", "website": null, "ods_code": "A81001"}),
        );
        ctx.insert(
            "status",
            &serde_json::json!({"kind": "closed", "headline": "The surgery is closed today.", "details": null, "starts": null, "until": until}),
        );
        ctx
    }

    #[test]
    fn every_status_kind_has_every_channel() {
        let templates = MessageTemplates::builtin().unwrap();
        for kind in StatusKind::ALL {
            for channel in Channel::ALL {
                let rendered = templates
                    .render(&kind.template_key(), channel, &context(None))
                    .unwrap();
                assert!(
                    rendered.body.contains("Riverside Surgery")
                        || rendered
                            .subject
                            .as_deref()
                            .unwrap_or("")
                            .contains("Riverside")
                );
                let chosen = templates
                    .global(&kind.template_key(), channel, Language::English)
                    .unwrap();
                assert!(!chosen.personal);
            }
        }
    }

    #[test]
    fn optional_parts_appear_only_when_given() {
        let templates = MessageTemplates::builtin().unwrap();
        let without = templates
            .render("status.closed", Channel::Sms, &context(None))
            .unwrap();
        assert_eq!(
            without.body,
            "Riverside Surgery: The surgery is closed today. For urgent help call 111, or 999 in an emergency."
        );
        let with = templates
            .render(
                "status.closed",
                Channel::Sms,
                &context(Some("on Monday 22 July at 08:00")),
            )
            .unwrap();
        assert!(
            with.body
                .contains("We expect to reopen on Monday 22 July at 08:00."),
            "{}",
            with.body
        );
        let email = templates
            .render("status.closed", Channel::Email, &context(None))
            .unwrap();
        assert!(!email.body.contains("\n\n\n"), "{}", email.body);
        assert_eq!(
            email.subject.as_deref(),
            Some("Riverside Surgery: The surgery is closed today.")
        );
    }

    #[test]
    fn missing_templates_are_reported() {
        let templates = MessageTemplates::builtin().unwrap();
        assert!(matches!(
            templates.render("appointment.nope", Channel::Sms, &context(None)),
            Err(RenderError::Missing { .. })
        ));
    }

    #[test]
    fn every_key_has_welsh_beside_english_and_practices_fall_back_to_it() {
        let templates = MessageTemplates::builtin().unwrap();
        for info in catalogue::KEYS {
            for channel in info.channels {
                for language in Language::ALL {
                    let chosen = templates.global(info.key, *channel, language);
                    assert!(chosen.is_some(), "{} {channel} {language}", info.key);
                    let sample = catalogue::sample(info.key, language);
                    templates.render_chosen(chosen.unwrap(), &sample).unwrap();
                }
            }
        }
        // A practice without overrides gets the global wording in its language.
        let welsh = templates
            .choose(
                PracticeId::new(7),
                "status.closed",
                Channel::Sms,
                Language::Welsh,
            )
            .unwrap();
        assert_eq!(
            Some(welsh),
            templates.global("status.closed", Channel::Sms, Language::Welsh)
        );
    }

    #[test]
    fn shipped_sms_fit_one_segment_in_english() {
        let templates = MessageTemplates::builtin().unwrap();
        for info in catalogue::KEYS {
            let Some(chosen) = templates.global(info.key, Channel::Sms, Language::English) else {
                continue;
            };
            let sample = catalogue::sample(info.key, Language::English);
            let text = templates.render_chosen(chosen, &sample).unwrap().body;
            let cost = sms::cost(&text);
            assert_eq!(cost.encoding, sms::Encoding::Gsm7, "{}: {text}", info.key);
            assert!(
                cost.segments <= 2,
                "{}: {} segments: {text}",
                info.key,
                cost.segments
            );
        }
    }

    #[test]
    fn the_welsh_phone_call_sms_fits_two_gsm7_segments() {
        let key = "appointment.changed_to_phone";
        let templates = MessageTemplates::builtin().unwrap();
        let chosen = templates
            .global(key, Channel::Sms, Language::Welsh)
            .unwrap();
        // A Wednesday in July: the longest Welsh day and month names.
        let at = chrono::DateTime::parse_from_rfc3339("2025-07-23T09:30:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let on = time_words(at, crate::schedule::PracticeZone::UK, Language::Welsh).on;
        assert_eq!(on, "ddydd Mercher 23 Gorffennaf am 10:30");
        let realistic = [
            ("Riverside Surgery", Some("Alex")),
            (
                "Canolfan Iechyd Glan yr Afon, Pen-y-bont ar Ogwr",
                Some("Gwenllian"),
            ),
            ("Meddygfa Bryn Gwyn", None),
        ];
        for (name, given_name) in realistic {
            let mut data = catalogue::sample_json(key, Language::Welsh);
            data["practice"]["name"] = serde_json::json!(name);
            data["patient"]["given_name"] = serde_json::json!(given_name);
            data["appointment"]["on"] = serde_json::json!(on);
            let text = templates
                .render_chosen(chosen, &catalogue::context_of(&data))
                .unwrap()
                .body;
            assert!(text.contains(&on), "{text}");
            let cost = sms::cost(&text);
            assert_eq!(cost.encoding, sms::Encoding::Gsm7, "{text}");
            assert!(cost.segments <= 2, "{} segments: {text}", cost.segments);
        }
        let template = crate::render::shipped_defaults()
            .unwrap()
            .into_iter()
            .find(|t| t.key == key && t.channel == Channel::Sms && t.language == Language::Welsh)
            .unwrap();
        assert!(
            sms::cost(&template.body).ucs2_characters.is_empty(),
            "the wording itself is GSM-7: {}",
            template.body
        );
    }

    /// A headline typed without a full stop.
    fn unstopped(language: Language) -> &'static str {
        match language {
            Language::English => "Our clinical systems are down today",
            Language::Welsh => "Mae ein systemau clinigol i lawr heddiw",
        }
    }

    /// The key's sample data with an [`unstopped`] headline.
    fn unstopped_headline(key: &str, language: Language) -> tera::Context {
        let mut data = catalogue::sample_json(key, language);
        if let Some(status) = data.get_mut("status") {
            status["headline"] = serde_json::Value::from(unstopped(language));
        }
        catalogue::context_of(&data)
    }

    #[test]
    fn headlines_end_their_sentence_in_every_channel_and_language() {
        let templates = MessageTemplates::builtin().unwrap();
        // What follows the headline in `status.systems_down`, channel by channel.
        let next = |channel: Channel, language: Language| match (channel, language) {
            (Channel::Sms, Language::English) => " We may not be able to book",
            (Channel::Email, Language::English) => " While this lasts",
            (Channel::Push, Language::English) => " Bookings may be unavailable.",
            (Channel::Sms, Language::Welsh) => " Efallai na allwn drefnu",
            (Channel::Email, Language::Welsh) => " Tra bydd hyn yn parhau",
            (Channel::Push, Language::Welsh) => " Efallai na allwn drefnu",
            (Channel::NhsApp, Language::English) => " We may not be able to book",
            (Channel::NhsApp, Language::Welsh) => " Efallai na allwn drefnu",
        };
        for language in Language::ALL {
            let ctx = unstopped_headline("status.systems_down", language);
            let ends = match language {
                Language::English => "down today.",
                Language::Welsh => "i lawr heddiw.",
            };
            for channel in Channel::ALL {
                let chosen = templates
                    .global("status.systems_down", channel, language)
                    .unwrap();
                let rendered = templates.render_chosen(chosen, &ctx).unwrap();
                let expected = format!("{ends}{}", next(channel, language));
                assert!(
                    rendered.body.contains(&expected),
                    "{channel} {language}: {}",
                    rendered.body
                );
                if let Some(html) = &rendered.html {
                    assert!(html.contains(&expected), "{language}: {html}");
                }
            }
        }
        // Every shipped wording that prints the headline ends it in the body; a subject
        // keeps it as typed, as a title rather than a sentence.
        for info in catalogue::KEYS {
            for channel in info.channels {
                for language in Language::ALL {
                    let ctx = unstopped_headline(info.key, language);
                    let chosen = templates.global(info.key, *channel, language).unwrap();
                    let rendered = templates.render_chosen(chosen, &ctx).unwrap();
                    let headline = unstopped(language);
                    let parts = [Some(&rendered.body), rendered.html.as_ref()];
                    for part in parts.into_iter().flatten() {
                        if part.contains(headline) {
                            assert!(
                                part.contains(&format!("{headline}.")),
                                "{} {channel} {language}: {part}",
                                info.key
                            );
                        }
                    }
                    if let Some(subject) = &rendered.subject {
                        assert!(
                            !subject.contains(&format!("{headline}.")),
                            "{} {language}: {subject}",
                            info.key
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bilingual_puts_welsh_first() {
        let cy = Rendered {
            subject: Some("Ar gau".into()),
            body: "Mae ar gau.".into(),
            ..Rendered::default()
        };
        let en = Rendered {
            subject: Some("Closed".into()),
            body: "It is closed.".into(),
            ..Rendered::default()
        };
        let both = Rendered::bilingual(cy, en);
        assert_eq!(both.body, "Mae ar gau.\n\nIt is closed.");
        assert_eq!(both.subject.as_deref(), Some("Ar gau / Closed"));
    }

    #[test]
    fn tidy_keeps_single_blank_lines() {
        assert_eq!(tidy("\n a\n\n\n\nb \n", false), "a\n\nb");
        assert_eq!(tidy(" a \n b ", true), "a b");
    }
}

#[cfg(test)]
mod escaping {
    use super::*;

    #[test]
    fn html_part_escapes_values_and_text_parts_do_not() {
        let templates = MessageTemplates::builtin().unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("practice", &serde_json::json!({"name": "A & B <Surgery>", "phone": null, "website": null, "ods_code": "A1"}));
        ctx.insert("status", &serde_json::json!({"kind": "custom", "headline": "<script>x</script>", "details": null, "starts": null, "until": null}));
        let email = templates
            .render("status.custom", Channel::Email, &ctx)
            .unwrap();
        let html = email.html.unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(email.body.contains("<script>x</script>"));
    }
}
