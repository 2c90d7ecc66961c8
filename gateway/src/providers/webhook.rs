//! The `webhook` provider: SMS through any HTTP gateway that takes a signed JSON POST.
//!
//! The request is `POST {url}` with `Content-Type: application/json` and the body
//! `{"message_id": 42, "channel": "sms", "to": "+447700900123", "body": "...", "practice": "A12345",
//! "from": "OAKSURGERY"}`, where `from` is the practice's own SMS sender (a sender ID or an
//! E.164 number), or `null` when the practice has none and the gateway's own default applies.
//! It carries the configured extra `headers` and one signature header,
//! `{signature_header}: sha256=<lowercase hex HMAC-SHA256 of the exact body bytes>`, keyed
//! with the secret in `signing_secret_env`. There is no timestamp header: a receiver that
//! wants replay protection can remember `message_id`s (retries of one message reuse it).
//!
//! Answers: any 2xx is accepted (a JSON `id`, string or number, becomes the provider
//! reference); 408, 429 and 5xx are retryable, honouring `Retry-After`; every other status
//! (other 4xx, and 3xx since redirects are not followed) is permanent. A generic gateway has
//! no agreed way to say "bad number", so nothing is classed as a bad recipient.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::http::{check_http_url, scrub};
use super::{http, Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::Channel;

/// Signature header used unless `signature_header` names another.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Gateway-Signature";

/// Headers the gateway sets itself, which `headers` may not override.
const RESERVED_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

/// Sends SMS as a signed JSON POST to a configured URL.
pub struct WebhookProvider {
    name: String,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    signature_header: HeaderName,
    signing_secret: String,
}

/// The `webhook` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSettings {
    /// Where messages are POSTed.
    url: String,
    /// Extra headers sent with every request (not secret: config is printable).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Environment variable holding the HMAC key.
    signing_secret_env: String,
    /// Name of the signature header.
    #[serde(default = "default_signature_header")]
    signature_header: String,
    /// Time allowed for one request, in milliseconds.
    timeout_ms: Option<u64>,
}

fn default_signature_header() -> String {
    DEFAULT_SIGNATURE_HEADER.into()
}

/// The settings with header names and values parsed.
struct Checked {
    settings: WebhookSettings,
    headers: HeaderMap,
    signature_header: HeaderName,
}

impl WebhookProvider {
    /// Checks the settings without reading secrets.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        check_settings(config).map(|_| ())
    }

    /// Builds the provider, reading the signing secret from the environment.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let Checked {
            settings,
            headers,
            signature_header,
        } = check_settings(config)?;
        let signing_secret =
            config.secret_from_env("signing_secret_env", &settings.signing_secret_env)?;
        let timeout =
            Duration::from_millis(settings.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS));
        Ok(Self {
            name: config.name.clone(),
            client: http::client(timeout)?,
            url: settings.url,
            headers,
            signature_header,
            signing_secret,
        })
    }

    /// `sha256=<hex HMAC-SHA256 of body>` with the signing secret.
    fn signature(&self, body: &[u8]) -> Result<HeaderValue, SendError> {
        let failed = || SendError::Permanent {
            reason: format!(
                "{}: cannot sign the request with the signing secret",
                self.name
            ),
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.signing_secret.as_bytes())
            .map_err(|_| failed())?;
        mac.update(body);
        let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        HeaderValue::from_str(&value).map_err(|_| failed())
    }

    /// Maps a non-2xx answer to our error classes.
    fn classify(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> SendError {
        // Only a JSON `error` or `message` string is quoted: an arbitrary body could echo
        // the message text back.
        let detail = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                ["error", "message"]
                    .iter()
                    .find_map(|k| v.get(k)?.as_str().map(scrub))
            });
        let reason = match detail {
            Some(d) => format!("{}: HTTP {}: {d}", self.name, status.as_u16()),
            None => format!("{}: HTTP {}", self.name, status.as_u16()),
        };
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
        ) || status.is_server_error()
        {
            return SendError::Retryable {
                reason,
                retry_after,
            };
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            tracing::error!(
                provider = %self.name,
                status = status.as_u16(),
                "the SMS webhook refused our request: check its URL, headers and signing secret"
            );
        }
        SendError::Permanent { reason }
    }
}

/// Parses and checks the settings (shared by `check_config` and `new`).
fn check_settings(config: &ProviderConfig) -> Result<Checked, String> {
    if config.channel != Channel::Sms {
        return Err(format!(
            "kind \"webhook\" carries sms only, not {}",
            config.channel
        ));
    }
    let settings: WebhookSettings = config.settings()?;
    check_http_url("url", &settings.url)?;
    if settings.signing_secret_env.trim().is_empty() {
        return Err(
            "`signing_secret_env` must name the environment variable holding the HMAC key".into(),
        );
    }
    let signature_header =
        HeaderName::from_bytes(settings.signature_header.as_bytes()).map_err(|_| {
            format!(
                "`signature_header` {:?} is not a valid header name",
                settings.signature_header
            )
        })?;
    if RESERVED_HEADERS.contains(&signature_header.as_str()) {
        return Err(format!(
            "`signature_header` may not be {}",
            signature_header.as_str()
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`headers`: {name:?} is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) || parsed == signature_header {
            return Err(format!("`headers` may not set {name}: the gateway sets it"));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("`headers.{name}` is not a valid header value"))?;
        headers.insert(parsed, value);
    }
    if settings.timeout_ms == Some(0) {
        return Err("`timeout_ms` must be at least 1".into());
    }
    Ok(Checked {
        settings,
        headers,
        signature_header,
    })
}

#[async_trait]
impl Provider for WebhookProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let body = json!({
            "message_id": message.message_id,
            "channel": "sms",
            "to": message.address,
            "body": message.body,
            "practice": message.practice.ods_code,
            "from": message.practice.sms_sender,
        })
        .to_string()
        .into_bytes();
        let signature = self.signature(&body)?;
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(self.signature_header.clone(), signature)
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        http::answer(&self.name, message.message_id, response, "id")
            .await
            .map_err(|r| self.classify(r.status, r.retry_after, &r.body))
    }
}
