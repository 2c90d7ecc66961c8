//! Patient batches: each item parsed on its own, so one bad row never spoils the rest.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, EmailAddress, Invalid, NhsNumber, PhoneKind};
use crate::intake::import::phones::PhoneBook;
use crate::store::{ContactUpsert, PatientUpsert};

/// Most patients accepted in one JSON batch; larger lists go through CSV import.
pub const MAX_BATCH: usize = 10_000;

/// A patient as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientInput {
    /// NHS number, spaces allowed.
    pub nhs_number: String,
    /// First name.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Surname.
    #[serde(default)]
    pub family_name: Option<String>,
    /// `sms`, `email` or `push`.
    #[serde(default)]
    pub preferred_channel: Option<String>,
    /// `en` (default) or `cy`.
    #[serde(default)]
    pub language: Option<String>,
    /// Still registered (default true).
    #[serde(default)]
    pub active: Option<bool>,
    /// SMS and email contacts.
    #[serde(default)]
    pub contacts: Vec<ContactInput>,
}

/// A contact as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// `sms` or `email`.
    pub channel: String,
    /// Phone number or email address.
    pub address: String,
    /// The patient has opted out of this address.
    #[serde(default)]
    pub opted_out: bool,
}

/// A rejected item of a batch, with every reason found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectedPatient {
    /// Position in the batch, from 0.
    pub index: usize,
    /// The NHS number as sent.
    pub nhs_number: String,
    /// What was wrong.
    pub errors: Vec<Invalid>,
}

/// Parses a batch: the good items, and the rejected ones with reasons. A repeated NHS
/// number is rejected at its second appearance.
pub fn parse_batch(items: &[PatientInput]) -> (Vec<PatientUpsert>, Vec<RejectedPatient>) {
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut seen = HashSet::new();
    // UK mobiles are classified by range, as the CSV import does: a full libphonenumber
    // parse per number was most of a 10,000-patient request's CPU.
    let mut phones = PhoneBook::default();
    for (index, item) in items.iter().enumerate() {
        match parse_patient_with(item, &mut phones) {
            Ok(patient) if !seen.insert(patient.nhs_number.clone()) => {
                rejected.push(RejectedPatient {
                    index,
                    nhs_number: item.nhs_number.clone(),
                    errors: vec![Invalid::new(
                        "nhs_number",
                        "appears more than once in this batch",
                    )],
                })
            }
            Ok(patient) => accepted.push(patient),
            Err(errors) => rejected.push(RejectedPatient {
                index,
                nhs_number: item.nhs_number.clone(),
                errors,
            }),
        }
    }
    (accepted, rejected)
}

/// Parses one patient, collecting every problem rather than stopping at the first.
pub fn parse_patient(input: &PatientInput) -> Result<PatientUpsert, Vec<Invalid>> {
    parse_patient_with(input, &mut PhoneBook::default())
}

/// [`parse_patient`] with the batch's memory of phone ranges.
fn parse_patient_with(
    input: &PatientInput,
    phones: &mut PhoneBook,
) -> Result<PatientUpsert, Vec<Invalid>> {
    let mut errors = Vec::new();
    let nhs_number = NhsNumber::parse(&input.nhs_number)
        .map_err(|e| errors.push(e))
        .ok();
    let given_name = name(&input.given_name, "given_name", &mut errors);
    let family_name = name(&input.family_name, "family_name", &mut errors);
    let preferred_channel = match input.preferred_channel.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => text
            .parse::<Channel>()
            .map_err(|e| errors.push(Invalid::new("preferred_channel", e.reason)))
            .ok(),
    };
    let language = match input.language.as_deref().map(str::trim) {
        None | Some("") | Some("en") => "en".to_string(),
        Some("cy") => "cy".to_string(),
        Some(other) => {
            errors.push(Invalid::new(
                "language",
                format!("{other:?} is not supported: use en or cy"),
            ));
            String::new()
        }
    };
    let mut contacts = Vec::new();
    for (i, c) in input.contacts.iter().enumerate() {
        match parse_contact(c, phones) {
            Ok(contact) => contacts.push(contact),
            Err(e) => errors.push(e.under(&format!("contacts[{i}]"))),
        }
    }
    match nhs_number {
        Some(nhs_number) if errors.is_empty() => Ok(PatientUpsert {
            nhs_number,
            given_name,
            family_name,
            preferred_channel,
            language,
            active: input.active.unwrap_or(true),
            contacts,
        }),
        _ => Err(errors),
    }
}

fn name(value: &Option<String>, field: &str, errors: &mut Vec<Invalid>) -> Option<String> {
    let trimmed = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
    if trimmed.chars().count() > 100 {
        errors.push(Invalid::new(field, "longer than 100 characters"));
        return None;
    }
    Some(trimmed.to_string())
}

fn parse_contact(input: &ContactInput, phones: &mut PhoneBook) -> Result<ContactUpsert, Invalid> {
    let channel: Channel = input.channel.parse()?;
    let address =
        match channel {
            Channel::Sms => {
                let phone = phones.parse(&input.address)?;
                if phone.kind != PhoneKind::Mobile {
                    return Err(Invalid::new(
                        "address",
                        format!(
                            "{} is not a mobile number, so it cannot receive SMS",
                            phone.e164
                        ),
                    ));
                }
                phone.e164
            }
            Channel::Email => EmailAddress::parse(&input.address)?.as_str().to_string(),
            Channel::Push => return Err(Invalid::new(
                "channel",
                "push subscriptions are registered by the patient's browser, not in a patient list",
            )),
            Channel::NhsApp => {
                return Err(Invalid::new(
                    "channel",
                    "the NHS App reaches patients by NHS number: it needs no contact",
                ))
            }
        };
    Ok(ContactUpsert {
        channel,
        address,
        opted_out: input.opted_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(nhs: &str, contacts: Vec<(&str, &str)>) -> PatientInput {
        PatientInput {
            nhs_number: nhs.into(),
            given_name: Some(" Ada ".into()),
            family_name: None,
            preferred_channel: None,
            language: None,
            active: None,
            contacts: contacts
                .into_iter()
                .map(|(channel, address)| ContactInput {
                    channel: channel.into(),
                    address: address.into(),
                    opted_out: false,
                })
                .collect(),
        }
    }

    #[test]
    fn good_items_are_normalised() {
        let p = parse_patient(&item(
            "943 476 5919",
            vec![("sms", "07700 900123"), ("email", "a@Example.com")],
        ))
        .unwrap();
        assert_eq!(p.nhs_number.as_str(), "9434765919");
        assert_eq!(p.given_name.as_deref(), Some("Ada"));
        assert_eq!(p.contacts[0].address, "+447700900123");
        assert_eq!(p.contacts[1].address, "a@example.com");
        assert!(p.active);
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let errors = parse_patient(&item(
            "123",
            vec![("sms", "020 7946 0000"), ("fax", "x"), ("email", "nope")],
        ))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "nhs_number",
                "contacts[0].address",
                "contacts[1].channel",
                "contacts[2].address"
            ]
        );
    }

    #[test]
    fn repeats_in_a_batch_are_rejected_at_the_second() {
        let (ok, bad) = parse_batch(&[item("9434765919", vec![]), item("943 476 5919", vec![])]);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad[0].index, 1);
    }
}
