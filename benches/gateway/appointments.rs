//! `appointments`: CSV appointment import throughput (rows per second) and
//! peak memory for files of several sizes in one invocation (by default 20,000 and 200,000
//! rows), each size on a fresh database whose practice has a fixed list of patients. A share of rows
//! names patients the practice does not have, so the refusal path is timed too. Linear work
//! shows as the same rows/s for every size, bounded memory as the same peak growth.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{median, peak_rss_kib, reset_peak_rss, seed, BenchStore};
use gateway::config::Config;
use gateway::domain::{ChannelOrder, NhsNumber};
use gateway::intake::appointments::import_csv_file;
use gateway::intake::import::{import_csv, CsvSource, ImportConfig, ImportOptions};
use gateway::store::Store;

/// Options of the `appointments` benchmark.
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
    /// Starts spread over a year in no order, instead of in date order as clinical systems
    /// export them (SQLite's index on start times then takes random inserts).
    #[arg(long)]
    pub random_starts: bool,
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
    let mut lines = Vec::new();
    for &rows in &args.rows {
        // A fresh database per size, so that a size does not pay for the rows of another.
        let bench = BenchStore::open_with(args.postgres.as_deref(), args.connections).await?;
        let result = run(bench.store.clone(), &args, rows, &config.import).await;
        bench.close().await?;
        lines.push(result?);
    }
    let first_rate = lines.first().map(|l| l.1).unwrap_or(0.0);
    for (rows, rate, growth, kind) in &lines {
        println!(
            "appointments {kind}: rows={rows} unknown={}% runs={} median={rate:.0} rows/s \
             ({:.0}% of the first size) peak_rss_growth={:.1} MiB",
            args.unknown_percent,
            args.runs.max(1),
            100.0 * rate / first_rate.max(1.0),
            growth / 1024.0
        );
    }
    Ok(())
}

/// What one size measured: rows, median rows/s, median peak RSS growth (KiB), database.
type Measured = (u64, f64, f64, &'static str);

async fn run(
    store: Arc<dyn Store>,
    args: &AppointmentsBenchArgs,
    rows: u64,
    settings: &ImportConfig,
) -> Result<Measured, Box<dyn std::error::Error>> {
    if args.patients == 0 {
        return Err("--patients must be at least 1".into());
    }
    let mut settings = settings.clone();
    settings.max_rows = settings.max_rows.max(rows);
    let practice = seed::practice(store.as_ref(), "APT001", ChannelOrder::default()).await?;
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
    let (mut rates, mut growths) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let path = dir.path().join(format!("appointments-{rows}-{run}.csv"));
        let unknown = write_appointments(
            &path,
            rows,
            run,
            &numbers,
            args.unknown_percent,
            args.random_starts,
        )?;
        let baseline = reset_peak_rss();
        let started = Instant::now();
        let summary =
            import_csv_file(store.as_ref(), &practice, &settings, path.clone(), "bench").await?;
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
    Ok((rows, median(&mut rates), median(&mut growths), store.kind()))
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
    random_starts: bool,
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
            "R{rows}-{run}-{i},{nhs},{},\"Dr {}, GP\",Room {},{}",
            start_of(i, random_starts),
            i % 40,
            i % 12,
            ["in_person", "phone", "video"][(i % 3) as usize],
        )?;
    }
    out.flush()?;
    Ok(unknown)
}

/// Row `i`'s start, UK form: in date order as clinical systems export them (40 clinicians,
/// 10-minute slots from 08:00 to 18:00, day after day from 2031-01-01), or spread over a
/// year in no order.
fn start_of(i: u64, random: bool) -> String {
    if random {
        return format!(
            "{:02}/{:02}/2031 {:02}:{:02}",
            1 + i % 28,
            1 + (i / 28) % 12,
            8 + i % 10,
            (i % 6) * 10
        );
    }
    let (day, slot) = (i / 2400, (i % 2400) / 40);
    let date = chrono::NaiveDate::from_ymd_opt(2031, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(day)))
        .unwrap_or_default();
    format!(
        "{} {:02}:{:02}",
        date.format("%d/%m/%Y"),
        8 + slot / 6,
        (slot % 6) * 10
    )
}
