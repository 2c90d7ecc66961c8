//! Issue 11, cases 6 and 7: a large appointment file or a sign-in flood holds up nobody.
//!
//! * A 50,000-row appointment CSV (half naming patients the practice does not have, with a
//!   blank row and a two-line quoted field) imports in bounded time with every refused row
//!   named by its spreadsheet row; a file one row over `import.max_rows` is refused (413,
//!   naming the limit) before anything is written. Another practice's broadcast, posted
//!   while the import runs, is sent in full.
//! * Wrong passwords lock a user name, and many names from one address lock the address
//!   (429 with Retry-After, audited), while another user signs in from elsewhere and
//!   another practice's broadcast, posted during the flood, is sent in full.

use std::time::{Duration, Instant};

use gateway::store::KeyScope;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};

const A: &str = "U10001";
const B: &str = "U20001";

/// Practice B with `count` patients reachable by SMS; returns its key.
async fn practice_b(app: &TestApp, count: u32) -> String {
    let key = app.practice_with_key(B, "Other Surgery").await;
    let patients: Vec<Value> = (0..count)
        .map(|i| {
            json!({ "nhs_number": nhs(70_000 + i), "contacts": [
                { "channel": "sms", "address": format!("07700 900{:03}", i % 1000) }
            ] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{B}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    key
}

/// Posts practice B's status change, sends everything and checks the broadcast went whole.
async fn practice_b_broadcast_completes(app: &TestApp, key: &str, count: u32) {
    let reply = app
        .post(
            &format!("/api/v1/practices/{B}/status"),
            key,
            &json!({ "kind": "systems_down" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["total"], count, "{}", reply.body);
    let id = reply.body["id"].as_i64().expect("broadcast id");
    app.drain().await;
    let progress = app.get(&format!("/api/v1/broadcasts/{id}"), key).await.body;
    assert_eq!(progress["by_state"]["sent"], count, "{progress}");
}

/// A 50,000-row file: row `r` (spreadsheet numbering) books patient `r % 200` when `r` is
/// even and an unknown patient when odd; a blank line after row 100 and a two-line quoted
/// note (a column the import ignores) on row 4. Returns the file and the rows naming unknown patients.
fn big_file(rows: u32) -> (String, Vec<u64>) {
    let mut text = String::from("Reference,NHS Number,Start,Clinician,Location,Notes\n");
    let mut unknown = Vec::new();
    let mut row = 1u64;
    for i in 0..rows {
        row += 1;
        if row == 102 {
            text.push('\n');
            row += 1;
        }
        let patient = if row.is_multiple_of(2) {
            nhs((row % 200) as u32)
        } else {
            unknown.push(row);
            nhs(10_000 + i)
        };
        let notes = if row == 4 { "\"Two,\nlines\"" } else { "" };
        text.push_str(&format!(
            "B-{i},{patient},2031-03-{:02} 09:{:02},Dr Patel,Room 1,{notes}\n",
            1 + i % 28,
            i % 60
        ));
    }
    (text, unknown)
}

pub async fn large_appointment_csv_is_linear_capped_and_isolated(db: Db) {
    let app = spawn_app_with(
        db,
        Options {
            settings: vec![("import.max_rows", json!(50_000))],
            ..Default::default()
        },
    )
    .await;
    let key_a = app.practice_with_key(A, "Big Surgery").await;
    let patients: Vec<Value> = (0..200)
        .map(|i| json!({ "nhs_number": nhs(i), "contacts": [] }))
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{A}/patients"),
            &key_a,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let key_b = practice_b(&app, 300).await;

    let (text, unknown) = big_file(50_000);
    let url = format!("{}/api/v1/practices/{A}/appointments/import", app.address);
    let upload = {
        let (url, key, text) = (url.clone(), key_a.clone(), text.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = Client::new()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "text/csv")
                .body(text)
                .send()
                .await
                .expect("upload");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            (status, body, started.elapsed())
        })
    };
    // Practice B's broadcast is posted and sent while the import runs.
    practice_b_broadcast_completes(&app, &key_b, 300).await;
    let (status, summary, took) = upload.await.expect("upload task");
    assert_eq!(status, StatusCode::OK, "{summary}");
    // Generous: linear work takes seconds even in a debug build; rescanning the file for
    // every row took minutes.
    assert!(took < Duration::from_secs(120), "import took {took:?}");
    assert_eq!(summary["rows"], 50_000);
    assert_eq!(summary["created"], 25_000, "{}", summary["created"]);
    assert_eq!(summary["rejected_count"], 25_000);
    assert_eq!(summary["rejected_not_listed"], 0);
    let rejected = summary["rejected"].as_array().expect("rejected rows");
    let rows: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().expect("row number"))
        .collect();
    assert_eq!(rows, unknown, "refused rows, in spreadsheet numbering");
    let odd = rejected.iter().find(|r| {
        r["errors"][0]["field"] != "nhs_number"
            || !r["errors"][0]["reason"]
                .as_str()
                .is_some_and(|s| s.contains("no patient"))
    });
    assert!(odd.is_none(), "{odd:?}");
    let shown = app
        .get(&format!("/api/v1/practices/{A}/appointments/B-2"), &key_a)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["location"], "Room 1", "{}", shown.body);

    // One row over the limit: refused before anything is written, naming the limit.
    let (over, _) = big_file(50_001);
    let over = over.replace("B-", "C-");
    let response = Client::new()
        .post(&url)
        .bearer_auth(&key_a)
        .header("content-type", "text/csv")
        .body(over)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("JSON");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("50000") && message.contains("import.max_rows"),
        "{body}"
    );
    let absent = app
        .get(&format!("/api/v1/practices/{A}/appointments/C-0"), &key_a)
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND, "{}", absent.body);
}

const PASSWORD: &str = "correct horse battery staple";

/// One sign-in through the form from client address `from` (as the trusted proxy on
/// loopback reports it); the status and the Retry-After header.
async fn sign_in(
    base: &str,
    from: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>) {
    let client = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    let form = client
        .get(format!("{base}/console/signin"))
        .send()
        .await
        .expect("form");
    let token = form
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("gw_signin="))
        .and_then(|v| v.split(';').next())
        .expect("sign-in cookie")
        .to_string();
    let response = client
        .post(format!("{base}/console/signin"))
        .header(COOKIE, format!("gw_signin={token}"))
        .header("x-forwarded-for", from)
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf", &token),
        ])
        .send()
        .await
        .expect("sign-in");
    let retry = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (response.status(), retry)
}

/// The subjects of `console.signin_locked` audit entries.
async fn locks_audited(app: &TestApp) -> Vec<String> {
    let url = &app.state.config.database.url;
    let query = "SELECT subject FROM audit_log WHERE action = 'console.signin_locked' ORDER BY id";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        sqlx::query_scalar(query)
            .fetch_all(&pool)
            .await
            .expect("audit")
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query_scalar(query)
            .fetch_all(&pool)
            .await
            .expect("audit")
    }
}

pub async fn signin_floods_lock_names_and_addresses_audited_and_isolated(db: Db) {
    let app = spawn_app_with(
        db,
        Options {
            settings: vec![("server.trusted_proxies", json!(["127.0.0.1"]))],
            ..Default::default()
        },
    )
    .await;
    for name in ["victim", "other"] {
        gateway::auth::create_user(app.state.store.as_ref(), name, PASSWORD, KeyScope::Admin)
            .await
            .expect("user");
    }
    let key_b = practice_b(&app, 300).await;

    // A flood of wrong guesses from one address runs while practice B broadcasts.
    let flood = {
        let base = app.address.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                let guess = format!("guess{i}");
                statuses.push(sign_in(&base, "203.0.113.9", &guess, "wrong").await.0);
            }
            statuses
        })
    };
    practice_b_broadcast_completes(&app, &key_b, 300).await;
    let statuses = flood.await.expect("flood");
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    // The address is locked now: even a right password from it is refused at once.
    let (status, retry) = sign_in(&app.address, "203.0.113.9", "other", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)));

    // Five wrong passwords for one name lock the name, from any address.
    for _ in 0..5 {
        let (status, _) = sign_in(&app.address, "198.51.100.1", "victim", "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = sign_in(&app.address, "198.51.100.2", "victim", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = sign_in(&app.address, "198.51.100.2", "Victim ", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "names are counted as typed loosely"
    );

    // Another user signs in, from the address that failed five times and from a fresh one.
    let (status, _) = sign_in(&app.address, "198.51.100.1", "other", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = sign_in(&app.address, "192.0.2.50", "other", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let audited = locks_audited(&app).await;
    assert_eq!(
        audited,
        ["address:203.0.113.9", "user:victim"],
        "{audited:?}"
    );
}
