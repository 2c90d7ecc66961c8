//! Reading the audit trail back with filters: by practice, actor, action and time, newest
//! first, a page at a time. The SQL is built once for both databases.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{At, AuditRecord, StoreResult, TimeColumn};
use crate::domain::PracticeId;

/// Which audit entries to read: all the given filters hold; newest first, those older than
/// `before` (the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries about this practice.
    pub practice_id: Option<PracticeId>,
    /// Only entries by this actor (`key:<prefix>`, `user:<name>`, `cli`, ...).
    pub actor: Option<String>,
    /// Only entries of this action (`patient.erased`, `api_key.revoked`, ...).
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only entries with a smaller id.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

impl AuditFilter {
    /// The query, with one numbered placeholder per filter given, in field order, and the
    /// limit last: the caller binds the same values in the same order.
    pub(crate) fn sql(&self) -> String {
        let mut conditions = Vec::new();
        let mut next = 0;
        let mut placeholder = |column: &str, op: &str| {
            next += 1;
            conditions.push(format!("{column} {op} ${next}"));
        };
        if self.practice_id.is_some() {
            placeholder("a.practice_id", "=");
        }
        if self.actor.is_some() {
            placeholder("a.actor", "=");
        }
        if self.action.is_some() {
            placeholder("a.action", "=");
        }
        if self.from.is_some() {
            placeholder("a.at", ">=");
        }
        if self.until.is_some() {
            placeholder("a.at", "<");
        }
        if self.before.is_some() {
            placeholder("a.id", "<");
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        format!(
            "SELECT a.id, a.at, a.actor, a.action, p.ods_code, a.subject, a.details
             FROM audit_log a LEFT JOIN practices p ON p.id = a.practice_id{filter}
             ORDER BY a.id DESC LIMIT ${}",
            next + 1
        )
    }
}

/// The audit entries `filter` selects, read from either database's pool.
pub(crate) async fn audit_page_in<DB>(
    pool: &Pool<DB>,
    filter: &AuditFilter,
) -> StoreResult<Vec<AuditRecord>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> At: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'c> &'c str: ColumnIndex<DB::Row>,
{
    let sql = filter.sql();
    let mut query = sqlx::query::<DB>(&sql);
    if let Some(practice_id) = filter.practice_id {
        query = query.bind(practice_id.get());
    }
    if let Some(actor) = &filter.actor {
        query = query.bind(actor.clone());
    }
    if let Some(action) = &filter.action {
        query = query.bind(action.clone());
    }
    if let Some(from) = filter.from {
        query = query.bind(At(from));
    }
    if let Some(until) = filter.until {
        query = query.bind(At(until));
    }
    if let Some(before) = filter.before {
        query = query.bind(before);
    }
    let rows = query.bind(filter.limit).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AuditRecord {
                id: row.try_get("id")?,
                practice: row.try_get("ods_code")?,
                at: row.time("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_field_order_with_the_limit_last() {
        let all = AuditFilter {
            practice_id: Some(PracticeId::new(1)),
            actor: Some("cli".into()),
            action: Some("patient.erased".into()),
            from: Some(Utc::now()),
            until: Some(Utc::now()),
            before: Some(9),
            limit: 5,
        };
        let sql = all.sql();
        assert!(sql.contains("a.practice_id = $1 AND a.actor = $2 AND a.action = $3"));
        assert!(sql.contains("a.at >= $4 AND a.at < $5 AND a.id < $6"));
        assert!(sql.ends_with("LIMIT $7"));
        let none = AuditFilter {
            limit: 5,
            ..AuditFilter::default()
        };
        assert!(!none.sql().contains("WHERE"));
        assert!(none.sql().ends_with("LIMIT $1"));
        let actor_only = AuditFilter {
            actor: Some("cli".into()),
            limit: 5,
            ..AuditFilter::default()
        };
        assert!(actor_only.sql().contains("WHERE a.actor = $1"));
    }
}
