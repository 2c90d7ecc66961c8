//! A loopback NHS Notify for the `nhs_notify` provider kind: the NHS England API platform's
//! token endpoint, which verifies each client assertion (RS512 signature with the test
//! public key, `kid`, claims), and the Communications Manager's `/comms/v1/messages` and
//! `/comms/v1/message-batches`, which check each request's shape and limits and answer as
//! a script says (accept, 500, or 429 with Retry-After). Whatever is wrong with a request
//! is recorded as a problem for the test to show.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gateway::config::ProviderConfig;
use gateway::domain::Channel;
use serde_json::{json, Value};

/// The API key the tests' application has.
pub const API_KEY: &str = "test-nhs-notify-api-key";
/// The application id on the platform (half of the callbacks' signing key).
pub const APPLICATION_ID: &str = "test-nhs-notify-application";
/// The `kid` the test public key is registered under.
pub const KID: &str = "test-key-1";
/// Environment variables the tests' config names.
pub const API_KEY_ENV: &str = "GATEWAY_TEST_NHS_NOTIFY_API_KEY";
pub const APPLICATION_ID_ENV: &str = "GATEWAY_TEST_NHS_NOTIFY_APPLICATION_ID";
/// The routing plans of the tests' config.
pub const STATUS_PLAN: &str = "00000000-0000-0000-0000-000000000001";
pub const APPOINTMENT_PLAN: &str = "00000000-0000-0000-0000-00000000000a";
/// NHS Notify's limits for one request.
const MAX_MESSAGES: usize = 45_000;
const MAX_BYTES: usize = 5_200_000;

/// Puts the API key and application id where the tests' config says to find them.
pub fn set_secrets() {
    std::env::set_var(API_KEY_ENV, API_KEY);
    std::env::set_var(APPLICATION_ID_ENV, APPLICATION_ID);
}

/// How the peer answers one send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 201 with an id per message.
    Accept,
    /// 500.
    Fail,
    /// 429 with `Retry-After` in seconds.
    Busy(u64),
}

/// One send request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// When, on the test's clock.
    pub at: Instant,
    /// `/comms/v1/messages` (false) or `/comms/v1/message-batches` (true).
    pub batch: bool,
    /// Its routing plan.
    pub routing_plan: String,
    /// Its messages: (messageReference, nhsNumber, odsCode, body).
    pub messages: Vec<(String, String, String, String)>,
    /// How it was answered.
    pub answer: Answer,
}

type Script = Box<dyn Fn(usize) -> Answer + Send + Sync>;

struct PeerState {
    url: Mutex<String>,
    requests: Mutex<Vec<Request>>,
    problems: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
    jtis: Mutex<HashSet<String>>,
    sends: AtomicUsize,
    script: Script,
    public_key: Vec<u8>,
}

/// The running peer.
pub struct NhsNotifyPeer {
    /// Its base URL.
    pub url: String,
    state: Arc<PeerState>,
}

/// The test key pair's private half (PEM) and public half (PKCS#1 DER).
pub fn test_keys() -> (String, Vec<u8>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let private = std::fs::read_to_string(format!("{dir}nhs_notify_test_key.pem")).unwrap();
    let public = std::fs::read_to_string(format!("{dir}nhs_notify_test_key.pub.pem")).unwrap();
    let body: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
    (private, STANDARD.decode(body).unwrap())
}

impl NhsNotifyPeer {
    /// Starts a peer answering send request number `n` (from 0) with `script(n)`.
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let state = Arc::new(PeerState {
            url: Mutex::new(String::new()),
            requests: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            jtis: Mutex::new(HashSet::new()),
            sends: AtomicUsize::new(0),
            script: Box::new(script),
            public_key: test_keys().1,
        });
        let app = axum::Router::new()
            .route("/oauth2/token", post(token))
            .route("/comms/v1/messages", post(single))
            .route("/comms/v1/message-batches", post(batch))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.url.lock().unwrap() = url.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    /// A peer that accepts everything.
    pub async fn accepting() -> Self {
        Self::start(|_| Answer::Accept).await
    }

    /// Every send request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// What was wrong with any request so far.
    pub fn problems(&self) -> Vec<String> {
        self.state.problems.lock().unwrap().clone()
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens.lock().unwrap().len()
    }

    /// The `nhs_notify` provider pointing at this peer, batching up to `max_batch` messages
    /// that arrive within `linger_ms`.
    pub fn provider(&self, max_batch: usize, linger_ms: u64) -> ProviderConfig {
        let (private_key, _) = test_keys();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        assert!(private_key.contains("PRIVATE KEY"));
        ProviderConfig {
            name: "nhs-app".into(),
            kind: "nhs_notify".into(),
            channel: Channel::NhsApp,
            rate: None,
            burst: None,
            price_pence: None,
            settings: json!({
                "base_url": self.url,
                "api_key_env": API_KEY_ENV,
                "kid": KID,
                "private_key_path": format!("{dir}nhs_notify_test_key.pem"),
                "routing_plans": { "status.*": STATUS_PLAN, "appointment.*": APPOINTMENT_PLAN },
                "max_batch_messages": max_batch,
                "batch_linger_ms": linger_ms,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        }
    }
}

fn problem(state: &PeerState, what: String) {
    state.problems.lock().unwrap().push(what);
}

/// `POST /oauth2/token`: verifies the client assertion as the platform does.
async fn token(State(state): State<Arc<PeerState>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut wrong = Vec::new();
    if field("grant_type") != "client_credentials" {
        wrong.push("grant_type".to_string());
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        wrong.push("client_assertion_type".to_string());
    }
    let token_url = format!("{}/oauth2/token", state.url.lock().unwrap());
    if let Err(e) = check_assertion(&state, &field("client_assertion"), &token_url) {
        wrong.push(e);
    }
    if !wrong.is_empty() {
        problem(&state, format!("token request: {}", wrong.join(", ")));
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_request" })),
        )
            .into_response();
    }
    let mut tokens = state.tokens.lock().unwrap();
    let token = format!("token-{}", tokens.len() + 1);
    tokens.push(token.clone());
    // The platform sends expires_in as a string.
    Json(json!({ "access_token": token, "expires_in": "599", "token_type": "Bearer", "issued_at": "0" }))
        .into_response()
}

/// The assertion's header, signature and claims, as the platform checks them.
fn check_assertion(state: &PeerState, jwt: &str, token_url: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("assertion is not a JWT".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let header = decode(header)?;
    if header["alg"] != "RS512" || header["kid"] != KID {
        return Err(format!("assertion header {header}"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| e.to_string())?;
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA512,
        &state.public_key,
    )
    .verify(signed.as_bytes(), &signature)
    .map_err(|_| "assertion signature does not verify".to_string())?;
    let claims = decode(claims)?;
    let now = chrono::Utc::now().timestamp();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if claims["iss"] != API_KEY || claims["sub"] != API_KEY {
        return Err(format!("iss/sub {claims}"));
    }
    if claims["aud"] != token_url {
        return Err(format!("aud {} is not {token_url}", claims["aud"]));
    }
    if exp <= now || exp > now + 300 {
        return Err(format!("exp {exp} is not within five minutes of {now}"));
    }
    let jti = claims["jti"].as_str().unwrap_or("").to_string();
    if jti.is_empty() || !state.jtis.lock().unwrap().insert(jti) {
        return Err("jti missing or used before".into());
    }
    Ok(())
}

async fn single(state: State<Arc<PeerState>>, headers: HeaderMap, body: Bytes) -> Response {
    send(state, headers, body, false).await
}

async fn batch(state: State<Arc<PeerState>>, headers: HeaderMap, body: Bytes) -> Response {
    send(state, headers, body, true).await
}

/// A send request: checked, recorded, then answered as the script says.
async fn send(
    State(state): State<Arc<PeerState>>,
    headers: HeaderMap,
    body: Bytes,
    batch: bool,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let bearer = header("authorization");
    let known = state
        .tokens
        .lock()
        .unwrap()
        .iter()
        .any(|t| bearer == format!("Bearer {t}"));
    if !known {
        problem(&state, format!("request with an unknown token {bearer:?}"));
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if header("content-type") != "application/vnd.api+json" {
        problem(&state, format!("content type {}", header("content-type")));
    }
    if body.len() > MAX_BYTES {
        problem(&state, format!("request of {} bytes", body.len()));
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        problem(&state, "request is not JSON".into());
        return StatusCode::BAD_REQUEST.into_response();
    };
    let data = &request["data"];
    let attributes = &data["attributes"];
    let expected_type = if batch { "MessageBatch" } else { "Message" };
    if data["type"] != expected_type {
        problem(&state, format!("data.type {}", data["type"]));
    }
    let routing_plan = attributes["routingPlanId"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if ![STATUS_PLAN, APPOINTMENT_PLAN].contains(&routing_plan.as_str()) {
        problem(&state, format!("routingPlanId {routing_plan:?}"));
    }
    let entries: Vec<Value> = if batch {
        if attributes["messageBatchReference"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            problem(&state, "no messageBatchReference".into());
        }
        attributes["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        vec![attributes.clone()]
    };
    if entries.is_empty() || entries.len() > MAX_MESSAGES {
        problem(&state, format!("{} messages in one request", entries.len()));
    }
    let mut messages = Vec::new();
    for entry in &entries {
        let reference = entry["messageReference"].as_str().unwrap_or("").to_string();
        let nhs = entry["recipient"]["nhsNumber"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let ods = entry["originator"]["odsCode"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let text = entry["personalisation"]["body"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let valid_nhs = gateway::domain::NhsNumber::parse(&nhs).is_ok();
        if reference.is_empty() || !valid_nhs || ods.is_empty() || text.is_empty() {
            problem(&state, format!("message {entry}"));
        }
        messages.push((reference, nhs, ods, text));
    }
    let n = state.sends.fetch_add(1, Ordering::SeqCst);
    let answer = (state.script)(n);
    state.requests.lock().unwrap().push(Request {
        at: Instant::now(),
        batch,
        routing_plan,
        messages: messages.clone(),
        answer,
    });
    match answer {
        Answer::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "errors": [{ "code": "CM_INTERNAL_SERVER_ERROR", "title": "Internal server error" }] })),
        )
            .into_response(),
        Answer::Busy(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            Json(json!({ "errors": [{ "code": "CM_QUOTA", "title": "Too many requests" }] })),
        )
            .into_response(),
        Answer::Accept if batch => (
            StatusCode::CREATED,
            Json(json!({ "data": { "type": "MessageBatch", "id": format!("B{n}"), "attributes": {
                "messageBatchReference": attributes["messageBatchReference"],
                "routingPlan": { "id": attributes["routingPlanId"], "version": "1" },
                "messages": messages.iter().map(|(r, ..)| json!({ "messageReference": r, "id": id_of(r) })).collect::<Vec<_>>(),
            } } })),
        )
            .into_response(),
        Answer::Accept => (
            StatusCode::CREATED,
            Json(json!({ "data": { "type": "Message", "id": id_of(&messages[0].0), "attributes": {
                "messageReference": messages[0].0, "messageStatus": "created" } } })),
        )
            .into_response(),
    }
}

/// The id the peer gives the message with our `reference`.
pub fn id_of(reference: &str) -> String {
    format!("KSUID{reference}")
}
