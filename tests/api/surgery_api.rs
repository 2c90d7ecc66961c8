//! The API a surgery needs beyond sending (issue 16): changing its details and quiet hours,
//! listing its broadcasts, listing, deactivating and erasing patients, and reading the
//! audit trail, each kept to the caller's own practice.

use chrono::{Duration, Timelike, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use gateway::store::KeyScope;

use crate::helpers::{nhs, spawn_app, Db, TestApp};

const ODS: &str = "S16001";
const OTHER: &str = "S16002";

async fn patch(app: &TestApp, ods: &str, key: &str, body: Value) -> crate::helpers::Reply {
    let path = format!("/api/v1/practices/{ods}");
    app.request(Method::PATCH, &path, Some(key), Some(&body))
        .await
}

/// Stores patients `(i, given name, contacts)` at `ods`.
async fn add_patients(app: &TestApp, ods: &str, key: &str, patients: &[(u32, &str, Value)]) {
    let patients: Vec<Value> = patients
        .iter()
        .map(|(i, name, contacts)| {
            json!({ "nhs_number": nhs(*i), "given_name": name, "contacts": contacts })
        })
        .collect();
    let path = format!("/api/v1/practices/{ods}/patients");
    let reply = app.post(&path, key, &json!({ "patients": patients })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// Posts a status change; its broadcast id.
async fn post_status(app: &TestApp, ods: &str, key: &str, kind: &str) -> i64 {
    let path = format!("/api/v1/practices/{ods}/status");
    let reply = app.post(&path, key, &json!({ "kind": kind })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_i64().expect("broadcast id")
}

/// The ids of a page of broadcasts, and its `next_before`.
async fn broadcast_ids(app: &TestApp, key: &str, query: &str) -> (Vec<i64>, Value) {
    let reply = app
        .get(&format!("/api/v1/practices/{ODS}/broadcasts?{query}"), key)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let ids = reply.body["broadcasts"]
        .as_array()
        .expect("broadcasts")
        .iter()
        .map(|b| b["id"].as_i64().expect("id"))
        .collect();
    (ids, reply.body["next_before"].clone())
}

pub async fn a_practice_changes_its_details_and_quiet_hours_hold_with_a_reason(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key(ODS, "Old Name Surgery").await;
    let other = app.practice_with_key(OTHER, "Other Surgery").await;

    // Quiet hours of its own around this very minute, in UTC: texts are held, email is not.
    let now = Utc::now();
    let hhmm = |t: chrono::DateTime<Utc>| t.format("%H:%M").to_string();
    let (start, end) = (
        hhmm(now - Duration::hours(1)),
        hhmm(now + Duration::hours(1)),
    );
    let changed = patch(
        &app,
        ODS,
        &key,
        json!({
            "name": "Riverside Surgery", "phone": "020 7946 0123", "website": "https://riverside.example",
            "timezone": "UTC", "channel_order": ["sms", "email"], "bilingual": false,
            "quiet_hours": { "start": start, "end": end },
        }),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let shown = app
        .get(&format!("/api/v1/practices/{ODS}"), &key)
        .await
        .body;
    assert_eq!(shown["name"], "Riverside Surgery");
    assert_eq!(shown["timezone"], "UTC");
    assert_eq!(shown["channel_order"], json!(["sms", "email"]));
    assert_eq!(shown["quiet_hours"], json!({ "start": start, "end": end }));
    assert_eq!(shown["phone"], "020 7946 0123");

    // Bad values are all named, and nothing changes; another practice cannot change it.
    let refused = patch(
        &app,
        ODS,
        &key,
        json!({ "timezone": "Mars/Olympus", "channel_order": ["fax"], "quiet_hours": { "start": "9pm", "end": "08:00" } }),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    let mut fields: Vec<&str> = refused.body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["channel_order", "quiet_hours", "timezone"]);
    let unchanged = app
        .get(&format!("/api/v1/practices/{ODS}"), &key)
        .await
        .body;
    assert_eq!(unchanged["timezone"], "UTC");
    let foreign = patch(&app, ODS, &other, json!({ "name": "Taken Over" })).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);

    add_patients(
        &app,
        ODS,
        &key,
        &[
            (
                1,
                "Ada",
                json!([{ "channel": "sms", "address": "07700 900001" }]),
            ),
            (
                2,
                "Ben",
                json!([{ "channel": "email", "address": "ben@example.com" }]),
            ),
        ],
    )
    .await;
    let first = post_status(&app, ODS, &key, "closed").await;
    let page = app
        .get(&format!("/api/v1/broadcasts/{first}/messages"), &key)
        .await
        .body;
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{page}");
    let mut until = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("minute")
        + Duration::hours(1);
    if until <= now {
        until += Duration::days(1);
    }
    for m in messages {
        match m["channel"].as_str() {
            Some("sms") => {
                assert_eq!(m["held"]["reason"], "quiet_hours", "{m}");
                let held_until: chrono::DateTime<Utc> =
                    serde_json::from_value(m["held"]["until"].clone()).expect("until");
                assert_eq!(held_until, until, "{m}");
            }
            _ => assert_eq!(m["held"], Value::Null, "email is not held: {m}"),
        }
    }
    // The console's page of the broadcast says so too.
    let store = app.state.store.as_ref();
    gateway::auth::create_user(store, "admin", crate::console::PASSWORD, KeyScope::Admin)
        .await
        .expect("user");
    let session = crate::console::sign_in(&app, "admin", crate::console::PASSWORD)
        .await
        .expect("signed in");
    let (status, page_html) =
        crate::console::get(&app, &format!("/console/broadcasts/{first}"), &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page_html.contains("Held for quiet hours until") && page_html.contains(": 1 texts"),
        "{page_html}"
    );
    // Back to the gateway's quiet hours (none in the tests): nothing is held.
    let cleared = patch(&app, ODS, &key, json!({ "quiet_hours": null })).await;
    assert_eq!(cleared.body["quiet_hours"], Value::Null, "{}", cleared.body);
    let page = app
        .get(&format!("/api/v1/broadcasts/{first}/messages"), &key)
        .await
        .body;
    assert!(page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .all(|m| m["held"].is_null()));

    // Broadcasts, newest first, by state, a page at a time.
    let second = post_status(&app, ODS, &key, "restored").await;
    assert_eq!(broadcast_ids(&app, &key, "").await.0, [second, first]);
    assert_eq!(
        broadcast_ids(&app, &key, "state=superseded").await.0,
        [first]
    );
    assert_eq!(broadcast_ids(&app, &key, "state=planned").await.0, [second]);
    assert!(broadcast_ids(&app, &key, "state=cancelled")
        .await
        .0
        .is_empty());
    let (page_one, next) = broadcast_ids(&app, &key, "limit=1").await;
    assert_eq!((page_one, next.clone()), (vec![second], json!(second)));
    let (page_two, _) = broadcast_ids(&app, &key, &format!("limit=1&before={next}")).await;
    assert_eq!(page_two, [first]);
    let (rest, end_of_list) = broadcast_ids(&app, &key, &format!("before={first}")).await;
    assert!(rest.is_empty() && end_of_list.is_null());
    let listed = app
        .get(&format!("/api/v1/practices/{ODS}/broadcasts"), &key)
        .await
        .body;
    assert_eq!(listed["broadcasts"][1]["status_change"]["kind"], "closed");
    assert_eq!(
        listed["broadcasts"][1]["superseded_by_status_change"],
        listed["broadcasts"][0]["status_change"]["id"]
    );
    let bad = app
        .get(
            &format!("/api/v1/practices/{ODS}/broadcasts?state=sent"),
            &key,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["error"]["details"][0]["field"], "state");
    let hidden = app
        .get(&format!("/api/v1/practices/{ODS}/broadcasts"), &other)
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
}

/// Where `needle` still appears in the database: every column of every table, read as
/// text, as `table.column`, found by one query of one SELECT per column.
async fn traces_of(app: &TestApp, needle: &str) -> Vec<String> {
    let url = app.database_url();
    let pattern = format!("%{needle}%");
    let scan = |columns: Vec<(String, String)>| {
        columns
            .iter()
            .map(|(t, c)| {
                format!("SELECT '{t}.{c}' FROM \"{t}\" WHERE CAST(\"{c}\" AS TEXT) LIKE $1")
            })
            .collect::<Vec<_>>()
            .join(" UNION ")
    };
    let mut found: Vec<String> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
        let columns = sqlx::query_as(
            "SELECT m.name, c.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table'",
        )
        .fetch_all(&pool)
        .await
        .expect("columns");
        sqlx::query_scalar(&scan(columns))
            .bind(&pattern)
            .fetch_all(&pool)
            .await
            .expect("scan")
    } else {
        let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
        let columns = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema()",
        )
        .fetch_all(&pool)
        .await
        .expect("columns");
        sqlx::query_scalar(&scan(columns))
            .bind(&pattern)
            .fetch_all(&pool)
            .await
            .expect("scan")
    };
    found.sort();
    found
}

/// A broadcast's total and its counts by state.
async fn counts(app: &TestApp, key: &str, broadcast: i64) -> (Value, Value) {
    let view = app
        .get(&format!("/api/v1/broadcasts/{broadcast}"), key)
        .await
        .body;
    (view["total"].clone(), view["by_state"].clone())
}

pub async fn patients_are_listed_deactivated_and_erased_without_a_trace(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key(ODS, "Riverside Surgery").await;
    let other = app.practice_with_key(OTHER, "Other Surgery").await;
    let zebedee = nhs(7);
    let (mobile_digits, email) = ("7700900777", "zebedee.q@example.org");
    add_patients(
        &app,
        ODS,
        &key,
        &[
            (
                1,
                "Ada",
                json!([{ "channel": "sms", "address": "07700 900001" }]),
            ),
            (
                2,
                "Ben",
                json!([{ "channel": "email", "address": "ben@example.com" }]),
            ),
            (3, "Cai", json!([])),
            (
                7,
                "Zebedee",
                json!([{ "channel": "sms", "address": "07700 900777" },
                       { "channel": "email", "address": email }]),
            ),
        ],
    )
    .await;
    let path = format!("/api/v1/practices/{ODS}/patients");
    let set_family = app
        .post(
            &path,
            &key,
            &json!({ "patients": [{ "nhs_number": zebedee, "given_name": "Zebedee",
                "family_name": "Quixote-Farthing", "contacts": [
                    { "channel": "sms", "address": "07700 900777" }, { "channel": "email", "address": email }] }] }),
        )
        .await;
    assert_eq!(set_family.status, StatusCode::OK, "{}", set_family.body);

    // Listed in NHS number order, two at a time, with their contacts.
    let first = app.get(&format!("{path}?limit=2"), &key).await.body;
    assert_eq!(
        first["patients"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    assert_eq!(first["next_after"], json!(nhs(2)));
    let rest = app
        .get(&format!("{path}?limit=2&after={}", nhs(2)), &key)
        .await
        .body;
    let rest_numbers: Vec<&str> = rest["patients"]
        .as_array()
        .expect("patients")
        .iter()
        .filter_map(|p| p["nhs_number"].as_str())
        .collect();
    assert_eq!(rest_numbers, [nhs(3), zebedee.clone()]);
    assert_eq!(
        rest["patients"][1]["contacts"].as_array().map(Vec::len),
        Some(2)
    );
    let hidden = app.get(&path, &other).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);

    // Deactivated: listed as inactive, and left out of the next broadcast.
    let off = app
        .post(&format!("{path}/{}/deactivate", nhs(1)), &key, &json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    let inactive = app.get(&format!("{path}?active=false"), &key).await.body;
    assert_eq!(inactive["patients"][0]["nhs_number"], json!(nhs(1)));
    assert_eq!(inactive["patients"].as_array().map(Vec::len), Some(1));

    // Zebedee is messaged: a broadcast that goes, an appointment change, and one left queued.
    let appointment = app
        .post(
            &format!("/api/v1/practices/{ODS}/appointments"),
            &key,
            &json!({ "appointments": [{ "external_ref": "ZQ-REF-4471", "nhs_number": zebedee,
                "starts_at": "2030-07-22 09:30", "clinician": "Dr Patel", "status": "booked" }] }),
        )
        .await;
    assert_eq!(appointment.status, StatusCode::OK, "{}", appointment.body);
    let change = app
        .post(
            &format!("/api/v1/practices/{ODS}/appointments/ZQ-REF-4471/changes"),
            &key,
            &json!({ "kind": "cancelled", "reason": "the doctor is unwell" }),
        )
        .await;
    assert_eq!(change.status, StatusCode::CREATED, "{}", change.body);
    let sent = post_status(&app, ODS, &key, "closed").await;
    assert_eq!(
        counts(&app, &key, sent).await.0,
        json!(2),
        "Ada is inactive"
    );
    app.drain().await;
    let queued = post_status(&app, ODS, &key, "phones_down").await;
    let (sent_before, queued_before) = (
        counts(&app, &key, sent).await,
        counts(&app, &key, queued).await,
    );
    assert!(
        !traces_of(&app, "Zebedee").await.is_empty(),
        "the scan finds what is there"
    );

    let erased = app
        .request(
            Method::DELETE,
            &format!("{path}/{zebedee}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(erased.body["erased"]["contacts_removed"], 2);
    assert_eq!(erased.body["erased"]["messages_cancelled"], 1);
    assert_eq!(erased.body["erased"]["appointments_removed"], 1);
    assert_eq!(erased.body["erased"]["messages_blanked"], 3);

    for needle in [
        zebedee.as_str(),
        "Zebedee",
        "Quixote",
        mobile_digits,
        email,
        "ZQ-REF-4471",
        "the doctor is unwell",
    ] {
        assert_eq!(
            traces_of(&app, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // The counts stay right: the sent broadcast is as it was; the queued message is
    // cancelled, not gone.
    assert_eq!(counts(&app, &key, sent).await, sent_before);
    let (total, by_state) = counts(&app, &key, queued).await;
    assert_eq!(total, queued_before.0);
    let queued_now = by_state["queued"].as_i64().unwrap_or(0);
    assert_eq!(
        queued_now,
        queued_before.1["queued"].as_i64().unwrap_or(0) - 1
    );
    assert_eq!(by_state["cancelled"], 1);
    // Gone from the API; a second erasure finds nothing; the others are untouched.
    let gone = app.get(&format!("{path}/{zebedee}"), &key).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    let again = app
        .request(
            Method::DELETE,
            &format!("{path}/{zebedee}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    let listed = app.get(&path, &key).await.body;
    assert_eq!(
        listed["patients"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    // Audited without the NHS number; another practice cannot erase.
    let audit = app
        .get("/api/v1/audit?action=patient.erased", &key)
        .await
        .body;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );
    assert_eq!(audit["entries"][0]["details"]["contacts_removed"], 2);
    assert_eq!(audit["entries"][0]["practice"], ODS);
    let foreign = app
        .request(
            Method::DELETE,
            &format!("{path}/{}", nhs(2)),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
}

pub async fn the_audit_trail_is_read_with_filters_by_each_caller(db: Db) {
    let app = spawn_app(db).await;
    let key = app.practice_with_key(ODS, "Riverside Surgery").await;
    let other = app.practice_with_key(OTHER, "Other Surgery").await;
    for name in ["First Name", "Second Name", "Third Name"] {
        let reply = patch(&app, ODS, &key, json!({ "name": name })).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    patch(&app, OTHER, &other, json!({ "name": "Elsewhere" })).await;

    // The practice's key reads its own trail, newest first, a page at a time.
    let own = app
        .get("/api/v1/audit?action=practice.changed&limit=2", &key)
        .await
        .body;
    let entries = own["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{own}");
    assert_eq!(entries[0]["details"]["after"]["name"], "Third Name");
    assert_eq!(entries[0]["details"]["before"]["name"], "Second Name");
    assert!(entries.iter().all(|e| e["practice"] == ODS));
    let next = &own["next_before"];
    let older = app
        .get(
            &format!("/api/v1/audit?action=practice.changed&limit=2&before={next}"),
            &key,
        )
        .await
        .body;
    assert_eq!(
        older["entries"].as_array().map(Vec::len),
        Some(1),
        "{older}"
    );
    assert_eq!(
        older["entries"][0]["details"]["after"]["name"],
        "First Name"
    );
    assert!(older["next_before"].is_null());
    // By actor and by time.
    let actor = entries[0]["actor"].as_str().expect("actor").to_string();
    let by_actor = app
        .get(&format!("/api/v1/audit?actor={actor}"), &app.admin_key)
        .await
        .body;
    assert!(by_actor["entries"]
        .as_array()
        .is_some_and(|e| e.len() == 3 && e.iter().all(|e| e["actor"] == actor.as_str())));
    let later =
        (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = app
        .get(&format!("/api/v1/audit?from={later}"), &app.admin_key)
        .await
        .body;
    assert_eq!(none["entries"], json!([]), "{none}");
    let earlier =
        (Utc::now() - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let before_all = app
        .get(&format!("/api/v1/audit?until={earlier}"), &app.admin_key)
        .await
        .body;
    assert_eq!(before_all["entries"], json!([]), "{before_all}");

    // An administrator reads every practice's, or one; a practice cannot read another's.
    let everything = app
        .get("/api/v1/audit?action=practice.changed", &app.admin_key)
        .await
        .body;
    assert_eq!(everything["entries"].as_array().map(Vec::len), Some(4));
    let one = app
        .get(&format!("/api/v1/audit?practice={OTHER}"), &app.admin_key)
        .await
        .body;
    assert!(one["entries"]
        .as_array()
        .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["practice"] == OTHER)));
    let refused = app
        .get(&format!("/api/v1/audit?practice={OTHER}"), &key)
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    let own_only = app.get("/api/v1/audit", &key).await.body;
    assert!(own_only["entries"]
        .as_array()
        .is_some_and(|e| e.iter().all(|e| e["practice"] == ODS)));

    // A federation's key names one of its practices.
    let created = app
        .post(
            "/api/v1/federations",
            &app.admin_key,
            &json!({ "name": "Riverside PCN", "practices": [ODS] }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_i64().expect("id");
    let issued = app
        .post(
            &format!("/api/v1/federations/{id}/keys"),
            &app.admin_key,
            &json!({ "label": "PCN" }),
        )
        .await;
    let federation = issued.body["key"].as_str().expect("key").to_string();
    let unnamed = app.get("/api/v1/audit", &federation).await;
    assert_eq!(
        unnamed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unnamed.body
    );
    assert_eq!(unnamed.body["error"]["details"][0]["field"], "practice");
    let member = app
        .get(&format!("/api/v1/audit?practice={ODS}"), &federation)
        .await;
    assert_eq!(member.status, StatusCode::OK, "{}", member.body);
    let outsider = app
        .get(&format!("/api/v1/audit?practice={OTHER}"), &federation)
        .await;
    assert_eq!(outsider.status, StatusCode::NOT_FOUND, "{}", outsider.body);
    let bad = app.get("/api/v1/audit?limit=0", &app.admin_key).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["error"]["details"][0]["field"], "limit");
    let unknown = app.get("/api/v1/audit?when=now", &app.admin_key).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
}
