//! Appointments coming in: batches of bookings (JSON or CSV), each row parsed on its own so
//! one bad row never spoils the rest, matched to the practice's patients and upserted; and
//! one-patient changes ([`change`]).

pub mod change;
pub mod csv;

use std::collections::HashSet;
use std::path::Path;

use chrono::Utc;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{
    parse_external_ref, parse_start, AppointmentMode, AppointmentState, Invalid, NhsNumber, OdsCode,
};
use crate::store::{AppointmentUpsert, AuditEntry, Practice, Store, StoreError};

/// Most appointments accepted in one JSON batch; larger lists go through CSV import.
pub const MAX_BATCH: usize = 10_000;

/// Longest clinician or location accepted.
const MAX_TEXT: usize = 200;

/// An appointment as a client or a CSV row gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentInput {
    /// The patient's NHS number, spaces allowed.
    pub nhs_number: String,
    /// When it starts: UK local time (`2024-07-22 10:30`, `22/07/2024 10:30`) or RFC 3339.
    pub starts_at: String,
    /// Who with.
    #[serde(default)]
    pub clinician: Option<String>,
    /// Where.
    #[serde(default)]
    pub location: Option<String>,
    /// The practice system's id for the appointment: the key of the upsert.
    pub external_ref: String,
    /// `in_person` (default), `phone` or `video`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `booked` (default) or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
}

/// A row that was not imported, with every reason found.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedAppointment {
    /// Position in the batch, from 0.
    pub index: usize,
    /// Line of the CSV file, for a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The external reference as given.
    pub external_ref: String,
    /// What was wrong.
    pub errors: Vec<Invalid>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    /// Appointments new to the practice.
    pub created: u64,
    /// Appointments already there, updated.
    pub updated: u64,
    /// Rows not imported, with reasons.
    pub rejected: Vec<RejectedAppointment>,
}

/// One row of a batch: its CSV line (if from a file) and its values.
pub type Row = (Option<u64>, AppointmentInput);

/// A row parsed, waiting for its patient to be found.
struct Parsed {
    nhs_number: NhsNumber,
    upsert: AppointmentUpsert,
}

/// Parses one appointment, collecting every problem; times are read in `timezone`.
fn parse_row(input: &AppointmentInput, timezone: Tz) -> Result<Parsed, Vec<Invalid>> {
    let mut errors = Vec::new();
    let e = &mut errors;
    let nhs_number = kept(e, NhsNumber::parse(&input.nhs_number));
    let external_ref = kept(e, parse_external_ref(&input.external_ref));
    let starts_at = kept(e, parse_start(&input.starts_at, "starts_at", timezone));
    let clinician = kept(e, optional_text(&input.clinician, "clinician"));
    let location = kept(e, optional_text(&input.location, "location"));
    let mode = kept(e, word(&input.mode, AppointmentMode::InPerson));
    let state = kept(e, word(&input.status, AppointmentState::Booked));
    match (nhs_number, external_ref, starts_at, mode, state) {
        (Some(nhs_number), Some(external_ref), Some(starts_at), Some(mode), Some(state))
            if errors.is_empty() =>
        {
            Ok(Parsed {
                nhs_number,
                upsert: AppointmentUpsert {
                    patient_id: 0,
                    external_ref,
                    starts_at,
                    clinician: clinician.flatten(),
                    location: location.flatten(),
                    mode,
                    state,
                },
            })
        }
        _ => Err(errors),
    }
}

/// The value of `result`, or `None` with its problem added to `errors`.
pub(crate) fn kept<T>(errors: &mut Vec<Invalid>, result: Result<T, Invalid>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// A free-text value: trimmed, empty as none, at most [`MAX_TEXT`] characters.
pub(crate) fn optional_text(
    value: &Option<String>,
    field: &str,
) -> Result<Option<String>, Invalid> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) if text.chars().count() > MAX_TEXT => Err(Invalid::new(
            field,
            format!("longer than {MAX_TEXT} characters"),
        )),
        Some(text) if text.chars().any(char::is_control) => {
            Err(Invalid::new(field, "contains control characters"))
        }
        Some(text) => Ok(Some(text.to_string())),
    }
}

/// A stored word such as a mode (`In person` reads as `in_person`), or `default` when none
/// is given.
fn word<T: std::str::FromStr<Err = Invalid>>(
    value: &Option<String>,
    default: T,
) -> Result<T, Invalid> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text.to_ascii_lowercase().replace([' ', '-'], "_").parse(),
    }
}

/// Imports a batch of appointments for `practice`: each row parsed on its own, a repeated
/// external reference rejected at its second appearance, rows naming no patient of the
/// practice rejected, the rest upserted by external reference in one transaction (the
/// imported row is taken as the truth: time, clinician, place, mode and status). An import
/// that stored anything is audited as done by `actor`.
pub async fn import(
    store: &dyn Store,
    practice: &Practice,
    rows: &[Row],
    actor: &str,
) -> Result<ImportSummary, StoreError> {
    let timezone: Tz = practice
        .timezone
        .parse()
        .unwrap_or(chrono_tz::Europe::London);
    let mut summary = ImportSummary::default();
    let mut parsed = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    for (index, (line, input)) in rows.iter().enumerate() {
        let reject = |errors| RejectedAppointment {
            index,
            line: *line,
            external_ref: input.external_ref.clone(),
            errors,
        };
        match parse_row(input, timezone) {
            Ok(row) if !seen.insert(row.upsert.external_ref.clone()) => {
                summary.rejected.push(reject(vec![Invalid::new(
                    "external_ref",
                    "appears more than once in this import",
                )]))
            }
            Ok(row) => parsed.push((index, row)),
            Err(errors) => summary.rejected.push(reject(errors)),
        }
    }
    let numbers: Vec<String> = parsed
        .iter()
        .map(|(_, row)| row.nhs_number.as_str().to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let patients = store.patient_ids_by_nhs(practice.id, &numbers).await?;
    let mut accepted = Vec::with_capacity(parsed.len());
    for (index, mut row) in parsed {
        match patients.get(row.nhs_number.as_str()) {
            Some(id) => {
                row.upsert.patient_id = *id;
                accepted.push(row.upsert);
            }
            None => summary.rejected.push(RejectedAppointment {
                index,
                line: rows[index].0,
                external_ref: row.upsert.external_ref,
                errors: vec![Invalid::new(
                    "nhs_number",
                    format!(
                        "no patient with NHS number {} at this practice: add the patient first",
                        row.nhs_number.as_str()
                    ),
                )],
            }),
        }
    }
    summary.rejected.sort_by_key(|r| r.index);
    if accepted.is_empty() {
        return Ok(summary);
    }
    let now = Utc::now();
    let upserted = store
        .upsert_appointments(practice.id, &accepted, now)
        .await?;
    summary.created = upserted.created;
    summary.updated = upserted.updated;
    let details = json!({ "created": summary.created, "updated": summary.updated, "rejected": summary.rejected.len() });
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
        .await?;
    Ok(summary)
}

/// Why a file of appointments could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum FileImportError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// It is not a usable CSV appointment list.
    #[error(transparent)]
    Csv(#[from] csv::CsvError),
    /// No practice has this ODS code.
    #[error("no practice {0}")]
    NoPractice(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports the CSV file at `path` for the practice with ODS code `ods` (the command line's
/// `gateway import-appointments`). Returns how many rows the file had, and the summary.
pub async fn import_file(
    store: &dyn Store,
    ods: &str,
    path: &Path,
    actor: &str,
) -> Result<(usize, ImportSummary), FileImportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileImportError::Read(path.display().to_string(), e))?;
    let practice = match OdsCode::parse(ods) {
        Ok(code) => store.practice_by_ods(&code).await?,
        Err(_) => None,
    }
    .ok_or_else(|| FileImportError::NoPractice(ods.to_string()))?;
    let rows = csv::read(&text)?;
    let summary = import(store, &practice, &rows, actor).await?;
    Ok((rows.len(), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(nhs: &str, start: &str, reference: &str) -> AppointmentInput {
        AppointmentInput {
            nhs_number: nhs.into(),
            starts_at: start.into(),
            external_ref: reference.into(),
            clinician: Some(" Dr Patel ".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_row_is_normalised_into_utc() {
        let row = parse_row(
            &input("943 476 5919", "2024-07-22 10:30", " A-1 "),
            chrono_tz::Europe::London,
        )
        .unwrap();
        assert_eq!(row.nhs_number.as_str(), "9434765919");
        assert_eq!(row.upsert.external_ref, "A-1");
        assert_eq!(
            row.upsert.starts_at.to_rfc3339(),
            "2024-07-22T09:30:00+00:00"
        );
        assert_eq!(row.upsert.clinician.as_deref(), Some("Dr Patel"));
        assert_eq!(row.upsert.mode, AppointmentMode::InPerson);
        assert_eq!(row.upsert.state, AppointmentState::Booked);
    }

    #[test]
    fn every_problem_of_a_row_is_named() {
        let mut bad = input("123", "tomorrow", "");
        bad.mode = Some("carrier pigeon".into());
        bad.status = Some("Cancelled".into());
        assert_eq!(
            word(&Some("In-Person".into()), AppointmentMode::Phone),
            Ok(AppointmentMode::InPerson)
        );
        let errors = parse_row(&bad, chrono_tz::Europe::London).err().unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["nhs_number", "external_ref", "starts_at", "mode"]);
    }
}
