//! `GET /metrics` serves OpenMetrics text without a key, with the queue read from the store.

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// Scrapes `/metrics` as Prometheus would: no key. Returns the content type and the text.
async fn scrape(app: &TestApp) -> (String, String) {
    let response = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (content_type, response.text().await.expect("body"))
}

fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

pub async fn metrics_are_served_as_prometheus_text(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10090", "Test Surgery").await;
    let patients: Vec<_> = (0..5)
        .map(|i| {
            let contact = if i < 3 {
                json!({ "channel": "sms", "address": format!("07700 900{i:03}") })
            } else {
                json!({ "channel": "email", "address": format!("p{i}@example.com") })
            };
            json!({ "nhs_number": nhs(i), "contacts": [contact] })
        })
        .collect();
    let reply = app
        .post(
            "/api/v1/practices/T10090/patients",
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .post(
            "/api/v1/practices/T10090/status",
            &key,
            &json!({ "kind": "systems_down" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["total"], 5, "{}", reply.body);

    let (content_type, text) = scrape(&app).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // A broadcast is bulk: five queued there, none urgent.
    assert_line(&text, r#"gateway_queue_depth{lane="bulk"} 5"#);
    assert_line(&text, r#"gateway_queue_depth{lane="urgent"} 0"#);
    // Every family is there, with the configured providers' series started at zero.
    for line in [
        "# TYPE gateway_messages counter",
        "# TYPE gateway_send_duration_seconds histogram",
        "# TYPE gateway_rate_limit_waits counter",
        "# TYPE gateway_rate_limit_wait_seconds counter",
        "# TYPE gateway_provider_circuit_state gauge",
        "# TYPE gateway_queue_depth gauge",
        r#"gateway_provider_circuit_state{provider="log-sms"} 0"#,
    ] {
        assert_line(&text, line);
    }
    let sms_sent = r#"gateway_messages_total{channel="sms",provider="log-sms",outcome="sent"} "#;
    assert!(
        text.lines().any(|l| l.starts_with(sms_sent)),
        "no {sms_sent:?} series in:\n{text}"
    );

    assert_eq!(app.drain().await, 5);
    let (_, text) = scrape(&app).await;
    assert_line(&text, r#"gateway_queue_depth{lane="bulk"} 0"#);
    assert_line(&text, r#"gateway_queue_depth{lane="urgent"} 0"#);
}
