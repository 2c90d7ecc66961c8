//! What a practice does to its patient list beyond upserts: reading it a page at a time,
//! deactivating a patient, and erasing one on request (the right to erasure).
//!
//! Erasure keeps the patient's row and messages, so that broadcast counts, attempts and the
//! audit trail still add up, but leaves nothing of the person in them: the steps below run
//! in one transaction, written once for both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{At, ContactView, PatientView, StoreResult, TimeColumn};
use crate::domain::PracticeId;

/// Which of a practice's patients to list: in NHS number order, after `after` (the last
/// NHS number of the previous page), optionally only the active or inactive ones. Erased
/// patients are never listed.
#[derive(Debug, Clone)]
pub struct PatientPage {
    /// Only NHS numbers after this one; `None`: from the first.
    pub after: Option<String>,
    /// Only patients whose `active` is this.
    pub active: Option<bool>,
    /// At most this many.
    pub limit: i64,
}

impl PatientPage {
    /// The page's patients with their contacts (`$1` practice, `$2` after, `$3` limit, `$4`
    /// active if filtered), one row per contact (or one with null contact columns), in NHS
    /// number then contact order. The same SQL for both databases.
    pub(crate) fn sql(&self) -> String {
        let active = if self.active.is_some() {
            " AND active = $4"
        } else {
            ""
        };
        format!(
            "SELECT p.id, p.nhs_number, p.given_name, p.family_name, p.preferred_channel,
                    p.language, p.active, c.channel, c.address, c.opted_out_at
             FROM (SELECT id, nhs_number, given_name, family_name, preferred_channel, language,
                          active
                   FROM patients
                   WHERE practice_id = $1 AND nhs_number > $2 AND erased_at IS NULL{active}
                   ORDER BY nhs_number LIMIT $3) p
             LEFT JOIN contacts c ON c.patient_id = p.id
             ORDER BY p.nhs_number, c.id"
        )
    }

    /// The NHS number bound to `$2`: every NHS number is ten digits, so `""` is before all.
    pub(crate) fn after_bound(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }
}

/// The patients of [`PatientPage::sql`]'s rows, from either database.
pub(crate) fn patients_of_rows<R>(rows: &[R]) -> StoreResult<Vec<PatientView>>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> At: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut patients: Vec<(i64, PatientView)> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if patients.last().map(|(last, _)| *last) != Some(id) {
            patients.push((
                id,
                PatientView {
                    nhs_number: row.try_get("nhs_number")?,
                    given_name: row.try_get("given_name")?,
                    family_name: row.try_get("family_name")?,
                    preferred_channel: row.try_get("preferred_channel")?,
                    language: row.try_get("language")?,
                    active: row.try_get("active")?,
                    contacts: Vec::new(),
                },
            ));
        }
        let channel: Option<String> = row.try_get("channel")?;
        if let (Some(channel), Some((_, patient))) = (channel, patients.last_mut()) {
            patient.contacts.push(ContactView {
                channel,
                address: row.try_get("address")?,
                opted_out_at: row.time_opt("opted_out_at")?,
            });
        }
    }
    Ok(patients.into_iter().map(|(_, patient)| patient).collect())
}

/// What erasing a patient removed or blanked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErasureSummary {
    /// Contacts deleted (phone numbers, email addresses, push subscriptions).
    pub contacts_removed: u64,
    /// Messages whose address, wording and errors were blanked (the rows and their states
    /// stay, so broadcast counts do not change).
    pub messages_blanked: u64,
    /// Queued messages cancelled, so nothing more goes to the patient.
    pub messages_cancelled: u64,
    /// Appointments deleted, with their changes.
    pub appointments_removed: u64,
}

/// A value an erasure step binds, in the order the step's placeholders number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErasureParam {
    /// The patient's row id.
    Patient,
    /// The time of the erasure.
    Now,
    /// The practice's row id.
    Practice,
    /// The patient's NHS number before erasure.
    NhsNumber,
}

/// Which count of [`ErasureSummary`] a step's affected rows add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErasureCount {
    /// Not reported.
    None,
    /// `contacts_removed`.
    Contacts,
    /// `messages_blanked`.
    MessagesBlanked,
    /// `messages_cancelled`.
    MessagesCancelled,
    /// `appointments_removed`.
    Appointments,
}

/// One statement of an erasure.
#[derive(Debug)]
pub(crate) struct ErasureStep {
    /// The SQL, the same on both databases.
    pub sql: &'static str,
    /// What `$1`, `$2`, ... are.
    pub params: &'static [ErasureParam],
    /// Where its row count goes.
    pub counts: ErasureCount,
}

impl ErasureSummary {
    /// Adds `rows` affected by a step to the count it reports.
    pub(crate) fn add(&mut self, counts: ErasureCount, rows: u64) {
        match counts {
            ErasureCount::None => {}
            ErasureCount::Contacts => self.contacts_removed += rows,
            ErasureCount::MessagesBlanked => self.messages_blanked += rows,
            ErasureCount::MessagesCancelled => self.messages_cancelled += rows,
            ErasureCount::Appointments => self.appointments_removed += rows,
        }
    }
}

use ErasureParam::{NhsNumber, Now, Patient, Practice};

/// Every statement of an erasure, in order. Messages are blanked before the queued ones are
/// cancelled (so the cancel's reason survives); errors and receipt details go because
/// providers quote the address in them; the patient row goes last, keeping its id.
pub(crate) const ERASURE_STEPS: &[ErasureStep] = &[
    ErasureStep {
        sql: "UPDATE messages SET address = '', subject = NULL, body = '', body_html = NULL,
                     link = NULL, last_error = NULL, updated_at = $2
              WHERE patient_id = $1",
        params: &[Patient, Now],
        counts: ErasureCount::MessagesBlanked,
    },
    ErasureStep {
        sql: "UPDATE messages SET state = 'cancelled', last_error = 'patient erased'
              WHERE patient_id = $1 AND state = 'queued'",
        params: &[Patient],
        counts: ErasureCount::MessagesCancelled,
    },
    ErasureStep {
        sql: "UPDATE attempts SET error = NULL
              WHERE error IS NOT NULL
                AND message_id IN (SELECT id FROM messages WHERE patient_id = $1)",
        params: &[Patient],
        counts: ErasureCount::None,
    },
    ErasureStep {
        sql: "UPDATE receipts SET detail = NULL
              WHERE detail IS NOT NULL
                AND message_id IN (SELECT id FROM messages WHERE patient_id = $1)",
        params: &[Patient],
        counts: ErasureCount::None,
    },
    ErasureStep {
        sql: "DELETE FROM appointment_changes
              WHERE appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)",
        params: &[Patient],
        counts: ErasureCount::None,
    },
    ErasureStep {
        sql: "DELETE FROM appointments WHERE patient_id = $1",
        params: &[Patient],
        counts: ErasureCount::Appointments,
    },
    ErasureStep {
        sql: "DELETE FROM patient_quota WHERE patient_id = $1",
        params: &[Patient],
        counts: ErasureCount::None,
    },
    ErasureStep {
        sql: "DELETE FROM import_seen
              WHERE nhs_number = $1 AND run_id IN (SELECT id FROM import_runs WHERE practice_id = $2)",
        params: &[NhsNumber, Practice],
        counts: ErasureCount::None,
    },
    ErasureStep {
        sql: "DELETE FROM contacts WHERE patient_id = $1",
        params: &[Patient],
        counts: ErasureCount::Contacts,
    },
    ErasureStep {
        sql: "UPDATE patients SET nhs_number = 'erased-' || CAST(id AS TEXT), given_name = NULL,
                     family_name = NULL, preferred_channel = NULL, landline = NULL,
                     date_of_birth = NULL, active = FALSE, erased_at = $2, updated_at = $2
              WHERE id = $1",
        params: &[Patient, Now],
        counts: ErasureCount::None,
    },
];

/// Reading, deactivating and erasing a practice's patients.
#[async_trait]
pub trait PatientAdminStore: Send + Sync {
    /// A page of the practice's patients with all their contacts (see [`PatientPage`]).
    async fn patients_page(
        &self,
        practice_id: PracticeId,
        page: &PatientPage,
    ) -> StoreResult<Vec<PatientView>>;
    /// Marks the practice's patient with this NHS number active or not (an inactive patient
    /// gets no broadcasts); false if there is no such patient.
    async fn set_patient_active(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
        active: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Erases the practice's patient with this NHS number ([`ERASURE_STEPS`], in one
    /// transaction); `None` if there is no such patient.
    async fn erase_patient(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ErasureSummary>>;
}

/// The [`PatientAdminStore`] of a store type: the same code for both databases, since the
/// SQL is shared and only the store type and how it opens a write transaction differ
/// (`begin_write` on SQLite's one writer connection, `begin` on PostgreSQL). sqlx's
/// generic executors cannot count affected rows, so this is a macro rather than a function.
macro_rules! patient_admin_store {
    ($store:ty, $begin:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::PatientAdminStore for $store {
            async fn patients_page(
                &self,
                practice_id: $crate::domain::PracticeId,
                page: &$crate::store::PatientPage,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PatientView>> {
                let sql = page.sql();
                let mut query = sqlx::query(&sql)
                    .bind(practice_id)
                    .bind(page.after_bound())
                    .bind(page.limit);
                if let Some(active) = page.active {
                    query = query.bind(active);
                }
                $crate::store::patient_admin::patients_of_rows(&query.fetch_all(&self.pool).await?)
            }

            async fn set_patient_active(
                &self,
                practice_id: $crate::domain::PracticeId,
                nhs_number: &str,
                active: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.$begin().await?;
                let changed = sqlx::query(
                    "UPDATE patients SET active = $1, updated_at = $2
                     WHERE practice_id = $3 AND nhs_number = $4 AND erased_at IS NULL",
                )
                .bind(active)
                .bind($crate::store::At(now))
                .bind(practice_id)
                .bind(nhs_number)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(changed == 1)
            }

            async fn erase_patient(
                &self,
                practice_id: $crate::domain::PracticeId,
                nhs_number: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::ErasureSummary>> {
                let mut tx = self.$begin().await?;
                let Some(patient_id): Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM patients
                     WHERE practice_id = $1 AND nhs_number = $2 AND erased_at IS NULL",
                )
                .bind(practice_id)
                .bind(nhs_number)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(None);
                };
                let mut summary = $crate::store::ErasureSummary::default();
                for step in $crate::store::patient_admin::ERASURE_STEPS {
                    let mut query = sqlx::query(step.sql);
                    for param in step.params {
                        query = match param {
                            $crate::store::patient_admin::ErasureParam::Patient => {
                                query.bind(patient_id)
                            }
                            $crate::store::patient_admin::ErasureParam::Now => {
                                query.bind($crate::store::At(now))
                            }
                            $crate::store::patient_admin::ErasureParam::Practice => {
                                query.bind(practice_id)
                            }
                            $crate::store::patient_admin::ErasureParam::NhsNumber => {
                                query.bind(nhs_number)
                            }
                        };
                    }
                    let rows = query.execute(&mut *tx).await?.rows_affected();
                    summary.add(step.counts, rows);
                }
                tx.commit().await?;
                Ok(Some(summary))
            }
        }
    };
}
pub(crate) use patient_admin_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_binds_each_of_its_placeholders_once() {
        for step in ERASURE_STEPS {
            for n in 1..=step.params.len() {
                assert!(step.sql.contains(&format!("${n}")), "{}", step.sql);
            }
            assert!(!step.sql.contains(&format!("${}", step.params.len() + 1)));
        }
    }

    #[test]
    fn the_patient_row_is_blanked_last_and_messages_before_cancelling() {
        let last = ERASURE_STEPS.last().map(|s| s.sql).unwrap_or_default();
        assert!(last.starts_with("UPDATE patients"));
        assert_eq!(ERASURE_STEPS[0].counts, ErasureCount::MessagesBlanked);
        assert_eq!(ERASURE_STEPS[1].counts, ErasureCount::MessagesCancelled);
    }

    #[test]
    fn a_page_filters_on_active_only_when_asked() {
        let mut page = PatientPage {
            after: None,
            active: None,
            limit: 10,
        };
        assert!(!page.sql().contains("$4"));
        assert_eq!(page.after_bound(), "");
        page.active = Some(false);
        assert!(page.sql().contains("active = $4"));
    }
}
