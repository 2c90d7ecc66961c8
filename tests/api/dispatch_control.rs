//! Dispatch control end to end, against a loopback SMS gateway that records arrival times:
//! provider rate limits, practices taking turns, urgent messages overtaking a broadcast,
//! retries through a flaky provider, failover from a dead one, the patient's daily cap and
//! quiet hours judged across the clock changes.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use gateway::domain::{BroadcastId, Channel, MessageId, PatientId, PracticeId, Priority};
use gateway::store::{NewMessage, Recipient};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{nhs, spawn_app_with, Db, Options, TestApp};
use crate::sms_peer::{busiest_window, Answer, SmsPeer};

/// A practice that messages by SMS only, with `patients` synthetic patients (about two in
/// three have a mobile). Returns its key and id.
async fn sms_practice(app: &TestApp, ods: &str, patients: u64) -> (String, PracticeId) {
    let key = app
        .practice_with_settings(
            json!({ "ods_code": ods, "name": format!("Surgery {ods}"), "channel_order": ["sms"] }),
        )
        .await;
    let id = app.practice_id(ods).await;
    crate::seed::synthetic_patients(&app.state.config.database.url, id, patients)
        .await
        .expect("seed");
    (key, id)
}

/// Posts a status change; returns the broadcast id and how many SMS it planned.
async fn broadcast(app: &TestApp, ods: &str, key: &str, kind: &str) -> (BroadcastId, u64) {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": kind }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let planned = reply.body["planned"]["sms"].as_u64().unwrap_or(0);
    (
        BroadcastId::new(reply.body["id"].as_i64().expect("id")),
        planned,
    )
}

/// A broadcast's message count in `state` on `channel`.
async fn count(app: &TestApp, broadcast_id: BroadcastId, channel: Channel, state: &str) -> i64 {
    app.state
        .store
        .broadcast_counts(broadcast_id)
        .await
        .expect("counts")
        .into_iter()
        .filter(|(c, s, _)| *c == channel && s.as_str() == state)
        .map(|(_, _, n)| n)
        .sum()
}

/// Drains until no message is waiting or retrying (retries are due later, so one pass of
/// `drain` is not enough), for at most `limit`.
async fn drain_all(app: &TestApp, limit: Duration) {
    let started = Instant::now();
    loop {
        app.drain().await;
        if app.state.store.pending_count().await.expect("pending") == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "messages still pending after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn provider_rate_is_never_exceeded(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("limited-sms", Some("50/s"), Some(10))]),
        concurrency: 16,
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key, _) = sms_practice(&app, "R20001", 1500).await;
    let (id, planned) = broadcast(&app, "R20001", &key, "closed").await;
    assert!((990..=1010).contains(&planned), "planned {planned}");
    app.drain().await;

    let arrivals = peer.accepted();
    assert_eq!(arrivals.len() as u64, planned);
    assert_eq!(count(&app, id, Channel::Sms, "sent").await as u64, planned);
    let busiest = busiest_window(&arrivals, Duration::from_secs(1));
    assert!(busiest <= 50 + 10, "{busiest} requests in one second");
    let span = arrivals.last().unwrap().at - arrivals[0].at;
    let ideal = (planned - 10) as f64 / 50.0;
    assert!(
        span.as_secs_f64() <= ideal * 1.10,
        "took {span:?}; the rate allows {ideal:.1} s"
    );
}

pub async fn practices_broadcasting_together_take_turns(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("limited-sms", Some("100/s"), Some(5))]),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key_a, _) = sms_practice(&app, "R20002", 450).await;
    let (key_b, _) = sms_practice(&app, "R20003", 450).await;
    // A's broadcast is wholly queued before B's: without turns, B would wait for all of A.
    let (a, planned_a) = broadcast(&app, "R20002", &key_a, "closed").await;
    let (b, planned_b) = broadcast(&app, "R20003", &key_b, "closed").await;
    app.drain().await;

    assert_eq!(count(&app, a, Channel::Sms, "sent").await as u64, planned_a);
    assert_eq!(count(&app, b, Channel::Sms, "sent").await as u64, planned_b);
    let arrivals = peer.accepted();
    let first_hundred = &arrivals[..100];
    let from_b = first_hundred
        .iter()
        .filter(|a| a.practice == "R20003")
        .count();
    assert!(
        (35..=65).contains(&from_b),
        "{from_b} of the first 100 messages were the second practice's"
    );
}

pub async fn urgent_message_overtakes_a_queued_broadcast(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("limited-sms", Some("200/s"), Some(20))]),
        concurrency: 16,
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key, practice) = sms_practice(&app, "R20004", 30_000).await;
    let (id, planned) = broadcast(&app, "R20004", &key, "systems_down").await;
    assert!(planned >= 19_000, "planned {planned}");

    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.state.dispatcher().run(stop.clone()));
    while peer.accepted().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An appointment change for one patient, queued mid-broadcast.
    let patient = app
        .state
        .store
        .fanout_page(practice, PatientId::new(0), 1)
        .await
        .expect("page")
        .remove(0);
    let now = Utc::now();
    let urgent = NewMessage {
        idempotency_key: "appointment-1".into(),
        broadcast_id: None,
        practice_id: practice,
        recipient: Recipient::Patient {
            patient_id: patient.id,
            contact_id: patient.contacts[0].id,
        },
        channel: Channel::Sms,
        address: "+447911123456".into(),
        priority: Priority::Urgent,
        template_key: "appointment.moved".into(),
        template_version: 1,
        subject: None,
        body: "Your appointment has moved to 10:40 tomorrow.".into(),
        body_html: None,
        link: None,
        next_attempt_at: now,
        created_at: now,
        turn: 0,
    };
    let queued_at = Instant::now();
    assert_eq!(app.state.store.insert_messages(&[urgent]).await.unwrap(), 1);
    app.state.wake.notify_one();
    let sent_at = loop {
        if let Some(a) = peer.accepted().iter().find(|a| a.to == "+447911123456") {
            break a.at;
        }
        assert!(
            queued_at.elapsed() < Duration::from_secs(5),
            "the urgent message did not go"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let waited = sent_at - queued_at;
    stop.cancel();
    worker.await.unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "urgent message waited {waited:?}"
    );
    let still_queued = count(&app, id, Channel::Sms, "queued").await;
    assert!(
        still_queued > 10_000,
        "the broadcast was mid-way: {still_queued} queued"
    );
}

pub async fn flaky_provider_loses_nothing_and_honours_retry_after(db: Db) {
    // 30% of the first 200 requests fail with 500, and four answer 429 with Retry-After: 2;
    // then the provider recovers.
    let peer = SmsPeer::start(|n| match n {
        n if n >= 200 => Answer::Accept,
        n if n % 50 == 25 => Answer::Busy(2),
        n if matches!(n % 10, 1 | 4 | 7) => Answer::Fail,
        _ => Answer::Accept,
    })
    .await;
    let options = Options {
        providers: Some(vec![peer.provider("flaky-sms", None, None)]),
        // One at a time, so every request after a 429 is one the gateway chose to send.
        concurrency: 1,
        settings: vec![
            ("dispatch.retry_base_ms", json!(50)),
            ("dispatch.retry_cap_ms", json!(400)),
            ("failover.failures", json!(1000)),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key, _) = sms_practice(&app, "R20005", 180).await;
    let (id, planned) = broadcast(&app, "R20005", &key, "phones_down").await;
    drain_all(&app, Duration::from_secs(60)).await;

    assert_eq!(count(&app, id, Channel::Sms, "sent").await as u64, planned);
    let arrivals = peer.arrivals();
    let mut accepted: Vec<i64> = peer.accepted().iter().map(|a| a.message_id).collect();
    accepted.sort_unstable();
    let before = accepted.len();
    accepted.dedup();
    assert_eq!(before, accepted.len(), "a message was accepted twice");
    assert_eq!(accepted.len() as u64, planned);
    // Nothing reached the provider while a Retry-After it gave was running.
    let busy: Vec<Instant> = arrivals
        .iter()
        .filter(|a| a.answer == Answer::Busy(2))
        .map(|a| a.at)
        .collect();
    assert_eq!(busy.len(), 4);
    for at in &busy {
        let early = arrivals
            .iter()
            .filter(|a| a.at > *at && a.at < *at + Duration::from_secs(2))
            .count();
        assert_eq!(early, 0, "{early} requests inside a Retry-After");
    }
    // The backoff is visible in the attempts: retries wait, 429s wait at least 2 s.
    let mut retried = 0;
    for a in arrivals.iter().filter(|a| a.answer != Answer::Accept) {
        let (message, attempts) = app
            .state
            .store
            .message(MessageId::new(a.message_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.state, "sent");
        assert_eq!(attempts.last().unwrap().outcome, "accepted");
        for pair in attempts.windows(2) {
            assert_eq!(pair[0].outcome, "retryable", "{attempts:?}");
            let gap = pair[1].started_at - pair[0].finished_at;
            if pair[0].error.as_deref().unwrap_or("").contains("429") {
                assert!(gap >= chrono::Duration::seconds(2), "{gap:?} after a 429");
            }
            assert!(gap >= chrono::Duration::zero());
        }
        retried += 1;
    }
    assert!(retried >= 50, "only {retried} messages were retried");
}

pub async fn dead_provider_fails_over_to_the_next(db: Db) {
    let dead = SmsPeer::start(|_| Answer::Fail).await;
    let backup = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![
            dead.provider("primary-sms", None, None),
            backup.provider("backup-sms", None, None),
        ]),
        concurrency: 1,
        settings: vec![
            ("dispatch.retry_base_ms", json!(20)),
            ("dispatch.retry_cap_ms", json!(100)),
            ("failover.failures", json!(5)),
            ("failover.cool_down_seconds", json!(300)),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key, _) = sms_practice(&app, "R20006", 90).await;
    let (id, planned) = broadcast(&app, "R20006", &key, "closed").await;
    drain_all(&app, Duration::from_secs(30)).await;

    assert_eq!(
        dead.arrivals().len(),
        5,
        "the dead provider was tried past the threshold"
    );
    assert_eq!(backup.accepted().len() as u64, planned);
    assert_eq!(count(&app, id, Channel::Sms, "sent").await as u64, planned);
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_provider_circuit_state{provider=\"primary-sms\"} 2"),
        "{metrics}"
    );
}

pub async fn patient_cap_suppresses_extra_broadcast_messages(db: Db) {
    let options = Options {
        settings: vec![
            ("limits.patient_bulk", json!("2/day")),
            ("limits.patient_burst", json!(2)),
        ],
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("R20007", "Capped Surgery").await;
    let patients = json!({ "patients": (1..=3).map(|i| json!({
        "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 9001{i:02}") }]
    })).collect::<Vec<Value>>() });
    app.post("/api/v1/practices/R20007/patients", &key, &patients)
        .await;
    let mut broadcasts = Vec::new();
    for kind in ["closed", "phones_down", "restored"] {
        let (id, _) = broadcast(&app, "R20007", &key, kind).await;
        app.drain().await;
        broadcasts.push(id);
    }
    assert_eq!(count(&app, broadcasts[0], Channel::Sms, "sent").await, 3);
    assert_eq!(count(&app, broadcasts[1], Channel::Sms, "sent").await, 3);
    assert_eq!(
        count(&app, broadcasts[2], Channel::Sms, "suppressed").await,
        3
    );
    let page = app
        .get(
            &format!(
                "/api/v1/broadcasts/{}/messages?state=suppressed",
                broadcasts[2]
            ),
            &key,
        )
        .await
        .body;
    let reason = page["messages"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("cap of 2/day"), "{page}");
}

/// Quiet hours 21:00 to 08:00 London, judged by a clock set to `now`: how long the
/// broadcast's SMS was held (`None`: it went), and how many emails went at once.
async fn quiet_hold(db: Db, now: DateTime<Utc>) -> (Option<chrono::Duration>, i64) {
    let options = Options {
        quiet_hours_end: "08:00",
        fanout_clock: Some(std::sync::Arc::new(move || now)),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("R20008", "Night Surgery").await;
    let patients = json!({ "patients": [
        { "nhs_number": nhs(1), "contacts": [{ "channel": "sms", "address": "07700 900201" }] },
        { "nhs_number": nhs(2), "contacts": [{ "channel": "email", "address": "night@example.com" }] },
    ]});
    app.post("/api/v1/practices/R20008/patients", &key, &patients)
        .await;
    let (id, _) = broadcast(&app, "R20008", &key, "closed").await;
    let before = Utc::now();
    app.drain().await;
    let page = app
        .get(
            &format!("/api/v1/broadcasts/{id}/messages?state=queued"),
            &key,
        )
        .await
        .body;
    let held = page["messages"][0]["next_attempt_at"]
        .as_str()
        .map(|at| at.parse::<DateTime<Utc>>().unwrap() - before);
    (held, count(&app, id, Channel::Email, "sent").await)
}

pub async fn quiet_hours_hold_dispatch_across_clock_changes(db: Db) {
    let about = |held: Option<chrono::Duration>, minutes: i64| {
        held.is_some_and(|h| (h - chrono::Duration::minutes(minutes)).num_seconds().abs() < 90)
    };
    // 25 October 2026: clocks went back at 02:00 BST, so 06:30 UTC is 06:30 in London.
    let autumn = Utc.with_ymd_and_hms(2026, 10, 25, 6, 30, 0).unwrap();
    let (held, email) = quiet_hold(db.clone(), autumn).await;
    assert!(about(held, 90), "held {held:?} after the autumn change");
    assert_eq!(email, 1, "email is not held");
    // 29 March 2026: clocks went forward at 01:00 GMT, so 06:30 UTC is 07:30 in London.
    let spring = Utc.with_ymd_and_hms(2026, 3, 29, 6, 30, 0).unwrap();
    let (held, _) = quiet_hold(db.clone(), spring).await;
    assert!(about(held, 30), "held {held:?} after the spring change");
    // At noon nothing is held.
    let noon = Utc.with_ymd_and_hms(2026, 3, 29, 11, 0, 0).unwrap();
    let (held, email) = quiet_hold(db, noon).await;
    assert_eq!((held, email), (None, 1));
}

pub async fn restored_withdraws_closed_messages_already_claimed(db: Db) {
    let peer = SmsPeer::accepting().await;
    let options = Options {
        providers: Some(vec![peer.provider("limited-sms", Some("50/s"), Some(1))]),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let (key, _) = sms_practice(&app, "R20010", 900).await;
    let (closed, planned) = broadcast(&app, "R20010", &key, "closed").await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.state.dispatcher().run(stop.clone()));
    // The worker holds hundreds of "closed" messages in memory, waiting for the rate.
    while peer.accepted().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (restored, planned_restored) = broadcast(&app, "R20010", &key, "restored").await;
    let posted = Instant::now();
    let deadline = posted + Duration::from_secs(60);
    while count(&app, restored, Channel::Sms, "sent").await < planned_restored as i64 {
        assert!(Instant::now() < deadline, "restored was not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    worker.await.unwrap();

    let closed_ids: std::collections::HashSet<i64> = app
        .state
        .store
        .broadcast_messages(closed, MessageId::new(0), 10_000, None)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.get())
        .collect();
    // At most the one "closed" message already taken for sending goes after "restored".
    let late = peer
        .accepted()
        .iter()
        .filter(|a| a.at > posted && closed_ids.contains(&a.message_id))
        .count();
    assert!(
        late <= 1,
        "{late} 'closed' messages went after 'restored' was posted"
    );
    let sent = count(&app, closed, Channel::Sms, "sent").await;
    let cancelled = count(&app, closed, Channel::Sms, "cancelled").await;
    assert_eq!(sent + cancelled, planned as i64);
    assert!(cancelled > 500, "only {cancelled} withdrawn");
    let page = app
        .get(
            &format!("/api/v1/broadcasts/{closed}/messages?state=cancelled&limit=1"),
            &key,
        )
        .await
        .body;
    let reason = page["messages"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("(restored)"), "{page}");
}

pub async fn supersede_in_quiet_hours_across_the_autumn_change(db: Db) {
    // 22:30 in London on 25 October 2026, the day the clocks went back (GMT, UTC+0).
    let evening = Utc.with_ymd_and_hms(2026, 10, 25, 22, 30, 0).unwrap();
    let options = Options {
        quiet_hours_end: "08:00",
        fanout_clock: Some(std::sync::Arc::new(move || evening)),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let key = app.practice_with_key("R20011", "Evening Surgery").await;
    let patients = json!({ "patients": (1..=4).map(|i| json!({
        "nhs_number": nhs(i), "contacts": [{ "channel": "sms", "address": format!("07700 9003{i:02}") }]
    })).collect::<Vec<Value>>() });
    app.post("/api/v1/practices/R20011/patients", &key, &patients)
        .await;
    let (closed, _) = broadcast(&app, "R20011", &key, "closed").await;
    app.drain().await;
    // Held for the night: 08:00 GMT is 9.5 hours away.
    assert_eq!(count(&app, closed, Channel::Sms, "queued").await, 4);
    let (restored, _) = broadcast(&app, "R20011", &key, "restored").await;
    let before = Utc::now();
    app.drain().await;
    assert_eq!(count(&app, closed, Channel::Sms, "cancelled").await, 4);
    assert_eq!(count(&app, restored, Channel::Sms, "queued").await, 4);
    let page = app
        .get(&format!("/api/v1/broadcasts/{restored}/messages"), &key)
        .await
        .body;
    let due: DateTime<Utc> = page["messages"][0]["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wait = due - before;
    assert!(
        (wait - chrono::Duration::minutes(570)).num_seconds().abs() < 90,
        "restored held for {wait:?}, not until 08:00 GMT"
    );
    let closed_page = app
        .get(&format!("/api/v1/broadcasts/{closed}/messages"), &key)
        .await
        .body;
    let reason = closed_page["messages"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("superseded by status change"),
        "{closed_page}"
    );
}
