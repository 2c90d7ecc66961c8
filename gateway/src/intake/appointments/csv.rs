//! Appointment lists as CSV, as clinical systems export them: a header row naming the
//! columns (in any order; other columns are ignored), then one appointment per row.
//!
//! Columns: `nhs_number`, `starts_at` (UK local time or RFC 3339), `external_ref`, and
//! optionally `clinician`, `location`, `mode`, `status`. Header names are matched without
//! regard to case, spaces or dashes, and a few common names are understood (`start`,
//! `reference`, `appointment_id`, `nhs_no`, `place`).

use super::{AppointmentInput, Row};
use crate::config::DEFAULT_MAX_ROW_BYTES;
use crate::domain::Invalid;
use crate::intake::import::reader::{Record, Rows};

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

/// Where each understood column is in a file, told from its header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    at: Vec<Option<usize>>,
}

impl Columns {
    /// Finds the columns in a header row, naming any required one that is missing.
    pub fn from_headers(headers: &[String]) -> Result<Self, CsvError> {
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
        Ok(Self {
            at: COLUMNS.iter().map(|(c, _)| position(c)).collect(),
        })
    }

    /// The appointment a record gives, `None` for an empty row (skipped, as a spreadsheet's
    /// empty row), or why the row cannot be read at all.
    pub fn row(
        &self,
        record: &Record,
        max_row_bytes: usize,
    ) -> Option<Result<AppointmentInput, Invalid>> {
        if record.oversized() {
            return Some(Err(Invalid::new(
                "",
                format!("the row is longer than {max_row_bytes} bytes (import.max_row_bytes): is a quote left open?"),
            )));
        }
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            return None;
        }
        let mut unreadable = None;
        let mut cell = |i: usize| -> String {
            let bytes = self.at[i].and_then(|i| record.get(i)).unwrap_or_default();
            match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => {
                    unreadable.get_or_insert(COLUMNS[i].0);
                    String::new()
                }
            }
        };
        let mut optional = |i: usize| Some(cell(i)).filter(|v| !v.is_empty());
        let input = AppointmentInput {
            clinician: optional(3),
            location: optional(4),
            mode: optional(5),
            status: optional(6),
            nhs_number: cell(0),
            starts_at: cell(1),
            external_ref: cell(2),
        };
        Some(match unreadable {
            Some(column) => Err(Invalid::new(
                column,
                "is not UTF-8 text: save the file as \"CSV UTF-8\"",
            )),
            None => Ok(input),
        })
    }
}

/// Reads a whole CSV appointment list held in memory into rows with their spreadsheet row
/// numbers (the header is row 1), through the same streaming reader as an upload. For small
/// files and tests: imports stream the file instead ([`super::import_csv_file`]).
pub fn read(bytes: &[u8]) -> Result<Vec<Row>, CsvError> {
    let mut rows = Rows::open(bytes)
        .map_err(|e| CsvError::Header(e.to_string()))?
        .with_max_row_bytes(DEFAULT_MAX_ROW_BYTES);
    let columns = Columns::from_headers(rows.headers())?;
    let mut out = Vec::new();
    let mut record = Record::default();
    while let Some(row) = rows
        .next_into(&mut record)
        .map_err(|e| CsvError::Header(e.to_string()))?
    {
        if let Some(input) = columns.row(&record, DEFAULT_MAX_ROW_BYTES) {
            out.push(Row {
                line: Some(row),
                input,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(row: &Row) -> &AppointmentInput {
        row.input.as_ref().unwrap()
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let text = "\u{feff}Reference,Patient name,NHS Number,Start,Clinician,Location\r\n\
                    A-1,Ada,943 476 5919,2024-07-22 10:30,\"Patel, Dr\",Room 2\r\n\
                    \r\n\
                    A-2,Bo,9434765870,22/07/2024 11:00,,\r\n";
        let rows = read(text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        let first = input(&rows[0]);
        assert_eq!(rows[0].line, Some(2));
        assert_eq!(first.external_ref, "A-1");
        assert_eq!(first.nhs_number, "943 476 5919");
        assert_eq!(first.clinician.as_deref(), Some("Patel, Dr"));
        assert_eq!(first.location.as_deref(), Some("Room 2"));
        assert_eq!(rows[1].line, Some(4));
        assert_eq!(input(&rows[1]).clinician, None);
    }

    #[test]
    fn missing_columns_are_named() {
        assert_eq!(
            read(b"nhs_number,clinician\n9434765919,Dr Patel\n").err(),
            Some(CsvError::MissingColumns(vec!["starts_at", "external_ref"]))
        );
        assert!(matches!(read(b""), Err(CsvError::Header(_))));
        assert!(matches!(read(b" , \n"), Err(CsvError::Empty)));
    }

    #[test]
    fn short_rows_leave_their_cells_empty() {
        let rows = read(b"nhs_number,starts_at,external_ref\n9434765919\n").unwrap();
        assert_eq!(input(&rows[0]).nhs_number, "9434765919");
        assert_eq!(input(&rows[0]).starts_at, "");
        assert_eq!(input(&rows[0]).external_ref, "");
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them() {
        let text = b"nhs_number,starts_at,external_ref,location\n\
                     1,x,A,\"two\nlines\"\n2,y,B,\n\n3,z,C,\n";
        let rows = read(text).unwrap();
        let lines: Vec<Option<u64>> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [Some(2), Some(3), Some(5)]);
    }

    #[test]
    fn bad_bytes_and_runaway_rows_are_refused_alone() {
        let mut text = b"nhs_number,starts_at,external_ref\n1,\xff,A\n2,\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', DEFAULT_MAX_ROW_BYTES + 10));
        text.extend(b"\",B\n3,z,C\n");
        let rows = read(&text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].input.as_ref().unwrap_err().field, "starts_at");
        assert!(rows[1]
            .input
            .as_ref()
            .unwrap_err()
            .reason
            .contains("longer than"));
        assert_eq!(
            (rows[2].line, input(&rows[2]).external_ref.as_str()),
            (Some(4), "C")
        );
    }
}
