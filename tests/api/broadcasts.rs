//! Status changes become exactly the right messages, once each, and all get sent.

use std::collections::{BTreeMap, HashMap, HashSet};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, Db};

const SYSTEMS_DOWN_SMS: &str = "Test Surgery: Our computer systems are down. We may not be able to book or change appointments for now. For urgent help call 111.";

/// What one patient should receive: (channel, address), or nothing.
type Expected = Option<(&'static str, String)>;

/// 1,000 patients with mixed channels, preferences and opt-outs, and what each should get:
/// `Some((channel, address))`, or `None` for nobody reachable.
fn patient_list(count: u32) -> (Vec<Value>, Vec<Expected>) {
    let mut patients = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let mobile = format!("+447700900{:03}", i % 1000);
        let email = format!("p{i}@example.com");
        let sms = |opted_out: bool| json!({ "channel": "sms", "address": format!("07700 900{:03}", i % 1000), "opted_out": opted_out });
        let mail = json!({ "channel": "email", "address": email });
        let (contacts, preferred, expect) = match i % 10 {
            0..=3 if i % 20 == 0 => (vec![sms(true)], None, None),
            0..=3 => (vec![sms(false)], None, Some(("sms", mobile.clone()))),
            4 | 5 => (vec![mail], None, Some(("email", email.clone()))),
            6 => (
                vec![sms(false), mail],
                Some("email"),
                Some(("email", email.clone())),
            ),
            7 => (vec![sms(true), mail], None, Some(("email", email.clone()))),
            // Preferring a channel they cannot be reached on: the practice's order
            // (cheapest first by default) picks email over SMS.
            8 => (
                vec![mail, sms(false)],
                Some("push"),
                Some(("email", email.clone())),
            ),
            _ => (vec![], None, None),
        };
        patients.push(json!({
            "nhs_number": nhs(i),
            "given_name": format!("Pat{i}"),
            "preferred_channel": preferred,
            "contacts": contacts,
        }));
        expected.push(expect);
    }
    (patients, expected)
}

pub async fn status_change_reaches_each_eligible_patient_once(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10001", "Test Surgery").await;
    let (patients, expected) = patient_list(1000);
    let reply = app
        .post(
            "/api/v1/practices/T10001/patients",
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 1000);

    let reply = app
        .post(
            "/api/v1/practices/T10001/status",
            &key,
            &json!({ "kind": "systems_down" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let broadcast = &reply.body;
    let mut want: BTreeMap<&str, i64> = BTreeMap::new();
    for (channel, _) in expected.iter().flatten() {
        *want.entry(channel).or_default() += 1;
    }
    assert_eq!(broadcast["planned"]["sms"], want["sms"]);
    assert_eq!(broadcast["planned"]["email"], want["email"]);
    assert_eq!(broadcast["planned"]["push"], 0);
    assert_eq!(
        broadcast["skipped_no_contact"],
        expected.iter().filter(|e| e.is_none()).count() as i64
    );
    assert_eq!(broadcast["fanout_complete"], true);
    assert_eq!(broadcast["by_state"]["queued"], broadcast["total"]);

    let sent = app.drain().await;
    assert_eq!(sent as i64, broadcast["total"].as_i64().unwrap());
    let id = broadcast["id"].as_i64().unwrap();
    let progress = app
        .get(&format!("/api/v1/broadcasts/{id}"), &key)
        .await
        .body;
    assert_eq!(
        progress["by_state"]["sent"], progress["total"],
        "{progress}"
    );
    assert_eq!(progress["by_state"]["queued"], 0);

    // The log provider saw each expected (channel, address) exactly once, with the right words.
    let lines = app.sent_lines();
    assert_eq!(lines.len() as i64, progress["total"].as_i64().unwrap());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for line in &lines {
        let key = (
            line["channel"].as_str().unwrap().to_string(),
            line["to"].as_str().unwrap().to_string(),
        );
        *seen.entry(key).or_default() += 1;
        match line["channel"].as_str().unwrap() {
            "sms" => assert_eq!(line["body"], SYSTEMS_DOWN_SMS),
            "email" => {
                assert_eq!(
                    line["subject"],
                    "Test Surgery: Our computer systems are down."
                );
                assert!(line["body"].as_str().unwrap().starts_with("Dear patient,"));
            }
            other => panic!("unexpected channel {other}"),
        }
    }
    let wanted: HashSet<(String, String)> = expected
        .iter()
        .flatten()
        .map(|(c, a)| (c.to_string(), a.clone()))
        .collect();
    assert_eq!(seen.len(), wanted.len());
    for w in &wanted {
        assert_eq!(seen.get(w), Some(&1), "{w:?}");
    }
    // Opted-out mobiles (i % 20 == 0 and i % 10 == 7) never appear.
    for i in (0..1000).filter(|i| i % 20 == 0 || i % 10 == 7) {
        let mobile = format!("+447700900{:03}", i % 1000);
        assert!(
            !seen.contains_key(&("sms".to_string(), mobile.clone())),
            "opted-out {mobile} was messaged"
        );
    }
}

pub async fn idempotency_key_replays_and_refuses_a_different_body(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10002", "Test Surgery").await;
    let (patients, _) = patient_list(50);
    app.post(
        "/api/v1/practices/T10002/patients",
        &key,
        &json!({ "patients": patients }),
    )
    .await;
    let post = |body: Value, idem: Option<&'static str>| {
        let app = &app;
        let key = key.clone();
        async move {
            let mut request = reqwest::Client::new()
                .post(format!("{}/api/v1/practices/T10002/status", app.address))
                .bearer_auth(key)
                .json(&body);
            if let Some(k) = idem {
                request = request.header("Idempotency-Key", k);
            }
            let response = request.send().await.unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            (
                response.status(),
                replayed,
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let closed = json!({ "kind": "closed", "headline": "Closed for a power cut." });
    let (status, replayed, first) = post(closed.clone(), Some("outage-1")).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    let (status, replayed, again) = post(closed.clone(), Some("outage-1")).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["total"], first["total"]);
    assert_eq!(
        app.state.store.pending_count().await.unwrap(),
        first["total"].as_i64().unwrap()
    );

    let (status, _, error) = post(json!({ "kind": "restored" }), Some("outage-1")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "idempotency_key_reused");

    // Without a key, a repeat is a new broadcast.
    let (_, _, second) = post(closed, None).await;
    assert_ne!(second["id"], first["id"]);
}

pub async fn messages_page_through_in_order(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10003", "Test Surgery").await;
    let (patients, expected) = patient_list(120);
    app.post(
        "/api/v1/practices/T10003/patients",
        &key,
        &json!({ "patients": patients }),
    )
    .await;
    let broadcast = app
        .post(
            "/api/v1/practices/T10003/status",
            &key,
            &json!({ "kind": "restored" }),
        )
        .await
        .body;
    let id = broadcast["id"].as_i64().unwrap();
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let page = app
            .get(
                &format!("/api/v1/broadcasts/{id}/messages?limit=25&after={after}"),
                &key,
            )
            .await
            .body;
        let messages = page["messages"].as_array().unwrap();
        ids.extend(messages.iter().map(|m| m["id"].as_i64().unwrap()));
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(ids.len(), expected.iter().flatten().count());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let queued = app
        .get(
            &format!("/api/v1/broadcasts/{id}/messages?state=sent"),
            &key,
        )
        .await
        .body;
    assert_eq!(queued["messages"].as_array().unwrap().len(), 0);
    app.drain().await;
    let one = app
        .get(&format!("/api/v1/messages/{}", ids[0]), &key)
        .await
        .body;
    assert_eq!(one["message"]["state"], "sent");
    assert_eq!(one["attempts"][0]["outcome"], "accepted");
    assert_eq!(one["message"]["template_key"], "status.restored");
}

pub async fn patient_batches_report_each_bad_item(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10004", "Test Surgery").await;
    let batch = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700900001" }] },
        { "nhs_number": "9434765918", "contacts": [] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "sms", "address": "020 7946 0000" }] },
        { "nhs_number": nhs(3), "contacts": [{ "channel": "email", "address": "not-an-address" }] },
        { "nhs_number": nhs(1) },
    ]});
    let reply = app
        .post("/api/v1/practices/T10004/patients", &key, &batch)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["created"], 1);
    let rejected = reply.body["rejected"].as_array().unwrap();
    let summary: Vec<(i64, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "nhs_number"),
            (2, "contacts[0].address"),
            (3, "contacts[0].address"),
            (4, "nhs_number")
        ]
    );
    assert!(rejected[1]["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a mobile"));

    // An opt-out, once recorded, is not cleared by a later upsert.
    let opt_out = json!({ "patients": [{ "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700900001", "opted_out": true }] }] });
    assert_eq!(
        app.post("/api/v1/practices/T10004/patients", &key, &opt_out)
            .await
            .body["updated"],
        1
    );
    let again = json!({ "patients": [{ "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700900001" }] }] });
    app.post("/api/v1/practices/T10004/patients", &key, &again)
        .await;
    let patient = app
        .get(
            &format!("/api/v1/practices/T10004/patients/{}", nhs(1)),
            &key,
        )
        .await
        .body;
    assert!(
        patient["contacts"][0]["opted_out_at"].is_string(),
        "{patient}"
    );

    // A batch where every item is bad stores nothing and answers 422.
    let all_bad = json!({ "patients": [{ "nhs_number": "123" }] });
    let reply = app
        .post("/api/v1/practices/T10004/patients", &key, &all_bad)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.body["error"]["details"][0]["field"],
        "patients[0].nhs_number"
    );
}

/// An upsert replaces a changed number on the channels it names and keeps the others; in
/// one store batch a repeated patient wins over its earlier copy (as one at a time would),
/// and a contact listed twice is kept once, opted out if either copy says so.
pub async fn upsert_replaces_changed_contacts_and_lets_repeats_win(db: Db) {
    use gateway::domain::{Channel, NhsNumber};
    use gateway::store::{ContactUpsert, PatientUpsert};
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10007", "Test Surgery").await;
    let first = json!({ "patients": [
        { "nhs_number": nhs(1), "given_name": "Ann", "contacts": [
            { "channel": "sms", "address": "07700900001" },
            { "channel": "email", "address": "ann@example.com" } ] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "sms", "address": "07700900002" }] } ] });
    let reply = app
        .post("/api/v1/practices/T10007/patients", &key, &first)
        .await;
    assert_eq!(
        (
            reply.body["created"].as_i64(),
            reply.body["updated"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let changed = json!({ "patients": [
        { "nhs_number": nhs(1), "given_name": "Anne", "contacts": [{ "channel": "sms", "address": "07700900011" }] },
        { "nhs_number": nhs(3), "contacts": [] } ] });
    let reply = app
        .post("/api/v1/practices/T10007/patients", &key, &changed)
        .await;
    assert_eq!(
        (
            reply.body["created"].as_i64(),
            reply.body["updated"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let contacts = |patient: &Value| -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = patient["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["channel"].as_str().unwrap().into(),
                    c["address"].as_str().unwrap().into(),
                )
            })
            .collect();
        all.sort();
        all
    };
    let ann = app
        .get(
            &format!("/api/v1/practices/T10007/patients/{}", nhs(1)),
            &key,
        )
        .await
        .body;
    assert_eq!(ann["given_name"], "Anne");
    assert_eq!(
        contacts(&ann),
        [
            ("email".into(), "ann@example.com".into()),
            ("sms".into(), "+447700900011".into())
        ],
        "the old number replaced, the email kept: {ann}"
    );
    let two = app
        .get(
            &format!("/api/v1/practices/T10007/patients/{}", nhs(2)),
            &key,
        )
        .await
        .body;
    assert_eq!(contacts(&two), [("sms".into(), "+447700900002".into())]);

    // Straight to the store, as the demo and other callers may: repeats in one batch.
    let practice = app.practice_id("T10007").await;
    let sms = |address: &str, opted_out| ContactUpsert {
        channel: Channel::Sms,
        address: address.into(),
        opted_out,
    };
    let patient = |given: &str, contacts| PatientUpsert {
        nhs_number: NhsNumber::parse(&nhs(2)).unwrap(),
        given_name: Some(given.into()),
        family_name: None,
        preferred_channel: None,
        language: "en".into(),
        active: true,
        contacts,
    };
    let batch = [
        patient("Early", vec![sms("+447700900021", false)]),
        patient(
            "Late",
            vec![sms("+447700900022", false), sms("+447700900022", true)],
        ),
    ];
    let summary = app
        .state
        .store
        .upsert_patients(practice, &batch, chrono::Utc::now())
        .await
        .expect("upsert");
    assert_eq!((summary.created, summary.updated), (0, 2));
    let two = app
        .get(
            &format!("/api/v1/practices/T10007/patients/{}", nhs(2)),
            &key,
        )
        .await
        .body;
    assert_eq!(two["given_name"], "Late");
    assert_eq!(
        contacts(&two),
        [("sms".into(), "+447700900022".into())],
        "{two}"
    );
    assert!(two["contacts"][0]["opted_out_at"].is_string(), "{two}");
}

pub async fn interrupted_fanout_resumes_without_duplicates(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10005", "Test Surgery").await;
    let (patients, expected) = patient_list(600);
    app.post(
        "/api/v1/practices/T10005/patients",
        &key,
        &json!({ "patients": patients }),
    )
    .await;
    let reachable = expected.iter().flatten().count() as u64;
    // A process that stopped right after recording the status change left a broadcast
    // whose fan-out never ran: start-up resumes it.
    let id = app.record_status_change_only("T10005", "closed").await;
    assert_eq!(
        app.state.store.unfinished_broadcasts().await.unwrap(),
        vec![id]
    );
    assert_eq!(app.state.fanout.resume_unfinished().await.unwrap(), 1);
    assert_eq!(app.state.fanout.resume_unfinished().await.unwrap(), 0);
    // Running the same fan-out again (a crash after some batches) plans the same messages
    // and writes none twice.
    let again = app.state.fanout.run_broadcast(id).await.unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(again.planned.values().sum::<u64>(), reachable);
    let progress = app
        .get(&format!("/api/v1/broadcasts/{id}"), &key)
        .await
        .body;
    assert_eq!(progress["total"].as_u64().unwrap(), reachable);
    assert_eq!(progress["fanout_complete"], true);
}

pub async fn newer_status_change_withdraws_unsent_messages(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T10006", "Test Surgery").await;
    let (patients, expected) = patient_list(200);
    app.post(
        "/api/v1/practices/T10006/patients",
        &key,
        &json!({ "patients": patients }),
    )
    .await;
    let reachable = expected.iter().flatten().count() as i64;
    let closed = app
        .post(
            "/api/v1/practices/T10006/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    let restored = app
        .post(
            "/api/v1/practices/T10006/status",
            &key,
            &json!({ "kind": "restored" }),
        )
        .await
        .body;
    // Marked superseded in the request; its queued messages are cancelled just after, in
    // the background.
    let closed_path = format!("/api/v1/broadcasts/{}", closed["id"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let closed_now = loop {
        let now = app.get(&closed_path, &key).await.body;
        assert!(now["superseded_by_status_change"].is_i64(), "{now}");
        if now["by_state"]["cancelled"] == reachable || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        closed_now["by_state"]["cancelled"], reachable,
        "{closed_now}"
    );
    assert_eq!(
        closed_now["superseded_by_status_change"],
        restored["status_change"]["id"]
    );
    let page = app
        .get(
            &format!("/api/v1/broadcasts/{}/messages?limit=1", closed["id"]),
            &key,
        )
        .await
        .body;
    let reason = page["messages"][0]["last_error"].as_str().unwrap();
    assert!(
        reason.starts_with("superseded by status change") && reason.ends_with("(restored)"),
        "{reason}"
    );

    // Only the newer wording goes out.
    app.drain().await;
    let lines = app.sent_lines();
    assert_eq!(lines.len() as i64, reachable);
    assert!(lines.iter().all(|l| l["body"]
        .as_str()
        .unwrap()
        .contains("back to normal service")
        || l["subject"]
            .as_str()
            .is_some_and(|s| s.contains("back to normal service"))));

    // A fan-out still running when it is superseded withdraws what it wrote and stops.
    let older = app.record_status_change_only("T10006", "phones_down").await;
    app.post(
        "/api/v1/practices/T10006/status",
        &key,
        &json!({ "kind": "custom", "headline": "All clear." }),
    )
    .await;
    app.state.fanout.run_broadcast(older).await.unwrap();
    let older_now = app
        .get(&format!("/api/v1/broadcasts/{older}"), &key)
        .await
        .body;
    assert_eq!(older_now["by_state"]["queued"], 0, "{older_now}");
    assert!(older_now["superseded_by_status_change"].is_i64());
}

pub async fn quiet_hours_hold_bulk_sms_and_push_but_not_email(db: Db) {
    // 22:30 in London on a winter evening: inside 21:00 to 08:00.
    let evening = chrono::DateTime::parse_from_rfc3339("2026-01-14T22:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let options = crate::helpers::Options {
        quiet_hours_end: "08:00",
        fanout_clock: Some(std::sync::Arc::new(move || evening)),
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(db, options).await;
    let key = app.practice_with_key("T10007", "Test Surgery").await;
    let (patients, _) = patient_list(40);
    app.post(
        "/api/v1/practices/T10007/patients",
        &key,
        &json!({ "patients": patients }),
    )
    .await;
    let broadcast = app
        .post(
            "/api/v1/practices/T10007/status",
            &key,
            &json!({ "kind": "closed" }),
        )
        .await
        .body;
    let page = app
        .get(
            &format!("/api/v1/broadcasts/{}/messages?limit=100", broadcast["id"]),
            &key,
        )
        .await
        .body;
    let messages = page["messages"].as_array().unwrap();
    assert!(
        messages.iter().any(|m| m["channel"] == "sms")
            && messages.iter().any(|m| m["channel"] == "email")
    );
    for m in messages {
        let due = m["next_attempt_at"].as_str().unwrap();
        match m["channel"].as_str().unwrap() {
            "sms" => assert!(
                due.starts_with("2026-01-15T08:00:00"),
                "sms held until 08:00 GMT: {due}"
            ),
            _ => assert!(
                due.starts_with("2026-01-14T22:30:00"),
                "email goes at once: {due}"
            ),
        }
    }
}
