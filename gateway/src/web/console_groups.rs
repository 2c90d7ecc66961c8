//! The console's "send to many practices": a form for one status change to a list of
//! practices, a practice tag, or every practice the user may see (an administrator all, a
//! federation's user its members); a confirmation page naming the practices it will reach;
//! and the group's progress page (totals and each practice's part, slowest first) with
//! "stop the whole group". Sending, progress and the stop are `intake`'s, as for the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::console::{internal, Signed};
use super::pages::{error_page, page};
use crate::app::AppState;
use crate::auth::session::random_token;
use crate::domain::{StatusGroupId, StatusKind};
use crate::intake::cancel::CancelRequest;
use crate::intake::group_progress::group_progress;
use crate::intake::group_stop::stop_group;
use crate::intake::groups::{post_group, GroupError, GroupRequest};
use crate::intake::status::{default_headline, StatusChangeRequest};

/// The most ODS codes the form's list may hold (a federation's most practices).
const MAX_LISTED: usize = crate::store::MAX_FEDERATION_PRACTICES;

/// The group form, as posted (to confirm, then to send).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GroupForm {
    #[serde(default)]
    csrf: String,
    /// `list`, `tag` or `all`.
    #[serde(default)]
    target: String,
    /// ODS codes, separated by spaces, commas or lines.
    #[serde(default)]
    practices: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    headline: String,
    #[serde(default)]
    details: String,
    /// A random token from the form page: the group's Idempotency-Key, so that sending
    /// twice (a double click, a reload) sends once.
    #[serde(default)]
    token: String,
    /// `yes` once the user has seen which practices it reaches.
    #[serde(default)]
    confirm: String,
}

impl GroupForm {
    /// The group request the form describes.
    fn request(&self) -> GroupRequest {
        let blank = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let codes: Vec<String> = self
            .practices
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|c| !c.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
        GroupRequest {
            status_change: StatusChangeRequest {
                kind: self.kind.clone(),
                headline: blank(&self.headline),
                details: blank(&self.details),
                ..Default::default()
            },
            practices: (self.target == "list").then_some(codes),
            tag: (self.target == "tag").then(|| self.tag.trim().to_string()),
            all: self.target == "all",
        }
    }
}

/// Refuses a user who may not send groups (a practice's user).
fn refuse_practice_user(signed: &Signed) -> Option<Response> {
    (!signed.may_send_groups()).then(|| {
        error_page(
            StatusCode::FORBIDDEN,
            "Sending to many practices is for administrators and federations.",
        )
    })
}

/// The form page, filled with `form` (empty the first time) and any `problem`; with
/// `reach` (the practices it will reach) it is the confirmation step.
fn form_page(
    signed: &Signed,
    form: &GroupForm,
    problem: Option<&str>,
    reach: Option<Vec<serde_json::Value>>,
) -> Response {
    let kinds: Vec<_> = StatusKind::ALL
        .iter()
        .map(|k| json!({ "kind": k.as_str(), "headline": default_headline(*k) }))
        .collect();
    let token = if form.token.is_empty() {
        random_token()
    } else {
        form.token.clone()
    };
    let mut c = signed.context();
    c.insert("kinds", &kinds);
    c.insert(
        "form",
        &json!({
            "target": if form.target.is_empty() { "list" } else { form.target.as_str() },
            "practices": form.practices, "tag": form.tag, "kind": form.kind,
            "headline": form.headline, "details": form.details, "token": token,
        }),
    );
    c.insert("problem", &problem);
    c.insert("confirming", &reach.is_some());
    c.insert("reach", &reach.unwrap_or_default());
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(status, "console/group_new.html", &c)
}

/// `GET /console/groups/new`: the form.
pub(crate) async fn new(signed: Signed) -> Response {
    if let Some(refused) = refuse_practice_user(&signed) {
        return refused;
    }
    form_page(&signed, &GroupForm::default(), None, None)
}

/// The form again saying why the group was refused (or the error page, for a refusal
/// that is not about the form).
fn refused(signed: &Signed, form: &GroupForm, e: GroupError) -> Response {
    let problem = match e {
        GroupError::Invalid(errors) => errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        GroupError::NoPractice(code) => format!("There is no practice {code}."),
        GroupError::KeyReused => {
            "This form was already sent with other values. Start again.".to_string()
        }
        GroupError::NotAllowed => return error_page(StatusCode::FORBIDDEN, &e.to_string()),
        GroupError::Store(e) => return internal(e),
    };
    form_page(signed, form, Some(&problem), None)
}

/// `POST /console/groups`: first shows which practices the change will reach and asks to
/// confirm; confirmed, sends it and shows the group's progress.
pub(crate) async fn send(
    State(state): State<AppState>,
    signed: Signed,
    Form(form): Form<GroupForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    if let Some(refused) = refuse_practice_user(&signed) {
        return refused;
    }
    if form.practices.len() > MAX_LISTED * 12 {
        return form_page(&signed, &form, Some("That list is too long."), None);
    }
    let request = form.request();
    let changes = state.status_changes();
    if form.confirm != "yes" {
        if let Err(errors) = request.status_change.parse(&signed.actor) {
            let problem: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return form_page(&signed, &form, Some(&problem.join("; ")), None);
        }
        return match request.practices(&changes, &signed).await {
            Ok((practices, _)) => {
                let reach = practices
                    .iter()
                    .map(|p| json!({ "ods": p.ods_code.as_str(), "name": p.name }))
                    .collect();
                form_page(&signed, &form, None, Some(reach))
            }
            Err(e) => refused(&signed, &form, e),
        };
    }
    let key =
        Some((signed.idempotency_scope(), form.token.clone())).filter(|_| !form.token.is_empty());
    match post_group(&changes, &request, &signed, key).await {
        Ok(posted) => Redirect::to(&format!("/console/groups/{}", posted.id)).into_response(),
        Err(e) => refused(&signed, &form, e),
    }
}

/// `GET /console/groups/{id}`: the group's progress as the user may see it.
pub(crate) async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<StatusGroupId>,
) -> Response {
    let progress = match group_progress(state.store.as_ref(), id, &signed).await {
        Ok(Some(progress)) => progress,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "There is no such group."),
        Err(e) => return internal(e),
    };
    let mut c = signed.context();
    c.insert("group", &progress);
    c.insert(
        "sent_at",
        &crate::render::uk_date_time(progress.created_at, crate::schedule::PracticeZone::UK),
    );
    c.insert("all_stopped", &(progress.stopped == progress.practices));
    page(StatusCode::OK, "console/group.html", &c)
}

/// The stop's confirmation form.
#[derive(Deserialize)]
pub(crate) struct StopForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/groups/{id}/cancel`: stops every part the user may see, then shows the
/// group again.
pub(crate) async fn stop(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<StatusGroupId>,
    Form(form): Form<StopForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let request = CancelRequest {
        reason: Some(form.reason),
    };
    let reason = match request.parse() {
        Ok(reason) => reason,
        Err(errors) => {
            let problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return error_page(StatusCode::UNPROCESSABLE_ENTITY, &problems.join("; "));
        }
    };
    match stop_group(&state.status_changes(), id, &signed, &reason).await {
        Ok(0) => error_page(StatusCode::NOT_FOUND, "There is no such group."),
        Ok(_) => Redirect::to(&format!("/console/groups/{id}")).into_response(),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_one_group_request() {
        let form = GroupForm {
            target: "list".into(),
            practices: "a81001, B82002\nc83003;;".into(),
            kind: "closed".into(),
            headline: "  ".into(),
            ..Default::default()
        };
        let request = form.request();
        assert_eq!(
            request.practices,
            Some(vec!["A81001".into(), "B82002".into(), "C83003".into()])
        );
        assert!(request.tag.is_none() && !request.all);
        assert_eq!(request.status_change.headline, None);
        let all = GroupForm {
            target: "all".into(),
            practices: "A81001".into(),
            ..Default::default()
        }
        .request();
        assert!(all.all && all.practices.is_none() && all.tag.is_none());
    }
}
