//! A patient's browsers: `POST /practices/{ods}/patients/{nhs}/push-subscriptions` (a
//! subscription, checked before it is stored) and `POST .../push-invite` (a link to the
//! sign-up page, sent by text or email).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::domain::NhsNumber;
use crate::http::openapi::shapes;
use crate::http::push_subscription::{parse_subscription, SubscriptionInput};
use crate::http::ApiError;
use crate::intake::invite::{send_invite, SendInviteError};

/// Stores the subscription for the patient; 201 with the contact's id.
#[utoipa::path(post, path = "/practices/{ods}/patients/{nhs}/push-subscriptions", operation_id = "register_push_subscription", tag = "push",
    params(shapes::PatientPath),
    request_body(content = SubscriptionInput, example = json!({
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc123",
        "keys": { "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg" }
    })),
    responses((status = 201, description = "The new push contact", body = shapes::PushSubscribed)))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let not_found = || ApiError::NotFound(format!("no patient {nhs} at {}", practice.ods_code));
    let nhs_number = NhsNumber::parse(&nhs).map_err(|_| not_found())?;
    let addresses = state.config.push.address_policy();
    let subscription = parse_subscription(&input, &state.config.push.endpoint_rules(&addresses))
        .map_err(ApiError::Validation)?;
    let id = state
        .store
        .add_push_subscription(practice.id, nhs_number.as_str(), &subscription, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "contact_id": id, "channel": "push" })),
    ))
}

/// `POST /practices/{ods}/patients/{nhs}/push-invite`: texts or emails the patient a
/// link to the sign-up page. 201 `{channel, expires_at, queued}`.
#[utoipa::path(post, path = "/practices/{ods}/patients/{nhs}/push-invite", operation_id = "send_push_invite", tag = "push",
    params(shapes::PatientPath),
    responses((status = 201, description = "The invitation, queued", body = shapes::PushInvited),
        (status = 409, description = "`push_not_configured` or `invite_secret_missing`", body = shapes::ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let nhs_number = NhsNumber::parse(&nhs)
        .map_err(|_| ApiError::NotFound(format!("no patient {nhs} at {}", practice.ods_code)))?;
    let sent = send_invite(
        &state.invitations(),
        &practice,
        nhs_number.as_str(),
        &caller.actor,
    )
    .await
    .map_err(invite_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "channel": sent.channel,
            "expires_at": sent.expires_at,
            "queued": sent.queued,
        })),
    ))
}

fn invite_error(e: SendInviteError) -> ApiError {
    match e {
        SendInviteError::NoSecret(_) => ApiError::Conflict("invite_secret_missing", e.to_string()),
        SendInviteError::PushNotConfigured => push_not_configured(),
        SendInviteError::UnknownPatient(_) => ApiError::NotFound(e.to_string()),
        SendInviteError::NoContact(_) => {
            ApiError::Unprocessable("no_usable_contact", e.to_string(), Value::Null)
        }
        SendInviteError::Render(e) => ApiError::Internal(e.to_string()),
        SendInviteError::Store(e) => e.into(),
    }
}

fn push_not_configured() -> ApiError {
    ApiError::Conflict(
        "push_not_configured",
        SendInviteError::PushNotConfigured.to_string(),
    )
}
