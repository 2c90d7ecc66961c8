//! Fallback when not delivered in time: a message that no receipt confirms by its key's
//! deadline is followed once by the same news on the patient's next usable channel; one
//! confirmed in time is not; and two instances looking at once, then a restart at the
//! deadline, still send exactly one follow-up.
//!
//! The looks are run by hand at a chosen "now" (30 minutes and more after the send), as the
//! dispatching instances' background task runs them every few seconds.

use chrono::{Duration, Utc};
use gateway::domain::Channel;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{move_appointment, nhs, provider, spawn_app_with, Db, Options, TestApp};
use crate::receipts::webhook_receipt;
use crate::sms_peer::SmsPeer;

const ODS: &str = "F10001";

/// A gateway whose SMS goes to a loopback SMS gateway that confirms by receipt (the
/// `webhook` kind), and whose email is written to a file (`log`: email never confirms).
struct Fallbacks {
    app: TestApp,
    key: String,
    peer: SmsPeer,
    emails: std::path::PathBuf,
    _dir: TempDir,
}

impl Fallbacks {
    async fn start(db: Db) -> Self {
        Self::start_sharing(db, None).await
    }

    /// Another instance on `database_url`'s database if given; else a fresh one.
    async fn start_sharing(db: Db, database_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let emails = dir.path().join("emails.jsonl");
        let peer = SmsPeer::accepting().await;
        let email = provider(
            "log-email",
            "log",
            Channel::Email,
            json!({ "path": emails }),
        );
        let shared = database_url.is_some();
        let app = spawn_app_with(
            db,
            Options {
                providers: Some(vec![peer.provider("peer-sms", None, None), email]),
                database_url,
                ..Options::default()
            },
        )
        .await;
        let key = match shared {
            true => String::new(),
            false => {
                // Texts first for broadcasts too, so that a closure goes by SMS (which
                // confirms) and falls back to email.
                app.practice_with_settings(json!({ "ods_code": ODS, "name": "Fallback Surgery",
                    "channel_order": ["sms", "email", "push"] }))
                    .await
            }
        };
        Self {
            app,
            key,
            peer,
            emails,
            _dir: dir,
        }
    }

    /// Patients `1..=n`, each with a mobile and an email address and no preference.
    async fn patients(&self, n: u32) {
        let patients: Vec<Value> = (1..=n)
            .map(|i| {
                json!({ "nhs_number": nhs(i), "given_name": format!("P{i}"), "contacts": [
                    { "channel": "sms", "address": format!("07700 9{i:05}") },
                    { "channel": "email", "address": format!("p{i}@example.com") },
                ]})
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

    /// Books appointment `reference` for patient `i` and moves it; returns the urgent
    /// message the change queued.
    async fn move_appointment(&self, reference: &str, i: u32) -> i64 {
        let moved = move_appointment(&self.app, &self.key, ODS, reference, i).await;
        moved["message"]["id"].as_i64().expect("message id")
    }

    async fn message(&self, id: i64) -> Value {
        let shown = self
            .app
            .get(&format!("/api/v1/messages/{id}"), &self.key)
            .await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        shown.body["message"].clone()
    }

    /// The email lines the `log` provider wrote.
    fn emails(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.emails)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// One look for overdue messages at `minutes` after now.
    async fn look_after(&self, minutes: i64) -> gateway::fallback::LookSummary {
        self.app
            .state
            .follow_ups()
            .look(Utc::now() + Duration::minutes(minutes))
            .await
    }
}

pub async fn an_unconfirmed_urgent_text_is_followed_once_by_email(db: Db) {
    let f = Fallbacks::start(db).await;
    f.patients(2).await;
    let silent = f.move_appointment("APT-1", 1).await;
    let confirmed = f.move_appointment("APT-2", 2).await;
    f.app.drain().await;
    assert_eq!(f.peer.accepted().len(), 2);
    assert_eq!(f.message(silent).await["state"], "sent");
    // Patient 2's text is confirmed in time; patient 1's never is.
    let reference = f.message(confirmed).await["provider_ref"]
        .as_str()
        .expect("provider reference")
        .to_string();
    let receipt = webhook_receipt(&f.app, &reference, "delivered").await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.body);

    // Before the 30-minute deadline nothing happens.
    let early = f.look_after(29).await;
    assert_eq!(early.overdue, 0, "{early:?}");
    let look = f.look_after(31).await;
    assert_eq!(
        (look.overdue, look.followed, look.errors),
        (1, 1, 0),
        "{look:?}"
    );
    let original = f.message(silent).await;
    let follow_up = original["superseded_by_fallback"]
        .as_i64()
        .unwrap_or_else(|| panic!("marked: {original}"));
    assert_eq!(original["state"], "sent");
    let shown = f.message(follow_up).await;
    assert_eq!(shown["channel"], "email");
    assert_eq!(shown["priority"], "urgent");
    assert_eq!(shown["template_key"], "appointment.moved");
    assert_eq!(shown["address"], "p1@example.com");
    assert_eq!(
        f.message(confirmed).await["superseded_by_fallback"],
        Value::Null
    );

    f.app.drain().await;
    let emails = f.emails();
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0]["to"], "p1@example.com", "{}", emails[0]);
    // Later looks add nothing: the deadline is handled, and email never confirms.
    let again = f.look_after(600).await;
    assert_eq!((again.overdue, again.followed), (0, 0), "{again:?}");
    f.app.drain().await;
    assert_eq!(f.emails().len(), 1);
    assert_eq!(f.peer.accepted().len(), 2, "no second text");
}

pub async fn an_unconfirmed_closure_text_falls_back_after_two_hours(db: Db) {
    let f = Fallbacks::start(db).await;
    f.patients(3).await;
    let posted = f
        .app
        .post(
            &format!("/api/v1/practices/{ODS}/status"),
            &f.key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let broadcast = posted.body["id"].as_i64().expect("broadcast id");
    f.app.drain().await;
    assert_eq!(f.peer.accepted().len(), 3);
    let page = f
        .app
        .get(&format!("/api/v1/broadcasts/{broadcast}/messages"), &f.key)
        .await;
    let texts: Vec<Value> = page.body["messages"].as_array().expect("messages").clone();
    let first = texts[0]["provider_ref"].as_str().expect("reference");
    assert_eq!(
        webhook_receipt(&f.app, first, "delivered").await.status,
        StatusCode::OK
    );

    let early = f.look_after(119).await;
    assert_eq!(early.overdue, 0, "{early:?}");
    let look = f.look_after(121).await;
    assert_eq!((look.overdue, look.followed), (2, 2), "{look:?}");
    f.app.drain().await;
    let mut to: Vec<String> = f
        .emails()
        .iter()
        .map(|e| e["to"].as_str().unwrap_or_default().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["p2@example.com", "p3@example.com"]);
    // The follow-ups are the broadcast's own messages, counted with it.
    let shown = f
        .app
        .get(&format!("/api/v1/broadcasts/{broadcast}"), &f.key)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let all = f
        .app
        .get(&format!("/api/v1/broadcasts/{broadcast}/messages"), &f.key)
        .await;
    assert_eq!(
        all.body["messages"].as_array().map(Vec::len),
        Some(5),
        "{}",
        all.body
    );
}

pub async fn two_instances_and_a_restart_follow_up_exactly_once(db: Db) {
    let first = Fallbacks::start(db.clone()).await;
    first.patients(20).await;
    let mut messages = Vec::new();
    for i in 1..=20 {
        messages.push(first.move_appointment(&format!("APT-{i}"), i).await);
    }
    first.app.drain().await;
    // A second instance on the same database, both looking at the deadline at once.
    let second = Fallbacks::start_sharing(db.clone(), Some(first.app.database_url())).await;
    let (a, b) = tokio::join!(first.look_after(31), second.look_after(31));
    assert_eq!(a.errors + b.errors, 0, "{a:?} {b:?}");
    assert_eq!(a.followed + b.followed, 20, "{a:?} {b:?}");
    // A restart: a third instance starts on the same database and looks again.
    drop(second);
    let restarted = Fallbacks::start_sharing(db, Some(first.app.database_url())).await;
    let again = restarted.look_after(31).await;
    assert_eq!((again.overdue, again.followed), (0, 0), "{again:?}");
    restarted.app.drain().await;
    first.app.drain().await;
    let sent = first.emails().len() + restarted.emails().len();
    assert_eq!(sent, 20, "one email per unconfirmed text");
    for id in messages {
        let shown = first.message(id).await;
        assert!(shown["superseded_by_fallback"].is_i64(), "{shown}");
    }
}
