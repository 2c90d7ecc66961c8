//! Keys and people: issuing keys that expire, listing them with their last use, revoking and
//! rotating them (seen at once by another instance on the same database), disabling console
//! users (their sessions end), the same through the `gateway` command line, and errors that
//! explain themselves and carry the request's id.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use gateway::store::KeyScope;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::console::{client, sign_in, PASSWORD};
use crate::helpers::{spawn_app, spawn_app_with, Db, Options, TestApp};

/// Issues a key through the API as the administrator; returns its id and secret.
async fn issue(app: &TestApp, body: Value) -> (i64, String) {
    let reply = app.post("/api/v1/keys", &app.admin_key, &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        reply.body["id"].as_i64().expect("id"),
        reply.body["key"].as_str().expect("key").to_string(),
    )
}

/// The listed key with this id.
async fn listed(app: &TestApp, id: i64) -> Value {
    let reply = app.get("/api/v1/keys", &app.admin_key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let keys = reply.body.as_array().expect("list").clone();
    assert!(keys
        .iter()
        .all(|k| k.get("key").is_none() && k.get("key_hash").is_none()));
    keys.into_iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("key {id} not listed"))
}

/// A 401 whose message is a sentence, not its code.
fn assert_explained_401(reply: &crate::helpers::Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message != code && message.contains(' ') && message.len() > 20,
        "{}",
        reply.body
    );
}

pub async fn a_revoked_key_is_refused_by_another_instance_within_a_heartbeat(db: Db) {
    let first = spawn_app_with(
        db.clone(),
        Options {
            settings: vec![("cluster.heartbeat_seconds", json!(1))],
            ..Options::default()
        },
    )
    .await;
    let second = spawn_app_with(
        db,
        Options {
            settings: vec![("cluster.heartbeat_seconds", json!(1))],
            database_url: Some(first.database_url()),
            ..Options::default()
        },
    )
    .await;
    let (id, key) = issue(&first, json!({ "label": "reception pc" })).await;
    assert_eq!(
        second.get("/api/v1/practices", &key).await.status,
        StatusCode::OK
    );
    let revoked = first
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &first.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());
    // Keys are read from the database on every request: refused within one heartbeat (1 s)
    // at the latest, and in fact on the very next request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut refused = second.get("/api/v1/practices", &key).await;
    while refused.status == StatusCode::OK && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        refused = second.get("/api/v1/practices", &key).await;
    }
    assert_explained_401(&refused, "invalid_api_key");
    assert_explained_401(
        &first.get("/api/v1/practices", &key).await,
        "invalid_api_key",
    );
    // Revoking twice changes nothing; an unknown key is 404.
    let again = first
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &first.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);
    let unknown = first
        .post("/api/v1/keys/999999/revoke", &first.admin_key, &json!({}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

pub async fn expired_and_rotated_keys_are_refused_and_lists_show_last_use(db: Db) {
    let app = spawn_app(db).await;
    let practice_key = app.practice_with_key("A81001", "Riverside Surgery").await;
    // Expiry: works until it passes, then refused.
    let expires = Utc::now() + chrono::Duration::seconds(2);
    let (expiring_id, expiring) = issue(
        &app,
        json!({ "label": "temp", "practice": "A81001", "expires_at": expires }),
    )
    .await;
    assert_eq!(listed(&app, expiring_id).await["last_used_at"], Value::Null);
    assert_eq!(
        app.get("/api/v1/practices/A81001", &expiring).await.status,
        StatusCode::OK
    );
    let shown = listed(&app, expiring_id).await;
    assert!(shown["last_used_at"].is_string(), "{shown}");
    assert_eq!(shown["scope"]["role"], "practice");
    assert_eq!(shown["label"], "temp");
    assert!(
        shown["expires_at"].is_string()
            && shown["prefix"]
                .as_str()
                .is_some_and(|p| expiring.starts_with(p))
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_explained_401(
        &app.get("/api/v1/practices/A81001", &expiring).await,
        "invalid_api_key",
    );
    // An expired key cannot be rotated back to life.
    let rotate_expired = app
        .post(
            &format!("/api/v1/keys/{expiring_id}/rotate"),
            &app.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(rotate_expired.status, StatusCode::NOT_FOUND);

    // Rotation: a working new key with the same scope and label; the old one is refused.
    let (old_id, old) = issue(&app, json!({ "label": "feed reader" })).await;
    assert_eq!(
        app.get("/api/v1/practices", &old).await.status,
        StatusCode::OK
    );
    let rotated = app
        .post(
            &format!("/api/v1/keys/{old_id}/rotate"),
            &app.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let new = rotated.body["key"].as_str().expect("new key").to_string();
    assert_ne!(new, old);
    assert_eq!(rotated.body["issued"]["label"], "feed reader");
    assert_eq!(rotated.body["issued"]["scope"]["role"], "admin");
    assert_eq!(
        app.get("/api/v1/practices", &new).await.status,
        StatusCode::OK
    );
    assert_explained_401(&app.get("/api/v1/practices", &old).await, "invalid_api_key");
    assert!(listed(&app, old_id).await["revoked_at"].is_string());

    // Only an administrator manages keys and people.
    for path in ["/api/v1/keys", "/api/v1/users"] {
        assert_eq!(
            app.get(path, &practice_key).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let by_practice = app
        .post(
            &format!("/api/v1/keys/{old_id}/revoke"),
            &practice_key,
            &json!({}),
        )
        .await;
    assert_eq!(by_practice.status, StatusCode::FORBIDDEN);
    // Bad bodies name their field.
    let past = app
        .post(
            "/api/v1/keys",
            &app.admin_key,
            &json!({ "label": "x", "expires_at": "2001-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(past.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        past.body["error"]["details"][0]["field"], "expires_at",
        "{}",
        past.body
    );
    let unknown = app
        .post(
            "/api/v1/keys",
            &app.admin_key,
            &json!({ "label": "x", "scope": "admin" }),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        unknown.body["error"]["details"][0]["field"], "scope",
        "{}",
        unknown.body
    );
    let mistyped = app
        .post("/api/v1/keys", &app.admin_key, &json!({ "label": 7 }))
        .await;
    assert_eq!(mistyped.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        mistyped.body["error"]["details"][0]["field"], "label",
        "{}",
        mistyped.body
    );
}

pub async fn a_disabled_user_is_refused_and_their_session_ends(db: Db) {
    let app = spawn_app(db).await;
    let store = app.state.store.as_ref();
    let user = gateway::auth::create_user(store, "locum", PASSWORD, KeyScope::Admin)
        .await
        .unwrap();
    let session = sign_in(&app, "locum", PASSWORD).await.unwrap();
    let page = |session: String| {
        let address = app.address.clone();
        async move {
            client()
                .get(format!("{address}/console/practices"))
                .header(COOKIE, format!("gw_session={session}"))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(page(session.clone()).await.status(), StatusCode::OK);
    let listed = app.get("/api/v1/users", &app.admin_key).await;
    let shown = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "locum")
        .cloned()
        .unwrap();
    assert_eq!(shown["disabled_at"], Value::Null);
    assert!(shown.get("password_hash").is_none());

    let disabled = app
        .post(
            &format!("/api/v1/users/{}/disable", user.id),
            &app.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert!(disabled.body["disabled_at"].is_string());
    // The existing session no longer works, for pages or for the API...
    let refused = page(session.clone()).await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert_eq!(refused.headers()[LOCATION], "/console/signin");
    let api = client()
        .get(format!("{}/api/v1/templates", app.address))
        .header(COOKIE, format!("gw_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    // ...and they cannot sign in again.
    assert_eq!(
        sign_in(&app, "locum", PASSWORD).await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

/// Runs `gateway ARGS` against `app`'s database; returns its standard output.
fn gateway_cli(app: &TestApp, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GATEWAY__") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .env_remove("GATEWAY_CONFIG")
        .env("GATEWAY__DATABASE__URL", app.database_url())
        .env("RUST_LOG", "error")
        .output()
        .expect("run gateway");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "gateway {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub async fn the_command_line_lists_revokes_and_rotates_keys_and_disables_users(db: Db) {
    let app = spawn_app(db).await;
    let (id, key) = issue(&app, json!({ "label": "night shift" })).await;
    assert_eq!(
        app.get("/api/v1/practices", &key).await.status,
        StatusCode::OK
    );
    let store = app.state.store.as_ref();
    gateway::auth::create_user(store, "temp-admin", PASSWORD, KeyScope::Admin)
        .await
        .unwrap();
    let session = sign_in(&app, "temp-admin", PASSWORD).await.unwrap();

    let list = tokio::task::block_in_place(|| gateway_cli(&app, &["keys", "list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(&format!("{id}\t")))
        .unwrap_or_else(|| panic!("key {id} not in {list}"));
    let cells: Vec<&str> = row.split('\t').collect();
    assert_eq!(cells[2], "admin", "{row}");
    assert_ne!(cells[4], "-", "last used is shown: {row}");
    assert_eq!(cells[6], "-", "not revoked yet: {row}");
    assert!(cells[7].contains("night shift") && !list.contains(&key));

    let rotated =
        tokio::task::block_in_place(|| gateway_cli(&app, &["keys", "rotate", &id.to_string()]));
    let new = rotated.trim();
    assert!(new.starts_with("gw_") && new != key, "{rotated}");
    assert_eq!(
        app.get("/api/v1/practices", new).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/practices", &key).await.status,
        StatusCode::UNAUTHORIZED
    );

    let new_id = listed_id(&app, new).await;
    tokio::task::block_in_place(|| gateway_cli(&app, &["keys", "revoke", &new_id.to_string()]));
    assert_eq!(
        app.get("/api/v1/practices", new).await.status,
        StatusCode::UNAUTHORIZED
    );

    let users = tokio::task::block_in_place(|| gateway_cli(&app, &["users", "list"]));
    assert!(
        users
            .lines()
            .any(|l| l.contains("\ttemp-admin\tadmin\t") && l.ends_with("\t-")),
        "{users}"
    );
    tokio::task::block_in_place(|| gateway_cli(&app, &["users", "disable", "temp-admin"]));
    let users = tokio::task::block_in_place(|| gateway_cli(&app, &["users", "list"]));
    assert!(
        users
            .lines()
            .any(|l| l.contains("\ttemp-admin\t") && !l.ends_with("\t-")),
        "{users}"
    );
    let (status, _) = crate::console::get(&app, "/console/practices", &session).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// The id of the key whose prefix `key` starts with, from the API's list.
async fn listed_id(app: &TestApp, key: &str) -> i64 {
    let reply = app.get("/api/v1/keys", &app.admin_key).await;
    reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            k["prefix"].as_str().is_some_and(|p| key.starts_with(p)) && k["revoked_at"].is_null()
        })
        .and_then(|k| k["id"].as_i64())
        .expect("listed")
}

pub async fn errors_carry_the_request_id_and_explain_401s(db: Db) {
    let app = spawn_app(db).await;
    let url = format!("{}/api/v1/practices", app.address);
    let response = client()
        .get(&url)
        .header("x-request-id", "ticket-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "ticket-4711");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert_eq!(body["error"]["request_id"], "ticket-4711", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    // Too long, or not visible ASCII: replaced by a fresh id, still echoed and quoted.
    for given in ["x".repeat(129), "two words".to_string()] {
        let response = client()
            .get(&url)
            .header("x-request-id", &given)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(echoed != given && echoed.len() == 32, "{echoed}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["request_id"], echoed.as_str());
    }
    // Successful answers carry one too.
    let ok = client()
        .get(&url)
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().contains_key("x-request-id"));
    let bad = app
        .request(Method::GET, "/api/v1/practices", Some("gw_nope"), None)
        .await;
    assert_explained_401(&bad, "invalid_api_key");
}

pub async fn an_admin_disables_a_user_from_the_console_people_page(db: Db) {
    let app = spawn_app(db).await;
    let store = app.state.store.as_ref();
    gateway::auth::create_user(store, "boss", PASSWORD, KeyScope::Admin)
        .await
        .unwrap();
    app.practice_with_key("A81002", "Hillside Surgery").await;
    let practice = app.practice_id("A81002").await;
    let leaver =
        gateway::auth::create_user(store, "leaver", PASSWORD, KeyScope::Practice(practice))
            .await
            .unwrap();
    let boss = sign_in(&app, "boss", PASSWORD).await.unwrap();
    let theirs = sign_in(&app, "leaver", PASSWORD).await.unwrap();
    // A practice user may not see the page.
    let (status, _) = crate::console::get(&app, "/console/users", &theirs).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, page) = crate::console::get(&app, "/console/users", &boss).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("leaver") && page.contains(&format!("/console/users/{}/disable", leaver.id))
    );
    let csrf = crate::console::csrf_in(&page);
    let post = |token: String| {
        let address = app.address.clone();
        let boss = boss.clone();
        let id = leaver.id;
        async move {
            client()
                .post(format!("{address}/console/users/{id}/disable"))
                .header(COOKIE, format!("gw_session={boss}"))
                .form(&[("csrf", token)])
                .send()
                .await
                .unwrap()
        }
    };
    // Without the page's token nothing changes.
    assert_eq!(post("forged".into()).await.status(), StatusCode::FORBIDDEN);
    let (status, _) = crate::console::get(&app, "/console/practices", &theirs).await;
    assert_eq!(status, StatusCode::OK);
    let done = post(csrf).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (status, _) = crate::console::get(&app, "/console/practices", &theirs).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = crate::console::get(&app, "/console/users", &boss).await;
    assert!(page.contains("Disabled "), "{page}");
}
