//! Practices share the providers from their first message: when many practices broadcast
//! at once, bulk messages are claimed turn by turn across broadcasts (each broadcast's
//! first message, then each one's second...), not first come, first served, so the last
//! practice to post is not left waiting behind every earlier practice's whole list.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, Db};

/// Practices that broadcast one after another.
const PRACTICES: u32 = 30;
/// Patients of each.
const PATIENTS: u32 = 20;

pub async fn every_practice_gets_its_first_text_in_the_first_round(db: Db) {
    let app = spawn_app(db).await;
    let mut keys = Vec::new();
    for p in 0..PRACTICES {
        let ods = format!("F{:05}", 10_000 + p);
        let key = app
            .practice_with_sms_patients(&ods, p * PATIENTS, PATIENTS)
            .await;
        keys.push((ods, key));
    }
    // Each practice posts in turn, and its whole list is planned before the next posts.
    for (ods, key) in &keys {
        let reply = app
            .post(
                &format!("/api/v1/practices/{ods}/status"),
                key,
                &json!({ "kind": "systems_down", "headline": "Our systems are down" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["fanout_complete"], true, "{}", reply.body);
    }
    app.drain().await;
    let sent = app.sent_lines();
    assert_eq!(sent.len(), (PRACTICES * PATIENTS) as usize);
    // Where each practice's first text came in the order they reached the provider (a
    // practice's patients are numbered from p * PATIENTS).
    let mut first_at: BTreeMap<u32, usize> = BTreeMap::new();
    for (position, line) in sent.iter().enumerate() {
        let to = line["to"].as_str().unwrap_or_default();
        let n: u32 = to[to.len() - 5..].parse().expect("a test number");
        first_at.entry(n / PATIENTS).or_insert(position);
    }
    assert_eq!(first_at.len(), PRACTICES as usize);
    // First come, first served would put the last practice's first text after the other
    // 29 practices' 580; turn by turn puts every first text in the first rounds (a round
    // being one message of each practice, with room for the workers' concurrency).
    let last = first_at.values().copied().max().unwrap_or_default();
    assert!(
        last < 2 * PRACTICES as usize,
        "a practice's first text was number {last}: {first_at:?}"
    );
}
