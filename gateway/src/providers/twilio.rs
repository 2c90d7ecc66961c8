//! The `twilio` provider: SMS through Twilio's Messages API (`2010-04-01`).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{check_http_url, scrub};
use super::{http, Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::Channel;

/// Twilio error codes that mean this recipient cannot be reached: invalid `To` (21211),
/// invalid `To` number format (21214), unsubscribed with STOP (21610), unreachable by this
/// sender (21612), not a mobile number (21614).
const BAD_RECIPIENT_CODES: [i64; 5] = [21211, 21214, 21610, 21612, 21614];
/// Twilio's "Too Many Requests" error code.
const RATE_LIMITED_CODE: i64 = 20429;
/// Twilio's "Authenticate" error code (wrong account SID or auth token).
const AUTH_CODE: i64 = 20003;

/// Sends SMS through the Twilio Messages API.
pub struct TwilioProvider {
    name: String,
    client: reqwest::Client,
    /// The Messages resource, parsed once.
    url: reqwest::Url,
    /// `Basic` with the account SID and auth token, encoded once (and marked sensitive, so
    /// it never appears in debug output).
    authorization: HeaderValue,
    sender: Sender,
    status_callback_url: Option<String>,
}

/// Where Twilio sends from when the practice has no sender of its own: one number (or
/// sender ID), or a Messaging Service's pool.
enum Sender {
    From(String),
    MessagingService(String),
}

/// The `twilio` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TwilioSettings {
    /// API root, overridable for tests and regional edges.
    #[serde(default = "default_base_url")]
    base_url: String,
    /// Account SID (`AC...`), the basic-auth user and part of the path.
    account_sid: String,
    /// Environment variable holding the auth token.
    auth_token_env: String,
    /// Sender: an E.164 number or an alphanumeric sender ID, for practices without their own.
    from: Option<String>,
    /// Sender: a Messaging Service SID (`MG...`), instead of `from`.
    messaging_service_sid: Option<String>,
    /// Where Twilio posts delivery status updates.
    status_callback_url: Option<String>,
    /// Time allowed for one request, in milliseconds.
    timeout_ms: Option<u64>,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

/// Twilio's JSON error body; every field optional so that a partial body still classifies.
#[derive(Debug, Default, Deserialize)]
struct TwilioErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioProvider {
    /// Checks the settings without reading secrets.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        check_settings(config).map(|_| ())
    }

    /// Builds the provider, reading the auth token from the environment.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let settings = check_settings(config)?;
        let auth_token = config.secret_from_env("auth_token_env", &settings.auth_token_env)?;
        let timeout =
            Duration::from_millis(settings.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS));
        let client = http::client(timeout)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            settings.base_url.trim_end_matches('/'),
            settings.account_sid
        );
        let url = reqwest::Url::parse(&url).map_err(|e| format!("`base_url`: {e}"))?;
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{auth_token}", settings.account_sid));
        let mut authorization = HeaderValue::try_from(format!("Basic {credentials}"))
            .map_err(|e| format!("cannot make the Authorization header: {e}"))?;
        authorization.set_sensitive(true);
        let sender = match (settings.from, settings.messaging_service_sid) {
            (Some(from), None) => Sender::From(from),
            (None, Some(sid)) => Sender::MessagingService(sid),
            _ => return Err("set exactly one of `from` and `messaging_service_sid`".into()),
        };
        Ok(Self {
            name: config.name.clone(),
            client,
            url,
            authorization,
            sender,
            status_callback_url: settings.status_callback_url,
        })
    }

    /// The urlencoded request body. (The serializer is not `Send`, so it never lives across
    /// an `.await`.)
    fn form(&self, message: &Outgoing) -> String {
        // Room for the encoded fields, so the body is written without regrowing.
        let room = 96 + message.address.len() + message.body.len() * 3 / 2;
        let mut form = url::form_urlencoded::Serializer::new(String::with_capacity(room));
        form.append_pair("To", &message.address);
        // The practice's own sender goes in `From`; with a Messaging Service, Twilio then
        // sends from it if it is in the service's sender pool (and refuses it otherwise).
        let practice_sender = message.practice.sms_sender.as_deref();
        match &self.sender {
            Sender::From(from) => {
                form.append_pair("From", practice_sender.unwrap_or(from));
            }
            Sender::MessagingService(sid) => {
                form.append_pair("MessagingServiceSid", sid);
                if let Some(from) = practice_sender {
                    form.append_pair("From", from);
                }
            }
        }
        form.append_pair("Body", &message.body);
        if let Some(callback) = &self.status_callback_url {
            form.append_pair("StatusCallback", callback);
        }
        form.finish()
    }

    /// Maps a non-2xx answer to our error classes.
    fn classify(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> SendError {
        // A body that is not Twilio's JSON still classifies by HTTP status alone.
        let error: TwilioErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let code = error.code;
        let detail = match (code, error.message.as_deref()) {
            (Some(c), Some(m)) => format!("Twilio error {c}: {}", scrub(m)),
            (Some(c), None) => format!("Twilio error {c}"),
            (None, Some(m)) => scrub(m),
            (None, None) => "no Twilio error body".into(),
        };
        let reason = format!("{}: HTTP {}: {detail}", self.name, status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS || code == Some(RATE_LIMITED_CODE) {
            return SendError::Retryable {
                reason,
                retry_after,
            };
        }
        if status.is_server_error() {
            return SendError::Retryable {
                reason,
                retry_after,
            };
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || code == Some(AUTH_CODE)
        {
            tracing::error!(
                provider = %self.name,
                status = status.as_u16(),
                code = ?code,
                "Twilio refused our credentials: check account_sid and the auth token"
            );
            return SendError::Permanent { reason };
        }
        if code.is_some_and(|c| BAD_RECIPIENT_CODES.contains(&c)) {
            return SendError::BadRecipient { reason };
        }
        SendError::Permanent { reason }
    }
}

/// Parses and checks the settings (shared by `check_config` and `new`).
fn check_settings(config: &ProviderConfig) -> Result<TwilioSettings, String> {
    if config.channel != Channel::Sms {
        return Err(format!(
            "kind \"twilio\" carries sms only, not {}",
            config.channel
        ));
    }
    let settings: TwilioSettings = config.settings()?;
    check_http_url("base_url", &settings.base_url)?;
    if settings.account_sid.is_empty()
        || !settings
            .account_sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    {
        return Err("`account_sid` must be a Twilio account SID such as AC0123...".into());
    }
    if settings.auth_token_env.trim().is_empty() {
        return Err(
            "`auth_token_env` must name the environment variable holding the auth token".into(),
        );
    }
    match (&settings.from, &settings.messaging_service_sid) {
        (Some(from), None) => check_sender(from)?,
        (None, Some(sid)) => {
            if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err("`messaging_service_sid` must be a SID such as MG0123...".into());
            }
        }
        _ => return Err("set exactly one of `from` and `messaging_service_sid`".into()),
    }
    if let Some(url) = &settings.status_callback_url {
        check_http_url("status_callback_url", url)?;
    }
    if settings.timeout_ms == Some(0) {
        return Err("`timeout_ms` must be at least 1".into());
    }
    Ok(settings)
}

/// `from` is an E.164 number (`+447700900123`) or an alphanumeric sender ID (at most 11
/// letters, digits or spaces, with at least one letter), which UK networks accept.
fn check_sender(from: &str) -> Result<(), String> {
    let e164 = from
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()));
    let sender_id = (1..=11).contains(&from.len())
        && from.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && from.chars().any(|c| c.is_ascii_alphabetic());
    if e164 || sender_id {
        Ok(())
    } else {
        Err(format!(
            "`from` {from:?} must be an E.164 number such as +447700900123 or a sender ID of at most 11 letters and digits"
        ))
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let form = self.form(message);
        let response = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form)
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        http::answer(&self.name, message.message_id, response, "sid")
            .await
            .map_err(|r| self.classify(r.status, r.retry_after, &r.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        assert!(check_sender("+447700900123").is_ok());
        assert!(check_sender("OAKSURGERY").is_ok());
        assert!(check_sender("Oak Surgery").is_ok());
        assert!(check_sender("07700900123").is_err());
        assert!(check_sender("A Very Long Sender").is_err());
        assert!(check_sender("").is_err());
    }
}
