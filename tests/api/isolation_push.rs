//! Issue 11, cases 4 and 5: anonymous browsers cannot flood a practice with follows or
//! store huge endpoints, and push endpoints cannot make the gateway connect to internal
//! addresses. Meanwhile another practice's broadcast completes normally.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use gateway::domain::{Channel, PracticeId};
use gateway::providers::generate_vapid_keys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{nhs, provider, spawn_app_with, Db, Options, TestApp};
use crate::push_service::{PushService, Reply as PushReply};

const ODS_A: &str = "R11041";
const ODS_B: &str = "R11042";
const SUBJECT: &str = "mailto:it@isolation.nhs.uk";
/// Patients of practice B, all on SMS or email.
const B_PATIENTS: u32 = 300;

/// A gateway with a `webpush` provider and `log` providers for SMS and email, practice A
/// (the one strangers follow) and practice B with [`B_PATIENTS`] patients.
struct PushApp {
    app: TestApp,
    vapid_public: String,
    key_a: String,
    key_b: String,
    _dir: TempDir,
}

/// `loopback`: whether `[push] allowed_networks` holds 127.0.0.0/8, as the harness gives
/// every other test; without it, loopback push services must be refused.
async fn push_app(db: Db, loopback: bool, settings: Vec<(&'static str, Value)>) -> PushApp {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = tempfile::tempdir().expect("temp dir");
    let sent_log = dir.path().join("sent.jsonl");
    let (vapid_public, vapid_private) = generate_vapid_keys();
    let variable = format!(
        "GATEWAY_ISOLATION_PUSH_VAPID_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&variable, vapid_private);
    let insecure = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let providers = vec![
        provider("log-sms", "log", Channel::Sms, json!({ "path": sent_log })),
        provider(
            "log-email",
            "log",
            Channel::Email,
            json!({ "path": sent_log }),
        ),
        provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": vapid_public,
                "vapid_private_key_env": variable,
                "subject": SUBJECT,
                "allow_insecure_hosts": insecure,
            }),
        ),
    ];
    let mut options = Options {
        providers: Some(providers),
        push_insecure_hosts: insecure,
        settings,
        ..Options::default()
    };
    if !loopback {
        options.push_allowed_networks = Vec::new();
    }
    let app = spawn_app_with(db, options).await;
    let key_a = app.practice_with_key(ODS_A, "Ash Tree Surgery").await;
    let key_b = app.practice_with_key(ODS_B, "Beech Road Surgery").await;
    let patients: Vec<Value> = (1..=B_PATIENTS)
        .map(|i| {
            let contact = if i % 2 == 0 {
                json!({ "channel": "sms", "address": format!("07700 9{i:05}") })
            } else {
                json!({ "channel": "email", "address": format!("b{i}@example.com") })
            };
            json!({ "nhs_number": nhs(i), "contacts": [contact] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS_B}/patients"),
            &key_b,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS_A}/patients"),
            &key_a,
            &json!({ "patients": [{ "nhs_number": nhs(1), "contacts": [{ "channel": "email", "address": "a1@example.com" }] }] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    PushApp {
        app,
        vapid_public,
        key_a,
        key_b,
        _dir: dir,
    }
}

/// A browser's subscription JSON with real keys.
fn subscription(endpoint: &str, service: &PushService) -> Value {
    let keys = service.keys();
    json!({ "endpoint": endpoint, "keys": { "p256dh": keys.p256dh, "auth": keys.auth } })
}

impl PushApp {
    /// An anonymous follow of practice A from the sign-up page.
    async fn follow(&self, subscription: Value) -> (StatusCode, Value) {
        let reply = self
            .app
            .request(
                Method::POST,
                &format!("/p/{ODS_A}/notifications/subscribe"),
                None,
                Some(&json!({ "subscription": subscription })),
            )
            .await;
        (reply.status, reply.body)
    }

    async fn practice_id(&self, ods: &str) -> PracticeId {
        self.app.practice_id(ods).await
    }

    /// Posts a status change for the practice; the broadcast's id.
    async fn post_status(&self, ods: &str, key: &str, kind: &str) -> i64 {
        let reply = self
            .app
            .post(
                &format!("/api/v1/practices/{ods}/status"),
                key,
                &json!({ "kind": kind }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_i64().expect("broadcast id")
    }

    async fn broadcast(&self, id: i64, key: &str) -> Value {
        self.app
            .get(&format!("/api/v1/broadcasts/{id}"), key)
            .await
            .body
    }

    /// Practice B's broadcast went out whole: every patient's message sent.
    async fn assert_b_complete(&self, id: i64, extra_push: u64) {
        let progress = self.broadcast(id, &self.key_b).await;
        let expected = u64::from(B_PATIENTS) + extra_push;
        assert_eq!(progress["by_state"]["sent"], expected, "{progress}");
        assert_eq!(progress["by_state"]["failed"], 0, "{progress}");
    }
}

/// A TCP listener that only counts the connections that reach it.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, count)
}

/// Case 5: endpoints are refused where they come in unless they are https on port 443 on
/// a browser push service, within the length cap, and not an internal IP literal; a name
/// resolving to loopback is accepted by name but never connected to, and its attempt says
/// only "address not allowed". Practice B's broadcast completes meanwhile.
pub async fn internal_push_addresses_are_refused(db: Db) {
    let t = push_app(db, false, Vec::new()).await;
    let service = PushService::start(&t.vapid_public, SUBJECT, PushReply::status(201)).await;
    let (port, connections) = counting_listener().await;
    let long = format!(
        "https://fcm.googleapis.com/fcm/send/{}",
        "a".repeat(1_000_000)
    );
    for (endpoint, reason) in [
        (long.as_str(), "longer than 1024 bytes"),
        ("http://fcm.googleapis.com/fcm/send/plain", "https"),
        ("https://fcm.googleapis.com:8443/fcm/send/port", "port 443"),
        (
            "https://push.attacker.example/send/x",
            "push service's host",
        ),
        ("https://127.0.0.1/push/literal", "address not allowed"),
        (
            "https://[::ffff:127.0.0.1]/push/mapped",
            "address not allowed",
        ),
        (
            "https://169.254.169.254/latest/meta-data",
            "address not allowed",
        ),
        (
            &format!("http://127.0.0.1:{port}/push/insecure"),
            "address not allowed",
        ),
    ] {
        let (status, body) = t.follow(subscription(endpoint, &service)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{endpoint:.80}: {body}"
        );
        let said = body["error"]["details"][0]["reason"].as_str().unwrap_or("");
        assert!(said.contains(reason), "{endpoint:.80}: {body}");
    }
    // The API for a patient's subscription holds the same rules.
    let path = format!(
        "/api/v1/practices/{ODS_A}/patients/{}/push-subscriptions",
        nhs(1)
    );
    let reply = t
        .app
        .post(&path, &t.key_a, &subscription(&long, &service))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let practice_a = t.practice_id(ODS_A).await;
    let store = &t.app.state.store;
    assert_eq!(store.follower_count(practice_a).await.expect("count"), 0);

    // A name is accepted by name; where it points is checked when connecting.
    let by_name = format!("http://localhost:{port}/push/by-name");
    let (status, body) = t.follow(subscription(&by_name, &service)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // An IP literal stored before endpoints were checked is refused when sending.
    let keys = service.keys();
    let stored = format!("http://127.0.0.1:{port}/push/stored-before");
    store
        .add_follower(
            practice_a,
            &stored,
            &keys.p256dh,
            &keys.auth,
            chrono::Utc::now(),
            u64::MAX,
        )
        .await
        .expect("store")
        .expect("added");

    let (a, b) = tokio::join!(
        t.post_status(ODS_A, &t.key_a, "closed"),
        t.post_status(ODS_B, &t.key_b, "closed"),
    );
    t.app.drain().await;
    let failed = t
        .app
        .get(
            &format!("/api/v1/broadcasts/{a}/messages?state=failed"),
            &t.key_a,
        )
        .await
        .body;
    let failed = failed["messages"].as_array().expect("messages").clone();
    let mut addresses: Vec<&str> = failed
        .iter()
        .filter_map(|m| m["address"].as_str())
        .collect();
    addresses.sort_unstable();
    let mut expected = [by_name.as_str(), stored.as_str()];
    expected.sort_unstable();
    assert_eq!(addresses, expected, "{failed:?}");
    for message in &failed {
        let detail = t
            .app
            .get(&format!("/api/v1/messages/{}", message["id"]), &t.key_a)
            .await
            .body;
        assert_eq!(
            detail["attempts"][0]["error"], "address not allowed",
            "{detail}"
        );
        assert_eq!(
            detail["message"]["last_error"], "address not allowed",
            "{detail}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a connection reached loopback"
    );
    assert!(service.received().is_empty());
    t.assert_b_complete(b, 0).await;
}

/// Case 4: 1,000 rapid anonymous follows from one address get 429 once the address's
/// allowance or the practice's cap is used up; a stored endpoint of any length can be
/// removed from the stop page; practice B's broadcast (its 600 followers read a page at a
/// time) completes meanwhile.
pub async fn anonymous_follows_are_limited(db: Db) {
    const PER_MINUTE: u64 = 10;
    const CAP: u64 = 6;
    const B_FOLLOWERS: u64 = 600;
    let t = push_app(
        db,
        true,
        vec![
            ("push.follows_per_address_per_minute", json!(PER_MINUTE)),
            ("push.followers_per_practice", json!(CAP)),
        ],
    )
    .await;
    let service = PushService::start(&t.vapid_public, SUBJECT, PushReply::status(201)).await;
    let practice_b = t.practice_id(ODS_B).await;
    let store = &t.app.state.store;
    let keys = service.keys();
    for i in 0..B_FOLLOWERS {
        store
            .add_follower(
                practice_b,
                &service.endpoint(&format!("b-{i}")),
                &keys.p256dh,
                &keys.auth,
                chrono::Utc::now(),
                u64::MAX,
            )
            .await
            .expect("store")
            .expect("added");
    }

    let started = Instant::now();
    let flood = stream::iter(0..1_000)
        .map(|i| {
            let t = &t;
            let endpoint = service.endpoint(&format!("a-{i}"));
            let body = subscription(&endpoint, &service);
            async move { t.follow(body).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let (replies, b) = tokio::join!(flood, t.post_status(ODS_B, &t.key_b, "closed"));
    let elapsed = started.elapsed();
    let created = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count() as u64;
    let limited: Vec<&Value> = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created + limited.len() as u64, 1_000, "only 201 and 429");
    assert!(limited
        .iter()
        .all(|b| b["error"]["code"] == "too_many_follows"));
    let by_cap = limited
        .iter()
        .filter(|b| {
            b["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("cannot take more")
        })
        .count() as u64;
    // The cap holds exactly; the address's allowance is PER_MINUTE at once, plus one for
    // each 60 / PER_MINUTE seconds the flood took.
    assert_eq!(created, CAP, "{elapsed:?}");
    let allowance = PER_MINUTE + elapsed.as_secs() / (60 / PER_MINUTE) + 1;
    assert!(
        created + by_cap <= allowance,
        "{created} + {by_cap} > {allowance}"
    );
    assert!(limited.len() as u64 >= 1_000 - allowance);
    let practice_a = t.practice_id(ODS_A).await;
    assert_eq!(store.follower_count(practice_a).await.expect("count"), CAP);

    // An endpoint stored before endpoints were capped (64 KB, far over the stop page's old
    // 2,048 characters; PostgreSQL's unique index takes it compressed) can still be removed.
    let huge = format!("https://fcm.googleapis.com/fcm/send/{}", "x".repeat(65_536));
    store
        .add_follower(
            practice_a,
            &huge,
            &keys.p256dh,
            &keys.auth,
            chrono::Utc::now(),
            u64::MAX,
        )
        .await
        .expect("store")
        .expect("added");
    let reply = t
        .app
        .request(
            Method::POST,
            &format!("/p/{ODS_A}/notifications/unsubscribe"),
            None,
            Some(&json!({ "endpoint": huge })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["removed"], 1);
    assert_eq!(store.follower_count(practice_a).await.expect("count"), CAP);

    // Practice B's broadcast: every patient and every follower, across several pages.
    let progress = t.broadcast(b, &t.key_b).await;
    assert_eq!(progress["planned"]["push"], B_FOLLOWERS, "{progress}");
    t.app.drain().await;
    t.assert_b_complete(b, B_FOLLOWERS).await;
    let delivered = service.received();
    assert_eq!(delivered.len() as u64, B_FOLLOWERS);
    assert!(delivered.iter().all(Result::is_ok));
}
