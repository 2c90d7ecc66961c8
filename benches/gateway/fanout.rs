//! `fanout`: fan-out throughput (messages planned and persisted per second)
//! and peak memory, on a fresh database seeded with synthetic patients.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::{ceiling, median, peak_rss_kib, reset_peak_rss, seed, BenchStore};
use gateway::config::Config;
use gateway::domain::{BroadcastId, ChannelOrder};
use gateway::fanout::Fanout;
use gateway::render::{MessageTemplates, TemplateRegistry};
use gateway::store::Store;

/// Options of the `fanout` benchmark.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// Patients in the practice (one message each).
    #[arg(long, default_value_t = 100_000)]
    pub patients: u64,
    /// Broadcasts to time; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Messages per INSERT (default: fanout.batch_size from config).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// Seeds, times `runs` fan-outs, and prints one summary line.
pub async fn fanout(config: &Config, args: FanoutArgs) -> Result<(), Box<dyn std::error::Error>> {
    let batch_size = args.batch_size.unwrap_or(config.fanout.batch_size);
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = run_fanout(bench.store.clone(), &bench.url, &args, batch_size).await;
    bench.close().await?;
    result
}

async fn run_fanout(
    store: Arc<dyn Store>,
    url: &str,
    args: &FanoutArgs,
    batch_size: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let practice = seed::practice(store.as_ref(), "BENCH1", ChannelOrder::default()).await?;
    let seed_started = Instant::now();
    seed::synthetic_patients(url, practice.id, args.patients).await?;
    eprintln!(
        "seeded {} patients in {:.1} s",
        args.patients,
        seed_started.elapsed().as_secs_f64()
    );

    let fanout = Fanout::new(
        store.clone(),
        Arc::new(TemplateRegistry::fixed(MessageTemplates::builtin()?)),
        batch_size,
        Arc::new(Notify::new()),
    );
    let mut rates = Vec::new();
    let mut ceilings = Vec::new();
    let mut peak_growth = 0u64;
    let mut earlier: Vec<BroadcastId> = Vec::new();
    for run in 1..=args.runs.max(1) {
        // What earlier runs left queued is cancelled before the clock starts, so that every
        // run meets the same outbox (a status change withdraws it in the background).
        gateway::fanout::cancel_unsent(store.as_ref(), &earlier, "bench: next run").await?;
        let id = seed::systems_down(store.as_ref(), practice.id, "bench").await?;
        let baseline = reset_peak_rss();
        let started = Instant::now();
        let summary = fanout.run_broadcast(id).await?;
        let seconds = started.elapsed().as_secs_f64();
        let growth = peak_rss_kib().saturating_sub(baseline);
        peak_growth = peak_growth.max(growth);
        let rate = summary.inserted as f64 / seconds;
        eprintln!(
            "run {run}: {} messages in {seconds:.2} s = {rate:.0} messages/s; peak RSS +{} MiB",
            summary.inserted,
            growth / 1024
        );
        rates.push(rate);
        earlier.push(id);
        // The database's ceiling for the same rows, in the same run.
        let copy = seed::systems_down(store.as_ref(), practice.id, "bench").await?;
        let (rows, copy_seconds) = ceiling::copy_messages(url, id, copy).await?;
        let ceiling = rows as f64 / copy_seconds;
        eprintln!(
            "run {run}: ceiling ({}) {rows} rows in {copy_seconds:.2} s = {ceiling:.0} rows/s; fan-out at {:.3} of it",
            if url.starts_with("postgres") { "COPY binary" } else { "INSERT ... SELECT" },
            rate / ceiling
        );
        ceilings.push(ceiling);
        earlier.push(copy);
    }
    let median_rate = median(&mut rates);
    let median_ceiling = median(&mut ceilings);
    println!(
        "fanout {}: patients={} batch={} runs={} median={:.0} messages/s ceiling_median={:.0} rows/s ratio_to_ceiling={:.3} peak_rss_growth={} MiB peak_rss={} MiB",
        store.kind(),
        args.patients,
        batch_size,
        rates.len(),
        median_rate,
        median_ceiling,
        median_rate / median_ceiling,
        peak_growth / 1024,
        peak_rss_kib() / 1024
    );
    Ok(())
}
