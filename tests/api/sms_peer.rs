//! A loopback SMS gateway for the `webhook` provider kind that records when each request
//! arrived and answers as a script says: accept, fail with 500, or 429 with Retry-After,
//! each after an optional delay (a slow provider).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway::config::ProviderConfig;
use gateway::domain::Channel;
use serde_json::{json, Value};

use crate::helpers::WEBHOOK_SECRET_ENV;

/// How the peer answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with an id.
    Accept,
    /// 500.
    Fail,
    /// 429 with `Retry-After` in seconds.
    Busy(u64),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When, on the test's clock.
    pub at: Instant,
    /// The gateway's message id.
    pub message_id: i64,
    /// The practice's ODS code.
    pub practice: String,
    /// The practice's own sender, if it has one (`from`).
    pub from: Option<String>,
    /// The number it was for.
    pub to: String,
    /// The text.
    pub body: String,
    /// How it was answered.
    pub answer: Answer,
}

type Script = Box<dyn Fn(usize) -> Answer + Send + Sync>;

struct PeerState {
    arrivals: Mutex<Vec<Arrival>>,
    count: AtomicUsize,
    script: Script,
    /// How long each answer takes.
    delay: Duration,
}

/// The running peer.
pub struct SmsPeer {
    /// Its URL.
    pub url: String,
    state: Arc<PeerState>,
}

impl SmsPeer {
    /// Starts a peer answering request number `n` (from 0) with `script(n)`.
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_slow(Duration::ZERO, script).await
    }

    /// Starts a peer answering request `n` with `script(n)`, each answer after `delay`.
    pub async fn start_slow(
        delay: Duration,
        script: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let state = Arc::new(PeerState {
            arrivals: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            script: Box::new(script),
            delay,
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/messages", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    /// A peer that accepts everything.
    pub async fn accepting() -> Self {
        Self::start(|_| Answer::Accept).await
    }

    /// Every request so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// Requests accepted so far.
    pub fn accepted(&self) -> Vec<Arrival> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.answer == Answer::Accept)
            .collect()
    }

    /// The `webhook` provider settings pointing at this peer, with an optional rate.
    pub fn provider(&self, name: &str, rate: Option<&str>, burst: Option<u32>) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: "webhook".into(),
            channel: Channel::Sms,
            rate: rate.map(|r| r.parse().unwrap()),
            burst,
            price_pence: None,
            settings: json!({ "url": self.url, "signing_secret_env": WEBHOOK_SECRET_ENV })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

async fn receive(State(state): State<Arc<PeerState>>, Json(body): Json<Value>) -> Response {
    let at = Instant::now();
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    let answer = (state.script)(n);
    state.arrivals.lock().unwrap().push(Arrival {
        at,
        message_id: body["message_id"].as_i64().unwrap_or(-1),
        practice: body["practice"].as_str().unwrap_or_default().to_string(),
        from: body["from"].as_str().map(str::to_string),
        to: body["to"].as_str().unwrap_or_default().to_string(),
        body: body["body"].as_str().unwrap_or_default().to_string(),
        answer,
    });
    tokio::time::sleep(state.delay).await;
    match answer {
        Answer::Accept => Json(json!({ "id": format!("peer-{n}") })).into_response(),
        Answer::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response(),
        Answer::Busy(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            "slow down",
        )
            .into_response(),
    }
}

/// The most requests that arrived within any `window` (a sliding window over arrivals).
pub fn busiest_window(arrivals: &[Arrival], window: Duration) -> usize {
    let mut times: Vec<Instant> = arrivals.iter().map(|a| a.at).collect();
    times.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
