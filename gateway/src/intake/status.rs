//! Practice status changes: parsed, recorded with their broadcast, and fanned out.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::dispatch::DispatchControl;
use crate::domain::{BroadcastId, Invalid, Language, StatusAudience, StatusKind};
use crate::fanout::{cancel_unsent_in_background, withdraw_before, Fanout, FanoutError};
use crate::store::{
    AuditEntry, IdempotencyClaim, NewStatusChange, Practice, Reach, StartOutcome, Store, StoreError,
};
use crate::telemetry::traces::Propagation;

/// A status change as a client posts it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    /// `closed`, `phones_down`, `systems_down`, `restored` or `custom`.
    pub kind: String,
    /// One line for patients; each kind but `custom` has a default.
    #[serde(default)]
    pub headline: Option<String>,
    /// More words, optional.
    #[serde(default)]
    pub details: Option<String>,
    /// The headline in Welsh, for Welsh patients and a bilingual practice's Welsh part.
    /// Without it they get the kind's Welsh default if `headline` is the default, else
    /// `headline` as typed. Left out of the fingerprint when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline_cy: Option<String>,
    /// The details in Welsh; without them Welsh wording uses `details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_cy: Option<String>,
    /// When the disruption starts (RFC 3339).
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// When it should end (RFC 3339).
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// `all` (the default), `booked` or `both`: see [`StatusAudience`]. Left out of the
    /// fingerprint when not given, so older requests keep theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Start of the period whose appointments are affected (RFC 3339); default `starts_at`,
    /// else when the change is posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_from: Option<DateTime<Utc>>,
    /// End of that period (RFC 3339); default `ends_at`. Needed for `booked` and `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_until: Option<DateTime<Utc>>,
}

/// Why a status change was not started.
#[derive(Debug, thiserror::Error)]
pub enum PostStatusError {
    /// The request is invalid.
    #[error("invalid status change")]
    Invalid(Vec<Invalid>),
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fan-out failed.
    #[error(transparent)]
    Fanout(#[from] FanoutError),
    /// The fan-out task died.
    #[error("fan-out task failed: {0}")]
    Task(String),
}

/// What posting did: the broadcast, and whether it is a replay of an earlier request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    /// The broadcast started (or started earlier under the same key).
    pub broadcast_id: BroadcastId,
    /// True when the Idempotency-Key matched an earlier identical request.
    pub replayed: bool,
}

/// What posting a status change takes: the store, the fan-out that plans its messages, and
/// this process's dispatch workers, told at once which broadcasts a change supersedes.
#[derive(Clone)]
pub struct StatusChanges {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Plans the broadcast's messages.
    pub fanout: Arc<Fanout>,
    /// This process's dispatch workers.
    pub dispatch: Arc<DispatchControl>,
    /// Longest a status change's answer waits for its fan-out (`[fanout] answer_within_ms`).
    pub answer_within: std::time::Duration,
    /// Whether the posting request's trace context is recorded with its broadcast.
    pub propagation: Propagation,
}

/// The headline patients see when the practice gives none (in English; see
/// [`StatusKind::default_headline`] for Welsh).
pub fn default_headline(kind: StatusKind) -> Option<&'static str> {
    kind.default_headline(Language::English)
}

/// Longest headline, in characters, in either language.
const MAX_HEADLINE_CHARS: usize = 300;

/// Longest details, in characters, in either language.
const MAX_DETAILS_CHARS: usize = 2000;

/// `text` trimmed, or `None` when blank; a problem for `field` if it is over `max` characters.
fn optional_text(
    text: Option<&str>,
    field: &str,
    max: usize,
    errors: &mut Vec<Invalid>,
) -> Option<String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    if text.chars().count() > max {
        errors.push(Invalid::new(field, format!("longer than {max} characters")));
    }
    Some(text.to_string())
}

impl StatusChangeRequest {
    /// Checks the request and fills defaults, naming every problem.
    pub fn parse(&self, created_by: &str) -> Result<NewStatusChange, Vec<Invalid>> {
        let mut errors = Vec::new();
        let kind = self
            .kind
            .parse::<StatusKind>()
            .map_err(|e| errors.push(e))
            .ok();
        let headline = match (
            self.headline
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty()),
            kind,
        ) {
            (Some(h), _) => Some(h.to_string()),
            (None, Some(kind)) => match default_headline(kind) {
                Some(h) => Some(h.to_string()),
                None => {
                    errors.push(Invalid::new(
                        "headline",
                        "a custom status change needs a headline",
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        if headline
            .as_ref()
            .is_some_and(|h| h.chars().count() > MAX_HEADLINE_CHARS)
        {
            errors.push(Invalid::new(
                "headline",
                format!("longer than {MAX_HEADLINE_CHARS} characters"),
            ));
        }
        let details = optional_text(
            self.details.as_deref(),
            "details",
            MAX_DETAILS_CHARS,
            &mut errors,
        );
        let headline_cy = optional_text(
            self.headline_cy.as_deref(),
            "headline_cy",
            MAX_HEADLINE_CHARS,
            &mut errors,
        );
        let details_cy = optional_text(
            self.details_cy.as_deref(),
            "details_cy",
            MAX_DETAILS_CHARS,
            &mut errors,
        );
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            if end <= start {
                errors.push(Invalid::new("ends_at", "must be after starts_at"));
            }
        }
        let reach = self.reach(kind, &mut errors);
        match (kind, headline) {
            (Some(kind), Some(headline)) if errors.is_empty() => Ok(NewStatusChange {
                kind,
                headline,
                details,
                headline_cy,
                details_cy,
                starts_at: self.starts_at,
                ends_at: self.ends_at,
                created_by: created_by.to_string(),
                reach,
                traceparent: None,
            }),
            _ => Err(errors),
        }
    }

    /// The audience and affected period, the period defaulting to the disruption's window.
    fn reach(&self, kind: Option<StatusKind>, errors: &mut Vec<Invalid>) -> Reach {
        let audience = match self.audience.as_deref().map(str::trim) {
            None | Some("") => StatusAudience::All,
            Some(word) => word.parse().unwrap_or_else(|e| {
                errors.push(e);
                StatusAudience::All
            }),
        };
        let affected_from = self.affected_from.or(self.starts_at);
        let affected_until = self.affected_until.or(self.ends_at);
        if let (Some(from), Some(until)) = (affected_from, affected_until) {
            if until <= from {
                errors.push(Invalid::new(
                    "affected_until",
                    "must be after affected_from (or starts_at)",
                ));
            }
        }
        if audience.names_appointments() {
            if affected_until.is_none() {
                errors.push(Invalid::new(
                    "affected_until",
                    format!("audience {audience} needs the end of the period whose appointments are affected (affected_until, or ends_at)"),
                ));
            }
            if kind == Some(StatusKind::Restored) {
                errors.push(Invalid::new(
                    "audience",
                    "a restored service affects no appointments: use all",
                ));
            }
        }
        Reach {
            audience,
            affected_from,
            affected_until,
        }
    }

    /// A hash of the request's meaning, to tell a retry from a different request.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// Records a status change and fans it out, returning once the fan-out is done or
/// [`StatusChanges::answer_within`] has passed since the call (recording included),
/// whichever is first: a short list is
/// answered with its planned counts (and a wording that cannot be rendered with the
/// error), a long one at once while planning goes on in the background. With an
/// Idempotency-Key, a retry returns the first broadcast.
pub async fn post_status_change(
    changes: &StatusChanges,
    practice: &Practice,
    request: &StatusChangeRequest,
    actor: &str,
    idempotency: Option<(String, String)>,
) -> Result<Posted, PostStatusError> {
    let answer_by = tokio::time::Instant::now() + changes.answer_within;
    let posted = record_status_change(changes, practice, request, actor, idempotency).await?;
    let background = changes.clone();
    let broadcast_id = posted.broadcast_id;
    let fanning = tokio::spawn(async move {
        // A head start first, on its own places, then the rest: when many practices post
        // at once, each one's first messages go out without waiting for earlier practices'
        // whole lists to be planned.
        let head = Some(crate::intake::groups::HEAD_START_PATIENTS);
        let done = match fan_out(&background, broadcast_id, head).await {
            Ok(()) => fan_out(&background, broadcast_id, None).await,
            failed => failed,
        };
        if let Err(e) = &done {
            tracing::error!(broadcast = broadcast_id.get(), error = %e, "fan-out failed");
        }
        done
    });
    if let Ok(done) = tokio::time::timeout_at(answer_by, fanning).await {
        done.map_err(|e| PostStatusError::Task(e.to_string()))??;
    }
    Ok(posted)
}

/// Plans the messages of a recorded broadcast whose fan-out is unfinished: all of them, or
/// with `head`, a head start of that many patients (see [`Fanout::run_broadcast_head`]).
/// Spawned so that a client hanging up cannot cancel a fan-out half way.
///
/// [`Fanout::run_broadcast_head`]: crate::fanout::Fanout::run_broadcast_head
pub async fn fan_out(
    changes: &StatusChanges,
    broadcast_id: BroadcastId,
    head: Option<usize>,
) -> Result<(), PostStatusError> {
    let Some(broadcast) = changes.store.broadcast(broadcast_id).await? else {
        return Ok(());
    };
    if broadcast.fanout_done_at.is_none() {
        let fanout = changes.fanout.clone();
        // In the trace of the request that posted the change, even when planned after the
        // answer or resumed by another caller.
        let span = changes
            .propagation
            .follow(broadcast.traceparent.as_deref(), || {
                tracing::info_span!(
                    parent: None,
                    "fanout",
                    broadcast_id = broadcast_id.get(),
                    practice_id = broadcast.practice_id.get(),
                    head_start = head,
                )
            });
        tokio::spawn(
            async move {
                match head {
                    Some(patients) => fanout.run_broadcast_head(broadcast_id, patients).await,
                    None => fanout.run_broadcast(broadcast_id).await,
                }
            }
            .instrument(span),
        )
        .await
        .map_err(|e| PostStatusError::Task(e.to_string()))??;
    }
    Ok(())
}

/// Records a status change and its broadcast (withdrawing what it supersedes, and auditing
/// it) without planning its messages: [`fan_out`] does that. With an Idempotency-Key, a
/// retry returns the first broadcast.
pub async fn record_status_change(
    changes: &StatusChanges,
    practice: &Practice,
    request: &StatusChangeRequest,
    actor: &str,
    idempotency: Option<(String, String)>,
) -> Result<Posted, PostStatusError> {
    let mut change = request.parse(actor).map_err(PostStatusError::Invalid)?;
    change.traceparent = changes.propagation.traceparent();
    let claim = idempotency.map(|(scope, key)| IdempotencyClaim {
        scope: format!("{scope}:practice:{}:status", practice.id),
        key,
        request_hash: request.fingerprint(),
    });
    let now = Utc::now();
    let (broadcast_id, replayed) = match changes
        .store
        .start_status_broadcast(practice.id, &change, claim.as_ref(), now)
        .await?
    {
        StartOutcome::Started(id) => (id, false),
        StartOutcome::Replayed(id) => (id, true),
        StartOutcome::KeyReused => return Err(PostStatusError::KeyReused),
    };
    // Nobody should be told "closed" after "restored". The store marked the earlier
    // broadcasts superseded in the transaction that recorded this change; a replay marks
    // again, which repairs what an older version may have left behind.
    withdraw_earlier(changes, broadcast_id, now).await?;
    if !replayed {
        let details =
            serde_json::json!({ "kind": change.kind, "headline": change.headline, "audience": change.reach.audience })
                .to_string();
        changes
            .store
            .audit(
                &AuditEntry {
                    actor: actor.to_string(),
                    action: "status_change.posted".into(),
                    practice_id: Some(practice.id),
                    subject: Some(format!("broadcast:{broadcast_id}")),
                    details: Some(details),
                },
                now,
            )
            .await?;
    }
    Ok(Posted {
        broadcast_id,
        replayed,
    })
}

/// Withdraws the unsent messages of the practice's broadcasts before `broadcast_id`,
/// unless a newer change has superseded that broadcast itself (then the newer one did).
/// This process's dispatch workers drop what they already hold at once; other instances
/// find out from the store within a fraction of a second, and drop every message of a
/// superseded broadcast they claim. The queued messages are cancelled in the background, a
/// page at a time, so the answer does not wait for a long list. Idempotent.
pub async fn withdraw_earlier(
    changes: &StatusChanges,
    broadcast_id: BroadcastId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(broadcast) = changes.store.broadcast(broadcast_id).await? else {
        return Ok(());
    };
    let (superseded, reason) = withdraw_before(changes.store.as_ref(), &broadcast).await?;
    if broadcast.superseded_by.is_none() {
        changes
            .dispatch
            .supersede(broadcast.practice_id, broadcast_id, reason.clone());
    }
    cancel_unsent_in_background(changes.store.clone(), superseded, reason, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str, headline: Option<&str>) -> StatusChangeRequest {
        StatusChangeRequest {
            kind: kind.into(),
            headline: headline.map(str::to_string),
            details: None,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_the_headline_except_for_custom() {
        let change = request("systems_down", None).parse("test").unwrap();
        assert_eq!(change.headline, "Our computer systems are down.");
        let errors = request("custom", None).parse("test").unwrap_err();
        assert_eq!(errors[0].field, "headline");
        let errors = request("flooded", None).parse("test").unwrap_err();
        assert_eq!(errors[0].field, "kind");
    }

    #[test]
    fn the_window_must_run_forwards() {
        let mut r = request("closed", None);
        r.starts_at = Some(Utc::now());
        r.ends_at = r.starts_at.map(|s| s - chrono::Duration::hours(1));
        assert_eq!(r.parse("test").unwrap_err()[0].field, "ends_at");
    }

    #[test]
    fn booked_audiences_need_a_period_that_runs_forwards() {
        let mut r = request("closed", None);
        r.audience = Some("booked".into());
        assert_eq!(r.parse("test").unwrap_err()[0].field, "affected_until");
        let from = Utc::now();
        r.ends_at = Some(from + chrono::Duration::hours(8));
        let reach = r.parse("test").unwrap().reach;
        assert_eq!(reach.audience, StatusAudience::Booked);
        assert_eq!(
            reach.affected_until, r.ends_at,
            "the period defaults to the window"
        );
        r.affected_from = Some(from);
        r.affected_until = Some(from - chrono::Duration::hours(1));
        assert_eq!(r.parse("test").unwrap_err()[0].field, "affected_until");
        r.affected_until = None;
        r.audience = Some("everyone".into());
        assert_eq!(r.parse("test").unwrap_err()[0].field, "audience");
        let mut restored = request("restored", None);
        restored.audience = Some("both".into());
        restored.affected_until = Some(from);
        assert_eq!(restored.parse("test").unwrap_err()[0].field, "audience");
        assert_eq!(
            request("closed", None).parse("test").unwrap().reach,
            Reach::default()
        );
    }

    #[test]
    fn welsh_wording_is_kept_trimmed_and_checked_like_the_english() {
        let mut r = request("closed", Some("Flooding"));
        r.headline_cy = Some("  Llifogydd yn yr ystafell aros ".into());
        r.details_cy = Some("Dewch yn ôl yfory.".into());
        let change = r.parse("test").unwrap();
        assert_eq!(
            change.headline_cy.as_deref(),
            Some("Llifogydd yn yr ystafell aros")
        );
        assert_eq!(change.details_cy.as_deref(), Some("Dewch yn ôl yfory."));
        r.headline_cy = Some(" ".into());
        r.details_cy = None;
        let change = r.parse("test").unwrap();
        assert_eq!((change.headline_cy, change.details_cy), (None, None));
        r.headline_cy = Some("ŵ".repeat(301));
        r.details_cy = Some("ŷ".repeat(2001));
        let fields: Vec<_> = r
            .parse("test")
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["headline_cy", "details_cy"]);
        r.headline_cy = Some("ŵ".repeat(300));
        r.details_cy = Some("ŷ".repeat(2000));
        assert!(r.parse("test").is_ok());
    }

    #[test]
    fn unknown_fields_are_still_refused() {
        let body = r#"{"kind":"closed","headline_cy":"Ar gau","headline_fr":"Fermé"}"#;
        assert!(serde_json::from_str::<StatusChangeRequest>(body).is_err());
        let body = r#"{"kind":"closed","headline_cy":"Ar gau","details_cy":"Llifogydd"}"#;
        assert!(serde_json::from_str::<StatusChangeRequest>(body).is_ok());
    }

    #[test]
    fn fingerprints_differ_with_meaning() {
        assert_eq!(
            request("closed", None).fingerprint(),
            request("closed", None).fingerprint()
        );
        assert_ne!(
            request("closed", None).fingerprint(),
            request("closed", Some("x")).fingerprint()
        );
        // Requests from before audiences and Welsh wording existed keep their fingerprint.
        let canonical = serde_json::to_string(&request("closed", None)).unwrap();
        assert!(!canonical.contains("audience"));
        assert!(!canonical.contains("_cy"), "{canonical}");
        assert_eq!(
            canonical,
            r#"{"kind":"closed","headline":null,"details":null,"starts_at":null,"ends_at":null}"#
        );
        let mut welsh = request("closed", None);
        welsh.headline_cy = Some("Ar gau".into());
        assert_ne!(welsh.fingerprint(), request("closed", None).fingerprint());
    }
}
