//! Patients' push sign-up: the page an invitation links to (`/p/{ods}/notifications?t=...`),
//! the page for stopping, the JSON calls their script makes, the script and the service
//! worker. The API call that sends an invitation is `api::push::invite`.
//!
//! With an invitation's token the sign-up links the browser to the patient it names (by row
//! id; it also names the practice, and expires: see `intake::invite`), who then gets their
//! appointment messages there too. Without a token the browser follows the practice
//! anonymously, for practice-wide notices only. Stopping needs no token: the push endpoint,
//! which only the browser knows, is the proof.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use tera::Context;

use super::pages::{asset, page};
use crate::app::AppState;
use crate::domain::OdsCode;
use crate::http::client_address::ClientAddress;
use crate::http::push_subscription::{parse_subscription, SubscriptionInput};
use crate::http::ApiError;
use crate::intake::invite::vapid_public_key;
use crate::links::{invite_expiry, InviteError};
use crate::render::uk_date_time;
use crate::store::{Practice, StoreError};

/// `?t=` of the sign-up page.
#[derive(Debug, Deserialize)]
pub(crate) struct SignupQuery {
    t: Option<String>,
}

pub(crate) async fn signup_page(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    Query(query): Query<SignupQuery>,
) -> Response {
    let practice = match practice(&state, &ods).await {
        Ok(Some(practice)) => practice,
        Ok(None) => return not_found_page(),
        Err(e) => return unavailable_page(&e),
    };
    let token = query.t.unwrap_or_default();
    let mut context = practice_context(&practice);
    // What the script needs, on the page that shows the button.
    let (mut vapid, mut shown_token, mut expires) = (String::new(), String::new(), String::new());
    let (status, shows) = match vapid_public_key(&state.config.providers) {
        None => (StatusCode::OK, "unavailable"),
        Some(key) if token.is_empty() => {
            vapid = key;
            (StatusCode::OK, "anonymous")
        }
        Some(key) => match check_token(&state, &practice, &token).await {
            Ok(_) => {
                vapid = key;
                expires = invite_expiry(&token)
                    .map(|at| uk_date_time(at, practice.timezone))
                    .unwrap_or_default();
                shown_token = token;
                (StatusCode::OK, "ready")
            }
            Err(TokenRefused::Expired) => (StatusCode::GONE, "expired"),
            Err(TokenRefused::Invalid) => (StatusCode::BAD_REQUEST, "invalid"),
            Err(TokenRefused::NoSecret) => (StatusCode::OK, "unavailable"),
            Err(TokenRefused::Store(e)) => return unavailable_page(&e),
        },
    };
    context.insert("state", shows);
    context.insert("vapid_key", &vapid);
    context.insert("token", &shown_token);
    context.insert("expires", &expires);
    page(status, "push/signup.html", &context)
}

pub(crate) async fn stop_page(State(state): State<AppState>, Path(ods): Path<String>) -> Response {
    match practice(&state, &ods).await {
        Ok(Some(practice)) => page(
            StatusCode::OK,
            "push/stop.html",
            &practice_context(&practice),
        ),
        Ok(None) => not_found_page(),
        Err(e) => unavailable_page(&e),
    }
}

/// The sign-up call: the invitation's token (empty to follow the practice anonymously) and
/// the browser's subscription.
#[derive(Debug, Deserialize)]
pub(crate) struct SubscribeRequest {
    #[serde(default)]
    token: String,
    subscription: SubscriptionInput,
}

/// Stores the browser's subscription for the patient the token names, or without a token as
/// an anonymous follower of the practice: 201 `{subscribed, linked}`.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    ClientAddress(client): ClientAddress,
    body: Result<Json<SubscribeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body?;
    // Anonymous follows are limited per client address before anything else is done
    // for them, so a flood costs no database work.
    if request.token.is_empty() {
        if let Err(wait) = state
            .follow_limits
            .check(client.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()))
        {
            return Err(too_many(format!(
                "too many sign-ups from your network just now: please try again in {} seconds",
                wait.as_secs().max(1)
            )));
        }
    }
    let practice = practice(&state, &ods)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no practice {ods}")))?;
    let unavailable = || {
        ApiError::Rejected(
            StatusCode::SERVICE_UNAVAILABLE,
            "signup_unavailable",
            "notifications cannot be turned on at the moment".into(),
        )
    };
    if vapid_public_key(&state.config.providers).is_none() {
        return Err(unavailable());
    }
    let push = &state.config.push;
    let addresses = push.address_policy();
    let parse = |input: &SubscriptionInput| {
        parse_subscription(input, &push.endpoint_rules(&addresses)).map_err(ApiError::Validation)
    };
    if request.token.is_empty() {
        // Anonymous (already limited per address above): capped per practice.
        let subscription = parse(&request.subscription)?;
        let added = state
            .store
            .add_follower(
                practice.id,
                &subscription.endpoint,
                &subscription.p256dh,
                &subscription.auth,
                Utc::now(),
                push.followers_per_practice,
            )
            .await?;
        if added.is_none() {
            return Err(too_many(format!(
                "{} cannot take more notification sign-ups without a link from the surgery",
                practice.name
            )));
        }
        return Ok((
            StatusCode::CREATED,
            Json(json!({ "subscribed": true, "linked": false })),
        ));
    }
    let nhs_number = match check_token(&state, &practice, &request.token).await {
        Ok(nhs_number) => nhs_number,
        Err(TokenRefused::Expired) => {
            return Err(ApiError::Rejected(
                StatusCode::GONE,
                "link_expired",
                "this sign-up link has expired: ask the surgery for a new one".into(),
            ))
        }
        Err(TokenRefused::Invalid) => {
            return Err(ApiError::Forbidden(
                "this sign-up link is not valid for this practice".into(),
            ))
        }
        Err(TokenRefused::NoSecret) => return Err(unavailable()),
        Err(TokenRefused::Store(e)) => return Err(e.into()),
    };
    let subscription = parse(&request.subscription)?;
    let gone = || ApiError::NotFound("the patient this link was for is not registered".into());
    state
        .store
        .add_push_subscription(practice.id, &nhs_number, &subscription, Utc::now())
        .await?
        .ok_or_else(gone)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "subscribed": true, "linked": true })),
    ))
}

/// The stop call: the endpoint of the browser's subscription.
#[derive(Debug, Deserialize)]
pub(crate) struct UnsubscribeRequest {
    endpoint: String,
}

/// 429 with the reason, for the sign-up page's script to show.
fn too_many(message: String) -> ApiError {
    ApiError::Rejected(StatusCode::TOO_MANY_REQUESTS, "too_many_follows", message)
}

/// Deletes the practice's push contacts and anonymous followers with this endpoint: 200
/// `{removed}`.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Path(ods): Path<String>,
    body: Result<Json<UnsubscribeRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let practice = practice(&state, &ods)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no practice {ods}")))?;
    // No length cap beyond the body limit: whatever was stored (however long, from before
    // endpoints were capped) can be removed.
    let endpoint = request.endpoint.trim();
    if endpoint.is_empty() {
        return Err(ApiError::Validation(vec![crate::domain::Invalid::new(
            "endpoint",
            "must be the subscription's endpoint URL",
        )]));
    }
    // Endpoints are stored trimmed; older rows may hold the text exactly as it was sent.
    let mut texts = vec![endpoint];
    if request.endpoint != endpoint {
        texts.push(&request.endpoint);
    }
    let mut removed = 0;
    for text in texts {
        removed += state.store.remove_push_endpoint(practice.id, text).await?
            + state
                .store
                .remove_follower_endpoint(practice.id, text)
                .await?;
    }
    Ok(Json(json!({ "removed": removed })))
}

pub(crate) async fn script() -> Response {
    asset(
        "application/javascript; charset=utf-8",
        include_str!("../../../static/push.js"),
    )
}

pub(crate) async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../static/patient.css"),
    )
}

/// The service worker, allowed to control the whole origin so one subscription serves every
/// practice's pages.
pub(crate) async fn service_worker() -> Response {
    let mut response = asset(
        "application/javascript; charset=utf-8",
        include_str!("../../../static/sw.js"),
    );
    response.headers_mut().insert(
        HeaderName::from_static("service-worker-allowed"),
        HeaderValue::from_static("/"),
    );
    response
}

/// Why a sign-up token was not taken.
enum TokenRefused {
    /// Genuine but past its time.
    Expired,
    /// Missing, not genuine, another practice's, or its patient is gone.
    Invalid,
    /// No signing secret is configured, so no token can be checked.
    NoSecret,
    /// The database failed.
    Store(StoreError),
}

/// The NHS number of the patient a sign-up token names, if the token is genuine, current and
/// for `practice`, and the patient is still on the practice's list.
async fn check_token(
    state: &AppState,
    practice: &Practice,
    token: &str,
) -> Result<String, TokenRefused> {
    let links = state.signed_links().map_err(|_| TokenRefused::NoSecret)?;
    let (practice_id, patient_id) = links.invited(token, Utc::now()).map_err(|e| match e {
        InviteError::Expired(_) => TokenRefused::Expired,
        InviteError::Malformed | InviteError::BadSignature => TokenRefused::Invalid,
    })?;
    if practice_id != practice.id {
        return Err(TokenRefused::Invalid);
    }
    match state.store.nhs_number_of(practice.id, patient_id).await {
        Ok(Some(nhs_number)) => Ok(nhs_number),
        Ok(None) => Err(TokenRefused::Invalid),
        Err(e) => Err(TokenRefused::Store(e)),
    }
}

/// The practice with this ODS code; `None` if the code is not one or names no practice.
async fn practice(state: &AppState, ods: &str) -> Result<Option<Practice>, StoreError> {
    match OdsCode::parse(ods) {
        Ok(code) => state.store.practice_by_ods(&code).await,
        Err(_) => Ok(None),
    }
}

/// What every push page shows of the practice, and where its calls go.
fn practice_context(practice: &Practice) -> Context {
    let ods = practice.ods_code.as_str();
    let mut context = Context::new();
    context.insert("practice_name", &practice.name);
    context.insert(
        "practice_phone",
        &practice.phone.clone().unwrap_or_default(),
    );
    context.insert(
        "subscribe_url",
        &format!("/p/{ods}/notifications/subscribe"),
    );
    context.insert("stop_url", &format!("/p/{ods}/notifications/stop"));
    context.insert(
        "unsubscribe_url",
        &format!("/p/{ods}/notifications/unsubscribe"),
    );
    context
}

/// A sign-up page without a practice: "not found", or the database not answering. Patients'
/// pages do not use the console's error page, which points at the console.
fn bare_page(status: StatusCode, state: &str) -> Response {
    let mut context = Context::new();
    for name in [
        "practice_name",
        "practice_phone",
        "vapid_key",
        "token",
        "subscribe_url",
        "stop_url",
        "expires",
    ] {
        context.insert(name, "");
    }
    context.insert("state", state);
    page(status, "push/signup.html", &context)
}

fn not_found_page() -> Response {
    bare_page(StatusCode::NOT_FOUND, "not_found")
}

fn unavailable_page(e: &StoreError) -> Response {
    tracing::error!(error = %e, "push page: the database did not answer");
    bare_page(StatusCode::SERVICE_UNAVAILABLE, "trouble")
}
