//! Long lists are planned after the answer: a group status change answers once every
//! practice's broadcast is recorded and has its first messages planned, and one practice's
//! status change answers within `[fanout] answer_within_ms` while its list goes on being
//! planned. Either way each patient is messaged exactly once and the fan-out finishes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Db, Options, TestApp};

/// Patients of the one long list: more than the head start, over several fan-out pages.
const LONG_LIST: u32 = 700;

pub async fn a_long_list_is_finished_after_the_answer_each_patient_once(db: Db) {
    let app = spawn_app(db).await;
    app.practice_with_sms_patients("H10001", 0, LONG_LIST).await;
    app.practice_with_sms_patients("H10002", LONG_LIST, 2).await;
    app.practice_with_sms_patients("H10003", LONG_LIST + 2, 3)
        .await;
    let reply = app
        .post(
            "/api/v1/status-groups",
            &app.admin_key,
            &json!({
                "status_change": { "kind": "closed", "headline": "Regional IT outage" },
                "practices": ["H10001", "H10002", "H10003"],
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let parts = reply.body["parts"].as_array().expect("parts").clone();
    assert_eq!(parts.len(), 3, "{}", reply.body);
    // At the answer, every practice has messages planned: the short lists in full, the
    // long one at least its head start.
    let queued = |ods: &str| {
        parts
            .iter()
            .find(|p| p["practice"] == ods)
            .and_then(|p| p["unsent"].as_i64())
            .unwrap_or_default()
    };
    let complete = |ods: &str| {
        parts
            .iter()
            .any(|p| p["practice"] == ods && p["fanout_complete"] == true)
    };
    assert!(complete("H10002") && complete("H10003"), "{}", reply.body);
    assert_eq!(queued("H10002"), 2, "{}", reply.body);
    assert_eq!(queued("H10003"), 3, "{}", reply.body);
    let head = gateway::intake::groups::HEAD_START_PATIENTS as i64;
    assert!(queued("H10001") >= head, "{}", reply.body);

    // The long list's fan-out finishes on its own after the answer.
    let long = parts
        .iter()
        .find(|p| p["practice"] == "H10001")
        .and_then(|p| p["broadcast_id"].as_i64())
        .expect("the long list's broadcast");
    until_planned(&app, long, LONG_LIST).await;

    texted_once_each(&app, LONG_LIST + 5).await;
}

pub async fn a_status_change_answers_before_its_long_list_is_planned(db: Db) {
    let app = spawn_app_with(
        db,
        Options {
            settings: vec![("fanout.answer_within_ms", json!(0))],
            ..Options::default()
        },
    )
    .await;
    let key = app.practice_with_sms_patients("H10001", 0, LONG_LIST).await;
    let reply = app
        .post(
            "/api/v1/practices/H10001/status",
            &key,
            &json!({ "kind": "systems_down", "headline": "Our systems are down" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_i64().expect("broadcast id");
    until_planned(&app, id, LONG_LIST).await;
    texted_once_each(&app, LONG_LIST).await;
}

/// Waits until broadcast `id`'s fan-out is finished, then checks it planned `messages`.
async fn until_planned(app: &TestApp, id: i64, messages: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let broadcast = app
            .get(&format!("/api/v1/broadcasts/{id}"), &app.admin_key)
            .await;
        assert_eq!(broadcast.status, StatusCode::OK, "{}", broadcast.body);
        if broadcast.body["fanout_complete"] == true {
            assert_eq!(broadcast.body["total"], messages, "{}", broadcast.body);
            return;
        }
        assert!(Instant::now() < deadline, "{}", broadcast.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends everything and checks that `patients` numbers got exactly one text each.
async fn texted_once_each(app: &TestApp, patients: u32) {
    app.drain().await;
    let sent = app.sent_lines();
    let mut addresses: Vec<&str> = sent.iter().filter_map(|l| l["to"].as_str()).collect();
    assert_eq!(addresses.len(), patients as usize);
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), patients as usize, "a patient texted twice");
}
