//! Three gateway processes share one provider limited to 100/s; one is killed mid-run and
//! a fourth joins. Every message reaches the provider, none twice unless it was in flight
//! in the killed instance, and no second at the provider exceeds the rate plus the burst.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::domain::ChannelOrder;
use gateway::fanout::Fanout;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::{ClusterStore, OutboxStore, PostgresStore, Store};
use tokio::sync::Notify;

use crate::fleet::{Fleet, Settings};
use crate::peer::{busiest_window, Peer};
use crate::scratch;

const MESSAGES: usize = 5_000;
const RATE: usize = 100;
const BURST: usize = 10;
const CONCURRENCY: usize = 8;

pub async fn instances_share_one_rate_survive_a_kill_and_a_join(base_url: String) {
    let (url, name) = scratch::create_postgres_database(&base_url, "gw_cluster")
        .await
        .expect("scratch database");
    let dir = tempfile::tempdir().expect("temp dir");
    let peer = Peer::start().await;
    let mut fleet = Fleet::new(
        dir.path(),
        &Settings {
            database_url: &url,
            provider_url: &peer.url,
            rate: &format!("{RATE}/s"),
            burst: BURST as u32,
            concurrency: CONCURRENCY,
            lease_seconds: 2,
        },
    );
    let store = PostgresStore::connect(&url, 4).await.expect("connect");
    let outcome = story(&store, &peer, &mut fleet).await;
    let logs = fleet.logs();
    drop(fleet);
    store.pool().close().await;
    let _ = scratch::drop_postgres_database(&base_url, &name).await;
    match outcome {
        Err(e) => panic!("{e}\n{logs}"),
        Ok(()) if std::env::var_os("GATEWAY_TEST_SHOW_LOGS").is_some() => eprintln!("{logs}"),
        Ok(()) => {}
    }
}

/// Queues 5,000 SMS for 5,000 patients (7,500 synthetic patients, two in three with a mobile).
async fn queue_broadcast(store: &PostgresStore) -> Result<u64, String> {
    queue_sms(store, MESSAGES).await
}

/// Queues about `messages` SMS, one per patient (half as many again synthetic patients, two
/// in three with a mobile); returns how many.
pub async fn queue_sms(store: &PostgresStore, messages: usize) -> Result<u64, String> {
    store.migrate().await.map_err(|e| e.to_string())?;
    let pool = store.pool().clone();
    let store: Arc<dyn Store> = Arc::new(store.clone());
    let sms = ChannelOrder::parse("sms").map_err(|e| e.reason)?;
    let practice = crate::seed::practice(store.as_ref(), "C10001", sms)
        .await
        .map_err(|e| e.to_string())?;
    let mut connection = pool.acquire().await.map_err(|e| e.to_string())?;
    crate::seed::postgres_patients(&mut connection, practice.id, (messages * 3 / 2) as u64)
        .await
        .map_err(|e| e.to_string())?;
    drop(connection);
    let id = crate::seed::systems_down(store.as_ref(), practice.id, "cluster test")
        .await
        .map_err(|e| e.to_string())?;
    let templates = MessageTemplates::builtin().map_err(|e| e.to_string())?;
    let fanout = Fanout::new(
        store,
        Arc::new(TemplateRegistry::fixed(templates)),
        1000,
        Arc::new(Notify::new()),
    );
    let summary = fanout.run_broadcast(id).await.map_err(|e| e.to_string())?;
    Ok(summary.inserted)
}

/// Waits until `done` holds, checking every 50 ms that the instances still run.
pub async fn wait_for(
    what: &str,
    limit: Duration,
    fleet: &mut Fleet,
    killed: &[u32],
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        fleet.check_running(killed)?;
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn story(store: &PostgresStore, peer: &Peer, fleet: &mut Fleet) -> Result<(), String> {
    let planned = queue_broadcast(store).await?;
    if planned != MESSAGES as u64 {
        return Err(format!("planned {planned} messages, not {MESSAGES}"));
    }
    let started = Instant::now();
    fleet.start("a", "all");
    fleet.start("b", "worker");
    fleet.start("c", "worker");

    // Kill the leader a third of the way through.
    wait_for(
        "the first third",
        Duration::from_secs(60),
        fleet,
        &[],
        || peer.count() >= MESSAGES / 3,
    )
    .await?;
    let instances = store.instances().await.map_err(|e| e.to_string())?;
    let leader = instances
        .iter()
        .find(|i| i.is_leader)
        .ok_or("no instance leads")?
        .clone();
    fleet.kill(leader.pid as u32);
    let in_flight: HashSet<i64> =
        sqlx::query_scalar("SELECT id FROM messages WHERE state = 'sending' AND lease_owner = $1")
            .bind(&leader.id)
            .fetch_all(store.pool())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let killed = [leader.pid as u32];
    eprintln!(
        "killed leader {} after {:?}; it held {} leases",
        leader.id,
        started.elapsed(),
        in_flight.len()
    );

    // Another instance takes over the periodic jobs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now_leading = store.instances().await.map_err(|e| e.to_string())?;
        if now_leading.iter().any(|i| i.is_leader && i.id != leader.id) {
            break;
        }
        if Instant::now() > deadline {
            return Err("no instance took over leadership within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A fourth instance joins at three fifths.
    wait_for(
        "three fifths",
        Duration::from_secs(60),
        fleet,
        &killed,
        || peer.count() >= MESSAGES * 3 / 5,
    )
    .await?;
    fleet.start("d", "worker");
    eprintln!("fourth instance started after {:?}", started.elapsed());

    wait_for(
        "every message",
        Duration::from_secs(90),
        fleet,
        &killed,
        || peer.times_each().len() >= MESSAGES,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.pending_count().await.map_err(|e| e.to_string())? > 0 {
        if Instant::now() > deadline {
            return Err("messages still pending after every one reached the provider".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("all sent after {:?}", started.elapsed());
    fleet.terminate_all(Duration::from_secs(30));

    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state = 'sent'")
        .fetch_one(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    if sent != MESSAGES as i64 {
        return Err(format!("{sent} of {MESSAGES} messages are sent"));
    }
    let times = peer.times_each();
    let repeated: Vec<(i64, usize)> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    let repeats: usize = repeated.iter().map(|(_, n)| n - 1).sum();
    if repeats > CONCURRENCY {
        return Err(format!(
            "{repeats} repeats; the killed instance could have had at most {CONCURRENCY} in flight"
        ));
    }
    if let Some((id, _)) = repeated.iter().find(|(id, _)| !in_flight.contains(id)) {
        return Err(format!(
            "message {id} reached the provider twice but the killed instance did not hold it"
        ));
    }
    // Each repeat's lost first attempt is on record as `unknown`.
    let repeated_ids: Vec<i64> = repeated.iter().map(|(id, _)| *id).collect();
    let unknown: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT message_id) FROM attempts
         WHERE message_id = ANY($1) AND outcome = 'unknown'",
    )
    .bind(&repeated_ids)
    .fetch_one(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    if unknown != repeated_ids.len() as i64 {
        return Err(format!(
            "{} repeated messages but {unknown} with an `unknown` attempt",
            repeated_ids.len()
        ));
    }
    let (busiest, at) = busiest_window(&peer.arrivals(), Duration::from_secs(1));
    eprintln!(
        "{} requests, {repeats} repeated, busiest second {busiest} (from {at:?} after the first)",
        peer.count()
    );
    if busiest > RATE + BURST {
        return Err(format!(
            "{busiest} requests within one second; the limit is {RATE}/s with a burst of {BURST}"
        ));
    }
    // Instances stopped by SIGTERM deregistered; only the killed one can be left.
    let left = store.instances().await.map_err(|e| e.to_string())?;
    if left.iter().any(|i| i.id != leader.id) {
        return Err(format!(
            "instances still registered after SIGTERM: {:?}",
            left.iter().map(|i| &i.id).collect::<Vec<_>>()
        ));
    }
    Ok(())
}
