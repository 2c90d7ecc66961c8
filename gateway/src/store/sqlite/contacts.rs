//! Reachability on SQLite: opt-outs, bad addresses and push subscriptions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::domain::{ContactId, PatientId, PracticeId};
use crate::store::{At, ContactStore, PushSubscription, StoreResult};

#[async_trait]
impl ContactStore for SqliteStore {
    async fn mark_bad_recipient(
        &self,
        contact_id: ContactId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE contacts SET bad_recipient_at = COALESCE(bad_recipient_at, $1) WHERE id = $2",
        )
        .bind(At(now))
        .bind(contact_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_nhs_app_unreachable(
        &self,
        patient_id: PatientId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let marked = sqlx::query(
            "UPDATE patients SET nhsapp_unreachable_at = $1
             WHERE id = $2 AND nhsapp_unreachable_at IS NULL",
        )
        .bind(At(now))
        .bind(patient_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(marked == 1)
    }

    async fn remove_contact(&self, contact_id: ContactId) -> StoreResult<()> {
        sqlx::query("DELETE FROM contacts WHERE id = $1")
            .bind(contact_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remove_push_endpoint(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM contacts WHERE channel = 'push' AND address = $2
               AND patient_id IN (SELECT id FROM patients WHERE practice_id = $1)",
        )
        .bind(practice_id)
        .bind(endpoint)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn set_sms_opt_out(
        &self,
        practice_id: PracticeId,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let changed = sqlx::query(
            "UPDATE contacts SET opted_out_at = CASE WHEN $1 THEN COALESCE(opted_out_at, $2) ELSE NULL END
             WHERE channel = 'sms' AND address = $3
               AND patient_id IN (SELECT id FROM patients WHERE practice_id = $4)",
        )
        .bind(opted_out)
        .bind(At(now))
        .bind(address)
        .bind(practice_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed)
    }

    async fn opt_out_contact(
        &self,
        contact_id: ContactId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE contacts SET opted_out_at = COALESCE(opted_out_at, $1) WHERE id = $2",
        )
        .bind(At(now))
        .bind(contact_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn push_keys(&self, contact_id: ContactId) -> StoreResult<Option<(String, String)>> {
        let keys: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT push_p256dh, push_auth FROM contacts WHERE id = $1 AND channel = 'push'",
        )
        .bind(contact_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(keys.and_then(|(p, a)| Some((p?, a?))))
    }

    async fn add_push_subscription(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
        s: &PushSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ContactId>> {
        let mut tx = self.begin_write().await?;
        let patient: Option<PatientId> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE practice_id = $1 AND nhs_number = $2",
        )
        .bind(practice_id)
        .bind(nhs_number)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(patient_id) = patient else {
            return Ok(None);
        };
        // A browser that subscribes again gets fresh keys and a clean record.
        let id = sqlx::query_scalar(
            "INSERT INTO contacts (patient_id, channel, address, push_p256dh, push_auth, created_at)
             VALUES ($1, 'push', $2, $3, $4, $5)
             ON CONFLICT (patient_id, channel, address) DO UPDATE SET
                 push_p256dh = excluded.push_p256dh, push_auth = excluded.push_auth,
                 bad_recipient_at = NULL, opted_out_at = NULL
             RETURNING id",
        )
        .bind(patient_id)
        .bind(&s.endpoint)
        .bind(&s.p256dh)
        .bind(&s.auth)
        .bind(At(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn set_sms_opt_out_everywhere(
        &self,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(PracticeId, u64)>> {
        let mut tx = self.begin_write().await?;
        let practices: Vec<(PracticeId, i64)> = sqlx::query_as(
            "SELECT p.practice_id, COUNT(*) FROM contacts c JOIN patients p ON p.id = c.patient_id
             WHERE c.channel = 'sms' AND c.address = $1 GROUP BY p.practice_id ORDER BY p.practice_id",
        )
        .bind(address)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE contacts SET opted_out_at = CASE WHEN $1 THEN COALESCE(opted_out_at, $2) ELSE NULL END
             WHERE channel = 'sms' AND address = $3",
        )
        .bind(opted_out)
        .bind(At(now))
        .bind(address)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(practices
            .into_iter()
            .map(|(practice, n)| (practice, n.max(0) as u64))
            .collect())
    }
}
