//! The admin console: sign-in, practices with their status, posting a status change with a
//! preview, a broadcast's live progress (and its cancel), and the audit log. Templates are
//! in `console_templates.rs`, stopping a broadcast in `console_cancel.rs`. Practice users
//! see only their practice; another practice's pages are "not found".

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;
use tera::Context;

use super::pages::{asset, error_page, page};
use super::signin_guard::{Locked, Refusal, Subject};
use crate::app::AppState;
use crate::auth::session::{self, csrf_matches, random_token};
use crate::auth::{users, Denied, Principal};
use crate::domain::{BroadcastId, Channel, MessageState, StatusKind};
use crate::http::client_address::ClientAddress;
use crate::intake::status::{default_headline, post_status_change, StatusChangeRequest};
use crate::store::{AuditEntry, Practice, SessionRecord};
use std::ops::Deref;
use std::time::Instant;

/// `/console`: the practices list is the console's front page.
pub(crate) async fn home() -> Redirect {
    Redirect::to("/console/practices")
}

/// `/static/console.js`: template and status-change previews, a broadcast's live progress.
pub(crate) async fn script() -> Response {
    asset(
        "application/javascript; charset=utf-8",
        include_str!("../../../static/console.js"),
    )
}

/// `/static/console.css`.
pub(crate) async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../static/console.css"),
    )
}

/// A signed-in console user; pages without one redirect to the sign-in page. What the user
/// may see and change is its [`Principal`]'s to say.
pub struct Signed {
    /// Who it is, with every access rule.
    pub principal: Principal,
    /// The session: the user's name and the CSRF token its forms echo.
    pub session: SessionRecord,
}

impl Deref for Signed {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let signed = match session::current(state.store.as_ref(), &parts.headers).await {
            Ok(Some(session)) => Principal::of_session(&session)
                .resolved(state.store.as_ref())
                .await
                .map(|principal| Some(Signed { principal, session })),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match signed {
            Ok(Some(signed)) => Ok(signed),
            Ok(None) => Err(Redirect::to("/console/signin").into_response()),
            Err(e) => {
                tracing::error!(error = %e, "console: could not read the session");
                Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is not answering. Try again shortly.",
                ))
            }
        }
    }
}

impl Signed {
    /// The page context every console page starts from: who is signed in and the CSRF token.
    pub fn context(&self) -> Context {
        let mut c = Context::new();
        c.insert("user", &self.session.user.username);
        c.insert("admin", &self.is_admin());
        c.insert("groups", &self.may_send_groups());
        c.insert("csrf", &self.session.csrf_token);
        c
    }

    /// The refusal of a form without this session's CSRF token (`None`: it has it).
    pub fn refuse_without_csrf(&self, given: &str) -> Option<Response> {
        (!csrf_matches(&self.session, Some(given))).then(|| {
            error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this console. Go back, reload the page and try again.",
            )
        })
    }
}

/// The page for a refusal: what the user may not see is "not found", exactly as if it did
/// not exist; what they may see but not change is 403.
pub fn denied(refusal: Denied) -> Response {
    match refusal {
        Denied::NoPractice(_) => error_page(StatusCode::NOT_FOUND, "There is no such practice."),
        Denied::GlobalWording => error_page(
            StatusCode::FORBIDDEN,
            "Only administrators change the wording every practice uses.",
        ),
        Denied::AdminOnly => error_page(StatusCode::FORBIDDEN, "This is for administrators."),
        Denied::Store(e) => internal(e),
    }
}

/// A logged failure as a 500 page.
pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. It has been logged.",
    )
}

/// The double-submit cookie protecting the sign-in form itself.
const SIGNIN_COOKIE: &str = "gw_signin";

pub(crate) async fn signin_page(headers: HeaderMap, State(state): State<AppState>) -> Response {
    signin_form(&state, &headers, None)
}

fn signin_form(state: &AppState, _headers: &HeaderMap, problem: Option<&str>) -> Response {
    let token = random_token();
    let mut c = Context::new();
    c.insert("csrf", &token);
    c.insert("problem", &problem);
    let mut response = page(
        if problem.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "console/signin.html",
        &c,
    );
    let cookie = format!(
        "{SIGNIN_COOKIE}={token}; Path=/console/signin; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if secure(state) { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn secure(state: &AppState) -> bool {
    state.config.receipts.public_url.starts_with("https://")
}

#[derive(Deserialize)]
pub(crate) struct SigninForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn signin(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let cookie_token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == SIGNIN_COOKIE)
        .map(|(_, v)| v.to_string());
    if form.csrf.is_empty() || cookie_token.as_deref() != Some(form.csrf.as_str()) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired. Reload the page and try again.",
        );
    }
    let guard = state.signin.clone();
    let mut subjects = vec![Subject::user(&form.username)];
    subjects.extend(client.map(Subject::Address));
    if let Some(left) = guard.locked(&subjects, Instant::now()) {
        return refused(&state, &headers, Refusal::Locked(left));
    }
    let user = match state.store.user_by_name(form.username.trim()).await {
        Ok(user) => user,
        Err(e) => return internal(e),
    };
    let password = form.password;
    let checked = guard
        .hash(move || users::authenticate(user, &password))
        .await;
    let user = match checked {
        Ok(Some(user)) => user,
        Ok(None) => {
            for lock in guard.failed(&subjects, Instant::now()) {
                audit_lock(&state, &lock, client).await;
            }
            return signin_form(
                &state,
                &headers,
                Some("That username and password do not match."),
            );
        }
        Err(refusal) => return refused(&state, &headers, refusal),
    };
    guard.succeeded(&subjects[0]);
    match session::start(state.store.as_ref(), &user).await {
        Ok(token) => {
            let mut response = Redirect::to("/console/practices").into_response();
            if let Ok(v) = HeaderValue::from_str(&session::cookie(&token, secure(&state))) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => internal(e),
    }
}

/// The sign-in form again, saying why this attempt was not checked: 429 while locked, 503
/// while too many password checks wait; with `Retry-After`.
fn refused(state: &AppState, headers: &HeaderMap, refusal: Refusal) -> Response {
    let (status, seconds, problem) = match refusal {
        Refusal::Locked(left) => {
            let seconds = left.as_secs().max(1);
            let minutes = seconds.div_ceil(60);
            (
                StatusCode::TOO_MANY_REQUESTS,
                seconds,
                format!(
                    "Too many failed sign-ins. Sign-in is paused for this username or this \
                     network; try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ),
            )
        }
        Refusal::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "Too many sign-ins at once. Try again in a moment.".to_string(),
        ),
    };
    let mut response = signin_form(state, headers, Some(&problem));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Records in the audit log that a user name or an address has just been locked.
async fn audit_lock(state: &AppState, lock: &Locked, client: Option<std::net::IpAddr>) {
    let details = json!({
        "failures": lock.failures,
        "locked_seconds": lock.seconds,
        "address": client.map(|ip| ip.to_string()),
    });
    let entry = AuditEntry {
        actor: "anonymous".into(),
        action: "console.signin_locked".into(),
        practice_id: None,
        subject: Some(lock.subject.audit_subject()),
        details: Some(details.to_string()),
    };
    if let Err(e) = state.store.audit(&entry, chrono::Utc::now()).await {
        tracing::error!(error = %e, "could not audit a sign-in lock");
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn signout(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    if let Some(token) = session::token_in(&headers) {
        if let Err(e) = session::end(state.store.as_ref(), &token).await {
            return internal(e);
        }
    }
    let mut response = Redirect::to("/console/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cookie("", secure(&state))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub(crate) async fn practices(State(state): State<AppState>, signed: Signed) -> Response {
    let all = match state.store.list_practices().await {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    let mut rows = Vec::new();
    for p in all.into_iter().filter(|p| signed.can_see(p.id)) {
        let latest = match state.store.recent_broadcasts(p.id, 1).await {
            Ok(mut b) => b.pop(),
            Err(e) => return internal(e),
        };
        rows.push(json!({
            "ods": p.ods_code.as_str(), "name": p.name,
            "status": latest.as_ref().map(|b| b.kind.as_str()),
            "headline": latest.as_ref().map(|b| b.headline.clone()),
            "since": latest.as_ref().map(|b| crate::render::uk_date_time(b.created_at, p.timezone)),
        }));
    }
    let mut c = signed.context();
    c.insert("practices", &rows);
    page(StatusCode::OK, "console/practices.html", &c)
}

pub(crate) async fn practice(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
) -> Response {
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    let recent = match state.store.recent_broadcasts(practice.id, 10).await {
        Ok(b) => b,
        Err(e) => return internal(e),
    };
    let broadcasts: Vec<_> = recent
        .iter()
        .map(|b| {
            json!({
                "id": b.id, "kind": b.kind.as_str(), "headline": b.headline,
                "at": crate::render::uk_date_time(b.created_at, practice.timezone),
                "superseded": b.superseded_by.is_some(),
                "failure": b.failure,
            })
        })
        .collect();
    // Changes waiting for approval come first on the page.
    let pending = match state.store.proposals(practice.id, 200).await {
        Ok(proposals) => proposals
            .iter()
            .filter(|p| p.state == crate::store::ProposalState::Proposed)
            .count(),
        Err(e) => return internal(e),
    };
    let month = match crate::cost::monthly_cost(
        state.store.as_ref(),
        &crate::cost::Prices::from_config(&state.config.providers),
        (practice.ods_code.as_str(), practice.id),
        crate::cost::Month::of(chrono::Utc::now()),
    )
    .await
    {
        Ok(month) => month,
        Err(e) => return internal(e),
    };
    let mut c = signed.context();
    c.insert("pending", &pending);
    c.insert("month_cost", &month);
    c.insert("month_pounds", &month.cost.pounds());
    c.insert("month_messages", &month.cost.describe_messages());
    c.insert(
        "practice",
        &json!({ "ods": practice.ods_code.as_str(), "name": practice.name }),
    );
    // Each kind with the headline patients see when none is typed.
    let kinds: Vec<_> = StatusKind::ALL
        .iter()
        .map(|k| json!({ "kind": k.as_str(), "headline": default_headline(*k) }))
        .collect();
    c.insert("kinds", &kinds);
    c.insert("broadcasts", &broadcasts);
    page(StatusCode::OK, "console/practice.html", &c)
}

#[derive(Deserialize)]
pub(crate) struct StatusForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    #[serde(default)]
    headline: String,
    #[serde(default)]
    details: String,
    /// The headline in Welsh (optional).
    #[serde(default)]
    headline_cy: String,
    /// The details in Welsh (optional).
    #[serde(default)]
    details_cy: String,
}

pub(crate) async fn post_status(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    if let Some(refused) = signed.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    let blank = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let request = StatusChangeRequest {
        kind: form.kind,
        headline: blank(form.headline),
        details: blank(form.details),
        headline_cy: blank(form.headline_cy),
        details_cy: blank(form.details_cy),
        ..Default::default()
    };
    match post_status_change(
        &state.status_changes(),
        &practice,
        &request,
        &signed.actor,
        None,
    )
    .await
    {
        Ok(posted) => {
            Redirect::to(&format!("/console/broadcasts/{}", posted.broadcast_id)).into_response()
        }
        // A failed broadcast is shown with its reason on its own page.
        Err(crate::intake::status::PostStatusError::Fanout(
            crate::fanout::FanoutError::Failed { broadcast_id, .. },
        )) => Redirect::to(&format!("/console/broadcasts/{broadcast_id}")).into_response(),
        Err(e) => {
            let api: crate::http::ApiError = e.into();
            match api {
                crate::http::ApiError::Validation(errors) => error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                other => internal(other),
            }
        }
    }
}

pub(crate) async fn broadcast(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<BroadcastId>,
) -> Response {
    let not_found = || error_page(StatusCode::NOT_FOUND, "There is no such broadcast.");
    let broadcast = match state.store.broadcast(id).await {
        Ok(Some(b)) if signed.can_see(b.practice_id) => b,
        Ok(_) => return not_found(),
        Err(e) => return internal(e),
    };
    let practice = match state.store.practice_by_id(broadcast.practice_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(),
        Err(e) => return internal(e),
    };
    let counts = match state.store.broadcast_counts(id).await {
        Ok(counts) => counts,
        Err(e) => return internal(e),
    };
    let count = |channels: &[Channel], states: &[MessageState]| -> i64 {
        counts
            .iter()
            .filter(|(c, s, _)| channels.contains(c) && states.contains(s))
            .map(|(_, _, n)| n)
            .sum()
    };
    // A cancel is shown with what it stopped and what had already gone.
    let cancel = broadcast.cancel.as_ref().map(|cancel| {
        json!({
            "at": crate::render::uk_date_time(cancel.at, practice.timezone),
            "by": cancel.by, "reason": cancel.reason,
            "cancelled": count(&Channel::ALL, &[MessageState::Cancelled]),
            "gone": count(&Channel::ALL, &[MessageState::Sent, MessageState::Delivered, MessageState::Read]),
        })
    });
    // Queued texts and push notifications wait while the practice's quiet hours are on.
    let now = chrono::Utc::now();
    let held = practice
        .quiet_hours_or(state.config.quiet_hours())
        .and_then(|quiet| quiet.holds(now, now, practice.timezone.tz()))
        .and_then(|until| {
            let waiting = count(&[Channel::Sms, Channel::Push], &[MessageState::Queued]);
            (waiting > 0).then(|| {
                json!({
                    "messages": waiting,
                    "until": crate::render::uk_date_time(until, practice.timezone),
                })
            })
        });
    let mut c = signed.context();
    c.insert(
        "broadcast",
        &json!({
            "id": broadcast.id, "kind": broadcast.kind.as_str(), "headline": broadcast.headline,
            "at": crate::render::uk_date_time(broadcast.created_at, practice.timezone),
            "failure": broadcast.failure,
            "cancel": cancel,
            "held": held,
        }),
    );
    c.insert(
        "practice",
        &json!({ "ods": practice.ods_code.as_str(), "name": practice.name }),
    );
    page(StatusCode::OK, "console/broadcast.html", &c)
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    practice: Option<String>,
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    let visible: Vec<Practice> = match state.store.list_practices().await {
        Ok(all) => all.into_iter().filter(|p| signed.can_see(p.id)).collect(),
        Err(e) => return internal(e),
    };
    let chosen = match &q.practice {
        Some(ods) => match signed.practice(state.store.as_ref(), ods).await {
            Ok(p) => Some(p),
            Err(refusal) => return denied(refusal),
        },
        None => visible.first().cloned(),
    };
    let entries = match &chosen {
        Some(p) => match state.store.audit_trail(p.id, 200).await {
            Ok(entries) => entries,
            Err(e) => return internal(e),
        },
        None => Vec::new(),
    };
    let mut c = signed.context();
    c.insert(
        "practices",
        &visible
            .iter()
            .map(|p| json!({ "ods": p.ods_code.as_str(), "name": p.name }))
            .collect::<Vec<_>>(),
    );
    c.insert("chosen", &chosen.as_ref().map(|p| p.ods_code.as_str()));
    c.insert("entries", &entries);
    page(StatusCode::OK, "console/audit.html", &c)
}
