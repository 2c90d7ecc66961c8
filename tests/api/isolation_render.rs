//! Fault isolation of rendering (issue 11, cases 1 and 2): a practice's template cannot
//! stall the gateway, and a broadcast whose wording fails fails alone, without stopping
//! another practice's notice or the gateway's start.

use std::time::{Duration, Instant};

use gateway::domain::{Channel, Language, PracticeId};
use gateway::store::NewTemplate;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// Three `for` loops nested, written with whitespace control, printing nothing.
const THREE_DEEP: &str = "{%- for a in status.details %}{%- for b in status.details %}{%- for c in status.details %}{%- endfor %}{%- endfor %}{%- endfor %}{{ practice.name }}: {{ status.headline }}";

/// Two loops (allowed) over `details`, each turn printing `details`: n^3 bytes.
const HUGE_EMAIL: &str = "{% if status.details %}{% for a in status.details %}{% for b in status.details %}{{ status.details }}{% endfor %}{% endfor %}{% endif %}";

/// Fails whenever the status change has no end time.
const FAILS_WITHOUT_UNTIL: &str =
    "{{ practice.name }}: closed until {{ status.until | replace(from=\"on \", to=\"\") }}.";

async fn put(app: &TestApp, path: &str, key: &str, body: &Value) -> crate::helpers::Reply {
    app.request(Method::PUT, path, Some(key), Some(body)).await
}

/// Gives practice `ods` `n` (at most 1,000) patients reachable on `channel`, their NHS
/// numbers from test patient `first` on.
async fn add_patients(app: &TestApp, ods: &str, key: &str, first: u32, n: u32, channel: &str) {
    let patients: Vec<Value> = (first..first + n)
        .map(|i| {
            let address = match channel {
                // The drama range has 1,000 numbers.
                "sms" => format!("07700 900{:03}", i - first),
                _ => format!("p{i}@example.com"),
            };
            json!({ "nhs_number": nhs(i), "contacts": [{ "channel": channel, "address": address }] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["rejected"], json!([]), "{}", reply.body);
}

/// Stores a practice override straight into the store, as a template saved before these
/// checks existed (or written by hand) would be, and puts it in use.
async fn store_override(
    app: &TestApp,
    practice_id: PracticeId,
    key: &str,
    channel: Channel,
    draft: Value,
) {
    let text = |part: &str| draft[part].as_str().map(str::to_string);
    app.state
        .store
        .save_template(
            &NewTemplate {
                practice_id: Some(practice_id),
                key: key.into(),
                channel,
                language: Language::English,
                subject: text("subject"),
                body: text("body").expect("body"),
                html: text("html"),
                link: None,
                author: "written by hand".into(),
                note: None,
            },
            chrono::Utc::now(),
        )
        .await
        .expect("save template");
    app.state
        .templates
        .reload(app.state.store.as_ref())
        .await
        .expect("reload");
}

/// A console page as a signed-in administrator sees it.
async fn console_page(app: &TestApp, path: &str) -> String {
    let password = "correct horse battery staple";
    gateway::auth::create_user(
        app.state.store.as_ref(),
        "render-admin",
        password,
        gateway::store::KeyScope::Admin,
    )
    .await
    .expect("user");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
            .expect("cookie")
    };
    let form = client
        .get(format!("{}/console/signin", app.address))
        .send()
        .await
        .expect("sign-in page");
    let pre = cookie(&form, "gw_signin");
    let page = form.text().await.expect("page");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("csrf") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').expect("csrf end")];
    let signed = client
        .post(format!("{}/console/signin", app.address))
        .header(reqwest::header::COOKIE, format!("gw_signin={pre}"))
        .form(&[
            ("username", "render-admin"),
            ("password", password),
            ("csrf", csrf),
        ])
        .send()
        .await
        .expect("sign in");
    let session = cookie(&signed, "gw_session");
    client
        .get(format!("{}{path}", app.address))
        .header(reqwest::header::COOKIE, format!("gw_session={session}"))
        .send()
        .await
        .expect("console page")
        .text()
        .await
        .expect("console text")
}

/// Every message of a broadcast is `sent`, and there are `n` of them.
async fn assert_all_sent(app: &TestApp, key: &str, broadcast: i64, n: i64) {
    let progress = app
        .get(&format!("/api/v1/broadcasts/{broadcast}"), key)
        .await
        .body;
    assert_eq!(progress["fanout_complete"], true, "{progress}");
    assert_eq!(progress["failure"], Value::Null, "{progress}");
    assert_eq!(progress["total"], n, "{progress}");
    assert_eq!(progress["by_state"]["sent"], n, "{progress}");
}

/// Case 1: loops nested three deep behind `{%-` are refused at save; a template within
/// the structural rules that renders huge output is refused at save, and when it is in use
/// anyway its render is stopped at the output cap in preview and at fan-out, while
/// another practice's broadcast of 1,000 messages is sent as usual.
pub async fn unbounded_rendering_is_refused_or_stopped(db: Db) {
    let app = spawn_app(db).await;
    let key_a = app.practice_with_key("R10001", "Loop Surgery").await;
    let key_b = app.practice_with_key("R10002", "Bystander Surgery").await;
    add_patients(&app, "R10001", &key_a, 0, 3, "email").await;
    add_patients(&app, "R10002", &key_b, 100, 1000, "sms").await;

    // Three deep with whitespace control: refused, naming the loop depth.
    let reply = put(
        &app,
        "/api/v1/templates/status.custom/sms",
        &key_a,
        &json!({ "practice": "R10001", "body": THREE_DEEP }),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "invalid_template");
    let problem = &reply.body["error"]["details"][0];
    assert_eq!(problem["kind"], "not_allowed", "{problem}");
    assert!(
        problem["reason"]
            .as_str()
            .unwrap()
            .contains("nest at most 2"),
        "{problem}"
    );

    // Two deep but n^3 output: refused at save with the longest `details`.
    let huge =
        json!({ "practice": "R10001", "subject": "{{ status.headline }}", "body": HUGE_EMAIL });
    let started = Instant::now();
    let reply = put(&app, "/api/v1/templates/status.custom/email", &key_a, &huge).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let problem = &reply.body["error"]["details"][0];
    assert_eq!(problem["kind"], "too_costly", "{problem}");
    let reason = problem["reason"].as_str().unwrap();
    assert!(reason.contains("with longest values"), "{reason}");
    assert!(reason.contains("more than 65536 bytes"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // In use anyway (stored by hand): the preview is stopped at the cap, quickly.
    let a = app.practice_id("R10001").await;
    store_override(&app, a, "status.custom", Channel::Email, huge).await;
    let details = "x".repeat(300);
    let mut data = gateway::render::catalogue::sample_json("status.custom", Language::English);
    data["status"]["details"] = json!(details);
    let started = Instant::now();
    let reply = app
        .post(
            "/api/v1/templates/preview",
            &key_a,
            &json!({ "key": "status.custom", "channel": "email", "practice": "R10001", "data": data }),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["error"]["details"][0]["kind"], "too_costly",
        "{}",
        reply.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // At fan-out, practice A's broadcast is stopped and fails alone; B's goes out in full.
    let started = Instant::now();
    let (flood, closed) = (
        json!({ "kind": "custom", "headline": "Flood", "details": details }),
        json!({ "kind": "closed" }),
    );
    let (a_reply, b_reply) = tokio::join!(
        app.post("/api/v1/practices/R10001/status", &key_a, &flood),
        app.post("/api/v1/practices/R10002/status", &key_b, &closed)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        a_reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        a_reply.body
    );
    assert_eq!(
        a_reply.body["error"]["code"], "broadcast_failed",
        "{}",
        a_reply.body
    );
    let failed = a_reply.body["error"]["details"]["broadcast_id"]
        .as_i64()
        .unwrap();
    let view = app
        .get(&format!("/api/v1/broadcasts/{failed}"), &key_a)
        .await
        .body;
    let failure = view["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("more than 65536 bytes"), "{view}");
    assert_eq!(b_reply.status, StatusCode::CREATED, "{}", b_reply.body);
    app.drain().await;
    let b_broadcast = b_reply.body["id"].as_i64().unwrap();
    assert_all_sent(&app, &key_b, b_broadcast, 1000).await;
}

/// Case 2: a template failing when an optional value is absent is refused at save, naming
/// the case; one in use anyway fails its broadcast with the reason (API and audit), while
/// another practice's broadcast is sent; and a gateway started with such a broadcast
/// unfinished still listens and finishes the other practice's notice.
pub async fn failing_template_fails_its_broadcast_alone(db: Db) {
    let app = spawn_app(db).await;
    let key_a = app.practice_with_key("R20001", "Until Surgery").await;
    let key_b = app.practice_with_key("R20002", "Bystander Surgery").await;
    add_patients(&app, "R20001", &key_a, 0, 5, "sms").await;
    add_patients(&app, "R20002", &key_b, 100, 200, "sms").await;

    let reply = put(
        &app,
        "/api/v1/templates/status.closed/sms",
        &key_a,
        &json!({ "practice": "R20001", "body": FAILS_WITHOUT_UNTIL }),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let problem = &reply.body["error"]["details"][0];
    assert_eq!(problem["kind"], "render", "{problem}");
    assert!(
        problem["reason"]
            .as_str()
            .unwrap()
            .contains("with optional values absent"),
        "{problem}"
    );

    // In use anyway: A's closure (no end time) fails alone, with the reason.
    let a = app.practice_id("R20001").await;
    store_override(
        &app,
        a,
        "status.closed",
        Channel::Sms,
        json!({ "body": FAILS_WITHOUT_UNTIL }),
    )
    .await;
    let closed = json!({ "kind": "closed" });
    let (a_reply, b_reply) = tokio::join!(
        app.post("/api/v1/practices/R20001/status", &key_a, &closed),
        app.post("/api/v1/practices/R20002/status", &key_b, &closed)
    );
    assert_eq!(
        a_reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        a_reply.body
    );
    assert_eq!(
        a_reply.body["error"]["code"], "broadcast_failed",
        "{}",
        a_reply.body
    );
    let failed = a_reply.body["error"]["details"]["broadcast_id"]
        .as_i64()
        .unwrap();
    let view = app
        .get(&format!("/api/v1/broadcasts/{failed}"), &key_a)
        .await
        .body;
    assert!(view["failed_at"].is_string(), "{view}");
    assert!(
        view["failure"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be rendered"),
        "{view}"
    );
    assert_eq!(view["fanout_complete"], false, "{view}");
    let audit = app.state.store.audit_trail(a, 20).await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "broadcast.failed"
            && e.subject.as_deref() == Some(&format!("broadcast:{failed}"))),
        "{audit:?}"
    );
    let console = console_page(&app, &format!("/console/broadcasts/{failed}")).await;
    assert!(console.contains("This notice failed"), "{console}");
    assert!(console.contains("could not be rendered"), "{console}");
    assert_eq!(b_reply.status, StatusCode::CREATED, "{}", b_reply.body);
    app.drain().await;
    assert_all_sent(&app, &key_b, b_reply.body["id"].as_i64().unwrap(), 200).await;

    // A process that stopped after recording A's and then B's change left both unfinished.
    let a_unfinished = app.record_status_change_only("R20001", "closed").await;
    let b_unfinished = app.record_status_change_only("R20002", "restored").await;
    // A gateway starting on this database still listens, marks A's broadcast failed and
    // finishes B's.
    let state = gateway::app::AppState::with_parts(
        (*app.state.config).clone(),
        app.state.store.clone(),
        app.state.providers.clone(),
    )
    .await
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(gateway::app::serve(state, listener, shutdown.clone()));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{address}/healthz")).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        assert!(
            !server.is_finished(),
            "the restarted gateway stopped: {:?}",
            server.await
        );
        assert!(
            Instant::now() < deadline,
            "the restarted gateway never answered /healthz"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a_view = app
        .get(&format!("/api/v1/broadcasts/{a_unfinished}"), &key_a)
        .await
        .body;
    assert!(a_view["failure"].is_string(), "{a_view}");
    app.drain().await;
    assert_all_sent(&app, &key_b, b_unfinished.get(), 200).await;
    assert!(app
        .state
        .store
        .unfinished_broadcasts()
        .await
        .expect("store")
        .is_empty());
    shutdown.cancel();
}
