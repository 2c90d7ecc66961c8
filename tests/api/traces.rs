//! Trace export over OTLP/HTTP: a loopback collector receives the spans of a status POST and
//! of an appointment change, and the provider sends each caused are in that request's trace;
//! with no endpoint nothing is built, recorded or sent; a dead collector delays no answer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use gateway::config::{Config, TelemetryConfig, DEFAULT_TOML};
use gateway::domain::BroadcastId;
use gateway::telemetry::otlp::Exporter;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};

/// A loopback OTLP/HTTP collector that keeps every span it is sent, with its service name.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    requests: Arc<Mutex<usize>>,
}

impl Collector {
    /// Listens on a free loopback port; returns the collector and its traces URL.
    async fn start() -> (Self, String) {
        let collector = Self::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(accept))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, format!("http://{address}/v1/traces"))
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().expect("spans").clone()
    }
}

/// `POST /v1/traces`: protobuf only, as the exporter is set to send.
async fn accept(State(collector): State<Collector>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *collector.requests.lock().expect("count") += 1;
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut kept = collector.spans.lock().expect("spans");
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            kept.push((service.clone(), span));
        }
    }
    StatusCode::OK
}

/// An attribute value as text.
fn text(value: Option<&Any>) -> Option<String> {
    match value? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Span `span`'s attribute `key`, as text.
fn attribute(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    text(kv.value.as_ref().and_then(|v| v.value.as_ref()))
}

/// The `[telemetry]` settings the app gets from `settings`, for the exporter the test builds
/// as `gateway serve` would.
fn telemetry(settings: &[(&'static str, Value)]) -> TelemetryConfig {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    for (key, value) in settings {
        figment = figment.merge(Serialized::default(key, value));
    }
    Config::from_figment(figment).expect("settings").telemetry
}

/// Held by the test that exports spans (see [`exporting`]).
static EXPORTING: Mutex<()> = Mutex::new(());

/// Runs `body` on a runtime of its own whose every thread reports to `exporter`'s layer, as
/// the process-wide subscriber of `gateway serve` does: the app the body starts exports to
/// this test's collector alone, while other tests run beside it in this process.
async fn exporting<F, Fut>(exporter: &Exporter, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let layer = exporter.layer();
    let thread = std::thread::spawn(move || {
        // One exporting test at a time: tracing caches each callsite's interest across all
        // live dispatchers, and a parallel test's dispatcher coming or going while this one
        // runs could leave the request's span disabled here (no trace context recorded).
        let _alone = EXPORTING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let each = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            // Kept for the thread's life: the runtime's threads end with it.
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&each)))
            .build()
            .expect("test runtime");
        let default = tracing::dispatcher::set_default(&dispatch);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(body())));
        // The dispatcher is gone before the next exporting test starts.
        drop(runtime);
        drop(default);
        drop(dispatch);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
    let joined = tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join");
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

/// Sends what the exporter still holds and stops it; returns how long that took.
async fn flush(exporter: Exporter) -> Duration {
    let began = Instant::now();
    tokio::task::spawn_blocking(move || exporter.shutdown())
        .await
        .expect("shutdown");
    began.elapsed()
}

/// A practice whose `count` patients have names and mobiles, one with a booked appointment
/// `R-1`; returns its key.
async fn practice_with_booking(app: &TestApp, ods: &str, count: u32) -> String {
    let key = app
        .practice_with_settings(
            json!({ "ods_code": ods, "name": "Trace Surgery", "phone": "020 7946 0123" }),
        )
        .await;
    let patients: Vec<Value> = (1..=count)
        .map(|i| {
            json!({ "nhs_number": nhs(i), "given_name": format!("Patient{i}"),
                    "contacts": [{ "channel": "sms", "address": format!("07700 9{i:05}") }] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
    let booking = json!({ "appointments": [{ "external_ref": "R-1", "nhs_number": nhs(1),
        "starts_at": "2030-07-22 09:30", "clinician": "Dr Patel", "location": "Room 2",
        "status": "booked" }] });
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/appointments"),
            &key,
            &booking,
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
    key
}

/// POSTs `body` to `path` with the client's request id; returns the status and JSON body.
async fn post_as(
    app: &TestApp,
    key: &str,
    path: &str,
    request_id: &str,
    body: Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", app.address))
        .bearer_auth(key)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn a_status_post_is_followed_to_each_provider_send(db: Db) {
    let (collector, endpoint) = Collector::start().await;
    let settings = vec![
        ("telemetry.otlp_endpoint", json!(endpoint)),
        ("telemetry.otlp_service_name", json!("gateway-under-test")),
    ];
    let exporter = Exporter::from_config(&telemetry(&settings))
        .expect("exporter")
        .expect("an endpoint builds an exporter");
    let broadcast = Arc::new(Mutex::new(0i64));
    let seen = broadcast.clone();
    exporting(&exporter, move || async move {
        let app = spawn_app_with(
            db,
            Options {
                settings,
                ..Default::default()
            },
        )
        .await;
        let key = practice_with_booking(&app, "T16001", 3).await;
        let (status, body) = post_as(
            &app,
            &key,
            "/api/v1/practices/T16001/status",
            "otlp-status-1",
            json!({ "kind": "systems_down" }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_i64().expect("broadcast id");
        *seen.lock().expect("id") = id;
        let (status, body) = post_as(
            &app,
            &key,
            "/api/v1/practices/T16001/appointments/R-1/changes",
            "otlp-change-1",
            json!({ "kind": "cancelled" }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(app.drain().await, 4);
        assert_eq!(app.sent_lines().len(), 4);
        let stored = app
            .state
            .store
            .broadcast(BroadcastId::new(id))
            .await
            .expect("store");
        let traceparent = stored
            .and_then(|b| b.traceparent)
            .expect("recorded with the broadcast");
        assert!(
            traceparent.starts_with("00-") && traceparent.len() == 55,
            "{traceparent}"
        );
    })
    .await;
    flush(exporter).await;
    let broadcast = broadcast.lock().expect("id").to_string();

    let spans = collector.spans();
    assert!(spans
        .iter()
        .all(|(service, _)| service == "gateway-under-test"));
    let request = |id: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == "request" && attribute(s, "request_id").as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no request span for {id} among {} spans", spans.len()))
    };
    let posted = request("otlp-status-1");
    assert_eq!(attribute(posted, "method").as_deref(), Some("POST"));
    assert_eq!(
        attribute(posted, "route").as_deref(),
        Some("/api/v1/practices/{ods}/status")
    );
    let sends: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "send" && attribute(s, "broadcast_id") == Some(broadcast.clone()))
        .collect();
    assert_eq!(sends.len(), 3, "one span per message of the broadcast");
    for send in &sends {
        assert_eq!(
            send.trace_id, posted.trace_id,
            "a send outside the request's trace"
        );
        assert_eq!(send.parent_span_id, posted.span_id);
        assert_eq!(attribute(send, "channel").as_deref(), Some("sms"));
        assert_eq!(attribute(send, "provider").as_deref(), Some("log-sms"));
        assert_eq!(attribute(send, "outcome").as_deref(), Some("sent"));
        assert!(attribute(send, "message_id").is_some());
    }
    assert!(spans
        .iter()
        .any(|(_, s)| s.name == "fanout" && s.trace_id == posted.trace_id));

    let changed = request("otlp-change-1");
    let urgent: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "send" && s.trace_id == changed.trace_id)
        .collect();
    assert_eq!(urgent.len(), 1, "the appointment change's one message");
    assert_eq!(attribute(urgent[0], "priority").as_deref(), Some("urgent"));
    assert_ne!(changed.trace_id, posted.trace_id);

    // What the spans carry names no patient: no number, address or name.
    for (_, span) in &spans {
        for kv in &span.attributes {
            let value = text(kv.value.as_ref().and_then(|v| v.value.as_ref())).unwrap_or_default();
            for i in 1..=3 {
                for patient in [nhs(i), format!("77009{i:05}"), format!("Patient{i}")] {
                    assert!(
                        !value.contains(&patient),
                        "{}={value} on {}",
                        kv.key,
                        span.name
                    );
                }
            }
        }
    }
}

pub async fn without_an_endpoint_nothing_is_built_recorded_or_sent(db: Db) {
    let (collector, _) = Collector::start().await;
    assert!(Exporter::from_config(&telemetry(&[]))
        .expect("settings")
        .is_none());
    let app = spawn_app_with(db, Options::default()).await;
    let key = practice_with_booking(&app, "T16002", 2).await;
    let (status, body) = post_as(
        &app,
        &key,
        "/api/v1/practices/T16002/status",
        "otlp-off-1",
        json!({ "kind": "systems_down" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().expect("broadcast id");
    assert_eq!(app.drain().await, 2);
    let stored = app
        .state
        .store
        .broadcast(BroadcastId::new(id))
        .await
        .expect("store");
    assert_eq!(stored.expect("broadcast").traceparent, None);
    assert_eq!(*collector.requests.lock().expect("count"), 0);
}

pub async fn a_dead_collector_delays_no_answer(db: Db) {
    // A closed port: nothing listens on a port just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let timeout_ms = 4_000;
    let settings = vec![
        (
            "telemetry.otlp_endpoint",
            json!(format!("http://{closed}/v1/traces")),
        ),
        ("telemetry.otlp_timeout_ms", json!(timeout_ms)),
    ];
    let exporter = Exporter::from_config(&telemetry(&settings))
        .expect("exporter")
        .expect("an endpoint builds an exporter");
    exporting(&exporter, move || async move {
        let app = spawn_app_with(
            db,
            Options {
                settings,
                ..Default::default()
            },
        )
        .await;
        let key = practice_with_booking(&app, "T16003", 2).await;
        for (n, kind) in ["closed", "restored", "systems_down"]
            .into_iter()
            .enumerate()
        {
            let began = Instant::now();
            let (status, body) = post_as(
                &app,
                &key,
                "/api/v1/practices/T16003/status",
                &format!("otlp-dead-{n}"),
                json!({ "kind": kind }),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            // An export waits up to its timeout; the answer never does.
            assert!(
                began.elapsed() < Duration::from_millis(timeout_ms / 2),
                "{:?}",
                began.elapsed()
            );
            app.drain().await;
        }
    })
    .await;
    // Stopping sends what is queued, bounded by the timeout however dead the collector.
    let took = flush(exporter).await;
    assert!(took < Duration::from_millis(timeout_ms + 3_000), "{took:?}");
}
