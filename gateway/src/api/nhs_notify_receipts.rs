//! `POST /receipts/nhs-notify`: NHS Notify's message and channel status callbacks.
//!
//! Checked as NHS Notify documents: `x-api-key` must be our API key (else 401) and
//! `x-hmac-sha256-signature` the hex HMAC-SHA256 of the body keyed with
//! `{application id}.{api key}` (else 403); nothing changes for a refused callback. NHS
//! Notify retries callbacks for two hours and may repeat them: a repeat finds its message
//! settled (or followed up) already and changes nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde_json::json;

use super::receipts::{providers_for_callback, secret};
use crate::app::AppState;
use crate::domain::{Channel, MessageId};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::receipts::nhs_notify::{self, Callback, Meaning, MAX_BODY_BYTES, MAX_ITEMS};
use crate::receipts::same_signature;
use crate::store::{FollowUpOutcome, OverdueMessage, Receipt};

/// The callback kind, as receipts record it.
const KIND: &str = "nhs_notify";

/// What one status change did.
enum Done {
    Ignored,
    Recorded { moved: bool, moved_on: bool },
}

/// `POST /receipts/nhs-notify`: NHS Notify's `MessageStatus` and `ChannelStatus` callbacks.
#[utoipa::path(post, path = "/receipts/nhs-notify", operation_id = "nhs_notify_receipt", tag = "callbacks",
    params(
        ("x-api-key" = String, Header, description = "Our NHS Notify API key"),
        ("x-hmac-sha256-signature" = String, Header, description = "Hex HMAC-SHA256 of the body keyed with `{application id}.{api key}`")),
    request_body(content = String, content_type = "application/vnd.api+json",
        example = json!({ "data": [{ "type": "ChannelStatus", "attributes": {
            "messageId": "2WL3qFTEFM0qMY8xjRbt1LIKCzM", "messageReference": "81", "channel": "nhsapp",
            "channelStatus": "failed", "channelFailureReasonCode": "CFR_PDSV_0002" },
            "links": { "message": "https://api.service.nhs.uk/comms/v1/messages/2WL3qFTEFM0qMY8xjRbt1LIKCzM" },
            "meta": { "idempotencyKey": "2515ae6b3a08339fba3534f3b17cd57c" } }] })),
    responses((status = 202, description = "What the callback changed", body = shapes::NhsNotifyAnswer)))]
pub async fn nhs_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let receipts = &state.config.receipts;
    let application_id = secret(&receipts.nhs_notify_application_id_env, KIND)?;
    let api_key = secret(&receipts.nhs_notify_api_key_env, KIND)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if !same_signature(&api_key, &header("x-api-key")) {
        return Err(ApiError::Unauthorized(
            "invalid_api_key",
            "the callback's x-api-key is missing or wrong".into(),
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::Rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a callback may be at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    let expected = nhs_notify::signature(&application_id, &api_key, &body);
    let given = header("x-hmac-sha256-signature").to_ascii_lowercase();
    if !same_signature(&expected, &given) {
        return Err(ApiError::Forbidden(
            "the request's signature does not match".into(),
        ));
    }
    let callback: Callback = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest("malformed_json", e.to_string()))?;
    if callback.data.len() > MAX_ITEMS {
        return Err(ApiError::BadRequest(
            "too_many_items",
            format!("a callback may carry at most {MAX_ITEMS} status changes"),
        ));
    }
    let providers = providers_for_callback(&state, KIND);
    let (mut changed, mut moved_on, mut ignored) = (0, 0, 0);
    for item in &callback.data {
        let Some(meaning) = item.meaning() else {
            ignored += 1;
            continue;
        };
        let found = state
            .store
            .message_by_provider_ref(&providers, &item.attributes.message_id)
            .await?;
        let Some((message_id, _, _)) = found else {
            ignored += 1;
            continue;
        };
        match apply(&state, message_id, &meaning).await? {
            Done::Ignored => ignored += 1,
            Done::Recorded {
                moved,
                moved_on: on,
            } => {
                changed += usize::from(moved);
                moved_on += usize::from(on);
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "received": callback.data.len(),
            "state_changed": changed,
            "moved_on": moved_on,
            "ignored": ignored,
        })),
    ))
}

/// Records one status change of our message. A patient not in the NHS App is marked and,
/// while the message is still `sent`, followed up once on their next channel (the
/// fallback's own record keeps it to once), before the message is marked failed.
async fn apply(state: &AppState, id: MessageId, meaning: &Meaning) -> Result<Done, ApiError> {
    let Some((message, _)) = state.store.message(id).await? else {
        return Ok(Done::Ignored);
    };
    if message.channel != Channel::NhsApp.as_str() {
        return Ok(Done::Ignored);
    }
    let now = Utc::now();
    let mut moved_on = false;
    if meaning.not_in_app && message.state == "sent" {
        let patient_id = match &message.nhs_number {
            Some(nhs) => state.store.patient_id_of(message.practice_id, nhs).await?,
            None => None,
        };
        if let Some(patient_id) = patient_id {
            state
                .store
                .mark_nhs_app_unreachable(patient_id, now)
                .await?;
            let overdue = OverdueMessage {
                id,
                practice_id: message.practice_id,
                patient_id: Some(patient_id),
                broadcast_id: message.broadcast_id,
                channel: Channel::NhsApp,
                template_key: message.template_key.clone(),
                priority: message.priority,
            };
            match state.follow_ups().follow(&overdue, now).await {
                Ok(FollowUpOutcome::Recorded(Some(_))) => {
                    moved_on = true;
                    state.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message = id.get(), error = %e, "could not move a message on from the NHS App");
                }
            }
        }
    }
    let detail = meaning
        .reason_code
        .as_ref()
        .filter(|_| meaning.settles == Some(crate::domain::MessageState::Failed))
        .map(|code| format!("NHS Notify: {} ({code})", meaning.status));
    let receipt = Receipt {
        message_id: id,
        provider: KIND.to_string(),
        status: meaning.status.clone(),
        new_state: meaning.settles,
        detail,
    };
    let moved = state.store.record_receipt(&receipt, now).await?;
    Ok(Done::Recorded { moved, moved_on })
}
