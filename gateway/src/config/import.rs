//! `[import]`: CSV imports of patient lists and appointment files: batch size, date
//! formats, limits, and the header names each field is recognised by, since every clinical
//! system exports its own.

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Longest record of a file kept by default; a longer one is refused on its own.
pub const DEFAULT_MAX_ROW_BYTES: usize = 1 << 16;

/// `[import]` settings: batch size, date formats, and the header names of each field.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// File rows per batch; each batch is written in one transaction.
    pub batch_rows: usize,
    /// Formats tried in order for dates of birth (chrono `strftime` syntax).
    pub date_formats: Vec<String>,
    /// Most rejected rows listed in one report (all are counted).
    pub max_reported_errors: usize,
    /// Largest file accepted through the API, in bytes.
    pub max_upload_bytes: u64,
    /// Most data rows read from one file (contacts or appointments); a longer file is refused.
    pub max_rows: u64,
    /// Longest row kept, in bytes; a longer row is refused on its own (memory stays bounded).
    pub max_row_bytes: usize,
    /// Header names each field is recognised by.
    pub columns: ColumnNames,
}

/// Header names per field. Matching ignores case, spaces and punctuation, so `NHS Number`
/// also matches `nhs_number` and `NHS-number`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnNames {
    /// The patient's NHS number (the only column a file must have).
    pub nhs_number: Vec<String>,
    /// First name.
    pub given_name: Vec<String>,
    /// Surname.
    pub family_name: Vec<String>,
    /// Date of birth.
    pub date_of_birth: Vec<String>,
    /// Mobile number: used for SMS (a landline found here is kept as the landline).
    pub mobile: Vec<String>,
    /// Landline: kept, never used for SMS.
    pub landline: Vec<String>,
    /// Email address.
    pub email: Vec<String>,
    /// `sms`, `email` or `push`.
    pub preferred_channel: Vec<String>,
    /// `en` or `cy` (also `English`, `Welsh`).
    pub language: Vec<String>,
    /// Consent to SMS: a "no" records an opt-out of the mobile number.
    pub sms_consent: Vec<String>,
    /// Consent to email: a "no" records an opt-out of the address.
    pub email_consent: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for ColumnNames {
    fn default() -> Self {
        Self {
            nhs_number: names(&["NHS Number", "NHS No", "NHS"]),
            given_name: names(&["Given Name", "First Name", "Forename", "Forenames"]),
            family_name: names(&["Family Name", "Surname", "Last Name"]),
            date_of_birth: names(&["Date of Birth", "DOB", "Birth Date"]),
            mobile: names(&[
                "Mobile",
                "Mobile Number",
                "Mobile Phone",
                "Mobile Telephone",
                "Mobile Tel",
            ]),
            landline: names(&["Landline", "Home Telephone", "Home Phone", "Telephone"]),
            email: names(&["Email", "Email Address", "E-mail"]),
            preferred_channel: names(&["Preferred Channel", "Preferred Contact Method"]),
            language: names(&["Language", "Preferred Language"]),
            sms_consent: names(&["SMS Consent", "Consent to SMS", "Text Consent"]),
            email_consent: names(&["Email Consent", "Consent to Email"]),
        }
    }
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            batch_rows: 5000,
            date_formats: names(&["%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"]),
            max_reported_errors: 100_000,
            max_upload_bytes: 1 << 30,
            max_rows: 1_000_000,
            max_row_bytes: DEFAULT_MAX_ROW_BYTES,
            columns: ColumnNames::default(),
        }
    }
}

impl ColumnNames {
    /// Each field's name in settings, in the order an import reads them.
    pub const FIELDS: [&'static str; 11] = [
        "nhs_number",
        "given_name",
        "family_name",
        "date_of_birth",
        "mobile",
        "landline",
        "email",
        "preferred_channel",
        "language",
        "sms_consent",
        "email_consent",
    ];

    /// Each field's name with the header names it is recognised by, in [`Self::FIELDS`] order.
    pub fn by_field(&self) -> [(&'static str, &[String]); 11] {
        let lists: [&[String]; 11] = [
            &self.nhs_number,
            &self.given_name,
            &self.family_name,
            &self.date_of_birth,
            &self.mobile,
            &self.landline,
            &self.email,
            &self.preferred_channel,
            &self.language,
            &self.sms_consent,
            &self.email_consent,
        ];
        std::array::from_fn(|i| (Self::FIELDS[i], lists[i]))
    }
}

/// A header name reduced to what matching looks at: lower-case letters and digits. The
/// field's own name (`nhs_number`) always matches too.
pub fn header_key(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl ImportConfig {
    /// Checks the settings, naming the key at fault.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("import.{key}"), reason.to_string()));
        if !(1..=50_000).contains(&self.batch_rows) {
            return bad("batch_rows", "must be from 1 to 50000");
        }
        if self.max_upload_bytes == 0 {
            return bad("max_upload_bytes", "must be at least 1");
        }
        if self.date_formats.is_empty() {
            return bad("date_formats", "must name at least one format");
        }
        let sample = NaiveDate::from_ymd_opt(2000, 1, 31).unwrap_or_default();
        for f in &self.date_formats {
            let mut out = String::new();
            if write!(out, "{}", sample.format(f)).is_err() || !f.contains('%') {
                return bad(
                    "date_formats",
                    &format!("{f:?} is not a strftime date format"),
                );
            }
        }
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (field, names) in self.columns.by_field() {
            for name in names.iter().map(String::as_str) {
                let k = header_key(name);
                if k.is_empty() {
                    return bad(
                        &format!("columns.{field}"),
                        &format!("{name:?} has no letters or digits"),
                    );
                }
                if let Some((_, other)) = seen.iter().find(|(s, f)| *s == k && *f != field) {
                    return bad(
                        &format!("columns.{field}"),
                        &format!("{name:?} is also a name of {other}"),
                    );
                }
                seen.push((k, field));
            }
        }
        Ok(())
    }
}
