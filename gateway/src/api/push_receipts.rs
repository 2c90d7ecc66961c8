//! `POST /push/receipts`: a service worker reports a push message it showed (`shown`, the
//! message is `delivered`) or one the patient tapped (`read`). No API key: the browser
//! proves itself with the receipt token that came inside the encrypted message
//! (`links::push_receipt`). Anonymous and public, so it is bounded before any work: a rate
//! per client address, then a small body, then the token's signature, and only then the
//! database, where each event counts once per message (across instances).

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::domain::{MessageId, MessageState, PushEvent};
use crate::http::client_address::ClientAddress;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::links::ReceiptTokenError;
use crate::store::PushReceiptOutcome;

/// The largest receipt body read: a token of at most `links::MAX_RECEIPT_TOKEN_BYTES` and
/// an event name fit many times over.
pub const MAX_RECEIPT_BODY_BYTES: usize = 1_024;

/// A service worker's report on one push message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushReceipt {
    /// The `receipt_token` of the decrypted push payload.
    token: String,
    /// What happened to the notification.
    event: PushEvent,
}

/// What a push receipt did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushReceiptAnswer {
    message_id: MessageId,
    event: PushEvent,
    /// The message's state after the receipt.
    state: MessageState,
    /// Whether this receipt moved it (a `shown` after `read` does not).
    state_changed: bool,
}

fn invalid_receipt() -> ApiError {
    ApiError::Rejected(
        StatusCode::FORBIDDEN,
        "invalid_receipt",
        "this receipt was not issued by this gateway for a push message".into(),
    )
}

/// `POST /push/receipts`: `{ token, event: shown|read }` from the gateway's service worker.
#[utoipa::path(post, path = "/push/receipts", operation_id = "push_receipt", tag = "callbacks",
    request_body(content = PushReceipt, example = json!({ "token": "4242.3q2-7wAAAAAAAAAAAAAAAA", "event": "shown" })),
    responses(
        (status = 200, description = "The receipt was recorded", body = PushReceiptAnswer),
        (status = 403, description = "`invalid_receipt`: the token is forged, altered, or not of a push message", body = shapes::ErrorBody),
        (status = 409, description = "`receipt_replayed`: this event was already reported for this message; nothing changed", body = shapes::ErrorBody),
        (status = 429, description = "`too_many_receipts`: too many receipts from this client address just now", body = shapes::ErrorBody),
    ))]
pub async fn post(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    body: Body,
) -> Result<Json<PushReceiptAnswer>, ApiError> {
    // Per client address before anything else, so a flood costs no parsing or database work.
    let client = client.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    if let Err(wait) = state.receipt_limits.check(client) {
        return Err(ApiError::Rejected(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_receipts",
            format!(
                "too many receipts from your network just now: try again in {} seconds",
                wait.as_secs().max(1)
            ),
        ));
    }
    let bytes = to_bytes(body, MAX_RECEIPT_BODY_BYTES).await.map_err(|_| {
        ApiError::Rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a receipt is at most {MAX_RECEIPT_BODY_BYTES} bytes"),
        )
    })?;
    let receipt: PushReceipt = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest("malformed_json", e.to_string()))?;
    let links = state.signed_links().map_err(|_| {
        tracing::error!("a push receipt arrived but no link secret is configured");
        ApiError::Unauthorized(
            "callback_not_configured",
            "push receipts are not configured here".into(),
        )
    })?;
    let message_id = links
        .push_receipt_message(&receipt.token)
        .map_err(|e| match e {
            ReceiptTokenError::Malformed => {
                ApiError::BadRequest("malformed_receipt", e.to_string())
            }
            ReceiptTokenError::BadSignature => invalid_receipt(),
        })?;
    let outcome = state
        .store
        .record_push_receipt(message_id, receipt.event, Utc::now())
        .await?;
    match outcome {
        PushReceiptOutcome::Recorded { state, moved } => Ok(Json(PushReceiptAnswer {
            message_id,
            event: receipt.event,
            state,
            state_changed: moved,
        })),
        PushReceiptOutcome::Replayed => Err(ApiError::Conflict(
            "receipt_replayed",
            format!(
                "message {message_id} was already reported {}",
                receipt.event.as_str()
            ),
        )),
        PushReceiptOutcome::NotPush => Err(invalid_receipt()),
    }
}
