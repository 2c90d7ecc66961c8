//! Bad requests get 4xx with `{ "error": { code, message, details } }`, never a 500.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db};

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"].get("details").is_some(), "{body}");
}

pub async fn bad_requests_get_clear_4xx_errors(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("E10001", "Error Surgery").await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/practices/E10001/status", app.address);
    let raw = |body: &'static str, content_type: &'static str| {
        let client = client.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = raw("{\"kind\": ", "application/json").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "malformed_json");
    let (s, b) = raw(
        "{\"kind\": \"closed\", \"colour\": \"red\"}",
        "application/json",
    )
    .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(b["error"]["message"].as_str().unwrap().contains("colour"));
    let (s, b) = raw("{\"kind\": \"closed\"}", "text/plain").await;
    assert_error(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (s, b) = raw(
        "{\"kind\": \"closed\", \"ends_at\": \"next tuesday\"}",
        "application/json",
    )
    .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    let reply = app
        .post(
            "/api/v1/practices/E10001/status",
            &key,
            &json!({ "kind": "flooded" }),
        )
        .await;
    assert_error(
        reply.status,
        &reply.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(reply.body["error"]["details"][0]["field"], "kind");
    let reply = app
        .post(
            "/api/v1/practices/E10001/status",
            &key,
            &json!({ "kind": "custom" }),
        )
        .await;
    assert_eq!(reply.body["error"]["details"][0]["field"], "headline");

    let huge = "x".repeat(app.state.config.server.max_body_bytes + 1);
    let r = client
        .post(format!("{}/api/v1/practices/E10001/patients", app.address))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"patients\": [], \"pad\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );

    let reply = app
        .post(
            "/api/v1/practices",
            &app.admin_key,
            &json!({ "ods_code": "12", "name": "", "timezone": "Mars/Base" }),
        )
        .await;
    assert_error(
        reply.status,
        &reply.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let fields: Vec<&str> = reply.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["ods_code", "name", "timezone"]);

    for path in [
        "/api/v1/broadcasts/abc",
        "/api/v1/broadcasts/999999",
        "/api/v1/messages/-1",
        "/api/v1/nowhere",
        "/api/v1/practices/!!",
    ] {
        let reply = app.get(path, &key).await;
        assert_error(
            reply.status,
            &reply.body,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    let reply = app.get("/api/v1/broadcasts/1/messages?limit=0", &key).await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "no broadcast 1 exists yet"
    );
    let reply = app
        .request(
            reqwest::Method::DELETE,
            "/api/v1/practices",
            Some(&key),
            None,
        )
        .await;
    assert_error(
        reply.status,
        &reply.body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let reply = app
        .post(
            "/api/v1/practices/E10001/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await;
    let id = reply.body["id"].as_i64().unwrap();
    let reply = app
        .get(
            &format!("/api/v1/broadcasts/{id}/messages?limit=5000"),
            &key,
        )
        .await;
    assert_error(
        reply.status,
        &reply.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let reply = app
        .get(&format!("/api/v1/broadcasts/{id}/messages?limit=ten"), &key)
        .await;
    assert_error(
        reply.status,
        &reply.body,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
}
