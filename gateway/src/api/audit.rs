//! `GET /audit`: the audit trail with filters. An administrator reads every entry; a
//! practice's key its own practice's; a federation's key one member practice's at a time.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{next_cursor, page_limit, ApiQuery};
use crate::app::AppState;
use crate::domain::Invalid;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::store::{AuditFilter, KeyScope};

/// The filters of an audit read; every one given must hold.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this practice (its ODS code). A practice's key reads its own
    /// whether or not it names it; a federation's key must name one of its practices.
    #[serde(default)]
    practice: Option<String>,
    /// Only entries by this actor, as the trail names them (`key:<prefix>`, `user:<name>`,
    /// `cli`).
    #[serde(default)]
    actor: Option<String>,
    /// Only entries of this action, such as `patient.erased`.
    #[serde(default)]
    action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// Only entries older than this one: the previous page's `next_before`.
    #[serde(default)]
    before: Option<i64>,
    /// At most this many (1 to 500; 100 if left out).
    #[serde(default)]
    limit: Option<i64>,
}

/// The longest actor or action name taken as a filter.
const MAX_FILTER_LEN: usize = 200;

/// `GET /audit?practice=&actor=&action=&from=&until=&before=&limit=`: entries newest first;
/// pass the returned `next_before` as `before` for the next page (`null` on the last).
#[utoipa::path(get, path = "/audit", operation_id = "list_audit_entries", tag = "access",
    params(AuditQuery),
    responses((status = 200, description = "A page of audit entries, newest first", body = shapes::AuditListAnswer)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut errors = Vec::new();
    let limit = page_limit(query.limit, 100, 500, &mut errors);
    for (field, value) in [("actor", &query.actor), ("action", &query.action)] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER_LEN) {
            errors.push(Invalid::new(
                field,
                format!("must be at most {MAX_FILTER_LEN} characters"),
            ));
        }
    }
    if let (Some(from), Some(until)) = (query.from, query.until) {
        if until <= from {
            errors.push(Invalid::new("until", "must be after `from`"));
        }
    }
    let practice_id = match (&query.practice, caller.scope) {
        (Some(ods), _) => Some(caller.practice(state.store.as_ref(), ods).await?.id),
        (None, KeyScope::Practice(own)) => Some(own),
        (None, KeyScope::Admin) => None,
        (None, KeyScope::Federation(_)) => {
            errors.push(Invalid::new(
                "practice",
                "a federation's key reads one member practice's trail at a time: name it",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = AuditFilter {
        practice_id,
        actor: query.actor,
        action: query.action,
        from: query.from,
        until: query.until,
        before: query.before,
        limit,
    };
    let entries = state.store.audit_page(&filter).await?;
    let next_before = next_cursor(&entries, limit, |e| e.id);
    // Details are stored as JSON text: shown as JSON, or as the text if it does not parse.
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|entry| {
            let details = entry
                .details
                .as_deref()
                .map(|text| serde_json::from_str(text).unwrap_or_else(|_| json!(text)));
            json!({
                "id": entry.id,
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "practice": entry.practice,
                "subject": entry.subject,
                "details": details,
            })
        })
        .collect();
    Ok(Json(
        json!({ "entries": entries, "next_before": next_before }),
    ))
}
