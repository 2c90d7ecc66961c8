//! One CSV row to one patient: every field checked, every problem named with its column.

use super::mapping::{Field, Layout};
use super::phones::{Phone, PhoneBook};
use super::reader::Record;
use super::report::RowError;
use crate::config::ImportConfig;
use crate::domain::{Channel, EmailAddress, Language, NhsNumber, PhoneKind};
use crate::store::{ContactUpsert, ImportedPatient, PatientUpsert};
use chrono::{Datelike, NaiveDate, Utc};

/// Longest field accepted. A longer one is most likely a quote left open, which swallows
/// the lines after it.
const MAX_FIELD_CHARS: usize = 1000;

/// What became of one row.
#[derive(Debug)]
pub enum Parsed {
    /// Every field empty: skipped, as a spreadsheet's empty row.
    Blank,
    /// A patient to import.
    Valid(ImportedPatient),
    /// Refused, with every reason; the NHS number if it was readable.
    Rejected(Option<NhsNumber>, Vec<RowError>),
}

/// Checks one row against the file's layout.
pub fn parse_row(
    config: &ImportConfig,
    layout: &Layout,
    phones: &mut PhoneBook,
    row: u64,
    record: &Record,
) -> Parsed {
    if record.oversized() {
        let reason = format!(
            "is longer than {} bytes (import.max_row_bytes): is a quote left open?",
            config.max_row_bytes
        );
        return Parsed::Rejected(
            None,
            vec![RowError {
                row,
                column: None,
                reason,
            }],
        );
    }
    if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
        return Parsed::Blank;
    }
    let mut errors = Vec::new();
    let width = layout.headers.len();
    let extra_filled = record
        .iter()
        .skip(width)
        .any(|f| !f.trim_ascii().is_empty());
    if record.len() < width || extra_filled {
        errors.push(RowError {
            row,
            column: None,
            reason: format!(
                "has {} fields where the header has {width} (a separator or quote out of place?)",
                record.len()
            ),
        });
        return Parsed::Rejected(nhs_of(layout, record), errors);
    }
    let mut cells = Cells {
        layout,
        record,
        row,
        errors: &mut errors,
        landline_from_mobile: None,
    };
    let nhs_number = match cells.text(Field::NhsNumber) {
        None => {
            cells.reject(Field::NhsNumber, "is empty: every row needs the NHS number");
            None
        }
        Some(text) => NhsNumber::parse(text)
            .map_err(|e| cells.reject(Field::NhsNumber, &e.reason))
            .ok(),
    };
    let given_name = cells.name(Field::GivenName);
    let family_name = cells.name(Field::FamilyName);
    let date_of_birth = cells.date(config, Field::DateOfBirth);
    let (mobile, mut landline) = cells.phones(phones);
    let email = cells.text(Field::Email).and_then(|text| {
        EmailAddress::parse(text)
            .map_err(|e| cells.reject(Field::Email, &e.reason))
            .ok()
    });
    let preferred_channel = cells.text(Field::PreferredChannel).and_then(|text| {
        let text = if text.eq_ignore_ascii_case("text") {
            "sms"
        } else {
            text
        };
        text.parse::<Channel>()
            .map_err(|e| cells.reject(Field::PreferredChannel, &e.reason))
            .ok()
    });
    let language = match cells.text(Field::Language) {
        None => Language::English,
        Some(text) => text.parse().unwrap_or_else(|e: crate::domain::Invalid| {
            cells.reject(Field::Language, &e.reason);
            Language::English
        }),
    };
    let sms_refused = cells.refusal(Field::SmsConsent);
    let email_refused = cells.refusal(Field::EmailConsent);
    if landline.is_none() {
        landline = cells.landline_from_mobile.take();
    }
    let Some(nhs_number) = nhs_number.filter(|_| errors.is_empty()) else {
        let nhs = nhs_of(layout, record);
        return Parsed::Rejected(nhs, errors);
    };
    let mut contacts = Vec::with_capacity(2);
    if let Some(phone) = mobile {
        contacts.push(ContactUpsert {
            channel: Channel::Sms,
            address: phone.e164,
            opted_out: sms_refused,
        });
    }
    if let Some(email) = email {
        contacts.push(ContactUpsert {
            channel: Channel::Email,
            address: email.as_str().to_string(),
            opted_out: email_refused,
        });
    }
    Parsed::Valid(ImportedPatient {
        row,
        patient: PatientUpsert {
            nhs_number,
            given_name,
            family_name,
            preferred_channel,
            language: language.as_str().to_string(),
            active: true,
            contacts,
        },
        landline: landline.map(|p| p.e164),
        date_of_birth,
    })
}

/// The row's NHS number, if it reads as one (to find repeats of rows refused otherwise).
fn nhs_of(layout: &Layout, record: &Record) -> Option<NhsNumber> {
    let field = record.get(layout.column(Field::NhsNumber)?)?;
    NhsNumber::parse(std::str::from_utf8(field).ok()?).ok()
}

/// A row's fields, read by name, with the problems found so far.
struct Cells<'a> {
    layout: &'a Layout,
    record: &'a Record,
    row: u64,
    errors: &'a mut Vec<RowError>,
    landline_from_mobile: Option<Phone>,
}

impl<'a> Cells<'a> {
    fn reject(&mut self, field: Field, reason: &str) {
        self.errors.push(RowError {
            row: self.row,
            column: Some(self.layout.header(field)),
            reason: reason.to_string(),
        });
    }

    /// The field's text, trimmed; `None` if the file has no such column or it is empty.
    fn text(&mut self, field: Field) -> Option<&'a str> {
        let record: &'a Record = self.record;
        let bytes = record.get(self.layout.column(field)?)?;
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.reject(field, "is not UTF-8 text: save the file as \"CSV UTF-8\"");
            return None;
        };
        let text = text.trim();
        if text.chars().count() > MAX_FIELD_CHARS {
            self.reject(
                field,
                "is longer than 1000 characters (is a quote left open?)",
            );
            return None;
        }
        (!text.is_empty()).then_some(text)
    }

    fn name(&mut self, field: Field) -> Option<String> {
        let text = self.text(field)?;
        if text.chars().count() > 100 {
            self.reject(field, "is longer than 100 characters");
            return None;
        }
        Some(text.to_string())
    }

    fn date(&mut self, config: &ImportConfig, field: Field) -> Option<NaiveDate> {
        let text = self.text(field)?;
        let Some(date) = config
            .date_formats
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
        else {
            let example = NaiveDate::from_ymd_opt(1980, 1, 31)
                .map(|d| d.format(&config.date_formats[0]).to_string())
                .unwrap_or_default();
            self.reject(
                field,
                &format!(
                    "{text:?} is not a date written like {example} (the [import] date_formats \
                     setting lists the forms read)"
                ),
            );
            return None;
        };
        if date > Utc::now().date_naive() {
            self.reject(field, &format!("{text:?} is in the future"));
            return None;
        }
        if date.year() < 1880 {
            self.reject(field, &format!("{text:?} is before 1880"));
            return None;
        }
        Some(date)
    }

    /// The mobile (for SMS) and the landline. A landline in the mobile column is kept as the
    /// landline; a number that is neither (premium rate, pager) is refused there.
    fn phones(&mut self, book: &mut PhoneBook) -> (Option<Phone>, Option<Phone>) {
        let mobile = self
            .text(Field::Mobile)
            .and_then(|text| match book.parse(text) {
                Ok(phone) if phone.kind == PhoneKind::Mobile => Some(phone),
                Ok(phone) if phone.kind == PhoneKind::Landline => {
                    self.landline_from_mobile = Some(phone);
                    None
                }
                Ok(phone) => {
                    self.reject(
                        Field::Mobile,
                        &format!(
                            "{} is neither a mobile nor a landline number, so it cannot receive SMS",
                            phone.e164
                        ),
                    );
                    None
                }
                Err(e) => {
                    self.reject(Field::Mobile, &e.reason);
                    None
                }
            });
        let landline = self.text(Field::Landline).and_then(|text| {
            book.parse(text)
                .map_err(|e| self.reject(Field::Landline, &e.reason))
                .ok()
        });
        (mobile, landline)
    }

    /// Whether a consent column says no (an opt-out). Empty says nothing.
    fn refusal(&mut self, field: Field) -> bool {
        let Some(text) = self.text(field) else {
            return false;
        };
        let word: String = text
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match word.as_str() {
            "y" | "yes" | "true" | "1" | "consent" | "consented" | "given" | "optin"
            | "optedin" => false,
            "n" | "no" | "false" | "0" | "declined" | "refused" | "dissent" | "withdrawn"
            | "optout" | "optedout" => true,
            _ => {
                self.reject(field, &format!("{text:?} is not yes or no"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[&str] = &[
        "NHS Number",
        "Forename",
        "Surname",
        "DOB",
        "Mobile",
        "Home Phone",
        "Email",
        "Preferred Channel",
        "Language",
        "SMS Consent",
        "Email Consent",
    ];

    fn parse(fields: &[&str]) -> Parsed {
        let config = ImportConfig::default();
        let layout =
            Layout::from_headers(&config, HEADER.iter().map(|h| h.to_string()).collect()).unwrap();
        parse_row(
            &config,
            &layout,
            &mut PhoneBook::default(),
            7,
            &Record::from_fields(fields),
        )
    }

    fn errors(fields: &[&str]) -> Vec<(Option<String>, String)> {
        match parse(fields) {
            Parsed::Rejected(_, errors) => errors
                .into_iter()
                .map(|e| {
                    assert_eq!(e.row, 7);
                    (e.column, e.reason)
                })
                .collect(),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn a_full_row_is_normalised() {
        let Parsed::Valid(p) = parse(&[
            "943 476 5919",
            " Ada ",
            "Lovelace",
            "10/12/1985",
            "07700 900123",
            "020 7946 0000",
            "ada@Example.COM",
            "Text",
            "Welsh",
            "no",
            "Y",
        ]) else {
            panic!("rejected")
        };
        assert_eq!(p.row, 7);
        assert_eq!(p.patient.nhs_number.as_str(), "9434765919");
        assert_eq!(p.patient.given_name.as_deref(), Some("Ada"));
        assert_eq!(p.date_of_birth, NaiveDate::from_ymd_opt(1985, 12, 10));
        assert_eq!(p.landline.as_deref(), Some("+442079460000"));
        assert_eq!(p.patient.preferred_channel, Some(Channel::Sms));
        assert_eq!(p.patient.language, "cy");
        let sms = &p.patient.contacts[0];
        assert_eq!(
            (sms.address.as_str(), sms.opted_out),
            ("+447700900123", true)
        );
        let email = &p.patient.contacts[1];
        assert_eq!(
            (email.address.as_str(), email.opted_out),
            ("ada@example.com", false)
        );
    }

    #[test]
    fn a_landline_in_the_mobile_column_is_kept_but_not_for_sms() {
        let Parsed::Valid(p) = parse(&[
            "9434765919",
            "",
            "",
            "",
            "020 7946 0000",
            "",
            "",
            "",
            "",
            "",
            "",
        ]) else {
            panic!("rejected")
        };
        assert!(p.patient.contacts.is_empty());
        assert_eq!(p.landline.as_deref(), Some("+442079460000"));
    }

    #[test]
    fn every_bad_field_is_named_by_its_header() {
        let found = errors(&[
            "9434765918",
            "",
            "",
            "31/02/1990",
            "0791112",
            "",
            "jo@localhost",
            "fax",
            "fr",
            "maybe",
            "",
        ]);
        let columns: Vec<&str> = found.iter().map(|(c, _)| c.as_deref().unwrap()).collect();
        assert_eq!(
            columns,
            [
                "NHS Number",
                "DOB",
                "Mobile",
                "Email",
                "Preferred Channel",
                "Language",
                "SMS Consent"
            ]
        );
        assert!(found[0].1.contains("check digit"), "{}", found[0].1);
    }

    #[test]
    fn an_empty_nhs_number_and_a_short_row_are_refused() {
        let found = errors(&["", "Ada", "", "", "", "", "", "", "", "", ""]);
        assert_eq!(found[0].0.as_deref(), Some("NHS Number"));
        let found = errors(&["9434765919", "Ada"]);
        assert_eq!(found[0].0, None);
        assert!(found[0].1.contains("has 2 fields where the header has 11"));
    }

    #[test]
    fn a_refused_row_keeps_its_nhs_number_for_finding_repeats() {
        let Parsed::Rejected(Some(n), _) =
            parse(&["9434765919", "", "", "", "nope", "", "", "", "", "", ""])
        else {
            panic!("expected a refusal with the number")
        };
        assert_eq!(n.as_str(), "9434765919");
    }

    #[test]
    fn blank_rows_and_trailing_empty_fields_are_fine() {
        assert!(matches!(
            parse(&["", " ", "", "", "", "", "", "", "", "", ""]),
            Parsed::Blank
        ));
        let mut fields = vec!["9434765919"; 1];
        fields.extend([""; 11]);
        assert!(matches!(parse(&fields), Parsed::Valid(_)));
    }

    #[test]
    fn future_and_unreadable_dates_are_refused() {
        let found = errors(&[
            "9434765919",
            "",
            "",
            "01/01/2999",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]);
        assert!(found[0].1.contains("in the future"));
        let found = errors(&["9434765919", "", "", "1st May", "", "", "", "", "", "", ""]);
        assert!(found[0].1.contains("31/01/1980"), "{}", found[0].1);
    }
}
