//! Where a broadcast stands, read from its own row (no message counts), and the page of a
//! practice's broadcasts the API lists, newest first.

use serde::{Deserialize, Serialize};

use super::Broadcast;
use crate::domain::BroadcastId;

/// Where a broadcast stands. A person's cancel outranks a failure, which outranks being
/// superseded: each names why its unsent messages will not go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    /// Its patients are still being planned into messages.
    Planning,
    /// Every message is planned; they go as the providers' rates allow.
    Planned,
    /// A newer status change of the practice replaced it; its unsent messages are withdrawn.
    Superseded,
    /// Its wording could not be rendered; what it planned before failing still goes.
    Failed,
    /// A person stopped it.
    Cancelled,
}

impl BroadcastState {
    /// Every state, in the order a broadcast can pass through them.
    pub const ALL: [BroadcastState; 5] = [
        BroadcastState::Planning,
        BroadcastState::Planned,
        BroadcastState::Superseded,
        BroadcastState::Failed,
        BroadcastState::Cancelled,
    ];

    /// The state of a stored broadcast.
    pub fn of(broadcast: &Broadcast) -> Self {
        if broadcast.cancel.is_some() {
            BroadcastState::Cancelled
        } else if broadcast.failed_at.is_some() {
            BroadcastState::Failed
        } else if broadcast.superseded_by.is_some() {
            BroadcastState::Superseded
        } else if broadcast.fanout_done_at.is_some() {
            BroadcastState::Planned
        } else {
            BroadcastState::Planning
        }
    }

    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::Planning => "planning",
            BroadcastState::Planned => "planned",
            BroadcastState::Superseded => "superseded",
            BroadcastState::Failed => "failed",
            BroadcastState::Cancelled => "cancelled",
        }
    }

    /// The same test as [`BroadcastState::of`] as SQL over `broadcasts b`, written once for
    /// both databases (the columns and their meaning are the same in each).
    pub(crate) fn sql_condition(self) -> &'static str {
        match self {
            BroadcastState::Cancelled => "b.cancelled_at IS NOT NULL",
            BroadcastState::Failed => "b.cancelled_at IS NULL AND b.failed_at IS NOT NULL",
            BroadcastState::Superseded => {
                "b.cancelled_at IS NULL AND b.failed_at IS NULL AND b.superseded_by IS NOT NULL"
            }
            BroadcastState::Planned => {
                "b.cancelled_at IS NULL AND b.failed_at IS NULL AND b.superseded_by IS NULL \
                 AND b.fanout_done_at IS NOT NULL"
            }
            BroadcastState::Planning => {
                "b.cancelled_at IS NULL AND b.failed_at IS NULL AND b.superseded_by IS NULL \
                 AND b.fanout_done_at IS NULL"
            }
        }
    }
}

impl std::str::FromStr for BroadcastState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("must be one of {}", names.join(", "))
            })
    }
}

/// Which of a practice's broadcasts to list: newest first, those older than `before` (the
/// last id of the previous page), optionally only those in one state.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastPage {
    /// Only broadcasts with a smaller id; `None`: from the newest.
    pub before: Option<BroadcastId>,
    /// Only broadcasts in this state.
    pub state: Option<BroadcastState>,
    /// At most this many.
    pub limit: i64,
}

impl BroadcastPage {
    /// The WHERE clause after `b.practice_id = $1 AND b.id < $2`, and the ORDER and LIMIT
    /// (`$3`), for both databases.
    pub(crate) fn sql_tail(&self) -> String {
        let state = self
            .state
            .map(|s| format!(" AND {}", s.sql_condition()))
            .unwrap_or_default();
        format!(" WHERE b.practice_id = $1 AND b.id < $2{state} ORDER BY b.id DESC LIMIT $3")
    }

    /// The id bound to `$2`.
    pub(crate) fn before_id(&self) -> i64 {
        self.before.map_or(i64::MAX, |id| id.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_list_the_choices() {
        for state in BroadcastState::ALL {
            assert_eq!(state.as_str().parse::<BroadcastState>(), Ok(state));
        }
        let err = "sent".parse::<BroadcastState>().unwrap_err();
        assert!(
            err.contains("planning, planned, superseded, failed, cancelled"),
            "{err}"
        );
    }

    #[test]
    fn a_page_filters_by_the_state_asked_for_and_starts_from_the_newest() {
        let page = BroadcastPage {
            before: None,
            state: Some(BroadcastState::Failed),
            limit: 5,
        };
        assert!(page.sql_tail().contains("b.failed_at IS NOT NULL"));
        assert!(!page.sql_tail().contains("superseded_by"));
        assert_eq!(page.before_id(), i64::MAX);
    }
}
