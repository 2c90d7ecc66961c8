//! Staff mobile numbers on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{PhoneNumber, PracticeId, StaffNumberId};
use crate::store::{
    parsed, unique_violation, At, NewStaffNumber, StaffNumber, StaffStore, StoreResult, TimeColumn,
};

const STAFF_COLUMNS: &str = "id, practice_id, name, phone, role, created_at, created_by";

fn staff_number_from_row(row: &PgRow) -> StoreResult<StaffNumber> {
    let role: String = row.try_get("role")?;
    Ok(StaffNumber {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        role: parsed("staff_numbers.role", &role)?,
        created_at: row.time("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

#[async_trait]
impl StaffStore for PostgresStore {
    async fn add_staff_number(
        &self,
        new: &NewStaffNumber,
        now: DateTime<Utc>,
    ) -> StoreResult<StaffNumber> {
        let row = sqlx::query(&format!(
            "INSERT INTO staff_numbers (practice_id, name, phone, role, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {STAFF_COLUMNS}"
        ))
        .bind(new.practice_id)
        .bind(&new.name)
        .bind(new.phone.as_str())
        .bind(new.role.as_str())
        .bind(At(now))
        .bind(&new.created_by)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, &format!("staff number {}", new.phone)))?;
        staff_number_from_row(&row)
    }

    async fn staff_numbers(&self, practice_id: PracticeId) -> StoreResult<Vec<StaffNumber>> {
        let rows = sqlx::query(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff_numbers WHERE practice_id = $1 ORDER BY id"
        ))
        .bind(practice_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(staff_number_from_row).collect()
    }

    async fn remove_staff_number(
        &self,
        practice_id: PracticeId,
        id: StaffNumberId,
    ) -> StoreResult<Option<StaffNumber>> {
        let row = sqlx::query(&format!(
            "DELETE FROM staff_numbers WHERE practice_id = $1 AND id = $2 RETURNING {STAFF_COLUMNS}"
        ))
        .bind(practice_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(staff_number_from_row).transpose()
    }

    async fn staff_numbers_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Vec<StaffNumber>> {
        let rows = sqlx::query(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff_numbers WHERE phone = $1 ORDER BY id"
        ))
        .bind(phone.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(staff_number_from_row).collect()
    }
}
