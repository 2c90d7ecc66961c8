//! CSV contact import: every error class named by row and column, spreadsheet quirks, idempotent
//! re-imports, replace mode, and a killed import resumed to the same state as a clean one.

use std::path::PathBuf;

use gateway::intake::import::{import_csv, CsvSource, ImportError, ImportOptions, ImportReport};
use gateway::store::ListedPatient;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app, spawn_app_with, Db, Options, TestApp};
use gateway::domain::PracticeId;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contacts");
    std::fs::read(path.join(name)).expect("fixture")
}

/// Posts a CSV body; returns the status and the body (JSON if it parses).
async fn upload(
    app: &TestApp,
    ods: &str,
    key: &str,
    query: &str,
    csv: Vec<u8>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/practices/{ods}/patients/import{query}",
            app.address
        ))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every patient of the practice with contacts and opt-outs, in NHS number order.
async fn listing(app: &TestApp, practice: PracticeId) -> Vec<ListedPatient> {
    app.state
        .store
        .listed_patients(practice, "", 100_000)
        .await
        .expect("listing")
}

fn find<'a>(list: &'a [ListedPatient], nhs_number: &str) -> &'a ListedPatient {
    list.iter()
        .find(|p| p.nhs_number == nhs_number)
        .expect("patient listed")
}

fn contacts(p: &ListedPatient) -> Vec<(&str, &str, bool)> {
    p.contacts
        .iter()
        .map(|c| (c.channel.as_str(), c.address.as_str(), c.opted_out))
        .collect()
}

fn errors_of(report: &Value) -> Vec<(u64, Option<String>)> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().map(String::from),
            )
        })
        .collect()
}

pub async fn every_error_class_is_reported_by_row_and_column(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T60001", "Import Surgery").await;
    let mut csv = fixture("every_error.csv");
    // Row 24: a field that is not UTF-8 (a file saved as "CSV" in Windows-1252).
    csv.extend_from_slice(b"9990001200,Ren\xe9e,Bytes,,,,,,,,\n");
    let (status, report) = upload(&app, "T60001", &key, "", csv.clone()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let column = |c: &str| Some(c.to_string());
    assert_eq!(
        errors_of(&report),
        [
            (3, column("NHS Number")),
            (4, column("NHS Number")),
            (5, column("NHS Number")),
            (6, column("Mobile")),
            (7, column("Mobile")),
            (8, column("Email")),
            (9, column("Preferred Channel")),
            (10, column("Language")),
            (11, column("SMS Consent")),
            (12, column("Date of Birth")),
            (13, column("Date of Birth")),
            (14, None),
            (15, column("NHS Number")),
            (17, column("Mobile")),
            (19, column("Email")),
            (19, column("Language")),
            (20, column("Forename")),
            (22, None),
            (23, column("NHS Number")),
            (24, column("Forename")),
        ]
    );
    let reasons: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for (i, expected) in [
        (0, "check digit"),
        (1, "is empty"),
        (2, "10 digits"),
        (4, "cannot receive SMS"),
        (11, "has 2 fields where the header has 11"),
        (12, "already on row 2"),
        (18, "already on row 6"),
        (19, "not UTF-8"),
    ] {
        assert!(reasons[i].contains(expected), "{i}: {}", reasons[i]);
    }
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["created"].as_u64(),
            report["rejected"].as_u64()
        ),
        (Some(22), Some(3), Some(19))
    );

    // The valid rows are stored, quoted commas and line breaks intact, a "no" as an opt-out.
    let list = listing(&app, app.practice_id("T60001").await).await;
    assert_eq!(list.len(), 3);
    let ada = find(&list, "9990000018");
    assert_eq!(ada.landline.as_deref(), Some("+442079460001"));
    assert_eq!(
        contacts(ada),
        [
            ("email", "ada@example.com", false),
            ("sms", "+447700900001", false)
        ]
    );
    let jo = find(&list, "9990000786");
    assert_eq!(
        (jo.given_name.as_deref(), jo.family_name.as_deref()),
        (Some("Smith, Jo"), Some("Two\nLines"))
    );
    assert_eq!(
        (jo.language.as_str(), jo.preferred_channel.as_deref()),
        ("cy", Some("email"))
    );
    assert_eq!(
        contacts(jo),
        [
            ("email", "jo@example.com", true),
            ("sms", "+447700900016", true)
        ]
    );
    let landline_only = find(&list, "9990001065");
    assert!(
        landline_only.contacts.is_empty(),
        "a landline is never an SMS contact"
    );
    assert_eq!(landline_only.landline.as_deref(), Some("+442079460021"));

    // The same report as CSV names the same rows.
    let (status, text) = upload(&app, "T60001", &key, "?report=csv", csv).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("CSV text").to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "row,column,reason");
    assert!(lines[1].starts_with("3,NHS Number,"), "{}", lines[1]);
    assert!(lines[12].starts_with("14,,has 2 fields"), "{}", lines[12]);
    assert_eq!(lines.len(), 21);
}

pub async fn bom_semicolons_crlf_quotes_and_a_header_mapping(db: Db) {
    let options = Options {
        settings: vec![
            ("import.columns.nhs_number", json!(["Patient Identifier"])),
            ("import.columns.given_name", json!(["Given"])),
            ("import.columns.mobile", json!(["Tel (Mob)"])),
            ("import.columns.date_of_birth", json!(["Born"])),
            ("import.date_formats", json!(["%Y%m%d"])),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("T60002", "Mapped Surgery").await;
    let csv = format!(
        "\u{feff}Patient Identifier;Given;Tel (Mob);Born;E-mail\r\n\
         {};\"Smith; Jo\";07700 900201;19800131;jo@example.com\r\n\
         {};\"Multi\r\nLine\";07700 900202;19900215;\r\n\
         {};Bad;12;19900215;\r\n\
         {};Late;07700 900204;2000-01-01;\r\n",
        nhs(1),
        nhs(2),
        nhs(3),
        nhs(4)
    );
    let (status, report) = upload(&app, "T60002", &key, "", csv.into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        errors_of(&report),
        [(4, Some("Tel (Mob)".into())), (5, Some("Born".into()))]
    );
    assert_eq!(report["created"], 2);
    let list = listing(&app, app.practice_id("T60002").await).await;
    let jo = find(&list, &nhs(1));
    assert_eq!(jo.given_name.as_deref(), Some("Smith; Jo"));
    assert_eq!(
        jo.date_of_birth.map(|d| d.to_string()).as_deref(),
        Some("1980-01-31")
    );
    assert_eq!(
        contacts(jo),
        [
            ("email", "jo@example.com", false),
            ("sms", "+447700900201", false)
        ]
    );
    assert_eq!(
        find(&list, &nhs(2)).given_name.as_deref(),
        Some("Multi\r\nLine")
    );
}

pub async fn reimporting_the_same_file_changes_nothing_and_keeps_opt_outs(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key("T60003", "Repeat Surgery").await;
    let practice = app.practice_id("T60003").await;
    let (_, first) = upload(&app, "T60003", &key, "", fixture("list_v1.csv")).await;
    assert_eq!(
        (first["created"].as_u64(), first["rejected"].as_u64()),
        (Some(5), Some(0)),
        "{first}"
    );
    let before = listing(&app, practice).await;
    assert_eq!(
        contacts(find(&before, "9990001340")),
        [("sms", "+447700900102", true)]
    );

    let (_, again) = upload(&app, "T60003", &key, "", fixture("list_v1.csv")).await;
    assert_eq!(
        (
            again["created"].as_u64(),
            again["updated"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(5))
    );
    assert_eq!(listing(&app, practice).await, before);

    // A STOP reply recorded since, and a later "yes", clear no opt-out.
    app.state
        .store
        .set_sms_opt_out(practice, "+447700900101", true, chrono::Utc::now())
        .await
        .unwrap();
    let yes_everywhere = String::from_utf8(fixture("list_v1.csv"))
        .unwrap()
        .replace(",no\n", ",yes\n");
    let (_, third) = upload(&app, "T60003", &key, "", yes_everywhere.into_bytes()).await;
    assert_eq!(third["unchanged"], 5, "{third}");
    let after = listing(&app, practice).await;
    assert_eq!(
        contacts(find(&after, "9990001278"))[1],
        ("sms", "+447700900101", true)
    );
    assert_eq!(
        contacts(find(&after, "9990001340")),
        [("sms", "+447700900102", true)]
    );
}

pub async fn replace_deactivates_exactly_the_missing_patients(db: Db) {
    let app = spawn_app_with(
        db,
        Options {
            settings: vec![("import.batch_rows", json!(2))],
            ..Options::default()
        },
    )
    .await;
    let key = app.practice_with_key("T60004", "Sync Surgery").await;
    let practice = app.practice_id("T60004").await;
    upload(&app, "T60004", &key, "", fixture("list_v1.csv")).await;
    let other = json!({ "patients": [{ "nhs_number": nhs(9), "contacts": [] }] });
    app.post("/api/v1/practices/T60004/patients", &key, &other)
        .await;

    // A replace import that stops part-way makes nobody inactive.
    let v2 = write_temp(&fixture("list_v2.csv"));
    let stopped = run_file(&app, practice, &v2.1, true, Some(1)).await;
    assert!(
        matches!(stopped, Err(ImportError::Stopped(1))),
        "{stopped:?}"
    );
    assert!(listing(&app, practice).await.iter().all(|p| p.active));

    // The stopped run committed its first batch (Amy unchanged, Cat's new surname), so this
    // upload, a run of its own, finds Cat unchanged.
    let (status, report) = upload(
        &app,
        "T60004",
        &key,
        "?mode=replace",
        fixture("list_v2.csv"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["unchanged"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{report}"
    );
    assert_eq!(report["deactivated"], 3);
    let list = listing(&app, practice).await;
    let inactive: Vec<&str> = list
        .iter()
        .filter(|p| !p.active)
        .map(|p| p.nhs_number.as_str())
        .collect();
    let mut expected = vec!["9990001340", "9990001480", nhs(9).leak()];
    expected.sort();
    assert_eq!(inactive, expected);
    // Eve's new number replaced the old; Ben's opt-out stays with his (inactive) record.
    assert_eq!(
        contacts(find(&list, "9990001553")),
        [
            ("email", "eve@example.com", false),
            ("sms", "+447700900115", false)
        ]
    );
    assert_eq!(
        contacts(find(&list, "9990001340")),
        [("sms", "+447700900102", true)]
    );

    // Named again, they are active again; the inactive one not named stays inactive.
    let (_, back) = upload(
        &app,
        "T60004",
        &key,
        "?replace=true",
        fixture("list_v1.csv"),
    )
    .await;
    assert_eq!(back["deactivated"], 1, "{back}");
    let list = listing(&app, practice).await;
    let active: Vec<&str> = list
        .iter()
        .filter(|p| p.active)
        .map(|p| p.nhs_number.as_str())
        .collect();
    assert_eq!(
        active,
        [
            "9990001278",
            "9990001340",
            "9990001413",
            "9990001480",
            "9990001553"
        ]
    );

    // A row with an unreadable NHS number might be anyone: nobody is made inactive.
    let partial = "NHS Number,Forename\n9990001278,Amy\n999000127,Typo\n";
    let (_, skipped) = upload(&app, "T60004", &key, "?mode=replace", partial.into()).await;
    assert_eq!(skipped["deactivated"], 0);
    assert!(
        skipped["deactivation_skipped"]
            .as_str()
            .unwrap()
            .contains("1 rows"),
        "{skipped}"
    );
    assert_eq!(
        listing(&app, practice)
            .await
            .iter()
            .filter(|p| p.active)
            .count(),
        5
    );
}

/// Writes bytes to a temporary file, kept as long as the returned guard.
fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("list.csv");
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

async fn run_file(
    app: &TestApp,
    practice: PracticeId,
    path: &std::path::Path,
    replace: bool,
    stop: Option<u64>,
) -> Result<ImportReport, ImportError> {
    let options = ImportOptions {
        replace,
        stop_after_batches: stop,
        ..ImportOptions::default()
    };
    import_csv(
        app.state.store.clone(),
        practice,
        &app.state.config.import,
        CsvSource::File(path.to_path_buf()),
        options,
    )
    .await
}

/// 600 rows: new patients, changed ones, bad rows and repeats spread through the batches.
fn big_file() -> Vec<u8> {
    let mut csv = String::from("NHS Number,Forename,Surname,Mobile,Email,SMS Consent\n");
    for i in 0..600u32 {
        let number = match i % 97 {
            40 => nhs(i - 30),
            _ => nhs(i),
        };
        let mobile = if i % 53 == 7 {
            "0791112".to_string()
        } else {
            format!("07700 9{:05}", i)
        };
        let email = if i % 97 == 13 {
            "not-an-email".to_string()
        } else if i % 3 == 0 {
            format!("p{i}@example.com")
        } else {
            String::new()
        };
        let consent = if i % 10 == 4 { "no" } else { "yes" };
        csv.push_str(&format!(
            "{number},Pat{i},\"Big, File\",{mobile},{email},{consent}\n"
        ));
    }
    csv.into_bytes()
}

/// The same 30 patients in each practice beforehand: 20 the file names (with older details
/// and an opt-out), 10 it does not (to be made inactive).
async fn seed(app: &TestApp, ods: &str, key: &str) {
    let patients: Vec<Value> = (0..30u32)
        .map(|k| {
            let i = if k < 20 { k * 7 } else { 1000 + k };
            json!({ "nhs_number": nhs(i), "given_name": "Old", "contacts": [
                { "channel": "sms", "address": format!("07700 8{:05}", i), "opted_out": k % 5 == 0 }
            ]})
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

fn outcome(r: &ImportReport) -> impl PartialEq + std::fmt::Debug {
    let errors: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.row, e.column.clone(), e.reason.clone()))
        .collect();
    (
        r.rows,
        r.created,
        r.updated,
        r.unchanged,
        r.rejected,
        r.deactivated,
        errors,
    )
}

pub async fn killed_import_resumed_ends_as_a_clean_one(db: Db) {
    let app = spawn_app_with(
        db,
        Options {
            settings: vec![("import.batch_rows", json!(50))],
            ..Options::default()
        },
    )
    .await;
    let (_dir, path) = write_temp(&big_file());
    let mut practices = Vec::new();
    for ods in ["T60005", "T60006", "T60007"] {
        let key = app.practice_with_key(ods, "Resume Surgery").await;
        seed(&app, ods, &key).await;
        practices.push(app.practice_id(ods).await);
    }
    let clean = run_file(&app, practices[0], &path, true, None)
        .await
        .expect("clean import");
    assert!(
        clean.rejected > 0 && clean.deactivated == 10,
        "{}",
        clean.summary()
    );
    let expected = listing(&app, practices[0]).await;

    // Killed after four batches: what is there is whole, and nobody is inactive yet.
    let stopped = run_file(&app, practices[1], &path, true, Some(4)).await;
    assert!(
        matches!(stopped, Err(ImportError::Stopped(4))),
        "{stopped:?}"
    );
    let part = listing(&app, practices[1]).await;
    assert!(part.iter().all(|p| p.active));
    for p in &part {
        let full = find(&expected, &p.nhs_number);
        assert!(
            p.contacts == full.contacts || p.given_name.as_deref() == Some("Old"),
            "half-written: {p:?}"
        );
    }
    let resumed = run_file(&app, practices[1], &path, true, None)
        .await
        .expect("resumed import");
    assert!(resumed.resumed);
    assert_eq!(outcome(&resumed), outcome(&clean));
    assert_eq!(listing(&app, practices[1]).await, expected);

    // The task killed once some batches are committed (wherever it is by then), then run again.
    let options = ImportOptions {
        replace: true,
        ..ImportOptions::default()
    };
    let (store, config, file) = (
        app.state.store.clone(),
        app.state.config.import.clone(),
        path.clone(),
    );
    let third = practices[2];
    let task = tokio::spawn(async move {
        import_csv(store, third, &config, CsvSource::File(file), options).await
    });
    while listing(&app, third).await.len() <= 30 && !task.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    let part = listing(&app, third).await;
    if part.len() < expected.len() {
        // Stopped before the end of the file: nobody may be inactive yet.
        assert!(part.iter().all(|p| p.active));
    }
    let again = run_file(&app, practices[2], &path, true, None)
        .await
        .expect("import after abort");
    assert_eq!(outcome(&again), outcome(&clean));
    assert_eq!(listing(&app, practices[2]).await, expected);
}

pub async fn uploads_stream_past_the_body_limit_and_bad_requests_are_refused(db: Db) {
    let options = Options {
        settings: vec![
            ("server.max_body_bytes", json!(1_000)),
            ("import.max_upload_bytes", json!(20_000)),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("T60008", "Upload Surgery").await;
    let other = app.practice_with_key("T60009", "Other Surgery").await;
    let mut csv = String::from("NHS Number,Mobile\n");
    for i in 0..200 {
        csv.push_str(&format!("{},07700 9{:05}\n", nhs(i), i));
    }
    assert!(csv.len() > 1_000 && csv.len() < 20_000);
    let (status, report) = upload(&app, "T60008", &key, "", csv.clone().into_bytes()).await;
    assert_eq!(
        (status, report["created"].as_u64()),
        (StatusCode::OK, Some(200)),
        "{report}"
    );

    let big = csv.repeat(10).into_bytes();
    let (status, body) = upload(&app, "T60008", &key, "", big).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let (status, _) = upload(&app, "T60008", &other, "", csv.clone().into_bytes()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = upload(&app, "T60008", &key, "?mode=sync", csv.clone().into_bytes()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (status, body) = upload(
        &app,
        "T60008",
        &key,
        "",
        b"Name,Mobile\nAda,07700900001\n".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_file"))
    );
    let reply = app
        .callback(
            "/api/v1/practices/T60008/patients/import",
            "application/json",
            &[("authorization", format!("Bearer {key}"))],
            csv.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // All or nothing: one bad row and nothing is written.
    let practice = app.practice_id("T60009").await;
    let bad = format!(
        "NHS Number,Mobile\n{},07700900001\n{},0791112\n",
        nhs(500),
        nhs(501)
    );
    let (status, body) = upload(
        &app,
        "T60009",
        &other,
        "?all_or_nothing=true",
        bad.into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("import_rejected")),
        "{body}"
    );
    assert_eq!(
        errors_of(&body["error"]["details"]),
        [(3, Some("Mobile".into()))]
    );
    assert!(listing(&app, practice).await.is_empty());
    let good = format!("NHS Number,Mobile\n{},07700900001\n", nhs(500));
    let (status, body) = upload(
        &app,
        "T60009",
        &other,
        "?all_or_nothing=true",
        good.into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["created"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
}
