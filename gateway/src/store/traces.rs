//! What dispatch reads to follow each send back to the request that caused it, while spans
//! are exported (see `telemetry::traces`). The trace context itself is written with the work
//! it belongs to: a broadcast's with its status change, an appointment change's with its
//! message.

use async_trait::async_trait;

use super::{withdrawn_reasons, StoreResult};
use crate::domain::{BroadcastId, StatusChangeId};

/// What dispatch learns of the broadcasts among a claim while spans are exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedBroadcasts {
    /// Each superseded or cancelled broadcast with the reason its unsent messages are
    /// cancelled with, as [`withdrawn_among`] gives them.
    ///
    /// [`withdrawn_among`]: super::BroadcastStore::withdrawn_among
    pub withdrawn: Vec<(BroadcastId, String)>,
    /// Each broadcast that has one, with the W3C traceparent of the request that started it.
    pub traceparents: Vec<(BroadcastId, String)>,
}

/// Trace context for dispatch.
#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Which of these broadcasts are superseded or cancelled, as
    /// [`withdrawn_among`](super::BroadcastStore::withdrawn_among) says, and the traceparent
    /// of each that has one, in one statement. Dispatch asks this instead of
    /// `withdrawn_among` while spans are exported, so following sends to their request adds
    /// no round trip to a claim (and, while they are not, asks nothing more than before).
    async fn withdrawn_and_traced_among(
        &self,
        broadcast_ids: &[BroadcastId],
    ) -> StoreResult<ClaimedBroadcasts>;
}

/// One broadcast as both databases' query reads it: the status change that superseded it,
/// its cancel, its traceparent.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BroadcastMarks {
    pub id: BroadcastId,
    pub newer: Option<StatusChangeId>,
    pub newer_kind: Option<String>,
    pub cancelled: bool,
    pub cancelled_by: String,
    pub cancel_reason: String,
    pub traceparent: Option<String>,
}

impl ClaimedBroadcasts {
    /// The reasons and traceparents in `rows`.
    pub(crate) fn from_rows(rows: Vec<BroadcastMarks>) -> Self {
        let mut superseded = Vec::new();
        let mut cancelled = Vec::new();
        let mut traceparents = Vec::new();
        for row in rows {
            if let (Some(newer), Some(kind)) = (row.newer, row.newer_kind) {
                superseded.push((row.id, newer, kind));
            }
            if row.cancelled {
                cancelled.push((row.id, row.cancelled_by, row.cancel_reason));
            }
            if let Some(traceparent) = row.traceparent {
                traceparents.push((row.id, traceparent));
            }
        }
        Self {
            withdrawn: withdrawn_reasons(superseded, cancelled),
            traceparents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_reasons_as_withdrawn_among_does_and_each_traceparent() {
        let row =
            |id, newer: Option<i64>, cancelled: bool, traceparent: Option<&str>| BroadcastMarks {
                id: BroadcastId::new(id),
                newer: newer.map(StatusChangeId::new),
                newer_kind: newer.map(|_| "restored".to_string()),
                cancelled,
                cancelled_by: if cancelled {
                    "key:gw_1".into()
                } else {
                    String::new()
                },
                cancel_reason: if cancelled {
                    "Sent twice".into()
                } else {
                    String::new()
                },
                traceparent: traceparent.map(str::to_string),
            };
        let read = ClaimedBroadcasts::from_rows(vec![
            row(1, Some(9), false, Some("00-a-b-01")),
            row(2, Some(9), true, None),
            row(3, None, false, Some("00-c-d-00")),
        ]);
        assert_eq!(
            read.withdrawn,
            vec![
                (
                    BroadcastId::new(2),
                    "broadcast cancelled by key:gw_1: Sent twice".to_string()
                ),
                (
                    BroadcastId::new(1),
                    "superseded by status change 9 (restored)".to_string()
                ),
            ]
        );
        assert_eq!(
            read.traceparents,
            vec![
                (BroadcastId::new(1), "00-a-b-01".to_string()),
                (BroadcastId::new(3), "00-c-d-00".to_string()),
            ]
        );
    }
}
