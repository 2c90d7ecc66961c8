//! Fault isolation in dispatch (issue 11, cases 3 and 9), end to end through real providers
//! and loopback peers: a push service answering 429 with an absurd Retry-After pauses only
//! its own origin (no panic, nothing left `sending`, `/metrics` names it) while another
//! practice's SMS, email and push complete; and an SMS provider answering in 2 s does not
//! slow email and push, which share the worker's concurrency slots with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use gateway::config::ProviderConfig;
use gateway::domain::{BroadcastId, Channel, MessageId, MessageState};
use gateway::providers::generate_vapid_keys;
use gateway::store::PushSubscription;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{nhs, provider, spawn_app_with, Db, Options, TestApp};
use crate::push_service::{PushService, Reply as PushReply};
use crate::sms_peer::SmsPeer;
use crate::smtp_server::{Script, Server as SmtpServer};

const SUBJECT: &str = "mailto:it@isolation-surgery.nhs.uk";

/// Puts the VAPID private key in a variable of its own (tests share the process).
fn vapid_private_in_env(value: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "GATEWAY_ISOLATION_VAPID_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::env::set_var(&name, value);
    name
}

/// The three peers a gateway sends through: SMS (webhook), email (SMTP), web push.
struct Peers {
    sms: SmsPeer,
    smtp: SmtpServer,
    vapid_public: String,
    vapid_env: String,
}

impl Peers {
    async fn start(sms_delay: Duration) -> Self {
        let (vapid_public, vapid_private) = generate_vapid_keys();
        Self {
            sms: SmsPeer::start_slow(sms_delay, |_| crate::sms_peer::Answer::Accept).await,
            smtp: SmtpServer::start(Script::default()).await,
            vapid_env: vapid_private_in_env(&vapid_private),
            vapid_public,
        }
    }

    fn providers(&self) -> Vec<ProviderConfig> {
        vec![
            self.sms.provider("peer-sms", None, None),
            provider(
                "relay-email",
                "smtp",
                Channel::Email,
                json!({
                    "host": "127.0.0.1",
                    "port": self.smtp.addr.port(),
                    "security": "plain",
                    "from": "Isolation Surgery <noreply@example.nhs.uk>",
                    "timeout_ms": 5000,
                }),
            ),
            provider(
                "browser-push",
                "webpush",
                Channel::Push,
                json!({
                    "vapid_public_key": self.vapid_public,
                    "vapid_private_key_env": self.vapid_env,
                    "subject": SUBJECT,
                    "allow_insecure_hosts": ["127.0.0.1"],
                    "timeout_ms": 5000,
                }),
            ),
        ]
    }

    async fn push_service(&self, reply: PushReply) -> PushService {
        PushService::start(&self.vapid_public, SUBJECT, reply).await
    }

    /// A gateway sending through these peers with the shipped dispatch settings.
    async fn app(&self, db: Db) -> TestApp {
        spawn_app_with(
            db,
            Options {
                providers: Some(self.providers()),
                push_insecure_hosts: vec!["127.0.0.1".into()],
                concurrency: 64,
                claim_batch: 256,
                ..Options::default()
            },
        )
        .await
    }
}

/// A practice with `each` patients on SMS, `each` on email and `each` on push (subscribed
/// on `push`), numbered from `first`. Returns its key.
async fn mixed_practice(
    app: &TestApp,
    ods: &str,
    first: u32,
    each: u32,
    push: &PushService,
) -> String {
    let key = app.practice_with_key(ods, &format!("Surgery {ods}")).await;
    let patients: Vec<Value> = (first..first + 3 * each)
        .map(|i| match i % 3 {
            0 => json!({ "nhs_number": nhs(i), "contacts": [
                { "channel": "sms", "address": format!("07700 900{:03}", i % 1000) }] }),
            1 => json!({ "nhs_number": nhs(i), "contacts": [
                { "channel": "email", "address": format!("p{i}@example.com") }] }),
            _ => json!({ "nhs_number": nhs(i), "preferred_channel": "push" }),
        })
        .collect();
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/patients"),
            &key,
            &json!({ "patients": patients }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = app.practice_id(ods).await;
    let keys = push.keys();
    for i in (first..first + 3 * each).filter(|i| i % 3 == 2) {
        let subscription = PushSubscription {
            endpoint: push.endpoint(&format!("{ods}-{i}")),
            p256dh: keys.p256dh.clone(),
            auth: keys.auth.clone(),
        };
        let added = app
            .state
            .store
            .add_push_subscription(id, &nhs(i), &subscription, Utc::now())
            .await
            .expect("store");
        assert!(added.is_some(), "patient {i} exists");
    }
    key
}

/// Posts a status change; returns the broadcast id and what it planned per channel.
async fn post_closed(app: &TestApp, ods: &str, key: &str) -> (BroadcastId, HashMap<Channel, i64>) {
    let reply = app
        .post(
            &format!("/api/v1/practices/{ods}/status"),
            key,
            &json!({ "kind": "closed" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let planned = Channel::ALL
        .iter()
        .filter(|c| **c != Channel::NhsApp)
        .map(|c| (*c, reply.body["planned"][c.as_str()].as_i64().unwrap_or(0)))
        .collect();
    (
        BroadcastId::new(reply.body["id"].as_i64().expect("id")),
        planned,
    )
}

/// Waits until every planned message of the broadcast is sent, noting when each channel
/// finished (from `since`); fails after `limit` naming what was still unsent.
async fn finish_times(
    app: &TestApp,
    broadcast: BroadcastId,
    planned: &HashMap<Channel, i64>,
    since: Instant,
    limit: Duration,
) -> HashMap<Channel, Duration> {
    let mut finished = HashMap::new();
    loop {
        let counts = app
            .state
            .store
            .broadcast_counts(broadcast)
            .await
            .expect("counts");
        for (channel, want) in planned {
            let sent: i64 = counts
                .iter()
                .filter(|(c, s, _)| c == channel && *s == MessageState::Sent)
                .map(|(_, _, n)| n)
                .sum();
            if sent == *want && !finished.contains_key(channel) {
                finished.insert(*channel, since.elapsed());
            }
        }
        if finished.len() == planned.len() {
            return finished;
        }
        assert!(
            since.elapsed() < limit,
            "broadcast {broadcast} unfinished after {limit:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A line of the `/metrics` exposition that starts with `prefix`.
async fn metrics_line(app: &TestApp, prefix: &str) -> Option<String> {
    let text = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

/// Case 3: followers whose push services answer 429 with `Retry-After:
/// 18446744073709551615` and `1000000000` pause only their own origins, for at most the
/// cap: no worker panics, nothing is left `sending`, the messages wait in the outbox for at
/// most an hour, `/metrics` names the paused origins, and another practice's SMS, email and
/// push (on another push service) all go at once.
pub async fn a_push_service_asking_for_years_pauses_only_itself(db: Db) {
    let peers = Peers::start(Duration::ZERO).await;
    let huge = peers
        .push_service(PushReply::status(429).header("retry-after", "18446744073709551615"))
        .await;
    let years = peers
        .push_service(PushReply::status(429).header("retry-after", "1000000000"))
        .await;
    let good = peers.push_service(PushReply::status(201)).await;
    let app = peers.app(db).await;

    // Practice A: two anonymous followers on the pausing push services.
    let key_a = app.practice_with_key("R30001", "Follower Surgery").await;
    let a = app.practice_id("R30001").await;
    for (service, name) in [(&huge, "huge"), (&years, "years")] {
        let keys = service.keys();
        let endpoint = service.endpoint(name);
        app.state
            .store
            .add_follower(a, &endpoint, &keys.p256dh, &keys.auth, Utc::now(), u64::MAX)
            .await
            .expect("follower");
    }
    // Practice B: patients on SMS, email and push (on a push service of its own).
    let key_b = mixed_practice(&app, "R30002", 0, 20, &good).await;

    let worker = tokio::spawn(app.state.dispatcher().run(CancellationToken::new()));
    let (closed_a, _) = post_closed(&app, "R30001", &key_a).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while huge.state.received.lock().unwrap().is_empty()
        || years.state.received.lock().unwrap().is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the followers' services were never tried"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Both services asked for a pause; B's broadcast goes through regardless.
    let started = Instant::now();
    let (closed_b, planned) = post_closed(&app, "R30002", &key_b).await;
    assert_eq!(
        planned,
        HashMap::from([
            (Channel::Sms, 20),
            (Channel::Email, 20),
            (Channel::Push, 20)
        ])
    );
    let times = finish_times(&app, closed_b, &planned, started, Duration::from_secs(15)).await;
    let slowest = times.values().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(5),
        "practice B took {times:?}"
    );
    assert_eq!(peers.sms.accepted().len(), 20);
    assert_eq!(peers.smtp.received().len(), 20);
    assert_eq!(good.received().len(), 20);
    assert!(!worker.is_finished(), "the dispatch worker stopped");

    // A's follower messages wait in the outbox, queued (not stuck `sending`), for at most
    // the hour's cap, each tried once.
    let page = app
        .get(&format!("/api/v1/broadcasts/{closed_a}/messages"), &key_a)
        .await
        .body;
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{page}");
    for message in messages {
        let id = message["id"].as_i64().expect("id");
        let (view, attempts) = app
            .state
            .store
            .message(MessageId::new(id))
            .await
            .expect("store")
            .expect("message");
        assert_eq!(view.state, "queued", "message {id}: {view:?}");
        assert_eq!(attempts.len(), 1, "message {id}: {attempts:?}");
        let wait = view.next_attempt_at - Utc::now();
        assert!(
            wait <= chrono::Duration::seconds(3600) && wait > chrono::Duration::seconds(3000),
            "message {id} is due in {wait}"
        );
    }
    assert_eq!(huge.received().len(), 1, "tried once, then left alone");
    assert_eq!(years.received().len(), 1, "tried once, then left alone");

    // /metrics names both paused origins, and only them.
    assert_eq!(
        metrics_line(&app, "gateway_paused_origins ")
            .await
            .as_deref(),
        Some("gateway_paused_origins 2")
    );
    for service in [&huge, &years] {
        let prefix = format!(
            "gateway_origin_paused_seconds{{provider=\"browser-push\",origin=\"http://{}\"}}",
            service.addr
        );
        let line = metrics_line(&app, &prefix).await;
        let seconds: i64 = line
            .as_deref()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} line"));
        assert!((3000..=3600).contains(&seconds), "{line:?}");
    }
    assert!(metrics_line(
        &app,
        &format!(
            "gateway_origin_paused_seconds{{provider=\"browser-push\",origin=\"http://{}\"}}",
            good.addr
        )
    )
    .await
    .is_none());
    worker.abort();
}

/// Runs one broadcast of 900 patients (300 each on SMS, email and push) with the SMS peer
/// answering after `sms_delay`; returns when each channel finished after the post.
async fn mixed_broadcast(db: Db, sms_delay: Duration) -> HashMap<Channel, Duration> {
    let peers = Peers::start(sms_delay).await;
    let push = peers.push_service(PushReply::status(201)).await;
    let app = peers.app(db).await;
    let key = mixed_practice(&app, "R30003", 0, 300, &push).await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.state.dispatcher().run(stop.clone()));
    let started = Instant::now();
    let (id, planned) = post_closed(&app, "R30003", &key).await;
    assert_eq!(
        planned,
        HashMap::from([
            (Channel::Sms, 300),
            (Channel::Email, 300),
            (Channel::Push, 300)
        ])
    );
    let times = finish_times(&app, id, &planned, started, Duration::from_secs(60)).await;
    assert_eq!(push.received().len(), 300);
    stop.cancel();
    let _ = worker.await;
    times
}

/// Case 9: with the SMS provider answering in 2 s, email and push (to instant peers) finish
/// within 1.5 times their time with an instant SMS provider plus half a second, measured in
/// the same test (the instant runs before and after, averaged, so a machine getting busier
/// or quieter in between does not decide the result). The half second absorbs a loaded CI
/// machine's jitter on sub-second runs; being held back by the slow provider costs at least
/// its 2 s answer, so the test still fails if that happens.
pub async fn a_slow_sms_provider_does_not_hold_back_email_and_push(db: Db) {
    let before = mixed_broadcast(db.clone(), Duration::ZERO).await;
    let slow = mixed_broadcast(db.clone(), Duration::from_secs(2)).await;
    let after = mixed_broadcast(db, Duration::ZERO).await;
    eprintln!("instant SMS peer: {before:?} and {after:?}; SMS peer answering in 2 s: {slow:?}");
    assert!(
        slow[&Channel::Sms] >= Duration::from_secs(2),
        "the SMS peer was not slow: {slow:?}"
    );
    for channel in [Channel::Email, Channel::Push] {
        let fast = (before[&channel] + after[&channel]) / 2;
        let slowed = slow[&channel];
        assert!(
            slowed.as_secs_f64() <= fast.as_secs_f64() * 1.5 + 0.5,
            "{channel} took {slowed:?} beside a slow SMS provider, {fast:?} beside an instant one"
        );
    }
}
