//! The `notify` provider: SMS through GOV.UK Notify's API v2, with a one-placeholder template.
//!
//! Notify takes no sender text per message, only `sms_sender_id`: the id of a text message
//! sender registered in the Notify service's settings. So a practice's own sender is used
//! only if `sms_sender_ids` maps it (as the practice wrote it) to such an id; a practice
//! without a mapped sender sends from `sms_sender_id` if set, else from the service's
//! default sender.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::http::{check_http_url, scrub};
use super::{http, Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::Channel;

/// Length of a UUID in its 8-4-4-4-12 text form.
const UUID_LEN: usize = 36;

/// Sends SMS through GOV.UK Notify.
pub struct NotifyProvider {
    name: String,
    client: reqwest::Client,
    url: String,
    service_id: String,
    secret_key: String,
    template_id: String,
    sms_sender_ids: BTreeMap<String, String>,
    default_sender_id: Option<String>,
}

/// The `notify` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySettings {
    /// API root, overridable for tests.
    #[serde(default = "default_base_url")]
    base_url: String,
    /// Environment variable holding the API key (`{name}-{service id}-{secret}`).
    api_key_env: String,
    /// A text-message template whose whole content is `((body))`.
    template_id: String,
    /// Practices' SMS senders, as the practices set them, to the ids (UUIDs) of the
    /// matching senders registered in the Notify service.
    #[serde(default)]
    sms_sender_ids: BTreeMap<String, String>,
    /// The registered sender id for practices whose sender is not in `sms_sender_ids`;
    /// unset: the service's default sender.
    sms_sender_id: Option<String>,
    /// Time allowed for one request, in milliseconds.
    timeout_ms: Option<u64>,
}

fn default_base_url() -> String {
    "https://api.notifications.service.gov.uk".into()
}

/// Notify's error body: `{"status_code": 400, "errors": [{"error": ..., "message": ...}]}`.
#[derive(Debug, Default, Deserialize)]
struct NotifyErrorBody {
    #[serde(default)]
    errors: Vec<NotifyError>,
}

/// One entry of Notify's `errors` list.
#[derive(Debug, Default, Deserialize)]
struct NotifyError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

impl NotifyProvider {
    /// Checks the settings without reading secrets.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        check_settings(config).map(|_| ())
    }

    /// Builds the provider, reading and splitting the API key from the environment.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let settings = check_settings(config)?;
        let api_key = config.secret_from_env("api_key_env", &settings.api_key_env)?;
        let (service_id, secret_key) = split_api_key(&api_key).ok_or_else(|| {
            format!(
                "`api_key_env`: the value of {} is not a Notify API key ({{key name}}-{{service id}}-{{secret key}})",
                settings.api_key_env
            )
        })?;
        let timeout =
            Duration::from_millis(settings.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS));
        Ok(Self {
            name: config.name.clone(),
            client: http::client(timeout)?,
            url: format!(
                "{}/v2/notifications/sms",
                settings.base_url.trim_end_matches('/')
            ),
            service_id,
            secret_key,
            template_id: settings.template_id,
            sms_sender_ids: settings.sms_sender_ids,
            default_sender_id: settings.sms_sender_id,
        })
    }

    /// A fresh bearer token: HS256 JWT with `iss` = service id and `iat` = now, signed with
    /// the secret key's text (as Notify's own clients do). Notify refuses tokens whose `iat`
    /// is more than 30 seconds off its clock, so one is made per request.
    fn token(&self) -> Result<String, SendError> {
        jwt(
            &self.service_id,
            &self.secret_key,
            chrono::Utc::now().timestamp(),
        )
        .ok_or_else(|| SendError::Permanent {
            reason: format!("{}: cannot sign a token with the API key", self.name),
        })
    }

    /// The registered sender a message goes from: the practice's own if mapped, else the
    /// configured one; `None`: the service's default.
    fn sender_id(&self, message: &Outgoing) -> Option<&str> {
        message
            .practice
            .sms_sender
            .as_ref()
            .and_then(|sender| self.sms_sender_ids.get(sender))
            .or(self.default_sender_id.as_ref())
            .map(String::as_str)
    }

    /// Maps a non-2xx answer to our error classes.
    fn classify(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> SendError {
        // A body that is not Notify's JSON still classifies by HTTP status alone.
        let errors = serde_json::from_slice::<NotifyErrorBody>(body)
            .unwrap_or_default()
            .errors;
        let detail = if errors.is_empty() {
            "no Notify error body".to_string()
        } else {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.error, scrub(&e.message)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let reason = format!("{}: HTTP {}: {detail}", self.name, status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            // RateLimitError (per-minute) and TooManyRequestsError (daily limit) are both 429.
            return SendError::Retryable {
                reason,
                retry_after,
            };
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            tracing::error!(
                provider = %self.name,
                status = status.as_u16(),
                "GOV.UK Notify refused our token: check the API key and this machine's clock"
            );
            return SendError::Permanent { reason };
        }
        if status == StatusCode::BAD_REQUEST && errors.iter().any(is_bad_phone) {
            return SendError::BadRecipient { reason };
        }
        SendError::Permanent { reason }
    }
}

/// Whether a Notify 400 error is about the phone number itself.
fn is_bad_phone(error: &NotifyError) -> bool {
    let message = error.message.to_ascii_lowercase();
    error.error == "InvalidPhoneError"
        || message.contains("phone_number")
        || message.contains("invalidphoneerror")
        || message.contains("not a uk mobile number")
}

/// Parses and checks the settings (shared by `check_config` and `new`).
fn check_settings(config: &ProviderConfig) -> Result<NotifySettings, String> {
    if config.channel != Channel::Sms {
        return Err(format!(
            "kind \"notify\" carries sms only, not {}",
            config.channel
        ));
    }
    let settings: NotifySettings = config.settings()?;
    check_http_url("base_url", &settings.base_url)?;
    if settings.api_key_env.trim().is_empty() {
        return Err("`api_key_env` must name the environment variable holding the API key".into());
    }
    if !is_uuid(&settings.template_id) {
        return Err(format!(
            "`template_id` {:?} must be a Notify template id (a UUID)",
            settings.template_id
        ));
    }
    for (sender, id) in &settings.sms_sender_ids {
        if !is_uuid(id) {
            return Err(format!(
                "`sms_sender_ids.{sender}` {id:?} must be a Notify sender id (a UUID)"
            ));
        }
    }
    if let Some(id) = settings.sms_sender_id.as_ref().filter(|id| !is_uuid(id)) {
        return Err(format!(
            "`sms_sender_id` {id:?} must be a Notify sender id (a UUID)"
        ));
    }
    if settings.timeout_ms == Some(0) {
        return Err("`timeout_ms` must be at least 1".into());
    }
    Ok(settings)
}

/// `{key name}-{service id}-{secret key}` into (service id, secret key): the last two UUIDs,
/// since the key name may itself contain hyphens.
fn split_api_key(key: &str) -> Option<(String, String)> {
    let key = key.trim();
    if !key.is_ascii() || key.len() < 2 * UUID_LEN + 1 {
        return None;
    }
    let secret = &key[key.len() - UUID_LEN..];
    let rest = key[..key.len() - UUID_LEN].strip_suffix('-')?;
    let service = &rest[rest.len().checked_sub(UUID_LEN)?..];
    (is_uuid(service) && is_uuid(secret)).then(|| (service.to_string(), secret.to_string()))
}

/// Whether `s` is a UUID in 8-4-4-4-12 hex form.
fn is_uuid(s: &str) -> bool {
    s.len() == UUID_LEN
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An HS256 JWT with claims `{"iss": issuer, "iat": issued_at}` (None only if HMAC refused
/// the key, which it does not for any length).
fn jwt(issuer: &str, secret: &str, issued_at: i64) -> Option<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({ "iss": issuer, "iat": issued_at }).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(format!("{signing_input}.{signature}"))
}

#[async_trait]
impl Provider for NotifyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let mut body = json!({
            "phone_number": message.address,
            "template_id": self.template_id,
            "personalisation": { "body": message.body },
            "reference": message.message_id.to_string(),
        });
        if let Some(sender_id) = self.sender_id(message) {
            body["sms_sender_id"] = json!(sender_id);
        }
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(self.token()?)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        http::answer(&self.name, message.message_id, response, "id")
            .await
            .map_err(|r| self.classify(r.status, r.retry_after, &r.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
    const SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";

    #[test]
    fn api_keys_split_on_the_last_two_uuids() {
        let key = format!("my-test-key-{SERVICE}-{SECRET}");
        assert_eq!(
            split_api_key(&key),
            Some((SERVICE.to_string(), SECRET.to_string()))
        );
        assert_eq!(
            split_api_key(&format!("{SERVICE}-{SECRET}")),
            Some((SERVICE.to_string(), SECRET.to_string()))
        );
        assert_eq!(split_api_key("short"), None);
        assert_eq!(split_api_key(&format!("k-{SERVICE}{SECRET}")), None);
        assert_eq!(
            split_api_key(&format!("k-{SERVICE}-{}", "x".repeat(36))),
            None
        );
        assert_eq!(split_api_key("é".repeat(40).as_str()), None);
    }

    #[test]
    fn jwt_claims_and_signature() {
        let token = jwt(SERVICE, SECRET, 1_700_000_000).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims, json!({"iss": SERVICE, "iat": 1_700_000_000}));
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }
}
