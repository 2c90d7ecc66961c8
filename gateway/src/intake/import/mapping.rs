//! Which column of a file holds which field: the `[import]` settings name the headers each
//! field may have, since every clinical system exports its own.

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::store::ImportFields;

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
            max_row_bytes: super::reader::DEFAULT_MAX_ROW_BYTES,
            columns: ColumnNames::default(),
        }
    }
}

/// A field of a patient row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// NHS number.
    NhsNumber,
    /// First name.
    GivenName,
    /// Surname.
    FamilyName,
    /// Date of birth.
    DateOfBirth,
    /// Mobile number.
    Mobile,
    /// Landline.
    Landline,
    /// Email address.
    Email,
    /// Preferred channel.
    PreferredChannel,
    /// Message language.
    Language,
    /// Consent to SMS.
    SmsConsent,
    /// Consent to email.
    EmailConsent,
}

impl Field {
    /// Every field, in the order of [`Layout::columns`].
    pub const ALL: [Field; 11] = [
        Field::NhsNumber,
        Field::GivenName,
        Field::FamilyName,
        Field::DateOfBirth,
        Field::Mobile,
        Field::Landline,
        Field::Email,
        Field::PreferredChannel,
        Field::Language,
        Field::SmsConsent,
        Field::EmailConsent,
    ];

    /// The field's name in settings and messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::NhsNumber => "nhs_number",
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::DateOfBirth => "date_of_birth",
            Field::Mobile => "mobile",
            Field::Landline => "landline",
            Field::Email => "email",
            Field::PreferredChannel => "preferred_channel",
            Field::Language => "language",
            Field::SmsConsent => "sms_consent",
            Field::EmailConsent => "email_consent",
        }
    }

    fn names(self, columns: &ColumnNames) -> &[String] {
        match self {
            Field::NhsNumber => &columns.nhs_number,
            Field::GivenName => &columns.given_name,
            Field::FamilyName => &columns.family_name,
            Field::DateOfBirth => &columns.date_of_birth,
            Field::Mobile => &columns.mobile,
            Field::Landline => &columns.landline,
            Field::Email => &columns.email,
            Field::PreferredChannel => &columns.preferred_channel,
            Field::Language => &columns.language,
            Field::SmsConsent => &columns.sms_consent,
            Field::EmailConsent => &columns.email_consent,
        }
    }

    fn index(self) -> usize {
        Field::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// A header name reduced to what matching looks at: lower-case letters and digits. The
/// field's own name (`nhs_number`) always matches too.
fn key(name: &str) -> String {
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
        let mut seen: Vec<(String, Field)> = Vec::new();
        for field in Field::ALL {
            for name in field.names(&self.columns).iter().map(String::as_str) {
                let k = key(name);
                if k.is_empty() {
                    return bad(
                        &format!("columns.{}", field.name()),
                        &format!("{name:?} has no letters or digits"),
                    );
                }
                if let Some((_, other)) = seen.iter().find(|(s, f)| *s == k && *f != field) {
                    return bad(
                        &format!("columns.{}", field.name()),
                        &format!("{name:?} is also a name of {}", other.name()),
                    );
                }
                seen.push((k, field));
            }
        }
        Ok(())
    }

    /// Which field a header names, if any.
    fn field_of(&self, header: &str) -> Option<Field> {
        let k = key(header);
        Field::ALL
            .into_iter()
            .find(|f| key(f.name()) == k || f.names(&self.columns).iter().any(|n| key(n) == k))
    }
}

/// Where each field is in a file, from its header row.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The header row as written.
    pub headers: Vec<String>,
    /// The column of each field ([`Field::ALL`] order), if the file has one.
    columns: [Option<usize>; 11],
}

impl Layout {
    /// Reads the header row. A file without an NHS number column, or with two columns for
    /// one field, cannot be imported.
    pub fn from_headers(config: &ImportConfig, headers: Vec<String>) -> Result<Self, String> {
        let mut columns = [None; 11];
        for (i, header) in headers.iter().enumerate() {
            let Some(field) = config.field_of(header) else {
                continue;
            };
            if let Some(first) = columns[field.index()] {
                return Err(format!(
                    "columns {:?} and {header:?} are both read as {}: rename or remove one",
                    headers[first],
                    field.name()
                ));
            }
            columns[field.index()] = Some(i);
        }
        if columns[Field::NhsNumber.index()].is_none() {
            return Err(format!(
                "no NHS number column: the header row needs one named {} (the [import.columns] \
                 settings list the names recognised)",
                config
                    .columns
                    .nhs_number
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        Ok(Self { headers, columns })
    }

    /// The column holding `field`.
    pub fn column(&self, field: Field) -> Option<usize> {
        self.columns[field.index()]
    }

    /// The file's own header for `field` (the field's name if the file has no such column).
    pub fn header(&self, field: Field) -> String {
        self.column(field)
            .and_then(|i| self.headers.get(i))
            .cloned()
            .unwrap_or_else(|| field.name().to_string())
    }

    /// The fields the file speaks for: only these are written.
    pub fn fields(&self) -> ImportFields {
        let has = |f| self.column(f).is_some();
        ImportFields {
            given_name: has(Field::GivenName),
            family_name: has(Field::FamilyName),
            date_of_birth: has(Field::DateOfBirth),
            landline: has(Field::Landline),
            preferred_channel: has(Field::PreferredChannel),
            language: has(Field::Language),
            sms: has(Field::Mobile),
            email: has(Field::Email),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[&str]) -> Vec<String> {
        names(list)
    }

    #[test]
    fn headers_match_ignoring_case_spaces_and_punctuation() {
        let config = ImportConfig::default();
        let layout = Layout::from_headers(
            &config,
            headers(&["nhs_number", "FORENAME", "Mobile-Phone", "e-mail", "Notes"]),
        )
        .unwrap();
        assert_eq!(layout.column(Field::NhsNumber), Some(0));
        assert_eq!(layout.column(Field::GivenName), Some(1));
        assert_eq!(layout.column(Field::Mobile), Some(2));
        assert_eq!(layout.column(Field::Email), Some(3));
        assert_eq!(layout.header(Field::Mobile), "Mobile-Phone");
        let fields = layout.fields();
        assert!(fields.sms && fields.email && fields.given_name && !fields.language);
    }

    #[test]
    fn a_mapping_in_settings_names_another_export() {
        let mut config = ImportConfig::default();
        config.columns.nhs_number = names(&["Patient Identifier"]);
        config.columns.mobile = names(&["Tel (Mob)"]);
        assert!(config.check().is_ok());
        let layout =
            Layout::from_headers(&config, headers(&["Patient Identifier", "Tel (Mob)"])).unwrap();
        assert_eq!(layout.column(Field::NhsNumber), Some(0));
        assert_eq!(layout.column(Field::Mobile), Some(1));
    }

    #[test]
    fn missing_nhs_column_and_doubled_fields_are_refused() {
        let config = ImportConfig::default();
        let err = Layout::from_headers(&config, headers(&["Name", "Mobile"])).unwrap_err();
        assert!(err.contains("no NHS number column"), "{err}");
        let err = Layout::from_headers(&config, headers(&["NHS Number", "Mobile", "Mobile Phone"]))
            .unwrap_err();
        assert!(err.contains("both read as mobile"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        let config = ImportConfig {
            date_formats: names(&["dd/mm/yyyy"]),
            ..ImportConfig::default()
        };
        assert_eq!(config.check().unwrap_err().0, "import.date_formats");
        let mut config = ImportConfig::default();
        config.columns.email.push("Mobile".into());
        assert_eq!(config.check().unwrap_err().0, "import.columns.email");
        assert!(ImportConfig::default().check().is_ok());
    }
}
