//! Issue 11, intake: a superseding status change withdraws the older one whatever crashed
//! or was retried in between; a STOP reaches every practice holding the number; a `replace`
//! import of a file without rows changes nothing; a receipt counts only at the callback of
//! the provider that gave its reference. Each test also runs another practice's broadcast
//! and checks that it completes normally.

use std::collections::HashSet;

use gateway::cli::import_contacts::{self as cli, ImportArgs};
use gateway::domain::{BroadcastId, Channel, MessageId, PracticeId};
use gateway::intake::status::StatusChangeRequest;
use gateway::receipts::{twilio_signature, webhook_signature};
use gateway::store::{IdempotencyClaim, StartOutcome};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{
    nhs, spawn_app, spawn_app_with, Db, Options, TestApp, NOTIFY_TOKEN, TWILIO_TOKEN,
    WEBHOOK_SECRET,
};
use crate::receipts::form;
use crate::sms_peer::SmsPeer;

/// `count` patients on SMS, numbered from `first` (NHS numbers and mobiles both).
fn sms_patients(first: u32, count: u32) -> Value {
    let patients: Vec<Value> = (first..first + count)
        .map(|i| json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{:03}", i) }] }))
        .collect();
    json!({ "patients": patients })
}

/// A practice with `count` SMS patients from `first`; returns its key and row id.
async fn practice(app: &TestApp, ods: &str, first: u32, count: u32) -> (String, PracticeId) {
    let key = app.practice_with_key(ods, &format!("Surgery {ods}")).await;
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &sms_patients(first, count),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (key, app.practice_id(ods).await)
}

/// Posts a status change; returns the broadcast id and the SMS it planned.
async fn post_status(app: &TestApp, ods: &str, key: &str, kind: &str) -> (BroadcastId, i64) {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": kind }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (
        BroadcastId::new(reply.body["id"].as_i64().expect("id")),
        reply.body["planned"]["sms"].as_i64().unwrap_or(0),
    )
}

/// Messages of a broadcast in `state`.
async fn count(app: &TestApp, broadcast_id: BroadcastId, state: &str) -> i64 {
    app.state
        .store
        .broadcast_counts(broadcast_id)
        .await
        .expect("counts")
        .into_iter()
        .filter(|(c, s, _)| *c == Channel::Sms && s.as_str() == state)
        .map(|(_, _, n)| n)
        .sum()
}

/// The ids of a broadcast's messages.
async fn message_ids(app: &TestApp, broadcast_id: BroadcastId) -> HashSet<i64> {
    app.state
        .store
        .broadcast_messages(broadcast_id, MessageId::new(0), 10_000, None)
        .await
        .expect("messages")
        .iter()
        .map(|m| m.id.get())
        .collect()
}

/// Runs SQL on the app's database directly, as another program (or an older version of
/// the gateway) could have left it.
async fn execute(app: &TestApp, statements: &[String]) {
    let url = &app.state.config.database.url;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        for sql in statements {
            sqlx::query(sql).execute(&mut conn).await.expect("sql");
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
        for sql in statements {
            sqlx::query(sql).execute(&mut conn).await.expect("sql");
        }
    }
}

/// The idempotency claim the API makes for `key`'s status changes at `practice_id`.
async fn claim_of(
    app: &TestApp,
    key: &str,
    practice_id: PracticeId,
    idempotency_key: &str,
    request: &StatusChangeRequest,
) -> IdempotencyClaim {
    let record = app
        .state
        .store
        .api_key_by_hash(&gateway::auth::hash_key(key), chrono::Utc::now())
        .await
        .expect("store")
        .expect("key");
    IdempotencyClaim {
        scope: format!("key:{}:practice:{practice_id}:status", record.id),
        key: idempotency_key.into(),
        request_hash: request.fingerprint(),
    }
}

/// Records "restored" for the practice through the store under the API's idempotency claim,
/// as a process that died right after that step leaves it; returns the broadcast id.
async fn record_restored_then_die(
    app: &TestApp,
    key: &str,
    practice_id: PracticeId,
    idempotency_key: &str,
) -> BroadcastId {
    let request = StatusChangeRequest {
        kind: "restored".into(),
        ..Default::default()
    };
    let claim = claim_of(app, key, practice_id, idempotency_key, &request).await;
    let change = request.parse("test").expect("valid");
    match app
        .state
        .store
        .start_status_broadcast(practice_id, &change, Some(&claim), chrono::Utc::now())
        .await
        .expect("store")
    {
        StartOutcome::Started(id) => id,
        other => panic!("not started: {other:?}"),
    }
}

/// Posts "restored" again with the same Idempotency-Key: the client's retry.
async fn replay_restored(
    app: &TestApp,
    ods: &str,
    key: &str,
    idempotency_key: &str,
) -> BroadcastId {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/practices/{ods}/status", app.address))
        .bearer_auth(key)
        .header("idempotency-key", idempotency_key)
        .json(&json!({ "kind": "restored" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let body: Value = response.json().await.expect("json");
    BroadcastId::new(body["id"].as_i64().expect("id"))
}

/// After the dispatch that follows: none of "closed" went (none after "restored", nor at
/// all), every "closed" message is withdrawn naming "restored", "restored" reached everyone,
/// and the other practice's "closed" was sent whole.
async fn assert_no_closed_after_restored(
    app: &TestApp,
    closed: BroadcastId,
    restored: BroadcastId,
    other_closed: BroadcastId,
    patients: i64,
) {
    app.drain().await;
    let closed_ids = message_ids(app, closed).await;
    let restored_ids = message_ids(app, restored).await;
    let lines = app.sent_lines();
    let first_restored = lines
        .iter()
        .position(|l| restored_ids.contains(&l["message_id"].as_i64().unwrap_or(-1)));
    assert!(first_restored.is_some(), "restored was never sent");
    let closed_sent = lines
        .iter()
        .filter(|l| closed_ids.contains(&l["message_id"].as_i64().unwrap_or(-1)))
        .count();
    assert_eq!(
        closed_sent, 0,
        "'closed' messages went out after 'restored' was recorded"
    );
    assert_eq!(count(app, closed, "cancelled").await, patients);
    let page = app
        .state
        .store
        .broadcast_messages(closed, MessageId::new(0), 1, None)
        .await
        .expect("messages");
    let reason = page[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("(restored)"), "{reason}");
    assert_eq!(count(app, restored, "sent").await, patients);
    let superseded = app
        .state
        .store
        .broadcast(closed)
        .await
        .expect("store")
        .expect("broadcast");
    assert!(superseded.superseded_by.is_some());
    // The other practice: untouched, sent in full.
    assert_eq!(count(app, other_closed, "sent").await, patients);
    let other = app
        .state
        .store
        .broadcast(other_closed)
        .await
        .expect("store")
        .expect("broadcast");
    assert!(other.superseded_by.is_none());
}

/// A crash right after "restored" is recorded, then the client's retry with the same
/// Idempotency-Key: "closed" (planned earlier, still queued) never goes out.
pub async fn supersede_survives_a_crash_and_a_replay(db: Db) {
    let app = spawn_app(db).await;
    let (key_a, a) = practice(&app, "R31001", 1, 6).await;
    let (key_b, _) = practice(&app, "R31002", 101, 6).await;
    let (closed, planned) = post_status(&app, "R31001", &key_a, "closed").await;
    assert_eq!(planned, 6);
    let (other_closed, _) = post_status(&app, "R31002", &key_b, "closed").await;

    let restored = record_restored_then_die(&app, &key_a, a, "restore-1").await;
    // Nothing else ran: the record alone has marked "closed" superseded (its queued
    // messages are cancelled by the request's next step, or by dispatch as it meets them).
    let marked = app
        .state
        .store
        .broadcast(closed)
        .await
        .expect("store")
        .expect("broadcast");
    assert!(marked.superseded_by.is_some());
    assert_eq!(
        replay_restored(&app, "R31001", &key_a, "restore-1").await,
        restored
    );
    assert_no_closed_after_restored(&app, closed, restored, other_closed, 6).await;
}

/// A superseded broadcast's queued messages are cancelled a bounded page at a time (so no
/// transaction holds the database for a long list), naming the newer change; a message
/// already sent is left as it is, and another practice's broadcast is untouched.
pub async fn supersede_withdraws_page_by_page_leaving_sent_alone(db: Db) {
    use gateway::store::BroadcastStore;
    let app = spawn_app(db).await;
    let (key_a, a) = practice(&app, "R31005", 1, 25).await;
    let (key_b, _) = practice(&app, "R31006", 101, 25).await;
    let (closed, planned) = post_status(&app, "R31005", &key_a, "closed").await;
    assert_eq!(planned, 25);
    let (other_closed, _) = post_status(&app, "R31006", &key_b, "closed").await;
    let first = *message_ids(&app, closed)
        .await
        .iter()
        .min()
        .expect("a message");
    execute(
        &app,
        &[format!(
            "UPDATE messages SET state = 'sent' WHERE id = {first}"
        )],
    )
    .await;
    record_restored_then_die(&app, &key_a, a, "restore-pages").await;
    assert_eq!(
        count(&app, closed, "queued").await,
        24,
        "marked, not yet cancelled"
    );

    let store: &dyn BroadcastStore = app.state.store.as_ref();
    let mut after = MessageId::new(0);
    let mut pages = Vec::new();
    loop {
        let (cancelled, last) = store
            .cancel_queued_page(closed, after, 10, "superseded (test)", chrono::Utc::now())
            .await
            .expect("page");
        pages.push(cancelled);
        match last {
            Some(last) => after = last,
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![9, 10, 5, 0],
        "pages of ten, the sent one skipped"
    );
    assert_eq!(count(&app, closed, "cancelled").await, 24);
    assert_eq!(count(&app, closed, "sent").await, 1);
    // Again: nothing left to cancel.
    let again = gateway::fanout::cancel_unsent(store, &[closed], "again")
        .await
        .expect("cancel");
    assert_eq!(again, 0);
    assert_eq!(count(&app, other_closed, "queued").await, 25);
}

/// A database left by a version that withdrew in a second step and died between the two
/// ("restored" recorded, "closed" still queued and not superseded): the fan-out resumed at
/// start-up repairs it, and so does a replay of the request.
pub async fn supersede_repairs_what_an_older_crash_left(db: Db) {
    for repair in ["restart", "replay"] {
        let app = spawn_app(db.clone()).await;
        let (key_a, a) = practice(&app, "R31003", 1, 5).await;
        let (key_b, _) = practice(&app, "R31004", 101, 5).await;
        let (closed, _) = post_status(&app, "R31003", &key_a, "closed").await;
        let (other_closed, _) = post_status(&app, "R31004", &key_b, "closed").await;
        let restored = record_restored_then_die(&app, &key_a, a, "restore-2").await;
        execute(
            &app,
            &[
                format!("UPDATE broadcasts SET superseded_by = NULL WHERE id = {closed}"),
                format!(
                    "UPDATE messages SET state = 'queued', last_error = NULL WHERE broadcast_id = {closed}"
                ),
            ],
        )
        .await;
        assert_eq!(count(&app, closed, "queued").await, 5, "the old state");
        match repair {
            // What `serve` does before it listens.
            "restart" => assert_eq!(app.state.fanout.resume_unfinished().await.unwrap(), 1),
            _ => assert_eq!(
                replay_restored(&app, "R31003", &key_a, "restore-2").await,
                restored
            ),
        }
        assert_no_closed_after_restored(&app, closed, restored, other_closed, 5).await;
    }
}

/// Signs and posts an inbound SMS from `from`.
async fn inbound(app: &TestApp, from: &str, text: &str) {
    app.inbound_sms(from, text).await;
}

/// The addresses a broadcast planned messages to.
async fn addresses(app: &TestApp, broadcast_id: BroadcastId) -> Vec<String> {
    app.state
        .store
        .broadcast_messages(broadcast_id, MessageId::new(0), 10_000, None)
        .await
        .expect("messages")
        .into_iter()
        .map(|m| m.address)
        .collect()
}

/// Audit entries of `action` at the practice.
async fn audited(app: &TestApp, practice_id: PracticeId, action: &str) -> Vec<Value> {
    app.state
        .store
        .audit_trail(practice_id, 50)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| {
            serde_json::from_str(e.details.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
        })
        .collect()
}

/// Two practices hold the same mobile and send through the same sender: STOP stops both
/// (and the audit of each says so), START restores both; a third practice is untouched.
pub async fn stop_reaches_every_practice_holding_the_number(db: Db) {
    let app = spawn_app(db).await;
    let shared = "+447700900500";
    let (key_a, a) = practice(&app, "R31011", 1, 3).await;
    let (key_b, b) = practice(&app, "R31012", 11, 3).await;
    let (key_c, c) = practice(&app, "R31013", 21, 3).await;
    for (ods, key, i) in [("R31011", &key_a, 90), ("R31012", &key_b, 91)] {
        let patient = json!({ "patients": [{ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": "07700 900500" }] }] });
        let reply = app
            .post(&format!("/api/v1/practices/{ods}/patients"), key, &patient)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let keys = [("R31011", &key_a), ("R31012", &key_b)];

    inbound(&app, "07700 900500", "STOP").await;
    for (ods, key) in keys {
        let (id, planned) = post_status(&app, ods, key, "closed").await;
        assert_eq!(planned, 3, "{ods} still plans the stopped number");
        assert!(!addresses(&app, id).await.contains(&shared.to_string()));
    }
    for practice_id in [a, b] {
        let entries = audited(&app, practice_id, "contact.opted_out").await;
        assert_eq!(entries.len(), 1, "practice {practice_id}: {entries:?}");
        assert_eq!(entries[0]["practices_reached"], 2);
        assert_eq!(entries[0]["contacts"], 1);
    }
    assert!(audited(&app, c, "contact.opted_out").await.is_empty());
    // The third practice's broadcast goes out whole meanwhile.
    let (other, planned) = post_status(&app, "R31013", &key_c, "closed").await;
    assert_eq!(planned, 3);
    app.drain().await;
    assert_eq!(count(&app, other, "sent").await, 3);

    inbound(&app, shared, "start").await;
    for (ods, key) in keys {
        let (id, planned) = post_status(&app, ods, key, "restored").await;
        assert_eq!(planned, 4, "{ods} did not restore the number");
        assert!(addresses(&app, id).await.contains(&shared.to_string()));
    }
    for practice_id in [a, b] {
        assert_eq!(
            audited(&app, practice_id, "contact.opted_in").await.len(),
            1
        );
    }
}

/// Active patients of a practice.
async fn active(app: &TestApp, practice_id: PracticeId) -> usize {
    app.state
        .store
        .listed_patients(practice_id, "", 100_000)
        .await
        .expect("listing")
        .iter()
        .filter(|p| p.active)
        .count()
}

/// A `replace` import of a file with a header and no rows (an export that failed) is
/// refused through the API and the CLI, and nobody is made inactive.
pub async fn replace_import_without_rows_is_refused(db: Db) {
    let app = spawn_app(db).await;
    let (key_a, a) = practice(&app, "R31021", 1, 5).await;
    let (key_b, _) = practice(&app, "R31022", 101, 4).await;
    let (other, _) = post_status(&app, "R31022", &key_b, "closed").await;
    let header_only = "NHS Number,Forename,Surname,Mobile\n";
    for body in [header_only, "NHS Number,Forename,Surname,Mobile\n\n,,,\n"] {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/practices/R31021/patients/import?mode=replace",
                app.address
            ))
            .bearer_auth(&key_a)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let reply: Value = response.json().await.expect("json");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("no patient rows"), "{reply}");
        assert_eq!(active(&app, a).await, 5);
    }
    // The same file through `gateway import-contacts --replace`.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("empty.csv");
    std::fs::write(&file, header_only).expect("write");
    let args = ImportArgs {
        practice: "R31021".into(),
        file,
        replace: true,
        all_or_nothing: false,
        report: None,
    };
    let refused = cli::run(&app.state.config, args)
        .await
        .expect_err("refused")
        .to_string();
    assert!(refused.contains("no patient rows"), "{refused}");
    assert_eq!(active(&app, a).await, 5);
    // A merge of the same file is harmless and allowed.
    let (status, _) = {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/practices/R31021/patients/import",
                app.address
            ))
            .bearer_auth(&key_a)
            .header("content-type", "text/csv")
            .body(header_only)
            .send()
            .await
            .expect("request");
        (response.status(), ())
    };
    assert_eq!(status, StatusCode::OK);
    let (closed, planned) = post_status(&app, "R31021", &key_a, "closed").await;
    assert_eq!(planned, 5, "every patient is still on the list");
    app.drain().await;
    assert_eq!(count(&app, closed, "sent").await, 5);
    assert_eq!(count(&app, other, "sent").await, 4);
}

/// A receipt for a message one provider sent, posted to another provider kind's callback
/// (rightly signed for that kind) changes nothing; at its own provider's callback it counts.
pub async fn receipts_count_only_with_their_own_provider(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("gateway-sms", None, None)]),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key_a, _) = practice(&app, "R31031", 1, 2).await;
    let (key_b, _) = practice(&app, "R31032", 101, 3).await;
    let (closed, _) = post_status(&app, "R31031", &key_a, "closed").await;
    let (other, _) = post_status(&app, "R31032", &key_b, "closed").await;
    app.drain().await;
    assert_eq!(count(&app, closed, "sent").await, 2);
    let sent = app
        .state
        .store
        .broadcast_messages(closed, MessageId::new(0), 10, None)
        .await
        .expect("messages");
    let (id, reference) = (
        sent[0].id,
        sent[0].provider_ref.clone().expect("the peer's reference"),
    );
    let state = |app: &TestApp| {
        let store = app.state.store.clone();
        async move {
            store
                .message(id)
                .await
                .expect("store")
                .expect("message")
                .0
                .state
        }
    };

    // Twilio's callback, signed with Twilio's token, naming the webhook peer's reference.
    let url = format!(
        "{}/api/v1/receipts/twilio",
        app.state.config.receipts.public_url
    );
    let (body, params) = form(&[("MessageSid", &reference), ("MessageStatus", "undelivered")]);
    let signature = twilio_signature(TWILIO_TOKEN, &url, &params);
    let reply = app
        .callback(
            "/api/v1/receipts/twilio",
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", signature)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(state(&app).await.as_str(), "sent");
    // Notify's callback likewise.
    let body = json!({ "id": reference, "status": "permanent-failure" }).to_string();
    let reply = app
        .callback(
            "/api/v1/receipts/notify",
            "application/json",
            &[("authorization", format!("Bearer {NOTIFY_TOKEN}"))],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(state(&app).await.as_str(), "sent");
    // The webhook kind's own callback settles it.
    let body = json!({ "reference": reference, "status": "delivered" }).to_string();
    let signature = webhook_signature(WEBHOOK_SECRET, body.as_bytes());
    let reply = app
        .callback(
            "/api/v1/receipts/webhook",
            "application/json",
            &[("x-gateway-signature", signature)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(state(&app).await.as_str(), "delivered");
    assert_eq!(count(&app, other, "sent").await, 3);
}

/// Status changes of one practice posted all at once: each supersedes the one before it,
/// so only the newest is left to send and no older notice goes after it.
pub async fn concurrent_status_changes_leave_only_the_newest(db: Db) {
    let app = spawn_app(db).await;
    let (key_a, a) = practice(&app, "R31041", 1, 4).await;
    let (key_b, _) = practice(&app, "R31042", 101, 4).await;
    let (other, _) = post_status(&app, "R31042", &key_b, "closed").await;
    let posts: Vec<_> = (0..12)
        .map(|i| {
            let (address, key) = (app.address.clone(), key_a.clone());
            let kind = if i % 2 == 0 { "closed" } else { "restored" };
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(format!("{address}/api/v1/practices/R31041/status"))
                    .bearer_auth(key)
                    .json(&json!({ "kind": kind }))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), StatusCode::CREATED);
            })
        })
        .collect();
    for post in posts {
        post.await.expect("post");
    }
    let broadcasts = app
        .state
        .store
        .recent_broadcasts(a, 100)
        .await
        .expect("broadcasts");
    assert_eq!(broadcasts.len(), 12);
    let newest = broadcasts.iter().map(|b| b.id).max().expect("newest");
    let live: Vec<BroadcastId> = broadcasts
        .iter()
        .filter(|b| b.superseded_by.is_none())
        .map(|b| b.id)
        .collect();
    assert_eq!(live, vec![newest], "only the newest may stand");
    app.drain().await;
    let newest_ids = message_ids(&app, newest).await;
    let sent: Vec<i64> = app
        .sent_lines()
        .iter()
        .filter_map(|l| l["message_id"].as_i64())
        .collect();
    let older_sent: Vec<i64> = {
        let mut older = Vec::new();
        for b in broadcasts.iter().filter(|b| b.id != newest) {
            let ids = message_ids(&app, b.id).await;
            older.extend(sent.iter().filter(|id| ids.contains(id)));
        }
        older
    };
    assert!(older_sent.is_empty(), "older notices sent: {older_sent:?}");
    assert_eq!(count(&app, newest, "sent").await, 4);
    assert_eq!(newest_ids.len(), 4);
    assert_eq!(count(&app, other, "sent").await, 4);
}
