//! Message templates in PostgreSQL: append-only versions, the newest one in use.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use super::PostgresStore;
use crate::domain::{Channel, Language, PracticeId};
use crate::store::{
    parsed, unique_violation, At, NewTemplate, StoreResult, TemplateStore, TemplateVersion,
    TimeColumn,
};

/// The advisory lock key serialising the seeding of shipped templates ("gw-seedt").
const SEED_LOCK: i64 = 0x6777_2d73_6565_6474;

const COLUMNS: &str = "id, practice_id, key, channel, language, version, subject, body, html, link, author, note, created_at";

fn template_from_row(row: &PgRow) -> StoreResult<TemplateVersion> {
    let channel: String = row.try_get("channel")?;
    let language: String = row.try_get("language")?;
    Ok(TemplateVersion {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        key: row.try_get("key")?,
        channel: parsed("message_templates.channel", &channel)?,
        language: parsed("message_templates.language", &language)?,
        version: row.try_get("version")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        html: row.try_get("html")?,
        link: row.try_get("link")?,
        author: row.try_get("author")?,
        note: row.try_get("note")?,
        created_at: row.time("created_at")?,
    })
}

/// Binds what both statements that write a version take as `$1` to `$10`: the template's
/// key, channel and language, its wording, author and note, and the time.
fn bind_version<'q>(
    query: Query<'q, Postgres, PgArguments>,
    t: &'q NewTemplate,
    now: DateTime<Utc>,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(&t.key)
        .bind(t.channel.as_str())
        .bind(t.language.as_str())
        .bind(&t.subject)
        .bind(&t.body)
        .bind(&t.html)
        .bind(&t.link)
        .bind(&t.author)
        .bind(&t.note)
        .bind(At(now))
}

#[async_trait]
impl TemplateStore for PostgresStore {
    async fn current_templates(&self) -> StoreResult<Vec<TemplateVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM message_templates t
             WHERE version = (SELECT MAX(version) FROM message_templates u
                              WHERE COALESCE(u.practice_id, 0) = COALESCE(t.practice_id, 0)
                                AND u.key = t.key AND u.channel = t.channel AND u.language = t.language)
             ORDER BY COALESCE(practice_id, 0), key, channel, language"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn template_history(
        &self,
        practice_id: Option<PracticeId>,
        key: &str,
        channel: Channel,
        language: Language,
    ) -> StoreResult<Vec<TemplateVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM message_templates
             WHERE COALESCE(practice_id, 0) = $1 AND key = $2 AND channel = $3 AND language = $4
             ORDER BY version DESC"
        ))
        .bind(practice_id.map_or(0, PracticeId::get))
        .bind(key)
        .bind(channel.as_str())
        .bind(language.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn save_template(
        &self,
        t: &NewTemplate,
        now: DateTime<Utc>,
    ) -> StoreResult<TemplateVersion> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO message_templates
                 (practice_id, key, channel, language, version, subject, body, html, link, author, note, created_at)
             SELECT $11, $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7, $8, $9, $10
             FROM message_templates
             WHERE COALESCE(practice_id, 0) = $12 AND key = $1 AND channel = $2 AND language = $3
             RETURNING {COLUMNS}"
        );
        let insert = sqlx::query(&sql);
        let row = bind_version(insert, t, now)
            .bind(t.practice_id)
            .bind(t.practice_id.map_or(0, PracticeId::get))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_violation(e, &format!("a version of {} {}", t.key, t.channel)))?;
        tx.commit().await?;
        template_from_row(&row)
    }

    async fn seed_templates(
        &self,
        defaults: &[NewTemplate],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut added = 0;
        let mut tx = self.begin().await?;
        // Instances starting together seed one at a time; the later ones find the rows there
        // (each statement reads what committed before it) instead of failing on the index.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEED_LOCK)
            .execute(&mut *tx)
            .await?;
        for t in defaults {
            let insert = sqlx::query(
                "INSERT INTO message_templates
                     (practice_id, key, channel, language, version, subject, body, html, link, author, note, created_at)
                 SELECT NULL, $1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10
                 WHERE NOT EXISTS (SELECT 1 FROM message_templates
                                   WHERE practice_id IS NULL AND key = $1 AND channel = $2 AND language = $3)",
            );
            added += bind_version(insert, t, now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // The wording of an earlier release, still in use because nobody edited it,
            // becomes this release's as a new version; an administrator's version stays.
            let upgrade = sqlx::query(
                "INSERT INTO message_templates
                     (practice_id, key, channel, language, version, subject, body, html, link, author, note, created_at)
                 SELECT NULL, $1, $2, $3, latest.version + 1, $4, $5, $6, $7, $8, $9, $10
                 FROM message_templates latest
                 WHERE latest.practice_id IS NULL AND latest.key = $1 AND latest.channel = $2
                   AND latest.language = $3 AND latest.author = $8
                   AND latest.version = (SELECT MAX(version) FROM message_templates
                                         WHERE practice_id IS NULL AND key = $1
                                           AND channel = $2 AND language = $3)
                   AND (latest.subject IS DISTINCT FROM $4 OR latest.body IS DISTINCT FROM $5
                        OR latest.html IS DISTINCT FROM $6 OR latest.link IS DISTINCT FROM $7)",
            );
            added += bind_version(upgrade, t, now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }
}
