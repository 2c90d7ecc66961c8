//! `gateway import-contacts --practice ODS FILE`: a progress bar on the bytes read, then a
//! summary, and the rejected rows on the terminal or in a report file.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::OdsCode;
use crate::intake::import::{
    counts_json, import_csv, CsvSource, ImportOptions, ImportReport, Phase,
};
use crate::store::{self, AuditEntry};

/// Rejected rows printed when no report file is asked for.
const SHOWN_ERRORS: usize = 20;

/// Options of `gateway import-contacts`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The practice's ODS code.
    #[arg(long)]
    pub practice: String,
    /// The CSV file (UTF-8, comma or semicolon separated, first row naming the columns).
    pub file: PathBuf,
    /// Make the practice's list equal to the file: active patients it does not name become
    /// inactive (never deleted) once the whole file has been read.
    #[arg(long)]
    pub replace: bool,
    /// Import nothing if any row is bad.
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Write every rejected row (row, column, reason) to this file: JSON if it ends in
    /// `.json`, CSV otherwise.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs the import, drawing progress on standard error (when it is a terminal).
pub async fn run(config: &Config, args: ImportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = store::connect(&config.database.url, config.database.max_connections).await?;
    store.migrate().await?;
    let ods = OdsCode::parse(&args.practice)?;
    let practice = store
        .practice_by_ods(&ods)
        .await?
        .ok_or_else(|| format!("no practice {ods}: create it first with POST /api/v1/practices"))?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
        .len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:9} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let shown = bar.clone();
    let options = ImportOptions {
        replace: args.replace,
        all_or_nothing: args.all_or_nothing,
        progress: Some(Arc::new(move |phase, bytes| {
            shown.set_message(match phase {
                Phase::Checking => "checking",
                Phase::Importing => "importing",
            });
            shown.set_position(bytes);
        })),
        stop_after_batches: None,
    };
    let outcome = import_csv(
        store.clone(),
        practice.id,
        &config.import,
        CsvSource::File(args.file.clone()),
        options,
    )
    .await;
    bar.finish_and_clear();
    let report = outcome?;
    store
        .audit(
            &AuditEntry {
                actor: "cli".into(),
                action: "patients.imported".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("import {}", report.import_id)),
                details: Some(counts_json(&report).to_string()),
            },
            Utc::now(),
        )
        .await?;
    if report.resumed {
        println!("resumed import {} where it stopped", report.import_id);
    }
    println!("{}", report.summary());
    match &args.report {
        Some(path) => {
            let bytes = if path.extension().is_some_and(|e| e == "json") {
                serde_json::to_vec_pretty(&report)?
            } else {
                report.errors_csv()
            };
            std::fs::write(path, bytes)?;
            println!("report written to {}", path.display());
        }
        None => print_errors(&report),
    }
    if !report.imported {
        return Err(format!(
            "nothing imported: {} rows have problems (all or nothing)",
            report.rejected
        )
        .into());
    }
    Ok(())
}

fn print_errors(report: &ImportReport) {
    for e in report.errors.iter().take(SHOWN_ERRORS) {
        match &e.column {
            Some(column) => eprintln!("row {}, {column}: {}", e.row, e.reason),
            None => eprintln!("row {}: {}", e.row, e.reason),
        }
    }
    let more = report.errors.len().saturating_sub(SHOWN_ERRORS) as u64 + report.errors_not_listed;
    if more > 0 {
        eprintln!("... and {more} more: use --report FILE to list them all");
    }
}
