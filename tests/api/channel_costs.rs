//! Channel choice by cost and speed: a broadcast goes to each patient on the cheapest
//! channel they can receive (a patient's own preference counts unless the practice
//! overrides it), with its estimated cost shown before it is sent and its actual cost
//! after, priced at each provider's configured price; one-patient urgent messages go
//! fastest first; the practice's month adds up in the costs API.

use std::collections::BTreeMap;

use gateway::config::ProviderConfig;
use gateway::domain::Channel;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::console;
use crate::helpers::{move_appointment, nhs, provider, spawn_app_with, Db, Options, TestApp};

const ODS: &str = "C10001";

/// Prices in pence: 3p an SMS segment, 0.5p an email, push free.
const SMS_PENCE: f64 = 3.0;
const EMAIL_PENCE: f64 = 0.5;

/// `log` providers (one file) with this test's prices.
fn priced_providers(dir: &TempDir) -> Vec<ProviderConfig> {
    let path = dir.path().join("sent.jsonl");
    [
        (Channel::Sms, Some(SMS_PENCE)),
        (Channel::Email, Some(EMAIL_PENCE)),
        (Channel::Push, None),
    ]
    .into_iter()
    .map(|(channel, price)| ProviderConfig {
        price_pence: price,
        ..provider(
            &format!("log-{channel}"),
            "log",
            channel,
            json!({ "path": path }),
        )
    })
    .collect()
}

async fn start(db: Db, dir: &TempDir) -> (TestApp, String) {
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(priced_providers(dir)),
            ..Options::default()
        },
    )
    .await;
    let key = app
        .practice_with_settings(json!({ "ods_code": ODS, "name": "Cost Surgery" }))
        .await;
    (app, key)
}

/// Patient `i` with a mobile, an email address unless `sms_only`, and a preference.
fn patient(i: u32, sms_only: bool, preferred: Option<&str>) -> Value {
    let mut contacts =
        vec![json!({ "channel": "sms", "address": format!("07700 900{:03}", i % 1000) })];
    if !sms_only {
        contacts.push(json!({ "channel": "email", "address": format!("p{i}@example.com") }));
    }
    json!({ "nhs_number": nhs(i), "given_name": format!("P{i}"),
            "preferred_channel": preferred, "contacts": contacts })
}

/// A browser push subscription on a test push service (keys need only be well formed:
/// the `log` provider sends nothing).
fn subscription(i: u32) -> Value {
    json!({ "endpoint": format!("https://push.example.com/send/{i}"),
            "keys": { "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                      "auth": "tBHItJI5svbpez7KI4CCXg" } })
}

fn pence(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("not a number of pence: {v}"))
}

/// 1,000 patients: 400 reachable by push (and SMS and email), 250 by email and SMS, 50
/// by email and SMS who prefer SMS, 300 by SMS only. Cheapest first, honouring
/// preferences: 400 push, 250 email, 350 SMS; overriding them: 400, 300, 300.
pub async fn a_broadcast_uses_each_patients_cheapest_channel_and_shows_its_cost(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, key) = start(db, &dir).await;
    let practice = app.get(&format!("/api/v1/practices/{ODS}"), &key).await;
    assert_eq!(
        practice.body["channel_order"],
        json!(["nhsapp", "push", "email", "sms"]),
        "{}",
        practice.body
    );
    assert_eq!(
        practice.body["urgent_channel_order"],
        json!(["push", "sms", "nhsapp", "email"])
    );
    assert_eq!(practice.body["order_overrides_preference"], false);

    let patients: Vec<Value> = (1..=1000)
        .map(|i| match i {
            1..=650 => patient(i, false, None),
            651..=700 => patient(i, false, Some("sms")),
            _ => patient(i, true, None),
        })
        .collect();
    let added = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    for i in 1..=400 {
        let subscribed = app
            .post(
                &format!(
                    "/api/v1/practices/{ODS}/patients/{}/push-subscriptions",
                    nhs(i)
                ),
                &key,
                &subscription(i),
            )
            .await;
        assert_eq!(
            subscribed.status,
            StatusCode::CREATED,
            "{}",
            subscribed.body
        );
    }

    // Before: the preview names the audience per channel and what it would cost.
    let preview = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({ "key": "status.closed", "channel": "sms", "practice": ODS }),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    let audience = &preview.body["audience"];
    assert_eq!(
        audience["recipients"],
        json!({ "push": 400, "email": 250, "sms": 350 }),
        "{audience}"
    );
    let segments = preview.body["sms"]["segments"].as_u64().expect("segments");
    let expected = 350.0 * segments as f64 * SMS_PENCE + 250.0 * EMAIL_PENCE;
    assert_eq!(pence(&audience["estimated_cost"]["total_pence"]), expected);

    let posted = app
        .post(
            &format!("/api/v1/practices/{ODS}/status"),
            &key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    let id = posted.body["id"].as_i64().expect("broadcast id");
    // The answer may come before the whole list is planned: wait for the rest.
    let mut before = Value::Null;
    for _ in 0..200 {
        before = app
            .get(&format!("/api/v1/broadcasts/{id}"), &key)
            .await
            .body;
        if before["fanout_complete"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = &before;
    assert_eq!(before["fanout_complete"], true, "{before}");
    assert_eq!(
        before["planned"],
        json!({ "push": 400, "email": 250, "sms": 350 }),
        "{before}"
    );
    let estimated = &before["cost"]["estimated"];
    assert_eq!(pence(&estimated["total_pence"]), expected, "{before}");
    assert_eq!(estimated["per_channel"]["sms"]["segments"], 350 * segments);
    assert_eq!(pence(&before["cost"]["actual"]["total_pence"]), 0.0);

    // After: every message went, and the actual cost is what each provider charges.
    assert_eq!(app.drain().await, 1000);
    let after = app.get(&format!("/api/v1/broadcasts/{id}"), &key).await;
    let after = &after.body;
    assert_eq!(after["by_state"]["sent"], 1000, "{after}");
    assert_eq!(pence(&after["cost"]["actual"]["total_pence"]), expected);
    let mut lines: BTreeMap<String, u32> = BTreeMap::new();
    for line in app_lines(&dir) {
        *lines
            .entry(line["channel"].as_str().unwrap_or("?").into())
            .or_default() += 1;
    }
    assert_eq!(
        lines,
        BTreeMap::from([
            ("email".into(), 250),
            ("push".into(), 400),
            ("sms".into(), 350)
        ])
    );

    // The month adds up; a month with nothing costs nothing; a bad month is refused.
    let month = app
        .get(&format!("/api/v1/practices/{ODS}/costs"), &key)
        .await;
    assert_eq!(month.status, StatusCode::OK, "{}", month.body);
    assert_eq!(pence(&month.body["cost"]["total_pence"]), expected);
    assert_eq!(month.body["cost"]["per_channel"]["sms"]["messages"], 350);
    let empty = app
        .get(
            &format!("/api/v1/practices/{ODS}/costs?month=2001-02"),
            &key,
        )
        .await;
    assert_eq!(
        pence(&empty.body["cost"]["total_pence"]),
        0.0,
        "{}",
        empty.body
    );
    let bad = app
        .get(
            &format!("/api/v1/practices/{ODS}/costs?month=2026-13"),
            &key,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    // The console's practice page shows the same month.
    let practice_id = app.practice_id(ODS).await;
    gateway::auth::create_user(
        app.state.store.as_ref(),
        "reception",
        console::PASSWORD,
        gateway::store::KeyScope::Practice(practice_id),
    )
    .await
    .expect("console user");
    let session = console::sign_in(&app, "reception", console::PASSWORD)
        .await
        .expect("signed in");
    let (status, page) = console::get(&app, &format!("/console/practices/{ODS}"), &session).await;
    assert_eq!(status, StatusCode::OK);
    let line = page
        .lines()
        .find(|l| l.contains("id=\"month-cost\""))
        .unwrap_or_else(|| panic!("no month cost on the page: {page}"));
    assert!(
        line.contains("350 by sms, 250 by email, 400 by push"),
        "{line}"
    );
    assert!(
        line.contains(&format!("£{:.2}", expected / 100.0)),
        "{line}"
    );

    // The practice overrides preferences: the 50 who prefer SMS now get email.
    let changed = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/practices/{ODS}"),
            Some(&key),
            Some(&json!({ "order_overrides_preference": true })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let preview = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({ "key": "status.closed", "channel": "sms", "practice": ODS }),
        )
        .await;
    assert_eq!(
        preview.body["audience"]["recipients"],
        json!({ "push": 400, "email": 300, "sms": 300 }),
        "{}",
        preview.body
    );
}

/// An appointment change goes fastest first (SMS before email) where a broadcast goes
/// cheapest first (email before SMS), and follows the practice's own urgent order.
pub async fn urgent_messages_go_fastest_first_unless_the_practice_says(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, key) = start(db, &dir).await;
    let added = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            &key,
            &json!({ "patients": [patient(1, false, None)] }),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let channel_of_change = |reference: &'static str| {
        let (app, key) = (&app, &key);
        async move { move_appointment(app, key, ODS, reference, 1).await["message"]["channel"].clone() }
    };
    assert_eq!(channel_of_change("A-1").await, "sms");
    let changed = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/practices/{ODS}"),
            Some(&key),
            Some(&json!({ "urgent_channel_order": ["email", "sms"] })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        changed.body["urgent_channel_order"],
        json!(["email", "sms"])
    );
    assert_eq!(channel_of_change("A-2").await, "email");
    // A wrong order is refused by name.
    let refused = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/practices/{ODS}"),
            Some(&key),
            Some(&json!({ "urgent_channel_order": ["fax"] })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.body["error"]["details"][0]["field"], "urgent_channel_order",
        "{}",
        refused.body
    );
}

/// The lines the `log` providers wrote.
fn app_lines(dir: &TempDir) -> Vec<Value> {
    std::fs::read_to_string(dir.path().join("sent.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}
