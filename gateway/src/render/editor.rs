//! What administrators do to templates: save a checked draft as a new version, roll back to
//! an old one (as a new version), compare versions, and preview a draft or a saved template.
//!
//! Each function takes only the stores it uses: the templates, and for saving also the audit
//! trail. They are generic over the store (`?Sized`, so a `&dyn Store` passes as it is)
//! rather than taking `&dyn` references, because a saving function hands its store on to
//! [`history`] and to the registry's reload, and a generic store cannot be narrowed to another
//! `dyn` there.

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::catalogue::{context_of, key_info, sample_json};
use super::sms::{cost, SmsCost};
use super::validate::{check, Draft, Limits, Problem, Warning};
use super::{Rendered, TemplateRegistry};
use crate::domain::{Channel, Language, PracticeId, TemplateVersionId};
use crate::store::{
    AccessStore, AuditEntry, NewTemplate, StoreError, TemplateStore, TemplateVersion,
};

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The draft has problems, each with part, line and column.
    #[error("the template has {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
    /// No such key, channel or version.
    #[error("{0}")]
    NotFound(String),
    /// The blocking task checking or rendering the template died.
    #[error("the template could not be rendered")]
    Timeout,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which template: key, channel, language, and the practice for an override.
#[derive(Debug, Clone)]
pub struct TemplateRef {
    /// Template key.
    pub key: String,
    /// Channel.
    pub channel: Channel,
    /// Language.
    pub language: Language,
    /// The practice whose override it is; `None` for the global default.
    pub practice_id: Option<PracticeId>,
}

impl TemplateRef {
    /// Refuses keys and channels the gateway does not know.
    pub fn known(&self) -> Result<(), EditError> {
        match key_info(&self.key) {
            Some(info) if info.channels.contains(&self.channel) => Ok(()),
            Some(_) => Err(EditError::NotFound(format!(
                "{} has no {} template",
                self.key, self.channel
            ))),
            None => Err(EditError::NotFound(format!("no template key {}", self.key))),
        }
    }
}

/// A saved version with what the check found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Saved {
    /// The new version.
    pub template: TemplateVersion,
    /// Warnings (such as characters forcing UCS-2).
    pub warnings: Vec<Warning>,
    /// For SMS, the sample message's cost.
    pub sms: Option<SmsCost>,
}

/// Checks `draft` off the async workers; every render of the check is bounded by the
/// render budget, so the check stops by itself (nothing is left running).
async fn checked(
    target: &TemplateRef,
    draft: &Draft,
    limits: Limits,
) -> Result<super::validate::Checked, EditError> {
    let (key, channel, language, draft) = (
        target.key.clone(),
        target.channel,
        target.language,
        draft.clone(),
    );
    let job = tokio::task::spawn_blocking(move || check(&key, channel, language, &draft, &limits));
    match job.await {
        Ok(result) => result.map_err(EditError::Invalid),
        Err(_) => Err(EditError::Timeout),
    }
}

/// Checks and saves `draft` as the next version, records it in the audit trail, then
/// reloads the templates in use.
pub async fn save<S>(
    store: &S,
    registry: &TemplateRegistry,
    limits: Limits,
    target: &TemplateRef,
    draft: &Draft,
    author: &str,
    note: Option<String>,
) -> Result<Saved, EditError>
where
    S: TemplateStore + AccessStore + ?Sized,
{
    save_as(
        store,
        registry,
        limits,
        target,
        draft,
        author,
        note,
        "template.saved",
    )
    .await
}

/// Saves a checked draft as the next version and audits it as `action`.
#[allow(clippy::too_many_arguments)]
async fn save_as<S>(
    store: &S,
    registry: &TemplateRegistry,
    limits: Limits,
    target: &TemplateRef,
    draft: &Draft,
    author: &str,
    note: Option<String>,
    action: &str,
) -> Result<Saved, EditError>
where
    S: TemplateStore + AccessStore + ?Sized,
{
    target.known()?;
    let checked = checked(target, draft, limits).await?;
    let template = store
        .save_template(&new_template(target, draft, author, note), Utc::now())
        .await?;
    registry.reload(store).await?;
    store
        .audit(
            &AuditEntry {
                actor: author.to_string(),
                action: action.into(),
                practice_id: target.practice_id,
                subject: Some(format!(
                    "template:{}/{}/{}",
                    target.key, target.channel, target.language
                )),
                details: Some(serde_json::json!({ "version": template.version }).to_string()),
            },
            Utc::now(),
        )
        .await?;
    Ok(Saved {
        template,
        warnings: checked.warnings,
        sms: checked.sms,
    })
}

/// Saves a copy of version `version` as the next version (checked again, since limits may
/// have changed), then reloads the templates in use.
pub async fn rollback<S>(
    store: &S,
    registry: &TemplateRegistry,
    limits: Limits,
    target: &TemplateRef,
    version: i32,
    author: &str,
) -> Result<Saved, EditError>
where
    S: TemplateStore + AccessStore + ?Sized,
{
    let old = find_version(store, target, version).await?;
    let draft = draft_of(&old);
    save_as(
        store,
        registry,
        limits,
        target,
        &draft,
        author,
        Some(format!("rolled back to version {version}")),
        "template.rolled_back",
    )
    .await
}

/// The template's history, newest first: the practice's own versions for an override.
pub async fn history<S>(store: &S, target: &TemplateRef) -> Result<Vec<TemplateVersion>, EditError>
where
    S: TemplateStore + ?Sized,
{
    target.known()?;
    Ok(store
        .template_history(
            target.practice_id,
            &target.key,
            target.channel,
            target.language,
        )
        .await?)
}

/// One version of a template.
pub async fn find_version<S>(
    store: &S,
    target: &TemplateRef,
    version: i32,
) -> Result<TemplateVersion, EditError>
where
    S: TemplateStore + ?Sized,
{
    history(store, target)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| {
            EditError::NotFound(format!(
                "{} {} has no version {version}",
                target.key, target.channel
            ))
        })
}

/// The difference between two versions, part by part, as unified diffs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionDiff {
    /// Older version.
    pub from: i32,
    /// Newer version.
    pub to: i32,
    /// Each part that changed, with its unified diff.
    pub parts: Vec<PartDiff>,
}

/// How one part changed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartDiff {
    /// `subject`, `body`, `html` or `link`.
    pub part: &'static str,
    /// Unified diff, lines starting with `-`, `+` or a space.
    pub diff: String,
}

/// Compares versions `from` and `to`.
pub async fn diff<S>(
    store: &S,
    target: &TemplateRef,
    from: i32,
    to: i32,
) -> Result<VersionDiff, EditError>
where
    S: TemplateStore + ?Sized,
{
    let older = find_version(store, target, from).await?;
    let newer = find_version(store, target, to).await?;
    let pairs = [
        ("subject", older.subject.clone(), newer.subject.clone()),
        ("body", Some(older.body.clone()), Some(newer.body.clone())),
        ("html", older.html.clone(), newer.html.clone()),
        ("link", older.link.clone(), newer.link.clone()),
    ];
    let parts = pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(part, a, b)| {
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            let diff = similar::TextDiff::from_lines(&a, &b)
                .unified_diff()
                .context_radius(3)
                .header(&format!("version {from}"), &format!("version {to}"))
                .to_string();
            PartDiff { part, diff }
        })
        .collect();
    Ok(VersionDiff { from, to, parts })
}

/// What a template says with some data, and what it costs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TemplatePreview)]
pub struct Preview {
    /// Email subject or push title.
    pub subject: Option<String>,
    /// The text.
    pub body: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Push link.
    pub link: Option<String>,
    /// For SMS: encoding, characters, units, segments and the characters forcing UCS-2.
    pub sms: Option<SmsCost>,
    /// Warnings about the template itself.
    pub warnings: Vec<Warning>,
    /// The data it was rendered with.
    pub data: Value,
}

/// Renders a draft (checked as a save would be) or, without one, the template in use,
/// with `data` or the key's sample values.
pub async fn preview(
    registry: &TemplateRegistry,
    limits: Limits,
    target: &TemplateRef,
    draft: Option<&Draft>,
    data: Option<Value>,
) -> Result<Preview, EditError> {
    target.known()?;
    let data = data.unwrap_or_else(|| sample_json(&target.key, target.language));
    let (rendered, warnings) = match draft {
        Some(draft) => {
            let checked = checked(target, draft, limits).await?;
            // The check rendered the sample; render the given data the same way.
            let rendered = render_draft(target, draft, &data, limits)
                .await?
                .unwrap_or(checked.rendered);
            (rendered, checked.warnings)
        }
        None => {
            let templates = registry.snapshot();
            let chosen = match target.practice_id {
                Some(practice) => {
                    templates.choose(practice, &target.key, target.channel, target.language)
                }
                None => templates.global(&target.key, target.channel, target.language),
            }
            .ok_or_else(|| {
                EditError::NotFound(format!("no {} template for {}", target.channel, target.key))
            })?;
            let context = context_of(&data);
            let job =
                tokio::task::spawn_blocking(move || templates.render_chosen(chosen, &context));
            let rendered = match job.await {
                Ok(Ok(rendered)) => rendered,
                Ok(Err(e)) => {
                    let kind = match e {
                        super::RenderError::Limit { .. } => super::validate::ProblemKind::TooCostly,
                        _ => super::validate::ProblemKind::Render,
                    };
                    return Err(EditError::Invalid(vec![Problem {
                        part: "body",
                        line: 1,
                        column: 1,
                        kind,
                        reason: e.to_string(),
                    }]));
                }
                Err(_) => return Err(EditError::Timeout),
            };
            (rendered, Vec::new())
        }
    };
    let sms = (target.channel == Channel::Sms).then(|| cost(&rendered.body));
    Ok(Preview {
        subject: rendered.subject,
        body: rendered.body,
        html: rendered.html,
        link: rendered.link,
        sms,
        warnings,
        data,
    })
}

/// Renders an already checked draft with `data`; `None` if the data does not fit it (the
/// sample rendering is shown instead).
async fn render_draft(
    target: &TemplateRef,
    draft: &Draft,
    data: &Value,
    limits: Limits,
) -> Result<Option<Rendered>, EditError> {
    let version = TemplateVersion {
        id: TemplateVersionId::new(0),
        practice_id: target.practice_id,
        key: target.key.clone(),
        channel: target.channel,
        language: target.language,
        version: 0,
        subject: draft.subject.clone().filter(|s| !s.trim().is_empty()),
        body: draft.body.clone(),
        html: draft.html.clone().filter(|s| !s.trim().is_empty()),
        link: draft.link.clone().filter(|s| !s.trim().is_empty()),
        author: String::new(),
        note: None,
        created_at: Utc::now(),
    };
    let context = context_of(data);
    let job = tokio::task::spawn_blocking(move || {
        let (templates, _) = super::MessageTemplates::compile(std::slice::from_ref(&version));
        let templates = templates.with_budget(limits.budget);
        let chosen = templates.global(&version.key, version.channel, version.language)?;
        templates.render_chosen(chosen, &context).ok()
    });
    job.await.map_err(|_| EditError::Timeout)
}

/// A stored version's parts as a draft.
pub fn draft_of(v: &TemplateVersion) -> Draft {
    Draft {
        subject: v.subject.clone(),
        body: v.body.clone(),
        html: v.html.clone(),
        link: v.link.clone(),
    }
}

fn new_template(
    target: &TemplateRef,
    draft: &Draft,
    author: &str,
    note: Option<String>,
) -> NewTemplate {
    let given = |p: &Option<String>| p.clone().filter(|t| !t.trim().is_empty());
    NewTemplate {
        practice_id: target.practice_id,
        key: target.key.clone(),
        channel: target.channel,
        language: target.language,
        subject: given(&draft.subject),
        body: draft.body.clone(),
        html: given(&draft.html),
        link: given(&draft.link),
        author: author.to_string(),
        note,
    }
}
