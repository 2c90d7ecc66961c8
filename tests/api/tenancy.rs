//! A practice key reaches its own practice and nothing else; admin keys manage practices.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{nhs, spawn_app, Db};

pub async fn another_practice_sees_nothing(db: Db) {
    let app = spawn_app(db).await;
    let a = app.practice_with_key("A10001", "Surgery A").await;
    let b = app.practice_with_key("B10001", "Surgery B").await;
    let patients = json!({ "patients": [{ "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700900001" }] }] });
    app.post("/api/v1/practices/A10001/patients", &a, &patients)
        .await;
    let broadcast = app
        .post(
            "/api/v1/practices/A10001/status",
            &a,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    let id = broadcast["id"].as_i64().unwrap();
    let messages = app
        .get(&format!("/api/v1/broadcasts/{id}/messages"), &a)
        .await
        .body;
    let message_id = messages["messages"][0]["id"].as_i64().unwrap();

    for path in [
        "/api/v1/practices/A10001".to_string(),
        format!("/api/v1/practices/A10001/patients/{}", nhs(1)),
        format!("/api/v1/broadcasts/{id}"),
        format!("/api/v1/broadcasts/{id}/messages"),
        format!("/api/v1/messages/{message_id}"),
    ] {
        let reply = app.get(&path, &b).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "not_found");
        assert_eq!(app.get(&path, &a).await.status, StatusCode::OK, "{path}");
    }
    let reply = app
        .post(
            "/api/v1/practices/A10001/status",
            &b,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .post("/api/v1/practices/A10001/patients", &b, &patients)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // B's attempts started nothing: A still has exactly its one broadcast's message.
    assert_eq!(app.state.store.pending_count().await.unwrap(), 1);

    let listed = app.get("/api/v1/practices", &b).await.body;
    let codes: Vec<&str> = listed["practices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ods_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["B10001"]);
    let listed = app.get("/api/v1/practices", &app.admin_key).await.body;
    assert_eq!(listed["practices"].as_array().unwrap().len(), 2);
}

pub async fn keys_are_required_and_scoped(db: Db) {
    let app = spawn_app(db).await;
    let a = app.practice_with_key("A10002", "Surgery A").await;
    let none = app
        .request(Method::GET, "/api/v1/practices", None, None)
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body["error"]["code"], "missing_api_key");
    let wrong = app.get("/api/v1/practices", "gw_not-a-real-key").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"]["code"], "invalid_api_key");
    let create = app
        .post(
            "/api/v1/practices",
            &a,
            &json!({ "ods_code": "C10002", "name": "Surgery C" }),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    let duplicate = app
        .post(
            "/api/v1/practices",
            &app.admin_key,
            &json!({ "ods_code": "a10002", "name": "Again" }),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    // An admin can act for any practice.
    let reply = app
        .post(
            "/api/v1/practices/A10002/status",
            &app.admin_key,
            &json!({ "kind": "phones_down" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}
