//! `gateway bench appointments`: CSV appointment import throughput (rows per second) and
//! peak memory for files of several sizes in one invocation (by default 20,000 and 200,000
//! rows), on a fresh database whose practice has a fixed list of patients. A share of rows
//! names patients the practice does not have, so the refusal path is timed too. Linear work
//! shows as the same rows/s for every size, bounded memory as the same peak growth.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{bench_practice, median, peak_rss_kib, reset_peak_rss, BenchStore};
use crate::config::Config;
use crate::domain::{ChannelOrder, NhsNumber};
use crate::intake::appointments::import_csv_file;
use crate::intake::import::{import_csv, CsvSource, ImportConfig, ImportOptions};
use crate::store::Store;

/// Options of `gateway bench appointments`.
#[derive(Debug, clap::Args)]
pub struct AppointmentsBenchArgs {
    /// File sizes in rows, comma separated; each is imported `runs` times.
    #[arg(long, value_delimiter = ',', default_values_t = [20_000u64, 200_000])]
    pub rows: Vec<u64>,
    /// Patients the practice has (appointments name them in turn).
    #[arg(long, default_value_t = 20_000)]
    pub patients: u64,
    /// Percent of rows naming a patient the practice does not have (refused).
    #[arg(long, default_value_t = 10)]
    pub unknown_percent: u64,
    /// Imports per size; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Database connections in the pool. Each SQLite connection keeps its own page cache
    /// (32 MiB at most), which shows in RSS as the database grows.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
}

/// Seeds the practice, times the imports, and prints one summary line per size.
pub async fn appointments(
    config: &Config,
    args: AppointmentsBenchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let bench = BenchStore::open_with(args.postgres.as_deref(), args.connections).await?;
    let result = run(bench.store.clone(), &args, &config.import).await;
    bench.close().await?;
    result
}

async fn run(
    store: Arc<dyn Store>,
    args: &AppointmentsBenchArgs,
    settings: &ImportConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    if args.patients == 0 {
        return Err("--patients must be at least 1".into());
    }
    let mut settings = settings.clone();
    settings.max_rows = settings
        .max_rows
        .max(args.rows.iter().copied().max().unwrap_or(0));
    let practice = bench_practice(store.as_ref(), "APT001", ChannelOrder::default()).await?;
    let dir = tempfile::tempdir()?;
    let patients = dir.path().join("patients.csv");
    let numbers = write_patients(&patients, args.patients)?;
    let seeded = import_csv(
        store.clone(),
        practice.id,
        &settings,
        CsvSource::File(patients),
        ImportOptions::default(),
    )
    .await?;
    eprintln!("seeded {} patients", seeded.created);
    let mut lines = Vec::new();
    for &rows in &args.rows {
        let (mut rates, mut growths) = (Vec::new(), Vec::new());
        for run in 1..=args.runs.max(1) {
            let path = dir.path().join(format!("appointments-{rows}-{run}.csv"));
            let unknown = write_appointments(&path, rows, run, &numbers, args.unknown_percent)?;
            let baseline = reset_peak_rss();
            let started = Instant::now();
            let summary =
                import_csv_file(store.as_ref(), &practice, &settings, path.clone(), "bench")
                    .await?;
            let seconds = started.elapsed().as_secs_f64();
            let growth = peak_rss_kib().saturating_sub(baseline);
            std::fs::remove_file(&path)?;
            if summary.created != rows - unknown || summary.rejected_count != unknown {
                return Err(format!(
                    "unexpected outcome for {rows} rows: created {}, refused {} (expected {})",
                    summary.created, summary.rejected_count, unknown
                )
                .into());
            }
            let rate = rows as f64 / seconds;
            eprintln!(
                "{rows} rows run {run}: {seconds:.2} s = {rate:.0} rows/s \
                 ({} created, {} refused); peak RSS +{} KiB",
                summary.created, summary.rejected_count, growth
            );
            rates.push(rate);
            growths.push(growth as f64);
        }
        lines.push((rows, median(&mut rates), median(&mut growths)));
    }
    let first_rate = lines.first().map(|l| l.1).unwrap_or(0.0);
    for (rows, rate, growth) in &lines {
        println!(
            "appointments {}: rows={rows} unknown={}% runs={} median={rate:.0} rows/s \
             ({:.0}% of the first size) peak_rss_growth={:.1} MiB",
            store.kind(),
            args.unknown_percent,
            args.runs.max(1),
            100.0 * rate / first_rate.max(1.0),
            growth / 1024.0
        );
    }
    Ok(())
}

/// Writes a patient list of `count` valid NHS numbers; returns them.
fn write_patients(path: &Path, count: u64) -> std::io::Result<Vec<String>> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "NHS Number,Surname")?;
    let mut numbers = Vec::with_capacity(count as usize);
    let mut stem = 200_000_000u32;
    while (numbers.len() as u64) < count {
        stem += 1;
        if let Some(n) = NhsNumber::from_stem(stem) {
            writeln!(out, "{},Bench", n.as_str())?;
            numbers.push(n.as_str().to_string());
        }
    }
    out.flush()?;
    Ok(numbers)
}

/// Writes `rows` appointments with references unique to `(rows, run)`, every
/// `100 / unknown_percent`-th naming a patient the practice lacks; returns how many do.
fn write_appointments(
    path: &Path,
    rows: u64,
    run: u32,
    numbers: &[String],
    unknown_percent: u64,
) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "Reference,NHS Number,Start,Clinician,Location,Mode")?;
    let mut unknown = 0;
    let mut stranger = 700_000_000u32;
    for i in 0..rows {
        let nhs = if (i % 100) < unknown_percent.min(100) {
            unknown += 1;
            loop {
                stranger += 1;
                if let Some(n) = NhsNumber::from_stem(stranger) {
                    break n.as_str().to_string();
                }
            }
        } else {
            numbers[(i as usize) % numbers.len().max(1)].clone()
        };
        writeln!(
            out,
            "R{rows}-{run}-{i},{nhs},{:02}/{:02}/2031 {:02}:{:02},\"Dr {}, GP\",Room {},{}",
            1 + i % 28,
            1 + (i / 28) % 12,
            8 + i % 10,
            (i % 6) * 10,
            i % 40,
            i % 12,
            ["in_person", "phone", "video"][(i % 3) as usize],
        )?;
    }
    out.flush()?;
    Ok(unknown)
}
