//! Console users and sessions in PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{PracticeId, UserId};
use crate::store::{
    role_of, scope_of, unique_violation, At, ConsoleStore, KeyScope, SessionRecord, StoreResult,
    TimeColumn, User, UserSummary,
};

const SUMMARY: &str = "SELECT id, username, role, practice_id, federation_id, created_at,
        disabled_at FROM users";

fn summary_from_row(row: &PgRow) -> StoreResult<UserSummary> {
    let role: String = row.try_get("role")?;
    Ok(UserSummary {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        scope: scope_of(
            "users.role",
            &role,
            row.try_get("practice_id")?,
            row.try_get("federation_id")?,
        )?,
        created_at: row.time("created_at")?,
        disabled_at: row.time_opt("disabled_at")?,
    })
}

fn user_from_row(row: &PgRow) -> StoreResult<User> {
    let role: String = row.try_get("role")?;
    let practice_id: Option<PracticeId> = row.try_get("practice_id")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        scope: scope_of(
            "users.role",
            &role,
            practice_id,
            row.try_get("federation_id")?,
        )?,
    })
}

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        scope: KeyScope,
        now: DateTime<Utc>,
    ) -> StoreResult<User> {
        let stored = role_of(scope);
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, practice_id, federation_id,
                 created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, username, password_hash, role, practice_id, federation_id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(stored.role)
        .bind(stored.practice_id)
        .bind(stored.federation_id)
        .bind(At(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, &format!("user {username}")))?;
        user_from_row(&row)
    }

    async fn users(&self, limit: i64) -> StoreResult<Vec<UserSummary>> {
        let rows = sqlx::query(&format!("{SUMMARY} ORDER BY username LIMIT $1"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn user_summary(&self, id: UserId) -> StoreResult<Option<UserSummary>> {
        let row = sqlx::query(&format!("{SUMMARY} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    async fn disable_user(&self, id: UserId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL")
                .bind(id)
                .bind(At(now))
                .execute(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role, practice_id, federation_id FROM users
             WHERE username = $1 AND disabled_at IS NULL",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(At(now))
        .bind(At(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.role, u.practice_id, u.federation_id,
                    s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(At(now))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(SessionRecord {
                user: user_from_row(&row)?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.time("expires_at")?,
            })),
            None => Ok(None),
        }
    }

    async fn end_session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(At(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
