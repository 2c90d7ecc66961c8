//! `dispatch`: how fast dispatch sends through an unlimited provider
//! (messages/s and CPU per message), how close it keeps to a limited provider's rate, and
//! how long urgent messages wait behind a queued broadcast. The provider is the `webhook`
//! kind talking to a loopback HTTP server in this process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{median, process_cpu, seed, BenchStore};
use gateway::config::{Config, ProviderConfig};
use gateway::dispatch::{DispatchControl, Dispatcher};
use gateway::domain::{BroadcastId, Channel, ChannelOrder, PatientId, PracticeId, Priority};
use gateway::fanout::Fanout;
use gateway::providers::ProviderRegistry;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::{BroadcastStore, NewMessage, Practice, Recipient, Store};

/// Environment variable holding the loopback peer's signing secret.
pub(super) const SECRET_ENV: &str = "GATEWAY_BENCH_WEBHOOK_SECRET";

/// Options of the `dispatch` benchmark.
#[derive(Debug, clap::Args)]
pub struct DispatchArgs {
    /// Messages per run through the unlimited provider.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// Unlimited runs to time; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// The limited provider's configured rate, messages per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Messages sent through the limited provider.
    #[arg(long, default_value_t = 5_000)]
    pub limited_messages: u64,
    /// Broadcast messages queued ahead in the head-of-line run.
    #[arg(long, default_value_t = 20_000)]
    pub backlog: u64,
    /// Urgent messages timed in the head-of-line run.
    #[arg(long, default_value_t = 100)]
    pub urgent: u32,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Instead of the three measurements above: unlimited throughput with this many
    /// `gateway serve --role worker` processes sharing the PostgreSQL database, e.g.
    /// `--workers 1,2,3` (needs `--postgres`).
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<u32>,
    /// The `gateway` binary the `--workers` processes run (default: the one Cargo built with
    /// this benchmark).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
}

/// Runs the three measurements and prints a summary line for each.
pub async fn dispatch(
    config: &Config,
    args: DispatchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    if !args.workers.is_empty() {
        return super::workers::workers(config, &args).await;
    }
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = run(bench.store.clone(), &bench.url, config, &args).await;
    bench.close().await?;
    result
}

/// What the loopback SMS gateway has received: when, which message, to whom.
#[derive(Default)]
pub(super) struct Received {
    arrivals: Mutex<Vec<(Instant, String)>>,
}

impl Received {
    /// Everything received since the last call.
    pub(super) fn take(&self) -> Vec<(Instant, String)> {
        std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many requests are waiting to be taken.
    pub(super) fn count(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Starts the loopback SMS gateway; returns its URL, what it receives, and its task.
pub(super) async fn start_peer(
) -> std::io::Result<(String, Arc<Received>, tokio::task::JoinHandle<()>)> {
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let peer_url = format!("http://{}/messages", listener.local_addr()?);
    let peer = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((peer_url, received, peer))
}

async fn receive(State(received): State<Arc<Received>>, Json(body): Json<Value>) -> Json<Value> {
    let to = body["to"].as_str().unwrap_or_default().to_string();
    received
        .arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Instant::now(), to));
    Json(json!({ "id": body["message_id"] }))
}

/// Everything one measurement needs: a practice, its patients, a peer, and a way to queue
/// a broadcast.
struct Bench {
    store: Arc<dyn Store>,
    /// The store's database, for seeding.
    url: String,
    config: Config,
    practice: Practice,
    fanout: Fanout,
    received: Arc<Received>,
    peer_url: String,
}

impl Bench {
    /// A dispatcher sending SMS through the peer, at `rate` per second if given, with a
    /// burst of 50 ms of traffic (which absorbs timer jitter).
    fn dispatcher(&self, rate: Option<u32>) -> Result<(Dispatcher, Arc<Notify>), String> {
        let provider = ProviderConfig {
            name: format!(
                "bench-sms-{}",
                rate.map_or("unlimited".into(), |r| r.to_string())
            ),
            kind: "webhook".into(),
            channel: Channel::Sms,
            rate: rate.map(|r| format!("{r}/s").parse()).transpose()?,
            burst: rate.map(burst_of),
            price_pence: None,
            settings: json!({ "url": self.peer_url, "signing_secret_env": SECRET_ENV })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let mut config = self.config.clone();
        config.providers = vec![provider];
        // Every run messages the same patients: no daily cap here.
        config.limits.patient_bulk = None;
        let registry =
            ProviderRegistry::from_config(&config.providers).map_err(|e| e.to_string())?;
        let control = Arc::new(DispatchControl::new(&registry, &config));
        let wake = Arc::new(Notify::new());
        let dispatcher = Dispatcher::new(
            self.store.clone(),
            control,
            config.dispatch.clone(),
            wake.clone(),
        );
        Ok((dispatcher, wake))
    }

    /// Queues one broadcast to every patient; returns how many messages it planned.
    async fn queue_broadcast(&self) -> Result<u64, Box<dyn std::error::Error>> {
        queue_broadcast(self.store.as_ref(), &self.fanout, self.practice.id).await
    }
}

/// Queues one broadcast to every patient of the practice; returns how many messages it planned.
pub(super) async fn queue_broadcast(
    store: &dyn BroadcastStore,
    fanout: &Fanout,
    practice_id: PracticeId,
) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(start_broadcast(store, fanout, practice_id).await?.1)
}

/// Queues one broadcast to every patient of the practice; returns it and how many messages
/// it planned.
pub(super) async fn start_broadcast(
    store: &dyn BroadcastStore,
    fanout: &Fanout,
    practice_id: PracticeId,
) -> Result<(BroadcastId, u64), Box<dyn std::error::Error>> {
    let id = super::seed::systems_down(store, practice_id, "bench").await?;
    Ok((id, fanout.run_broadcast(id).await?.inserted))
}

async fn run(
    store: Arc<dyn Store>,
    url: &str,
    config: &Config,
    args: &DispatchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var(SECRET_ENV, "bench-secret");
    let (peer_url, received, peer) = start_peer().await?;

    let kind = store.kind();
    let mut bench = Bench {
        practice: seed::practice(store.as_ref(), "BENCH2", ChannelOrder::parse("sms")?).await?,
        fanout: Fanout::new(
            store.clone(),
            Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
            config.fanout.batch_size,
            Arc::new(Notify::new()),
        ),
        store,
        url: url.to_string(),
        config: config.clone(),
        received,
        peer_url,
    };
    let result = measure(&mut bench, kind, args).await;
    peer.abort();
    result
}

async fn measure(
    bench: &mut Bench,
    kind: &str,
    args: &DispatchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    // Two in three synthetic patients have a mobile; the practice messages by SMS only.
    let patients = args.messages.max(args.limited_messages).max(args.backlog) * 3 / 2 + 3;
    seed::synthetic_patients(&bench.url, bench.practice.id, patients).await?;

    // 1. Unlimited: how fast, and how much CPU per message (this process, peer included).
    let mut rates = Vec::new();
    let mut cpu_per_message = Vec::new();
    for run in 1..=args.runs.max(1) {
        let planned = bench.queue_broadcast().await?.min(args.messages);
        let (dispatcher, _) = bench.dispatcher(None)?;
        let cpu = process_cpu();
        let started = Instant::now();
        dispatcher.run_until_idle().await?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu).as_secs_f64();
        let sent = bench.received.take().len() as f64;
        eprintln!(
            "run {run}: {sent} messages (planned {planned}) in {seconds:.2} s = {:.0}/s, {:.0} µs CPU each",
            sent / seconds,
            cpu / sent * 1e6
        );
        rates.push(sent / seconds);
        cpu_per_message.push(cpu / sent * 1e6);
    }
    println!(
        "dispatch {kind} unlimited: messages={} runs={} median={:.0} messages/s cpu_per_message={:.0} µs (concurrency={} claim_batch={})",
        args.messages,
        rates.len(),
        median(&mut rates),
        median(&mut cpu_per_message),
        bench.config.dispatch.concurrency,
        bench.config.dispatch.claim_batch,
    );

    // 2. Limited: the achieved rate against the configured one.
    let limited = limited_patients(bench, args.limited_messages).await?;
    let (dispatcher, _) = bench.dispatcher(Some(args.rate))?;
    dispatcher.run_until_idle().await?;
    let arrivals = bench.received.take();
    // The first burst goes at once; the rate is what follows it.
    let steady = arrivals
        .get(burst_of(args.rate) as usize..)
        .unwrap_or_default();
    let achieved = match (steady.first(), steady.last()) {
        (Some(first), Some(last)) if steady.len() > 1 => {
            (steady.len() - 1) as f64 / (last.0 - first.0).as_secs_f64()
        }
        _ => 0.0,
    };
    println!(
        "dispatch {kind} limited: messages={limited} configured={}/s achieved={achieved:.1}/s ratio={:.3}",
        args.rate,
        achieved / f64::from(args.rate)
    );

    // 3. Head-of-line: urgent messages queued while a broadcast waits on the provider's rate.
    let backlog = limited_patients(bench, args.backlog).await?;
    let (dispatcher, wake) = bench.dispatcher(Some(args.rate))?;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(dispatcher.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latencies = time_urgent(bench, &wake, args.urgent).await;
    stop.cancel();
    let _ = worker.await;
    bench.received.take();
    let mut ms: Vec<f64> = latencies?.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p99 = ms
        .get(((ms.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    println!(
        "dispatch {kind} head-of-line: backlog={backlog} urgent={} rate={}/s p50={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        args.rate,
        median(&mut ms.clone()),
        p99,
        ms.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

/// The burst the benchmark's limited providers get: 50 ms of traffic, at least one.
fn burst_of(rate: u32) -> u32 {
    (rate / 20).max(1)
}

/// Queues a broadcast and withdraws all but `count` of its messages, so a limited run
/// sends exactly `count`. Returns how many are queued.
async fn limited_patients(bench: &Bench, count: u64) -> Result<u64, Box<dyn std::error::Error>> {
    bench.received.take();
    let planned = bench.queue_broadcast().await?;
    if planned <= count {
        return Ok(planned);
    }
    // Claim the surplus as a throwaway worker and record it as cancelled.
    let surplus = (planned - count) as usize;
    let now = Utc::now();
    let lease = now + chrono::Duration::minutes(5);
    let mut left = surplus;
    while left > 0 {
        let claimed = bench
            .store
            .claim_due("bench-trim", now, lease, left.min(5_000), false, &[])
            .await?;
        if claimed.is_empty() {
            break;
        }
        left -= claimed.len();
        let done: Vec<_> = claimed
            .iter()
            .map(|m| gateway::store::Completion {
                message_id: m.id,
                attempt_no: m.attempt_no,
                provider: None,
                outcome: gateway::domain::AttemptOutcome::Permanent,
                provider_ref: None,
                error: Some("trimmed by the benchmark".into()),
                new_state: gateway::domain::MessageState::Cancelled,
                next_attempt_at: None,
                started_at: now,
                finished_at: now,
                fallback_due_at: None,
            })
            .collect();
        bench.store.complete_many("bench-trim", &done).await?;
    }
    Ok(count)
}

/// Queues `count` urgent messages 50 ms apart while a worker runs; returns how long each
/// took from being queued to reaching the provider.
async fn time_urgent(
    bench: &Bench,
    wake: &Notify,
    count: u32,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let patient = bench
        .store
        .fanout_page(bench.practice.id, PatientId::new(0), 1)
        .await?
        .into_iter()
        .next()
        .ok_or("no patient to message")?;
    let contact = patient.contacts.first().ok_or("patient has no contact")?;
    let mut queued: HashMap<String, Instant> = HashMap::new();
    for i in 0..count {
        let address = format!("+4479110{i:05}");
        let now = Utc::now();
        let message = NewMessage {
            idempotency_key: format!("bench-urgent-{}-{i}", now.timestamp_millis()),
            broadcast_id: None,
            practice_id: bench.practice.id,
            recipient: Recipient::Patient {
                patient_id: patient.id,
                contact_id: contact.id,
            },
            channel: Channel::Sms,
            address: address.clone(),
            priority: Priority::Urgent,
            template_key: "appointment.moved".into(),
            template_version: 1,
            subject: None,
            body: "Your appointment has moved.".into(),
            body_html: None,
            link: None,
            next_attempt_at: now,
            created_at: now,
            turn: 0,
        };
        queued.insert(address, Instant::now());
        bench.store.insert_messages(&[message]).await?;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent: HashMap<String, Instant> = HashMap::new();
    while sent.len() < queued.len() && Instant::now() < deadline {
        for (at, to) in bench.received.take() {
            if queued.contains_key(&to) {
                sent.insert(to, at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if sent.len() < queued.len() {
        return Err(format!(
            "{} urgent messages never arrived",
            queued.len() - sent.len()
        )
        .into());
    }
    Ok(queued
        .iter()
        .filter_map(|(to, at)| sent.get(to).map(|s| s.duration_since(*at)))
        .collect())
}
