//! What a batch of imported rows changes, worked out from what is stored, the same for both
//! databases: which patients to insert or update, which contacts to add, opt out or remove,
//! and the created/updated/unchanged counts.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::{ImportCounts, ImportFields, ImportedPatient, ListedContact, ListedPatient};
use crate::domain::Channel;

/// A stored patient as an import compares it.
#[derive(Debug, Clone)]
pub(crate) struct StoredPatient {
    pub id: i64,
    pub values: PatientValues,
    pub active: bool,
    pub contacts: Vec<StoredContact>,
}

/// A stored SMS or email contact.
#[derive(Debug, Clone)]
pub(crate) struct StoredContact {
    pub id: i64,
    pub patient_id: i64,
    pub channel: String,
    pub address: String,
    pub opted_out: bool,
}

/// The columns of a patient an import writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PatientValues {
    pub nhs_number: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub landline: Option<String>,
    pub preferred_channel: Option<String>,
    pub language: String,
}

/// A contact to add to the patient with this NHS number.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewContact<'a> {
    pub nhs_number: &'a str,
    pub channel: &'static str,
    pub address: &'a str,
    pub opted_out: bool,
}

/// The writes that bring a batch's patients in line with the file.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan<'a> {
    pub inserts: Vec<PatientValues>,
    /// Stored patients to overwrite (and make active), by id.
    pub updates: Vec<(i64, PatientValues)>,
    pub new_contacts: Vec<NewContact<'a>>,
    /// Contacts to mark opted out.
    pub opt_outs: Vec<i64>,
    /// Contacts the file replaced (never opted-out ones: an opt-out is kept).
    pub removals: Vec<i64>,
    pub counts: ImportCounts,
}

fn file_values(p: &ImportedPatient) -> PatientValues {
    PatientValues {
        nhs_number: p.patient.nhs_number.as_str().to_string(),
        given_name: p.patient.given_name.clone(),
        family_name: p.patient.family_name.clone(),
        date_of_birth: p.date_of_birth,
        landline: p.landline.clone(),
        preferred_channel: p.patient.preferred_channel.map(|c| c.as_str().to_string()),
        language: p.patient.language.clone(),
    }
}

/// The file's values where it has the column, the stored ones elsewhere (unless the row
/// has a value all the same: a landline found in the mobile column).
fn merged(fields: &ImportFields, file: PatientValues, stored: &PatientValues) -> PatientValues {
    let pick = |covered: bool, new: Option<String>, old: &Option<String>| {
        if covered {
            new
        } else {
            new.or_else(|| old.clone())
        }
    };
    PatientValues {
        given_name: pick(fields.given_name, file.given_name, &stored.given_name),
        family_name: pick(fields.family_name, file.family_name, &stored.family_name),
        date_of_birth: if fields.date_of_birth {
            file.date_of_birth
        } else {
            stored.date_of_birth
        },
        landline: pick(fields.landline, file.landline, &stored.landline),
        preferred_channel: pick(
            fields.preferred_channel,
            file.preferred_channel,
            &stored.preferred_channel,
        ),
        language: if fields.language {
            file.language
        } else {
            stored.language.clone()
        },
        nhs_number: file.nhs_number,
    }
}

/// Works out the writes for a batch from what is stored of its patients. Opt-outs are only
/// ever added: a contact with one is neither cleared nor removed.
pub(crate) fn plan_batch<'a>(
    fields: &ImportFields,
    patients: &'a [ImportedPatient],
    stored: &[StoredPatient],
) -> BatchPlan<'a> {
    let by_nhs: HashMap<&str, &StoredPatient> = stored
        .iter()
        .map(|s| (s.values.nhs_number.as_str(), s))
        .collect();
    let mut plan = BatchPlan::default();
    for p in patients {
        let nhs_number = p.patient.nhs_number.as_str();
        let Some(existing) = by_nhs.get(nhs_number) else {
            plan.inserts.push(file_values(p));
            for c in &p.patient.contacts {
                if fields.covers(c.channel) {
                    plan.new_contacts.push(NewContact {
                        nhs_number,
                        channel: c.channel.as_str(),
                        address: &c.address,
                        opted_out: c.opted_out,
                    });
                }
            }
            plan.counts.created += 1;
            continue;
        };
        let values = merged(fields, file_values(p), &existing.values);
        let details_changed = values != existing.values || !existing.active;
        let contacts_changed = plan_contacts(fields, p, existing, &mut plan);
        if details_changed {
            plan.updates.push((existing.id, values));
        }
        if details_changed || contacts_changed {
            plan.counts.updated += 1;
        } else {
            plan.counts.unchanged += 1;
        }
    }
    plan
}

/// Adds the contact writes for one stored patient; returns whether there were any.
fn plan_contacts<'a>(
    fields: &ImportFields,
    p: &'a ImportedPatient,
    stored: &StoredPatient,
    plan: &mut BatchPlan<'a>,
) -> bool {
    let mut changed = false;
    for channel in [Channel::Sms, Channel::Email] {
        if !fields.covers(channel) {
            continue;
        }
        let wanted = p.patient.contacts.iter().find(|c| c.channel == channel);
        let mut found = false;
        for c in stored
            .contacts
            .iter()
            .filter(|c| c.channel == channel.as_str())
        {
            match wanted {
                Some(w) if w.address == c.address => {
                    found = true;
                    if w.opted_out && !c.opted_out {
                        plan.opt_outs.push(c.id);
                        changed = true;
                    }
                }
                _ if !c.opted_out => {
                    plan.removals.push(c.id);
                    changed = true;
                }
                _ => {}
            }
        }
        if let (Some(w), false) = (wanted, found) {
            plan.new_contacts.push(NewContact {
                nhs_number: p.patient.nhs_number.as_str(),
                channel: channel.as_str(),
                address: &w.address,
                opted_out: w.opted_out,
            });
            changed = true;
        }
    }
    changed
}

/// Attaches contacts (by patient id) to their patients.
pub(crate) fn with_contacts(
    mut patients: Vec<StoredPatient>,
    contacts: Vec<StoredContact>,
) -> Vec<StoredPatient> {
    let index: HashMap<i64, usize> = patients
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i))
        .collect();
    for c in contacts {
        if let Some(&i) = index.get(&c.patient_id) {
            patients[i].contacts.push(c);
        }
    }
    patients
}

/// A patient row as both databases read it for [`plan_batch`].
pub(crate) type PatientRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    String,
    bool,
);

/// A patient-contact row of a listing (the contact columns NULL for a patient without any).
pub(crate) type ListingRow = (
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    String,
    bool,
    Option<String>,
    Option<String>,
    Option<bool>,
);

/// A stored patient (without contacts yet) from its row.
pub(crate) fn stored_patient(row: PatientRow) -> StoredPatient {
    let (
        id,
        nhs_number,
        given_name,
        family_name,
        date_of_birth,
        landline,
        preferred,
        language,
        active,
    ) = row;
    StoredPatient {
        id,
        values: PatientValues {
            nhs_number,
            given_name,
            family_name,
            date_of_birth,
            landline,
            preferred_channel: preferred,
            language,
        },
        active,
        contacts: Vec::new(),
    }
}

/// A listing row as a patient and maybe one contact.
pub(crate) fn listing(row: ListingRow) -> (ListedPatient, Option<ListedContact>) {
    let (
        nhs_number,
        given_name,
        family_name,
        date_of_birth,
        landline,
        preferred,
        language,
        active,
        channel,
        address,
        opted_out,
    ) = row;
    let contact = match (channel, address) {
        (Some(channel), Some(address)) => Some(ListedContact {
            channel,
            address,
            opted_out: opted_out.unwrap_or(false),
        }),
        _ => None,
    };
    (
        ListedPatient {
            nhs_number,
            given_name,
            family_name,
            date_of_birth,
            landline,
            preferred_channel: preferred,
            language,
            active,
            contacts: Vec::new(),
        },
        contact,
    )
}

/// Groups `(patient, contact)` rows of a listing into patients.
pub(crate) fn group_listing(
    rows: Vec<(ListedPatient, Option<ListedContact>)>,
) -> Vec<ListedPatient> {
    let mut out: Vec<ListedPatient> = Vec::new();
    for (patient, contact) in rows {
        if out.last().map(|p| &p.nhs_number) != Some(&patient.nhs_number) {
            out.push(patient);
        }
        if let (Some(c), Some(last)) = (contact, out.last_mut()) {
            last.contacts.push(c);
        }
    }
    // The same order whatever the database's collation.
    for p in &mut out {
        p.contacts
            .sort_by(|a, b| (&a.channel, &a.address).cmp(&(&b.channel, &b.address)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NhsNumber;
    use crate::store::{ContactUpsert, PatientUpsert};

    fn imported(sms: Option<(&str, bool)>, language: &str) -> ImportedPatient {
        ImportedPatient {
            row: 2,
            patient: PatientUpsert {
                nhs_number: NhsNumber::parse("9434765919").unwrap(),
                given_name: Some("Ada".into()),
                family_name: None,
                preferred_channel: None,
                language: language.into(),
                active: true,
                contacts: sms
                    .map(|(address, opted_out)| ContactUpsert {
                        channel: Channel::Sms,
                        address: address.into(),
                        opted_out,
                    })
                    .into_iter()
                    .collect(),
            },
            landline: None,
            date_of_birth: None,
        }
    }

    fn stored(contacts: Vec<(i64, &str, bool)>, language: &str) -> StoredPatient {
        StoredPatient {
            id: 7,
            values: file_values(&imported(None, language)),
            active: true,
            contacts: contacts
                .into_iter()
                .map(|(id, address, opted_out)| StoredContact {
                    id,
                    patient_id: 7,
                    channel: "sms".into(),
                    address: address.into(),
                    opted_out,
                })
                .collect(),
        }
    }

    const SMS_ONLY: ImportFields = ImportFields {
        given_name: true,
        family_name: true,
        date_of_birth: false,
        landline: false,
        preferred_channel: false,
        language: false,
        sms: true,
        email: false,
    };

    #[test]
    fn the_same_values_change_nothing() {
        let rows = [imported(Some(("+447700900001", false)), "en")];
        let plan = plan_batch(
            &SMS_ONLY,
            &rows,
            &[stored(vec![(1, "+447700900001", false)], "en")],
        );
        assert_eq!(plan.counts.unchanged, 1);
        assert!(plan.updates.is_empty() && plan.new_contacts.is_empty());
    }

    #[test]
    fn columns_the_file_lacks_keep_their_stored_values() {
        // The stored patient reads Welsh; the file has no language column.
        let rows = [imported(None, "en")];
        let plan = plan_batch(&SMS_ONLY, &rows, &[stored(vec![], "cy")]);
        assert_eq!(plan.counts.unchanged, 1, "{plan:?}");
    }

    #[test]
    fn a_new_number_replaces_the_old_but_an_opted_out_one_stays() {
        let rows = [imported(Some(("+447700900002", false)), "en")];
        let plan = plan_batch(
            &SMS_ONLY,
            &rows,
            &[stored(
                vec![(1, "+447700900001", false), (3, "+447700900003", true)],
                "en",
            )],
        );
        assert_eq!(plan.removals, [1]);
        assert_eq!(plan.new_contacts.len(), 1);
        assert_eq!(plan.counts.updated, 1);
    }

    #[test]
    fn a_no_adds_an_opt_out_and_a_yes_never_clears_one() {
        let rows = [imported(Some(("+447700900001", true)), "en")];
        let plan = plan_batch(
            &SMS_ONLY,
            &rows,
            &[stored(vec![(1, "+447700900001", false)], "en")],
        );
        assert_eq!(plan.opt_outs, [1]);

        let rows = [imported(Some(("+447700900001", false)), "en")];
        let plan = plan_batch(
            &SMS_ONLY,
            &rows,
            &[stored(vec![(1, "+447700900001", true)], "en")],
        );
        assert!(plan.opt_outs.is_empty() && plan.removals.is_empty());
        assert_eq!(plan.counts.unchanged, 1);
    }

    #[test]
    fn an_inactive_patient_named_again_is_updated() {
        let rows = [imported(None, "en")];
        let mut s = stored(vec![], "en");
        s.active = false;
        let plan = plan_batch(&SMS_ONLY, &rows, &[s]);
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.counts.updated, 1);
    }
}
