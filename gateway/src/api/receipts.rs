//! Provider callbacks: delivery receipts (`/receipts/{kind}`) and inbound SMS replies
//! (`/inbound/sms/twilio`). No API key: each kind proves itself with its own signature.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::domain::{ContactId, PhoneNumber};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::receipts::{self, Reply, Settles};
use crate::store::{AuditEntry, Receipt};

/// The secret in the environment variable `variable`, or a 401 saying it is not set up.
pub(crate) fn secret(variable: &str, kind: &str) -> Result<String, ApiError> {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            tracing::error!(
                kind,
                variable,
                "a callback arrived but its secret is not configured"
            );
            ApiError::Unauthorized(
                "callback_not_configured",
                format!("{kind} callbacks are not configured here"),
            )
        })
}

fn bad_signature() -> ApiError {
    ApiError::Unauthorized(
        "invalid_signature",
        "the request's signature does not match".into(),
    )
}

/// Checks `X-Twilio-Signature` over the public URL and the form parameters.
fn verify_twilio(
    state: &AppState,
    uri: &OriginalUri,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    let token = secret(&state.config.receipts.twilio_auth_token_env, "twilio")?;
    let url = format!(
        "{}{}",
        state.config.receipts.public_url.trim_end_matches('/'),
        uri.0
    );
    let expected = receipts::twilio_signature(&token, &url, params);
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if receipts::same_signature(&expected, given) {
        Ok(())
    } else {
        Err(bad_signature())
    }
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::BadRequest("missing_field", format!("the callback has no {name}")))
}

/// The receipt callback that settles messages of a provider kind: Twilio's and Notify's
/// their own, every other kind (webhook, smtp, webpush) the gateway's signed `webhook` one.
/// `None` for `log`, which stands in for every kind in development and tests.
fn receipt_callback_of(provider_kind: &str) -> Option<&'static str> {
    match provider_kind {
        "log" => None,
        "twilio" => Some("twilio"),
        "notify" => Some("notify"),
        "nhs_notify" => Some("nhs_notify"),
        _ => Some("webhook"),
    }
}

/// The configured providers whose messages the `callback` kind of receipt may settle.
pub(crate) fn providers_for_callback(state: &AppState, callback: &str) -> Vec<String> {
    state
        .config
        .providers
        .iter()
        .filter(|p| receipt_callback_of(&p.kind).is_none_or(|c| c == callback))
        .map(|p| p.name.clone())
        .collect()
}

/// Records a receipt for the message a provider settled by the `kind` callback knows as
/// `reference`; a reference another kind of provider gave is not found.
async fn settle(
    state: &AppState,
    kind: &str,
    reference: &str,
    status: &str,
    settles: Settles,
    detail: Option<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let providers = providers_for_callback(state, kind);
    let (message_id, _, _) = state
        .store
        .message_by_provider_ref(&providers, reference)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message with reference {reference}")))?;
    let receipt = Receipt {
        message_id,
        provider: kind.to_string(),
        status: status.to_string(),
        new_state: settles,
        detail,
    };
    let moved = state.store.record_receipt(&receipt, Utc::now()).await?;
    Ok(Json(
        json!({ "message_id": message_id, "state_changed": moved }),
    ))
}

/// `POST /receipts/twilio`: Twilio's StatusCallback (form fields `MessageSid`, `MessageStatus`).
#[utoipa::path(post, path = "/receipts/twilio", operation_id = "twilio_receipt", tag = "callbacks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the URL and form")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        example = "MessageSid=SM123&MessageStatus=delivered"),
    responses((status = 200, description = "The message the receipt settled", body = shapes::ReceiptAnswer)))]
pub async fn twilio(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = form(&body);
    verify_twilio(&state, &uri, &headers, &params)?;
    let sid = field(&params, "MessageSid")?;
    let status = field(&params, "MessageStatus")?;
    let detail = params
        .iter()
        .find(|(k, _)| k == "ErrorCode")
        .map(|(_, code)| format!("Twilio error {code}"));
    settle(
        &state,
        "twilio",
        sid,
        status,
        receipts::twilio_status(status),
        detail,
    )
    .await
}

/// A GOV.UK Notify delivery receipt.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NotifyReceipt {
    id: String,
    status: String,
}

/// `POST /receipts/notify`: Notify's callback, authenticated by the bearer token set at Notify.
#[utoipa::path(post, path = "/receipts/notify", operation_id = "notify_receipt", tag = "callbacks",
    params(("Authorization" = String, Header, description = "`Bearer` and the callback token set at GOV.UK Notify")),
    request_body(content = NotifyReceipt, example = json!({ "id": "740e5834-3a29-46b4-9a6f-16142fde533a", "status": "delivered" })),
    responses((status = 200, description = "The message the receipt settled", body = shapes::ReceiptAnswer)))]
pub async fn notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = secret(&state.config.receipts.notify_callback_token_env, "notify")?;
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !receipts::same_signature(&token, given) {
        return Err(bad_signature());
    }
    let receipt: NotifyReceipt = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest("malformed_json", e.to_string()))?;
    let detail = receipts::notify_status(&receipt.status)
        .filter(|s| *s == crate::domain::MessageState::Failed)
        .map(|_| format!("Notify: {}", receipt.status));
    settle(
        &state,
        "notify",
        &receipt.id,
        &receipt.status,
        receipts::notify_status(&receipt.status),
        detail,
    )
    .await
}

/// A `webhook` gateway's delivery receipt.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    reference: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /receipts/webhook`: `{ reference, status: delivered|failed, reason? }`, signed like
/// outgoing webhook requests (`X-Gateway-Signature: sha256=<hex HMAC of the body>`).
#[utoipa::path(post, path = "/receipts/webhook", operation_id = "webhook_receipt", tag = "callbacks",
    params(("X-Gateway-Signature" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of the body")),
    request_body(content = WebhookReceipt, example = json!({ "reference": "gw-81", "status": "failed", "reason": "unknown number" })),
    responses((status = 200, description = "The message the receipt settled", body = shapes::ReceiptAnswer)))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = secret(&state.config.receipts.webhook_secret_env, "webhook")?;
    let given = headers
        .get("x-gateway-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !receipts::same_signature(&receipts::webhook_signature(&secret, &body), given) {
        return Err(bad_signature());
    }
    let receipt: WebhookReceipt = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest("malformed_json", e.to_string()))?;
    let settles = receipts::webhook_status(&receipt.status);
    settle(
        &state,
        "webhook",
        &receipt.reference,
        &receipt.status,
        settles,
        receipt.reason,
    )
    .await
}

/// `POST /inbound/sms/twilio`: a staff member's command or a patient's text. A registered
/// staff number's text is handled as a command (see `intake::staff::inbox`), after this
/// answers, so a slow provider or a long fan-out never holds Twilio's request. Otherwise
/// STOP and friends opt the number out at every practice that has it (each practice's audit
/// trail records it); START opts it back in at the same practices. Answers with empty TwiML
/// (no auto-reply: answers to staff are sent as texts of their own).
#[utoipa::path(post, path = "/inbound/sms/twilio", operation_id = "twilio_inbound_sms", tag = "callbacks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the URL and form")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        example = "From=%2B447700900123&To=%2B447700900999&Body=STOP&MessageSid=SM1"),
    responses((status = 200, description = "Empty TwiML: nothing is texted back", body = String, content_type = "text/xml")))]
pub async fn inbound_twilio(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form(&body);
    verify_twilio(&state, &uri, &headers, &params)?;
    let from = field(&params, "From")?;
    let text = field(&params, "Body")?;
    let inbox = state.staff_inbox();
    let staff = inbox.registrations(from, text).await?;
    state.metrics.inbound_text(!staff.is_empty());
    if !staff.is_empty() {
        let text = text.to_string();
        tokio::spawn(async move { inbox.handle(staff, &text).await });
        return Ok(empty_twiml());
    }
    let reply = receipts::reply_keyword(text);
    if reply != Reply::Other {
        let number = PhoneNumber::parse(from).map_err(|e| ApiError::Validation(vec![e]))?;
        let opted_out = reply == Reply::OptOut;
        let now = Utc::now();
        // Every practice sends through the same senders, so a STOP cannot tell which of
        // them it answers: it stops them all, and START restores the same set.
        let reached = state
            .store
            .set_sms_opt_out_everywhere(number.as_str(), opted_out, now)
            .await?;
        if reached.is_empty() {
            tracing::info!("an SMS reply came from a number no practice knows; nothing to change");
        }
        let action = if opted_out {
            "contact.opted_out"
        } else {
            "contact.opted_in"
        };
        for (practice_id, contacts) in &reached {
            let entry = AuditEntry {
                actor: "patient:sms-reply".into(),
                action: action.into(),
                practice_id: Some(*practice_id),
                subject: None,
                details: Some(
                    json!({ "contacts": contacts, "practices_reached": reached.len() }).to_string(),
                ),
            };
            state.store.audit(&entry, now).await?;
        }
    }
    Ok(empty_twiml())
}

/// TwiML that sends nothing back.
fn empty_twiml() -> Response {
    (
        [(CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}

/// The contact an unsubscribe link names, or 404 for a link that is not ours.
fn unsubscribe_contact(state: &AppState, token: &str) -> Result<ContactId, ApiError> {
    let not_ours = || ApiError::NotFound("this unsubscribe link is not valid".into());
    let links = state.signed_links().map_err(|_| not_ours())?;
    links.unsubscribe_contact(token).ok_or_else(not_ours)
}

/// `GET /unsubscribe/{token}`: a page with one button, so that mail scanners following
/// links cannot unsubscribe anyone by themselves.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    // A token that verifies is digits, a dot and hex: safe to put back in the page.
    unsubscribe_contact(&state, &token)?;
    Ok(Html(format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Stop these emails</title>\
         <body><h1>Stop these emails</h1><p>Press the button to stop emails about your surgery's \
         notices to this address. You can still get texts and other messages you have asked for.</p>\
         <form method=\"post\" action=\"/unsubscribe/{}\"><button type=\"submit\">Unsubscribe</button></form></body></html>",
        token
    )))
}

/// `POST /unsubscribe/{token}`: opts that email address out; also the RFC 8058 one-click
/// target (`List-Unsubscribe=One-Click`).
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<&'static str>, ApiError> {
    let contact_id = unsubscribe_contact(&state, &token)?;
    if !state.store.opt_out_contact(contact_id, Utc::now()).await? {
        return Err(ApiError::NotFound(
            "this unsubscribe link is not valid".into(),
        ));
    }
    Ok(Html(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Unsubscribed</title>\
         <body><h1>You are unsubscribed</h1><p>We will not email this address again about these notices.</p></body></html>",
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Form bodies: arbitrary bytes, and `name=value` pairs with escapes and field names
    /// the callbacks read.
    fn form_body() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            prop::sample::select(vec![
                "From",
                "To",
                "Body",
                "MessageSid",
                "MessageStatus",
                "ErrorCode",
            ])
            .prop_map(String::from),
            "[A-Za-z%+=&]{0,12}",
        ];
        let pairs = prop::collection::vec((name, "\\PC{0,40}"), 0..12).prop_map(|pairs| {
            let mut body = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                body.append_pair(k, v);
            }
            body.finish().into_bytes()
        });
        prop_oneof![pairs, prop::collection::vec(any::<u8>(), 0..600)]
    }

    #[test]
    fn each_provider_kind_has_one_receipt_callback() {
        assert_eq!(receipt_callback_of("twilio"), Some("twilio"));
        assert_eq!(receipt_callback_of("notify"), Some("notify"));
        for kind in ["webhook", "smtp", "webpush"] {
            assert_eq!(receipt_callback_of(kind), Some("webhook"), "{kind}");
        }
        assert_eq!(receipt_callback_of("log"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Receipt and inbound SMS forms of any content are read without panic, into no more
        /// pairs than the body has separators, and every step after reading answers too.
        #[test]
        fn callback_forms_are_read_without_panic(body in form_body()) {
            let params = form(&Bytes::from(body.clone()));
            prop_assert!(params.len() <= body.iter().filter(|b| **b == b'&').count() + 1);
            let signature = receipts::twilio_signature("token", "https://gw.example/x", &params);
            prop_assert!(receipts::same_signature(&signature, &signature));
            if let (Ok(from), Ok(text)) = (field(&params, "From"), field(&params, "Body")) {
                let _ = receipts::reply_keyword(text);
                let _ = PhoneNumber::parse(from);
            }
            if let Ok(status) = field(&params, "MessageStatus") {
                let _ = receipts::twilio_status(status);
            }
        }

        /// JSON receipts (Notify's and the webhook kind's) of any bytes are read or refused.
        #[test]
        fn json_receipts_are_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..400), value in crate::api::extract::properties::json()) {
            let _ = serde_json::from_slice::<NotifyReceipt>(&body);
            let _ = serde_json::from_slice::<WebhookReceipt>(&body);
            if let Ok(receipt) = serde_json::from_value::<NotifyReceipt>(value.clone()) {
                let _ = receipts::notify_status(&receipt.status);
            }
            if let Ok(receipt) = serde_json::from_value::<WebhookReceipt>(value) {
                let _ = receipts::webhook_status(&receipt.status);
            }
        }
    }
}
