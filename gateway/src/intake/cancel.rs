//! Stopping a broadcast: a person (an API key or a console user) cancels every message of
//! it not yet sent, with a reason. The store cancels the queued ones and records who, when
//! and why in one transaction; this process's dispatch workers drop the ones they hold at
//! once, other instances within a fraction of a second (they read it from the store, as for
//! a superseded broadcast); a fan-out still running stops planning at its next page.

use chrono::Utc;
use serde::Deserialize;

use super::status::StatusChanges;
use crate::domain::Invalid;
use crate::store::{AuditEntry, Broadcast, CancelOutcome, StoreError};

/// Longest reason, in characters.
const MAX_REASON_CHARS: usize = 300;

/// A cancel as a client posts it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, in a few words (1 to 300 characters); kept on the broadcast and in the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

impl CancelRequest {
    /// The reason, trimmed, or what is wrong with it.
    pub fn parse(&self) -> Result<String, Vec<Invalid>> {
        let reason = self.reason.as_deref().map(str::trim).unwrap_or_default();
        let problem = if reason.is_empty() {
            Some("say why the broadcast is stopped".to_string())
        } else if reason.chars().count() > MAX_REASON_CHARS {
            Some(format!("longer than {MAX_REASON_CHARS} characters"))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(vec![Invalid::new("reason", problem)]),
            None => Ok(reason.to_string()),
        }
    }
}

/// Cancels `broadcast`'s unsent messages as `actor` for `reason` and audits it. Idempotent:
/// a broadcast cancelled before keeps its first cancel (who, when, why), nothing more is
/// audited, and the outcome says so (`cancelled_now` is `None`). `None` if the broadcast
/// is gone.
pub async fn cancel_broadcast(
    changes: &StatusChanges,
    broadcast: &Broadcast,
    actor: &str,
    reason: &str,
) -> Result<Option<CancelOutcome>, StoreError> {
    let now = Utc::now();
    let Some(outcome) = changes
        .store
        .cancel_broadcast(broadcast.id, actor, reason, now)
        .await?
    else {
        return Ok(None);
    };
    // Messages this process's workers already hold are not sent; told after the store, so
    // they carry the reason that is kept (the first cancel's).
    changes
        .dispatch
        .stop(broadcast.id, outcome.cancel.message_reason());
    if let Some(cancelled) = outcome.cancelled_now {
        tracing::info!(
            broadcast = broadcast.id.get(),
            cancelled,
            "broadcast cancelled"
        );
        let details = serde_json::json!({ "reason": reason, "cancelled_messages": cancelled });
        changes
            .store
            .audit(
                &AuditEntry {
                    actor: actor.to_string(),
                    action: "broadcast.cancelled".into(),
                    practice_id: Some(broadcast.practice_id),
                    subject: Some(format!("broadcast:{}", broadcast.id)),
                    details: Some(details.to_string()),
                },
                now,
            )
            .await?;
    }
    Ok(Some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reason: Option<&str>) -> CancelRequest {
        CancelRequest {
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_reason_is_required_trimmed_and_at_most_300_characters() {
        assert_eq!(
            request(Some("  Sent to the wrong practice ")).parse(),
            Ok("Sent to the wrong practice".to_string())
        );
        for blank in [None, Some(""), Some("   ")] {
            assert_eq!(request(blank).parse().unwrap_err()[0].field, "reason");
        }
        assert!(request(Some(&"ŵ".repeat(300))).parse().is_ok());
        assert_eq!(
            request(Some(&"ŵ".repeat(301))).parse().unwrap_err()[0].field,
            "reason"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<CancelRequest>(r#"{"reason":"x","force":true}"#).is_err());
    }
}
