//! `/templates`: message wording that administrators edit, with history, diff, rollback
//! and preview. Global defaults are for admins; a practice key edits its own overrides.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{ApiJson, ApiQuery};
use crate::app::AppState;
use crate::auth::Unnamed;
use crate::cost::{estimate_audience, Prices};
use crate::domain::{Channel, Language};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::render::catalogue::{sample_json, variables, KEYS};
use crate::render::editor::{self, EditError, TemplateRef};
use crate::render::validate::{Draft, Limits};

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::Invalid(problems) => ApiError::Unprocessable(
                "invalid_template",
                format!("the template has {} problem(s)", problems.len()),
                json!(problems),
            ),
            EditError::NotFound(what) => ApiError::NotFound(what),
            EditError::Timeout => ApiError::Unprocessable(
                "template_too_slow",
                "the template took too long to render".into(),
                Value::Null,
            ),
            EditError::Store(e) => e.into(),
        }
    }
}

/// Which language and whose template: `?language=cy&practice=A81001`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Which {
    /// `en` (the default) or `cy`.
    #[serde(default)]
    language: Option<String>,
    /// A practice's ODS code, for its own wording; without it, the standard wording.
    #[serde(default)]
    practice: Option<String>,
    /// For a diff: the older version.
    #[serde(default)]
    from: Option<i32>,
    /// For a diff: the newer version.
    #[serde(default)]
    to: Option<i32>,
}

/// Resolves a template reference the caller may read; `editing` also requires the right to
/// change it (`auth::Principal::may_edit_template`). Without `practice` it is the global
/// wording, whoever asks: a practice key names its practice to reach its overrides.
async fn resolve(
    state: &AppState,
    caller: &Caller,
    key: &str,
    channel: &str,
    language: Option<&str>,
    practice: Option<&str>,
    editing: bool,
) -> Result<TemplateRef, ApiError> {
    let channel: Channel = channel
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no channel {channel}")))?;
    let language: Language = match language {
        Some(l) => l.parse().map_err(|e| ApiError::Validation(vec![e]))?,
        None => Language::English,
    };
    let practice = caller
        .template_practice(state.store.as_ref(), practice, Unnamed::Global)
        .await?;
    if editing {
        caller.may_edit_template(practice.as_ref())?;
    }
    let target = TemplateRef {
        key: key.to_string(),
        channel,
        language,
        practice_id: practice.map(|p| p.id),
    };
    target.known()?;
    Ok(target)
}

/// `GET /templates`: every key with its variables, and the versions in use.
#[utoipa::path(get, path = "/templates", operation_id = "list_templates", tag = "templates",
    responses((status = 200, description = "Every key with its variables, and the versions in use", body = shapes::TemplateList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let current = state.store.current_templates().await?;
    let visible: Vec<_> = current
        .into_iter()
        .filter(|t| caller.can_see_template(t.practice_id))
        .map(|t| {
            json!({
                "key": t.key, "channel": t.channel, "language": t.language,
                "practice_id": t.practice_id, "version": t.version,
                "author": t.author, "created_at": t.created_at,
            })
        })
        .collect();
    let keys: Vec<Value> = KEYS
        .iter()
        .map(|k| json!({ "key": k.key, "about": k.about, "channels": k.channels, "variables": variables(k.key) }))
        .collect();
    Ok(Json(json!({ "keys": keys, "templates": visible })))
}

/// `GET /templates/{key}/{channel}`: the version in use for this practice (or globally).
#[utoipa::path(get, path = "/templates/{key}/{channel}", operation_id = "show_template", tag = "templates",
    params(shapes::TemplatePath, Which),
    responses((status = 200, description = "The wording in use", body = shapes::TemplateShown)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, channel)): Path<(String, String)>,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<Json<Value>, ApiError> {
    let target = resolve(
        &state,
        &caller,
        &key,
        &channel,
        which.language.as_deref(),
        which.practice.as_deref(),
        false,
    )
    .await?;
    let own = editor::history(state.store.as_ref(), &target).await?;
    let current = match own.into_iter().next() {
        Some(v) => v,
        None => {
            // No override: the global template is what this practice uses.
            let global = TemplateRef {
                practice_id: None,
                ..target.clone()
            };
            editor::history(state.store.as_ref(), &global)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    ApiError::NotFound(format!("no {} template for {key}", target.channel))
                })?
        }
    };
    Ok(Json(
        json!({ "template": current, "variables": variables(&key) }),
    ))
}

/// `GET /templates/{key}/{channel}/versions`: every version, newest first.
#[utoipa::path(get, path = "/templates/{key}/{channel}/versions", operation_id = "list_template_versions", tag = "templates",
    params(shapes::TemplatePath, Which),
    responses((status = 200, description = "Every version, newest first", body = shapes::TemplateVersions)))]
pub async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, channel)): Path<(String, String)>,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<Json<Value>, ApiError> {
    let target = resolve(
        &state,
        &caller,
        &key,
        &channel,
        which.language.as_deref(),
        which.practice.as_deref(),
        false,
    )
    .await?;
    let versions = editor::history(state.store.as_ref(), &target).await?;
    Ok(Json(json!({ "versions": versions })))
}

/// `GET /templates/{key}/{channel}/diff?from=&to=`: what changed between two versions.
#[utoipa::path(get, path = "/templates/{key}/{channel}/diff", operation_id = "diff_template_versions", tag = "templates",
    params(shapes::TemplatePath, Which),
    responses((status = 200, description = "Each changed part as a unified diff", body = crate::render::editor::VersionDiff)))]
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, channel)): Path<(String, String)>,
    ApiQuery(which): ApiQuery<Which>,
) -> Result<Json<Value>, ApiError> {
    let target = resolve(
        &state,
        &caller,
        &key,
        &channel,
        which.language.as_deref(),
        which.practice.as_deref(),
        false,
    )
    .await?;
    let (Some(from), Some(to)) = (which.from, which.to) else {
        return Err(ApiError::BadRequest(
            "missing_versions",
            "give `from` and `to` version numbers".into(),
        ));
    };
    let diff = editor::diff(state.store.as_ref(), &target, from, to).await?;
    Ok(Json(json!(diff)))
}

/// A new version as the editor sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(flatten)]
    draft: Draft,
}

/// `PUT /templates/{key}/{channel}`: checks and saves a new version.
#[utoipa::path(put, path = "/templates/{key}/{channel}", operation_id = "save_template", tag = "templates",
    params(shapes::TemplatePath),
    request_body(content = SaveRequest, example = json!({
        "practice": "A81001", "body": "{{ practice.name }}: {{ status.headline }}", "note": "shorter"
    })),
    responses((status = 201, description = "The new version, with warnings and the SMS cost", body = crate::render::editor::Saved),
        (status = 422, description = "`invalid_template` (each problem's part, line, column and reason) or `template_too_slow`", body = shapes::ErrorBody)))]
pub async fn save(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, channel)): Path<(String, String)>,
    ApiJson(request): ApiJson<SaveRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let target = resolve(
        &state,
        &caller,
        &key,
        &channel,
        request.language.as_deref(),
        request.practice.as_deref(),
        true,
    )
    .await?;
    let saved = editor::save(
        state.store.as_ref(),
        &state.templates,
        Limits::from_config(&state.config.templates),
        &target,
        &request.draft,
        &caller.actor,
        request.note,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// Which version to go back to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    version: i32,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
}

/// `POST /templates/{key}/{channel}/rollback`: saves an old version as the newest.
#[utoipa::path(post, path = "/templates/{key}/{channel}/rollback", operation_id = "rollback_template", tag = "templates",
    params(shapes::TemplatePath),
    request_body(content = RollbackRequest, example = json!({ "version": 2, "practice": "A81001" })),
    responses((status = 201, description = "The old version, saved as the newest", body = crate::render::editor::Saved)))]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, channel)): Path<(String, String)>,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let target = resolve(
        &state,
        &caller,
        &key,
        &channel,
        request.language.as_deref(),
        request.practice.as_deref(),
        true,
    )
    .await?;
    let saved = editor::rollback(
        state.store.as_ref(),
        &state.templates,
        Limits::from_config(&state.config.templates),
        &target,
        request.version,
        &caller.actor,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// What to preview.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    key: String,
    channel: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
    /// A draft to render instead of the saved template.
    #[serde(default)]
    draft: Option<Draft>,
    /// Values to render with instead of the key's samples.
    #[serde(default)]
    data: Option<Value>,
}

/// `POST /templates/preview`: the wording and SMS cost of a draft or a saved template and,
/// for a practice's status broadcast, who would get it on which channel.
#[utoipa::path(post, path = "/templates/preview", operation_id = "preview_template", tag = "templates",
    request_body(content = PreviewRequest, example = json!({ "key": "status.closed", "channel": "sms", "practice": "A81001" })),
    responses((status = 200, description = "The wording and its SMS cost; for a practice's status message, who would get it", body = shapes::TemplatePreviewAnswer)))]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = resolve(
        &state,
        &caller,
        &request.key,
        &request.channel,
        request.language.as_deref(),
        request.practice.as_deref(),
        false,
    )
    .await?;
    // For a practice, the data (given or sample) reads as that practice's own details.
    let data = match target.practice_id {
        Some(practice_id) => {
            let mut data = request
                .data
                .unwrap_or_else(|| sample_json(&target.key, target.language));
            if let (Some(p), Some(fields)) = (
                state.store.practice_by_id(practice_id).await?,
                data.as_object_mut(),
            ) {
                fields.insert("practice".into(), crate::render::practice_json(&p));
            }
            Some(data)
        }
        None => request.data,
    };
    let preview = editor::preview(
        &state.templates,
        Limits::from_config(&state.config.templates),
        &target,
        request.draft.as_ref(),
        data,
    )
    .await?;
    let mut body = json!(preview);
    if let (Some(practice_id), true) = (target.practice_id, target.key.starts_with("status.")) {
        let audience = state
            .fanout
            .audience(practice_id)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let segments = preview.sms.as_ref().map_or(0, |c| c.segments as u64);
        let sms = audience.recipients.get(&Channel::Sms).copied().unwrap_or(0);
        let estimated_cost = estimate_audience(
            &audience.recipients,
            segments,
            &Prices::from_config(&state.config.providers),
        );
        body["audience"] = json!({
            "recipients": audience.recipients,
            "no_contact": audience.no_contact,
            "sms_segments_total": sms * segments,
            "estimated_cost": estimated_cost,
        });
    }
    Ok(Json(body))
}
