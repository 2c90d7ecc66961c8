//! Each practice sends as itself: two practices with their own SMS sender IDs, whose
//! patients get texts from their own practice's sender, set when the practice is added and
//! changed later by the practice itself.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, Options, TestApp};
use crate::sms_peer::SmsPeer;

/// How many synthetic patients each practice gets (about two in three have a mobile).
const PATIENTS: u64 = 30;

/// Adds an SMS-only practice with `sender` and synthetic patients; returns its key.
async fn practice(app: &TestApp, ods: &str, name: &str, sender: &str) -> String {
    let key = app
        .practice_with_settings(json!({
            "ods_code": ods,
            "name": name,
            "channel_order": ["sms"],
            "sms_sender": sender,
            "email_display_name": format!("{name} (no reply)"),
        }))
        .await;
    let id = app.practice_id(ods).await;
    crate::seed::synthetic_patients(&app.state.config.database.url, id, PATIENTS)
        .await
        .expect("seed");
    key
}

/// Posts a status change for the practice; the SMS it planned.
async fn closed(app: &TestApp, ods: &str, key: &str) -> u64 {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["planned"]["sms"].as_u64().unwrap_or(0)
}

/// The senders each practice's texts arrived from, so far.
fn senders_of(peer: &SmsPeer, ods: &str) -> BTreeSet<Option<String>> {
    peer.accepted()
        .into_iter()
        .filter(|a| a.practice == ods)
        .map(|a| a.from)
        .collect()
}

async fn patch(app: &TestApp, ods: &str, key: &str, body: Value) -> crate::helpers::Reply {
    app.request(
        Method::PATCH,
        &format!("/api/v1/practices/{ods}"),
        Some(key),
        Some(&body),
    )
    .await
}

pub async fn each_practice_texts_from_its_own_sender(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("gateway-sms", None, None)]),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let riverside = practice(&app, "R30001", "Riverside Surgery", "RIVERSIDE").await;
    let beta = practice(&app, "R30002", "Beta Surgery", "Beta Surg").await;

    let shown = app.get("/api/v1/practices/R30002", &beta).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["sms_sender"], "Beta Surg");
    assert_eq!(shown.body["email_display_name"], "Beta Surgery (no reply)");

    let planned_riverside = closed(&app, "R30001", &riverside).await;
    let planned_beta = closed(&app, "R30002", &beta).await;
    assert!(planned_riverside > 0 && planned_beta > 0);
    app.drain().await;
    assert_eq!(
        peer.accepted().len() as u64,
        planned_riverside + planned_beta
    );
    assert_eq!(
        senders_of(&peer, "R30001"),
        BTreeSet::from([Some("RIVERSIDE".to_string())])
    );
    assert_eq!(
        senders_of(&peer, "R30002"),
        BTreeSet::from([Some("Beta Surg".to_string())])
    );

    // A generic word is refused with the reason; another practice's key cannot touch it.
    let generic = patch(&app, "R30002", &beta, json!({ "sms_sender": "INFO" })).await;
    assert_eq!(generic.status, 422, "{}", generic.body);
    assert!(
        generic.body.to_string().contains("generic"),
        "{}",
        generic.body
    );
    let other = patch(
        &app,
        "R30002",
        &riverside,
        json!({ "sms_sender": "RIVERSIDE" }),
    )
    .await;
    assert_eq!(other.status, 404, "{}", other.body);

    // The practice changes its own sender; its next texts go from the new one at once.
    let changed = patch(
        &app,
        "R30002",
        &beta,
        json!({ "sms_sender": "BETA", "email": "reception@beta.example.nhs.uk" }),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["sms_sender"], "BETA");
    assert_eq!(changed.body["email"], "reception@beta.example.nhs.uk");
    // Fields left out stay as they were.
    assert_eq!(
        changed.body["email_display_name"],
        "Beta Surgery (no reply)"
    );
    let before = peer.accepted().len();
    let planned_again = closed(&app, "R30002", &beta).await;
    app.drain().await;
    let newest: BTreeSet<Option<String>> = peer.accepted()[before..]
        .iter()
        .map(|a| a.from.clone())
        .collect();
    assert_eq!(peer.accepted().len() - before, planned_again as usize);
    assert_eq!(newest, BTreeSet::from([Some("BETA".to_string())]));

    // Cleared (by the admin): back to the provider's own sender.
    let cleared = patch(
        &app,
        "R30002",
        &app.admin_key,
        json!({ "sms_sender": null }),
    )
    .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(cleared.body["sms_sender"], Value::Null);
}
