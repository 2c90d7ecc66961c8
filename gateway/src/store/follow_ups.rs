//! Fallback when not delivered in time: the sent messages whose deadline has passed without
//! a receipt, and recording, once, the message that follows each on another channel.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{parsed, AppointmentChange, NewMessage, StoreResult};
use crate::domain::{BroadcastId, Channel, MessageId, PatientId, PracticeId, Priority};

/// A sent message no receipt has confirmed by its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueMessage {
    /// Row id.
    pub id: MessageId,
    /// Practice row id.
    pub practice_id: PracticeId,
    /// The patient; none for an anonymous follower (who has no other channel).
    pub patient_id: Option<PatientId>,
    /// The broadcast it belongs to, if any.
    pub broadcast_id: Option<BroadcastId>,
    /// The channel it went on.
    pub channel: Channel,
    /// Its message key.
    pub template_key: String,
    /// Its lane.
    pub priority: Priority,
}

/// An overdue message as both databases read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OverdueRow {
    pub id: MessageId,
    pub practice_id: PracticeId,
    pub patient_id: Option<PatientId>,
    pub broadcast_id: Option<BroadcastId>,
    pub channel: String,
    pub template_key: String,
    pub priority: i16,
}

impl OverdueRow {
    /// The message, with its channel checked.
    pub(crate) fn into_message(self) -> StoreResult<OverdueMessage> {
        Ok(OverdueMessage {
            id: self.id,
            practice_id: self.practice_id,
            patient_id: self.patient_id,
            broadcast_id: self.broadcast_id,
            channel: parsed("messages.channel", &self.channel)?,
            template_key: self.template_key,
            priority: Priority::from_rank(self.priority),
        })
    }
}

/// What became of an overdue message's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpOutcome {
    /// Handled now: the follow-up's id, or none when there was nowhere else to send.
    Recorded(Option<MessageId>),
    /// Already handled (by another instance, or before a restart), or delivered since.
    AlreadyHandled,
}

/// Deadlines and their follow-ups.
#[async_trait]
pub trait FollowUpStore: Send + Sync {
    /// Sent messages whose fallback deadline is at or before `now`, not yet confirmed nor
    /// followed up, earliest deadline first.
    async fn overdue_messages(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OverdueMessage>>;

    /// Marks `original`'s deadline handled and, with `follow_up`, queues that message (its
    /// idempotency key keeps it to one) and names it on the original, all in one
    /// transaction: nothing if the original was handled already or is no longer `sent`.
    async fn record_follow_up(
        &self,
        original: MessageId,
        follow_up: Option<&NewMessage>,
        now: DateTime<Utc>,
    ) -> StoreResult<FollowUpOutcome>;

    /// The appointment change whose patient message `message` is, if it is one.
    async fn change_of_message(&self, message: MessageId)
        -> StoreResult<Option<AppointmentChange>>;
}
