//! The gateway's benchmarks: throughput and latency measured on a fresh scratch database
//! (SQLite in a temporary folder, or a scratch database on a PostgreSQL server), outside the
//! product. Results and how to read them: docs/performance.md.
//!
//! ```text
//! cargo bench --bench gateway -- fanout --patients 100000 --runs 3
//! cargo bench --profile dev --bench gateway -- fanout --patients 2000 --runs 1   # CI's quick run
//! ```
//!
//! A harness-less bench target is an ordinary program: Cargo builds it with the `bench`
//! profile (release settings) and appends `--bench` to its arguments, which is accepted and
//! ignored. Settings come from `config/default.toml`, `GATEWAY_CONFIG` and `GATEWAY__*`, as for
//! the `gateway` command.

mod appointments;
mod ceiling;
mod channels;
mod dispatch;
mod email;
mod fanout;
mod group;
mod import;
mod national;
mod patients;
// Shared with the tests (tests/support): one copy of the scratch databases and the seeding.
#[allow(dead_code)]
#[path = "../../tests/support/scratch.rs"]
mod scratch;
#[allow(dead_code)]
#[path = "../../tests/support/seed.rs"]
mod seed;
mod signin;
mod sms;
mod workers;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gateway::config::Config;
use gateway::store::{PostgresStore, SqliteStore, Store};

/// The benchmark to run.
#[derive(Parser)]
#[command(
    name = "cargo bench --bench gateway --",
    about = "The gateway's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    which: Benchmark,
    /// Added by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Benchmark {
    /// Fan-out throughput (messages planned and persisted per second) and peak memory.
    Fanout(fanout::FanoutArgs),
    /// One broadcast's cost under the old fixed channel order and cheapest first, on the
    /// same reachability mix, with each fan-out's time.
    Channels(channels::ChannelsArgs),
    /// Dispatch throughput and CPU per message through an unlimited loopback provider, the
    /// achieved rate of a limited one, and urgent messages' wait behind a broadcast.
    Dispatch(dispatch::DispatchArgs),
    /// Email through the `smtp` provider into postfix's `smtp-sink`: emails/s and CPU per
    /// email, against the sink's own ceiling from a minimal client in the same run.
    Email(email::EmailArgs),
    /// One status change to many practices through the running gateway: time to the
    /// answer, to every list planned, and to each practice's first text out.
    Group(group::GroupBenchArgs),
    /// A national outage on PostgreSQL: hundreds of practices post `systems_down` within a
    /// minute to an API process and several worker processes, against loopback providers
    /// with contracted rates (SMS, email into smtp-sink, web push).
    National(national::NationalArgs),
    /// CSV contact import throughput (rows per second) and peak memory.
    Import(import::ImportBenchArgs),
    /// CSV appointment import throughput (rows per second) and peak memory, per file size.
    Appointments(appointments::AppointmentsBenchArgs),
    /// The JSON patient upsert through the running gateway (patients per second, first and
    /// unchanged), beside the database's ceiling for the same rows.
    Patients(patients::PatientsArgs),
    /// SMS dispatch through the `twilio` provider into nginx, beside nginx's own ceiling
    /// measured in the same run (needs /usr/sbin/nginx).
    Sms(sms::SmsArgs),
    /// `/healthz` latency alone and during parallel anonymous sign-in loops.
    Signin(signin::SigninBenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Spans are exported only if the settings ask; those still queued at exit are lost.
    let _exporter = match gateway::telemetry::init(&config.telemetry) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.which {
        Benchmark::Fanout(args) => fanout::fanout(&config, args).await,
        Benchmark::Channels(args) => channels::channels(&config, args).await,
        Benchmark::Dispatch(args) => dispatch::dispatch(&config, args).await,
        Benchmark::Email(args) => email::email(&config, args).await,
        Benchmark::Group(args) => group::group(&config, args).await,
        Benchmark::National(args) => national::national(&config, args).await,
        Benchmark::Import(args) => import::import(&config, args).await,
        Benchmark::Appointments(args) => appointments::appointments(&config, args).await,
        Benchmark::Signin(args) => signin::signin(&config, args).await,
        Benchmark::Sms(args) => sms::sms(&config, args).await,
        Benchmark::Patients(args) => patients::patients(&config, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A migrated scratch store, removed again by [`BenchStore::close`].
struct BenchStore {
    store: Arc<dyn Store>,
    /// Where it is, for seeding through a connection of the benchmark's own.
    url: String,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    /// A fresh SQLite file, or a scratch database on the PostgreSQL server at `postgres`.
    async fn open(postgres: Option<&str>) -> Result<Self, Box<dyn std::error::Error>> {
        Self::open_with(postgres, 8).await
    }

    /// As [`BenchStore::open`], with a pool of `connections`.
    async fn open_with(
        postgres: Option<&str>,
        connections: u32,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (store, postgres, url): (Arc<dyn Store>, _, _) = match postgres {
            Some(base) => {
                let (url, name) = scratch::create_postgres_database(base, "gw_bench").await?;
                let store = PostgresStore::connect(&url, connections).await?;
                store.migrate().await?;
                (Arc::new(store), Some((base.to_string(), name)), url)
            }
            None => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                );
                let store = SqliteStore::connect(&url, connections).await?;
                store.migrate().await?;
                (Arc::new(store), None, url)
            }
        };
        Ok(Self {
            store,
            url,
            postgres,
            _dir: dir,
        })
    }

    /// Drops the scratch PostgreSQL database (the SQLite folder goes with `self`).
    async fn close(self) -> Result<(), Box<dyn std::error::Error>> {
        if let Some((base, name)) = self.postgres {
            drop(self.store);
            scratch::drop_postgres_database(&base, &name).await?;
        }
        Ok(())
    }
}

/// The median of some measurements (0 for none).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Resets the kernel's peak-RSS mark (Linux), returning the current RSS in KiB.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

/// The process's peak RSS in KiB since the last reset (0 where /proc is missing).
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    status_kib_of("self", field)
}

/// A field of `/proc/{pid}/status` (`pid` a number, or `self`) in KiB (0 where it is
/// missing).
fn status_kib_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this process has used (user + system), from /proc (zero where it is missing).
fn process_cpu() -> std::time::Duration {
    cpu_of("self")
}

/// CPU time (user + system) process `pid` (a number, or `self`) has used, from /proc (zero
/// where it is missing).
fn cpu_of(pid: &str) -> std::time::Duration {
    // Fields 14 and 15 of /proc/{pid}/stat, in clock ticks of 1/100 s on Linux.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after_name = s.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    std::time::Duration::from_millis(ticks * 10)
}
