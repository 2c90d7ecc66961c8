//! The console's template pages: the list, the editor with live preview and SMS segment
//! counter (in `static/console.js`), saving, history with diffs, and rollback.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::console::{denied, internal, Signed};
use super::pages::{error_page, page};
use crate::app::AppState;
use crate::auth::Unnamed;
use crate::domain::{Channel, Language};
use crate::render::catalogue::{variables, FILTERS, KEYS};
use crate::render::editor::{self, EditError, TemplateRef};
use crate::render::validate::{Draft, Limits};
use crate::store::Practice;

pub(crate) async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let current = match state.store.current_templates().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let practices = match state.store.list_practices().await {
        Ok(all) => all
            .into_iter()
            .filter(|p| signed.can_see(p.id))
            .collect::<Vec<_>>(),
        Err(e) => return internal(e),
    };
    let mut rows = Vec::new();
    for info in KEYS {
        for channel in info.channels {
            for language in Language::ALL {
                let global = current.iter().find(|t| {
                    t.practice_id.is_none()
                        && t.key == info.key
                        && t.channel == *channel
                        && t.language == language
                });
                let own: Vec<_> = current
                    .iter()
                    .filter(|t| {
                        t.practice_id.is_some_and(|p| signed.can_see(p))
                            && t.key == info.key
                            && t.channel == *channel
                            && t.language == language
                    })
                    .filter_map(|t| {
                        let ods = practices
                            .iter()
                            .find(|p| Some(p.id) == t.practice_id)?
                            .ods_code
                            .to_string();
                        Some(json!({ "ods": ods, "version": t.version }))
                    })
                    .collect();
                rows.push(json!({
                    "key": info.key, "about": info.about, "channel": channel, "language": language,
                    "version": global.map(|g| g.version), "overrides": own,
                }));
            }
        }
    }
    let mut c = signed.context();
    c.insert("rows", &rows);
    c.insert(
        "practices",
        &practices
            .iter()
            .map(|p| p.ods_code.to_string())
            .collect::<Vec<_>>(),
    );
    page(StatusCode::OK, "console/templates.html", &c)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Which {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
    #[serde(default)]
    from: Option<i32>,
    #[serde(default)]
    to: Option<i32>,
}

/// The template a page is about, if the user may see it. Without `practice` a practice user
/// means their own practice's wording, an administrator the global one.
async fn target(
    state: &AppState,
    signed: &Signed,
    key: &str,
    channel: &str,
    language: Option<&str>,
    practice: Option<&str>,
) -> Result<(TemplateRef, Option<Practice>), Response> {
    let not_found = || error_page(StatusCode::NOT_FOUND, "There is no such template.");
    let channel: Channel = channel.parse().map_err(|_| not_found())?;
    let language: Language = language.unwrap_or("en").parse().map_err(|_| not_found())?;
    let practice = signed
        .template_practice(state.store.as_ref(), practice, Unnamed::OwnPractice)
        .await
        .map_err(denied)?;
    let target = TemplateRef {
        key: key.to_string(),
        channel,
        language,
        practice_id: practice.as_ref().map(|p| p.id),
    };
    target.known().map_err(|_| not_found())?;
    Ok((target, practice))
}

pub(crate) async fn edit(
    State(state): State<AppState>,
    signed: Signed,
    Path((key, channel)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Response {
    let (target, ods) = match target(
        &state,
        &signed,
        &key,
        &channel,
        which.language.as_deref(),
        which.practice.as_deref(),
    )
    .await
    {
        Ok((target, practice)) => (target, practice.map(|p| p.ods_code.to_string())),
        Err(r) => return r,
    };
    editor_page(&state, &signed, &target, ods, None, StatusCode::OK, &which).await
}

/// The editor with the current (or given) draft, problems if a save failed, and history.
async fn editor_page(
    state: &AppState,
    signed: &Signed,
    target: &TemplateRef,
    ods: Option<String>,
    rejected: Option<(Draft, Vec<crate::render::validate::Problem>)>,
    status: StatusCode,
    which: &Which,
) -> Response {
    let history = match editor::history(state.store.as_ref(), target).await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    // Without its own versions, a practice starts from the global wording.
    let current = match history.first() {
        Some(v) => Some(v.clone()),
        None => match editor::history(
            state.store.as_ref(),
            &TemplateRef {
                practice_id: None,
                ..target.clone()
            },
        )
        .await
        {
            Ok(h) => h.into_iter().next(),
            Err(e) => return internal(e),
        },
    };
    let (draft, problems) = match rejected {
        Some((draft, problems)) => (draft, problems),
        None => (
            current.as_ref().map(editor::draft_of).unwrap_or_default(),
            Vec::new(),
        ),
    };
    let diff = match (which.from, which.to) {
        (Some(from), Some(to)) => {
            match editor::diff(state.store.as_ref(), target, from, to).await {
                Ok(d) => Some(d),
                Err(EditError::NotFound(_)) => None,
                Err(e) => return internal(e),
            }
        }
        _ => None,
    };
    let mut c = signed.context();
    c.insert("key", &target.key);
    c.insert("channel", &target.channel);
    c.insert("language", &target.language);
    c.insert("practice", &ods);
    c.insert("draft", &draft);
    c.insert("problems", &problems);
    c.insert("history", &history);
    c.insert("variables", &variables(&target.key));
    c.insert("filters", FILTERS);
    c.insert("diff", &diff);
    c.insert(
        "inherited",
        &(history.is_empty() && target.practice_id.is_some()),
    );
    page(status, "console/template.html", &c)
}

#[derive(Deserialize)]
pub(crate) struct SaveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    body: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

pub(crate) async fn save(
    State(state): State<AppState>,
    signed: Signed,
    Path((key, channel)): Path<(String, String)>,
    Form(form): Form<SaveForm>,
) -> Response {
    let (target, ods) = match editable(
        &state,
        &signed,
        (&key, &channel),
        &form.csrf,
        form.language.as_deref(),
        form.practice.as_deref(),
    )
    .await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let draft = Draft {
        subject: form.subject,
        body: form.body.replace("\r\n", "\n"),
        html: form.html.map(|h| h.replace("\r\n", "\n")),
        link: form.link,
    };
    let note = form.note.filter(|n| !n.trim().is_empty());
    match editor::save(
        state.store.as_ref(),
        &state.templates,
        Limits::from_config(&state.config.templates),
        &target,
        &draft,
        &signed.actor,
        note,
    )
    .await
    {
        Ok(_) => Redirect::to(&edit_url(&target, ods.as_deref())).into_response(),
        Err(EditError::Invalid(problems)) => {
            editor_page(
                &state,
                &signed,
                &target,
                ods,
                Some((draft, problems)),
                StatusCode::UNPROCESSABLE_ENTITY,
                &Which::default(),
            )
            .await
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct RollbackForm {
    #[serde(default)]
    csrf: String,
    version: i32,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    practice: Option<String>,
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    signed: Signed,
    Path((key, channel)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Response {
    let (target, ods) = match editable(
        &state,
        &signed,
        (&key, &channel),
        &form.csrf,
        form.language.as_deref(),
        form.practice.as_deref(),
    )
    .await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    match editor::rollback(
        state.store.as_ref(),
        &state.templates,
        Limits::from_config(&state.config.templates),
        &target,
        form.version,
        &signed.actor,
    )
    .await
    {
        Ok(_) => Redirect::to(&edit_url(&target, ods.as_deref())).into_response(),
        Err(EditError::NotFound(what)) => error_page(StatusCode::NOT_FOUND, &what),
        Err(EditError::Invalid(problems)) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "That version no longer passes the checks: {}",
                problems
                    .iter()
                    .map(|p| p.reason.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Err(e) => internal(e),
    }
}

/// The template a form changes, after its CSRF token and the user's right to change it
/// (`auth::Principal::may_edit_template`: the standard wording is for administrators).
async fn editable(
    state: &AppState,
    signed: &Signed,
    (key, channel): (&str, &str),
    csrf: &str,
    language: Option<&str>,
    practice: Option<&str>,
) -> Result<(TemplateRef, Option<String>), Response> {
    if let Some(refused) = signed.refuse_without_csrf(csrf) {
        return Err(refused);
    }
    let practice = practice.filter(|p| !p.is_empty());
    let (target, practice) = target(state, signed, key, channel, language, practice).await?;
    signed
        .may_edit_template(practice.as_ref())
        .map_err(denied)?;
    Ok((target, practice.map(|p| p.ods_code.to_string())))
}

fn edit_url(target: &TemplateRef, ods: Option<&str>) -> String {
    let mut url = format!(
        "/console/templates/{}/{}?language={}",
        target.key, target.channel, target.language
    );
    if let Some(ods) = ods {
        url.push_str(&format!("&practice={ods}"));
    }
    url
}
