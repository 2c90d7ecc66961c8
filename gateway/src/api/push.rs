//! `POST /practices/{ods}/patients/{nhs}/push-subscriptions`: a browser's push subscription,
//! checked before it is stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::domain::{Invalid, NhsNumber};
use crate::store::PushSubscription;

/// A subscription as `PushSubscription.toJSON()` gives it.
#[derive(Debug, Deserialize)]
pub struct SubscriptionInput {
    endpoint: String,
    keys: KeysInput,
    /// Browsers add this; it is accepted and ignored.
    #[serde(default, rename = "expirationTime")]
    _expiration_time: Option<serde_json::Value>,
}

/// The subscription's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysInput {
    p256dh: String,
    auth: String,
}

fn base64url(value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .ok()
}

/// Checks a subscription: an https endpoint on a public host (unless allowed in config), a
/// 65-byte uncompressed P-256 key and a 16-byte auth secret.
pub fn parse_subscription(
    input: &SubscriptionInput,
    insecure_hosts: &[String],
) -> Result<PushSubscription, Vec<Invalid>> {
    let mut errors = Vec::new();
    match url::Url::parse(&input.endpoint) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("").to_string();
            let allowed = insecure_hosts.iter().any(|h| h == &host);
            if !allowed {
                if url.scheme() != "https" {
                    errors.push(Invalid::new("endpoint", "must be an https URL"));
                }
                let internal = host.parse::<std::net::IpAddr>().is_ok()
                    || host == "localhost"
                    || !host.contains('.');
                if internal {
                    errors.push(Invalid::new(
                        "endpoint",
                        "must be on a public push service's host name",
                    ));
                }
            }
        }
        Err(e) => errors.push(Invalid::new("endpoint", format!("is not a URL: {e}"))),
    }
    if !base64url(&input.keys.p256dh).is_some_and(|k| k.len() == 65 && k[0] == 4) {
        errors.push(Invalid::new(
            "keys.p256dh",
            "must be a base64url uncompressed P-256 public key (65 bytes)",
        ));
    }
    if base64url(&input.keys.auth).map(|a| a.len()) != Some(16) {
        errors.push(Invalid::new(
            "keys.auth",
            "must be a base64url 16-byte secret",
        ));
    }
    if errors.is_empty() {
        Ok(PushSubscription {
            endpoint: input.endpoint.clone(),
            p256dh: input.keys.p256dh.clone(),
            auth: input.keys.auth.clone(),
        })
    } else {
        Err(errors)
    }
}

/// Stores the subscription for the patient; 201 with the contact's id.
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, nhs)): Path<(String, String)>,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let not_found = || ApiError::NotFound(format!("no patient {nhs} at {}", practice.ods_code));
    let nhs_number = NhsNumber::parse(&nhs).map_err(|_| not_found())?;
    let subscription = parse_subscription(&input, &state.config.push.allow_insecure_hosts)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(endpoint: &str, p256dh_len: usize, auth_len: usize) -> SubscriptionInput {
        let mut key = vec![4u8; p256dh_len];
        key[0] = 4;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        SubscriptionInput {
            endpoint: endpoint.into(),
            keys: KeysInput {
                p256dh: b64(&key),
                auth: b64(&vec![1u8; auth_len]),
            },
            _expiration_time: None,
        }
    }

    #[test]
    fn only_https_public_endpoints_with_real_keys_pass() {
        assert!(parse_subscription(
            &input("https://fcm.googleapis.com/fcm/send/abc", 65, 16),
            &[]
        )
        .is_ok());
        let fields = |r: Result<PushSubscription, Vec<Invalid>>| {
            r.unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(parse_subscription(
                &input("http://push.example.com/x", 65, 16),
                &[]
            )),
            ["endpoint"]
        );
        assert_eq!(
            fields(parse_subscription(
                &input("https://10.0.0.5/x", 65, 16),
                &[]
            )),
            ["endpoint"]
        );
        assert_eq!(
            fields(parse_subscription(
                &input("https://localhost/x", 65, 16),
                &[]
            )),
            ["endpoint"]
        );
        assert_eq!(
            fields(parse_subscription(
                &input("https://push.example.com/x", 64, 8),
                &[]
            )),
            ["keys.p256dh", "keys.auth"]
        );
        assert!(parse_subscription(
            &input("http://127.0.0.1:9/x", 65, 16),
            &["127.0.0.1".into()]
        )
        .is_ok());
    }
}
