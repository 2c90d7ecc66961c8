//! Which column of a file holds which field: the `[import]` settings name the headers each
//! field may have, since every clinical system exports its own.

use crate::config::{header_key, ColumnNames, ImportConfig};
use crate::store::ImportFields;

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
        ColumnNames::FIELDS[self.index()]
    }

    /// The header names `[import.columns]` gives the field.
    fn names(self, columns: &ColumnNames) -> &[String] {
        columns.by_field()[self.index()].1
    }

    fn index(self) -> usize {
        Field::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Which field a header names, if any.
fn field_of(config: &ImportConfig, header: &str) -> Option<Field> {
    let k = header_key(header);
    Field::ALL.into_iter().find(|f| {
        header_key(f.name()) == k || f.names(&config.columns).iter().any(|n| header_key(n) == k)
    })
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
            let Some(field) = field_of(config, header) else {
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
fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
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
