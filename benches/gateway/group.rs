//! `group`: one status change to many practices (`POST /status-groups`) through the whole
//! running gateway: how long until every practice's broadcast is recorded and its first
//! messages planned (the answer), until every practice's whole list is planned, and until
//! each practice has its first message out at the loopback SMS peer (the slowest practice
//! is the figure that matters: nobody's patients should wait for everyone else's list).
//!
//! The ceiling it is read against, measured in the same invocation: one practice of the
//! same size posted alone (`POST /practices/{ods}/status`), its whole fan-out and its first
//! message out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::dispatch::SECRET_ENV;
use super::{median, seed, BenchStore};
use gateway::app::{self, AppState};
use gateway::config::{Config, ProviderConfig};
use gateway::domain::{BroadcastId, Channel, ChannelOrder, PracticeId};
use gateway::providers::ProviderRegistry;
use gateway::store::{KeyScope, Store};

/// Options of the `group` benchmark.
#[derive(Debug, clap::Args)]
pub struct GroupBenchArgs {
    /// Practices in the group.
    #[arg(long, default_value_t = 600)]
    pub practices: u32,
    /// Synthetic patients per practice (two in three have a mobile; the practices text).
    #[arg(long, default_value_t = 10_000)]
    pub patients: u64,
    /// Groups posted one after another (each supersedes the one before); medians reported.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// The SMS provider's rate, messages per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Longest a run may take before the benchmark gives up, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// The first arrival at the peer of each (run, practice), and how many texts arrived.
#[derive(Default)]
struct FirstArrivals {
    at: Mutex<HashMap<(u32, String), Instant>>,
    texts: std::sync::atomic::AtomicU64,
}

impl FirstArrivals {
    fn of(&self, run: u32) -> HashMap<String, Instant> {
        let at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.iter()
            .filter(|((r, _), _)| *r == run)
            .map(|((_, practice), t)| (practice.clone(), *t))
            .collect()
    }
}

/// The loopback SMS API: notes when each practice's first text of each run arrives (the
/// run is told from the "Bench run N:" headline every text carries).
async fn receive(State(first): State<Arc<FirstArrivals>>, Json(body): Json<Value>) -> Json<Value> {
    let now = Instant::now();
    first
        .texts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let text = body["body"].as_str().unwrap_or_default();
    let run = text
        .split_once("Bench run ")
        .and_then(|(_, rest)| rest.split_once(':'))
        .and_then(|(n, _)| n.parse::<u32>().ok());
    if let (Some(run), Some(practice)) = (run, body["practice"].as_str()) {
        first
            .at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((run, practice.to_string()))
            .or_insert(now);
    }
    Json(json!({ "id": body["message_id"] }))
}

/// The running gateway the benchmark drives over HTTP (the `patients` benchmark too).
pub(super) struct Gateway {
    address: String,
    admin_key: String,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts the gateway on the scratch store, dispatching SMS to `peer_url` at `rate`.
    pub(super) async fn start(
        config: &Config,
        bench: &BenchStore,
        peer_url: &str,
        rate: u32,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut config = config.clone();
        config.database.url = bench.url.clone();
        config.server.bind = ([127, 0, 0, 1], 0).into();
        config.dispatch.enabled = true;
        // Every run texts the same synthetic patients: no daily cap here.
        config.limits.patient_bulk = None;
        config.quiet_hours.start = "21:00".into();
        config.quiet_hours.end = "21:00".into();
        config.providers = vec![ProviderConfig {
            name: "bench-sms".into(),
            kind: "webhook".into(),
            channel: Channel::Sms,
            rate: Some(format!("{rate}/s").parse()?),
            burst: Some((rate / 20).max(1)),
            price_pence: None,
            settings: json!({ "url": peer_url, "signing_secret_env": SECRET_ENV })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }];
        // The benchmark's own process, before any task of its own reads the environment.
        std::env::set_var(SECRET_ENV, "bench-secret");
        let providers = Arc::new(ProviderRegistry::for_gateway(&config)?);
        let state = AppState::with_parts(config, bench.store.clone(), providers).await?;
        let admin_key =
            gateway::auth::issue_key(bench.store.as_ref(), KeyScope::Admin, "bench", "bench")
                .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let serving = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = app::serve(state, listener, serving).await {
                eprintln!("gateway stopped: {e}");
            }
        });
        Ok(Self {
            address,
            admin_key,
            store: bench.store.clone(),
            client: reqwest::Client::new(),
            shutdown,
            task,
        })
    }

    pub(super) async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Value, Box<dyn std::error::Error>> {
        let response = self
            .client
            .post(format!("{}/api/v1{path}", self.address))
            .bearer_auth(&self.admin_key)
            .timeout(Duration::from_secs(3600))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {body}").into());
        }
        Ok(body)
    }

    /// Waits until every broadcast's fan-out is finished; returns when that was.
    async fn fanned_out(
        &self,
        broadcasts: &[BroadcastId],
        deadline: Instant,
    ) -> Result<Instant, Box<dyn std::error::Error>> {
        let mut waiting: Vec<BroadcastId> = broadcasts.to_vec();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for id in waiting {
                let done = self
                    .store
                    .broadcast(id)
                    .await?
                    .is_some_and(|b| b.fanout_done_at.is_some() || b.failed_at.is_some());
                if !done {
                    still.push(id);
                }
            }
            waiting = still;
            if Instant::now() > deadline {
                return Err(
                    format!("{} fan-outs unfinished at the deadline", waiting.len()).into(),
                );
            }
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(Instant::now())
    }

    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Waits until every one of `practices` has its first text of `run` at the peer; returns
/// the arrivals.
async fn first_texts(
    arrivals: &FirstArrivals,
    run: u32,
    practices: usize,
    deadline: Instant,
) -> Result<HashMap<String, Instant>, Box<dyn std::error::Error>> {
    loop {
        let seen = arrivals.of(run);
        if seen.len() >= practices {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "run {run}: only {} of {practices} practices had a text at the deadline",
                seen.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seeds the practices, measures one practice alone, then each group run.
pub async fn group(
    config: &Config,
    args: GroupBenchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let bench = BenchStore::open_with(args.postgres.as_deref(), 16).await?;
    let result = run(config, &bench, &args).await;
    bench.close().await?;
    result
}

async fn run(
    config: &Config,
    bench: &BenchStore,
    args: &GroupBenchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let kind = bench.store.kind();
    let sms = ChannelOrder::parse("sms")?;
    let seeding = Instant::now();
    let alone = seed::practice(bench.store.as_ref(), "A00000", sms.clone()).await?;
    let mut codes = Vec::new();
    let mut ids: Vec<PracticeId> = vec![alone.id];
    for p in 0..args.practices {
        let code = format!("B{p:05}");
        ids.push(
            seed::practice(bench.store.as_ref(), &code, sms.clone())
                .await?
                .id,
        );
        codes.push(code);
    }
    seed::synthetic_patients_of(&bench.url, &ids, args.patients).await?;
    eprintln!(
        "seeded {} practices of {} patients in {:.1} s",
        ids.len(),
        args.patients,
        seeding.elapsed().as_secs_f64()
    );

    let first = Arc::new(FirstArrivals::default());
    let peer_app = axum::Router::new()
        .fallback(receive)
        .with_state(first.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let peer_url = format!("http://{}/messages", listener.local_addr()?);
    let peer = tokio::spawn(async move {
        let _ = axum::serve(listener, peer_app).await;
    });
    let gateway = Gateway::start(config, bench, &peer_url, args.rate).await?;
    let result = measure(&gateway, &first, &codes, args, kind).await;
    gateway.stop().await;
    peer.abort();
    result
}

async fn measure(
    gateway: &Gateway,
    first: &FirstArrivals,
    codes: &[String],
    args: &GroupBenchArgs,
    kind: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs(args.timeout);

    // The ceiling: one practice alone (run 0). Its answer comes once its list is planned.
    let started = Instant::now();
    let posted = gateway
        .post(
            "/practices/A00000/status",
            &json!({ "kind": "systems_down", "headline": "Bench run 0: systems down" }),
        )
        .await?;
    let alone_planned = started.elapsed();
    let alone_first = first_texts(first, 0, 1, started + timeout).await?;
    let alone_first = alone_first
        .values()
        .min()
        .map_or(Duration::ZERO, |t| t.duration_since(started));
    if let Some(id) = posted["id"].as_i64() {
        // Its backlog would only slow the group runs down.
        gateway
            .post(
                &format!("/broadcasts/{id}/cancel"),
                &json!({ "reason": "benchmark ceiling measured" }),
            )
            .await?;
    }
    println!(
        "group {kind} alone: patients={} planned={:.0} ms first_text={:.0} ms",
        args.patients,
        alone_planned.as_secs_f64() * 1e3,
        alone_first.as_secs_f64() * 1e3,
    );

    let (mut answered, mut planned, mut slowest, mut middle) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let body = json!({
            "status_change": { "kind": "systems_down", "headline": format!("Bench run {run}: systems down") },
            "practices": codes,
        });
        let started = Instant::now();
        let texts_before = first.texts.load(std::sync::atomic::Ordering::Relaxed);
        let group = gateway.post("/status-groups", &body).await?;
        let answer = started.elapsed();
        let broadcasts: Vec<BroadcastId> = group["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p["broadcast_id"].as_i64().map(BroadcastId::new))
                    .collect()
            })
            .unwrap_or_default();
        if broadcasts.len() != codes.len() {
            return Err(format!(
                "run {run}: {} of {} broadcasts",
                broadcasts.len(),
                codes.len()
            )
            .into());
        }
        let firsts = first_texts(first, run, codes.len(), started + timeout).await?;
        let all_planned = gateway
            .fanned_out(&broadcasts, started + timeout)
            .await?
            .duration_since(started);
        // The provider's rate achieved while the lists were being planned.
        let texts = first.texts.load(std::sync::atomic::Ordering::Relaxed) - texts_before;
        let achieved = texts as f64 / all_planned.as_secs_f64();
        let mut waits: Vec<f64> = firsts
            .values()
            .map(|t| t.duration_since(started).as_secs_f64() * 1e3)
            .collect();
        let worst = waits.iter().copied().fold(0.0, f64::max);
        let typical = median(&mut waits);
        println!(
            "group {kind} run {run}: practices={} patients={} answered={:.0} ms all_planned={:.1} s first_text median={typical:.0} ms slowest={worst:.0} ms sent_meanwhile={texts} = {achieved:.0}/s of {}/s",
            codes.len(),
            args.patients,
            answer.as_secs_f64() * 1e3,
            all_planned.as_secs_f64(),
            args.rate,
        );
        answered.push(answer.as_secs_f64() * 1e3);
        planned.push(all_planned.as_secs_f64());
        slowest.push(worst);
        middle.push(typical);
    }
    let slowest_median = median(&mut slowest);
    println!(
        "group {kind}: practices={} patients={} runs={} median answered={:.0} ms all_planned={:.1} s first_text median={:.0} ms slowest={slowest_median:.0} ms = {:.1}x one practice alone (rate={}/s)",
        codes.len(),
        args.patients,
        answered.len(),
        median(&mut answered),
        median(&mut planned),
        median(&mut middle),
        slowest_median / (alone_first.as_secs_f64() * 1e3).max(1.0),
        args.rate,
    );
    Ok(())
}
