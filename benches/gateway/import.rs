//! `import`: CSV contact import throughput (rows per second) and peak memory,
//! for a first import (every patient new) and a re-import of the same file (every patient
//! unchanged), on a fresh database.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{ceiling, median, peak_rss_kib, reset_peak_rss, seed, BenchStore};
use gateway::config::Config;
use gateway::domain::{ChannelOrder, NhsNumber, PhoneKind};
use gateway::intake::import::phones::PhoneBook;
use gateway::intake::import::{import_csv, CsvSource, ImportConfig, ImportOptions, ImportReport};
use gateway::store::Store;

/// Options of the `import` benchmark.
#[derive(Debug, clap::Args)]
pub struct ImportBenchArgs {
    /// Rows in the generated file (one patient each).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Practices to import the file into, one after another; medians are reported.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// File rows per transaction (default: import.batch_rows from config).
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Database connections in the pool. Each SQLite connection keeps its own page cache
    /// (32 MiB at most), which shows in RSS as the database grows.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
}

/// Generates the file, times the imports, and prints one summary line.
pub async fn import(
    config: &Config,
    args: ImportBenchArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = config.import.clone();
    if let Some(rows) = args.batch_rows {
        settings.batch_rows = rows;
    }
    let bench = BenchStore::open_with(args.postgres.as_deref(), args.connections).await?;
    let result = run_import(bench.store.clone(), &bench.url, &args, &settings).await;
    bench.close().await?;
    result
}

async fn run_import(
    store: Arc<dyn Store>,
    url: &str,
    args: &ImportBenchArgs,
    settings: &ImportConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("patients.csv");
    let started = Instant::now();
    write_file(&path, args.rows)?;
    eprintln!(
        "generated {} rows ({} MiB) in {:.1} s",
        args.rows,
        std::fs::metadata(&path)?.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    let (mut first_rates, mut again_rates, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    let mut peak_growth = 0u64;
    for run in 1..=args.runs.max(1) {
        let practice = seed::practice(
            store.as_ref(),
            &format!("IMP{run:03}"),
            ChannelOrder::default(),
        )
        .await?;
        for (label, rates) in [("first", &mut first_rates), ("again", &mut again_rates)] {
            let baseline = reset_peak_rss();
            let started = Instant::now();
            let report = import_csv(
                store.clone(),
                practice.id,
                settings,
                CsvSource::File(path.clone()),
                ImportOptions::default(),
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            let growth = peak_rss_kib().saturating_sub(baseline);
            peak_growth = peak_growth.max(growth);
            check(&report, args.rows, label == "first")?;
            let rate = report.rows as f64 / seconds;
            eprintln!(
                "run {run} {label}: {} rows in {seconds:.2} s = {rate:.0} rows/s \
                 (created {}, unchanged {}); peak RSS +{} MiB",
                report.rows,
                report.created,
                report.unchanged,
                growth / 1024
            );
            rates.push(rate);
        }
        // The database's ceiling for the same rows, in the same run.
        let copy = seed::practice(
            store.as_ref(),
            &format!("IMC{run:03}"),
            ChannelOrder::default(),
        )
        .await?;
        let (patients, seconds) = ceiling::copy_patients(url, practice.id, copy.id).await?;
        let ceiling = patients as f64 / seconds;
        eprintln!(
            "run {run} ceiling ({}): {patients} patients with their contacts in {seconds:.2} s = {ceiling:.0} rows/s",
            if url.starts_with("postgres") { "COPY binary" } else { "INSERT ... SELECT" },
        );
        ceilings.push(ceiling);
    }
    let (first, ceiling) = (median(&mut first_rates), median(&mut ceilings));
    println!(
        "import {}: rows={} batch={} runs={} first_median={:.0} rows/s again_median={:.0} rows/s \
         ceiling_median={:.0} rows/s first_ratio_to_ceiling={:.3} peak_rss_growth={} MiB peak_rss={} MiB",
        store.kind(),
        args.rows,
        settings.batch_rows,
        first_rates.len(),
        first,
        median(&mut again_rates),
        ceiling,
        first / ceiling,
        peak_growth / 1024,
        peak_rss_kib() / 1024
    );
    Ok(())
}

/// Refuses a run whose counts are not what the file must give.
fn check(report: &ImportReport, rows: u64, first: bool) -> Result<(), String> {
    let expected = if first { (rows, 0) } else { (0, rows) };
    if report.rejected > 0 || (report.created, report.unchanged) != expected {
        return Err(format!("unexpected import outcome: {}", report.summary()));
    }
    Ok(())
}

/// One synthetic patient of [`SyntheticPatients`].
pub(super) struct SyntheticPatient {
    pub nhs: NhsNumber,
    /// A valid UK mobile, written as a person would (`07xxx xxxxxx`).
    pub mobile: String,
    /// An email address for one patient in three.
    pub email: Option<String>,
    /// One patient in ten refuses SMS.
    pub refuses_sms: bool,
}

/// Synthetic patients, the same sequence every time: valid NHS numbers in order, each with
/// a valid mobile spread over the UK mobile ranges (so range lookups miss as they would on a
/// real list), a third with an email address, a tenth refusing SMS.
pub(super) struct SyntheticPatients {
    book: PhoneBook,
    x: u64,
    stem: u32,
    i: u64,
}

impl SyntheticPatients {
    pub fn new() -> Self {
        Self {
            book: PhoneBook::default(),
            x: 0x9E37_79B9_7F4A_7C15,
            stem: 100_000_000,
            i: 0,
        }
    }

    fn mobile(&mut self) -> String {
        loop {
            self.x = self
                .x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let x = self.x;
            let second = [1, 2, 3, 4, 5, 7, 8, 9][(x >> 60) as usize % 8];
            let number = format!(
                "07{second}{:02} {:06}",
                (x >> 40) % 100,
                (x >> 8) % 1_000_000
            );
            if self
                .book
                .parse(&number)
                .is_ok_and(|p| p.kind == PhoneKind::Mobile)
            {
                return number;
            }
        }
    }
}

impl Iterator for SyntheticPatients {
    type Item = SyntheticPatient;

    fn next(&mut self) -> Option<SyntheticPatient> {
        let nhs = loop {
            self.stem += 1;
            if let Some(n) = NhsNumber::from_stem(self.stem) {
                break n;
            }
        };
        let i = self.i;
        self.i += 1;
        Some(SyntheticPatient {
            nhs,
            mobile: self.mobile(),
            email: i
                .is_multiple_of(3)
                .then(|| format!("patient{i}@example.com")),
            refuses_sms: i.is_multiple_of(10),
        })
    }
}

/// Writes `rows` of [`SyntheticPatients`] as a practice system's CSV export, dates of birth in
/// UK form and a quoted comma in every surname.
fn write_file(path: &Path, rows: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        out,
        "NHS Number,Forename,Surname,Date of Birth,Mobile,Email,SMS Consent"
    )?;
    for (i, patient) in SyntheticPatients::new().take(rows as usize).enumerate() {
        let i = i as u64;
        writeln!(
            out,
            "{},Pat,\"Bench, {}\",{:02}/{:02}/{},{},{},{}",
            patient.nhs.as_str(),
            i % 97,
            1 + i % 28,
            1 + i % 12,
            1930 + i % 90,
            patient.mobile,
            patient.email.unwrap_or_default(),
            if patient.refuses_sms { "no" } else { "yes" },
        )?;
    }
    out.flush()
}
