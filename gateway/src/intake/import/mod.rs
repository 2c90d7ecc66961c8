//! CSV import of a practice's patient list, streamed: a blocking task reads and checks rows
//! into batches while the store writes the previous batch, so memory holds two batches
//! whatever the file's size.
//!
//! Every batch is one transaction and moves the run's checkpoint, so a killed import of the
//! same file resumes after the last committed batch. Repeated NHS numbers are found through
//! the run's list of numbers met in the database (`import_seen`), not an in-memory set; the
//! same list tells a `replace` import whom to make inactive, once the whole file is read.

pub mod mapping;
pub mod phones;
#[cfg(test)]
mod proptests;
pub mod reader;
pub mod report;
pub mod rows;

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use crate::config::{ColumnNames, ImportConfig};
pub use report::{counts_json, ImportReport, RowError};

use self::mapping::{Field, Layout};
use self::reader::{ReadError, Record, Rows};
use self::rows::{parse_row, Parsed};
use crate::domain::PracticeId;
use crate::store::{ImportCounts, ImportEnd, ImportRun, ImportStore, ImportedPatient, StoreError};

/// Why an import stopped before the end of the file. Rows already committed stay; nobody
/// is made inactive.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be imported at all (no header, no NHS number column...).
    #[error("{0}")]
    File(String),
    /// Reading failed part-way.
    #[error("reading the file failed: {0}")]
    Read(io::Error),
    /// The upload is larger than `import.max_upload_bytes`.
    #[error("the file is larger than the {0} bytes allowed (import.max_upload_bytes)")]
    TooLarge(u64),
    /// The file has more data rows than `import.max_rows`.
    #[error(
        "the file has more than {0} rows (import.max_rows): split it into smaller files; \
         the batches before the limit were imported"
    )]
    TooManyRows(u64),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The test hook stopped it, as a kill would.
    #[error("stopped after {0} batches, as asked")]
    Stopped(u64),
    /// The reading task died.
    #[error("the reading task failed: {0}")]
    Task(String),
}

/// Why a `replace` import of a file without patient rows is refused.
pub const NO_ROWS_TO_REPLACE: &str = "the file has no patient rows: a replace import would make \
     every patient inactive, so nothing was changed (check the export, or import in merge mode)";

/// An upload larger than allowed, carried inside the `io::Error` its reader returns.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} bytes")]
pub struct TooLarge(pub u64);

impl From<ReadError> for ImportError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Format(reason) => ImportError::File(reason),
            ReadError::Io(e) => match e.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()) {
                Some(TooLarge(limit)) => ImportError::TooLarge(*limit),
                None => ImportError::Read(e),
            },
        }
    }
}

/// Where the CSV comes from.
pub enum CsvSource {
    /// A file: fingerprinted, so an interrupted run of it resumes; read twice if all-or-nothing.
    File(PathBuf),
    /// A stream read once (an upload): never resumed, and not for all-or-nothing.
    Reader(Box<dyn Read + Send>),
}

/// Which pass over the file is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// All-or-nothing's first pass: checking every row, writing nothing.
    Checking,
    /// Writing batches.
    Importing,
}

/// Called with the bytes read so far in a pass.
pub type Progress = Arc<dyn Fn(Phase, u64) + Send + Sync>;

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Make the practice's list equal to the file: active patients it does not name become
    /// inactive once the whole file has been read.
    pub replace: bool,
    /// Import nothing if any row is refused.
    pub all_or_nothing: bool,
    /// Progress through the file.
    pub progress: Option<Progress>,
    /// For tests: fail after this many batches are committed, as a killed import would.
    #[doc(hidden)]
    pub stop_after_batches: Option<u64>,
}

/// Imports a CSV patient list into the practice, returning the report.
pub async fn import_csv(
    store: Arc<dyn ImportStore>,
    practice_id: PracticeId,
    config: &ImportConfig,
    source: CsvSource,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let fingerprint = match &source {
        CsvSource::File(path) => Some(fingerprint(config, path.clone()).await?),
        CsvSource::Reader(_) => None,
    };
    let run = store
        .open_import(
            practice_id,
            fingerprint.as_deref(),
            options.replace,
            Utc::now(),
        )
        .await?;
    let outcome = run_to_end(&store, &run, config, source, &options).await;
    if let Err(e) = &outcome {
        // A file that cannot be imported, or an upload that cannot be resumed, is given up.
        if fingerprint.is_none() || matches!(e, ImportError::File(_) | ImportError::TooManyRows(_))
        {
            let _ = store
                .finish_import(&run, ImportEnd::Abandoned, Utc::now())
                .await;
        }
    }
    outcome
}

async fn run_to_end(
    store: &Arc<dyn ImportStore>,
    run: &ImportRun,
    config: &ImportConfig,
    source: CsvSource,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        import_id: run.id.get(),
        mode: if run.replace { "replace" } else { "merge" },
        all_or_nothing: options.all_or_nothing,
        imported: true,
        resumed: run.resumed,
        ..Default::default()
    };
    let reader: Box<dyn Read + Send> = match source {
        CsvSource::File(path) => {
            if options.all_or_nothing {
                let checked =
                    read_pass(store, run, config, open(&path)?, Phase::Checking, options).await?;
                if checked.rejected > 0 {
                    store
                        .finish_import(run, ImportEnd::Rejected, Utc::now())
                        .await?;
                    report.imported = false;
                    checked.fill(&mut report, ImportCounts::default());
                    return Ok(report);
                }
            }
            open(&path)?
        }
        CsvSource::Reader(_) if options.all_or_nothing => {
            return Err(ImportError::File(
                "all-or-nothing imports read the file twice, so they need a file, not a stream"
                    .into(),
            ))
        }
        CsvSource::Reader(reader) => reader,
    };
    let pass = read_pass(store, run, config, reader, Phase::Importing, options).await?;
    if run.replace && pass.rows == 0 {
        // A header with nothing under it (an export that failed) must not empty the list.
        return Err(ImportError::File(NO_ROWS_TO_REPLACE.into()));
    }
    let mut counts = run.counts;
    counts.add(pass.counts);
    let unidentified = pass.unidentified;
    pass.fill(&mut report, counts);
    let deactivate = run.replace && unidentified == 0;
    if run.replace && !deactivate {
        report.deactivation_skipped = Some(format!(
            "{unidentified} rows have no readable NHS number, so the file may name patients they \
             cannot be matched to: correct them and import again"
        ));
    }
    report.deactivated = store
        .finish_import(run, ImportEnd::Completed { deactivate }, Utc::now())
        .await?;
    Ok(report)
}

fn open(path: &Path) -> Result<Box<dyn Read + Send>, ImportError> {
    Ok(Box::new(
        std::fs::File::open(path).map_err(ImportError::Read)?,
    ))
}

/// SHA-256 of the import settings and the file, naming the run to resume.
async fn fingerprint(config: &ImportConfig, path: PathBuf) -> Result<String, ImportError> {
    let settings = serde_json::to_vec(config).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let mut hash = Sha256::new();
        hash.update(&settings);
        let mut file = std::fs::File::open(&path)?;
        let mut buffer = vec![0; 1 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok(hex::encode(hash.finalize()));
            }
            hash.update(&buffer[..n]);
        }
    })
    .await
    .map_err(|e| ImportError::Task(e.to_string()))?
    .map_err(ImportError::Read)
}

/// What one pass over the file found.
#[derive(Default)]
struct Tally {
    rows: u64,
    rejected: u64,
    /// Refused rows whose NHS number could not be read.
    unidentified: u64,
    counts: ImportCounts,
    errors: Vec<RowError>,
    errors_not_listed: u64,
    batches_written: u64,
}

impl Tally {
    fn note(&mut self, error: RowError, limit: usize) {
        if self.errors.len() < limit {
            self.errors.push(error);
        } else {
            self.errors_not_listed += 1;
        }
    }

    fn fill(self, report: &mut ImportReport, counts: ImportCounts) {
        report.rows = self.rows;
        report.rejected = self.rejected;
        report.created = counts.created;
        report.updated = counts.updated;
        report.unchanged = counts.unchanged;
        report.errors = self.errors;
        report.errors_not_listed = self.errors_not_listed;
    }
}

/// What the reading task sends: the layout first, then batches of checked rows.
enum Message {
    Layout(Layout),
    Batch {
        rows: Vec<(u64, Parsed)>,
        through: u64,
    },
}

/// Reads the whole file once: rows are checked on a blocking task, repeats found through
/// the store, and (when importing) valid rows after the run's checkpoint written.
async fn read_pass(
    store: &Arc<dyn ImportStore>,
    run: &ImportRun,
    config: &ImportConfig,
    input: Box<dyn Read + Send>,
    phase: Phase,
    options: &ImportOptions,
) -> Result<Tally, ImportError> {
    let (tx, mut rx) = mpsc::channel(2);
    let settings = Arc::new(config.clone());
    let progress = options.progress.clone();
    let reading = tokio::task::spawn_blocking(move || {
        let input = Counted {
            inner: input,
            read: 0,
            phase,
            progress,
        };
        read_batches(&settings, input, &tx)
    });
    let mut tally = Tally::default();
    let mut layout = None;
    while let Some(message) = rx.recv().await {
        let (rows, through) = match message {
            Message::Layout(l) => {
                layout = Some(l);
                continue;
            }
            Message::Batch { rows, through } => (rows, through),
        };
        let Some(layout) = &layout else { continue };
        let valid = settle_batch(store, run, config, layout, rows, &mut tally).await?;
        if phase == Phase::Importing && !valid.is_empty() {
            let counts = store
                .import_batch(run, &layout.fields(), &valid, through, Utc::now())
                .await?;
            tally.counts.add(counts);
            tally.batches_written += 1;
            if options.stop_after_batches == Some(tally.batches_written) {
                return Err(ImportError::Stopped(tally.batches_written));
            }
        }
    }
    reading
        .await
        .map_err(|e| ImportError::Task(e.to_string()))??;
    Ok(tally)
}

/// Counts a batch's rows, refuses repeats (naming the row of the first), and returns the
/// valid rows the run has not committed yet.
async fn settle_batch(
    store: &Arc<dyn ImportStore>,
    run: &ImportRun,
    config: &ImportConfig,
    layout: &Layout,
    rows: Vec<(u64, Parsed)>,
    tally: &mut Tally,
) -> Result<Vec<ImportedPatient>, ImportError> {
    let numbers: Vec<Option<&str>> = rows.iter().map(|(_, p)| nhs_of(p)).collect();
    // Each number once, at its first row in the batch; the store says which it met earlier.
    let mut first_here: HashMap<&str, u64> = HashMap::new();
    let mut seen: Vec<(&str, u64)> = Vec::new();
    for (number, (row, _)) in numbers.iter().zip(&rows) {
        if let Some(n) = number {
            first_here.entry(n).or_insert_with(|| {
                seen.push((n, *row));
                *row
            });
        }
    }
    let earlier: HashMap<String, u64> = store.note_seen(run.id, &seen).await?.into_iter().collect();
    let repeats: Vec<Option<u64>> = numbers
        .iter()
        .zip(&rows)
        .map(|(number, (row, _))| {
            let n = (*number)?;
            let first = earlier.get(n).or(first_here.get(n)).copied()?;
            (first < *row).then_some(first)
        })
        .collect();
    let limit = config.max_reported_errors;
    let mut valid = Vec::with_capacity(rows.len());
    for ((row, parsed), repeat) in rows.into_iter().zip(repeats) {
        if matches!(parsed, Parsed::Blank) {
            continue;
        }
        tally.rows += 1;
        let repeat_error = repeat.map(|first| RowError {
            row,
            column: Some(layout.header(Field::NhsNumber)),
            reason: format!(
                "this NHS number is already on row {first}: only the first is imported"
            ),
        });
        match (parsed, repeat_error) {
            (Parsed::Valid(patient), None) => {
                if row > run.through_row {
                    valid.push(patient);
                }
            }
            (Parsed::Valid(_), Some(error)) => {
                tally.rejected += 1;
                tally.note(error, limit);
            }
            (Parsed::Rejected(number, errors), repeat_error) => {
                tally.rejected += 1;
                tally.unidentified += u64::from(number.is_none());
                for error in errors.into_iter().chain(repeat_error) {
                    tally.note(error, limit);
                }
            }
            (Parsed::Blank, _) => {}
        }
    }
    Ok(valid)
}

fn nhs_of(parsed: &Parsed) -> Option<&str> {
    match parsed {
        Parsed::Valid(p) => Some(p.patient.nhs_number.as_str()),
        Parsed::Rejected(Some(n), _) => Some(n.as_str()),
        _ => None,
    }
}

/// The reading task: header, then batches of `batch_rows` checked rows. Stops quietly if
/// the receiver has gone (the import failed on its side).
fn read_batches(
    config: &ImportConfig,
    input: impl Read,
    tx: &mpsc::Sender<Message>,
) -> Result<(), ImportError> {
    let mut rows = Rows::open(input)?.with_max_row_bytes(config.max_row_bytes);
    let layout =
        Layout::from_headers(config, rows.headers().to_vec()).map_err(ImportError::File)?;
    if tx.blocking_send(Message::Layout(layout.clone())).is_err() {
        return Ok(());
    }
    let mut record = Record::default();
    let mut phones = phones::PhoneBook::default();
    let mut batch = Vec::with_capacity(config.batch_rows);
    let mut through = 1;
    let mut counted = 0u64;
    while let Some(row) = rows.next_into(&mut record)? {
        through = row;
        match parse_row(config, &layout, &mut phones, row, &record) {
            Parsed::Blank => continue,
            parsed => batch.push((row, parsed)),
        }
        counted += 1;
        if counted > config.max_rows {
            return Err(ImportError::TooManyRows(config.max_rows));
        }
        if batch.len() >= config.batch_rows {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(config.batch_rows));
            if tx.blocking_send(Message::Batch { rows, through }).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Message::Batch {
            rows: batch,
            through,
        });
    }
    Ok(())
}

/// A reader that reports its progress.
struct Counted {
    inner: Box<dyn Read + Send>,
    read: u64,
    phase: Phase,
    progress: Option<Progress>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(progress) = &self.progress {
            progress(self.phase, self.read);
        }
        Ok(n)
    }
}
