//! The NHS App channel end to end, through the `nhs_notify` provider and a loopback NHS
//! Notify: batches with a verified token, the routing plan per message key, retries of
//! 429 and 5xx, signed callbacks (good, forged, replayed), and a patient not in the app
//! falling through to SMS exactly once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gateway::config::ProviderConfig;
use gateway::domain::{Channel, MessageId};
use gateway::receipts::nhs_notify::signature;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{nhs, spawn_app_with, Db, Options, Reply, TestApp};
use crate::nhs_notify_peer::{
    id_of, set_secrets, Answer, NhsNotifyPeer, API_KEY, API_KEY_ENV, APPLICATION_ID,
    APPLICATION_ID_ENV, APPOINTMENT_PLAN, STATUS_PLAN,
};

const ODS: &str = "N10001";

/// A gateway sending the NHS App through the peer and SMS to a file.
struct AppChannel {
    app: TestApp,
    key: String,
    peer: NhsNotifyPeer,
    texts: PathBuf,
    _dir: TempDir,
}

impl AppChannel {
    /// With `patients` patients, each with a mobile, at a practice preferring the NHS App.
    async fn start(
        db: Db,
        peer: NhsNotifyPeer,
        provider: ProviderConfig,
        options: Options,
    ) -> Self {
        set_secrets();
        let dir = tempfile::tempdir().expect("temp dir");
        let texts = dir.path().join("texts.jsonl");
        let sms = ProviderConfig {
            name: "log-sms".into(),
            kind: "log".into(),
            channel: Channel::Sms,
            rate: None,
            burst: None,
            price_pence: None,
            settings: json!({ "path": texts })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let mut settings = options.settings;
        settings.push(("receipts.nhs_notify_api_key_env", json!(API_KEY_ENV)));
        settings.push((
            "receipts.nhs_notify_application_id_env",
            json!(APPLICATION_ID_ENV),
        ));
        let app = spawn_app_with(
            db,
            Options {
                providers: Some(vec![provider, sms]),
                settings,
                ..options
            },
        )
        .await;
        let key = app
            .practice_with_settings(json!({ "ods_code": ODS, "name": "App Surgery",
                "channel_order": ["nhsapp", "sms"], "urgent_channel_order": ["nhsapp", "sms"] }))
            .await;
        Self {
            app,
            key,
            peer,
            texts,
            _dir: dir,
        }
    }

    async fn patients(&self, n: u32) {
        let patients: Vec<Value> = (1..=n)
            .map(|i| {
                json!({ "nhs_number": nhs(i), "contacts": [
                { "channel": "sms", "address": format!("07700 9{i:05}") }] })
            })
            .collect();
        let reply = self
            .app
            .post(
                &format!("/api/v1/practices/{ODS}/patients"),
                &self.key,
                &json!({ "patients": patients }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    /// Posts a status change; its id and planned counts.
    async fn broadcast(&self, kind: &str) -> (i64, Value) {
        let reply = self
            .app
            .post(
                &format!("/api/v1/practices/{ODS}/status"),
                &self.key,
                &json!({ "kind": kind }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        (
            reply.body["id"].as_i64().unwrap(),
            reply.body["planned"].clone(),
        )
    }

    /// The broadcast's messages: (patient number, message).
    async fn messages(&self, broadcast: i64) -> Vec<(u32, Value)> {
        let page = self
            .app
            .get(
                &format!("/api/v1/broadcasts/{broadcast}/messages?limit=1000"),
                &self.key,
            )
            .await;
        let mut messages: Vec<(u32, Value)> = page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let i = (1..=100).find(|i| m["nhs_number"] == nhs(*i)).unwrap();
                (i, m.clone())
            })
            .collect();
        messages.sort_by_key(|(i, m)| (*i, m["id"].as_i64()));
        messages
    }

    async fn message(&self, id: i64) -> Value {
        let shown = self
            .app
            .get(&format!("/api/v1/messages/{id}"), &self.key)
            .await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        shown.body["message"].clone()
    }

    /// Drains until nothing is waiting or retrying.
    async fn drain_all(&self) {
        let started = Instant::now();
        loop {
            self.app.drain().await;
            if self.app.state.store.pending_count().await.unwrap() == 0 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "still pending");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn texts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.texts)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Sends a callback as NHS Notify does, signed with `application_id`.
    async fn callback(&self, items: Vec<Value>, application_id: &str, api_key: &str) -> Reply {
        let body = json!({ "data": items }).to_string();
        let signed = signature(application_id, API_KEY, body.as_bytes());
        self.app
            .callback(
                "/api/v1/receipts/nhs-notify",
                "application/vnd.api+json",
                &[
                    ("x-api-key", api_key.to_string()),
                    ("x-hmac-sha256-signature", signed),
                ],
                body,
            )
            .await
    }
}

/// A channel status callback item for our message `reference`.
fn channel_status(reference: i64, status: &str, code: Option<&str>) -> Value {
    json!({ "type": "ChannelStatus", "attributes": {
        "messageId": id_of(&reference.to_string()), "messageReference": reference.to_string(),
        "cascadeType": "primary", "cascadeOrder": 1, "channel": "nhsapp",
        "channelStatus": status, "channelFailureReasonCode": code,
        "timestamp": "2026-12-04T10:00:00.000Z", "retryCount": 0 },
        "links": { "message": "https://api.service.nhs.uk/comms/v1/messages/x" },
        "meta": { "idempotencyKey": format!("{reference}-{status}") } })
}

pub async fn nhs_app_messages_leave_in_batches_with_a_verified_token(db: Db) {
    let peer = NhsNotifyPeer::accepting().await;
    let provider = peer.provider(4, 300);
    let f = AppChannel::start(db, peer, provider, Options::default()).await;
    f.patients(10).await;
    let (id, planned) = f.broadcast("closed").await;
    assert_eq!(
        planned,
        json!({ "nhsapp": 10, "sms": 0, "email": 0, "push": 0 })
    );
    f.drain_all().await;

    assert_eq!(f.peer.problems(), Vec::<String>::new());
    let requests = f.peer.requests();
    assert!(
        requests.iter().all(|r| r.messages.len() <= 4),
        "a request over the limit"
    );
    assert!(
        requests.iter().any(|r| r.batch && r.messages.len() > 1),
        "no batch: {:?}",
        requests
            .iter()
            .map(|r| r.messages.len())
            .collect::<Vec<_>>()
    );
    let mut numbers: Vec<String> = requests
        .iter()
        .flat_map(|r| r.messages.iter().map(|m| m.1.clone()))
        .collect();
    numbers.sort();
    let mut expected: Vec<String> = (1..=10).map(nhs).collect();
    expected.sort();
    assert_eq!(numbers, expected, "each patient once, by NHS number");
    for request in &requests {
        assert_eq!(request.routing_plan, STATUS_PLAN);
        for (_, _, ods, body) in &request.messages {
            assert_eq!(ods, ODS);
            assert!(body.starts_with("App Surgery:"), "{body}");
        }
    }
    // One token for every request: it is kept until shortly before it expires.
    assert_eq!(f.peer.tokens_issued(), 1);
    for (_, m) in f.messages(id).await {
        assert_eq!(m["channel"], "nhsapp");
        assert_eq!(m["state"], "sent", "{m}");
        let (view, _) = f
            .app
            .state
            .store
            .message(MessageId::new(m["id"].as_i64().unwrap()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.provider_ref, Some(id_of(&view.id.get().to_string())));
    }
    assert!(f.texts().is_empty());

    // A one-patient appointment change goes alone, by the appointment routing plan.
    let booked = f
        .app
        .post(
            &format!("/api/v1/practices/{ODS}/appointments"),
            &f.key,
            &json!({ "appointments": [{ "external_ref": "A1", "nhs_number": nhs(3),
                "starts_at": "2030-03-04 09:30", "clinician": "Dr Rao", "status": "booked" }] }),
        )
        .await;
    assert_eq!(booked.status, StatusCode::OK, "{}", booked.body);
    let moved = f
        .app
        .post(
            &format!("/api/v1/practices/{ODS}/appointments/A1/changes"),
            &f.key,
            &json!({ "kind": "moved", "starts_at": "2030-03-05 11:00" }),
        )
        .await;
    assert_eq!(moved.status, StatusCode::CREATED, "{}", moved.body);
    f.drain_all().await;
    let last = f.peer.requests().pop().unwrap();
    assert!(!last.batch);
    assert_eq!(last.routing_plan, APPOINTMENT_PLAN);
    assert_eq!(last.messages[0].1, nhs(3));
    assert_eq!(f.peer.problems(), Vec::<String>::new());
}

pub async fn nhs_notify_429_and_5xx_are_retried_by_our_rules(db: Db) {
    let peer = NhsNotifyPeer::start(|n| match n {
        0 => Answer::Busy(1),
        1 => Answer::Fail,
        _ => Answer::Accept,
    })
    .await;
    let provider = peer.provider(45_000, 0);
    let options = Options {
        concurrency: 1,
        settings: vec![
            ("dispatch.retry_base_ms", json!(50)),
            ("dispatch.retry_cap_ms", json!(200)),
            ("failover.failures", json!(1000)),
        ],
        ..Options::default()
    };
    let f = AppChannel::start(db, peer, provider, options).await;
    f.patients(1).await;
    let (id, _) = f.broadcast("phones_down").await;
    f.drain_all().await;

    let requests = f.peer.requests();
    let answers: Vec<Answer> = requests.iter().map(|r| r.answer).collect();
    assert_eq!(answers, vec![Answer::Busy(1), Answer::Fail, Answer::Accept]);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "a request inside the Retry-After"
    );
    let (_, message) = f.messages(id).await.remove(0);
    assert_eq!(message["state"], "sent");
    let (_, attempts) = f
        .app
        .state
        .store
        .message(MessageId::new(message["id"].as_i64().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["retryable", "retryable", "accepted"]);
    assert_eq!(f.peer.problems(), Vec::<String>::new());
}

pub async fn nhs_notify_callbacks_are_verified_and_replays_change_nothing(db: Db) {
    let peer = NhsNotifyPeer::accepting().await;
    let provider = peer.provider(100, 100);
    let f = AppChannel::start(db, peer, provider, Options::default()).await;
    f.patients(2).await;
    let (id, _) = f.broadcast("closed").await;
    f.drain_all().await;
    let messages = f.messages(id).await;
    let (one, two) = (
        messages[0].1["id"].as_i64().unwrap(),
        messages[1].1["id"].as_i64().unwrap(),
    );

    let good = f
        .callback(
            vec![channel_status(one, "delivered", None)],
            APPLICATION_ID,
            API_KEY,
        )
        .await;
    assert_eq!(good.status, StatusCode::ACCEPTED, "{}", good.body);
    assert_eq!(good.body["state_changed"], 1);
    assert_eq!(f.message(one).await["state"], "delivered");
    let replayed = f
        .callback(
            vec![channel_status(one, "delivered", None)],
            APPLICATION_ID,
            API_KEY,
        )
        .await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED);
    assert_eq!(replayed.body["state_changed"], 0);

    // Signed with another application's key: refused, nothing changes.
    let forged = f
        .callback(
            vec![channel_status(two, "delivered", None)],
            "someone-else",
            API_KEY,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let no_key = f
        .callback(
            vec![channel_status(two, "delivered", None)],
            APPLICATION_ID,
            "wrong",
        )
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED, "{}", no_key.body);
    assert_eq!(f.message(two).await["state"], "sent");

    // A failure that is not about the app (a deceased patient) ends the message there.
    let dead = json!({ "type": "MessageStatus", "attributes": {
        "messageId": id_of(&two.to_string()), "messageReference": two.to_string(),
        "messageStatus": "failed", "messageFailureReasonCode": "MFR_PDSV_0112",
        "timestamp": "2026-12-04T10:00:00.000Z", "routingPlan": { "id": STATUS_PLAN, "version": "1" } },
        "links": { "message": "https://api.service.nhs.uk/comms/v1/messages/x" },
        "meta": { "idempotencyKey": "k" } });
    let failed = f.callback(vec![dead], APPLICATION_ID, API_KEY).await;
    assert_eq!(failed.status, StatusCode::ACCEPTED, "{}", failed.body);
    assert_eq!(failed.body["state_changed"], 1);
    assert_eq!(failed.body["moved_on"], 0);
    assert_eq!(f.message(two).await["state"], "failed");
    f.drain_all().await;
    assert!(f.texts().is_empty());
}

pub async fn a_patient_not_in_the_nhs_app_falls_through_to_sms(db: Db) {
    let peer = NhsNotifyPeer::accepting().await;
    let provider = peer.provider(100, 100);
    let f = AppChannel::start(db, peer, provider, Options::default()).await;
    f.patients(2).await;
    let (id, _) = f.broadcast("closed").await;
    f.drain_all().await;
    let first = f.messages(id).await[0].1["id"].as_i64().unwrap();

    // NHS Notify finds no NHS App account for patient 1.
    let not_in_app = vec![channel_status(first, "failed", Some("CFR_PDSV_0002"))];
    let reply = f
        .callback(not_in_app.clone(), APPLICATION_ID, API_KEY)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["moved_on"], 1);
    assert_eq!(reply.body["state_changed"], 1);
    let replayed = f.callback(not_in_app, APPLICATION_ID, API_KEY).await;
    assert_eq!(replayed.body["moved_on"], 0);
    assert_eq!(replayed.body["state_changed"], 0);
    f.drain_all().await;

    let texts = f.texts();
    assert_eq!(texts.len(), 1, "exactly one SMS: {texts:?}");
    assert_eq!(texts[0]["to"], "+447700900001");
    let original = f.message(first).await;
    assert_eq!(original["state"], "failed");
    assert!(original["superseded_by_fallback"].is_i64(), "{original}");
    let messages = f.messages(id).await;
    let channels: Vec<(u32, &str, &str)> = messages
        .iter()
        .map(|(i, m)| {
            (
                *i,
                m["channel"].as_str().unwrap(),
                m["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        vec![
            (1, "nhsapp", "failed"),
            (1, "sms", "sent"),
            (2, "nhsapp", "sent")
        ]
    );

    // The next broadcast texts patient 1 at once; patient 2 stays on the app.
    let (_, planned) = f.broadcast("restored").await;
    assert_eq!(
        planned,
        json!({ "nhsapp": 1, "sms": 1, "email": 0, "push": 0 })
    );
    assert_eq!(f.peer.problems(), Vec::<String>::new());
}
