//! The `webpush` provider against a real push service on 127.0.0.1 that checks the VAPID
//! token and decrypts the payload with its own RFC 8291 code, as a browser would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{json, Value};
use sha2::Sha256;

use gateway::config::ProviderConfig;
use gateway::domain::{Channel, Priority};
use gateway::providers::{
    generate_vapid_keys, Outgoing, PracticeRef, Provider, ProviderRegistry, PushKeys, SendError,
};

const SUBJECT: &str = "mailto:it-support@highstreet-surgery.nhs.uk";

// ---------------------------------------------------------------------------------------------
// An independent RFC 8291 (aes128gcm, RFC 8188) decryptor, written from the RFCs.

fn hkdf_expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), String> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|e| format!("hkdf: {e}"))
}

/// Decrypts an aes128gcm Web Push body as the user agent holding `ua_secret` and `auth`.
fn rfc8291_decrypt(
    ua_secret: &p256::SecretKey,
    auth: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    // RFC 8188 section 2.1 header: salt (16) | rs (u32 BE) | idlen (u8) | keyid (idlen).
    if body.len() < 21 {
        return Err("body shorter than the aes128gcm header".into());
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let idlen = body[20] as usize;
    if idlen != 65 {
        return Err(format!(
            "keyid is {idlen} bytes, RFC 8291 requires the 65-byte sender key"
        ));
    }
    if body.len() < 21 + idlen {
        return Err("body shorter than its keyid".into());
    }
    if rs < 18 {
        return Err(format!("record size {rs} too small"));
    }
    let as_public_bytes = &body[21..21 + idlen];
    let as_public = p256::PublicKey::from_sec1_bytes(as_public_bytes)
        .map_err(|_| "keyid is not a P-256 point".to_string())?;
    let ua_public = ua_secret.public_key().to_encoded_point(false);

    // RFC 8291 section 3.4: IKM = HKDF(auth, ecdh_secret, "WebPush: info\0" || ua || as, 32).
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(as_public_bytes);
    let mut ikm = [0u8; 32];
    hkdf_expand(auth, shared.raw_secret_bytes(), &key_info, &mut ikm)?;

    // RFC 8188 section 2.2 and 2.3: CEK and NONCE from HKDF(salt, IKM).
    let mut cek = [0u8; 16];
    hkdf_expand(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    hkdf_expand(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce)?;

    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|e| format!("aes: {e}"))?;
    let records: Vec<&[u8]> = body[21 + idlen..].chunks(rs).collect();
    if records.is_empty() {
        return Err("no records".into());
    }
    let mut plain = Vec::new();
    for (seq, record) in records.iter().enumerate() {
        // The record nonce is NONCE XOR the sequence number (96-bit big-endian).
        let mut record_nonce = nonce;
        for (i, byte) in (seq as u128).to_be_bytes()[4..].iter().enumerate() {
            record_nonce[i] ^= byte;
        }
        let mut text = cipher
            .decrypt(Nonce::from_slice(&record_nonce), *record)
            .map_err(|_| format!("record {seq} failed to authenticate"))?;
        // Strip padding: zeros after a delimiter, 0x02 on the last record, 0x01 before.
        let last = seq + 1 == records.len();
        let end = text
            .iter()
            .rposition(|b| *b != 0)
            .ok_or_else(|| format!("record {seq} has no padding delimiter"))?;
        let expected = if last { 2 } else { 1 };
        if text[end] != expected {
            return Err(format!(
                "record {seq} delimiter is {}, expected {expected}",
                text[end]
            ));
        }
        text.truncate(end);
        plain.extend_from_slice(&text);
    }
    Ok(plain)
}

fn b64(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(value)
        .expect("test vector is base64url")
}

/// RFC 8291 Appendix A: the decryptor above must reproduce the RFC's example.
#[tokio::test]
async fn independent_decryptor_matches_rfc8291_appendix_a() {
    let ua_private = b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94");
    let ua_public = b64(
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    );
    let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
    let as_public = b64(
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
    );
    let shared = b64("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
    let message = b64(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLoc\
         InmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLV\
         WGNWQexSgSxsj_Qulcy4a-fN",
    );

    let ua_secret = p256::SecretKey::from_slice(&ua_private).unwrap();
    assert_eq!(
        ua_secret.public_key().to_encoded_point(false).as_bytes(),
        &ua_public[..]
    );
    let as_key = p256::PublicKey::from_sec1_bytes(&as_public).unwrap();
    let ecdh = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_key.as_affine());
    assert_eq!(ecdh.raw_secret_bytes().as_slice(), &shared[..]);
    assert_eq!(
        &message[21..86],
        &as_public[..],
        "keyid is the sender's public key"
    );

    let plain = rfc8291_decrypt(&ua_secret, &auth, &message).unwrap();
    assert_eq!(plain, b"When I grow up, I want to be a watermelon");

    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(rfc8291_decrypt(&ua_secret, &auth, &tampered).is_err());
}

// ---------------------------------------------------------------------------------------------
// A browser and a push service.

/// The user agent's side of a subscription.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let mut auth = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut auth);
        Self {
            secret: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth,
        }
    }

    fn keys(&self) -> PushKeys {
        PushKeys {
            p256dh: URL_SAFE_NO_PAD
                .encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }
}

/// What the push service answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A request that passed every check, with its decrypted payload.
#[derive(Debug)]
struct Delivered {
    path: String,
    ttl: String,
    urgency: String,
    topic: Option<String>,
    exp_in_seconds: i64,
    payload: Value,
}

struct ServiceState {
    origin: String,
    vapid_public: String,
    subject: String,
    browser: Browser,
    reply: Reply,
    received: Mutex<Vec<Result<Delivered, String>>>,
}

struct PushService {
    addr: SocketAddr,
    state: Arc<ServiceState>,
}

impl PushService {
    async fn start(vapid_public: &str, reply: Reply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServiceState {
            origin: format!("http://{addr}"),
            vapid_public: vapid_public.to_string(),
            subject: SUBJECT.to_string(),
            browser: Browser::new(),
            reply,
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(push_handler)
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state }
    }

    fn endpoint(&self, token: &str) -> String {
        format!("http://{}/push/{token}", self.addr)
    }

    fn received(&self) -> Vec<Result<Delivered, String>> {
        std::mem::take(&mut *self.state.received.lock().unwrap())
    }

    /// The single request received, which must have passed every check.
    fn delivered(&self) -> Delivered {
        let mut received = self.received();
        assert_eq!(received.len(), 1, "{received:?}");
        received.remove(0).unwrap()
    }
}

async fn push_handler(
    State(state): State<Arc<ServiceState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verdict = check_push(&state, &method, &uri, &headers, &body);
    let failed = verdict.as_ref().err().cloned();
    state.received.lock().unwrap().push(verdict);
    if let Some(reason) = failed {
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    tokio::time::sleep(state.reply.delay).await;
    let mut response = StatusCode::from_u16(state.reply.status)
        .unwrap()
        .into_response();
    for (name, value) in &state.reply.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    headers
        .get(name)
        .ok_or_else(|| format!("no {name} header"))?
        .to_str()
        .map_err(|_| format!("{name} is not text"))
}

/// Everything a push service and the browser check (RFC 8030, 8291, 8292).
fn check_push(
    state: &ServiceState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivered, String> {
    if method != Method::POST {
        return Err(format!("method {method}"));
    }

    // RFC 8292 section 3: Authorization: vapid t=<jwt>, k=<public key>.
    let authorization = header(headers, "authorization")?;
    let rest = authorization
        .strip_prefix("vapid ")
        .ok_or("authorization scheme is not vapid")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => token = Some(value.trim()),
            Some(("k", value)) => key = Some(value.trim()),
            _ => return Err(format!("unexpected vapid parameter {part:?}")),
        }
    }
    let (token, key) = (token.ok_or("no t=")?, key.ok_or("no k=")?);
    if key != state.vapid_public {
        return Err(format!("k={key} is not the configured VAPID public key"));
    }
    let verifying_key =
        VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(key).map_err(|e| e.to_string())?)
            .map_err(|e| format!("k is not a P-256 key: {e}"))?;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("JWT does not have three parts".into());
    }
    let jwt_header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts[0])
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if jwt_header["alg"] != "ES256" {
        return Err(format!("JWT alg {}", jwt_header["alg"]));
    }
    let signature = Signature::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("JWT signature is not 64 bytes r||s: {e}"))?;
    verifying_key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "JWT signature does not verify".to_string())?;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts[1])
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if claims["aud"] != state.origin.as_str() {
        return Err(format!(
            "aud {} is not the origin {}",
            claims["aud"], state.origin
        ));
    }
    if claims["sub"] != state.subject.as_str() {
        return Err(format!("sub {}", claims["sub"]));
    }
    let exp = claims["exp"].as_i64().ok_or("exp is not a number")?;
    let exp_in_seconds = exp - chrono::Utc::now().timestamp();
    if exp_in_seconds <= 0 || exp_in_seconds > 86_400 {
        return Err(format!("exp is {exp_in_seconds} s ahead, not within 24 h"));
    }

    // RFC 8030 headers and RFC 8291 content coding.
    if header(headers, "content-encoding")? != "aes128gcm" {
        return Err("content-encoding is not aes128gcm".into());
    }
    let ttl = header(headers, "ttl")?.to_string();
    ttl.parse::<u64>().map_err(|_| format!("TTL {ttl:?}"))?;
    let urgency = header(headers, "urgency")?.to_string();
    let topic = headers
        .get("topic")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| "topic not text".to_string())
        })
        .transpose()?;
    if let Some(topic) = &topic {
        let url_safe = topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if topic.len() > 32 || !url_safe {
            return Err(format!("topic {topic:?} is not <= 32 base64url characters"));
        }
    }
    if body.len() > 4096 {
        return Err("body over 4096 bytes".into());
    }

    let plain = rfc8291_decrypt(&state.browser.secret, &state.browser.auth, body)?;
    let payload: Value = serde_json::from_slice(&plain).map_err(|e| format!("payload: {e}"))?;
    Ok(Delivered {
        path: uri.path().to_string(),
        ttl,
        urgency,
        topic,
        exp_in_seconds,
        payload,
    })
}

// ---------------------------------------------------------------------------------------------
// Building providers and messages.

/// A fresh VAPID key pair with its private key in the environment variable `variable`.
fn vapid_keys_in_env(variable: &str) -> String {
    let (public, private) = generate_vapid_keys();
    std::env::set_var(variable, private);
    public
}

fn settings(public: &str, variable: &str, extra: Value) -> serde_json::Map<String, Value> {
    let mut settings = json!({
        "vapid_public_key": public,
        "vapid_private_key_env": variable,
        "subject": SUBJECT,
        "allow_insecure_hosts": ["127.0.0.1"],
    });
    if let (Some(map), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    settings.as_object().cloned().unwrap()
}

fn build(settings: serde_json::Map<String, Value>) -> Result<Arc<dyn Provider>, String> {
    let config = ProviderConfig {
        name: "browser-push".into(),
        kind: "webpush".into(),
        channel: Channel::Push,
        settings,
    };
    let registry = ProviderRegistry::from_config(&[config]).map_err(|e| e.to_string())?;
    Ok(registry.for_channel(Channel::Push)[0].clone())
}

/// A provider for `service`, its key in an environment variable named after `test`.
fn provider_for(test: &str, extra: Value) -> (String, Arc<dyn Provider>) {
    let variable = format!("GATEWAY_TEST_WEBPUSH_{test}");
    let public = vapid_keys_in_env(&variable);
    let provider = build(settings(&public, &variable, extra)).unwrap();
    (public, provider)
}

fn message(address: String, keys: Option<PushKeys>, priority: Priority) -> Outgoing {
    Outgoing {
        message_id: 7001,
        channel: Channel::Push,
        address,
        subject: Some("High Street Surgery".into()),
        body: "The surgery is closed on Friday afternoon for staff training.".into(),
        html: None,
        priority,
        practice: PracticeRef {
            ods_code: "A81001".into(),
            name: "High Street Surgery".into(),
            reply_to: None,
        },
        unsubscribe_url: None,
        push: keys,
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery.

#[tokio::test]
async fn bulk_push_is_signed_encrypted_and_replaceable() {
    let variable = "GATEWAY_TEST_WEBPUSH_BULK";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(
        &public,
        Reply {
            status: 201,
            headers: vec![("location", "https://push.example.net/m/msg-123")],
            delay: Duration::ZERO,
        },
    )
    .await;
    let provider = build(settings(&public, variable, json!({"ttl_seconds": 3600}))).unwrap();
    assert_eq!(provider.name(), "browser-push");
    assert_eq!(provider.channel(), Channel::Push);

    let keys = service.state.browser.keys();
    let accepted = provider
        .send(&message(
            service.endpoint("sub-1"),
            Some(keys),
            Priority::Bulk,
        ))
        .await
        .unwrap();
    assert_eq!(
        accepted.provider_ref.as_deref(),
        Some("https://push.example.net/m/msg-123")
    );

    let delivered = service.delivered();
    assert_eq!(delivered.path, "/push/sub-1");
    assert_eq!(delivered.ttl, "3600");
    assert_eq!(delivered.urgency, "normal");
    assert_eq!(delivered.topic.as_deref(), Some("practice-A81001"));
    assert!(
        delivered.exp_in_seconds <= 12 * 3600 + 5,
        "{}",
        delivered.exp_in_seconds
    );
    assert_eq!(delivered.payload["title"], "High Street Surgery");
    assert_eq!(
        delivered.payload["body"],
        "The surgery is closed on Friday afternoon for staff training."
    );
    assert_eq!(delivered.payload["practice"], "A81001");
    assert_eq!(delivered.payload["message_id"], 7001);
}

#[tokio::test]
async fn urgent_push_is_high_urgency_without_topic() {
    let variable = "GATEWAY_TEST_WEBPUSH_URGENT";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, Reply::status(201)).await;
    let provider = build(settings(&public, variable, json!({}))).unwrap();

    let mut urgent = message(
        service.endpoint("sub-2"),
        Some(service.state.browser.keys()),
        Priority::Urgent,
    );
    urgent.subject = Some("Appointment moved".into());
    urgent.body = "Your appointment is now at 10:40 on Tuesday.".into();
    let accepted = provider.send(&urgent).await.unwrap();
    assert_eq!(accepted.provider_ref, None);

    let delivered = service.delivered();
    assert_eq!(delivered.ttl, "86400");
    assert_eq!(delivered.urgency, "high");
    assert_eq!(delivered.topic, None);
    assert_eq!(delivered.payload["title"], "Appointment moved");
    assert_eq!(
        delivered.payload["body"],
        "Your appointment is now at 10:40 on Tuesday."
    );
}

#[tokio::test]
async fn push_services_status_codes_are_classified() {
    let variable = "GATEWAY_TEST_WEBPUSH_STATUSES";
    let public = vapid_keys_in_env(variable);
    let provider = build(settings(&public, variable, json!({}))).unwrap();

    let cases: Vec<(Reply, &str)> = vec![
        (Reply::status(200), "accepted"),
        (Reply::status(202), "accepted"),
        (Reply::status(410), "bad recipient"),
        (Reply::status(404), "bad recipient"),
        (Reply::status(413), "permanent"),
        (Reply::status(400), "permanent"),
        (Reply::status(403), "permanent"),
        (Reply::status(401), "permanent"),
        (
            Reply {
                status: 429,
                headers: vec![("retry-after", "2")],
                delay: Duration::ZERO,
            },
            "retry after 2",
        ),
        (Reply::status(500), "retryable"),
        (Reply::status(503), "retryable"),
    ];
    for (reply, expected) in cases {
        let status = reply.status;
        let service = PushService::start(&public, reply).await;
        let result = provider
            .send(&message(
                service.endpoint("sub"),
                Some(service.state.browser.keys()),
                Priority::Bulk,
            ))
            .await;
        // The request itself was valid: only the reply differs.
        service.delivered();
        let got = match &result {
            Ok(_) => "accepted".to_string(),
            Err(SendError::BadRecipient { .. }) => "bad recipient".into(),
            Err(SendError::Permanent { .. }) => "permanent".into(),
            Err(SendError::Retryable {
                retry_after: Some(wait),
                ..
            }) => format!("retry after {}", wait.as_secs()),
            Err(SendError::Retryable { .. }) => "retryable".into(),
        };
        assert_eq!(got, expected, "status {status}: {result:?}");
        if let Err(e) = &result {
            assert!(
                !e.to_string().contains("/push/"),
                "endpoint path leaked: {e}"
            );
        }
    }
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let (_, provider) = provider_for("REFUSED", json!({"timeout_ms": 2000}));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let browser = Browser::new();
    let result = provider
        .send(&message(
            format!("http://{addr}/push/gone"),
            Some(browser.keys()),
            Priority::Bulk,
        ))
        .await;
    match result {
        Err(SendError::Retryable { reason, .. }) => {
            assert!(!reason.contains("/push/gone"), "endpoint leaked: {reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slow_push_service_times_out_as_retryable() {
    let variable = "GATEWAY_TEST_WEBPUSH_SLOW";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(
        &public,
        Reply {
            status: 201,
            headers: Vec::new(),
            delay: Duration::from_secs(5),
        },
    )
    .await;
    let provider = build(settings(&public, variable, json!({"timeout_ms": 300}))).unwrap();
    let started = Instant::now();
    let result = provider
        .send(&message(
            service.endpoint("slow"),
            Some(service.state.browser.keys()),
            Priority::Urgent,
        ))
        .await;
    assert!(
        matches!(result, Err(SendError::Retryable { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Refused before sending.

#[tokio::test]
async fn plain_http_endpoints_need_an_allowed_host() {
    let variable = "GATEWAY_TEST_WEBPUSH_INSECURE";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, Reply::status(201)).await;
    let strict = build(settings(
        &public,
        variable,
        json!({"allow_insecure_hosts": []}),
    ))
    .unwrap();
    let other_host = build(settings(
        &public,
        variable,
        json!({"allow_insecure_hosts": ["push.internal"]}),
    ))
    .unwrap();
    for provider in [strict, other_host] {
        let result = provider
            .send(&message(
                service.endpoint("plain"),
                Some(service.state.browser.keys()),
                Priority::Bulk,
            ))
            .await;
        assert!(
            matches!(result, Err(SendError::Permanent { .. })),
            "{result:?}"
        );
    }
    assert!(service.received().is_empty(), "a request was sent");
}

#[tokio::test]
async fn missing_or_malformed_keys_are_bad_recipients() {
    let variable = "GATEWAY_TEST_WEBPUSH_KEYS";
    let public = vapid_keys_in_env(variable);
    let service = PushService::start(&public, Reply::status(201)).await;
    let provider = build(settings(&public, variable, json!({}))).unwrap();
    let good = service.state.browser.keys();
    let compressed = URL_SAFE_NO_PAD.encode(
        service
            .state
            .browser
            .secret
            .public_key()
            .to_encoded_point(true)
            .as_bytes(),
    );
    let not_on_curve = URL_SAFE_NO_PAD.encode([4u8; 65]);
    let bad_keys = [
        None,
        Some(PushKeys {
            p256dh: "not base64 !!".into(),
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: compressed,
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: not_on_curve,
            auth: good.auth.clone(),
        }),
        Some(PushKeys {
            p256dh: good.p256dh.clone(),
            auth: URL_SAFE_NO_PAD.encode([1u8; 15]),
        }),
        Some(PushKeys {
            p256dh: good.p256dh.clone(),
            auth: "***".into(),
        }),
        Some(PushKeys {
            p256dh: String::new(),
            auth: String::new(),
        }),
    ];
    for keys in bad_keys {
        let result = provider
            .send(&message(
                service.endpoint("keys"),
                keys.clone(),
                Priority::Bulk,
            ))
            .await;
        assert!(
            matches!(result, Err(SendError::BadRecipient { .. })),
            "{keys:?}: {result:?}"
        );
    }
    for address in [
        "not a url",
        "ftp://127.0.0.1/push",
        "http://user:pw@127.0.0.1/push",
    ] {
        let result = provider
            .send(&message(address.into(), Some(good.clone()), Priority::Bulk))
            .await;
        assert!(
            matches!(result, Err(SendError::BadRecipient { .. })),
            "{address}: {result:?}"
        );
    }
    assert!(service.received().is_empty(), "a request was sent");
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[tokio::test]
async fn bad_configuration_fails_naming_the_key() {
    let variable = "GATEWAY_TEST_WEBPUSH_CONFIG";
    let public = vapid_keys_in_env(variable);
    assert!(build(settings(&public, variable, json!({}))).is_ok());

    let fails = |extra: Value, key: &str| {
        let error = build(settings(&public, variable, extra))
            .err()
            .expect("config accepted");
        assert!(error.contains(key), "{error} does not name {key}");
        assert!(
            error.contains("browser-push"),
            "{error} does not name the provider"
        );
    };
    for subject in [
        "it-support@highstreet-surgery.nhs.uk",
        "mailto:",
        "mailto:nobody",
        "http://highstreet-surgery.nhs.uk",
        "mailto:admin@example.com",
        "mailto:me@localhost",
    ] {
        fails(json!({ "subject": subject }), "subject");
    }
    fails(json!({"vapid_public_key": "AAAA"}), "vapid_public_key");
    fails(json!({"ttl_seconds": 100_000_000}), "ttl_seconds");
    fails(json!({"timeout_ms": 0}), "timeout_ms");
    fails(
        json!({"vapid_private_key_env": "GATEWAY_TEST_WEBPUSH_UNSET_VARIABLE"}),
        "vapid_private_key_env",
    );
    fails(json!({"unexpected": true}), "unexpected");

    // A key pair that does not belong together.
    let (other_public, _) = generate_vapid_keys();
    fails(
        json!({ "vapid_public_key": other_public }),
        "vapid_private_key_env",
    );
    let garbage = "GATEWAY_TEST_WEBPUSH_CONFIG_GARBAGE";
    std::env::set_var(garbage, "not-a-key");
    fails(
        json!({ "vapid_private_key_env": garbage }),
        "vapid_private_key_env",
    );
}
