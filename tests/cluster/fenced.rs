//! Issue 11, cases 11 and 12, with real processes on one PostgreSQL: three workers share a
//! provider limited to 100/s, each posting to a loopback peer of its own (so the test can
//! tell who sent what). The leader is frozen with SIGSTOP and, at the same time, another
//! worker's database connections are stalled through a loopback proxy, both for 45 s:
//!
//! - the lead passes to the third instance within 10 s and the periodic jobs run there
//!   (it removes the two silent instances);
//! - the stalled worker stops sending at once;
//! - once resumed, neither repeats more than `concurrency` messages (counted at the peers
//!   by message), and the old leader stands down.
//!
//! Then the current leader is killed: the cluster is back to at least 90% of the provider's
//! rate within two heartbeats of it dropping out, and the messages it had claimed but not
//! started get no `unknown` attempt.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gateway::store::{ClusterStore, OutboxStore, PostgresStore};

use crate::fleet::{Fleet, Settings};
use crate::peer::Peer;
use crate::proxy::{authority, Proxy};
use crate::scale_out::{queue_sms, wait_for};
use crate::scratch;

const MESSAGES: usize = 8_000;
const RATE: usize = 100;
const BURST: usize = 10;
const CONCURRENCY: usize = 8;
/// How long the leader is frozen and the other worker cut off.
const STALL: Duration = Duration::from_secs(45);
/// `[cluster] heartbeat_seconds` and `missed_beats` in the fleet's config.
const BEAT: Duration = Duration::from_secs(1);
const STALE_AFTER: Duration = Duration::from_secs(3);

pub async fn frozen_leader_and_stalled_worker_give_way(base_url: String) {
    let (url, name) = scratch::create_postgres_database(&base_url, "gw_fenced")
        .await
        .expect("scratch database");
    let dir = tempfile::tempdir().expect("temp dir");
    let peers = [
        Peer::start().await,
        Peer::start().await,
        Peer::start().await,
    ];
    let proxy = Proxy::start(authority(&url)).await;
    let mut fleet = Fleet::new(
        dir.path(),
        &Settings {
            database_url: &url,
            provider_url: &peers[0].url,
            rate: &format!("{RATE}/s"),
            burst: BURST as u32,
            concurrency: CONCURRENCY,
            lease_seconds: 2,
        },
    );
    let store = PostgresStore::connect(&url, 4).await.expect("connect");
    let proxied = url.replace(&authority(&url), &proxy.address);
    let outcome = story(&store, &peers, &proxy, &url, &proxied, &mut fleet).await;
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

/// The instance running as `pid`, if registered.
async fn instance_of(
    store: &PostgresStore,
    pid: u32,
) -> Result<Option<gateway::store::InstanceRecord>, String> {
    Ok(store
        .instances()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|i| i.pid == i64::from(pid)))
}

async fn story(
    store: &PostgresStore,
    peers: &[Peer; 3],
    proxy: &Proxy,
    url: &str,
    proxied: &str,
    fleet: &mut Fleet,
) -> Result<(), String> {
    let planned = queue_sms(store, MESSAGES).await? as usize;
    let started = Instant::now();
    // `a` starts first and leads; `b` and `c` post to peers of their own, `c` reaches the
    // database through the proxy.
    let a = fleet.start("a", "worker");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !instance_of(store, a).await?.is_some_and(|i| i.is_leader) {
        if Instant::now() > deadline {
            return Err("the first instance did not lead".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = fleet.start_changed("b", "worker", &[(&peers[0].url, &peers[1].url)]);
    let c = fleet.start_changed(
        "c",
        "worker",
        &[(&peers[0].url, &peers[2].url), (url, proxied)],
    );
    wait_for(
        "all three sending",
        Duration::from_secs(30),
        fleet,
        &[],
        || peers.iter().all(|p| p.count() > 0),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a_id = instance_of(store, a)
        .await?
        .ok_or("a is not registered")?
        .id;

    // Freeze the leader and cut the other worker off, together.
    fleet.signal(a, "STOP");
    proxy.forward(false);
    let frozen = Instant::now();
    eprintln!(
        "froze a, stalled c after {:?}; {} sent",
        started.elapsed(),
        peers.iter().map(Peer::count).sum::<usize>()
    );
    // Case 11: another instance leads within 10 s and runs the periodic jobs (removing the
    // frozen leader's row).
    let handed_over = loop {
        let instances = store.instances().await.map_err(|e| e.to_string())?;
        let other_leads = instances.iter().any(|i| i.is_leader && i.id != a_id);
        let a_removed = !instances.iter().any(|i| i.id == a_id);
        if other_leads && a_removed {
            break frozen.elapsed();
        }
        if frozen.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "after 10 s the frozen leader still leads or is registered: {instances:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the lead moved {handed_over:?} after the leader froze");
    // The cut-off worker stops sending at once: nothing new from it once its fence closed.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(frozen.elapsed())).await;
    let c_at_5s = peers[2].count();
    tokio::time::sleep(STALL.saturating_sub(frozen.elapsed())).await;
    let c_before_resume = peers[2].count();
    if c_before_resume != c_at_5s {
        return Err(format!(
            "the cut-off worker sent {} messages while it could not renew its leases",
            c_before_resume - c_at_5s
        ));
    }
    fleet.signal(a, "CONT");
    proxy.forward(true);
    let resumed = Instant::now();
    eprintln!(
        "resumed after {:?}; {} sent",
        started.elapsed(),
        peers.iter().map(Peer::count).sum::<usize>()
    );

    // The old leader stands down: one leader, not `a`.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let instances = store.instances().await.map_err(|e| e.to_string())?;
    let leaders: Vec<_> = instances.iter().filter(|i| i.is_leader).collect();
    if leaders.len() != 1 || leaders[0].pid == i64::from(a) {
        return Err(format!("after resuming, leaders are {leaders:?}"));
    }
    fleet.check_running(&[])?;

    // Kill the leader (b, unless the lead moved again): case 12's rate and unstarted claims.
    let victim = leaders[0].clone();
    let victim_peer = [a, b, c]
        .iter()
        .position(|pid| i64::from(*pid) == victim.pid)
        .ok_or("the leader is none of the three")?;
    fleet.kill(victim.pid as u32);
    let held: Vec<(i64, bool)> = sqlx::query_as(
        "SELECT id, send_started_at IS NOT NULL FROM messages
         WHERE state = 'sending' AND lease_owner = $1",
    )
    .bind(&victim.id)
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    let killed = [victim.pid as u32];
    let unstarted: Vec<i64> = held.iter().filter(|(_, s)| !s).map(|(id, _)| *id).collect();
    let in_flight = held.len() - unstarted.len();
    eprintln!(
        "killed {} after {:?}: {} claimed, {in_flight} started",
        victim.id,
        started.elapsed(),
        held.len()
    );
    if in_flight > CONCURRENCY {
        return Err(format!(
            "{in_flight} sends in flight with concurrency {CONCURRENCY}"
        ));
    }
    // It drops out of the count once its heartbeat is stale.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store
        .live_workers(STALE_AFTER)
        .await
        .map_err(|e| e.to_string())?
        > 2
    {
        if Instant::now() > deadline {
            return Err("the killed instance never dropped out".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped = Instant::now();
    tokio::time::sleep(BEAT * 3).await;
    let survivors: Vec<Instant> = (0..3)
        .filter(|i| *i != victim_peer)
        .flat_map(|i| peers[i].arrivals().into_iter().map(|(at, _)| at))
        .collect();
    // The best one-second rate over windows ending within two heartbeats of the drop-out.
    let best = (0..=20)
        .map(|step| {
            let from = dropped + Duration::from_millis(50 * step);
            let to = from + Duration::from_secs(1);
            survivors
                .iter()
                .filter(|at| **at >= from && **at < to)
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!("{best} sent in the best second within two heartbeats of the drop-out");
    if best * 10 < RATE * 9 {
        return Err(format!(
            "{best}/s within two heartbeats of the dead worker dropping out; the limit is {RATE}/s"
        ));
    }

    let deadline = Instant::now() + Duration::from_secs(150);
    while store.pending_count().await.map_err(|e| e.to_string())? > 0 {
        fleet.check_running(&killed)?;
        if Instant::now() > deadline {
            let left: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                "SELECT state, lease_owner, attempts FROM messages
                 WHERE state IN ('queued', 'sending') LIMIT 5",
            )
            .fetch_all(store.pool())
            .await
            .map_err(|e| e.to_string())?;
            return Err(format!("messages still pending after 150 s, e.g. {left:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state = 'sent'")
        .fetch_one(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    let addresses: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT DISTINCT address FROM messages")
            .fetch_all(store.pool())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let mut seen = HashSet::new();
    for p in peers {
        seen.extend(p.recipients());
    }
    if sent != planned as i64 || !addresses.is_subset(&seen) {
        return Err(format!(
            "{sent} of {planned} sent; {} of {} numbers reached a peer",
            addresses.intersection(&seen).count(),
            addresses.len()
        ));
    }
    eprintln!("all sent after {:?}", started.elapsed());
    fleet.terminate_all(Duration::from_secs(30));

    // Repeats by message (the synthetic patients share a thousand numbers, so not by
    // number), put down to the worker whose copy came first: its outcome was the one lost, so
    // its event explains the repeat. `a` (peer 0) was frozen; `c` (peer 2) was cut off, and
    // may also be the one killed later (then its first copies after the resume are the
    // kill's); the killed worker's first copies are the kill's. A second copy's sender says
    // nothing of the cause: `c` may resend what the frozen `a` lost, and the reverse.
    let mut first: HashMap<i64, (Instant, usize)> = HashMap::new();
    let mut copies: HashMap<i64, usize> = HashMap::new();
    for (i, peer) in peers.iter().enumerate() {
        for (at, id) in peer.arrivals() {
            *copies.entry(id).or_default() += 1;
            let earliest = first.entry(id).or_insert((at, i));
            if at < earliest.0 {
                *earliest = (at, i);
            }
        }
    }
    let mut repeats = HashMap::from([("kill", 0), ("stall", 0), ("freeze", 0), ("none", 0)]);
    for (id, total) in &copies {
        if *total < 2 {
            continue;
        }
        let (at, peer) = first[id];
        let cause = match peer {
            2 if at < resumed => "stall",
            0 => "freeze",
            p if p == victim_peer => "kill",
            _ => "none",
        };
        *repeats.entry(cause).or_default() += total - 1;
    }
    eprintln!("repeats: {repeats:?}");
    for (cause, n) in &repeats {
        if *n > CONCURRENCY {
            return Err(format!(
                "{n} repeats after the {cause}; at most {CONCURRENCY} (the concurrency) may repeat"
            ));
        }
    }
    // Case 12: what the killed worker had claimed but not started came back uncounted.
    let unknown: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts WHERE message_id = ANY($1) AND outcome = 'unknown'",
    )
    .bind(&unstarted)
    .fetch_one(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    if unknown > 0 {
        return Err(format!(
            "{unknown} of the {} messages the killed worker had claimed but not started got an `unknown` attempt",
            unstarted.len()
        ));
    }
    Ok(())
}
