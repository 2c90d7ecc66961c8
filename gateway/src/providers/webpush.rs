//! The `webpush` provider: Web Push (RFC 8030) with VAPID (RFC 8292, ES256) and aes128gcm
//! payload encryption (RFC 8291), straight to the browser vendor's push service.
//!
//! Encryption and the `TTL`/`Content-Encoding` headers come from web-push-native's builder.
//! The VAPID token is signed here with p256 because the crate's token leaves the port out of
//! `aud` and ties `exp` to the TTL; RFC 8292 wants the full origin and `exp` within 24 hours.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use web_push_native::{Auth, WebPushBuilder};

use super::http::{self, DEFAULT_TIMEOUT_MS};
use super::{Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::{Channel, Priority};
use crate::links::PUSH_RECEIPTS_PATH;
use crate::outbound::{self, AddressPolicy, ADDRESS_NOT_ALLOWED};

/// How long a push service keeps an undelivered message unless `ttl_seconds` says otherwise.
pub const DEFAULT_TTL_SECONDS: u64 = 86_400;

/// The longest TTL accepted: four weeks, the most the big push services keep a message.
const MAX_TTL_SECONDS: u64 = 28 * 86_400;

/// How far ahead the VAPID token's `exp` is set (RFC 8292 allows at most 24 hours).
const VAPID_VALIDITY_SECONDS: i64 = 12 * 3_600;

/// The largest body a push service must accept (RFC 8030 section 7.2).
const MAX_ENCRYPTED_BYTES: usize = 4_096;

/// Sends web push messages to browser push services.
pub struct WebPushProvider {
    name: String,
    channel: Channel,
    client: reqwest::Client,
    signing_key: SigningKey,
    /// `k=` of the Authorization header: the public key, base64url without padding.
    public_key_b64: String,
    subject: String,
    ttl: Duration,
    allow_insecure_hosts: Vec<String>,
    /// Which addresses endpoints may reach (the client's resolver enforces it for names).
    addresses: AddressPolicy,
}

/// The `webpush` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebPushSettings {
    /// The VAPID public key browsers were given as `applicationServerKey` (base64url, 65 bytes).
    vapid_public_key: String,
    /// The environment variable holding the 32-byte private scalar, base64url.
    vapid_private_key_env: String,
    /// A contact for the push services: `mailto:` or `https://`.
    subject: String,
    /// How long an undelivered message is kept by the push service.
    #[serde(default = "default_ttl")]
    ttl_seconds: u64,
    /// Time allowed for one request.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Hosts whose endpoints may be plain http:// (tests and local push services only).
    #[serde(default)]
    allow_insecure_hosts: Vec<String>,
    /// Internal networks (CIDR) endpoints may reach all the same (`[push] allowed_networks`
    /// is added to these).
    #[serde(default)]
    allowed_networks: Vec<String>,
}

fn default_ttl() -> u64 {
    DEFAULT_TTL_SECONDS
}

/// Makes a VAPID key pair `(public, private)`, both base64url without padding: the public key
/// goes in config and to browsers, the private key into the environment variable.
pub fn generate_vapid_keys() -> (String, String) {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let public = key.verifying_key().to_encoded_point(false);
    (
        URL_SAFE_NO_PAD.encode(public.as_bytes()),
        URL_SAFE_NO_PAD.encode(key.to_bytes()),
    )
}

/// Decodes base64url (or standard base64), with or without padding, as browsers and key
/// tools variously write it.
fn decode_b64(value: &str) -> Option<Vec<u8>> {
    let value = value.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(value)
        .or_else(|_| STANDARD_NO_PAD.decode(value))
        .ok()
}

/// The uncompressed P-256 point in `value`, if it is one.
fn decode_public_key(value: &str) -> Option<p256::PublicKey> {
    let bytes = decode_b64(value)?;
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return None;
    }
    p256::PublicKey::from_sec1_bytes(&bytes).ok()
}

/// Whether `subject` is a contact a push service operator could use.
fn check_subject(subject: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`subject` {subject:?} {why}; it must be a real contact such as \
             \"mailto:it@surgery.nhs.uk\" or \"https://surgery.nhs.uk/contact\""
        ))
    };
    let host = if let Some(address) = subject.strip_prefix("mailto:") {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return bad("has no email address");
        };
        if local.is_empty()
            || domain.is_empty()
            || !domain.contains('.')
            || address.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return bad("is not a valid email address");
        }
        domain.to_ascii_lowercase()
    } else if subject.starts_with("https://") {
        let Ok(url) = url::Url::parse(subject) else {
            return bad("is not a valid URL");
        };
        match url.host_str() {
            Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
            _ => return bad("has no host"),
        }
    } else {
        return bad("does not start with mailto: or https://");
    };
    let placeholder = host == "localhost"
        || host.ends_with(".localhost")
        || ["example.com", "example.org", "example.net"]
            .iter()
            .any(|p| host == *p || host.ends_with(&format!(".{p}")));
    if placeholder {
        return bad("is a placeholder, not a contact");
    }
    Ok(())
}

/// The `Topic` for bulk notices: one per practice, so a newer notice replaces an older one
/// still waiting at the push service. Base64url characters only, at most 32 (RFC 8030 5.4).
fn topic_for(ods_code: &str) -> String {
    let ods: String = ods_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut topic = if ods.is_empty() {
        "practice".to_string()
    } else {
        format!("practice-{ods}")
    };
    topic.truncate(32);
    topic
}

/// A short, printable excerpt of a response body for error reasons.
fn excerpt(body: &str) -> String {
    body.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

impl WebPushProvider {
    /// Checks the settings without reading the private key.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        let settings: WebPushSettings = config.settings()?;
        Self::check_settings(&settings)
    }

    fn check_settings(settings: &WebPushSettings) -> Result<(), String> {
        if decode_public_key(&settings.vapid_public_key).is_none() {
            return Err(
                "`vapid_public_key` must be an uncompressed P-256 point (65 bytes) in base64url, \
                 as given to browsers as applicationServerKey"
                    .into(),
            );
        }
        if settings.vapid_private_key_env.trim().is_empty() {
            return Err(
                "`vapid_private_key_env` must name the environment variable holding the VAPID \
                 private key"
                    .into(),
            );
        }
        check_subject(&settings.subject)?;
        if settings.ttl_seconds > MAX_TTL_SECONDS {
            return Err(format!(
                "`ttl_seconds` must be at most {MAX_TTL_SECONDS} (28 days)"
            ));
        }
        if settings.timeout_ms == Some(0) {
            return Err("`timeout_ms` must be at least 1".into());
        }
        if settings
            .allow_insecure_hosts
            .iter()
            .any(|h| h.trim().is_empty())
        {
            return Err("`allow_insecure_hosts` must not contain empty host names".into());
        }
        AddressPolicy::parse(&settings.allowed_networks)
            .map_err(|e| format!("`allowed_networks`: {e}"))?;
        Ok(())
    }

    /// Reads the private key from the environment and checks it matches the public key.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let settings: WebPushSettings = config.settings()?;
        Self::check_settings(&settings)?;
        let variable = settings.vapid_private_key_env.trim();
        let secret = config.secret_from_env("vapid_private_key_env", variable)?;
        let signing_key = decode_b64(&secret)
            .filter(|bytes| bytes.len() == 32)
            .and_then(|bytes| SigningKey::from_slice(&bytes).ok())
            .ok_or_else(|| {
                format!(
                    "`vapid_private_key_env`: {variable} does not hold a P-256 private key \
                     (32 bytes, base64url)"
                )
            })?;
        let public = signing_key.verifying_key().to_encoded_point(false);
        let configured = decode_public_key(&settings.vapid_public_key)
            .map(|key| key.to_encoded_point(false))
            .ok_or("`vapid_public_key` is not a P-256 public key")?;
        if public.as_bytes() != configured.as_bytes() {
            return Err(format!(
                "`vapid_private_key_env`: the key in {variable} does not match \
                 `vapid_public_key`"
            ));
        }
        let timeout = Duration::from_millis(settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        let addresses = AddressPolicy::parse(&settings.allowed_networks)
            .map_err(|e| format!("`allowed_networks`: {e}"))?;
        Ok(Self {
            name: config.name.clone(),
            channel: config.channel,
            client: outbound::guarded_client(http::client_builder(timeout), addresses.clone())?,
            signing_key,
            public_key_b64: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            subject: settings.subject,
            ttl: Duration::from_secs(settings.ttl_seconds),
            allow_insecure_hosts: settings
                .allow_insecure_hosts
                .iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .collect(),
            addresses,
        })
    }

    /// The endpoint, if it is one this provider may post to.
    fn endpoint(&self, address: &str) -> Result<url::Url, SendError> {
        let url = url::Url::parse(address.trim()).map_err(|_| SendError::BadRecipient {
            reason: format!("{}: push endpoint is not a URL", self.name),
        })?;
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
            _ => {
                return Err(SendError::BadRecipient {
                    reason: format!("{}: push endpoint has no host", self.name),
                })
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SendError::BadRecipient {
                reason: format!("{}: push endpoint on {host} carries credentials", self.name),
            });
        }
        if outbound::check_literal(&url, &self.addresses).is_err() {
            return Err(SendError::Permanent {
                reason: ADDRESS_NOT_ALLOWED.into(),
            });
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if self.allow_insecure_hosts.iter().any(|h| h == bare) {
                    Ok(url)
                } else {
                    Err(SendError::Permanent {
                        reason: format!(
                            "{}: refusing plain http:// push endpoint on {host} (not in \
                             allow_insecure_hosts)",
                            self.name
                        ),
                    })
                }
            }
            other => Err(SendError::BadRecipient {
                reason: format!("{}: push endpoint scheme {other:?} is not https", self.name),
            }),
        }
    }

    /// The VAPID `Authorization` value for an endpoint's origin (RFC 8292 section 3).
    fn vapid_authorization(&self, audience: &str) -> Result<String, SendError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = json!({
            "aud": audience,
            "exp": chrono::Utc::now().timestamp() + VAPID_VALIDITY_SECONDS,
            "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self
            .signing_key
            .try_sign(signing_input.as_bytes())
            .map_err(|e| SendError::Permanent {
                reason: format!("{}: cannot sign VAPID token: {e}", self.name),
            })?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            self.public_key_b64
        ))
    }

    /// The encrypted, signed request for one message, or why there cannot be one.
    fn prepare(&self, message: &Outgoing) -> Result<(reqwest::Request, String), SendError> {
        let endpoint = self.endpoint(&message.address)?;
        let host = endpoint.host_str().unwrap_or_default().to_string();
        let bad_keys = |why: &str| SendError::BadRecipient {
            reason: format!("{}: subscription on {host} {why}", self.name),
        };
        let keys = message
            .push
            .as_ref()
            .ok_or_else(|| bad_keys("has no keys (p256dh, auth)"))?;
        let ua_public = decode_public_key(&keys.p256dh)
            .ok_or_else(|| bad_keys("has a p256dh key that is not a P-256 point"))?;
        let auth = decode_b64(&keys.auth)
            .filter(|bytes| bytes.len() == 16)
            .and_then(Auth::from_exact_iter)
            .ok_or_else(|| bad_keys("has an auth secret that is not 16 bytes"))?;

        let uri = endpoint
            .as_str()
            .parse()
            .map_err(|_| bad_keys("has an endpoint that is not a valid URI"))?;
        let title = message
            .subject
            .clone()
            .unwrap_or_else(|| message.practice.name.clone());
        // The receipt token rides inside the encryption: only the browser holding the
        // subscription's keys can report the message shown or read.
        let payload = json!({
            "title": title,
            "body": message.body,
            "url": message.link,
            "practice": message.practice.ods_code,
            "message_id": message.message_id,
            "receipt_token": message.receipt_token,
            "receipt_url": message.receipt_token.as_ref().map(|_| PUSH_RECEIPTS_PATH),
        })
        .to_string();
        let built = WebPushBuilder::new(uri, ua_public, auth)
            .with_valid_duration(self.ttl)
            .build(payload)
            .map_err(|e| SendError::Permanent {
                reason: format!("{}: cannot encrypt push payload: {e}", self.name),
            })?;
        if built.body().len() > MAX_ENCRYPTED_BYTES {
            return Err(SendError::Permanent {
                reason: format!(
                    "{}: push payload is {} bytes encrypted, more than the {MAX_ENCRYPTED_BYTES} \
                     push services accept",
                    self.name,
                    built.body().len()
                ),
            });
        }
        let mut request = reqwest::Request::try_from(built).map_err(|e| SendError::Permanent {
            reason: format!("{}: cannot build push request for {host}: {e}", self.name),
        })?;

        let authorization = self.vapid_authorization(&endpoint.origin().ascii_serialization())?;
        let headers = request.headers_mut();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&authorization).map_err(|_| SendError::Permanent {
                reason: format!("{}: VAPID header is not a valid header value", self.name),
            })?,
        );
        match message.priority {
            Priority::Urgent => {
                headers.insert("urgency", HeaderValue::from_static("high"));
            }
            Priority::Bulk => {
                headers.insert("urgency", HeaderValue::from_static("normal"));
                let topic = topic_for(&message.practice.ods_code);
                if let Ok(value) = HeaderValue::from_str(&topic) {
                    headers.insert("topic", value);
                }
            }
        }
        Ok((request, host))
    }
}

#[async_trait]
impl Provider for WebPushProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    /// Each push service is its own peer: one that is slow, failing or asks for a pause
    /// holds back only the subscriptions on it.
    fn origin(&self, address: &str) -> Option<String> {
        let url = url::Url::parse(address.trim()).ok()?;
        url.has_host().then(|| url.origin().ascii_serialization())
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let (request, host) = self.prepare(message)?;
        let response = self.client.execute(request).await.map_err(|e| {
            if outbound::is_address_refusal(&e) {
                // The same words whatever the address or port: no map of the network.
                SendError::Permanent {
                    reason: ADDRESS_NOT_ALLOWED.into(),
                }
            } else {
                http::transport_error(&self.name, &e.without_url())
            }
        })?;
        let status = response.status();
        let provider = self.name.as_str();
        let message_id = message.message_id;
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED => {
                let provider_ref = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(512).collect::<String>())
                    .filter(|v| !v.is_empty());
                tracing::debug!(provider, message_id, host, %status, "push accepted");
                Ok(Accepted { provider_ref })
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                tracing::info!(provider, message_id, host, %status, "push subscription expired");
                Err(SendError::BadRecipient {
                    reason: format!(
                        "{provider}: push subscription on {host} has expired ({status})"
                    ),
                })
            }
            StatusCode::PAYLOAD_TOO_LARGE => Err(SendError::Permanent {
                reason: format!("{provider}: {host} refused the payload as too large ({status})"),
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let body = excerpt(&response.text().await.unwrap_or_default());
                tracing::error!(
                    provider,
                    message_id,
                    host,
                    %status,
                    body,
                    "push service refused our VAPID authorization: check vapid_public_key, \
                     the private key in vapid_private_key_env and subject"
                );
                Err(SendError::Permanent {
                    reason: format!(
                        "{provider}: {host} refused the VAPID authorization ({status}): {body}"
                    ),
                })
            }
            StatusCode::TOO_MANY_REQUESTS => Err(SendError::Retryable {
                reason: format!("{provider}: {host} is rate limiting ({status})"),
                retry_after: http::retry_after(response.headers()),
            }),
            StatusCode::REQUEST_TIMEOUT => Err(SendError::Retryable {
                reason: format!("{provider}: {host} timed out the request ({status})"),
                retry_after: None,
            }),
            status if status.is_server_error() => Err(SendError::Retryable {
                reason: format!("{provider}: {host} failed ({status})"),
                retry_after: http::retry_after(response.headers()),
            }),
            status => {
                let body = excerpt(&response.text().await.unwrap_or_default());
                tracing::warn!(provider, message_id, host, %status, body, "push refused");
                Err(SendError::Permanent {
                    reason: format!("{provider}: {host} refused the message ({status}): {body}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{PracticeRef, ProviderRegistry, PushKeys};
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::VerifyingKey;

    fn config(public: &str, variable: &str, subject: &str) -> ProviderConfig {
        let settings = json!({
            "vapid_public_key": public,
            "vapid_private_key_env": variable,
            "subject": subject,
        });
        ProviderConfig {
            name: "push".into(),
            kind: "webpush".into(),
            channel: Channel::Push,
            rate: None,
            burst: None,
            price_pence: None,
            settings: settings.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn generated_keys_build_a_working_provider() {
        let (public, private) = generate_vapid_keys();
        let variable = "GATEWAY_TEST_WEBPUSH_UNIT_GENERATED";
        std::env::set_var(variable, &private);
        let config = config(&public, variable, "mailto:it@surgery.nhs.uk");
        assert!(ProviderRegistry::from_config(std::slice::from_ref(&config)).is_ok());
        let provider = WebPushProvider::new(&config).unwrap();

        let ua_secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let ua_public = ua_secret.public_key().to_encoded_point(false);
        let auth = [7u8; 16];
        let message = Outgoing {
            message_id: 42,
            template_key: "status.closed".into(),
            channel: Channel::Push,
            address: "https://push.example.net/send/abc".into(),
            subject: Some("Surgery news".into()),
            body: "Closed on Friday".into(),
            html: None,
            link: Some("https://high-street.example/news".into()),
            priority: Priority::Bulk,
            practice: PracticeRef {
                ods_code: "A81001".into(),
                name: "High Street Surgery".into(),
                reply_to: None,
                ..Default::default()
            },
            unsubscribe_url: None,
            push: Some(PushKeys {
                p256dh: URL_SAFE_NO_PAD.encode(ua_public.as_bytes()),
                auth: URL_SAFE_NO_PAD.encode(auth),
            }),
            receipt_token: Some("42.token".into()),
        };
        let (request, host) = provider.prepare(&message).unwrap();
        assert_eq!(host, "push.example.net");
        assert_eq!(request.headers()["topic"], "practice-A81001");
        assert_eq!(request.headers()["urgency"], "normal");
        assert_eq!(request.headers()["ttl"], "86400");

        let authorization = request.headers()[AUTHORIZATION].to_str().unwrap();
        let rest = authorization.strip_prefix("vapid t=").unwrap();
        let (token, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, public);
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let key = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        key.verify(signed.as_bytes(), &signature).unwrap();

        let body = request.body().and_then(|b| b.as_bytes()).unwrap().to_vec();
        let plain =
            web_push_native::decrypt(body, &ua_secret, &Auth::clone_from_slice(&auth)).unwrap();
        let plain: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(plain["title"], "Surgery news");
        assert_eq!(plain["url"], "https://high-street.example/news");
        assert_eq!(plain["message_id"], 42);
        assert_eq!(plain["receipt_token"], "42.token");
        assert_eq!(plain["receipt_url"], "/api/v1/push/receipts");
    }

    #[test]
    fn subjects_must_be_real_contacts() {
        assert!(check_subject("mailto:it@surgery.nhs.uk").is_ok());
        assert!(check_subject("https://surgery.nhs.uk/contact").is_ok());
        for bad in [
            "",
            "it@surgery.nhs.uk",
            "mailto:",
            "mailto:nobody",
            "mailto:me@localhost",
            "mailto:you@example.com",
            "http://surgery.nhs.uk",
            "https://",
        ] {
            assert!(check_subject(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn each_push_service_origin_is_its_own_peer() {
        let (public, private) = generate_vapid_keys();
        let variable = "GATEWAY_TEST_WEBPUSH_UNIT_ORIGIN";
        std::env::set_var(variable, &private);
        let provider =
            WebPushProvider::new(&config(&public, variable, "mailto:it@surgery.nhs.uk")).unwrap();
        let origin = |a: &str| provider.origin(a);
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/abc"),
            Some("https://fcm.googleapis.com".into())
        );
        assert_eq!(
            origin("https://Push.Example.net:8443/x"),
            Some("https://push.example.net:8443".into())
        );
        assert_eq!(
            origin("http://127.0.0.1:4000/push/a"),
            Some("http://127.0.0.1:4000".into())
        );
        assert_ne!(
            origin("http://127.0.0.1:4000/a"),
            origin("http://127.0.0.1:4001/a")
        );
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn topics_are_short_and_url_safe() {
        assert_eq!(topic_for("A81001"), "practice-A81001");
        assert_eq!(topic_for("a/b c"), "practice-abc");
        assert_eq!(topic_for(""), "practice");
        assert!(topic_for(&"X".repeat(100)).len() <= 32);
    }
}
