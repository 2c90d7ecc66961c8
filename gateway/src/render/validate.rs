//! Checks an administrator's draft before it is saved: Tera syntax, variables the key does
//! not offer, constructs edited templates may not use (read from the template's structure,
//! see [`super::structure`]), size, what an SMS will cost, and rendering with hard data
//! (see [`super::hard_data`]) within the render budget. Every problem names the part, line
//! and column, and a render problem the data it failed with.

use serde::{Deserialize, Serialize};

use super::catalogue::{context_of, variables};
use super::sms::{cost, SmsCost};
use super::{add_counted, budget, hard_data, safe_tera, structure, tidy};
use super::{RenderBudget, Rendered};
use crate::config::TemplatesConfig;
use crate::domain::{Channel, Language};

/// Limits on what may be saved.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest part, in bytes.
    pub max_part_bytes: usize,
    /// Most SMS segments a template may render to with the sample values.
    pub max_sms_segments: usize,
    /// Limits on rendering each part, with every case of hard data.
    pub budget: RenderBudget,
}

impl Limits {
    /// The limits `[templates]` sets.
    pub fn from_config(templates: &TemplatesConfig) -> Self {
        Self {
            max_part_bytes: templates.max_part_bytes,
            max_sms_segments: templates.max_sms_segments,
            budget: RenderBudget::from_config(templates),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_part_bytes: 8 * 1024,
            max_sms_segments: 3,
            budget: RenderBudget::default(),
        }
    }
}

/// The parts of one template as an editor sends them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// Email subject or push title.
    #[serde(default)]
    pub subject: Option<String>,
    /// SMS text, email text part or push body.
    pub body: String,
    /// Email HTML part.
    #[serde(default)]
    pub html: Option<String>,
    /// Push link.
    #[serde(default)]
    pub link: Option<String>,
}

/// What kind of problem stops a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Tera cannot parse it.
    Syntax,
    /// It uses a variable the key does not offer.
    UnknownVariable,
    /// It uses a construct edited templates may not use.
    NotAllowed,
    /// A part is too long, or the channel lacks or forbids a part.
    Shape,
    /// It fails when rendered with the sample values or other hard data (the reason names
    /// which).
    Render,
    /// It goes over the render budget (output size, loop iterations or time) with some data.
    TooCostly,
    /// The SMS would take more segments than allowed.
    SmsTooLong,
}

/// One reason a draft cannot be saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Which part: `subject`, `body`, `html` or `link`.
    pub part: &'static str,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong, in words.
    pub reason: String,
}

/// Something worth knowing that does not stop a save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Warning {
    /// Which part.
    pub part: &'static str,
    /// What, in words.
    pub reason: String,
    /// A replacement that avoids it, if there is one.
    pub suggestion: Option<String>,
}

/// A draft that passed: its wording with the sample values, the SMS cost and any warnings.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The draft rendered against the key's sample values.
    pub rendered: Rendered,
    /// For SMS, what the sample message costs.
    pub sms: Option<SmsCost>,
    /// Warnings.
    pub warnings: Vec<Warning>,
}

/// Checks a draft of `key` for `channel` in `language`; on success renders it with the
/// key's sample values.
pub fn check(
    key: &str,
    channel: Channel,
    language: Language,
    draft: &Draft,
    limits: &Limits,
) -> Result<Checked, Vec<Problem>> {
    let parts = parts_of(channel, draft)?;
    let mut problems = Vec::new();
    for (part, text) in &parts {
        if text.len() > limits.max_part_bytes {
            problems.push(problem(
                part,
                1,
                1,
                ProblemKind::Shape,
                format!(
                    "is {} bytes; the most allowed is {}",
                    text.len(),
                    limits.max_part_bytes
                ),
            ));
            continue;
        }
        problems.extend(static_problems(part, text, key));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Compile every part in a fresh Tera, as the registry will: first as written, so syntax
    // errors point at the administrator's own text, then with each loop body counted.
    let mut tera = safe_tera();
    for (part, text) in &parts {
        if let Err(e) = tera.add_raw_template(&name(part), text) {
            problems.push(from_tera(part, text, &e, ProblemKind::Syntax));
        } else if let Err(e) = add_counted(&mut tera, &name(part), text) {
            problems.push(problem(part, 1, 1, ProblemKind::Syntax, e.to_string()));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut rendered = Rendered::default();
    for case in hard_data::cases(key, language) {
        let context = context_of(&case.data);
        for (part, text) in &parts {
            match budget::render(&tera, &name(part), &context, &limits.budget) {
                Ok(out) if case.name == "sample values" => {
                    let out = tidy(&out, *part == "subject" || *part == "link");
                    match *part {
                        "subject" => rendered.subject = Some(out),
                        "html" => rendered.html = Some(out),
                        "link" => rendered.link = Some(out),
                        _ => rendered.body = out,
                    }
                }
                Ok(_) => {}
                // One problem per part: the first case it fails with.
                Err(_) if problems.iter().any(|p| p.part == *part) => {}
                Err(Ok(exceeded)) => problems.push(problem(
                    part,
                    1,
                    1,
                    ProblemKind::TooCostly,
                    format!("with {}: it {exceeded}", case.name),
                )),
                Err(Err(e)) => {
                    // Columns count the loop counters added after each `for` tag.
                    let mut p = from_tera(part, text, &e, ProblemKind::Render);
                    p.reason = format!("with {}: {}", case.name, p.reason);
                    problems.push(p);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut warnings = Vec::new();
    let sms = (channel == Channel::Sms).then(|| cost(&rendered.body));
    if let Some(sms) = &sms {
        if sms.segments > limits.max_sms_segments {
            return Err(vec![problem("body", 1, 1, ProblemKind::SmsTooLong, format!(
                "renders to {} SMS segments with the sample values ({} characters, {}); the most allowed is {}",
                sms.segments, sms.characters, sms.encoding.as_str(), limits.max_sms_segments
            ))]);
        }
        // Characters the template itself writes that force UCS-2 (the sample's own do not count).
        for c in cost(&draft.body).ucs2_characters {
            warnings.push(Warning {
                part: "body",
                reason: format!(
                    "{:?} forces UCS-2: 70 characters per segment instead of 160",
                    c.character
                ),
                suggestion: c.replacement.map(|r| format!("use {r:?} instead")),
            });
        }
    }
    Ok(Checked {
        rendered,
        sms,
        warnings,
    })
}

/// The draft's parts for the channel, refusing parts the channel does not have.
fn parts_of(channel: Channel, draft: &Draft) -> Result<Vec<(&'static str, &str)>, Vec<Problem>> {
    let (subject, html, link) = (
        given(&draft.subject),
        given(&draft.html),
        given(&draft.link),
    );
    let (wants_subject, allows_html, allows_link) = match channel {
        Channel::Sms => (false, false, false),
        Channel::Email => (true, true, false),
        Channel::Push => (true, false, true),
        Channel::NhsApp => (false, false, false),
    };
    let mut problems = Vec::new();
    let mut shape = |part, reason: &str| {
        problems.push(problem(part, 1, 1, ProblemKind::Shape, reason.to_string()))
    };
    if draft.body.trim().is_empty() {
        shape("body", "must not be empty");
    }
    match (wants_subject, subject) {
        (true, None) => shape("subject", "is needed (the email subject or push title)"),
        (false, Some(_)) => shape("subject", "an SMS has no subject"),
        _ => {}
    }
    if html.is_some() && !allows_html {
        shape("html", "only email has an HTML part");
    }
    if link.is_some() && !allows_link {
        shape("link", "only push notifications have a link");
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut parts = vec![("body", draft.body.as_str())];
    parts.extend(subject.map(|s| ("subject", s)));
    parts.extend(html.map(|h| ("html", h)));
    parts.extend(link.map(|l| ("link", l)));
    Ok(parts)
}

/// A part that was given and is not blank.
fn given(part: &Option<String>) -> Option<&str> {
    part.as_deref().filter(|t| !t.trim().is_empty())
}

/// The template name a part compiles under; only the HTML part is autoescaped.
fn name(part: &str) -> String {
    if part == "html" {
        "draft.html".into()
    } else {
        format!("draft.{part}")
    }
}

/// Problems found by reading the source: constructs not allowed (from its structure, so
/// whitespace control cannot hide them) and unknown variables.
fn static_problems(part: &'static str, text: &str, key: &str) -> Vec<Problem> {
    // Malformed source is left to Tera, which names the exact place; were Tera to read
    // it anyway, compiling with the loop counters refuses it.
    let mut problems: Vec<Problem> = structure::problems(text)
        .into_iter()
        .filter(|p| p.not_allowed)
        .map(|p| {
            let (line, column) = position(text, p.at);
            problem(part, line, column, ProblemKind::NotAllowed, p.reason)
        })
        .collect();
    let Ok(pieces) = structure::pieces(text) else {
        return problems;
    };
    let known: Vec<&str> = variables(key).iter().map(|v| v.name).collect();
    let objects: Vec<&str> = known
        .iter()
        .filter_map(|n| n.split_once('.').map(|(o, _)| o))
        .collect();
    for piece in pieces
        .iter()
        .filter(|p| p.kind != structure::PieceKind::Comment)
    {
        let (offset, inside) = (piece.inside_at, piece.inside);
        for (at, path) in paths(inside) {
            let Some((object, _)) = path.split_once('.') else {
                continue;
            };
            let unknown_object = matches!(
                object,
                "practice" | "status" | "patient" | "appointment" | "invite"
            ) && !objects.contains(&object);
            if unknown_object || (objects.contains(&object) && !known.contains(&path)) {
                let (line, column) = position(text, offset + at);
                problems.push(problem(
                    part,
                    line,
                    column,
                    ProblemKind::UnknownVariable,
                    format!(
                        "`{path}` is not a variable of {key}; it offers {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    problems
}

/// Dotted names like `status.until` in an expression (outside string literals), with their
/// offsets.
fn paths(expr: &str) -> Vec<(usize, &str)> {
    let bytes = expr.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' || b == b'`' {
            quote = Some(b);
            i += 1;
            continue;
        }
        if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            let word = expr[start..i].trim_end_matches('.');
            let after_dot = start > 0 && bytes[start - 1] == b'.';
            if word.contains('.') && !after_dot {
                found.push((start, word));
            }
            continue;
        }
        i += 1;
    }
    found
}

/// The line and column (both from 1, column in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn problem(
    part: &'static str,
    line: usize,
    column: usize,
    kind: ProblemKind,
    reason: String,
) -> Problem {
    Problem {
        part,
        line,
        column,
        kind,
        reason,
    }
}

/// A Tera error as a problem, at the span Tera reports (or the start).
fn from_tera(part: &'static str, _text: &str, error: &tera::Error, kind: ProblemKind) -> Problem {
    match error.kind() {
        tera::ErrorKind::SyntaxError(report) | tera::ErrorKind::RenderingError(report) => {
            let span = report.span();
            problem(
                part,
                span.start_line.max(1),
                span.start_col + 1,
                kind,
                report.message().to_string(),
            )
        }
        other => problem(part, 1, 1, kind, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(body: &str) -> Result<Checked, Vec<Problem>> {
        check(
            "status.closed",
            Channel::Sms,
            Language::English,
            &Draft {
                body: body.into(),
                ..Draft::default()
            },
            &Limits::default(),
        )
    }

    fn first(result: Result<Checked, Vec<Problem>>) -> Problem {
        match result {
            Err(problems) => problems[0].clone(),
            Ok(c) => panic!("accepted: {:?}", c.rendered),
        }
    }

    #[test]
    fn a_good_draft_renders_with_the_sample() {
        let checked = sms("{{ practice.name }}: {{ status.headline }}").unwrap();
        assert_eq!(
            checked.rendered.body,
            "Riverside Surgery: The surgery is closed today."
        );
        assert_eq!(checked.sms.unwrap().segments, 1);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let p = first(sms("Hello\n{{ practice.name }\nbye"));
        assert_eq!((p.kind, p.line), (ProblemKind::Syntax, 2), "{p:?}");
        let p = first(sms("{% if status.until %}open"));
        assert_eq!(p.kind, ProblemKind::Syntax, "{p:?}");
    }

    #[test]
    fn unknown_variables_are_found_even_in_conditions() {
        let p = first(sms("Hi\n  {% if status.reopens %}x{% endif %}"));
        assert_eq!(
            (p.kind, p.line, p.column),
            (ProblemKind::UnknownVariable, 2, 9),
            "{p:?}"
        );
        assert!(p.reason.contains("status.reopens"));
        let p = first(sms("{{ appointment.when }}"));
        assert_eq!(p.kind, ProblemKind::UnknownVariable, "{p:?}");
        let p = first(sms("{{ secret }}"));
        assert_eq!(p.kind, ProblemKind::Render, "{p:?}");
        // Dotted words inside strings are text, not variables.
        assert!(sms("{{ \"status.whatever\" }} {{ practice.name }}").is_ok());
    }

    #[test]
    fn other_templates_and_deep_loops_are_not_allowed() {
        let p = first(sms("{% include \"t1/body\" %}"));
        assert_eq!((p.kind, p.column), (ProblemKind::NotAllowed, 3), "{p:?}");
        let p = first(sms(
            "{% for a in range(end=2) %}{% for b in range(end=2) %}{% for c in range(end=2) %}x{% endfor %}{% endfor %}{% endfor %}",
        ));
        assert_eq!(p.kind, ProblemKind::NotAllowed);
        let p = first(sms("{% for a in range(end=1000000) %}x{% endfor %}"));
        assert_eq!(p.kind, ProblemKind::Render, "{p:?}");
    }

    #[test]
    fn sms_length_and_characters_are_judged() {
        let long = "x".repeat(3 * 153 + 1);
        let p = first(sms(&long));
        assert_eq!(p.kind, ProblemKind::SmsTooLong, "{p:?}");
        let checked = sms("It’s closed – call 111").unwrap();
        assert_eq!(checked.sms.unwrap().encoding.as_str(), "ucs2");
        assert_eq!(checked.warnings.len(), 2);
        assert_eq!(
            checked.warnings[0].suggestion.as_deref(),
            Some("use \"'\" instead")
        );
    }

    #[test]
    fn channels_need_their_parts() {
        let email = |d: Draft| {
            check(
                "status.closed",
                Channel::Email,
                Language::English,
                &d,
                &Limits::default(),
            )
        };
        let p = first(email(Draft {
            body: "x".into(),
            ..Draft::default()
        }));
        assert_eq!((p.part, p.kind), ("subject", ProblemKind::Shape));
        let html = email(Draft {
            subject: Some("{{ practice.name }}".into()),
            body: "x".into(),
            html: Some("<p>{{ status.details }}</p>".into()),
            link: None,
        })
        .unwrap();
        assert_eq!(
            html.rendered.html.as_deref(),
            Some("<p>A water pipe has burst.</p>")
        );
        let p = first(sms_with_subject());
        assert_eq!(p.part, "subject");
    }

    fn sms_with_subject() -> Result<Checked, Vec<Problem>> {
        check(
            "status.closed",
            Channel::Sms,
            Language::English,
            &Draft {
                subject: Some("x".into()),
                body: "y".into(),
                ..Draft::default()
            },
            &Limits::default(),
        )
    }

    #[test]
    fn html_is_escaped_whatever_the_values() {
        let checked = check(
            "status.custom",
            Channel::Email,
            Language::English,
            &Draft {
                subject: Some("s".into()),
                body: "b".into(),
                html: Some("<b>{{ \"<script>\" }}</b>".into()),
                link: None,
            },
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            checked.rendered.html.as_deref(),
            Some("<b>&lt;script&gt;</b>")
        );
    }
}
