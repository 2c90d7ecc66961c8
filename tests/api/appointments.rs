//! Appointments: imported bookings, one-patient changes that message the right patient
//! urgently in the right words once, and status changes merged with the bookings they hit.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, Db, TestApp};

const ODS: &str = "A10001";

/// A practice with a phone number and its key.
async fn practice(app: &TestApp) -> String {
    app.practice_with_settings(
        json!({ "ods_code": ODS, "name": "Test Surgery", "phone": "020 7946 0123" }),
    )
    .await
}

/// Adds patients; each is `(i, name, language, contact channel, address)`.
async fn add_patients(app: &TestApp, key: &str, patients: &[(u32, &str, &str, &str, &str)]) {
    let patients: Vec<Value> = patients
        .iter()
        .map(|(i, name, language, channel, address)| {
            let contacts = match *channel {
                "" => json!([]),
                _ => json!([{ "channel": channel, "address": address }]),
            };
            json!({ "nhs_number": nhs(*i), "given_name": name, "language": language,
                    "preferred_channel": (!channel.is_empty()).then_some(*channel), "contacts": contacts })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/patients"),
            key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// Imports appointments `(reference, patient i, start, clinician, status)`; returns the reply.
async fn book(app: &TestApp, key: &str, rows: &[(&str, u32, &str, &str, &str)]) -> Value {
    let appointments: Vec<Value> = rows
        .iter()
        .map(|(reference, i, start, clinician, status)| {
            json!({ "external_ref": reference, "nhs_number": nhs(*i), "starts_at": start,
                    "clinician": clinician, "location": "Room 2", "status": status })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ODS}/appointments"),
            key,
            &json!({ "appointments": appointments }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// Posts a change to appointment `reference`, with an Idempotency-Key if given.
async fn change(
    app: &TestApp,
    key: &str,
    reference: &str,
    idempotency: Option<&str>,
    body: Value,
) -> (StatusCode, bool, Value) {
    let url = format!(
        "{}/api/v1/practices/{ODS}/appointments/{reference}/changes",
        app.address
    );
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idempotency {
        request = request.header("Idempotency-Key", k);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, replayed, response.json().await.expect("JSON body"))
}

/// The one message a change queued, as the API shows it.
async fn message_of(app: &TestApp, key: &str, reply: &Value) -> Value {
    let id = reply["message"]["id"].as_i64().expect("a message id");
    let shown = app.get(&format!("/api/v1/messages/{id}"), key).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    shown.body["message"].clone()
}

pub async fn appointment_changes_message_the_right_patient_urgently(db: Db) {
    let app = spawn_app(db).await;
    let key = practice(&app).await;
    add_patients(
        &app,
        &key,
        &[
            (1, "Ada", "en", "sms", "07700 900001"),
            (2, "Ben", "en", "email", "ben@example.com"),
            (3, "Cai", "cy", "sms", "07700 900003"),
            (4, "Dee", "en", "", ""),
            (5, "Eve", "en", "sms", "07700 900005"),
        ],
    )
    .await;
    let booked = book(
        &app,
        &key,
        &[
            ("A-1", 1, "2030-07-22 09:30", "Dr Patel", "booked"),
            ("A-2", 2, "22/07/2030 10:00", "Dr Patel", "booked"),
            ("A-3", 3, "2030-07-22T10:30:00+01:00", "Dr Patel", "booked"),
            ("A-4", 4, "2030-07-22 11:00", "Dr Patel", "booked"),
            ("A-5", 5, "2030-07-22 11:30", "Dr Patel", "booked"),
            ("A-6", 99, "2030-07-22 12:00", "Dr Patel", "booked"),
        ],
    )
    .await;
    assert_eq!(booked["created"], 5, "{booked}");
    let rejected = &booked["rejected"][0];
    assert_eq!(
        (rejected["index"].as_i64(), &rejected["external_ref"]),
        (Some(5), &json!("A-6"))
    );
    assert_eq!(rejected["errors"][0]["field"], "nhs_number");
    assert!(rejected["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("no patient"));

    // Cancelled: the patient's SMS, urgent, in the cancellation's words; the row is cancelled.
    let reason = json!({ "kind": "cancelled", "reason": "the doctor is unwell" });
    let (status, _, reply) = change(&app, &key, "A-1", None, reason).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["appointment"]["state"], "cancelled");
    let m = message_of(&app, &key, &reply).await;
    assert_eq!(
        (m["nhs_number"].as_str(), m["channel"].as_str()),
        (Some(nhs(1).as_str()), Some("sms"))
    );
    assert_eq!(
        (m["priority"].as_str(), m["template_key"].as_str()),
        (Some("urgent"), Some("appointment.cancelled"))
    );
    assert_eq!(m["address"], "+447700900001");
    assert_eq!(m["body"], "Hi Ada, your appointment at Test Surgery on Monday 22 July at 09:30 with Dr Patel has been cancelled. Please call 020 7946 0123 to rebook.");
    let (status, _, again) = change(
        &app,
        &key,
        "A-1",
        None,
        json!({ "kind": "moved", "starts_at": "2030-07-24 09:00" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "appointment_cancelled");

    // Moved: by email (the patient's choice), old and new times; the row has the new start.
    let moved = json!({ "kind": "moved", "starts_at": "2030-07-23 14:00", "location": "Room 5" });
    let (status, _, reply) = change(&app, &key, "A-2", None, moved).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["appointment"]["starts_at"], "2030-07-23T13:00:00Z");
    assert_eq!(
        reply["change"]["before"]["starts_at"],
        "2030-07-22T09:00:00Z"
    );
    let m = message_of(&app, &key, &reply).await;
    assert_eq!(
        (m["channel"].as_str(), m["priority"].as_str()),
        (Some("email"), Some("urgent"))
    );
    assert_eq!(
        m["subject"],
        "Test Surgery: your appointment has moved to Tuesday 23 July at 14:00"
    );
    let body = m["body"].as_str().unwrap();
    assert!(
        body.contains("Where: Room 5")
            && body.contains("replaces your appointment on Monday 22 July at 10:00 at Room 2"),
        "{body}"
    );

    // Now by phone, for a Welsh-speaking patient: Welsh words and a Welsh date.
    let (status, _, reply) = change(
        &app,
        &key,
        "A-3",
        None,
        json!({ "kind": "changed_to_phone" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["appointment"]["mode"], "phone");
    let m = message_of(&app, &key, &reply).await;
    assert_eq!(m["template_key"], "appointment.changed_to_phone");
    assert_eq!(m["body"], "Helo Cai, bydd Test Surgery yn eich ffonio ddydd Llun 22 Gorffennaf am 10:30 yn lle eich gweld yn y feddygfa. Does dim angen i chi ddod i mewn.");

    // Another clinician: old and new named.
    let (status, _, reply) = change(
        &app,
        &key,
        "A-5",
        None,
        json!({ "kind": "changed_clinician", "clinician": "Dr Jones" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["appointment"]["clinician"], "Dr Jones");
    let m = message_of(&app, &key, &reply).await;
    assert_eq!(m["body"], "Hi Eve, your Test Surgery appointment on Monday 22 July at 11:30 is now with Dr Jones instead of Dr Patel. The time is the same.");

    // A patient with no contact: the change is kept, nobody is messaged.
    let (status, _, reply) = change(
        &app,
        &key,
        "A-4",
        None,
        json!({ "kind": "changed_clinician", "clinician": "Dr Jones" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["message"], Value::Null);
    let shown = app
        .get(&format!("/api/v1/practices/{ODS}/appointments/A-4"), &key)
        .await;
    assert_eq!(shown.body["clinician"], "Dr Jones", "{}", shown.body);

    // Bad changes are named; unknown appointments are 404.
    let (status, _, bad) = change(
        &app,
        &key,
        "A-5",
        None,
        json!({ "kind": "moved", "location": "Room 9" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["error"]["details"][0]["field"], "starts_at");
    let (status, _, _) = change(&app, &key, "Z-9", None, json!({ "kind": "cancelled" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Each reachable patient got exactly their one message.
    assert_eq!(app.drain().await, 4);
    let sent: Vec<String> = app
        .sent_lines()
        .iter()
        .map(|l| l["to"].as_str().unwrap().to_string())
        .collect();
    let want = [
        "+447700900001",
        "ben@example.com",
        "+447700900003",
        "+447700900005",
    ];
    assert_eq!(
        sent.iter().collect::<HashSet<_>>(),
        want.iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );
    assert_eq!(sent.len(), 4, "{sent:?}");
}

pub async fn appointment_change_retry_sends_once(db: Db) {
    let app = spawn_app(db).await;
    let key = practice(&app).await;
    add_patients(&app, &key, &[(1, "Ada", "en", "sms", "07700 900001")]).await;
    book(
        &app,
        &key,
        &[("R-1", 1, "2030-07-22 09:30", "Dr Patel", "booked")],
    )
    .await;
    let moved = json!({ "kind": "moved", "starts_at": "2030-07-23 09:30" });
    let (status, replayed, first) = change(&app, &key, "R-1", Some("k-1"), moved.clone()).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    let (status, replayed, again) = change(&app, &key, "R-1", Some("k-1"), moved.clone()).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["change"]["id"], first["change"]["id"]);
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    let other = json!({ "kind": "moved", "starts_at": "2030-07-24 09:30" });
    let (status, _, reused) = change(&app, &key, "R-1", Some("k-1"), other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reused}");
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");
    // Another practice's key finds no such appointment, and changes nothing.
    let other = app.practice_with_key("B20002", "Other Surgery").await;
    let (status, _, _) = change(&app, &other, "R-1", None, json!({ "kind": "cancelled" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let hidden = app
        .get(&format!("/api/v1/practices/{ODS}/appointments/R-1"), &other)
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.sent_lines().len(), 1);
    let shown = app
        .get(&format!("/api/v1/practices/{ODS}/appointments/R-1"), &key)
        .await;
    assert_eq!(
        shown.body["starts_at"], "2030-07-23T08:30:00Z",
        "{}",
        shown.body
    );
}

pub async fn appointments_import_from_csv_with_per_row_errors(db: Db) {
    let app = spawn_app(db).await;
    let key = practice(&app).await;
    add_patients(
        &app,
        &key,
        &[
            (1, "Ada", "en", "sms", "07700 900001"),
            (2, "Ben", "en", "sms", "07700 900002"),
        ],
    )
    .await;
    let csv = format!(
        "Reference,NHS Number,Start,Clinician,Location,Mode\n\
         C-1,{},2030-07-22 09:30,\"Patel, Dr\",Room 2,\n\
         C-2,{},2030-03-31 01:30,Dr Jones,,phone\n\
         C-3,9999999999,2030-07-22 10:00,,,\n\
         C-4,{},2030-07-22T10:00:00Z,,,video\n",
        nhs(1),
        nhs(2),
        nhs(2)
    );
    let url = format!("{}/api/v1/practices/{ODS}/appointments/import", app.address);
    let post = |body: String| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let reply: Value = post(csv.clone())
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (reply["created"].as_i64(), reply["updated"].as_i64()),
        (Some(2), Some(0)),
        "{reply}"
    );
    let lines: Vec<(i64, String)> = reply["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [(3, "starts_at".to_string()), (4, "nhs_number".to_string())]
    );
    let shown = app
        .get(&format!("/api/v1/practices/{ODS}/appointments/C-1"), &key)
        .await;
    assert_eq!(shown.body["clinician"], "Patel, Dr");
    assert_eq!(shown.body["starts_at"], "2030-07-22T08:30:00Z");

    // The same file again updates; a file whose every row is bad stores nothing: 422.
    let reply: Value = post(csv)
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (reply["created"].as_i64(), reply["updated"].as_i64()),
        (Some(0), Some(2)),
        "{reply}"
    );
    let response = post("nhs_number,starts_at,external_ref\n123,x,\n".into())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = post("nhs_number,clinician\n".into())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The command line's import reads a file the same way.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("appointments.csv");
    std::fs::write(
        &file,
        format!(
            "external_ref,nhs_number,starts_at,status\nC-1,{},2030-07-22 09:45,cancelled\n",
            nhs(1)
        ),
    )
    .expect("file");
    let (rows, summary) =
        gateway::intake::appointments::import_file(app.state.store.as_ref(), ODS, &file, "test")
            .await
            .expect("import");
    assert_eq!((rows, summary.created, summary.updated), (1, 0, 1));
    let shown = app
        .get(&format!("/api/v1/practices/{ODS}/appointments/C-1"), &key)
        .await;
    assert_eq!(shown.body["state"], "cancelled", "{}", shown.body);
}

/// A practice whose patients 1-3 are booked in the closure's period (2 twice: 11:00 first),
/// 4 the day after, 5 in it but cancelled, and 6 not at all. Returns the key.
async fn booked_practice(app: &TestApp) -> String {
    let key = practice(app).await;
    add_patients(
        app,
        &key,
        &[
            (1, "Ada", "en", "sms", "07700 900001"),
            (2, "Ben", "en", "email", "ben@example.com"),
            (3, "Cai", "cy", "sms", "07700 900003"),
            (4, "Dee", "en", "sms", "07700 900004"),
            (5, "Eve", "en", "sms", "07700 900005"),
            (6, "Fay", "en", "sms", "07700 900006"),
        ],
    )
    .await;
    book(
        app,
        &key,
        &[
            ("M-1", 1, "2030-07-22 10:00", "Dr Patel", "booked"),
            ("M-2", 2, "2030-07-22 15:00", "Dr Patel", "booked"),
            ("M-3", 2, "2030-07-22 11:00", "Dr Jones", "booked"),
            ("M-4", 3, "2030-07-22 09:00", "Dr Patel", "booked"),
            ("M-5", 4, "2030-07-23 10:00", "Dr Patel", "booked"),
            ("M-6", 5, "2030-07-22 12:00", "Dr Patel", "cancelled"),
        ],
    )
    .await;
    key
}

/// Closes the practice for 22 July 08:00 to 18:00 with `audience`; returns every message of
/// the broadcast by patient number, after checking nobody has two.
async fn close_for(app: &TestApp, key: &str, audience: &str) -> Vec<(u32, Value)> {
    let body = json!({
        "kind": "closed", "audience": audience, "ends_at": "2030-07-23T07:00:00Z",
        "affected_from": "2030-07-22T07:00:00Z", "affected_until": "2030-07-22T17:00:00Z",
    });
    let reply = app
        .post(&format!("/api/v1/practices/{ODS}/status"), key, &body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["status_change"]["audience"], audience);
    let id = reply.body["id"].as_i64().unwrap();
    let page = app
        .get(&format!("/api/v1/broadcasts/{id}/messages?limit=1000"), key)
        .await;
    let messages = page.body["messages"].as_array().unwrap().clone();
    let mut seen = HashSet::new();
    let mut by_patient: Vec<(u32, Value)> = messages
        .into_iter()
        .map(|m| {
            let i = (1..=6)
                .find(|i| m["nhs_number"] == nhs(*i))
                .expect("a known patient");
            assert!(seen.insert(i), "patient {i} has two messages");
            (i, m)
        })
        .collect();
    by_patient.sort_by_key(|(i, _)| *i);
    assert_eq!(app.drain().await as usize, by_patient.len());
    by_patient
}

/// Whether `m` names the patient's own appointment (urgent) or is the general notice (bulk).
fn kind_of(m: &Value) -> &'static str {
    match (m["template_key"].as_str(), m["priority"].as_str()) {
        (Some("appointment.affected_by_closure"), Some("urgent")) => "own",
        (Some("status.closed"), Some("bulk")) => "general",
        other => panic!("unexpected message {other:?}: {m}"),
    }
}

pub async fn closure_for_booked_patients_names_their_appointment(db: Db) {
    let app = spawn_app(db).await;
    let key = booked_practice(&app).await;
    let missing = app
        .post(
            &format!("/api/v1/practices/{ODS}/status"),
            &key,
            &json!({ "kind": "closed", "audience": "booked" }),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.body
    );
    assert_eq!(
        missing.body["error"]["details"][0]["field"],
        "affected_until"
    );

    let sent = close_for(&app, &key, "booked").await;
    let who: Vec<(u32, &str)> = sent.iter().map(|(i, m)| (*i, kind_of(m))).collect();
    assert_eq!(who, [(1, "own"), (2, "own"), (3, "own")]);
    assert_eq!(sent[0].1["body"], "Hi Ada, sorry, your appointment at Test Surgery on Monday 22 July at 10:00 can't go ahead. We'll contact you to rebook. For urgent help call 111.");
    // Two bookings in the period: one message, naming the first.
    assert_eq!(
        sent[1].1["subject"],
        "Test Surgery: your appointment on Monday 22 July at 11:00 can't go ahead"
    );
    let email = sent[1].1["body"].as_str().unwrap();
    assert!(
        email.contains("with Dr Jones")
            && email.contains("We expect to reopen on Tuesday 23 July at 08:00."),
        "{email}"
    );
    let welsh = sent[2].1["body"].as_str().unwrap();
    assert!(
        welsh.starts_with("Helo Cai,") && welsh.contains("dydd Llun 22 Gorffennaf am 09:00"),
        "{welsh}"
    );
    assert_eq!(app.sent_lines().len(), 3);
}

pub async fn closure_for_all_ignores_appointments(db: Db) {
    let app = spawn_app(db).await;
    let key = booked_practice(&app).await;
    let sent = close_for(&app, &key, "all").await;
    let who: Vec<(u32, &str)> = sent.iter().map(|(i, m)| (*i, kind_of(m))).collect();
    assert_eq!(who, (1..=6).map(|i| (i, "general")).collect::<Vec<_>>());
    assert_eq!(app.sent_lines().len(), 6);
}

pub async fn closure_for_both_tells_each_patient_once(db: Db) {
    let app = spawn_app(db).await;
    let key = booked_practice(&app).await;
    let sent = close_for(&app, &key, "both").await;
    let who: Vec<(u32, &str)> = sent.iter().map(|(i, m)| (*i, kind_of(m))).collect();
    assert_eq!(
        who,
        [
            (1, "own"),
            (2, "own"),
            (3, "own"),
            (4, "general"),
            (5, "general"),
            (6, "general")
        ]
    );
    assert_eq!(sent[3].1["body"], "Test Surgery: The surgery is closed. We expect to reopen on Tuesday 23 July at 08:00. For urgent help call 111, or 999 in an emergency.");
    let lines = app.sent_lines();
    let addresses: HashSet<&str> = lines.iter().map(|l| l["to"].as_str().unwrap()).collect();
    assert_eq!((lines.len(), addresses.len()), (6, 6), "each patient once");
}
