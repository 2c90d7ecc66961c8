//! Appointment lists as CSV, as clinical systems export them: a header row naming the
//! columns (in any order; other columns are ignored), then one appointment per row.
//!
//! Columns: `nhs_number`, `starts_at` (UK local time or RFC 3339), `external_ref`, and
//! optionally `clinician`, `location`, `mode`, `status`. Header names are matched without
//! regard to case, spaces or dashes, and a few common names are understood (`start`,
//! `reference`, `appointment_id`, `nhs_no`, `place`).

use super::{AppointmentInput, Row};

/// Why a file could not be read at all (a bad row is reported with the row instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The file has no header row.
    #[error("the file is empty: it needs a header row naming the columns")]
    Empty,
    /// Columns every appointment needs are missing from the header.
    #[error("the header row lacks the column(s) {}: it needs nhs_number, starts_at and external_ref", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    /// The header row itself cannot be read.
    #[error("the header row cannot be read: {0}")]
    Header(String),
}

/// The columns understood, each with the header names taken for it.
const COLUMNS: &[(&str, &[&str])] = &[
    ("nhs_number", &["nhs_number", "nhs", "nhs_no", "nhsnumber"]),
    (
        "starts_at",
        &[
            "starts_at",
            "start",
            "starts",
            "start_time",
            "appointment_start",
        ],
    ),
    (
        "external_ref",
        &[
            "external_ref",
            "reference",
            "ref",
            "appointment_id",
            "appointment_ref",
        ],
    ),
    (
        "clinician",
        &["clinician", "practitioner", "clinician_name"],
    ),
    ("location", &["location", "place", "site", "room"]),
    ("mode", &["mode", "appointment_mode"]),
    ("status", &["status", "state"]),
];

const REQUIRED: [&str; 3] = ["nhs_number", "starts_at", "external_ref"];

/// A header cell as compared: lower case, spaces and dashes as underscores.
fn normalise(header: &str) -> String {
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
}

/// The line (from 1) of the record the reader started at byte `offset`. The csv crate's own
/// line count skips blank lines and counts a CRLF late, and its offset is where it began
/// scanning, before the line ends it skipped, so those are stepped over here.
fn line_at(text: &str, offset: u64) -> u64 {
    let bytes = text.as_bytes();
    let mut at = (offset as usize).min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
        at += 1;
    }
    bytes[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// Reads a CSV appointment list into rows with their line numbers. A row that cannot be
/// read (bad quoting, not UTF-8) is returned with its problem as the row's `nhs_number`
/// left empty, so it is rejected with the rest of its reasons.
pub fn read(text: &str) -> Result<Vec<Row>, CsvError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| CsvError::Header(e.to_string()))?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
        return Err(CsvError::Empty);
    }
    let position = |column: &str| {
        let names = COLUMNS
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, names)| *names)
            .unwrap_or_default();
        headers
            .iter()
            .position(|h| names.contains(&normalise(h).as_str()))
    };
    let missing: Vec<&'static str> = REQUIRED
        .into_iter()
        .filter(|c| position(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(CsvError::MissingColumns(missing));
    }
    let at: Vec<Option<usize>> = COLUMNS.iter().map(|(c, _)| position(c)).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map(|p| line_at(text, p.byte()));
                rows.push((
                    line,
                    AppointmentInput {
                        external_ref: format!("(unreadable row: {e})"),
                        ..Default::default()
                    },
                ));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map(|p| line_at(text, p.byte()));
        let cell = |i: usize| at[i].and_then(|i| record.get(i)).unwrap_or("").to_string();
        let optional = |i: usize| Some(cell(i)).filter(|v| !v.is_empty());
        rows.push((
            line,
            AppointmentInput {
                nhs_number: cell(0),
                starts_at: cell(1),
                external_ref: cell(2),
                clinician: optional(3),
                location: optional(4),
                mode: optional(5),
                status: optional(6),
            },
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let text = "\u{feff}Reference,Patient name,NHS Number,Start,Clinician,Location\r\n\
                    A-1,Ada,943 476 5919,2024-07-22 10:30,\"Patel, Dr\",Room 2\r\n\
                    \r\n\
                    A-2,Bo,9434765870,22/07/2024 11:00,,\r\n";
        let rows = read(text).unwrap();
        assert_eq!(rows.len(), 2);
        let (line, first) = &rows[0];
        assert_eq!(*line, Some(2));
        assert_eq!(first.external_ref, "A-1");
        assert_eq!(first.nhs_number, "943 476 5919");
        assert_eq!(first.clinician.as_deref(), Some("Patel, Dr"));
        assert_eq!(first.location.as_deref(), Some("Room 2"));
        assert_eq!(rows[1].0, Some(4));
        assert_eq!(rows[1].1.clinician, None);
    }

    #[test]
    fn missing_columns_are_named() {
        assert_eq!(
            read("nhs_number,clinician\n9434765919,Dr Patel\n"),
            Err(CsvError::MissingColumns(vec!["starts_at", "external_ref"]))
        );
        assert_eq!(read(""), Err(CsvError::Empty));
    }

    #[test]
    fn short_rows_leave_their_cells_empty() {
        let rows = read("nhs_number,starts_at,external_ref\n9434765919\n").unwrap();
        assert_eq!(rows[0].1.nhs_number, "9434765919");
        assert_eq!(rows[0].1.starts_at, "");
        assert_eq!(rows[0].1.external_ref, "");
    }
}
