//! What an import did, and every refused row with its row number, column and reason, as
//! JSON or as a CSV a practice can open beside its file.

use serde::Serialize;

/// One problem with one row. A row may have several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// The row as a spreadsheet numbers it (the header is row 1).
    pub row: u64,
    /// The column's header as the file has it; `None` when the row as a whole is at fault.
    pub column: Option<String>,
    /// What is wrong, in words a practice manager can act on.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// The run's id.
    pub import_id: i64,
    /// `merge` (add and update) or `replace` (the list becomes the file).
    pub mode: &'static str,
    /// Whether any bad row stops the whole file.
    pub all_or_nothing: bool,
    /// False when all-or-nothing refused the file: nothing was written.
    pub imported: bool,
    /// Whether this run carried on an interrupted run of the same file.
    pub resumed: bool,
    /// Data rows read (empty rows not counted).
    pub rows: u64,
    /// Patients new to the practice.
    pub created: u64,
    /// Patients whose details, contacts or active flag changed.
    pub updated: u64,
    /// Patients already exactly as the file has them.
    pub unchanged: u64,
    /// Rows refused.
    pub rejected: u64,
    /// Patients made inactive because the file did not name them (replace mode).
    pub deactivated: u64,
    /// Why a replace import made nobody inactive, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivation_skipped: Option<String>,
    /// The problems, in file order (at most the configured number).
    pub errors: Vec<RowError>,
    /// Problems found but not listed, beyond that number.
    pub errors_not_listed: u64,
}

impl ImportReport {
    /// The problems as CSV: `row,column,reason`, one line each.
    pub fn errors_csv(&self) -> Vec<u8> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record(["row", "column", "reason"]);
        for e in &self.errors {
            let row = e.row.to_string();
            let _ = out.write_record([
                row.as_str(),
                e.column.as_deref().unwrap_or(""),
                e.reason.as_str(),
            ]);
        }
        if self.errors_not_listed > 0 {
            let note = format!("{} more problems not listed", self.errors_not_listed);
            let _ = out.write_record(["", "", note.as_str()]);
        }
        out.into_inner().unwrap_or_default()
    }

    /// One line saying what happened.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} rows read: {} created, {} updated, {} unchanged, {} rejected",
            self.rows, self.created, self.updated, self.unchanged, self.rejected
        );
        if self.mode == "replace" {
            line.push_str(&format!(", {} made inactive", self.deactivated));
        }
        if !self.imported {
            line.push_str("; nothing imported (all or nothing)");
        }
        if let Some(reason) = &self.deactivation_skipped {
            line.push_str(&format!("; nobody made inactive: {reason}"));
        }
        line
    }
}

/// The counts of a report, for the audit trail (never patients' details).
pub fn counts_json(report: &ImportReport) -> serde_json::Value {
    serde_json::json!({
        "import_id": report.import_id,
        "mode": report.mode,
        "imported": report.imported,
        "rows": report.rows,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "deactivated": report.deactivated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_csv_with_quoting() {
        let report = ImportReport {
            errors: vec![
                RowError {
                    row: 3,
                    column: Some("Mobile, main".into()),
                    reason: "\"07\" is not a phone number".into(),
                },
                RowError {
                    row: 9,
                    column: None,
                    reason: "has 2 fields".into(),
                },
            ],
            errors_not_listed: 4,
            ..Default::default()
        };
        let text = String::from_utf8(report.errors_csv()).unwrap();
        assert_eq!(
            text,
            "row,column,reason\n3,\"Mobile, main\",\"\"\"07\"\" is not a phone number\"\n9,,has 2 fields\n,,4 more problems not listed\n"
        );
    }
}
