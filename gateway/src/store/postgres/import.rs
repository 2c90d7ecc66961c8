//! CSV imports on PostgreSQL: each batch is one transaction whose rows travel as one array
//! per column (`UNNEST`). Imports of one practice take turns on a transaction-scoped
//! advisory lock, so two of them never race to insert the same new patient.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::Postgres;

use super::PostgresStore;
use crate::domain::{ImportRunId, PracticeId};
use crate::store::import::{
    group_listing, listing, plan_batch, stored_patient, with_contacts, ListingRow, PatientRow,
    PatientValues, StoredContact, ABANDON_AFTER,
};
use crate::store::{
    At, ImportCounts, ImportEnd, ImportFields, ImportRun, ImportStore, ImportedPatient,
    ListedPatient, StoreResult,
};

/// The first key of the advisory lock imports take (the second is the practice id).
const IMPORT_LOCK: i32 = 0x1_6905;

/// An import run as read: id, checkpoint row and the created, updated and unchanged counts.
type RunRow = (ImportRunId, i64, i64, i64, i64);

/// Columns of patient values, one array each, for `UNNEST`.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    nhs: Vec<String>,
    given: Vec<Option<String>>,
    family: Vec<Option<String>>,
    born: Vec<Option<NaiveDate>>,
    landline: Vec<Option<String>>,
    preferred: Vec<Option<String>>,
    language: Vec<String>,
}

impl Columns {
    fn push(&mut self, id: i64, v: &PatientValues) {
        self.ids.push(id);
        self.nhs.push(v.nhs_number.clone());
        self.given.push(v.given_name.clone());
        self.family.push(v.family_name.clone());
        self.born.push(v.date_of_birth);
        self.landline.push(v.landline.clone());
        self.preferred.push(v.preferred_channel.clone());
        self.language.push(v.language.clone());
    }

    /// Binds the columns an import writes, after the key (NHS numbers or row ids), in the
    /// order both statements list them.
    fn bind_values<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.given)
            .bind(&self.family)
            .bind(&self.born)
            .bind(&self.landline)
            .bind(&self.preferred)
            .bind(&self.language)
    }
}

#[async_trait]
impl ImportStore for PostgresStore {
    async fn open_import(
        &self,
        practice_id: PracticeId,
        fingerprint: Option<&str>,
        replace: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportRun> {
        let mode = if replace { "replace" } else { "merge" };
        let stale = now - ABANDON_AFTER;
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM import_seen WHERE run_id IN
               (SELECT id FROM import_runs WHERE state = 'running' AND updated_at < $1)",
        )
        .bind(At(stale))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE import_runs SET state = 'abandoned', finished_at = $1
             WHERE state = 'running' AND updated_at < $2",
        )
        .bind(At(now))
        .bind(At(stale))
        .execute(&mut *tx)
        .await?;
        let found: Option<RunRow> = match fingerprint {
            Some(fingerprint) => {
                sqlx::query_as(
                    "SELECT id, through_row, created, updated, unchanged FROM import_runs
                     WHERE practice_id = $1 AND fingerprint = $2 AND mode = $3 AND state = 'running'
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(practice_id)
                .bind(fingerprint)
                .bind(mode)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let run = match found {
            Some((id, through_row, created, updated, unchanged)) => ImportRun {
                id,
                practice_id,
                replace,
                through_row: through_row as u64,
                counts: ImportCounts {
                    created: created as u64,
                    updated: updated as u64,
                    unchanged: unchanged as u64,
                },
                resumed: true,
            },
            None => {
                let id = sqlx::query_scalar(
                    "INSERT INTO import_runs (practice_id, fingerprint, mode, state, started_at, updated_at)
                     VALUES ($1, $2, $3, 'running', $4, $4) RETURNING id",
                )
                .bind(practice_id)
                .bind(fingerprint)
                .bind(mode)
                .bind(At(now))
                .fetch_one(&mut *tx)
                .await?;
                ImportRun {
                    id,
                    practice_id,
                    replace,
                    through_row: 1,
                    counts: ImportCounts::default(),
                    resumed: false,
                }
            }
        };
        tx.commit().await?;
        Ok(run)
    }

    async fn note_seen(
        &self,
        run_id: ImportRunId,
        seen: &[(&str, u64)],
    ) -> StoreResult<Vec<(String, u64)>> {
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
        let rows: Vec<i64> = seen.iter().map(|(_, r)| *r as i64).collect();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO import_seen (run_id, nhs_number, first_row)
             SELECT $1, n, r FROM UNNEST($2::text[], $3::bigint[]) AS u(n, r)
             ON CONFLICT (run_id, nhs_number) DO NOTHING",
        )
        .bind(run_id)
        .bind(&numbers)
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
        let earlier: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.nhs_number, s.first_row FROM UNNEST($2::text[], $3::bigint[]) AS u(n, r)
             JOIN import_seen s ON s.run_id = $1 AND s.nhs_number = u.n
             WHERE s.first_row < u.r",
        )
        .bind(run_id)
        .bind(&numbers)
        .bind(&rows)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(earlier.into_iter().map(|(n, r)| (n, r as u64)).collect())
    }

    async fn import_batch(
        &self,
        run: &ImportRun,
        fields: &ImportFields,
        patients: &[ImportedPatient],
        through_row: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportCounts> {
        let numbers: Vec<&str> = patients
            .iter()
            .map(|p| p.patient.nhs_number.as_str())
            .collect();
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(IMPORT_LOCK)
            .bind(run.practice_id.get() as i32)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<PatientRow> = sqlx::query_as(
            "SELECT id, nhs_number, given_name, family_name, date_of_birth, landline,
                    preferred_channel, language, active
             FROM patients WHERE practice_id = $1 AND nhs_number = ANY($2)",
        )
        .bind(run.practice_id)
        .bind(&numbers)
        .fetch_all(&mut *tx)
        .await?;
        let contacts: Vec<(i64, i64, String, String, bool)> = if rows.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            sqlx::query_as(
                "SELECT id, patient_id, channel, address, opted_out_at IS NOT NULL FROM contacts
                 WHERE patient_id = ANY($1) AND channel IN ('sms', 'email') ORDER BY id",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
        };
        let stored = with_contacts(
            rows.into_iter().map(stored_patient).collect(),
            contacts
                .into_iter()
                .map(
                    |(id, patient_id, channel, address, opted_out)| StoredContact {
                        id,
                        patient_id,
                        channel,
                        address,
                        opted_out,
                    },
                )
                .collect(),
        );
        let plan = plan_batch(fields, patients, &stored);
        if !plan.inserts.is_empty() {
            let mut c = Columns::default();
            plan.inserts.iter().for_each(|v| c.push(0, v));
            let insert = sqlx::query(
                "INSERT INTO patients (practice_id, nhs_number, given_name, family_name, date_of_birth,
                                       landline, preferred_channel, language, active, created_at, updated_at)
                 SELECT $1, n, g, f, d, l, pc, lang, TRUE, $2, $2
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::date[], $7::text[], $8::text[], $9::text[])
                      AS u(n, g, f, d, l, pc, lang)",
            )
            .bind(run.practice_id)
            .bind(At(now))
            .bind(&c.nhs);
            c.bind_values(insert).execute(&mut *tx).await?;
        }
        if !plan.updates.is_empty() {
            let mut c = Columns::default();
            plan.updates.iter().for_each(|(id, v)| c.push(*id, v));
            let update = sqlx::query(
                "UPDATE patients p SET given_name = u.g, family_name = u.f, date_of_birth = u.d,
                        landline = u.l, preferred_channel = u.pc, language = u.lang, active = TRUE,
                        updated_at = $1
                 FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::date[], $6::text[], $7::text[], $8::text[])
                      AS u(id, g, f, d, l, pc, lang)
                 WHERE p.id = u.id",
            )
            .bind(At(now))
            .bind(&c.ids);
            c.bind_values(update).execute(&mut *tx).await?;
        }
        if !plan.new_contacts.is_empty() {
            let nc = &plan.new_contacts;
            sqlx::query(
                "INSERT INTO contacts (patient_id, channel, address, opted_out_at, created_at)
                 SELECT p.id, u.ch, u.a, CASE WHEN u.o THEN $2 END, $2
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bool[]) AS u(n, ch, a, o)
                 JOIN patients p ON p.practice_id = $1 AND p.nhs_number = u.n
                 ON CONFLICT (patient_id, channel, address)
                 DO UPDATE SET opted_out_at = COALESCE(contacts.opted_out_at, excluded.opted_out_at)",
            )
            .bind(run.practice_id)
            .bind(At(now))
            .bind(nc.iter().map(|c| c.nhs_number).collect::<Vec<_>>())
            .bind(nc.iter().map(|c| c.channel).collect::<Vec<_>>())
            .bind(nc.iter().map(|c| c.address).collect::<Vec<_>>())
            .bind(nc.iter().map(|c| c.opted_out).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !plan.opt_outs.is_empty() {
            sqlx::query(
                "UPDATE contacts SET opted_out_at = COALESCE(opted_out_at, $1) WHERE id = ANY($2)",
            )
            .bind(At(now))
            .bind(&plan.opt_outs)
            .execute(&mut *tx)
            .await?;
        }
        if !plan.removals.is_empty() {
            sqlx::query("DELETE FROM contacts WHERE opted_out_at IS NULL AND id = ANY($1)")
                .bind(&plan.removals)
                .execute(&mut *tx)
                .await?;
        }
        let counts = plan.counts;
        sqlx::query(
            "UPDATE import_runs SET through_row = $1, created = created + $2, updated = updated + $3,
                    unchanged = unchanged + $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(through_row as i64)
        .bind(counts.created as i64)
        .bind(counts.updated as i64)
        .bind(counts.unchanged as i64)
        .bind(At(now))
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn finish_import(
        &self,
        run: &ImportRun,
        end: ImportEnd,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let deactivated = if end == (ImportEnd::Completed { deactivate: true }) {
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(IMPORT_LOCK)
                .bind(run.practice_id.get() as i32)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE patients p SET active = FALSE, updated_at = $1
                 WHERE p.practice_id = $2 AND p.active
                   AND NOT EXISTS (SELECT 1 FROM import_seen s
                                   WHERE s.run_id = $3 AND s.nhs_number = p.nhs_number)",
            )
            .bind(At(now))
            .bind(run.practice_id)
            .bind(run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            0
        };
        sqlx::query("DELETE FROM import_seen WHERE run_id = $1")
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        let state = match end {
            ImportEnd::Completed { .. } => "completed",
            ImportEnd::Rejected => "rejected",
            ImportEnd::Abandoned => "abandoned",
        };
        sqlx::query(
            "UPDATE import_runs SET state = $1, deactivated = $2, finished_at = $3, updated_at = $3
             WHERE id = $4",
        )
        .bind(state)
        .bind(deactivated as i64)
        .bind(At(now))
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deactivated)
    }

    async fn listed_patients(
        &self,
        practice_id: PracticeId,
        after_nhs: &str,
        limit: i64,
    ) -> StoreResult<Vec<ListedPatient>> {
        let rows: Vec<ListingRow> = sqlx::query_as(
            "SELECT p.nhs_number, p.given_name, p.family_name, p.date_of_birth, p.landline,
                    p.preferred_channel, p.language, p.active, c.channel, c.address,
                    c.opted_out_at IS NOT NULL
             FROM (SELECT * FROM patients WHERE practice_id = $1 AND nhs_number > $2
                   ORDER BY nhs_number LIMIT $3) p
             LEFT JOIN contacts c ON c.patient_id = p.id
             ORDER BY p.nhs_number, c.channel, c.address",
        )
        .bind(practice_id)
        .bind(after_nhs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(group_listing(rows.into_iter().map(listing).collect()))
    }
}
