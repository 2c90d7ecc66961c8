//! Appointments coming in: batches of bookings (JSON or CSV), each row parsed on its own so
//! one bad row never spoils the rest, matched to the practice's patients and upserted
//! ([`import`]); and one-patient changes ([`change`]).

pub mod change;
pub mod csv;
pub mod import;
#[cfg(test)]
mod proptests;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use import::{import, import_csv_file, import_file, import_file_with, FileImportError};

use crate::domain::{
    parse_external_ref, parse_start, AppointmentMode, AppointmentState, Invalid, NhsNumber,
    PatientId,
};
use crate::store::AppointmentUpsert;

/// Most appointments accepted in one JSON batch; larger lists go through CSV import.
pub const MAX_BATCH: usize = 10_000;

/// Longest clinician or location accepted.
const MAX_TEXT: usize = 200;

/// An appointment as a client or a CSV row gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectedAppointment {
    /// Position in the batch (or among the file's data rows), from 0.
    pub index: usize,
    /// Row of the CSV file as a spreadsheet numbers it (the header is row 1), for a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The external reference as given.
    pub external_ref: String,
    /// What was wrong.
    pub errors: Vec<Invalid>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Data rows read (empty rows not counted).
    pub rows: u64,
    /// Appointments new to the practice.
    pub created: u64,
    /// Appointments already there, updated.
    pub updated: u64,
    /// Rows not imported, with reasons, in row order: at most `import.max_reported_errors`.
    pub rejected: Vec<RejectedAppointment>,
    /// Rows not imported, all of them.
    pub rejected_count: u64,
    /// Rows not imported and not listed in `rejected`, beyond the limit.
    pub rejected_not_listed: u64,
}

impl ImportSummary {
    /// Counts a rejected row, listing it while fewer than `limit` are.
    fn reject(&mut self, row: RejectedAppointment, limit: usize) {
        self.rejected_count += 1;
        if self.rejected.len() < limit {
            self.rejected.push(row);
        } else {
            self.rejected_not_listed += 1;
        }
    }
}

/// One row of a batch: its spreadsheet row (for a file) and its values, or why the row
/// could not be read at all.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row as a spreadsheet numbers it (header = 1), for a file.
    pub line: Option<u64>,
    /// The values, or why they cannot be read (bad bytes, a runaway row).
    pub input: Result<AppointmentInput, Invalid>,
}

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
                    // Set once the NHS number is matched to the practice's patient.
                    patient_id: PatientId::new(0),
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
