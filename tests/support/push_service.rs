//! A Web Push service on loopback for tests, as a browser vendor's would be plus the browser
//! behind it: it checks each request's VAPID token (RFC 8292), RFC 8030 headers and content
//! coding, and decrypts the payload with its own RFC 8291 code, written from the RFCs and
//! independent of the gateway's. Shared by `tests/provider_webpush.rs` and the end-to-end
//! tests (`tests/api`), which include it with `#[path = ...] mod push_service;`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gateway::providers::PushKeys;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::Value;
use sha2::Sha256;

// ---------------------------------------------------------------------------------------------
// An independent RFC 8291 (aes128gcm, RFC 8188) decryptor, written from the RFCs.

fn hkdf_expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), String> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|e| format!("hkdf: {e}"))
}

/// Decrypts an aes128gcm Web Push body as the user agent holding `ua_secret` and `auth`.
pub fn rfc8291_decrypt(
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

// ---------------------------------------------------------------------------------------------
// A browser and a push service.

/// The user agent's side of a subscription: its P-256 key pair and auth secret.
pub struct Browser {
    /// The private half of `keys.p256dh`.
    pub secret: p256::SecretKey,
    /// The 16-byte authentication secret (`keys.auth`).
    pub auth: [u8; 16],
}

impl Browser {
    /// A fresh key pair and auth secret, as a browser makes on `pushManager.subscribe()`.
    pub fn new() -> Self {
        let mut auth = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut auth);
        Self {
            secret: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth,
        }
    }

    /// The subscription's `keys`, base64url as `PushSubscription.toJSON()` gives them.
    pub fn keys(&self) -> PushKeys {
        PushKeys {
            p256dh: URL_SAFE_NO_PAD
                .encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }
}

/// What the push service answers to a request that passed every check.
#[derive(Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Time taken before answering.
    pub delay: Duration,
    /// Answer each request with its own `Location` (`{origin}/m/{n}`), as real push
    /// services name the message they created.
    pub numbered_location: bool,
}

impl Reply {
    /// Just this status, at once.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            numbered_location: false,
        }
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Gives each accepted message its own `Location`.
    pub fn numbered_location(mut self) -> Self {
        self.numbered_location = true;
        self
    }
}

/// A request that passed every check, with its decrypted payload.
#[derive(Debug)]
pub struct Delivered {
    /// The endpoint path it was posted to.
    pub path: String,
    /// The `TTL` header.
    pub ttl: String,
    /// The `Urgency` header.
    pub urgency: String,
    /// The `Topic` header, if any.
    pub topic: Option<String>,
    /// How far ahead the VAPID token's `exp` was, in seconds.
    pub exp_in_seconds: i64,
    /// The decrypted payload, parsed as JSON.
    pub payload: Value,
    /// The `Location` answered, if any.
    pub location: Option<String>,
}

/// What the service knows and has seen.
pub struct ServiceState {
    /// `http://127.0.0.1:{port}`, the `aud` a VAPID token must carry.
    pub origin: String,
    /// The VAPID public key (`k=`) a request must carry.
    pub vapid_public: String,
    /// The VAPID `sub` a token must carry.
    pub subject: String,
    /// The one browser every endpoint of this service delivers to.
    pub browser: Browser,
    /// What to answer.
    pub reply: Reply,
    /// Every request, in order: what it delivered, or why it was refused.
    pub received: Mutex<Vec<Result<Delivered, String>>>,
    /// Messages accepted so far (numbers `Location`s).
    accepted: AtomicUsize,
}

/// A running push service on 127.0.0.1.
pub struct PushService {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, shared with the handler.
    pub state: Arc<ServiceState>,
}

impl PushService {
    /// Starts a service that accepts tokens signed by `vapid_public`'s key with `sub` =
    /// `subject`, and answers as `reply` says.
    pub async fn start(vapid_public: &str, subject: &str, reply: Reply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServiceState {
            origin: format!("http://{addr}"),
            vapid_public: vapid_public.to_string(),
            subject: subject.to_string(),
            browser: Browser::new(),
            reply,
            received: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(push_handler)
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state }
    }

    /// A subscription endpoint on this service.
    pub fn endpoint(&self, token: &str) -> String {
        format!("http://{}/push/{token}", self.addr)
    }

    /// The browser's subscription keys.
    pub fn keys(&self) -> PushKeys {
        self.state.browser.keys()
    }

    /// Every request since the last call (taken, so the next call sees only newer ones).
    pub fn received(&self) -> Vec<Result<Delivered, String>> {
        std::mem::take(&mut *self.state.received.lock().unwrap())
    }

    /// The single request received, which must have passed every check.
    pub fn delivered(&self) -> Delivered {
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
    let mut verdict = check_push(&state, &method, &uri, &headers, &body);
    let location = match &mut verdict {
        Ok(delivered) if state.reply.numbered_location => {
            let n = state.accepted.fetch_add(1, Ordering::SeqCst) + 1;
            let location = format!("{}/m/{n}", state.origin);
            delivered.location = Some(location.clone());
            Some(location)
        }
        _ => None,
    };
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
    if let Some(location) = location {
        response
            .headers_mut()
            .insert("location", location.parse().unwrap());
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
        location: None,
    })
}
