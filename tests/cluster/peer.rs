//! A loopback SMS gateway for the `webhook` provider kind: checks each request's signature,
//! records when it arrived and which message it carried, and answers 40 ms later, as a real
//! gateway takes a while (so a killed instance has sends in flight).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The secret the instances sign with (their config names this environment variable).
pub const SECRET_ENV: &str = "GATEWAY_CLUSTER_TEST_SECRET";
pub const SECRET: &str = "cluster-test-secret";

/// How long the peer takes to answer after a request arrives.
const ANSWER_AFTER: Duration = Duration::from_millis(40);

struct Log {
    arrivals: Mutex<Vec<(Instant, i64)>>,
    recipients: Mutex<Vec<String>>,
}

/// The running peer.
pub struct Peer {
    /// Where the `webhook` provider posts.
    pub url: String,
    log: Arc<Log>,
}

impl Peer {
    /// Starts the peer on a free loopback port.
    pub async fn start() -> Self {
        let log = Arc::new(Log {
            arrivals: Mutex::new(Vec::new()),
            recipients: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/messages", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, log }
    }

    /// Every accepted request so far: arrival time and message id.
    pub fn arrivals(&self) -> Vec<(Instant, i64)> {
        self.log.arrivals.lock().unwrap().clone()
    }

    /// The number each accepted request was for (numbers may repeat across patients).
    pub fn recipients(&self) -> Vec<String> {
        self.log.recipients.lock().unwrap().clone()
    }

    /// How many requests have arrived.
    pub fn count(&self) -> usize {
        self.log.arrivals.lock().unwrap().len()
    }

    /// How many times each message id arrived.
    pub fn times_each(&self) -> HashMap<i64, usize> {
        let mut times = HashMap::new();
        for (_, id) in self.arrivals() {
            *times.entry(id).or_default() += 1;
        }
        times
    }
}

async fn receive(State(log): State<Arc<Log>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signed = headers
        .get("x-gateway-signature")
        .and_then(|v| v.to_str().ok());
    if signed != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let id = message["message_id"].as_i64().unwrap_or(-1);
    log.arrivals.lock().unwrap().push((Instant::now(), id));
    let to = message["to"].as_str().unwrap_or_default().to_string();
    log.recipients.lock().unwrap().push(to);
    tokio::time::sleep(ANSWER_AFTER).await;
    Json(json!({ "id": format!("peer-{id}") })).into_response()
}

/// The most arrivals within any `window` (sliding over the arrivals), and how long after
/// the first arrival that window began.
pub fn busiest_window(arrivals: &[(Instant, i64)], window: Duration) -> (usize, Duration) {
    let mut times: Vec<Instant> = arrivals.iter().map(|(at, _)| *at).collect();
    times.sort();
    let mut most = (0, Duration::ZERO);
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        if end - start + 1 > most.0 {
            most = (end - start + 1, times[start].duration_since(times[0]));
        }
    }
    most
}
