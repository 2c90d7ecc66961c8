//! Importing appointments: rows are checked on a blocking thread (never on the async
//! runtime), in batches of `import.batch_rows`, each batch matched to the practice's patients
//! with one query and upserted in one transaction. Work is linear in the rows and memory
//! holds two batches, the first `import.max_reported_errors` refused rows and a 16-byte
//! fingerprint per external reference (to refuse a repeat), whatever the file's size.
//!
//! A CSV file is read twice: first only counted, so that a file over `import.max_rows` is
//! refused before anything is written; then checked and imported.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;
use tokio::sync::mpsc;

use super::csv::{Columns, CsvError};
use super::{parse_row, ImportSummary, Parsed, RejectedAppointment, Row};
use crate::config::ImportConfig;
use crate::domain::{Invalid, OdsCode, PatientId, PracticeId};
use crate::intake::import::reader::{ReadError, Record, Rows};
use crate::schedule::PracticeZone;
use crate::store::{
    AccessStore, AppointmentStore, AuditEntry, Practice, PracticeStore, StoreError,
};

/// Why a file of appointments could not be imported at all. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum FileImportError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// It is not a usable CSV appointment list.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The file has more data rows than allowed.
    #[error(
        "the file has more than {0} rows (import.max_rows): split it into smaller files; \
         nothing was imported"
    )]
    TooManyRows(u64),
    /// No practice has this ODS code.
    #[error("no practice {0}")]
    NoPractice(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reading thread failed.
    #[error("the reading task failed: {0}")]
    Task(String),
}

/// A row checked on its own and against the rows before it, waiting for its patient.
enum Checked {
    Parsed {
        index: usize,
        line: Option<u64>,
        row: Parsed,
    },
    Rejected(RejectedAppointment),
}

/// Checks rows in order: each parsed on its own, a repeated external reference refused at
/// its second appearance.
struct Checker {
    timezone: Tz,
    seen: RefSet,
    next: usize,
}

impl Checker {
    /// A checker reading times in the practice's `timezone`.
    fn new(timezone: PracticeZone) -> Self {
        Self {
            timezone: timezone.tz(),
            seen: RefSet::default(),
            next: 0,
        }
    }

    fn check(&mut self, row: Row) -> Checked {
        let index = self.next;
        self.next += 1;
        let reject = |external_ref: String, errors| {
            Checked::Rejected(RejectedAppointment {
                index,
                line: row.line,
                external_ref,
                errors,
            })
        };
        let input = match row.input {
            Ok(input) => input,
            Err(problem) => return reject(String::new(), vec![problem]),
        };
        match parse_row(&input, self.timezone) {
            Ok(parsed) if !self.seen.insert(&parsed.upsert.external_ref) => reject(
                input.external_ref,
                vec![Invalid::new(
                    "external_ref",
                    "appears more than once in this import",
                )],
            ),
            Ok(parsed) => Checked::Parsed {
                index,
                line: row.line,
                row: parsed,
            },
            Err(errors) => reject(input.external_ref, errors),
        }
    }
}

/// External references met so far, kept as 128-bit keyed hashes: 16 bytes each whatever
/// the reference's length (a false repeat needs a 128-bit collision under random keys).
struct RefSet {
    keys: (RandomState, RandomState),
    seen: HashSet<u128>,
}

impl Default for RefSet {
    fn default() -> Self {
        Self {
            keys: (RandomState::new(), RandomState::new()),
            seen: HashSet::new(),
        }
    }
}

impl RefSet {
    /// Adds `reference`; false if it was there already.
    fn insert(&mut self, reference: &str) -> bool {
        let high = u128::from(self.keys.0.hash_one(reference));
        let low = u128::from(self.keys.1.hash_one(reference));
        self.seen.insert(high << 64 | low)
    }
}

/// Matches a batch of checked rows to the practice's patients (one query), upserts the
/// matched ones (one transaction) and counts the rest as refused, in row order.
async fn settle<S>(
    store: &S,
    practice_id: PracticeId,
    batch: Vec<Checked>,
    summary: &mut ImportSummary,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<(), StoreError>
where
    S: AppointmentStore + ?Sized,
{
    let numbers: Vec<String> = batch
        .iter()
        .filter_map(|c| match c {
            Checked::Parsed { row, .. } => Some(row.nhs_number.as_str().to_string()),
            Checked::Rejected(_) => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let patients: HashMap<String, PatientId> = match numbers.is_empty() {
        true => HashMap::new(),
        false => store.patient_ids_by_nhs(practice_id, &numbers).await?,
    };
    let mut accepted = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    for checked in batch {
        summary.rows += 1;
        match checked {
            Checked::Rejected(r) => rejected.push(r),
            Checked::Parsed {
                index,
                line,
                mut row,
            } => match patients.get(row.nhs_number.as_str()) {
                Some(id) => {
                    row.upsert.patient_id = *id;
                    accepted.push(row.upsert);
                }
                None => rejected.push(RejectedAppointment {
                    index,
                    line,
                    external_ref: row.upsert.external_ref,
                    errors: vec![Invalid::new(
                        "nhs_number",
                        format!(
                            "no patient with NHS number {} at this practice: add the patient first",
                            row.nhs_number.as_str()
                        ),
                    )],
                }),
            },
        }
    }
    rejected.sort_by_key(|r| r.index);
    for r in rejected {
        summary.reject(r, limit);
    }
    if !accepted.is_empty() {
        let upserted = store
            .upsert_appointments(practice_id, &accepted, now)
            .await?;
        summary.created += upserted.created;
        summary.updated += upserted.updated;
    }
    Ok(())
}

/// Audits an import that stored anything, as done by `actor`.
async fn audit<S>(
    store: &S,
    practice: &Practice,
    summary: &ImportSummary,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError>
where
    S: AccessStore + ?Sized,
{
    if summary.created + summary.updated == 0 {
        return Ok(());
    }
    let details = json!({ "rows": summary.rows, "created": summary.created, "updated": summary.updated, "rejected": summary.rejected_count });
    store
        .audit(
            &AuditEntry {
                actor: actor.to_string(),
                action: "appointments.imported".into(),
                practice_id: Some(practice.id),
                subject: None,
                details: Some(details.to_string()),
            },
            now,
        )
        .await
}

/// Imports a batch of appointments (a JSON request, at most [`super::MAX_BATCH`]) for
/// `practice`: each row parsed on its own off the async runtime, a repeated external
/// reference rejected at its second appearance, rows naming no patient of the practice
/// rejected, the rest upserted by external reference in one transaction (the imported row
/// is taken as the truth: time, clinician, place, mode and status). An import that stored
/// anything is audited as done by `actor`.
pub async fn import<S>(
    store: &S,
    practice: &Practice,
    rows: Vec<Row>,
    config: &ImportConfig,
    actor: &str,
) -> Result<ImportSummary, FileImportError>
where
    S: AppointmentStore + AccessStore + ?Sized,
{
    let mut checker = Checker::new(practice.timezone);
    let checked = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|row| checker.check(row))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| FileImportError::Task(e.to_string()))?;
    let mut summary = ImportSummary::default();
    let now = Utc::now();
    settle(
        store,
        practice.id,
        checked,
        &mut summary,
        config.max_reported_errors,
        now,
    )
    .await?;
    audit(store, practice, &summary, actor, now).await?;
    Ok(summary)
}

/// Imports the CSV appointment list at `path` for `practice`: counted first (a file over
/// `import.max_rows` is refused before anything is written), then read and checked on a
/// blocking thread in batches that are matched and upserted one transaction each.
pub async fn import_csv_file<S>(
    store: &S,
    practice: &Practice,
    config: &ImportConfig,
    path: PathBuf,
    actor: &str,
) -> Result<ImportSummary, FileImportError>
where
    S: AppointmentStore + AccessStore + ?Sized,
{
    let (tx, mut rx) = mpsc::channel::<Vec<Checked>>(2);
    let settings = config.clone();
    let checker = Checker::new(practice.timezone);
    let reading = tokio::task::spawn_blocking(move || read_file(&path, &settings, checker, &tx));
    let mut summary = ImportSummary::default();
    let now = Utc::now();
    while let Some(batch) = rx.recv().await {
        settle(
            store,
            practice.id,
            batch,
            &mut summary,
            config.max_reported_errors,
            now,
        )
        .await?;
    }
    reading
        .await
        .map_err(|e| FileImportError::Task(e.to_string()))??;
    audit(store, practice, &summary, actor, now).await?;
    Ok(summary)
}

/// The reading thread: counts the file's rows, then sends its checked rows in batches.
/// Stops quietly if the receiver has gone (the import failed on its side).
fn read_file(
    path: &Path,
    config: &ImportConfig,
    mut checker: Checker,
    tx: &mpsc::Sender<Vec<Checked>>,
) -> Result<(), FileImportError> {
    let open = || {
        let file = std::fs::File::open(path)
            .map_err(|e| FileImportError::Read(path.display().to_string(), e))?;
        open_rows(file, config.max_row_bytes, path)
    };
    let (mut rows, _) = open()?;
    let rows_in_file = count_rows(&mut rows, path)?;
    if rows_in_file > config.max_rows {
        return Err(FileImportError::TooManyRows(config.max_rows));
    }
    let (mut rows, columns) = open()?;
    let mut record = Record::default();
    let batch_rows = config.batch_rows.max(1);
    let mut batch = Vec::with_capacity(batch_rows);
    while let Some(line) = next(&mut rows, &mut record, path)? {
        let Some(input) = columns.row(&record, config.max_row_bytes) else {
            continue;
        };
        batch.push(checker.check(Row {
            line: Some(line),
            input,
        }));
        if batch.len() >= batch_rows {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
            if tx.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// Opens the reader and finds the columns in the header row.
fn open_rows<R: Read>(
    input: R,
    max_row_bytes: usize,
    path: &Path,
) -> Result<(Rows<R>, Columns), FileImportError> {
    let rows = Rows::open(input)
        .map_err(|e| read_error(e, path))?
        .with_max_row_bytes(max_row_bytes);
    let columns = Columns::from_headers(rows.headers())?;
    Ok((rows, columns))
}

/// The data rows left in `rows` (empty rows not counted).
fn count_rows<R: Read>(rows: &mut Rows<R>, path: &Path) -> Result<u64, FileImportError> {
    let mut record = Record::default();
    let mut count = 0u64;
    while next(rows, &mut record, path)?.is_some() {
        let blank =
            !record.oversized() && record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace));
        count += u64::from(!blank);
    }
    Ok(count)
}

fn next<R: Read>(
    rows: &mut Rows<R>,
    record: &mut Record,
    path: &Path,
) -> Result<Option<u64>, FileImportError> {
    rows.next_into(record).map_err(|e| read_error(e, path))
}

fn read_error(e: ReadError, path: &Path) -> FileImportError {
    match e {
        ReadError::Format(reason) => FileImportError::Csv(CsvError::Header(reason)),
        ReadError::Io(e) => FileImportError::Read(path.display().to_string(), e),
    }
}

/// Imports the CSV file at `path` for the practice with ODS code `ods` with the default
/// `[import]` settings. Returns how many data rows the file had, and the summary.
pub async fn import_file<S>(
    store: &S,
    ods: &str,
    path: &Path,
    actor: &str,
) -> Result<(u64, ImportSummary), FileImportError>
where
    S: PracticeStore + AppointmentStore + AccessStore + ?Sized,
{
    import_file_with(store, &ImportConfig::default(), ods, path, actor).await
}

/// [`import_file`] with these `[import]` settings (the command line's
/// `gateway import-appointments`).
pub async fn import_file_with<S>(
    store: &S,
    config: &ImportConfig,
    ods: &str,
    path: &Path,
    actor: &str,
) -> Result<(u64, ImportSummary), FileImportError>
where
    S: PracticeStore + AppointmentStore + AccessStore + ?Sized,
{
    let practice = match OdsCode::parse(ods) {
        Ok(code) => store.practice_by_ods(&code).await?,
        Err(_) => None,
    }
    .ok_or_else(|| FileImportError::NoPractice(ods.to_string()))?;
    let summary = import_csv_file(store, &practice, config, path.to_path_buf(), actor).await?;
    Ok((summary.rows, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_references_are_told_apart_from_new_ones() {
        let mut seen = RefSet::default();
        assert!(seen.insert("A-1"));
        assert!(seen.insert("A-2"));
        assert!(!seen.insert("A-1"));
        assert!((0..10_000).all(|i| seen.insert(&format!("R-{i}"))));
    }

    #[test]
    fn a_file_over_the_row_cap_is_refused_before_any_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(
            &path,
            "nhs_number,starts_at,external_ref\n1,x,A\n\n2,y,B\n3,z,C\n",
        )
        .unwrap();
        let config = ImportConfig {
            max_rows: 2,
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let refused = read_file(&path, &config, Checker::new(PracticeZone::UK), &tx);
        assert!(matches!(refused, Err(FileImportError::TooManyRows(2))));
        assert!(rx.try_recv().is_err(), "nothing is sent before the count");
        let config = ImportConfig {
            max_rows: 3,
            batch_rows: 2,
            ..Default::default()
        };
        read_file(&path, &config, Checker::new(PracticeZone::UK), &tx).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [2, 1]);
    }
}
