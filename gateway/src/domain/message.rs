//! The life of a message in the outbox: its state, priority and attempt outcomes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Waiting in the outbox for its `next_attempt_at`.
    Queued,
    /// Claimed by a worker, which holds a lease on it while it talks to the provider.
    Sending,
    /// Accepted by the provider.
    Sent,
    /// The provider reported it reached the patient (for push: the browser showed it).
    Delivered,
    /// The patient opened it: a tap on a push notification, or a provider's read receipt.
    Read,
    /// Gave up: the reason is in `last_error`.
    Failed,
    /// Deliberately not sent (a cap, an opt-out found late).
    Suppressed,
    /// Withdrawn before it was sent (e.g. superseded by a newer status change).
    Cancelled,
}

impl MessageState {
    /// Every state, in the order a message usually passes through them.
    pub const ALL: [MessageState; 8] = [
        MessageState::Queued,
        MessageState::Sending,
        MessageState::Sent,
        MessageState::Delivered,
        MessageState::Read,
        MessageState::Failed,
        MessageState::Suppressed,
        MessageState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Failed => "failed",
            MessageState::Suppressed => "suppressed",
            MessageState::Cancelled => "cancelled",
        }
    }

    /// Whether the message will never be sent again.
    pub fn is_final(self) -> bool {
        !matches!(self, MessageState::Queued | MessageState::Sending)
    }
}

impl FromStr for MessageState {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Invalid::new("state", format!("{s:?} is not a message state")))
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a browser reports about a push message it received: a push receipt's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushEvent {
    /// The service worker showed the notification: the message is `delivered`.
    Shown,
    /// The patient tapped it: the message is `read`.
    Read,
}

impl PushEvent {
    /// The stored name (a push receipt's `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            PushEvent::Shown => "shown",
            PushEvent::Read => "read",
        }
    }

    /// The state the event moves a message to.
    pub fn settles(self) -> MessageState {
        match self {
            PushEvent::Shown => MessageState::Delivered,
            PushEvent::Read => MessageState::Read,
        }
    }

    /// The states the event moves a message from; any other state is left as it is, so a
    /// message never moves backwards (a late `shown` after `read`).
    pub fn moves_from(self) -> &'static [MessageState] {
        match self {
            PushEvent::Shown => &[MessageState::Sent],
            PushEvent::Read => &[MessageState::Sent, MessageState::Delivered],
        }
    }
}

/// How soon a message must go. Stored as a number so that claiming can sort on it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// One patient's own news (an appointment change): never waits behind a broadcast.
    Urgent,
    /// A practice-wide broadcast.
    Bulk,
}

impl Priority {
    /// The stored number: lower goes first.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Urgent => 0,
            Priority::Bulk => 1,
        }
    }

    /// The priority stored as `rank`; unknown numbers are treated as bulk.
    pub fn from_rank(rank: i16) -> Self {
        if rank <= 0 {
            Priority::Urgent
        } else {
            Priority::Bulk
        }
    }
}

/// How one try at handing a message to a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider accepted the message.
    Accepted,
    /// A failure worth retrying (timeout, 5xx, rate limited).
    Retryable,
    /// A failure that will not change on retry (rejected content, bad configuration).
    Permanent,
    /// The recipient cannot be reached at this address (invalid, unsubscribed, expired).
    BadRecipient,
    /// The worker stopped mid-send (crash, kill): the provider may or may not have it.
    Unknown,
    /// Not sent: a limit said no (the patient's daily cap of non-urgent messages).
    Suppressed,
    /// Not sent: withdrawn while waiting, because a newer status change superseded it.
    Withdrawn,
}

impl AttemptOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Accepted => "accepted",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::BadRecipient => "bad_recipient",
            AttemptOutcome::Unknown => "unknown",
            AttemptOutcome::Suppressed => "suppressed",
            AttemptOutcome::Withdrawn => "withdrawn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_urgent_sorts_first() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>().unwrap(), s);
        }
        assert!(Priority::Urgent.rank() < Priority::Bulk.rank());
        assert_eq!(Priority::from_rank(Priority::Bulk.rank()), Priority::Bulk);
    }
}
