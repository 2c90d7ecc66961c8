//! Message wording as administrators and practices edit it: versions, diff, rollback,
//! practice overrides, validation with line and column, SMS cost previews, the audience
//! of a practice's broadcast, and Welsh and bilingual wording reaching patients.

use chrono::Utc;
use gateway::domain::{Channel, Language};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, Db, TestApp};

/// The shipped English SMS for `status.closed`.
const CLOSED_SMS_V1: &str = "{{ practice.name }}: {{ status.headline | sentence }}{% if status.until %} We expect to reopen {{ status.until }}.{% endif %} For urgent help call 111, or 999 in an emergency.";
const CLOSED_SMS_V2: &str = "{{ practice.name }}: {{ status.headline }} Ring 111 if it is urgent.";
const CLOSED_SMS_V3: &str = "{{ practice.name }}: {{ status.headline }} Please ring 111 if urgent.";
const OVERRIDE_SMS: &str = "{{ practice.name }} is shut today. Call 111 if urgent.";

/// `status.closed` as sent for a closure posted without a headline or end time.
fn closed_en(practice: &str) -> String {
    format!("{practice}: The surgery is closed. For urgent help call 111, or 999 in an emergency.")
}

/// The same in Welsh: the standard headline is the standard Welsh one.
fn closed_cy(practice: &str) -> String {
    format!("{practice}: Mae'r feddygfa ar gau. Am help brys, ffoniwch 111, neu 999 mewn argyfwng.")
}

/// The `author` recorded for edits made with `key`.
fn author(key: &str) -> String {
    format!("key:{}", &key[..11])
}

async fn put(app: &TestApp, path: &str, key: &str, body: &Value) -> crate::helpers::Reply {
    app.request(Method::PUT, path, Some(key), Some(body)).await
}

async fn add_patients(app: &TestApp, ods: &str, key: &str, patients: Value) {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["rejected"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        reply.body
    );
}

fn sms_patient(i: u32) -> Value {
    json!({
        "nhs_number": nhs(i),
        "contacts": [{ "channel": "sms", "address": format!("07700 900{i:03}") }],
    })
}

/// Posts a closure for the practice and sends everything; returns the broadcast id.
async fn close_and_send(app: &TestApp, ods: &str, key: &str) -> i64 {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["fanout_complete"], true, "{}", reply.body);
    app.drain().await;
    reply.body["id"].as_i64().expect("broadcast id")
}

/// Every message of a broadcast.
async fn messages(app: &TestApp, id: i64, key: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/api/v1/broadcasts/{id}/messages?limit=1000"), key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["messages"].as_array().expect("messages").clone()
}

/// The version numbers and authors of a template's history, newest first.
async fn history(app: &TestApp, path: &str, key: &str) -> Vec<(i64, String)> {
    let reply = app.get(path, key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().expect("version"),
                v["author"].as_str().expect("author").to_string(),
            )
        })
        .collect()
}

pub async fn template_versions_history_diff_and_rollback(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin_key.clone();
    let shipped = "shipped with the gateway".to_string();
    let base = "/api/v1/templates/status.closed/sms";

    // The shipped wording is version 1.
    let reply = app.get(base, &admin).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let v1 = &reply.body["template"];
    assert_eq!(v1["version"], 1, "{v1}");
    assert_eq!(v1["author"], "shipped with the gateway");
    assert_eq!(v1["body"], CLOSED_SMS_V1);
    assert_eq!(v1["practice_id"], Value::Null);
    assert_eq!(v1["language"], "en");
    assert!(reply.body["variables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "status.headline"));

    // Two edits: versions 2 and 3, each checked against the sample values.
    let reply = put(
        &app,
        base,
        &admin,
        &json!({ "body": CLOSED_SMS_V2, "note": "shorter" }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let saved = &reply.body;
    assert_eq!(saved["template"]["version"], 2, "{saved}");
    assert_eq!(saved["template"]["body"], CLOSED_SMS_V2);
    assert_eq!(saved["template"]["note"], "shorter");
    assert_eq!(saved["template"]["author"], author(&admin));
    assert_eq!(saved["warnings"], json!([]));
    let sample = "Riverside Surgery: The surgery is closed today. Ring 111 if it is urgent.";
    assert_eq!(
        saved["sms"],
        json!({
            "encoding": "gsm7",
            "characters": sample.chars().count(),
            "units": sample.chars().count(),
            "segments": 1,
            "ucs2_characters": [],
        })
    );
    let reply = put(&app, base, &admin, &json!({ "body": CLOSED_SMS_V3 })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["template"]["version"], 3, "{}", reply.body);
    assert_eq!(reply.body["template"]["note"], Value::Null);
    assert_eq!(app.get(base, &admin).await.body["template"]["version"], 3);

    // History, newest first, with who wrote each.
    assert_eq!(
        history(&app, &format!("{base}/versions"), &admin).await,
        vec![
            (3, author(&admin)),
            (2, author(&admin)),
            (1, shipped.clone())
        ]
    );

    // The diff from 1 to 3 takes the old line out and puts the new one in.
    let reply = app.get(&format!("{base}/diff?from=1&to=3"), &admin).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        (reply.body["from"].as_i64(), reply.body["to"].as_i64()),
        (Some(1), Some(3))
    );
    let parts = reply.body["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{}", reply.body);
    assert_eq!(parts[0]["part"], "body");
    let diff = parts[0]["diff"].as_str().unwrap();
    let lines: Vec<&str> = diff.lines().collect();
    assert!(lines.contains(&"--- version 1"), "{diff}");
    assert!(lines.contains(&"+++ version 3"), "{diff}");
    assert!(
        lines.contains(&format!("-{CLOSED_SMS_V1}").as_str()),
        "{diff}"
    );
    assert!(
        lines.contains(&format!("+{CLOSED_SMS_V3}").as_str()),
        "{diff}"
    );
    assert!(!diff.contains(CLOSED_SMS_V2), "{diff}");
    let reply = app.get(&format!("{base}/diff?from=1"), &admin).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "missing_versions");
    let reply = app.get(&format!("{base}/diff?from=1&to=9"), &admin).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    // Rolling back to 1 saves its wording again, as version 4.
    let reply = app
        .post(
            &format!("{base}/rollback"),
            &admin,
            &json!({ "version": 1 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let v4 = &reply.body["template"];
    assert_eq!(v4["version"], 4, "{v4}");
    assert_eq!(v4["body"], CLOSED_SMS_V1);
    assert_eq!(v4["note"], "rolled back to version 1");
    assert_eq!(v4["author"], author(&admin));
    let reply = app.get(base, &admin).await;
    assert_eq!(reply.body["template"]["version"], 4, "{}", reply.body);
    assert_eq!(reply.body["template"]["body"], CLOSED_SMS_V1);
    let reply = app.get(&format!("{base}/diff?from=1&to=4"), &admin).await;
    assert_eq!(reply.body["parts"], json!([]), "{}", reply.body);
    let reply = app
        .post(
            &format!("{base}/rollback"),
            &admin,
            &json!({ "version": 9 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(
        history(&app, &format!("{base}/versions"), &admin)
            .await
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );

    // A broadcast now uses version 4, the rolled-back wording.
    let riverside = app.practice_with_key("T20001", "Riverside Test").await;
    add_patients(&app, "T20001", &riverside, json!([sms_patient(1)])).await;
    let id = close_and_send(&app, "T20001", &riverside).await;
    let sent = messages(&app, id, &riverside).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_key"], "status.closed");
    assert_eq!(sent[0]["template_version"], 4, "{}", sent[0]);
    assert_eq!(sent[0]["body"], closed_en("Riverside Test"));
    assert_eq!(sent[0]["state"], "sent", "{}", sent[0]);

    // The practice writes its own wording: version 1 of its override.
    let hillside = app.practice_with_key("T20002", "Hillside Test").await;
    add_patients(&app, "T20002", &hillside, json!([sms_patient(2)])).await;
    let reply = put(
        &app,
        base,
        &riverside,
        &json!({ "practice": "T20001", "body": OVERRIDE_SMS, "note": "our own" }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let own = &reply.body["template"];
    assert_eq!(own["version"], 1, "{own}");
    assert!(own["practice_id"].is_i64(), "{own}");
    assert_eq!(own["body"], OVERRIDE_SMS);
    assert_eq!(own["author"], author(&riverside));
    assert_eq!(
        history(
            &app,
            &format!("{base}/versions?practice=T20001"),
            &riverside
        )
        .await,
        vec![(1, author(&riverside))]
    );
    // The global history is untouched.
    assert_eq!(
        history(&app, &format!("{base}/versions"), &admin).await[0].0,
        4
    );
    // What each practice uses: its own override, or the global wording.
    let reply = app
        .get(&format!("{base}?practice=T20001"), &riverside)
        .await;
    assert_eq!(
        reply.body["template"]["body"], OVERRIDE_SMS,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["template"]["version"], 1);
    let reply = app.get(&format!("{base}?practice=T20002"), &hillside).await;
    assert_eq!(
        reply.body["template"]["body"], CLOSED_SMS_V1,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["template"]["version"], 4);
    // Another practice neither reads nor lists it.
    let reply = app.get(&format!("{base}?practice=T20001"), &hillside).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let listed = app.get("/api/v1/templates", &hillside).await.body;
    assert!(
        listed["templates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["practice_id"].is_null()),
        "{listed}"
    );
    let listed = app.get("/api/v1/templates", &riverside).await.body;
    let overrides: Vec<&Value> = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["practice_id"].is_null())
        .collect();
    assert_eq!(overrides.len(), 1, "{listed}");
    assert_eq!(
        (
            &overrides[0]["key"],
            &overrides[0]["channel"],
            &overrides[0]["version"]
        ),
        (&json!("status.closed"), &json!("sms"), &json!(1))
    );

    // The next broadcasts: Riverside's own wording, Hillside the global one.
    let id = close_and_send(&app, "T20001", &riverside).await;
    let sent = messages(&app, id, &riverside).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_version"], 1, "{}", sent[0]);
    assert_eq!(
        sent[0]["body"],
        "Riverside Test is shut today. Call 111 if urgent."
    );
    let id = close_and_send(&app, "T20002", &hillside).await;
    let sent = messages(&app, id, &hillside).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_version"], 4, "{}", sent[0]);
    assert_eq!(sent[0]["body"], closed_en("Hillside Test"));

    // A practice key may not change the global wording, nor another practice's.
    let reply = put(&app, base, &riverside, &json!({ "body": OVERRIDE_SMS })).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "forbidden");
    let reply = put(
        &app,
        base,
        &riverside,
        &json!({ "practice": "T20002", "body": OVERRIDE_SMS }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "not_found");
    let reply = app
        .post(
            &format!("{base}/rollback"),
            &riverside,
            &json!({ "version": 2 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    // Neither refusal saved anything.
    assert_eq!(
        history(&app, &format!("{base}/versions"), &admin).await[0].0,
        4
    );
    assert_eq!(
        history(&app, &format!("{base}/versions?practice=T20002"), &hillside).await,
        vec![]
    );
}

/// One refused save: its single (first) problem as (part, line, column, kind), and reason.
async fn refused(
    app: &TestApp,
    channel: &str,
    draft: Value,
) -> ((String, i64, i64, String), String) {
    let reply = put(
        app,
        &format!("/api/v1/templates/status.closed/{channel}"),
        &app.admin_key,
        &draft,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{draft}: {}",
        reply.body
    );
    let error = &reply.body["error"];
    assert_eq!(error["code"], "invalid_template", "{}", reply.body);
    let problem = &error["details"][0];
    (
        (
            problem["part"].as_str().expect("part").to_string(),
            problem["line"].as_i64().expect("line"),
            problem["column"].as_i64().expect("column"),
            problem["kind"].as_str().expect("kind").to_string(),
        ),
        problem["reason"].as_str().expect("reason").to_string(),
    )
}

fn at(part: &str, line: i64, column: i64, kind: &str) -> (String, i64, i64, String) {
    (part.to_string(), line, column, kind.to_string())
}

pub async fn template_validation_names_line_and_column(db: Db) {
    let app = spawn_app(db).await;
    let sms = |body: &str| json!({ "body": body });

    // Tera cannot parse it: the unclosed `{{` on line 2.
    let (got, reason) = refused(&app, "sms", sms("Hello\n{{ practice.name }\nbye")).await;
    assert_eq!(got, at("body", 2, 18, "syntax"), "{reason}");
    assert!(reason.contains("expected }}"), "{reason}");

    // A variable the key does not offer, inside a condition.
    let (got, reason) = refused(
        &app,
        "sms",
        sms("Hi\n  {% if status.reopens %}x{% endif %}"),
    )
    .await;
    assert_eq!(got, at("body", 2, 9, "unknown_variable"), "{reason}");
    assert!(reason.contains("status.reopens"), "{reason}");
    assert!(
        reason.contains("status.until"),
        "names what it offers: {reason}"
    );
    let (got, reason) = refused(&app, "sms", sms("Hi {{ appointment.when }}")).await;
    assert_eq!(got, at("body", 1, 7, "unknown_variable"), "{reason}");

    // An undotted name the sample values lack fails when rendered.
    let (got, reason) = refused(&app, "sms", sms("{{ secret }}")).await;
    assert_eq!(got, at("body", 1, 4, "render"), "{reason}");
    assert!(reason.contains("secret"), "{reason}");

    // Other templates may not be reached.
    let (got, reason) = refused(&app, "sms", sms("{% include \"x\" %}")).await;
    assert_eq!(got, at("body", 1, 3, "not_allowed"), "{reason}");
    assert!(reason.contains("include"), "{reason}");

    // More than three segments.
    let (got, reason) = refused(&app, "sms", sms(&"x".repeat(460))).await;
    assert_eq!(got, at("body", 1, 1, "sms_too_long"), "{reason}");
    assert!(reason.contains("4 SMS segments"), "{reason}");

    // An email needs a subject; an SMS has none.
    let (got, reason) = refused(&app, "email", json!({ "body": "Closed." })).await;
    assert_eq!(got, at("subject", 1, 1, "shape"), "{reason}");
    let (got, reason) = refused(
        &app,
        "sms",
        json!({ "subject": "Closed", "body": "Closed." }),
    )
    .await;
    assert_eq!(got, at("subject", 1, 1, "shape"), "{reason}");
    let (got, reason) = refused(&app, "sms", sms("  \n ")).await;
    assert_eq!(got, at("body", 1, 1, "shape"), "{reason}");

    // Nothing was saved.
    for channel in ["sms", "email"] {
        assert_eq!(
            history(
                &app,
                &format!("/api/v1/templates/status.closed/{channel}/versions"),
                &app.admin_key
            )
            .await,
            vec![(1, "shipped with the gateway".to_string())],
            "{channel}"
        );
    }
}

/// (text, encoding, characters, units, segments)
fn sms_cases() -> Vec<(String, &'static str, usize, usize, usize)> {
    let a = |n: usize| "a".repeat(n);
    let mut cases: Vec<(String, &'static str, usize, usize, usize)> = vec![
        ("Hello".into(), "gsm7", 5, 5, 1),
        (
            "The surgery is closed today. Call 111.".into(),
            "gsm7",
            38,
            38,
            1,
        ),
        ("100% sure #1".into(), "gsm7", 12, 12, 1),
        (a(160), "gsm7", 160, 160, 1),
        (a(161), "gsm7", 161, 161, 2),
        (a(306), "gsm7", 306, 306, 2),
        (a(307), "gsm7", 307, 307, 3),
        (a(459), "gsm7", 459, 459, 3),
        (format!("ŵ{}", a(69)), "ucs2", 70, 70, 1),
        (format!("ŵ{}", a(70)), "ucs2", 71, 71, 2),
        (format!("ŵ{}", a(133)), "ucs2", 134, 134, 2),
        (format!("ŵ{}", a(134)), "ucs2", 135, 135, 3),
        (format!("ŵ{}", a(200)), "ucs2", 201, 201, 3),
        ("ŵ".repeat(70), "ucs2", 70, 70, 1),
        ("Ring [today] {urgent}".into(), "gsm7", 21, 25, 1),
        ("€5 ^ ~ \\ |".into(), "gsm7", 10, 15, 1),
        (format!("{}€", a(158)), "gsm7", 159, 160, 1),
        (format!("{}€", a(159)), "gsm7", 160, 161, 2),
        (format!("{}€{}", a(152), a(152)), "gsm7", 305, 306, 3),
        (format!("{}€{}", a(153), a(151)), "gsm7", 305, 306, 2),
        ("£5.00 café".into(), "gsm7", 10, 10, 1),
        ("ß Δ é £".into(), "gsm7", 7, 7, 1),
        ("Ø ¿ É Ñ ¡ §".into(), "gsm7", 11, 11, 1),
        ("dŵr".into(), "ucs2", 3, 3, 1),
        ("tŷ".into(), "ucs2", 2, 2, 1),
        ("Siâp".into(), "ucs2", 4, 4, 1),
        ("‘quoted’ “text”".into(), "ucs2", 15, 15, 1),
        ("9–5 today".into(), "ucs2", 9, 9, 1),
        ("Wait…".into(), "ucs2", 5, 5, 1),
        ("😀".into(), "ucs2", 1, 2, 1),
        ("😀".repeat(35), "ucs2", 35, 70, 1),
        ("😀".repeat(36), "ucs2", 36, 72, 2),
        ("Thanks 😀 see you".into(), "ucs2", 16, 17, 1),
        (format!("{}😀", a(69)), "ucs2", 70, 71, 2),
        (
            format!("{}😀{}", "ŵ".repeat(66), "ŵ".repeat(66)),
            "ucs2",
            133,
            134,
            3,
        ),
        (format!("ŵ€{}", a(68)), "ucs2", 70, 70, 1),
        ("Line one\nLine two".into(), "gsm7", 17, 17, 1),
    ];
    // Each extension character alone: one character, two units.
    for c in ['€', '[', ']', '{', '}', '~', '^', '\\', '|'] {
        cases.push((c.to_string(), "gsm7", 1, 2, 1));
    }
    cases
}

pub async fn sms_segments_preview_table(db: Db) {
    let app = spawn_app(db).await;
    let cases = sms_cases();
    assert!(cases.len() >= 40);
    for (text, encoding, characters, units, segments) in cases {
        let reply = app
            .post(
                "/api/v1/templates/preview",
                &app.admin_key,
                &json!({ "key": "status.custom", "channel": "sms", "draft": { "body": text } }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{text:?}: {}", reply.body);
        let preview = &reply.body;
        assert_eq!(preview["body"], text.as_str(), "{text:?}");
        let sms = &preview["sms"];
        assert_eq!(
            (
                sms["encoding"].as_str(),
                sms["characters"].as_u64(),
                sms["units"].as_u64(),
                sms["segments"].as_u64()
            ),
            (
                Some(encoding),
                Some(characters as u64),
                Some(units as u64),
                Some(segments as u64)
            ),
            "{text:?}: {sms}"
        );
        // One warning for each character forcing UCS-2, and none for GSM-7.
        let forcing = sms["ucs2_characters"].as_array().unwrap();
        let warnings = preview["warnings"].as_array().unwrap();
        assert_eq!(forcing.is_empty(), encoding == "gsm7", "{text:?}: {sms}");
        assert_eq!(warnings.len(), forcing.len(), "{text:?}: {preview}");
        assert!(preview.get("audience").is_none(), "{preview}");
    }

    // Replacements are named, in order of first appearance, and suggested.
    let preview = |text: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/templates/preview",
                &app.admin_key,
                &json!({ "key": "status.custom", "channel": "sms", "draft": { "body": text } }),
            )
            .await
            .body
        }
    };
    let quoted = preview("‘quoted’ “text”").await;
    assert_eq!(
        quoted["sms"]["ucs2_characters"],
        json!([
            { "character": "‘", "replacement": "'" },
            { "character": "’", "replacement": "'" },
            { "character": "“", "replacement": "\"" },
            { "character": "”", "replacement": "\"" },
        ])
    );
    let suggestions: Vec<&str> = quoted["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["suggestion"].as_str().unwrap())
        .collect();
    assert_eq!(
        suggestions,
        [
            "use \"'\" instead",
            "use \"'\" instead",
            "use \"\\\"\" instead",
            "use \"\\\"\" instead"
        ]
    );
    assert_eq!(quoted["warnings"][0]["part"], "body");
    let dash = preview("9–5 today").await;
    assert_eq!(
        dash["sms"]["ucs2_characters"],
        json!([{ "character": "–", "replacement": "-" }])
    );
    assert_eq!(dash["warnings"][0]["suggestion"], "use \"-\" instead");
    assert!(dash["warnings"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("forces UCS-2"));
    // Welsh letters and emoji have no replacement.
    let welsh = preview("dŵr 😀").await;
    assert_eq!(
        welsh["sms"]["ucs2_characters"],
        json!([
            { "character": "ŵ", "replacement": null },
            { "character": "😀", "replacement": null },
        ])
    );
    assert_eq!(welsh["warnings"][0]["suggestion"], Value::Null);
    assert_eq!(welsh["warnings"][1]["suggestion"], Value::Null);
}

pub async fn preview_shows_audience_for_a_practice_broadcast(db: Db) {
    let app = spawn_app(db).await;
    let key = app
        .practice_with_key("T40001", "Hillside Medical Centre")
        .await;
    let email = |i: u32| {
        json!({
            "nhs_number": nhs(i),
            "contacts": [{ "channel": "email", "address": format!("p{i}@example.com") }],
        })
    };
    let opted_out = json!({
        "nhs_number": nhs(7),
        "contacts": [{ "channel": "sms", "address": "07700 900007", "opted_out": true }],
    });
    add_patients(
        &app,
        "T40001",
        &key,
        json!([
            sms_patient(1),
            sms_patient(2),
            sms_patient(3),
            email(4),
            email(5),
            { "nhs_number": nhs(6) },
            opted_out,
        ]),
    )
    .await;

    let reply = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({ "key": "status.closed", "channel": "sms", "practice": "T40001" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let preview = &reply.body;
    let audience = &preview["audience"];
    assert_eq!(audience["recipients"]["sms"], 3, "{preview}");
    assert_eq!(audience["recipients"]["email"], 2, "{preview}");
    assert_eq!(audience["recipients"].get("push"), None, "{preview}");
    assert_eq!(audience["no_contact"], 2, "{preview}");
    assert_eq!(preview["sms"]["segments"], 1, "{preview}");
    assert_eq!(audience["sms_segments_total"], 3, "{preview}");
    let previewed = preview["body"].as_str().unwrap().to_string();

    // A two-segment draft doubles the total.
    let long = format!("{{{{ practice.name }}}}: {}", "x".repeat(150));
    let reply = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({
                "key": "status.closed", "channel": "sms", "practice": "T40001",
                "draft": { "body": long },
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["sms"]["segments"], 2, "{}", reply.body);
    assert_eq!(reply.body["audience"]["sms_segments_total"], 6);

    // Non-status keys have no broadcast audience; other practices cannot preview this one.
    let reply = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({ "key": "appointment.cancelled", "channel": "sms", "practice": "T40001" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.get("audience").is_none(), "{}", reply.body);
    let other = app.practice_with_key("T40002", "Other Surgery").await;
    let reply = app
        .post(
            "/api/v1/templates/preview",
            &other,
            &json!({ "key": "status.closed", "channel": "sms", "practice": "T40001" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    // Checked last, so that everything above is checked whatever happens here: a practice's
    // preview is worded with its own name, not the sample practice's.
    assert!(
        previewed.contains("Hillside Medical Centre") && !previewed.contains("Riverside Surgery"),
        "the preview should name the practice it is for: {previewed}"
    );
}

pub async fn welsh_and_bilingual_wording(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T50001", "Ty Test").await;
    add_patients(
        &app,
        "T50001",
        &key,
        json!([
            sms_patient(1),
            {
                "nhs_number": nhs(2),
                "language": "cy",
                "contacts": [{ "channel": "sms", "address": "07700 900002" }],
            },
        ]),
    )
    .await;

    // The Welsh template is its own version 1.
    let reply = app
        .get("/api/v1/templates/status.closed/sms?language=cy", &key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["template"]["language"], "cy");
    assert_eq!(reply.body["template"]["version"], 1);
    assert!(reply.body["template"]["body"]
        .as_str()
        .unwrap()
        .contains("Am help brys"));

    let id = close_and_send(&app, "T50001", &key).await;
    let sent = messages(&app, id, &key).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let body_of = |i: u32| {
        let m = sent
            .iter()
            .find(|m| m["nhs_number"] == nhs(i))
            .unwrap_or_else(|| panic!("no message for patient {i}: {sent:?}"));
        assert_eq!(m["template_version"], 1, "{m}");
        m["body"].as_str().unwrap().to_string()
    };
    assert_eq!(body_of(1), closed_en("Ty Test"));
    assert_eq!(body_of(2), closed_cy("Ty Test"));

    // The same as a preview of the Welsh template with the broadcast's values.
    let data = json!({
        "practice": { "name": "Ty Test", "phone": null, "website": null, "ods_code": "T50001" },
        "status": { "kind": "closed", "headline": "Mae'r feddygfa ar gau.", "details": null, "starts": null, "until": null },
    });
    let reply = app
        .post(
            "/api/v1/templates/preview",
            &key,
            &json!({ "key": "status.closed", "channel": "sms", "language": "cy", "data": data }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["body"], body_of(2).as_str());

    // A bilingual practice sends one message: Welsh first, then English.
    let both = app
        .practice_with_settings(
            json!({ "ods_code": "T50002", "name": "Both Test", "bilingual": true }),
        )
        .await;
    add_patients(&app, "T50002", &both, json!([sms_patient(3)])).await;
    let id = close_and_send(&app, "T50002", &both).await;
    let sent = messages(&app, id, &both).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = sent[0]["body"].as_str().unwrap();
    assert_eq!(
        body,
        format!("{}\n\n{}", closed_cy("Both Test"), closed_en("Both Test"))
    );
    assert!(body.starts_with("Both Test: Mae'r feddygfa ar gau. Am help brys"));
    assert_eq!(sent[0]["template_version"], 1);
    // And the log provider sent exactly that.
    let line = app
        .sent_lines()
        .into_iter()
        .find(|l| l["to"] == "+447700900003")
        .expect("bilingual message sent");
    assert_eq!(line["body"], body);
}

/// A status change's Welsh headline reaches Welsh patients and a bilingual practice's Welsh
/// part, beside the English one, through the API: the Welsh wording is not half English.
pub async fn welsh_headline_reaches_welsh_patients(db: Db) {
    let app = spawn_app(db).await;
    let both = app
        .practice_with_settings(
            json!({ "ods_code": "T50003", "name": "Meddygfa Test", "bilingual": true }),
        )
        .await;
    add_patients(
        &app,
        "T50003",
        &both,
        json!([
            sms_patient(4),
            {
                "nhs_number": nhs(5),
                "language": "cy",
                "contacts": [{ "channel": "sms", "address": "07700 900005" }],
            },
        ]),
    )
    .await;
    let request = json!({
        "kind": "closed",
        "headline": "Flooding in the waiting room",
        "headline_cy": "Llifogydd yn yr ystafell aros",
        "details": "Please use the pharmacy next door.",
        "details_cy": "Defnyddiwch y fferyllfa drws nesaf.",
    });
    let reply = app
        .post("/api/v1/practices/T50003/status", &both, &request)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let change = &reply.body["status_change"];
    assert_eq!(change["headline"], "Flooding in the waiting room");
    assert_eq!(change["headline_cy"], "Llifogydd yn yr ystafell aros");
    assert_eq!(change["details_cy"], "Defnyddiwch y fferyllfa drws nesaf.");
    app.drain().await;
    let id = reply.body["id"].as_i64().expect("broadcast id");
    let sent = messages(&app, id, &both).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let welsh_part = "Meddygfa Test: Llifogydd yn yr ystafell aros. Am help brys, ffoniwch 111, neu 999 mewn argyfwng.";
    let english_part = "Meddygfa Test: Flooding in the waiting room. For urgent help call 111, or 999 in an emergency.";
    for m in &sent {
        assert_eq!(
            m["body"],
            format!("{welsh_part}\n\n{english_part}"),
            "every patient of a bilingual practice gets Welsh, then English"
        );
    }
    let line = app
        .sent_lines()
        .into_iter()
        .find(|l| l["to"] == "+447700900005")
        .expect("the Welsh patient's message was sent");
    assert!(
        line["body"]
            .as_str()
            .is_some_and(|b| b.starts_with(welsh_part)),
        "{line}"
    );

    // A practice that is not bilingual: its Welsh patient gets only the Welsh headline, its
    // English patient only the English one.
    let key = app.practice_with_key("T50004", "Ty Test").await;
    add_patients(
        &app,
        "T50004",
        &key,
        json!([
            sms_patient(6),
            {
                "nhs_number": nhs(7),
                "language": "cy",
                "contacts": [{ "channel": "sms", "address": "07700 900007" }],
            },
        ]),
    )
    .await;
    let reply = app
        .post("/api/v1/practices/T50004/status", &key, &request)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    app.drain().await;
    let id = reply.body["id"].as_i64().expect("broadcast id");
    let sent = messages(&app, id, &key).await;
    let body_of = |i: u32| {
        sent.iter()
            .find(|m| m["nhs_number"] == nhs(i))
            .and_then(|m| m["body"].as_str())
            .unwrap_or_else(|| panic!("no message for patient {i}: {sent:?}"))
            .to_string()
    };
    assert_eq!(
        body_of(7),
        "Ty Test: Llifogydd yn yr ystafell aros. Am help brys, ffoniwch 111, neu 999 mewn argyfwng."
    );
    assert_eq!(
        body_of(6),
        "Ty Test: Flooding in the waiting room. For urgent help call 111, or 999 in an emergency."
    );

    // Too long in Welsh is refused as in English, naming the field.
    let reply = app
        .post(
            "/api/v1/practices/T50004/status",
            &key,
            &json!({ "kind": "closed", "headline_cy": "ŵ".repeat(301) }),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.to_string().contains("headline_cy"),
        "{}",
        reply.body
    );
    // And a field that is not Welsh or English is still unknown.
    let reply = app
        .post(
            "/api/v1/practices/T50004/status",
            &key,
            &json!({ "kind": "closed", "headline_fr": "Fermé" }),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
}

/// A new release's shipped wording replaces an earlier release's where nobody edited it, as
/// a new version; once an administrator has saved a version, seeding leaves it alone.
pub async fn unedited_shipped_wording_follows_an_upgrade(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin_key.clone();
    let base = "/api/v1/templates/status.closed/sms";
    let shipped = gateway::render::shipped_defaults().expect("shipped templates");
    let closed_sms = |body: &str| {
        let mut next = shipped
            .iter()
            .find(|t| {
                t.key == "status.closed"
                    && t.channel == Channel::Sms
                    && t.language == Language::English
            })
            .expect("the shipped status.closed SMS")
            .clone();
        next.body = body.to_string();
        next
    };
    let store = app.state.store.clone();

    // Starting again with the same release adds nothing.
    let added = store.seed_templates(&shipped, Utc::now()).await.unwrap();
    assert_eq!(added, 0);

    // The next release ships other wording: it becomes version 2, by the shipped author.
    let release_2 = "{{ practice.name }} is closed. {{ status.headline | sentence }}";
    let added = store
        .seed_templates(&[closed_sms(release_2)], Utc::now())
        .await
        .unwrap();
    assert_eq!(added, 1);
    let current = app.get(base, &admin).await.body;
    assert_eq!(current["template"]["version"], 2, "{current}");
    assert_eq!(current["template"]["body"], release_2);
    assert_eq!(current["template"]["author"], "shipped with the gateway");

    // An administrator's own wording is never replaced by a later release.
    let reply = put(
        &app,
        base,
        &admin,
        &json!({ "body": "Closed: {{ practice.name }}" }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let added = store
        .seed_templates(&[closed_sms("{{ practice.name }} release 3")], Utc::now())
        .await
        .unwrap();
    assert_eq!(added, 0);
    let current = app.get(base, &admin).await.body;
    assert_eq!(current["template"]["version"], 3, "{current}");
    assert_eq!(current["template"]["body"], "Closed: {{ practice.name }}");
}
