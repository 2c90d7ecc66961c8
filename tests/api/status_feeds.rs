//! Supplier status feeds end to end: a loopback supplier serves Statuspage JSON and an Atom
//! feed (the fixtures, written from the public documentation), beside sources that fail in
//! every way; the leader's pollers turn incidents into proposals for exactly the practices
//! tagged with the affected systems, nothing reaches patients until approval, an update
//! revises the proposal without a second send, and the resolution proposes `restored`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gateway::intake::sources::poller::Source;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};
use crate::sms_peer::SmsPeer;
use crate::staff_texts::{code_in, nth_text_to, text, texts_to};

const SUMMARY: &str = include_str!("../fixtures/sources/statuspage_summary.json");
const ATOM: &str = include_str!("../fixtures/sources/supplier_status.atom");
/// The approver at practice A.
const AMY: &str = "+447700900811";
/// The approver at practice B.
const BEN: &str = "+447700900812";

/// What the loopback supplier serves now.
struct Supplier {
    summary: Mutex<String>,
}

async fn summary(State(supplier): State<Arc<Supplier>>) -> Response {
    let body = supplier.summary.lock().expect("summary").clone();
    ([("content-type", "application/json")], body).into_response()
}

/// Starts the supplier; returns its base URL and its state.
async fn start_supplier() -> (String, Arc<Supplier>) {
    let supplier = Arc::new(Supplier {
        summary: Mutex::new(SUMMARY.to_string()),
    });
    let app = axum::Router::new()
        .route("/emis/api/v2/summary.json", get(summary))
        .route(
            "/feed/history.atom",
            get(|| async { ([("content-type", "application/atom+xml")], ATOM) }),
        )
        .route(
            "/broken/summary.json",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route(
            "/slow/summary.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }),
        )
        .route(
            "/huge/history.atom",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b' '; 1024 * 1024]);
                let stream = futures_util::stream::iter(
                    (0..50).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                axum::body::Body::from_stream(stream)
            }),
        )
        .route(
            "/garbage/history.atom",
            get(|| async { "<rss><channel><item><title>unclosed" }),
        )
        .route(
            "/garbage/summary.json",
            get(|| async { "{\"incidents\": [" }),
        )
        .with_state(supplier.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, supplier)
}

/// A source polled every half second with a one-second timeout.
fn source(name: &str, kind: &str, url: String, map: Value) -> Source {
    let config: gateway::config::SourceConfig = serde_json::from_value(json!({
        "name": name, "kind": kind, "url": url,
        "components": map.get("components").cloned().unwrap_or(json!({})),
        "keywords": map.get("keywords").cloned().unwrap_or(json!({})),
    }))
    .expect("source config");
    let mut source = Source::from_config(&config).expect("source");
    source.interval = Duration::from_millis(500);
    source.timeout = Duration::from_secs(1);
    source
}

/// A practice with `patients` SMS patients, tagged, with one approver.
async fn practice(
    app: &TestApp,
    ods: &str,
    tags: &[&str],
    approver: Option<&str>,
    first: u32,
) -> String {
    let key = app.practice_with_key(ods, &format!("Surgery {ods}")).await;
    let list: Vec<Value> = (first..first + 2)
        .map(|i| json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{i:03}") }] }))
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": list }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/practices/{ods}/approval"),
            Some(&key),
            Some(&json!({ "tags": tags })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    if let Some(phone) = approver {
        let reply = app
            .post(
                &format!("/api/v1/practices/{ods}/staff"),
                &key,
                &json!({ "name": format!("Approver {ods}"), "phone": phone, "role": "approve" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    key
}

/// The practice's proposals, waiting first.
async fn proposals(app: &TestApp, ods: &str, key: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/api/v1/practices/{ods}/proposals"), key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["proposals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (up to 15 s) until `check` holds of the practice's proposals.
async fn wait_for(
    app: &TestApp,
    ods: &str,
    key: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..150 {
        let listed = proposals(app, ods, key).await;
        if check(&listed) {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{ods}: {what}; proposals: {:?}",
        proposals(app, ods, key).await
    );
}

/// Texts to patients (numbers below 07700 900800).
fn patient_texts(peer: &SmsPeer) -> Vec<String> {
    peer.arrivals()
        .into_iter()
        .filter(|a| a.to.as_str() < "+447700900800")
        .map(|a| a.body)
        .collect()
}

pub async fn supplier_incidents_are_proposed_and_sent_only_when_approved(db: Db) {
    let (base, supplier) = start_supplier().await;
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("sms-peer", None, None)]),
        settings: vec![
            ("cluster.heartbeat_seconds", json!(1)),
            ("status_sources.allow_http", json!(true)),
            ("status_sources.allowed_networks", json!(["127.0.0.0/8"])),
        ],
        sources: vec![
            source(
                "emis",
                "statuspage",
                format!("{base}/emis/api/v2/summary.json"),
                json!({ "components": { "EMIS Web": "emis-web" } }),
            ),
            source(
                "supplier-feed",
                "feed",
                format!("{base}/feed/history.atom"),
                json!({ "keywords": { "EMIS Web": "emis-feed", "Spine": "spine" } }),
            ),
            source(
                "broken",
                "statuspage",
                format!("{base}/broken/summary.json"),
                json!({ "components": { "EMIS Web": "emis-web" } }),
            ),
            source(
                "slow",
                "statuspage",
                format!("{base}/slow/summary.json"),
                json!({ "components": { "EMIS Web": "emis-web" } }),
            ),
            source(
                "huge",
                "feed",
                format!("{base}/huge/history.atom"),
                json!({ "keywords": { "EMIS": "emis-web" } }),
            ),
            source(
                "garbage-xml",
                "feed",
                format!("{base}/garbage/history.atom"),
                json!({ "keywords": { "EMIS": "emis-web" } }),
            ),
            source(
                "garbage-json",
                "statuspage",
                format!("{base}/garbage/summary.json"),
                json!({ "components": { "EMIS Web": "emis-web" } }),
            ),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let a = practice(&app, "F13001", &["emis-web", "spine"], Some(AMY), 0).await;
    let b = practice(&app, "F13002", &["emis-web"], Some(BEN), 10).await;
    let c = practice(&app, "F13003", &["systmone"], None, 20).await;
    let d = practice(&app, "F13004", &["emis-feed"], None, 30).await;

    // The open EMIS Web incident proposes systems_down at A and B only; the Online Services
    // incident maps to no tag; the feed's resolved Spine entry proposes nothing.
    let listed = wait_for(&app, "F13001", &a, "a proposal from emis", |p| {
        p.iter().any(|p| p["incident"]["source"] == "emis")
    })
    .await;
    let from_emis: Vec<&Value> = listed
        .iter()
        .filter(|p| p["incident"]["source"] == "emis")
        .collect();
    assert_eq!(from_emis.len(), 1, "{listed:?}");
    let proposal = from_emis[0];
    assert_eq!(proposal["state"], "proposed");
    assert_eq!(proposal["kind"], "systems_down");
    assert_eq!(
        proposal["status_change"]["headline"],
        "EMIS Web unavailable"
    );
    assert_eq!(proposal["incident"]["incident_id"], "k1v8rq0zt3yw");
    assert_eq!(proposal["proposed_by"], "source:emis");
    assert!(
        proposal["link"]
            .as_str()
            .is_some_and(|l| l == "https://stspg.io/k1v8rq0z"),
        "{proposal}"
    );
    wait_for(&app, "F13002", &b, "a proposal from emis", |p| p.len() == 1).await;
    wait_for(&app, "F13004", &d, "a proposal from the Atom feed", |p| {
        p.len() == 1 && p[0]["incident"]["source"] == "supplier-feed"
    })
    .await;
    assert!(proposals(&app, "F13003", &c).await.is_empty());
    // Approvers were texted a code; nothing reached patients.
    let asked = nth_text_to(&peer, AMY, 0).await;
    assert!(
        asked.starts_with("emis reports: EMIS Web unavailable. Proposed for Surgery F13001"),
        "{asked}"
    );
    nth_text_to(&peer, BEN, 0).await;
    app.drain().await;
    assert!(
        patient_texts(&peer).is_empty(),
        "{:?}",
        patient_texts(&peer)
    );

    // The failing sources are recorded as failing while the others keep working.
    let failing = ["broken", "slow", "huge", "garbage-xml", "garbage-json"];
    let health = app.state.sources_health();
    for _ in 0..100 {
        if failing.iter().all(|name| {
            health
                .get(name)
                .is_some_and(|h| h.consecutive_failures >= 1)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in failing {
        let h = health
            .get(name)
            .unwrap_or_else(|| panic!("no health for {name}"));
        assert!(
            h.consecutive_failures >= 1 && h.last_success.is_none(),
            "{name}: {h:?}"
        );
        assert!(h.last_error.is_some(), "{name}: {h:?}");
    }
    let emis = health.get("emis").expect("emis");
    assert!(
        emis.last_success.is_some() && emis.consecutive_failures == 0,
        "{emis:?}"
    );

    // Approval (by the code texted to A's approver) sends to A's patients only.
    text(&app, AMY, &format!("YES {}", code_in(&asked))).await;
    let sent = nth_text_to(&peer, AMY, 1).await;
    assert!(sent.starts_with("Sent."), "{sent}");
    app.drain().await;
    let received = patient_texts(&peer);
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(
        received.iter().all(|t| t.contains("EMIS Web unavailable")),
        "{received:?}"
    );

    // An update changes the waiting proposal at B and sends nothing more at A.
    {
        let mut doc = supplier.summary.lock().expect("summary");
        *doc = doc.replace(
            "\"name\": \"EMIS Web unavailable\"",
            "\"name\": \"EMIS Web unavailable across England\"",
        );
    }
    wait_for(&app, "F13002", &b, "the revised headline", |p| {
        p[0]["status_change"]["headline"] == "EMIS Web unavailable across England"
    })
    .await;
    let at_a = proposals(&app, "F13001", &a).await;
    assert_eq!(
        at_a.iter()
            .filter(|p| p["incident"]["source"] == "emis")
            .count(),
        1,
        "{at_a:?}"
    );
    app.drain().await;
    assert_eq!(patient_texts(&peer).len(), 2);

    // The incident leaves the summary: resolved. A, still down because of it, gets a
    // restored proposal; B's never-approved proposal expires.
    {
        let mut doc = supplier.summary.lock().expect("summary");
        let mut summary: Value = serde_json::from_str(&doc).expect("json");
        summary["incidents"]
            .as_array_mut()
            .expect("incidents")
            .retain(|i| i["id"] != "k1v8rq0zt3yw");
        *doc = summary.to_string();
    }
    let at_a = wait_for(&app, "F13001", &a, "a restored proposal", |p| {
        p.iter().any(|p| p["kind"] == "restored")
    })
    .await;
    let restored = at_a
        .iter()
        .find(|p| p["kind"] == "restored")
        .expect("restored");
    assert_eq!(restored["state"], "proposed");
    assert_eq!(restored["incident"]["phase"], "restored");
    wait_for(&app, "F13002", &b, "the expired proposal", |p| {
        p[0]["state"] == "expired"
    })
    .await;
    assert!(!proposals(&app, "F13002", &b)
        .await
        .iter()
        .any(|p| p["kind"] == "restored"));
    let asked = nth_text_to(&peer, AMY, 2).await;
    assert!(asked.contains("resolved"), "{asked}");
    assert_eq!(texts_to(&peer, BEN).len(), 1, "{:?}", texts_to(&peer, BEN));
    app.drain().await;
    assert_eq!(
        patient_texts(&peer).len(),
        2,
        "nothing more without approval"
    );
}
