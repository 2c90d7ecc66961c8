//! `dispatch --workers 1,2,3 --postgres URL`: unlimited dispatch throughput with N separate
//! `gateway serve --role worker` processes (the `gateway` binary Cargo built beside this
//! benchmark, or the one named by `--gateway`) sharing one PostgreSQL database, sending to a
//! loopback HTTP SMS gateway in this process.
//!
//! Each run queues a broadcast due a few seconds ahead, starts the workers, and times from
//! the first message reaching the gateway to the last, so every worker has joined (and
//! waited its turn) before the clock starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::dispatch::{queue_broadcast, start_peer, DispatchArgs, Received, SECRET_ENV};
use super::{cpu_of, median, scratch, seed};
use gateway::config::Config;
use gateway::domain::{ChannelOrder, PracticeId};
use gateway::fanout::Fanout;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::{BroadcastStore, PostgresStore, Store};

/// How far ahead each run's messages are due: time for every worker to start and join.
const START_AHEAD: Duration = Duration::from_secs(5);

/// Runs the measurement for each worker count in `args.workers`.
pub async fn workers(
    config: &Config,
    args: &DispatchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let base = args
        .postgres
        .as_deref()
        .ok_or("--workers needs --postgres: SQLite serves one process")?;
    let (url, name) = scratch::create_postgres_database(base, "gw_bench").await?;
    let dir = tempfile::tempdir()?;
    let result = measure(config, args, &url, dir.path()).await;
    scratch::drop_postgres_database(base, &name).await?;
    result
}

async fn measure(
    config: &Config,
    args: &DispatchArgs,
    url: &str,
    dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let pg = PostgresStore::connect(url, 4).await?;
    pg.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    std::env::set_var(SECRET_ENV, "bench-secret");
    let (peer_url, received, peer) = start_peer().await?;
    let practice = seed::practice(store.as_ref(), "BENCH3", ChannelOrder::parse("sms")?).await?;
    // Two in three synthetic patients have a mobile; the practice messages by SMS only.
    seed::synthetic_patients(url, practice.id, args.messages * 3 / 2 + 3).await?;
    let fanout = Fanout::new(
        store.clone(),
        Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
        config.fanout.batch_size,
        Arc::new(Notify::new()),
    );
    // A rebuild during a long run would swap the binary under the later runs: name a copy
    // with `--gateway` to measure one binary throughout.
    let exe = args
        .gateway
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gateway")));
    let config_file = dir.join("worker.toml");
    std::fs::write(&config_file, worker_config(config, url, &peer_url))?;
    let run = Run {
        pg: &pg,
        store: store.as_ref(),
        fanout: &fanout,
        practice_id: practice.id,
        received: &received,
        exe: &exe,
        config_file: &config_file,
        dir,
    };
    // Worker counts take turns round by round, so a slower spell of this shared machine, or
    // the outbox growing run by run, does not fall on one count only.
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); args.workers.len()];
    for round in 1..=args.runs.max(1) {
        for (&count, (rates, cpu)) in args.workers.iter().zip(results.iter_mut()) {
            let (rate, cpu_each) = run.once(count).await?;
            eprintln!(
                "workers={count} run {round}: {rate:.0} messages/s, {cpu_each:.0} µs worker CPU each"
            );
            rates.push(rate);
            cpu.push(cpu_each);
        }
    }
    for (&count, (rates, cpu)) in args.workers.iter().zip(results.iter_mut()) {
        println!(
            "dispatch postgres workers={count} (processes): messages={} runs={} median={:.0} messages/s worker_cpu_per_message={:.0} µs (concurrency={} claim_batch={} each)",
            args.messages,
            rates.len(),
            median(rates),
            median(cpu),
            config.dispatch.concurrency,
            config.dispatch.claim_batch,
        );
    }
    peer.abort();
    pg.pool().close().await;
    Ok(())
}

/// What one timed run needs.
struct Run<'a> {
    pg: &'a PostgresStore,
    store: &'a dyn BroadcastStore,
    fanout: &'a Fanout,
    practice_id: PracticeId,
    received: &'a Received,
    exe: &'a Path,
    config_file: &'a Path,
    dir: &'a Path,
}

impl Run<'_> {
    /// Queues a broadcast, sends it with `count` worker processes, and returns messages per
    /// second (first to last arrival) and the workers' CPU time per message in µs.
    async fn once(&self, count: u32) -> Result<(f64, f64), Box<dyn std::error::Error>> {
        // Every run starts from a vacuumed outbox, whatever the runs before it left.
        sqlx::query("VACUUM ANALYZE messages, attempts")
            .execute(self.pg.pool())
            .await?;
        let planned = queue_broadcast(self.store, self.fanout, self.practice_id).await?;
        // Due a few seconds ahead, so that every worker is up when the clock starts.
        sqlx::query(
            "UPDATE messages SET next_attempt_at = now() + make_interval(secs => $1)
             WHERE state = 'queued'",
        )
        .bind(START_AHEAD.as_secs_f64())
        .execute(self.pg.pool())
        .await?;
        self.received.take();
        let log = |i: u32| self.dir.join(format!("w{i}.log"));
        let mut children = Vec::new();
        for i in 0..count {
            children.push(spawn_worker(self.exe, self.config_file, &log(i))?);
        }
        let deadline = Instant::now() + START_AHEAD + Duration::from_secs(600);
        while (self.received.count() as u64) < planned && Instant::now() < deadline {
            if let Some(i) = children
                .iter_mut()
                .position(|c| !matches!(c.try_wait(), Ok(None)))
            {
                stop(&mut children);
                let text = std::fs::read_to_string(log(i as u32)).unwrap_or_default();
                return Err(format!("worker {i} stopped early:\n{text}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu: Duration = children.iter().map(|c| cpu_of(&c.id().to_string())).sum();
        stop(&mut children);
        let arrivals = self.received.take();
        let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) else {
            return Err("nothing reached the provider".into());
        };
        if (arrivals.len() as u64) < planned {
            return Err(format!("{} of {planned} arrived", arrivals.len()).into());
        }
        let seconds = (last.0 - first.0).as_secs_f64().max(1e-3);
        let sent = arrivals.len() as f64;
        Ok((sent / seconds, cpu.as_secs_f64() / sent * 1e6))
    }
}

/// The workers' settings: this process's dispatch settings, the scratch database, and one
/// unlimited `webhook` SMS provider pointing at the loopback gateway.
fn worker_config(config: &Config, url: &str, peer_url: &str) -> String {
    let d = &config.dispatch;
    format!(
        r#"[server]
bind = "127.0.0.1:0"

[database]
url = "{url}"
max_connections = {pool}

[dispatch]
concurrency = {concurrency}
claim_batch = {claim_batch}
lease_seconds = {lease}
poll_interval_ms = {poll}

[limits]
patient_bulk = "1000000/day"
patient_burst = 1000000

[quiet_hours]
start = "21:00"
end = "21:00"

[cluster]
heartbeat_seconds = 1

[telemetry]
log_filter = "warn"

[[providers]]
name = "bench-sms-unlimited"
kind = "webhook"
channel = "sms"
url = "{peer_url}"
signing_secret_env = "{SECRET_ENV}"
"#,
        pool = config.database.max_connections,
        concurrency = d.concurrency,
        claim_batch = d.claim_batch,
        lease = d.lease_seconds,
        poll = d.poll_interval_ms,
    )
}

/// Starts one worker process of the gateway binary `exe`.
fn spawn_worker(exe: &Path, config_file: &Path, log: &Path) -> std::io::Result<Child> {
    spawn_gateway(exe, config_file, log, "worker", &[])
}

/// Starts `gateway serve --role ROLE` with the settings in `config_file` and the extra
/// environment `env`, its output in `log`.
pub(super) fn spawn_gateway(
    exe: &Path,
    config_file: &Path,
    log: &Path,
    role: &str,
    env: &[(&str, &str)],
) -> std::io::Result<Child> {
    let log = std::fs::File::create(log)?;
    let mut command = Command::new(exe);
    // The workers' file says everything; this process's overrides must not redirect them.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GATEWAY__") {
            command.env_remove(key);
        }
    }
    command
        .args(["serve", "--role", role])
        .env("GATEWAY_CONFIG", config_file)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Stops the workers with SIGTERM (a clean leave), killing any still running after 30 s.
pub(super) fn stop(children: &mut [Child]) {
    for child in children.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for child in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
