//! Practices on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{ChannelOrder, OdsCode, PracticeId};
use crate::schedule::{PracticeZone, QuietHours};
use crate::store::{
    unique_violation, At, NewPractice, Practice, PracticeSenders, PracticeStore, StoreError,
    StoreResult, TimeColumn,
};

const PRACTICE_COLUMNS: &str =
    "id, ods_code, name, phone, website, email, timezone, channel_order, \
     urgent_channel_order, order_overrides_preference, bilingual, sms_sender, email_display_name, quiet_hours, created_at";

fn practice_from_row(row: &PgRow) -> StoreResult<Practice> {
    let ods: String = row.try_get("ods_code")?;
    let order: String = row.try_get("channel_order")?;
    let urgent: String = row.try_get("urgent_channel_order")?;
    Ok(Practice {
        id: row.try_get("id")?,
        ods_code: OdsCode::parse(&ods).map_err(|e| StoreError::Corrupt {
            column: "practices.ods_code",
            reason: e.reason,
        })?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        website: row.try_get("website")?,
        email: row.try_get("email")?,
        timezone: PracticeZone::of_stored(row.try_get("timezone")?),
        channel_order: ChannelOrder::parse(&order).map_err(|e| StoreError::Corrupt {
            column: "practices.channel_order",
            reason: e.reason,
        })?,
        urgent_channel_order: ChannelOrder::parse(&urgent).map_err(|e| StoreError::Corrupt {
            column: "practices.urgent_channel_order",
            reason: e.reason,
        })?,
        order_overrides_preference: row.try_get("order_overrides_preference")?,
        bilingual: row.try_get("bilingual")?,
        senders: PracticeSenders::of_stored(
            row.try_get("sms_sender")?,
            row.try_get("email_display_name")?,
        ),
        quiet_hours: QuietHours::of_stored(
            row.try_get::<Option<String>, _>("quiet_hours")?.as_deref(),
        ),
        created_at: row.time("created_at")?,
    })
}

#[async_trait]
impl PracticeStore for PostgresStore {
    async fn create_practice(&self, p: &NewPractice, now: DateTime<Utc>) -> StoreResult<Practice> {
        let row = sqlx::query(&format!(
            "INSERT INTO practices (ods_code, name, phone, website, email, timezone, channel_order, bilingual,
                 sms_sender, email_display_name, quiet_hours, created_at, urgent_channel_order,
                 order_overrides_preference)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {PRACTICE_COLUMNS}"
        ))
        .bind(p.ods_code.as_str())
        .bind(&p.name)
        .bind(&p.phone)
        .bind(&p.website)
        .bind(&p.email)
        .bind(p.timezone.to_string())
        .bind(p.channel_order.to_text())
        .bind(p.bilingual)
        .bind(p.senders.sms_sender.as_ref().map(|s| s.as_str()))
        .bind(&p.senders.email_display_name)
        .bind(p.quiet_hours.map(|q| q.to_text()))
        .bind(At(now))
        .bind(p.urgent_channel_order.to_text())
        .bind(p.order_overrides_preference)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, &format!("practice {}", p.ods_code)))?;
        practice_from_row(&row)
    }

    async fn list_practices(&self) -> StoreResult<Vec<Practice>> {
        let rows = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices ORDER BY ods_code"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(practice_from_row).collect()
    }

    async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>> {
        let row = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE ods_code = $1"
        ))
        .bind(ods.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(practice_from_row).transpose()
    }

    async fn practice_by_id(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        let row = sqlx::query(&format!(
            "SELECT {PRACTICE_COLUMNS} FROM practices WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(practice_from_row).transpose()
    }

    async fn update_practice(&self, p: &Practice) -> StoreResult<Option<Practice>> {
        let row = sqlx::query(&format!(
            "UPDATE practices SET name = $2, phone = $3, website = $4, email = $5, timezone = $6,
                 channel_order = $7, bilingual = $8, sms_sender = $9, email_display_name = $10,
                 quiet_hours = $11, urgent_channel_order = $12, order_overrides_preference = $13
             WHERE id = $1 RETURNING {PRACTICE_COLUMNS}"
        ))
        .bind(p.id)
        .bind(&p.name)
        .bind(&p.phone)
        .bind(&p.website)
        .bind(&p.email)
        .bind(p.timezone.to_string())
        .bind(p.channel_order.to_text())
        .bind(p.bilingual)
        .bind(p.senders.sms_sender.as_ref().map(|s| s.as_str()))
        .bind(&p.senders.email_display_name)
        .bind(p.quiet_hours.map(|q| q.to_text()))
        .bind(p.urgent_channel_order.to_text())
        .bind(p.order_overrides_preference)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(practice_from_row).transpose()
    }
}
