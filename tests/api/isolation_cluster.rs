//! Issue 11, case 12 on one process (SQLite and PostgreSQL): a worker sends a message only
//! while it still holds the message's lease. Here another worker takes a message over while
//! it waits in the first worker's memory (its practice's rate holds it back); the first
//! worker then does not send it, nor record an outcome for it, and another practice's
//! broadcast goes out normally meanwhile.

use std::time::{Duration, Instant};

use chrono::Utc;
use gateway::domain::{BroadcastId, Channel, MessageId, MessageState};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};
use crate::sms_peer::SmsPeer;

/// A practice messaging `patients` patients by SMS; returns its key.
async fn sms_practice(app: &TestApp, ods: &str, first: u32, patients: u32) -> String {
    let key = app
        .practice_with_settings(
            json!({ "ods_code": ods, "name": format!("Surgery {ods}"), "channel_order": ["sms"] }),
        )
        .await;
    let list: Vec<Value> = (first..first + patients)
        .map(|i| {
            json!({ "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 900{:03}", i % 1000) }] })
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": list }),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    key
}

/// Posts a "closed" status change; returns the broadcast id.
async fn broadcast(app: &TestApp, ods: &str, key: &str) -> BroadcastId {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    BroadcastId::new(reply.body["id"].as_i64().expect("id"))
}

/// A broadcast's SMS in `state`.
async fn count(app: &TestApp, broadcast_id: BroadcastId, state: MessageState) -> i64 {
    app.state
        .store
        .broadcast_counts(broadcast_id)
        .await
        .expect("counts")
        .into_iter()
        .filter(|(c, s, _)| *c == Channel::Sms && *s == state)
        .map(|(_, _, n)| n)
        .sum()
}

pub async fn a_lease_taken_over_before_the_send_is_not_sent(db: Db) {
    let peer = SmsPeer::accepting().await;
    let app = spawn_app_with(
        db,
        Options {
            providers: Some(vec![peer.provider("fenced-sms", None, None)]),
            // One broadcast message per practice at once, then one every 4 s: the second
            // message of practice A waits in the worker's memory, leased.
            settings: vec![
                ("limits.practice", json!("15/min")),
                ("limits.practice_burst", json!(1)),
            ],
            ..Options::default()
        },
    )
    .await;
    let key_a = sms_practice(&app, "F10001", 1, 2).await;
    let key_b = sms_practice(&app, "F10002", 101, 1).await;
    let a = broadcast(&app, "F10001", &key_a).await;
    let b = broadcast(&app, "F10002", &key_b).await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.state.dispatcher().run(stop.clone()));

    // Practice B's broadcast and practice A's first message go at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&app, b, MessageState::Sent).await < 1
        || count(&app, a, MessageState::Sent).await < 1
    {
        assert!(
            Instant::now() < deadline,
            "the first messages were not sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting: Vec<MessageId> = app
        .state
        .store
        .broadcast_messages(a, MessageId::new(0), 10, Some(MessageState::Sending))
        .await
        .expect("messages")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(waiting.len(), 1, "A's second message waits, leased");
    let waiting = waiting[0];

    // Another worker, whose clock says the lease has run out, takes the message over.
    let later = Utc::now() + chrono::Duration::hours(1);
    let taken = app
        .state
        .store
        .claim_due(
            "another-worker",
            later,
            later + chrono::Duration::seconds(30),
            10,
            false,
            &[],
        )
        .await
        .expect("claim");
    assert_eq!(
        taken.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![waiting]
    );

    // Past the practice's wait, the first worker would send it; the fence stops it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops")
        .expect("worker");
    let to_peer: Vec<MessageId> = peer
        .accepted()
        .iter()
        .map(|a| MessageId::new(a.message_id))
        .collect();
    assert_eq!(to_peer.len(), 2, "only the first two went: {to_peer:?}");
    assert!(
        !to_peer.contains(&waiting),
        "a message whose lease another worker holds was sent"
    );
    // The message was claimed, never started: taken over without an `unknown` attempt.
    assert_eq!(taken[0].attempt_no, 1, "the lost claim did not count");
    let (view, attempts) = app
        .state
        .store
        .message(waiting)
        .await
        .expect("store")
        .expect("message");
    assert_eq!(view.state, "sending", "still the other worker's");
    assert!(
        attempts.is_empty(),
        "no attempt recorded for it: {attempts:?}"
    );
    // The other worker's outcome is the one that counts.
    let held = app
        .state
        .store
        .complete(
            "another-worker",
            &gateway::store::Completion {
                message_id: waiting,
                attempt_no: taken[0].attempt_no,
                provider: Some("fenced-sms".into()),
                outcome: gateway::domain::AttemptOutcome::Accepted,
                provider_ref: Some("other".into()),
                error: None,
                new_state: MessageState::Sent,
                next_attempt_at: None,
                started_at: later,
                finished_at: later,
                fallback_due_at: None,
            },
        )
        .await
        .expect("complete");
    assert!(held);
    assert_eq!(count(&app, a, MessageState::Sent).await, 2);
    assert_eq!(count(&app, b, MessageState::Sent).await, 1);
}
