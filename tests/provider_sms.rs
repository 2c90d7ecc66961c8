//! The SMS provider kinds (`twilio`, `notify`, `webhook`) against real loopback HTTP peers:
//! the exact request each sends, and how each classifies faults.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gateway::config::ProviderConfig;
use gateway::domain::{Channel, Priority};
use gateway::providers::{Accepted, Outgoing, PracticeRef, Provider, ProviderRegistry, SendError};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const TO: &str = "+447700900123";
const TEXT: &str = "Oak Surgery: your flu jab is ready to book. Reply STOP to opt out & 100% free";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const SERVICE_ID: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
const NOTIFY_SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";
const TEMPLATE_ID: &str = "f33517ff-2a88-4f6e-b855-c550268ce08a";
const WEBHOOK_SECRET: &str = "webhook-signing-secret";

// ---------------------------------------------------------------------------------------
// Harness: a loopback peer that records each request and answers as told.

/// One request as the peer received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How the peer answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json")],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/html")],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone)]
struct PeerState {
    reply: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running loopback HTTP server.
struct Peer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Peer {
    async fn start(reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = PeerState {
            reply,
            seen: seen.clone(),
        };
        let app = Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    /// Every request the peer got, in order.
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The one request the peer got.
    fn only_request(&self) -> Seen {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "expected exactly one request");
        seen[0].clone()
    }
}

async fn answer(State(state): State<PeerState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    });
    tokio::time::sleep(state.reply.delay).await;
    let mut response = (
        StatusCode::from_u16(state.reply.status).unwrap(),
        state.reply.body.clone(),
    )
        .into_response();
    for (name, value) in &state.reply.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

/// A base URL nothing listens on.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Puts `value` in a fresh environment variable and returns its name (unique per call, so
/// tests running in parallel never touch the same variable).
fn secret(value: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "PROVIDER_SMS_TEST_SECRET_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&name, value);
    name
}

fn config(kind: &str, settings: Value) -> ProviderConfig {
    ProviderConfig {
        name: format!("{kind}-sms"),
        kind: kind.to_string(),
        channel: Channel::Sms,
        rate: None,
        burst: None,
        price_pence: None,
        settings: settings.as_object().cloned().unwrap(),
    }
}

/// Builds one provider through the public registry.
fn build(kind: &str, settings: Value) -> Result<Arc<dyn Provider>, String> {
    let registry =
        ProviderRegistry::from_config(&[config(kind, settings)]).map_err(|e| e.to_string())?;
    let providers = registry.for_channel(Channel::Sms);
    assert_eq!(providers.len(), 1);
    Ok(providers[0].clone())
}

fn outgoing() -> Outgoing {
    Outgoing {
        message_id: 42,
        template_key: "status.closed".into(),
        channel: Channel::Sms,
        address: TO.into(),
        subject: None,
        body: TEXT.into(),
        html: None,
        link: None,
        priority: Priority::Urgent,
        practice: PracticeRef {
            ods_code: "A12345".into(),
            name: "Oak Surgery".into(),
            reply_to: None,
            ..Default::default()
        },
        unsubscribe_url: None,
        push: None,
        receipt_token: None,
    }
}

/// Reasons are logged and stored: they must never carry the number or the text.
fn assert_no_patient_data(shown: &str) {
    assert!(
        !shown.contains("7700900123"),
        "phone number leaked: {shown}"
    );
    assert!(!shown.contains("flu jab"), "message text leaked: {shown}");
}

fn expect_retryable(result: Result<Accepted, SendError>) -> (String, Option<Duration>) {
    match result {
        Err(SendError::Retryable {
            reason,
            retry_after,
        }) => {
            assert_no_patient_data(&reason);
            (reason, retry_after)
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
}

fn expect_permanent(result: Result<Accepted, SendError>) -> String {
    match result {
        Err(e @ SendError::Permanent { .. }) => {
            let shown = e.to_string();
            assert_no_patient_data(&shown);
            shown
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
}

fn expect_bad_recipient(result: Result<Accepted, SendError>) -> String {
    match result {
        Err(e @ SendError::BadRecipient { .. }) => {
            let shown = e.to_string();
            assert_no_patient_data(&shown);
            shown
        }
        other => panic!("expected BadRecipient, got {other:?}"),
    }
}

/// Fault cases every kind shares; `send` builds the kind against a base URL and sends once.
mod faults {
    use super::*;

    pub async fn server_error<F, Fut>(send: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        let peer = Peer::start(Reply::text(500, "<html>Internal Server Error</html>")).await;
        let (reason, retry_after) = expect_retryable(send(peer.url.clone()).await);
        assert!(reason.contains("500"), "{reason}");
        assert_eq!(retry_after, None);
    }

    pub async fn rate_limited<F, Fut>(send: F, body: Value)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        let peer = Peer::start(Reply::json(429, body).header("retry-after", "2")).await;
        let (reason, retry_after) = expect_retryable(send(peer.url.clone()).await);
        assert!(reason.contains("429"), "{reason}");
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
    }

    pub async fn refused<F, Fut>(send: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        let (reason, _) = expect_retryable(send(refused_url()).await);
        assert!(reason.contains("could not connect"), "{reason}");
    }

    pub async fn slow<F, Fut>(send: F, success: Value)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        let peer = Peer::start(Reply::json(201, success).after(Duration::from_secs(2))).await;
        let started = std::time::Instant::now();
        let (reason, _) = expect_retryable(send(peer.url.clone()).await);
        assert!(reason.contains("timed out"), "{reason}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "timeout not applied"
        );
    }

    pub async fn malformed_success<F, Fut>(send: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        // Taken, but no reference: accepted rather than retried (a retry could double-send).
        let peer = Peer::start(Reply::text(201, "<html>Created</html>")).await;
        let accepted = send(peer.url.clone()).await.unwrap();
        assert_eq!(accepted.provider_ref, None);
        assert_eq!(peer.seen.lock().unwrap().len(), 1);
    }

    pub async fn malformed_error<F, Fut>(send: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Accepted, SendError>>,
    {
        let peer = Peer::start(Reply::text(400, "<html>Bad Request</html>")).await;
        let reason = expect_permanent(send(peer.url.clone()).await);
        assert!(reason.contains("400"), "{reason}");
    }
}

// ---------------------------------------------------------------------------------------
// twilio

fn twilio_settings(base_url: &str) -> Value {
    json!({
        "base_url": base_url,
        "account_sid": SID,
        "auth_token_env": secret(TOKEN),
        "from": "+447700900001",
        "status_callback_url": "https://gateway.example.nhs.uk/receipts/twilio",
        "timeout_ms": 300,
    })
}

async fn twilio_send(base_url: String) -> Result<Accepted, SendError> {
    build("twilio", twilio_settings(&base_url))
        .unwrap()
        .send(&outgoing())
        .await
}

/// Twilio's documented 201 answer to a Messages create.
fn twilio_created() -> Value {
    json!({
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": TEXT,
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": null,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": "+447700900001",
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": null,
        "messaging_service_sid": null,
        "sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "status": "queued",
        "subresource_uris": {
            "media": format!("/2010-04-01/Accounts/{SID}/Messages/SM1f0e8ae6ade43cb3c0ce4525424e404f/Media.json")
        },
        "to": TO,
        "uri": format!("/2010-04-01/Accounts/{SID}/Messages/SM1f0e8ae6ade43cb3c0ce4525424e404f.json")
    })
}

fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn twilio_posts_the_messages_form_with_basic_auth() {
    let peer = Peer::start(Reply::json(201, twilio_created())).await;
    let provider = build("twilio", twilio_settings(&peer.url)).unwrap();
    assert_eq!(provider.name(), "twilio-sms");
    assert_eq!(provider.channel(), Channel::Sms);

    let accepted = provider.send(&outgoing()).await.unwrap();
    assert_eq!(
        accepted.provider_ref.as_deref(),
        Some("SM1f0e8ae6ade43cb3c0ce4525424e404f")
    );

    let seen = peer.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let expected_auth = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
    assert_eq!(seen.headers["authorization"], expected_auth.as_str());
    assert_eq!(
        seen.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form_fields(&seen.body),
        vec![
            ("To".to_string(), TO.to_string()),
            ("From".to_string(), "+447700900001".to_string()),
            ("Body".to_string(), TEXT.to_string()),
            (
                "StatusCallback".to_string(),
                "https://gateway.example.nhs.uk/receipts/twilio".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn twilio_can_send_through_a_messaging_service() {
    let peer = Peer::start(Reply::json(201, twilio_created())).await;
    let provider = build(
        "twilio",
        json!({
            "base_url": format!("{}/", peer.url),
            "account_sid": SID,
            "auth_token_env": secret(TOKEN),
            "messaging_service_sid": "MG0123456789abcdef0123456789abcdef",
        }),
    )
    .unwrap();
    provider.send(&outgoing()).await.unwrap();
    let seen = peer.only_request();
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        form_fields(&seen.body),
        vec![
            ("To".to_string(), TO.to_string()),
            (
                "MessagingServiceSid".to_string(),
                "MG0123456789abcdef0123456789abcdef".to_string()
            ),
            ("Body".to_string(), TEXT.to_string()),
        ]
    );
}

#[tokio::test]
async fn twilio_500_is_retryable() {
    faults::server_error(twilio_send).await;
}

#[tokio::test]
async fn twilio_429_is_retryable_after_retry_after() {
    let body = json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429});
    faults::rate_limited(twilio_send, body).await;
}

#[tokio::test]
async fn twilio_connection_refused_is_retryable() {
    faults::refused(twilio_send).await;
}

#[tokio::test]
async fn twilio_slow_peer_times_out_retryable() {
    faults::slow(twilio_send, twilio_created()).await;
}

#[tokio::test]
async fn twilio_201_without_json_is_accepted_without_ref() {
    faults::malformed_success(twilio_send).await;
}

#[tokio::test]
async fn twilio_400_without_json_is_permanent() {
    faults::malformed_error(twilio_send).await;
}

#[tokio::test]
async fn twilio_invalid_to_is_bad_recipient_without_the_number() {
    let peer = Peer::start(twilio_error(
        400,
        21211,
        &format!("The 'To' number {TO} is not a valid phone number."),
    ))
    .await;
    let reason = expect_bad_recipient(twilio_send(peer.url.clone()).await);
    assert!(reason.contains("21211"), "{reason}");
    assert!(reason.contains("[number]"), "{reason}");
}

#[tokio::test]
async fn twilio_unsubscribed_is_bad_recipient() {
    let peer = Peer::start(twilio_error(
        400,
        21610,
        "Attempt to send to unsubscribed recipient",
    ))
    .await;
    let reason = expect_bad_recipient(twilio_send(peer.url.clone()).await);
    assert!(reason.contains("21610"), "{reason}");
}

#[tokio::test]
async fn twilio_401_and_403_are_permanent() {
    let peer = Peer::start(twilio_error(401, 20003, "Authenticate")).await;
    let reason = expect_permanent(twilio_send(peer.url.clone()).await);
    assert!(reason.contains("20003"), "{reason}");

    let peer = Peer::start(Reply::text(403, "Forbidden")).await;
    let reason = expect_permanent(twilio_send(peer.url.clone()).await);
    assert!(reason.contains("403"), "{reason}");
}

#[tokio::test]
async fn twilio_other_4xx_is_permanent_with_code_and_message() {
    let peer = Peer::start(twilio_error(
        400,
        21606,
        "The From phone number +447700900001 is not a valid, SMS-capable inbound phone number or short code for your account.",
    ))
    .await;
    let reason = expect_permanent(twilio_send(peer.url.clone()).await);
    assert!(reason.contains("21606"), "{reason}");
    assert!(reason.contains("not a valid, SMS-capable"), "{reason}");
}

// ---------------------------------------------------------------------------------------
// notify

fn notify_settings(base_url: &str) -> Value {
    json!({
        "base_url": base_url,
        "api_key_env": secret(&format!("gp-gateway-live-{SERVICE_ID}-{NOTIFY_SECRET}")),
        "template_id": TEMPLATE_ID,
        "timeout_ms": 300,
    })
}

async fn notify_send(base_url: String) -> Result<Accepted, SendError> {
    build("notify", notify_settings(&base_url))
        .unwrap()
        .send(&outgoing())
        .await
}

/// Notify's documented 201 answer to a text message send.
fn notify_created() -> Value {
    json!({
        "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
        "reference": "42",
        "content": {"body": TEXT, "from_number": "OAKSURGERY"},
        "uri": "https://api.notifications.service.gov.uk/v2/notifications/740e5834-3a29-46b4-9a6f-16142fde533a",
        "template": {
            "id": TEMPLATE_ID,
            "version": 1,
            "uri": format!("https://api.notifications.service.gov.uk/v2/template/{TEMPLATE_ID}")
        }
    })
}

fn notify_error(status: u16, error: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"status_code": status, "errors": [{"error": error, "message": message}]}),
    )
}

/// Checks a bearer token as Notify does: HS256 with the secret key, `iss` the service id,
/// `iat` close to now.
fn verify_notify_jwt(authorization: &str) {
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("a Bearer token");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"typ": "JWT", "alg": "HS256"}));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], SERVICE_ID);
    let iat = claims["iat"].as_i64().expect("numeric iat");
    assert!(
        (chrono::Utc::now().timestamp() - iat).abs() <= 60,
        "iat {iat} is not within a minute of now"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(NOTIFY_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("signature verifies with the secret key");
}

#[tokio::test]
async fn notify_posts_json_with_a_signed_jwt() {
    let peer = Peer::start(Reply::json(201, notify_created())).await;
    let provider = build("notify", notify_settings(&peer.url)).unwrap();
    assert_eq!(provider.name(), "notify-sms");

    let accepted = provider.send(&outgoing()).await.unwrap();
    assert_eq!(
        accepted.provider_ref.as_deref(),
        Some("740e5834-3a29-46b4-9a6f-16142fde533a")
    );

    let seen = peer.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v2/notifications/sms");
    assert_eq!(seen.headers["content-type"], "application/json");
    verify_notify_jwt(seen.headers["authorization"].to_str().unwrap());
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        json!({
            "phone_number": TO,
            "template_id": TEMPLATE_ID,
            "personalisation": {"body": TEXT},
            "reference": "42",
        })
    );
}

#[tokio::test]
async fn notify_500_is_retryable() {
    faults::server_error(notify_send).await;
}

#[tokio::test]
async fn notify_429_is_retryable_after_retry_after() {
    let body = json!({"status_code": 429, "errors": [{"error": "RateLimitError", "message": "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"}]});
    faults::rate_limited(notify_send, body).await;
}

#[tokio::test]
async fn notify_daily_limit_is_retryable() {
    let peer = Peer::start(notify_error(
        429,
        "TooManyRequestsError",
        "Exceeded send limits (250000) for today",
    ))
    .await;
    let (reason, retry_after) = expect_retryable(notify_send(peer.url.clone()).await);
    assert!(reason.contains("TooManyRequestsError"), "{reason}");
    assert_eq!(retry_after, None);
}

#[tokio::test]
async fn notify_connection_refused_is_retryable() {
    faults::refused(notify_send).await;
}

#[tokio::test]
async fn notify_slow_peer_times_out_retryable() {
    faults::slow(notify_send, notify_created()).await;
}

#[tokio::test]
async fn notify_201_without_json_is_accepted_without_ref() {
    faults::malformed_success(notify_send).await;
}

#[tokio::test]
async fn notify_400_without_json_is_permanent() {
    faults::malformed_error(notify_send).await;
}

#[tokio::test]
async fn notify_not_a_uk_mobile_is_bad_recipient() {
    let peer = Peer::start(notify_error(
        400,
        "ValidationError",
        "phone_number Not a UK mobile number",
    ))
    .await;
    let reason = expect_bad_recipient(notify_send(peer.url.clone()).await);
    assert!(reason.contains("Not a UK mobile number"), "{reason}");
}

#[tokio::test]
async fn notify_other_400_is_permanent() {
    let peer = Peer::start(notify_error(
        400,
        "BadRequestError",
        "Can't send to this recipient using a team-only API key",
    ))
    .await;
    let reason = expect_permanent(notify_send(peer.url.clone()).await);
    assert!(reason.contains("team-only API key"), "{reason}");
}

#[tokio::test]
async fn notify_403_and_401_are_permanent() {
    let peer = Peer::start(notify_error(
        403,
        "AuthError",
        "Invalid token: API key not found",
    ))
    .await;
    let reason = expect_permanent(notify_send(peer.url.clone()).await);
    assert!(reason.contains("AuthError"), "{reason}");

    let peer = Peer::start(Reply::text(401, "Unauthorized")).await;
    expect_permanent(notify_send(peer.url.clone()).await);
}

// ---------------------------------------------------------------------------------------
// webhook

fn webhook_settings(url: &str) -> Value {
    json!({
        "url": format!("{url}/sms/send"),
        "headers": {"X-Api-Client": "oak-surgery", "X-Tenant": "A12345"},
        "signing_secret_env": secret(WEBHOOK_SECRET),
        "timeout_ms": 300,
    })
}

async fn webhook_send(base_url: String) -> Result<Accepted, SendError> {
    build("webhook", webhook_settings(&base_url))
        .unwrap()
        .send(&outgoing())
        .await
}

fn verify_signature(signature: &str, body: &[u8]) {
    let hex_mac = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&hex::decode(hex_mac).unwrap())
        .expect("signature verifies over the received bytes");
}

#[tokio::test]
async fn webhook_posts_signed_json_with_extra_headers() {
    let peer = Peer::start(Reply::json(
        202,
        json!({"id": "gw-981", "status": "queued"}),
    ))
    .await;
    let provider = build("webhook", webhook_settings(&peer.url)).unwrap();
    assert_eq!(provider.name(), "webhook-sms");
    let accepted = provider.send(&outgoing()).await.unwrap();
    assert_eq!(accepted.provider_ref.as_deref(), Some("gw-981"));

    let seen = peer.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/sms/send");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-api-client"], "oak-surgery");
    assert_eq!(seen.headers["x-tenant"], "A12345");
    verify_signature(
        seen.headers["x-gateway-signature"].to_str().unwrap(),
        &seen.body,
    );
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        json!({"message_id": 42, "channel": "sms", "to": TO, "body": TEXT, "practice": "A12345", "from": null})
    );
}

#[tokio::test]
async fn webhook_custom_signature_header_and_numeric_id() {
    let peer = Peer::start(Reply::json(200, json!({"id": 981}))).await;
    let provider = build(
        "webhook",
        json!({
            "url": peer.url,
            "signing_secret_env": secret(WEBHOOK_SECRET),
            "signature_header": "X-Hub-Signature-256",
        }),
    )
    .unwrap();
    let accepted = provider.send(&outgoing()).await.unwrap();
    assert_eq!(accepted.provider_ref.as_deref(), Some("981"));
    let seen = peer.only_request();
    assert!(seen.headers.get("x-gateway-signature").is_none());
    verify_signature(
        seen.headers["x-hub-signature-256"].to_str().unwrap(),
        &seen.body,
    );
}

#[tokio::test]
async fn webhook_500_is_retryable() {
    faults::server_error(webhook_send).await;
}

#[tokio::test]
async fn webhook_429_is_retryable_after_retry_after() {
    faults::rate_limited(webhook_send, json!({"error": "slow down"})).await;
}

#[tokio::test]
async fn webhook_connection_refused_is_retryable() {
    faults::refused(webhook_send).await;
}

#[tokio::test]
async fn webhook_slow_peer_times_out_retryable() {
    faults::slow(webhook_send, json!({"id": "late"})).await;
}

#[tokio::test]
async fn webhook_2xx_without_json_is_accepted_without_ref() {
    faults::malformed_success(webhook_send).await;
}

#[tokio::test]
async fn webhook_400_without_json_is_permanent() {
    faults::malformed_error(webhook_send).await;
}

#[tokio::test]
async fn webhook_4xx_is_permanent_and_never_echoes_the_body() {
    // A gateway that echoes the request back must not leak it into our error.
    let peer = Peer::start(Reply::text(422, &format!("cannot send '{TEXT}' to {TO}"))).await;
    let reason = expect_permanent(webhook_send(peer.url.clone()).await);
    assert!(reason.contains("422"), "{reason}");

    let peer = Peer::start(Reply::json(401, json!({"error": "bad signature"}))).await;
    let reason = expect_permanent(webhook_send(peer.url.clone()).await);
    assert!(reason.contains("bad signature"), "{reason}");
}

// ---------------------------------------------------------------------------------------
// configuration

#[test]
fn missing_env_vars_name_the_setting() {
    let unset = "PROVIDER_SMS_TEST_NEVER_SET";
    let cases = [
        (
            "twilio",
            json!({"account_sid": SID, "auth_token_env": unset, "from": "+447700900001"}),
            "auth_token_env",
        ),
        (
            "notify",
            json!({"api_key_env": unset, "template_id": TEMPLATE_ID}),
            "api_key_env",
        ),
        (
            "webhook",
            json!({"url": "https://sms.example.com/send", "signing_secret_env": unset}),
            "signing_secret_env",
        ),
    ];
    for (kind, settings, key) in cases {
        let message = build(kind, settings).err().expect("refused");
        assert!(message.contains(key), "{kind}: {message}");
        assert!(message.contains(unset), "{kind}: {message}");
    }
}

#[test]
fn unknown_settings_are_refused_by_name() {
    let cases = [
        (
            "twilio",
            json!({"account_sid": SID, "auth_token_env": secret(TOKEN), "from": "+447700900001", "form": "x"}),
        ),
        (
            "notify",
            json!({"api_key_env": secret("k"), "template_id": TEMPLATE_ID, "form": "x"}),
        ),
        (
            "webhook",
            json!({"url": "https://sms.example.com/send", "signing_secret_env": secret("s"), "form": "x"}),
        ),
    ];
    for (kind, settings) in cases {
        let message = build(kind, settings).err().expect("refused");
        assert!(message.contains("form"), "{kind}: {message}");
        // The config-load check refuses it too, without needing the secret.
        let message =
            gateway::providers::check_config(&config(kind, json!({"form": "x"}))).unwrap_err();
        assert!(message.contains("form"), "{kind}: {message}");
    }
}

#[test]
fn invalid_settings_are_explained() {
    let both = build(
        "twilio",
        json!({"account_sid": SID, "auth_token_env": secret(TOKEN), "from": "+447700900001", "messaging_service_sid": "MG1"}),
    )
    .err()
    .unwrap();
    assert!(
        both.contains("exactly one of `from` and `messaging_service_sid`"),
        "{both}"
    );

    let neither = build(
        "twilio",
        json!({"account_sid": SID, "auth_token_env": secret(TOKEN)}),
    )
    .err()
    .unwrap();
    assert!(neither.contains("exactly one"), "{neither}");

    let key = "not-a-notify-key-hunter2";
    let bad_key = build(
        "notify",
        json!({"api_key_env": secret(key), "template_id": TEMPLATE_ID}),
    )
    .err()
    .unwrap();
    assert!(bad_key.contains("api_key_env"), "{bad_key}");
    assert!(!bad_key.contains("hunter2"), "secret leaked: {bad_key}");

    let bad_header = build(
        "webhook",
        json!({"url": "https://sms.example.com/send", "signing_secret_env": secret("s"), "headers": {"Content-Type": "text/plain"}}),
    )
    .err()
    .unwrap();
    assert!(bad_header.contains("headers"), "{bad_header}");

    let bad_url = build(
        "webhook",
        json!({"url": "ftp://sms.example.com", "signing_secret_env": secret("s")}),
    )
    .err()
    .unwrap();
    assert!(bad_url.contains("`url`"), "{bad_url}");

    let mut email = config(
        "twilio",
        json!({"account_sid": SID, "auth_token_env": secret(TOKEN), "from": "+447700900001"}),
    );
    email.channel = Channel::Email;
    let wrong_channel = gateway::providers::check_config(&email).unwrap_err();
    assert!(wrong_channel.contains("sms only"), "{wrong_channel}");
}

// ---------------------------------------------------------------------------------------
// Each practice sends as itself

/// A message from practice `ods`, with its own SMS sender if it has one.
fn from_practice(ods: &str, sender: Option<&str>) -> Outgoing {
    let mut message = outgoing();
    message.practice = PracticeRef {
        ods_code: ods.into(),
        name: format!("Surgery {ods}"),
        sms_sender: sender.map(str::to_string),
        ..Default::default()
    };
    message
}

/// Two practices' messages and one from a practice without a sender, in that order.
fn three_practices() -> [Outgoing; 3] {
    [
        from_practice("A11111", Some("RIVERSIDE")),
        from_practice("B22222", Some("Beta Surg")),
        from_practice("C33333", None),
    ]
}

#[tokio::test]
async fn twilio_sends_each_practice_from_its_own_sender() {
    let peer = Peer::start(Reply::json(201, twilio_created())).await;
    let provider = build("twilio", twilio_settings(&peer.url)).unwrap();
    for message in three_practices() {
        provider.send(&message).await.unwrap();
    }
    let senders: Vec<String> = peer
        .requests()
        .iter()
        .map(|seen| {
            form_fields(&seen.body)
                .into_iter()
                .find(|(name, _)| name == "From")
                .map(|(_, value)| value)
                .unwrap_or_default()
        })
        .collect();
    // The practice without a sender goes from the provider's configured `from`.
    assert_eq!(senders, ["RIVERSIDE", "Beta Surg", "+447700900001"]);
}

#[tokio::test]
async fn twilio_messaging_service_adds_the_practice_sender_as_from() {
    let peer = Peer::start(Reply::json(201, twilio_created())).await;
    let provider = build(
        "twilio",
        json!({
            "base_url": peer.url,
            "account_sid": SID,
            "auth_token_env": secret(TOKEN),
            "messaging_service_sid": "MG0123456789abcdef0123456789abcdef",
        }),
    )
    .unwrap();
    for message in three_practices() {
        provider.send(&message).await.unwrap();
    }
    let froms: Vec<Option<String>> = peer
        .requests()
        .iter()
        .map(|seen| {
            let fields = form_fields(&seen.body);
            assert!(fields.iter().any(|(name, _)| name == "MessagingServiceSid"));
            fields
                .into_iter()
                .find(|(name, _)| name == "From")
                .map(|(_, value)| value)
        })
        .collect();
    assert_eq!(
        froms,
        [
            Some("RIVERSIDE".to_string()),
            Some("Beta Surg".to_string()),
            None
        ]
    );
}

#[tokio::test]
async fn webhook_carries_each_practice_sender_as_from() {
    let peer = Peer::start(Reply::json(200, json!({"id": "gw-1"}))).await;
    let provider = build("webhook", webhook_settings(&peer.url)).unwrap();
    for message in three_practices() {
        provider.send(&message).await.unwrap();
    }
    let bodies: Vec<Value> = peer
        .requests()
        .iter()
        .map(|seen| serde_json::from_slice(&seen.body).unwrap())
        .collect();
    let pairs: Vec<(Value, Value)> = bodies
        .iter()
        .map(|b| (b["practice"].clone(), b["from"].clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (json!("A11111"), json!("RIVERSIDE")),
            (json!("B22222"), json!("Beta Surg")),
            (json!("C33333"), Value::Null),
        ]
    );
}

#[tokio::test]
async fn notify_maps_each_practice_sender_to_its_registered_sender_id() {
    const RIVERSIDE_ID: &str = "11111111-2222-4333-8444-555555555555";
    const DEFAULT_ID: &str = "99999999-2222-4333-8444-555555555555";
    let peer = Peer::start(Reply::json(201, notify_created())).await;
    let mut settings = notify_settings(&peer.url);
    settings["sms_sender_ids"] = json!({ "RIVERSIDE": RIVERSIDE_ID });
    settings["sms_sender_id"] = json!(DEFAULT_ID);
    let provider = build("notify", settings).unwrap();
    for message in three_practices() {
        provider.send(&message).await.unwrap();
    }
    let ids: Vec<Value> = peer
        .requests()
        .iter()
        .map(|seen| serde_json::from_slice::<Value>(&seen.body).unwrap()["sms_sender_id"].clone())
        .collect();
    // Beta's sender is not registered in the Notify service: the configured default.
    assert_eq!(
        ids,
        [json!(RIVERSIDE_ID), json!(DEFAULT_ID), json!(DEFAULT_ID)]
    );

    let mut bad = notify_settings(&peer.url);
    bad["sms_sender_ids"] = json!({ "RIVERSIDE": "not-a-uuid" });
    let refused = build("notify", bad).err().unwrap();
    assert!(refused.contains("sms_sender_ids.RIVERSIDE"), "{refused}");
}
