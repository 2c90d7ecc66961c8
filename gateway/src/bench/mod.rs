//! `gateway bench ...`: throughput and latency measured on a fresh scratch database
//! (SQLite in a temporary folder, or a scratch database on a PostgreSQL server).

pub mod appointments;
pub mod dispatch;
pub mod fanout;
pub mod import;
pub mod signin;
pub mod workers;

use std::sync::Arc;

use chrono::Utc;

pub use appointments::{appointments, AppointmentsBenchArgs};
pub use dispatch::{dispatch, DispatchArgs};
pub use fanout::{fanout, FanoutArgs};
pub use import::{import, ImportBenchArgs};
pub use signin::{signin, SigninBenchArgs};

use crate::domain::{ChannelOrder, OdsCode};
use crate::store::{scratch, NewPractice, PostgresStore, Practice, SqliteStore, Store};

/// A migrated scratch store, removed again by [`BenchStore::close`].
pub struct BenchStore {
    /// The store.
    pub store: Arc<dyn Store>,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    /// A fresh SQLite file, or a scratch database on the PostgreSQL server at `postgres`.
    pub async fn open(postgres: Option<&str>) -> Result<Self, Box<dyn std::error::Error>> {
        Self::open_with(postgres, 8).await
    }

    /// As [`BenchStore::open`], with a pool of `connections`.
    pub async fn open_with(
        postgres: Option<&str>,
        connections: u32,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (store, postgres): (Arc<dyn Store>, _) = match postgres {
            Some(base) => {
                let (url, name) = scratch::create_postgres_database(base, "gw_bench").await?;
                let store = PostgresStore::connect(&url, connections).await?;
                store.migrate().await?;
                (Arc::new(store), Some((base.to_string(), name)))
            }
            None => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                );
                let store = SqliteStore::connect(&url, connections).await?;
                store.migrate().await?;
                (Arc::new(store), None)
            }
        };
        Ok(Self {
            store,
            postgres,
            _dir: dir,
        })
    }

    /// Drops the scratch PostgreSQL database (the SQLite folder goes with `self`).
    pub async fn close(self) -> Result<(), Box<dyn std::error::Error>> {
        if let Some((base, name)) = self.postgres {
            drop(self.store);
            scratch::drop_postgres_database(&base, &name).await?;
        }
        Ok(())
    }
}

/// A practice for a benchmark.
pub async fn bench_practice(
    store: &dyn Store,
    ods: &str,
    channel_order: ChannelOrder,
) -> Result<Practice, Box<dyn std::error::Error>> {
    Ok(store
        .create_practice(
            &NewPractice {
                ods_code: OdsCode::parse(ods)?,
                name: "Benchmark Surgery".into(),
                phone: None,
                website: None,
                email: None,
                timezone: "Europe/London".into(),
                channel_order,
                bilingual: false,
            },
            Utc::now(),
        )
        .await?)
}

/// The median of some measurements (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Resets the kernel's peak-RSS mark (Linux), returning the current RSS in KiB.
pub fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

/// The process's peak RSS in KiB since the last reset (0 where /proc is missing).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
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
pub fn process_cpu() -> std::time::Duration {
    cpu_of("self")
}

/// CPU time (user + system) process `pid` (a number, or `self`) has used, from /proc (zero
/// where it is missing).
pub fn cpu_of(pid: &str) -> std::time::Duration {
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
