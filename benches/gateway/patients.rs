//! `patients`: the JSON patient upsert (`POST /practices/{ods}/patients`) through the running
//! gateway, in batches, first as new patients and then again unchanged, beside the
//! database's ceiling for the same rows measured in the same run (see `ceiling`).

use std::time::Instant;

use serde_json::{json, Value};

use super::import::SyntheticPatients;
use super::{ceiling, group, median, seed, BenchStore};
use gateway::config::Config;
use gateway::domain::ChannelOrder;

/// Options of the `patients` benchmark.
#[derive(Debug, clap::Args)]
pub struct PatientsArgs {
    /// Patients posted per run.
    #[arg(long, default_value_t = 100_000)]
    pub patients: usize,
    /// Patients per request (the API takes at most 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Runs, each into a practice of its own; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// A PostgreSQL server URL to benchmark instead of SQLite; a scratch database is made
    /// on it and dropped afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// Starts the gateway on a scratch store, times the upserts and prints one summary line.
pub async fn patients(
    config: &Config,
    args: PatientsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let bench = BenchStore::open(args.postgres.as_deref()).await?;
    let result = run(config, &bench, &args).await;
    bench.close().await?;
    result
}

async fn run(
    config: &Config,
    bench: &BenchStore,
    args: &PatientsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    // Nothing is sent here: the provider's address is never used.
    let gateway = group::Gateway::start(config, bench, "http://127.0.0.1:9/unused", 1).await?;
    let batches: Vec<Value> = SyntheticPatients::new()
        .take(args.patients)
        .collect::<Vec<_>>()
        .chunks(args.batch.max(1))
        .map(|chunk| {
            let patients: Vec<Value> = chunk
                .iter()
                .map(|p| {
                    let mut contacts =
                        vec![json!({ "channel": "sms", "address": p.mobile, "opted_out": p.refuses_sms })];
                    if let Some(email) = &p.email {
                        contacts.push(json!({ "channel": "email", "address": email }));
                    }
                    json!({ "nhs_number": p.nhs.as_str(), "given_name": "Pat", "family_name": "Bench", "contacts": contacts })
                })
                .collect();
            json!({ "patients": patients })
        })
        .collect();
    let (mut first_rates, mut again_rates, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        let ods = format!("PAT{run:03}");
        let practice = seed::practice(bench.store.as_ref(), &ods, ChannelOrder::default()).await?;
        for (label, rates) in [("first", &mut first_rates), ("again", &mut again_rates)] {
            let started = Instant::now();
            let (mut created, mut updated) = (0, 0);
            for batch in &batches {
                let reply = gateway
                    .post(&format!("/practices/{ods}/patients"), batch)
                    .await?;
                if reply["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
                    return Err(format!("patients rejected: {}", reply["rejected"]).into());
                }
                created += reply["created"].as_u64().unwrap_or(0);
                updated += reply["updated"].as_u64().unwrap_or(0);
            }
            let seconds = started.elapsed().as_secs_f64();
            let expected = if label == "first" {
                (args.patients as u64, 0)
            } else {
                (0, args.patients as u64)
            };
            if (created, updated) != expected {
                return Err(format!("{label}: created {created}, updated {updated}").into());
            }
            let rate = args.patients as f64 / seconds;
            eprintln!(
                "run {run} {label}: {} patients in {seconds:.2} s = {rate:.0} patients/s",
                args.patients
            );
            rates.push(rate);
        }
        let copy = seed::practice(
            bench.store.as_ref(),
            &format!("PAC{run:03}"),
            ChannelOrder::default(),
        )
        .await?;
        let (rows, seconds) = ceiling::copy_patients(&bench.url, practice.id, copy.id).await?;
        let ceiling = rows as f64 / seconds;
        eprintln!("run {run} ceiling: {rows} patients with their contacts in {seconds:.2} s = {ceiling:.0} rows/s");
        ceilings.push(ceiling);
    }
    gateway.stop().await;
    let (first, ceiling) = (median(&mut first_rates), median(&mut ceilings));
    println!(
        "patients {}: patients={} batch={} runs={} first_median={first:.0} patients/s again_median={:.0} patients/s \
         ceiling_median={ceiling:.0} rows/s first_ratio_to_ceiling={:.3}",
        bench.store.kind(),
        args.patients,
        args.batch,
        first_rates.len(),
        median(&mut again_rates),
        first / ceiling,
    );
    Ok(())
}
