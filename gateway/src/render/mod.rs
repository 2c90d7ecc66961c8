//! Message wording: Tera templates per (key, channel), rendered against a context.
//!
//! The shipped defaults live in `templates/messages/<key>.toml`, one table per channel,
//! and are built into the binary.

mod context;

use std::collections::HashMap;

use serde::Deserialize;
use tera::Tera;

pub use context::{status_context, uk_date_time};

use crate::domain::Channel;

/// The shipped templates, one TOML file per key.
const BUILTIN: &[(&str, &str)] = &[
    (
        "status.closed",
        include_str!("../../../templates/messages/status.closed.toml"),
    ),
    (
        "status.phones_down",
        include_str!("../../../templates/messages/status.phones_down.toml"),
    ),
    (
        "status.systems_down",
        include_str!("../../../templates/messages/status.systems_down.toml"),
    ),
    (
        "status.restored",
        include_str!("../../../templates/messages/status.restored.toml"),
    ),
    (
        "status.custom",
        include_str!("../../../templates/messages/status.custom.toml"),
    ),
];

/// The version number of the shipped templates; edits (a later issue) get higher ones.
pub const BUILTIN_VERSION: i32 = 1;

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
    /// Tera refused the template or failed to render it.
    #[error("template {name}: {reason}")]
    Tera {
        /// Template name (`key/channel/part`).
        name: String,
        /// Tera's explanation.
        reason: String,
    },
}

/// The wording of one message: subject (email) or title (push), and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Email subject or push title; `None` for SMS.
    pub subject: Option<String>,
    /// The text.
    pub body: String,
    /// The HTML part (email, when the template has one).
    pub html: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    sms: Option<SmsParts>,
    email: Option<EmailParts>,
    push: Option<PushParts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsParts {
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
}

/// Every message template, compiled once.
pub struct MessageTemplates {
    tera: Tera,
    /// Whether the (key, channel) template reads the patient's own fields, so it must be
    /// rendered per patient rather than once per broadcast.
    personal: HashMap<(String, Channel), bool>,
}

impl MessageTemplates {
    /// Compiles the shipped templates.
    pub fn builtin() -> Result<Self, RenderError> {
        let mut templates = Self {
            tera: Tera::new(),
            personal: HashMap::new(),
        };
        // Only the email HTML part (named `.../html.html`) is HTML: values are escaped there
        // whatever they contain, and nowhere else.
        templates.tera.autoescape_on([".html"]);
        for (key, source) in BUILTIN {
            templates.add_key(key, source)?;
        }
        Ok(templates)
    }

    fn add_key(&mut self, key: &str, source: &str) -> Result<(), RenderError> {
        let file: KeyFile = toml::from_str(source).map_err(|e| RenderError::File {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        let mut parts: Vec<(Channel, &str, String)> = Vec::new();
        if let Some(sms) = file.sms {
            parts.push((Channel::Sms, "body", sms.body));
        }
        if let Some(email) = file.email {
            parts.push((Channel::Email, "subject", email.subject));
            parts.push((Channel::Email, "body", email.text));
            if let Some(html) = email.html {
                parts.push((Channel::Email, "html.html", html));
            }
        }
        if let Some(push) = file.push {
            parts.push((Channel::Push, "subject", push.title));
            parts.push((Channel::Push, "body", push.body));
        }
        for (channel, part, text) in parts {
            let name = part_name(key, channel, part);
            self.tera
                .add_raw_template(&name, &text)
                .map_err(|e| tera_error(&name, &e))?;
            let reads_patient = self
                .tera
                .get_template_variables(&name)
                .map_err(|e| tera_error(&name, &e))?
                .contains("patient");
            let personal = self
                .personal
                .entry((key.to_string(), channel))
                .or_insert(false);
            *personal |= reads_patient;
        }
        Ok(())
    }

    /// Whether the template for (key, channel) exists.
    pub fn has(&self, key: &str, channel: Channel) -> bool {
        self.personal.contains_key(&(key.to_string(), channel))
    }

    /// Whether the template reads the patient's own fields (so it differs per patient).
    pub fn is_personal(&self, key: &str, channel: Channel) -> bool {
        self.personal
            .get(&(key.to_string(), channel))
            .copied()
            .unwrap_or(false)
    }

    /// The version of the template used for (key, channel).
    pub fn version(&self, _key: &str, _channel: Channel) -> i32 {
        BUILTIN_VERSION
    }

    /// Renders the message for (key, channel) against `context`.
    pub fn render(
        &self,
        key: &str,
        channel: Channel,
        context: &tera::Context,
    ) -> Result<Rendered, RenderError> {
        if !self.has(key, channel) {
            return Err(RenderError::Missing {
                key: key.to_string(),
                channel,
            });
        }
        let body = self.render_part(key, channel, "body", context)?;
        let subject = match channel {
            Channel::Sms => None,
            Channel::Email | Channel::Push => {
                Some(self.render_part(key, channel, "subject", context)?)
            }
        };
        let html_name = part_name(key, channel, "html.html");
        let html = if channel == Channel::Email && self.tera.contains_template(&html_name) {
            Some(self.render_part(key, channel, "html.html", context)?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            body,
            html,
        })
    }

    fn render_part(
        &self,
        key: &str,
        channel: Channel,
        part: &str,
        context: &tera::Context,
    ) -> Result<String, RenderError> {
        let name = part_name(key, channel, part);
        let text = self
            .tera
            .render(&name, context)
            .map_err(|e| tera_error(&name, &e))?;
        Ok(tidy(&text, part == "subject"))
    }
}

fn part_name(key: &str, channel: Channel, part: &str) -> String {
    format!("{key}/{channel}/{part}")
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
                assert!(!templates.is_personal(&kind.template_key(), channel));
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
