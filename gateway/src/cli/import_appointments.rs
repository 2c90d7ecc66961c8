//! `gateway import-appointments --practice ODS FILE`: a practice's booked appointments from
//! a CSV file, then a summary with each refused row's line and reason.

use std::path::PathBuf;

use crate::config::Config;
use crate::intake::appointments::import_file_with;
use crate::store;

/// Options of `gateway import-appointments`.
#[derive(Debug, clap::Args)]
pub struct ImportAppointmentsArgs {
    /// The practice (ODS code).
    #[arg(long)]
    pub practice: String,
    /// The CSV file.
    pub file: PathBuf,
}

/// Imports the file, upserting by `external_ref`; an error if no row could be imported.
pub async fn run(
    config: &Config,
    args: ImportAppointmentsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = store::connect(&config.database.url, 1).await?;
    store.migrate().await?;
    let (rows, summary) = import_file_with(
        store.as_ref(),
        &config.import,
        &args.practice,
        &args.file,
        "cli",
    )
    .await?;
    for rejected in &summary.rejected {
        for e in &rejected.errors {
            let line = rejected.line.unwrap_or_default();
            eprintln!("row {line}: {}: {}", e.field, e.reason);
        }
    }
    if summary.rejected_not_listed > 0 {
        eprintln!("... and {} more rows refused", summary.rejected_not_listed);
    }
    println!(
        "{rows} rows: {} created, {} updated, {} rejected",
        summary.created, summary.updated, summary.rejected_count
    );
    if summary.created + summary.updated == 0 && summary.rejected_count > 0 {
        return Err("no appointment could be imported".into());
    }
    Ok(())
}
