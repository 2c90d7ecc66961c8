//! Push with proof: a push message's encrypted payload carries a signed receipt token; the
//! service worker's `shown` moves the message to `delivered`, a tap's `read` to `read`, and
//! a replayed, forged or foreign receipt changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway::config::ProviderConfig;
use gateway::domain::{Channel, MessageId};
use gateway::links::SignedLinks;
use gateway::providers::generate_vapid_keys;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    self, nhs, provider, spawn_app_with, Db, Options, Reply, TestApp, UNSUBSCRIBE_SECRET_ENV,
};
use crate::push_service::{PushService, Reply as PushReply};
use crate::receipts::message_state;

const ODS: &str = "R10033";
const PUSH_SUBJECT: &str = "mailto:it@proof-surgery.nhs.uk";
const RECEIPTS: &str = "/api/v1/push/receipts";

/// Posts a receipt `{token, event}` as a service worker does: no key, JSON.
pub(crate) async fn post_push_receipt(app: &TestApp, token: &str, event: &str) -> Reply {
    let body = json!({ "token": token, "event": event }).to_string();
    app.callback(RECEIPTS, "application/json", &[], body).await
}

/// Posts the `shown` receipt of a decrypted push payload (as the push service in
/// `tests/support/push_service.rs` decrypts it), as the service worker does once it has
/// shown the notification. For tests that need a push message confirmed (fallback).
pub(crate) async fn post_shown_receipt(app: &TestApp, payload: &Value) -> Reply {
    let token = payload["receipt_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the push payload carries no receipt token: {payload}"));
    post_push_receipt(app, token, "shown").await
}

/// A `webpush` provider reaching `push`'s loopback service, and a `log` SMS provider.
fn providers(push_vapid: (&str, &str), sent_log: &std::path::Path) -> Vec<ProviderConfig> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let (public, private) = push_vapid;
    let private_env = format!(
        "GATEWAY_RECEIPTS_VAPID_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&private_env, private);
    vec![
        provider("log-sms", "log", Channel::Sms, json!({ "path": sent_log })),
        provider(
            "browser-push",
            "webpush",
            Channel::Push,
            json!({
                "vapid_public_key": public,
                "vapid_private_key_env": private_env,
                "subject": PUSH_SUBJECT,
                "allow_insecure_hosts": ["127.0.0.1"],
                "timeout_ms": 5000,
            }),
        ),
    ]
}

/// Subscribes patients `nhs(i)` of practice [`ODS`] to `push` through the API.
async fn subscribe(app: &TestApp, key: &str, push: &PushService, patients: &[u32]) {
    let keys = push.keys();
    for i in patients {
        let subscription = json!({
            "endpoint": push.endpoint(&format!("patient-{i}")),
            "keys": { "p256dh": keys.p256dh, "auth": keys.auth },
        });
        let path = format!(
            "/api/v1/practices/{ODS}/patients/{}/push-subscriptions",
            nhs(*i)
        );
        let reply = app.post(&path, key, &subscription).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
}

/// A gateway sending push to a loopback push service, practice [`ODS`] with patients 1 and
/// 2 on push (subscribed through the API) and 3 on SMS, and a broadcast sent to all three.
/// Returns the app, its key, the service, and the two decrypted push payloads by patient.
async fn sent_broadcast(db: Db, options: Options) -> (TestApp, String, PushService, Vec<Value>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (public, private) = generate_vapid_keys();
    let push = PushService::start(&public, PUSH_SUBJECT, PushReply::status(201)).await;
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(providers(
                (&public, &private),
                &dir.path().join("sent.jsonl"),
            )),
            push_insecure_hosts: vec!["127.0.0.1".into()],
            ..options
        },
    )
    .await;
    let key = app.practice_with_key(ODS, "Proof Surgery").await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "preferred_channel": "push" },
        { "nhs_number": nhs(2), "preferred_channel": "push" },
        { "nhs_number": nhs(3), "contacts": [{ "channel": "sms", "address": "07700 900301" }] },
    ]});
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &patients,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    subscribe(&app, &key, &push, &[1, 2]).await;
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/status"),
            &key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["planned"]["push"], 2, "{}", reply.body);
    assert_eq!(reply.body["planned"]["sms"], 1, "{}", reply.body);
    app.drain().await;
    let mut delivered: Vec<_> = push
        .received()
        .into_iter()
        .map(|d| d.expect("the push service accepted the request"))
        .collect();
    delivered.sort_by(|a, b| a.path.cmp(&b.path));
    let payloads = delivered.into_iter().map(|d| d.payload).collect();
    // The temp dir holds only the SMS log, which these tests do not read.
    drop(dir);
    (app, key, push, payloads)
}

fn id_of(payload: &Value) -> i64 {
    payload["message_id"].as_i64().expect("message_id")
}

fn token_of(payload: &Value) -> String {
    payload["receipt_token"]
        .as_str()
        .expect("receipt_token")
        .to_string()
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
}

pub async fn push_receipts_prove_display_and_reading_once(db: Db) {
    let (app, key, _push, payloads) = sent_broadcast(db, Options::default()).await;
    let [first, second] = &payloads[..] else {
        panic!("two push messages: {payloads:?}")
    };
    let (a, b) = (id_of(first), id_of(second));
    // The payload, decrypted as the browser does, carries the token and where to post it.
    assert_eq!(first["receipt_url"], RECEIPTS);
    assert!(token_of(first).starts_with(&format!("{a}.")), "{first}");
    assert_ne!(token_of(first), token_of(second));
    assert_eq!(message_state(&app, &key, a).await, "sent");

    // Shown: delivered, once.
    let reply = post_shown_receipt(&app, first).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({ "message_id": a, "event": "shown", "state": "delivered", "state_changed": true })
    );
    assert_eq!(message_state(&app, &key, a).await, "delivered");
    refused(
        &post_shown_receipt(&app, first).await,
        StatusCode::CONFLICT,
        "receipt_replayed",
    );
    assert_eq!(message_state(&app, &key, a).await, "delivered");

    // Tapped: read, once.
    let reply = post_push_receipt(&app, &token_of(first), "read").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["state"], "read");
    assert_eq!(reply.body["state_changed"], true);
    refused(
        &post_push_receipt(&app, &token_of(first), "read").await,
        StatusCode::CONFLICT,
        "receipt_replayed",
    );
    assert_eq!(message_state(&app, &key, a).await, "read");

    // A tap reported before the showing (receipts race) reads the message, and the late
    // `shown` is recorded without moving it back.
    let reply = post_push_receipt(&app, &token_of(second), "read").await;
    assert_eq!(reply.body["state"], "read", "{}", reply.body);
    let reply = post_shown_receipt(&app, second).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["state"], "read");
    assert_eq!(reply.body["state_changed"], false);
    assert_eq!(message_state(&app, &key, b).await, "read");
}

pub async fn forged_and_foreign_push_receipts_change_nothing(db: Db) {
    let (app, key, _push, payloads) = sent_broadcast(db, Options::default()).await;
    let (first, second) = (&payloads[0], &payloads[1]);
    let (a, b) = (id_of(first), id_of(second));
    let token = token_of(first);
    let (_, mac) = token.split_once('.').expect("id.mac");

    // Altered: another message's id with this message's MAC, or a changed MAC.
    let grafted = format!("{b}.{mac}");
    refused(
        &post_push_receipt(&app, &grafted, "shown").await,
        StatusCode::FORBIDDEN,
        "invalid_receipt",
    );
    // The MAC's first character (its last holds padding bits a decoder refuses to change).
    let flipped = format!(
        "{a}.{}{}",
        if mac.starts_with('A') { 'B' } else { 'A' },
        &mac[1..]
    );
    refused(
        &post_push_receipt(&app, &flipped, "shown").await,
        StatusCode::FORBIDDEN,
        "invalid_receipt",
    );
    // Signed with another secret: what a forger without ours would make.
    let forged = SignedLinks::new("https://gw.example", "not-the-secret".into())
        .push_receipt_token(MessageId::new(a));
    refused(
        &post_push_receipt(&app, &forged, "shown").await,
        StatusCode::FORBIDDEN,
        "invalid_receipt",
    );
    // Genuine signature, but of the SMS message: not a push message's receipt.
    let sms = app
        .get(
            &format!(
                "/api/v1/broadcasts/{}/messages",
                broadcast_of(&app, &key, a).await
            ),
            &key,
        )
        .await
        .body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["channel"] == "sms")
        .and_then(|m| m["id"].as_i64())
        .expect("the SMS message");
    let secret = std::env::var(UNSUBSCRIBE_SECRET_ENV).expect("link secret");
    let foreign =
        SignedLinks::new("https://gw.example", secret).push_receipt_token(MessageId::new(sms));
    refused(
        &post_push_receipt(&app, &foreign, "shown").await,
        StatusCode::FORBIDDEN,
        "invalid_receipt",
    );
    // Malformed tokens, unknown events, extra fields and large bodies are refused unread.
    for junk in ["", "abc", "12", "1.!!", &"9".repeat(100)] {
        refused(
            &post_push_receipt(&app, junk, "shown").await,
            StatusCode::BAD_REQUEST,
            "malformed_receipt",
        );
    }
    refused(
        &post_push_receipt(&app, &token, "opened").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    let extra = json!({ "token": token, "event": "shown", "state": "read" }).to_string();
    refused(
        &app.callback(RECEIPTS, "application/json", &[], extra).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    let large = json!({ "token": token, "event": "shown", "pad": "x".repeat(4_000) }).to_string();
    refused(
        &app.callback(RECEIPTS, "application/json", &[], large).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    for id in [a, b, sms] {
        assert_eq!(message_state(&app, &key, id).await, "sent", "message {id}");
    }
    // The genuine receipt still works after all that.
    assert_eq!(post_shown_receipt(&app, first).await.status, StatusCode::OK);
    assert_eq!(message_state(&app, &key, a).await, "delivered");
}

pub async fn push_receipts_are_limited_per_client_address(db: Db) {
    let options = Options {
        settings: vec![("push.receipts_per_address_per_minute", json!(3))],
        ..Options::default()
    };
    let (app, key, _push, payloads) = sent_broadcast(db, options).await;
    for _ in 0..3 {
        refused(
            &post_push_receipt(&app, "junk", "shown").await,
            StatusCode::BAD_REQUEST,
            "malformed_receipt",
        );
    }
    // The allowance is spent: even a genuine receipt waits, and changes nothing yet.
    let reply = post_shown_receipt(&app, &payloads[0]).await;
    refused(&reply, StatusCode::TOO_MANY_REQUESTS, "too_many_receipts");
    assert_eq!(message_state(&app, &key, id_of(&payloads[0])).await, "sent");
}

/// The broadcast message `id` belongs to.
async fn broadcast_of(app: &TestApp, key: &str, id: i64) -> i64 {
    let detail = app.get(&format!("/api/v1/messages/{id}"), key).await.body;
    detail["message"]["broadcast_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("message {id} has no broadcast: {detail}"))
}

pub async fn a_receipt_before_the_outcome_is_stored_still_counts(db: Db) {
    // Each send takes a while after the message has left, as when the push service hands a
    // message to the browser before the gateway has stored that the service took it.
    let app = spawn_app_with(
        db,
        Options {
            send_delay: Duration::from_millis(1_500),
            ..Options::default()
        },
    )
    .await;
    let key = app.practice_with_key(ODS, "Proof Surgery").await;
    let patients = json!({ "patients": [{ "nhs_number": nhs(1), "preferred_channel": "push" }] });
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &patients,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let (p256dh, _) = generate_vapid_keys();
    let subscription = json!({
        "endpoint": "https://push.example.com/send/early",
        "keys": { "p256dh": p256dh, "auth": "AAECAwQFBgcICQoLDA0ODw" },
    });
    let path = format!(
        "/api/v1/practices/{ODS}/patients/{}/push-subscriptions",
        nhs(1)
    );
    let reply = app.post(&path, &key, &subscription).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/status"),
            &key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.body["planned"]["push"], 1, "{}", reply.body);

    // The `log` provider carries no payload, so the token is made here with the gateway's
    // secret, as dispatch makes it.
    let secret = std::env::var(UNSUBSCRIBE_SECRET_ENV).expect("link secret");
    let links = SignedLinks::new("https://gw.example", secret);
    let early_receipt = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let id = loop {
            let pushed = app
                .sent_lines()
                .into_iter()
                .find(|l| l["channel"] == "push");
            if let Some(id) = pushed.and_then(|l| l["message_id"].as_i64()) {
                break id;
            }
            assert!(Instant::now() < deadline, "the push message never left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = links.push_receipt_token(MessageId::new(id));
        let reply = post_push_receipt(&app, &token, "shown").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["state"], "sending", "{}", reply.body);
        assert_eq!(reply.body["state_changed"], false);
        id
    };
    let (_, id) = tokio::join!(app.drain(), early_receipt);
    assert_eq!(message_state(&app, &key, id).await, "delivered");
    refused(
        &post_push_receipt(&app, &links.push_receipt_token(MessageId::new(id)), "shown").await,
        StatusCode::CONFLICT,
        "receipt_replayed",
    );
}

/// Patient `i`'s urgent appointment change, which must go by push (fastest first):
/// its message id.
async fn move_appointment(app: &TestApp, key: &str, reference: &str, i: u32) -> i64 {
    let moved = helpers::move_appointment(app, key, ODS, reference, i).await;
    assert_eq!(moved["message"]["channel"], "push", "{moved}");
    moved["message"]["id"].as_i64().expect("message id")
}

/// An urgent change to a patient whose push is never shown is followed by exactly one text
/// after the 30-minute deadline; one whose push the service worker reports shown in time is
/// followed by none.
pub async fn an_urgent_push_never_shown_falls_back_to_one_text(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sent_log = dir.path().join("sent.jsonl");
    let (public, private) = generate_vapid_keys();
    let push = PushService::start(&public, PUSH_SUBJECT, PushReply::status(201)).await;
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(providers((&public, &private), &sent_log)),
            push_insecure_hosts: vec!["127.0.0.1".into()],
            ..Options::default()
        },
    )
    .await;
    let key = app.practice_with_key(ODS, "Proof Surgery").await;
    let patients: Vec<Value> = [1, 2]
        .map(|i| {
            json!({ "nhs_number": nhs(i),
                    "contacts": [{ "channel": "sms", "address": format!("07700 90040{i}") }] })
        })
        .to_vec();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    subscribe(&app, &key, &push, &[1, 2]).await;
    let silent = move_appointment(&app, &key, "APT-1", 1).await;
    let shown = move_appointment(&app, &key, "APT-2", 2).await;
    app.drain().await;
    let payloads: Vec<Value> = push
        .received()
        .into_iter()
        .map(|d| d.expect("the push service accepted the request").payload)
        .collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    // Patient 2's browser shows the notification; patient 1's never does.
    let shown_payload = payloads
        .iter()
        .find(|p| id_of(p) == shown)
        .expect("patient 2's push");
    let reply = post_shown_receipt(&app, shown_payload).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(message_state(&app, &key, shown).await, "delivered");
    assert_eq!(message_state(&app, &key, silent).await, "sent");

    let look = |minutes: i64| {
        let follow_ups = app.state.follow_ups();
        async move {
            follow_ups
                .look(chrono::Utc::now() + chrono::Duration::minutes(minutes))
                .await
        }
    };
    let early = look(29).await;
    assert_eq!(early.overdue, 0, "{early:?}");
    let due = look(31).await;
    assert_eq!(
        (due.overdue, due.followed, due.errors),
        (1, 1, 0),
        "{due:?}"
    );
    app.drain().await;
    let texts: Vec<Value> = std::fs::read_to_string(&sent_log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(texts.len(), 1, "exactly one text: {texts:?}");
    assert_eq!(texts[0]["to"], "+447700900401", "{}", texts[0]);
    let original = app
        .get(&format!("/api/v1/messages/{silent}"), &key)
        .await
        .body;
    assert!(
        original["message"]["superseded_by_fallback"].is_i64(),
        "{original}"
    );
    let confirmed = app
        .get(&format!("/api/v1/messages/{shown}"), &key)
        .await
        .body;
    assert_eq!(confirmed["message"]["superseded_by_fallback"], Value::Null);
    // Later looks send nothing more, and the push service gets nothing more.
    let later = look(600).await;
    assert_eq!((later.overdue, later.followed), (0, 0), "{later:?}");
    app.drain().await;
    assert_eq!(
        std::fs::read_to_string(&sent_log)
            .unwrap_or_default()
            .lines()
            .count(),
        1
    );
    assert!(push.received().is_empty());
}
