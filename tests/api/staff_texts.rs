//! Status from staff phones: a registered number texts a command through the signed Twilio
//! inbound webhook, gets a preview and a code at the loopback SMS provider, and only `YES
//! <code>` from that number posts; the two-person rule holds a large broadcast for a second
//! approver.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};
use crate::sms_peer::SmsPeer;

/// Ann may post; Bea may also approve. Patients' numbers are 07700 900000 upwards.
pub const ANN: &str = "+447700900801";
pub const BEA: &str = "+447700900802";
/// Registered nowhere.
const STRANGER: &str = "+447700900899";

/// An app whose SMS go to a loopback SMS provider, with a practice of `patients` SMS
/// patients and Ann and Bea registered; returns the app, the peer and the practice's key.
pub async fn practice_with_staff(
    db: Db,
    ods: &str,
    patients: u32,
    settings: Vec<(&'static str, Value)>,
) -> (TestApp, SmsPeer, String) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("sms-peer", None, None)]),
        settings,
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key(ods, "Riverside Surgery").await;
    let list: Vec<Value> = (0..patients)
        .map(|i| json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{i:03}") }] }))
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": list }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for (name, phone, role) in [("Ann Jones", ANN, "post"), ("Bea Evans", BEA, "approve")] {
        let reply = app
            .post(
                &format!("/api/v1/practices/{ods}/staff"),
                &key,
                &json!({ "name": name, "phone": phone, "role": role }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    (app, peer, key)
}

/// Texts `body` from `from` through the signed inbound webhook.
pub async fn text(app: &TestApp, from: &str, body: &str) {
    app.inbound_sms(from, body).await;
}

/// Texts the gateway sent to `to`, oldest first.
pub fn texts_to(peer: &SmsPeer, to: &str) -> Vec<String> {
    peer.arrivals()
        .into_iter()
        .filter(|a| a.to == to)
        .map(|a| a.body)
        .collect()
}

/// Waits (up to 15 s) for text number `n` (from 0) to `to`, and returns it.
pub async fn nth_text_to(peer: &SmsPeer, to: &str, n: usize) -> String {
    for _ in 0..300 {
        if let Some(text) = texts_to(peer, to).get(n) {
            return text.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no text {n} to {to}; texts so far: {:?}",
        texts_to(peer, to)
    );
}

/// The code in a preview text (`Reply YES 123456 ...`).
pub fn code_in(text: &str) -> String {
    let after = text
        .split("YES ")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {text:?}"));
    after.chars().take_while(char::is_ascii_digit).collect()
}

/// Texts the patients (numbers 07700 900000 upwards) received.
fn patient_texts(peer: &SmsPeer) -> Vec<String> {
    peer.arrivals()
        .into_iter()
        .filter(|a| a.to.starts_with("+447700900") && a.to.as_str() < "+447700900800")
        .map(|a| a.body)
        .collect()
}

/// The practice's proposals as the API lists them.
async fn proposals(app: &TestApp, ods: &str, key: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/api/v1/practices/{ods}/proposals"), key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["proposals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The audit trail's actions for the practice, oldest first.
async fn audit_actions(app: &TestApp, ods: &str) -> Vec<(String, String)> {
    let practice = app.practice_id(ods).await;
    let mut entries = app
        .state
        .store
        .audit_trail(practice, 500)
        .await
        .expect("audit");
    entries.reverse();
    entries.into_iter().map(|e| (e.actor, e.action)).collect()
}

pub async fn a_texted_status_change_posts_only_with_its_code(db: Db) {
    let (app, peer, key) = practice_with_staff(db, "T13001", 3, Vec::new()).await;

    text(&app, ANN, "CLOSED until 2pm").await;
    let preview = nth_text_to(&peer, ANN, 0).await;
    assert!(
        preview.starts_with("CLOSED for Riverside Surgery until"),
        "{preview}"
    );
    assert!(
        preview.contains("Patients will get: \"Riverside Surgery:"),
        "{preview}"
    );
    assert!(preview.contains("To 3: 3 by SMS ("), "{preview}");
    assert!(preview.contains("0 by email, 0 by push"), "{preview}");
    let code = code_in(&preview);
    assert_eq!(code.len(), 6, "{preview}");
    let listed = proposals(&app, "T13001", &key).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "proposed");
    assert_eq!(listed[0]["proposed_by"], "staff:Ann Jones");
    assert_eq!(listed[0]["status_change"]["kind"], "closed");
    assert!(
        listed[0]["status_change"]["ends_at"].is_string(),
        "{}",
        listed[0]
    );

    // A wrong code posts nothing.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    text(&app, ANN, &format!("YES {wrong}")).await;
    let answer = nth_text_to(&peer, ANN, 1).await;
    assert!(answer.contains("not right"), "{answer}");
    // The right code from another registered number posts nothing either.
    text(&app, BEA, &format!("yes {code}")).await;
    let answer = nth_text_to(&peer, BEA, 0).await;
    assert!(answer.contains("not right"), "{answer}");
    // An unregistered number gets no answer, and the audit trail has nothing of it.
    text(&app, STRANGER, "CLOSED").await;
    text(&app, STRANGER, &format!("YES {code}")).await;
    // STATUS answers the current status and what waits.
    text(&app, ANN, "status").await;
    let status = nth_text_to(&peer, ANN, 2).await;
    assert!(status.contains("no status has been posted"), "{status}");
    assert!(status.contains("1 change waits for approval"), "{status}");
    app.drain().await;
    assert!(patient_texts(&peer).is_empty(), "{:?}", peer.arrivals());
    assert!(texts_to(&peer, STRANGER).is_empty());
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("gateway_inbound_texts_total{sender=\"other\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        proposals(&app, "T13001", &key).await[0]["state"],
        "proposed"
    );

    // The right code from the right number posts, and patients get it.
    text(&app, ANN, &format!("Yes {code}")).await;
    let sent = nth_text_to(&peer, ANN, 3).await;
    assert!(sent.starts_with("Sent."), "{sent}");
    app.drain().await;
    let received = patient_texts(&peer);
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received.iter().all(|t| t.contains("closed")),
        "{received:?}"
    );
    let listed = proposals(&app, "T13001", &key).await;
    assert_eq!(listed[0]["state"], "approved");
    assert_eq!(listed[0]["decided_by"], "staff:Ann Jones");
    assert!(listed[0]["broadcast_id"].is_i64(), "{}", listed[0]);
    // The code works once.
    text(&app, ANN, &format!("YES {code}")).await;
    let again = nth_text_to(&peer, ANN, 4).await;
    assert!(again.contains("not right"), "{again}");

    // CANCEL before confirming discards the change; its code no longer works.
    text(&app, ANN, "PHONES DOWN!!").await;
    let preview = nth_text_to(&peer, ANN, 5).await;
    assert!(
        preview.starts_with("PHONES DOWN for Riverside Surgery."),
        "{preview}"
    );
    let code = code_in(&preview);
    text(&app, ANN, "cancel").await;
    let cancelled = nth_text_to(&peer, ANN, 6).await;
    assert!(cancelled.starts_with("Cancelled."), "{cancelled}");
    text(&app, ANN, &format!("YES {code}")).await;
    let refused = nth_text_to(&peer, ANN, 7).await;
    assert!(refused.contains("not right"), "{refused}");
    app.drain().await;
    assert_eq!(
        patient_texts(&peer).len(),
        3,
        "nothing more reached patients"
    );
    let listed = proposals(&app, "T13001", &key).await;
    assert_eq!(listed[0]["state"], "dismissed");
    assert_eq!(listed[0]["status_change"]["kind"], "phones_down");

    // Everything is in the audit trail under the staff member's name, the stranger nowhere.
    let audit = audit_actions(&app, "T13001").await;
    let of = |actor: &str, action: &str| {
        audit
            .iter()
            .filter(|(a, b)| a == actor && b == action)
            .count()
    };
    assert_eq!(of("staff:Ann Jones", "staff.command"), 4, "{audit:?}");
    assert_eq!(
        of("staff:Ann Jones", "staff.confirm_refused"),
        3,
        "{audit:?}"
    );
    assert_eq!(
        of("staff:Bea Evans", "staff.confirm_refused"),
        1,
        "{audit:?}"
    );
    assert_eq!(of("staff:Ann Jones", "staff.confirmed"), 1, "{audit:?}");
    assert_eq!(of("staff:Ann Jones", "proposal.approved"), 1, "{audit:?}");
    assert_eq!(of("staff:Ann Jones", "proposal.dismissed"), 1, "{audit:?}");
    assert_eq!(of("gateway", "proposal.code_sent"), 2, "{audit:?}");
    assert!(of("staff:Ann Jones", "staff.answered") >= 4, "{audit:?}");
    assert!(
        audit.iter().all(|(actor, _)| !actor.contains("900899")),
        "{audit:?}"
    );
}

/// A command in Welsh words (`AR GAU`) gives its headline in Welsh: Welsh-speaking patients
/// get it, English-speaking ones the standard English headline rather than Welsh.
pub async fn a_welsh_command_gives_its_headline_in_welsh(db: Db) {
    let (app, peer, key) = practice_with_staff(db, "T13005", 1, Vec::new()).await;
    let reply = app
        .post(
            "/api/v1/practices/T13005/patients",
            &key,
            &json!({ "patients": [{
                "nhs_number": nhs(5),
                "language": "cy",
                "contacts": [{ "channel": "sms", "address": "07700 900005" }],
            }] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    text(&app, ANN, "AR GAU Llifogydd yn yr ystafell aros").await;
    let preview = nth_text_to(&peer, ANN, 0).await;
    let code = code_in(&preview);
    let listed = proposals(&app, "T13005", &key).await;
    assert_eq!(
        listed[0]["status_change"]["headline_cy"], "Llifogydd yn yr ystafell aros",
        "{}",
        listed[0]
    );
    text(&app, ANN, &format!("YES {code}")).await;
    nth_text_to(&peer, ANN, 1).await;
    app.drain().await;
    let welsh = nth_text_to(&peer, "+447700900005", 0).await;
    assert_eq!(
        welsh,
        "Riverside Surgery: Llifogydd yn yr ystafell aros. Am help brys, ffoniwch 111, neu 999 mewn argyfwng."
    );
    let english = nth_text_to(&peer, "+447700900000", 0).await;
    assert_eq!(
        english,
        "Riverside Surgery: The surgery is closed. For urgent help call 111, or 999 in an emergency."
    );
}

pub async fn an_expired_code_posts_nothing(db: Db) {
    let settings = vec![("approval.code_seconds", json!(1))];
    let (app, peer, key) = practice_with_staff(db, "T13002", 2, settings).await;
    text(&app, ANN, "systems down back tomorrow 8am").await;
    let preview = nth_text_to(&peer, ANN, 0).await;
    assert!(preview.contains("within 1 min"), "{preview}");
    let code = code_in(&preview);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    text(&app, ANN, &format!("YES {code}")).await;
    let refused = nth_text_to(&peer, ANN, 1).await;
    assert!(refused.contains("expired"), "{refused}");
    app.drain().await;
    assert!(patient_texts(&peer).is_empty());
    assert_eq!(
        proposals(&app, "T13002", &key).await[0]["state"],
        "proposed"
    );
}

pub async fn a_pin_and_the_rate_limit_guard_commands(db: Db) {
    let settings = vec![("approval.commands_per_number_per_hour", json!(8))];
    let (app, peer, key) = practice_with_staff(db, "T13003", 1, settings).await;
    let saved = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/practices/T13003/approval",
            Some(&key),
            Some(&json!({ "staff_pin": "4821" })),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["staff_pin_required"], true);
    assert!(!saved.body.to_string().contains("4821"), "{}", saved.body);

    text(&app, ANN, "CLOSED").await;
    let answer = nth_text_to(&peer, ANN, 0).await;
    assert!(answer.contains("PIN"), "{answer}");
    text(&app, ANN, "PIN 1111 CLOSED").await;
    let answer = nth_text_to(&peer, ANN, 1).await;
    assert!(answer.contains("PIN is not right"), "{answer}");
    assert!(proposals(&app, "T13003", &key).await.is_empty());
    // A burst of a quarter of the hourly rate: the rest is refused without an answer.
    text(&app, BEA, "STATUS").await;
    nth_text_to(&peer, BEA, 0).await;
    for _ in 0..3 {
        text(&app, ANN, "4821 STATUS").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(texts_to(&peer, ANN).len(), 2, "{:?}", texts_to(&peer, ANN));
    let audit = audit_actions(&app, "T13003").await;
    assert!(
        audit
            .iter()
            .filter(|(a, b)| a == "staff:Ann Jones" && b == "staff.command_refused")
            .count()
            >= 3,
        "{audit:?}"
    );
}

pub async fn a_large_broadcast_needs_a_second_person(db: Db) {
    let (app, peer, key) = practice_with_staff(db, "T13004", 3, Vec::new()).await;
    let saved = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/practices/T13004/approval",
            Some(&key),
            Some(&json!({ "second_approval_above": 2 })),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);

    // Ann texts and confirms: that is one approval; Bea, an approver, is texted a code.
    text(&app, ANN, "CLOSED Flooding in the waiting room").await;
    let code = code_in(&nth_text_to(&peer, ANN, 0).await);
    text(&app, ANN, &format!("YES {code}")).await;
    let waiting = nth_text_to(&peer, ANN, 1).await;
    assert!(waiting.contains("second approval"), "{waiting}");
    let asked = nth_text_to(&peer, BEA, 0).await;
    assert!(
        asked.starts_with("Ann Jones approved a closed notice for 3 patients"),
        "{asked}"
    );
    assert!(asked.contains("Flooding in the waiting room."), "{asked}");
    app.drain().await;
    assert!(patient_texts(&peer).is_empty());
    let listed = proposals(&app, "T13004", &key).await;
    assert_eq!(listed[0]["state"], "proposed");
    assert_eq!(listed[0]["first_approved_by"], "staff:Ann Jones");
    let id = listed[0]["id"].as_i64().expect("id");

    // Bea's code gives the second approval and posts.
    text(&app, BEA, &format!("YES {}", code_in(&asked))).await;
    let sent = nth_text_to(&peer, BEA, 1).await;
    assert!(sent.starts_with("Sent."), "{sent}");
    app.drain().await;
    assert_eq!(patient_texts(&peer).len(), 3);
    let listed = proposals(&app, "T13004", &key).await;
    assert_eq!(listed[0]["state"], "approved");
    assert_eq!(listed[0]["decided_by"], "staff:Bea Evans");
    assert_eq!(listed[0]["id"], id);

    // Through the API: the same key cannot give both approvals; an admin can give the second.
    text(&app, ANN, "RESTORED").await;
    nth_text_to(&peer, ANN, 2).await;
    let id = proposals(&app, "T13004", &key).await[0]["id"]
        .as_i64()
        .expect("id");
    let approve = format!("/api/v1/practices/T13004/proposals/{id}/approve");
    let first = app.post(&approve, &key, &json!({})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let twice = app.post(&approve, &key, &json!({})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.body);
    assert_eq!(twice.body["error"]["code"], "second_approver_needed");
    let second = app.post(&approve, &app.admin_key, &json!({})).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(second.body["broadcast_id"].is_i64(), "{}", second.body);
    let again = app.post(&approve, &app.admin_key, &json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // Another practice's key sees none of it.
    let other = app.practice_with_key("T13005", "Elsewhere").await;
    let hidden = app.post(&approve, &other, &json!({})).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
    let dismissed = app
        .post(
            &format!("/api/v1/practices/T13004/proposals/{id}/dismiss"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(dismissed.status, StatusCode::CONFLICT, "{}", dismissed.body);
}
