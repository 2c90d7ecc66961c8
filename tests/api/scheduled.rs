//! Status changes planned ahead: created, listed, edited and cancelled through the API with
//! the usual checks and tenancy; each occurrence posted as one broadcast at its instant in
//! the practice's timezone, by one of two instances sharing a database, across the autumn
//! clock change and a restart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Db, Options, TestApp};

/// A test clock every app instance reads; the test moves it.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn at(when: &str) -> Self {
        Self(Arc::new(AtomicI64::new(utc(when).timestamp_millis())))
    }

    fn set(&self, when: &str) {
        self.0.store(utc(when).timestamp_millis(), Ordering::SeqCst);
    }

    fn clock(&self) -> gateway::schedule::Clock {
        let millis = self.0.clone();
        Arc::new(move || {
            DateTime::from_timestamp_millis(millis.load(Ordering::SeqCst)).expect("test time")
        })
    }
}

fn utc(when: &str) -> DateTime<Utc> {
    when.parse().expect("RFC 3339 test time")
}

/// An app on `db` (or sharing `database_url`) reading `clock`, looking for due notices
/// every 10 ms.
async fn app(db: &Db, clock: &TestClock, database_url: Option<String>) -> TestApp {
    spawn_app_with(
        db.clone(),
        Options {
            fanout_clock: Some(clock.clock()),
            database_url,
            settings: vec![("schedule.tick_ms", json!(10))],
            ..Options::default()
        },
    )
    .await
}

/// Long enough for every instance to tick many times.
async fn let_ticks_pass() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

const ODS: &str = "S14001";

fn notices_path() -> String {
    format!("/api/v1/practices/{ODS}/scheduled-notices")
}

async fn broadcasts(app: &TestApp) -> Vec<i64> {
    let practice = app.practice_id(ODS).await;
    let mut ids: Vec<i64> = app
        .state
        .store
        .recent_broadcasts(practice, 1000)
        .await
        .expect("broadcasts")
        .iter()
        .map(|b| b.id.get())
        .collect();
    ids.sort();
    ids
}

/// The notice as the API shows it.
async fn notice(app: &TestApp, key: &str, id: i64) -> Value {
    let reply = app.get(&format!("{}/{id}", notices_path()), key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["scheduled_notice"].clone()
}

/// Waits until the notice has `count` settled (not `claimed`) occurrences.
async fn wait_for_occurrences(app: &TestApp, key: &str, id: i64, count: usize) -> Value {
    for _ in 0..500 {
        let notice = notice(app, key, id).await;
        let settled = notice["occurrences"]
            .as_array()
            .map(|o| o.iter().filter(|o| o["state"] != "claimed").count())
            .unwrap_or(0);
        if settled >= count {
            return notice;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("notice {id} never had {count} settled occurrences");
}

async fn create(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let reply = app.post(&notices_path(), key, &body).await;
    (reply.status, reply.body)
}

fn first_field(body: &Value) -> String {
    body["error"]["details"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub async fn scheduled_notices_are_created_listed_edited_and_cancelled(db: Db) {
    let clock = TestClock::at("2026-10-19T09:00:00Z");
    let app = app(&db, &clock, None).await;
    let key = app.practice_with_key(ODS, "Wednesday Surgery").await;
    let other = app.practice_with_key("S14002", "Other Surgery").await;

    let weekly = json!({ "status": { "kind": "closed", "headline": "Closed for training" },
        "recurrence": { "weekly": { "days": ["wed"], "at": "13:00", "until": "2027-06-30" } } });
    let (status, body) = create(&app, &key, weekly).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let weekly = &body["scheduled_notice"];
    let id = weekly["id"].as_i64().expect("id");
    assert_eq!(weekly["state"], "active");
    assert_eq!(weekly["next_occurrence"]["utc"], "2026-10-21T12:00:00Z");
    assert_eq!(
        weekly["next_occurrence"]["local"],
        "2026-10-21T13:00:00+01:00"
    );
    assert_eq!(weekly["recurrence"]["weekly"]["days"], json!(["wed"]));
    assert_eq!(weekly["status"]["headline"], "Closed for training");

    let dates = json!({ "status": { "kind": "closed" },
        "recurrence": { "dates": ["2026-12-28", "2026-12-25"], "at": "08:00" } });
    let (status, body) = create(&app, &key, dates).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let dates = &body["scheduled_notice"];
    assert_eq!(dates["next_occurrence"]["utc"], "2026-12-25T08:00:00Z");
    assert_eq!(
        dates["recurrence"]["dates"],
        json!(["2026-12-25", "2026-12-28"])
    );

    // Refusals, each naming its field.
    let too_many: Vec<String> = (0..367)
        .map(|d| {
            (utc("2026-11-01T00:00:00Z") + chrono::Duration::days(d))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let cases = [
        (
            json!({ "status": { "kind": "closed" }, "recurrence": { "weekly": { "days": ["wed"], "at": "25:00" } } }),
            "recurrence.weekly.at",
        ),
        (
            json!({ "status": { "kind": "closed" }, "recurrence": { "weekly": { "days": ["wodensday"], "at": "13:00" } } }),
            "recurrence.weekly.days[0]",
        ),
        (
            json!({ "status": { "kind": "closed" }, "send_at": "2026-10-19T08:59:00Z" }),
            "send_at",
        ),
        (
            json!({ "status": { "kind": "closed" }, "send_at": "next tuesday" }),
            "send_at",
        ),
        (
            json!({ "status": { "kind": "closed" }, "send_at": "2029-01-01T09:00:00Z" }),
            "send_at",
        ),
        (
            json!({ "status": { "kind": "flooded" }, "send_at": "2026-10-20T09:00:00Z" }),
            "status.kind",
        ),
        (
            json!({ "status": { "kind": "closed" }, "send_at": "2026-10-20T09:00:00Z",
                "recurrence": { "dates": ["2026-12-25"], "at": "08:00" } }),
            "send_at",
        ),
        (
            json!({ "status": { "kind": "closed" }, "recurrence": { "dates": too_many, "at": "08:00" } }),
            "recurrence.dates",
        ),
        (
            json!({ "status": { "kind": "closed" }, "recurrence": { "dates": ["2026-10-01"], "at": "08:00" } }),
            "recurrence",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = create(&app, &key, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {reply}"
        );
        assert_eq!(first_field(&reply), field, "{body} -> {reply}");
    }

    let reply = app.get(&notices_path(), &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["scheduled_notices"].as_array().map(Vec::len),
        Some(2)
    );

    // Edits are checked against the revision read.
    let path = format!("{}/{id}", notices_path());
    let revision = weekly["revision"].as_i64().expect("revision");
    let edit = |revision: i64| {
        json!({ "revision": revision,
            "recurrence": { "weekly": { "days": ["thu"], "at": "13:00" } } })
    };
    let reply = app
        .request(Method::PATCH, &path, Some(&key), Some(&edit(revision + 5)))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "revision_mismatch");
    let reply = app
        .request(Method::PATCH, &path, Some(&key), Some(&edit(revision)))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let edited = &reply.body["scheduled_notice"];
    assert_eq!(edited["next_occurrence"]["utc"], "2026-10-22T12:00:00Z");
    assert_eq!(edited["revision"].as_i64(), Some(revision + 1));
    assert_eq!(edited["status"]["headline"], "Closed for training");

    // Another practice's notice is not there, whatever the call.
    let foreign = format!("/api/v1/practices/S14002/scheduled-notices/{id}");
    assert_eq!(
        app.get(&foreign, &other).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, &other).await.status, StatusCode::NOT_FOUND);
    let reply = app
        .request(
            Method::PATCH,
            &foreign,
            Some(&other),
            Some(&edit(revision + 1)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    let reply = app
        .post(&format!("{foreign}/cancel"), &other, &json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    // Cancelled: twice is the same, and its occurrence never comes.
    for _ in 0..2 {
        let reply = app.post(&format!("{path}/cancel"), &key, &json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["scheduled_notice"]["state"], "cancelled");
        assert!(reply.body["scheduled_notice"]["next_occurrence"].is_null());
    }
    let reply = app
        .request(Method::PATCH, &path, Some(&key), Some(&edit(revision + 2)))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "notice_not_active");
    clock.set("2026-10-22T12:00:30Z");
    let_ticks_pass().await;
    assert!(broadcasts(&app).await.is_empty());

    let practice = app.practice_id(ODS).await;
    let trail = app
        .state
        .store
        .audit_trail(practice, 50)
        .await
        .expect("audit");
    for action in [
        "scheduled_notice.created",
        "scheduled_notice.edited",
        "scheduled_notice.cancelled",
    ] {
        let subject = format!("scheduled_notice:{id}");
        assert!(
            trail.iter().any(|a| a.action == action
                && a.subject.as_deref() == Some(subject.as_str())
                && a.actor.starts_with("key:")),
            "{action} missing from the audit trail"
        );
    }
}

pub async fn a_one_off_notice_fires_once_and_a_late_one_is_missed(db: Db) {
    let clock = TestClock::at("2026-11-02T09:00:00Z");
    let app = app(&db, &clock, None).await;
    let key = app.practice_with_key(ODS, "Monday Surgery").await;
    let (status, body) = create(
        &app,
        &key,
        json!({ "status": { "kind": "phones_down" }, "send_at": "2026-11-02T09:30:00Z" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let once = body["scheduled_notice"]["id"].as_i64().expect("id");
    let (status, body) = create(
        &app,
        &key,
        json!({ "status": { "kind": "closed" }, "send_at": "2026-11-02T10:00:00Z" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let late = body["scheduled_notice"]["id"].as_i64().expect("id");

    clock.set("2026-11-02T09:29:59Z");
    let_ticks_pass().await;
    assert!(broadcasts(&app).await.is_empty(), "nothing before its time");

    clock.set("2026-11-02T09:30:00Z");
    let notice = wait_for_occurrences(&app, &key, once, 1).await;
    let_ticks_pass().await;
    let sent = broadcasts(&app).await;
    assert_eq!(sent.len(), 1, "one broadcast: {sent:?}");
    assert_eq!(notice["state"], "finished");
    assert!(notice["next_occurrence"].is_null());
    let occurrence = &notice["occurrences"][0];
    assert_eq!(occurrence["state"], "posted");
    assert_eq!(occurrence["due_at"]["utc"], "2026-11-02T09:30:00Z");
    assert_eq!(occurrence["broadcast_id"].as_i64(), Some(sent[0]));
    let broadcast = app
        .get(&format!("/api/v1/broadcasts/{}", sent[0]), &key)
        .await;
    assert_eq!(broadcast.status, StatusCode::OK, "{}", broadcast.body);
    assert_eq!(
        broadcast.body["status_change"]["kind"], "phones_down",
        "{}",
        broadcast.body
    );

    // Every instance was "down" from 09:30 to 11:30: the 10:00 notice is missed, not sent
    // an hour and a half late.
    clock.set("2026-11-02T11:30:00Z");
    let notice = wait_for_occurrences(&app, &key, late, 1).await;
    assert_eq!(notice["occurrences"][0]["state"], "missed");
    assert!(notice["occurrences"][0]["broadcast_id"].is_null());
    assert_eq!(notice["state"], "finished");
    let_ticks_pass().await;
    assert_eq!(broadcasts(&app).await, sent, "still the one broadcast");
}

pub async fn a_weekly_notice_fires_once_per_occurrence_across_the_autumn_change_with_two_instances(
    db: Db,
) {
    let clock = TestClock::at("2026-10-19T08:00:00Z");
    let first = app(&db, &clock, None).await;
    let mut second = app(&db, &clock, Some(first.database_url())).await;
    let key = first.practice_with_key(ODS, "Wednesday Surgery").await;
    let (status, body) = create(
        &second,
        &key,
        json!({ "status": { "kind": "closed", "headline": "Closed Wednesday afternoons for training" },
            "recurrence": { "weekly": { "days": ["wed"], "at": "13:00" } } }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["scheduled_notice"]["id"].as_i64().expect("id");

    // Wednesday 21 October, 13:00 BST = 12:00Z.
    clock.set("2026-10-21T11:59:59Z");
    let_ticks_pass().await;
    assert!(broadcasts(&first).await.is_empty(), "nothing before 12:00Z");
    clock.set("2026-10-21T12:00:00Z");
    wait_for_occurrences(&first, &key, id, 1).await;
    let_ticks_pass().await;
    assert_eq!(broadcasts(&first).await.len(), 1);

    // The clocks go back in the night of Saturday 24 to Sunday 25 October.
    for when in [
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z",
        "2026-10-27T12:00:00Z",
    ] {
        clock.set(when);
        let_ticks_pass().await;
    }
    // Wednesday 28 October, 13:00 GMT = 13:00Z: nothing at 12:00Z.
    clock.set("2026-10-28T12:00:00Z");
    let_ticks_pass().await;
    assert_eq!(broadcasts(&first).await.len(), 1, "12:00Z is 12:00 GMT");
    clock.set("2026-10-28T13:00:00Z");
    wait_for_occurrences(&first, &key, id, 2).await;
    let_ticks_pass().await;
    assert_eq!(broadcasts(&second).await.len(), 2);

    // One instance restarts; the next Wednesday still comes once.
    let url = second.database_url();
    drop(second);
    second = app(&db, &clock, Some(url)).await;
    clock.set("2026-11-04T13:00:00Z");
    wait_for_occurrences(&second, &key, id, 3).await;
    for when in [
        "2026-11-04T13:00:01Z",
        "2026-11-04T14:00:00Z",
        "2026-11-10T12:00:00Z",
    ] {
        clock.set(when);
        let_ticks_pass().await;
    }
    let sent = broadcasts(&first).await;
    assert_eq!(sent.len(), 3, "one broadcast per occurrence: {sent:?}");

    let notice = notice(&first, &key, id).await;
    let occurrences = notice["occurrences"].as_array().expect("occurrences");
    let due: Vec<&str> = occurrences
        .iter()
        .map(|o| o["due_at"]["utc"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        due,
        [
            "2026-11-04T13:00:00Z",
            "2026-10-28T13:00:00Z",
            "2026-10-21T12:00:00Z"
        ]
    );
    let locals: Vec<&str> = occurrences
        .iter()
        .map(|o| o["due_at"]["local"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        locals,
        [
            "2026-11-04T13:00:00+00:00",
            "2026-10-28T13:00:00+00:00",
            "2026-10-21T13:00:00+01:00"
        ]
    );
    let mut posted: Vec<i64> = occurrences
        .iter()
        .map(|o| {
            assert_eq!(o["state"], "posted", "{o}");
            o["broadcast_id"].as_i64().expect("broadcast id")
        })
        .collect();
    posted.sort();
    assert_eq!(posted, sent, "each occurrence is one of the broadcasts");
    assert_eq!(notice["next_occurrence"]["utc"], "2026-11-11T13:00:00Z");
}

/// Posts a console form as the signed-in session.
async fn console_form(
    app: &TestApp,
    session: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    crate::console::client()
        .post(format!("{}{path}", app.address))
        .header(reqwest::header::COOKIE, format!("gw_session={session}"))
        .form(fields)
        .send()
        .await
        .expect("form")
}

pub async fn the_console_lists_plans_changes_and_cancels_scheduled_notices(db: Db) {
    use crate::console::{csrf_in, get, sign_in, PASSWORD};
    let clock = TestClock::at("2026-10-19T09:00:00Z");
    let app = app(&db, &clock, None).await;
    let key = app.practice_with_key(ODS, "Wednesday Surgery").await;
    app.practice_with_key("S14002", "Other Surgery").await;
    let own = app.practice_id(ODS).await;
    gateway::auth::create_user(
        app.state.store.as_ref(),
        "reception",
        PASSWORD,
        gateway::store::KeyScope::Practice(own),
    )
    .await
    .expect("user");
    let session = sign_in(&app, "reception", PASSWORD).await.expect("session");
    let page_path = format!("/console/practices/{ODS}/scheduled");
    let (status, page) = get(&app, &page_path, &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Nothing is scheduled."), "{page}");
    let (status, _) = get(&app, "/console/practices/S14002/scheduled", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let csrf = csrf_in(&page);

    let weekly = [
        ("kind", "closed"),
        ("headline", "Closed for training"),
        ("repeat", "weekly"),
        ("days", "wed"),
        ("at", "13:00"),
    ];
    let forged = console_form(&app, &session, &page_path, &weekly).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let mut fields = weekly.to_vec();
    fields.push(("csrf", &csrf));
    let planned = console_form(&app, &session, &page_path, &fields).await;
    assert_eq!(planned.status(), StatusCode::SEE_OTHER);
    // A one-off read in the practice's local time: 09:30 BST is 08:30Z.
    let once = [
        ("csrf", csrf.as_str()),
        ("kind", "phones_down"),
        ("repeat", "once"),
        ("send_at", "2026-10-20T09:30"),
    ];
    let planned = console_form(&app, &session, &page_path, &once).await;
    assert_eq!(planned.status(), StatusCode::SEE_OTHER);
    let bad = [
        ("csrf", csrf.as_str()),
        ("kind", "closed"),
        ("repeat", "weekly"),
        ("days", "someday"),
        ("at", "13:00"),
    ];
    let refused = console_form(&app, &session, &page_path, &bad).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let list = app.get(&notices_path(), &key).await;
    let notices = list.body["scheduled_notices"].as_array().expect("notices");
    assert_eq!(notices.len(), 2, "{}", list.body);
    let one_off = notices
        .iter()
        .find(|n| n["send_at"].is_string())
        .expect("the one-off");
    assert_eq!(one_off["send_at"], "2026-10-20T08:30:00Z");
    let weekly = notices
        .iter()
        .find(|n| n["recurrence"].is_object())
        .expect("the weekly notice");
    let id = weekly["id"].as_i64().expect("id");
    let (_, page) = get(&app, &page_path, &session).await;
    assert!(page.contains("closed: Closed for training"), "{page}");
    assert!(page.contains("Every Wed at 13:00"), "{page}");
    assert!(
        page.contains("Next: Wednesday 21 October at 13:00"),
        "{page}"
    );

    // The change form is filled in with the notice as it is.
    assert!(
        page.contains(&format!(
            "id=\"edit-{id}-days\" name=\"days\" value=\"wed\""
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "id=\"edit-{id}-at\" name=\"at\" type=\"time\" value=\"13:00\""
        )),
        "{page}"
    );
    let revision = weekly["revision"].as_i64().expect("revision").to_string();
    let edit = format!("{page_path}/{id}/edit");
    let friday = [
        ("csrf", csrf.as_str()),
        ("revision", revision.as_str()),
        ("kind", "closed"),
        ("headline", "Closed for training on Fridays"),
        ("repeat", "weekly"),
        ("days", "fri"),
        ("at", "13:30"),
    ];
    let forged = console_form(&app, &session, &edit, &friday[1..]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let changed = console_form(&app, &session, &edit, &friday).await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    // The same revision again is stale: someone (here, the same form) changed it since.
    let stale = console_form(&app, &session, &edit, &friday).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let edited = notice(&app, &key, id).await;
    assert_eq!(
        edited["status"]["headline"], "Closed for training on Fridays",
        "{edited}"
    );
    let (_, page) = get(&app, &page_path, &session).await;
    assert!(page.contains("Every Fri at 13:30"), "{page}");
    assert!(page.contains("Next: Friday 23 October at 13:30"), "{page}");

    let cancel = format!("{page_path}/{id}/cancel");
    let forged = console_form(&app, &session, &cancel, &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let foreign = format!("/console/practices/S14002/scheduled/{id}/cancel");
    let other = console_form(&app, &session, &foreign, &[("csrf", &csrf)]).await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let cancelled = console_form(&app, &session, &cancel, &[("csrf", &csrf)]).await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    let notice = notice(&app, &key, id).await;
    assert_eq!(notice["state"], "cancelled");
    assert_eq!(notice["cancelled_by"], "user:reception");
    let (_, page) = get(&app, &page_path, &session).await;
    assert!(page.contains("Cancelled by user:reception"), "{page}");
}

pub async fn an_afternoon_closure_is_restored_at_its_end(db: Db) {
    let clock = TestClock::at("2026-10-19T09:00:00Z");
    let app = app(&db, &clock, None).await;
    let key = app.practice_with_key(ODS, "Wednesday Surgery").await;
    let (status, body) = create(
        &app,
        &key,
        json!({ "status": { "kind": "closed" }, "ends_at": "12:00",
            "recurrence": { "weekly": { "days": ["wed"], "at": "13:00" } } }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(first_field(&body), "ends_at");
    let (status, body) = create(
        &app,
        &key,
        json!({ "status": { "kind": "closed", "headline": "Closed this afternoon for training" },
            "ends_at": "17:00",
            "recurrence": { "weekly": { "days": ["wed"], "at": "13:00" } } }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scheduled_notice"]["ends_at"], "17:00");
    let id = body["scheduled_notice"]["id"].as_i64().expect("id");

    clock.set("2026-10-21T12:00:00Z");
    wait_for_occurrences(&app, &key, id, 1).await;
    clock.set("2026-10-21T15:59:59Z");
    let_ticks_pass().await;
    assert_eq!(
        broadcasts(&app).await.len(),
        1,
        "still closed before 17:00 BST"
    );
    clock.set("2026-10-21T16:00:00Z");
    let notice = wait_for_occurrences(&app, &key, id, 2).await;
    let_ticks_pass().await;
    let sent = broadcasts(&app).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let events: Vec<(&str, &str)> = notice["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .map(|o| {
            (
                o["event"].as_str().unwrap_or_default(),
                o["due_at"]["local"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("end", "2026-10-21T17:00:00+01:00"),
            ("start", "2026-10-21T13:00:00+01:00")
        ]
    );
    let closed = app
        .get(&format!("/api/v1/broadcasts/{}", sent[0]), &key)
        .await;
    assert_eq!(
        closed.body["status_change"]["kind"], "closed",
        "{}",
        closed.body
    );
    let restored = app
        .get(&format!("/api/v1/broadcasts/{}", sent[1]), &key)
        .await;
    assert_eq!(
        restored.body["status_change"]["kind"], "restored",
        "{}",
        restored.body
    );
    assert_eq!(
        notice["next_occurrence"]["local"],
        "2026-10-28T13:00:00+00:00"
    );
}
