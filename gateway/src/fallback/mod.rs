//! Fallback when not delivered in time: a sent message whose key has a deadline, and that no
//! receipt has confirmed by then, is followed once by the same news on the patient's next
//! usable channel. Every dispatching instance looks; the store keeps each message to one
//! follow-up (the original is marked and the follow-up queued in one transaction, under a
//! unique key), across instances and restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::FallbackConfig;
use crate::domain::Channel;
use crate::fanout::{Fanout, FanoutError};
use crate::intake::appointments::change::{plan_follow_up, AppointmentChanges, ChangeError};
use crate::store::{FollowUpOutcome, NewMessage, OverdueMessage, Store, StoreError};

/// Why one overdue message could not be followed up now (it is tried again next time).
#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    /// Planning the broadcast's message on the next channel failed.
    #[error(transparent)]
    Fanout(#[from] FanoutError),
    /// Planning the appointment change's message on the next channel failed.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configured deadlines per message key: exact keys, and prefixes (`appointment.*`)
/// for the keys without their own (the longest prefix wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deadlines {
    exact: HashMap<String, Duration>,
    prefixes: Vec<(String, Duration)>,
}

impl Deadlines {
    /// The deadlines of `[fallback] deadline_seconds`.
    pub fn from_config(config: &FallbackConfig) -> Self {
        let mut deadlines = Self::default();
        for (key, seconds) in &config.deadline_seconds {
            let deadline = Duration::from_secs(*seconds);
            match key.strip_suffix('*') {
                Some(prefix) => deadlines.prefixes.push((prefix.to_string(), deadline)),
                None => {
                    deadlines.exact.insert(key.clone(), deadline);
                }
            }
        }
        deadlines
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        deadlines
    }

    /// The deadline for messages of `key`, if they have one.
    pub fn of(&self, key: &str) -> Option<Duration> {
        self.exact.get(key).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| key.starts_with(prefix.as_str()))
                .map(|(_, deadline)| *deadline)
        })
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// When a message just sent must be confirmed by: the rule dispatch applies as it records
/// a send.
#[derive(Debug, Clone, Default)]
pub struct FallbackPolicy {
    deadlines: Deadlines,
    channels: Vec<Channel>,
}

impl FallbackPolicy {
    /// The policy of `[fallback]`.
    pub fn from_config(config: &FallbackConfig) -> Self {
        Self {
            deadlines: Deadlines::from_config(config),
            channels: config.confirming_channels.clone(),
        }
    }

    /// The deadline of a message of `key` on `channel` that a provider took at `sent_at`:
    /// none if its key has no deadline, its channel cannot confirm, or the provider that
    /// took it never reports delivery (`confirms` false).
    pub fn due_at(
        &self,
        key: &str,
        channel: Channel,
        confirms: bool,
        sent_at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !confirms || !self.channels.contains(&channel) {
            return None;
        }
        let deadline = chrono::Duration::from_std(self.deadlines.of(key)?).ok()?;
        sent_at.checked_add_signed(deadline)
    }
}

/// Looks for messages past their deadline and follows each up once.
pub struct FollowUps {
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
    changes: AppointmentChanges,
    /// Off when no key has a deadline or no channel confirms.
    enabled: bool,
    tick: Duration,
    batch: usize,
    wake: Arc<Notify>,
}

/// What one look did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookSummary {
    /// Overdue messages found.
    pub overdue: usize,
    /// Follow-ups queued.
    pub followed: usize,
    /// Overdue messages with no other channel to go to (marked, nothing queued).
    pub nowhere: usize,
    /// Overdue messages that could not be handled now (tried again next look).
    pub errors: usize,
}

impl FollowUps {
    /// Follow-ups as `config` says, planned by `fanout` (broadcasts) and `changes`
    /// (appointment changes).
    pub fn new(config: &FallbackConfig, fanout: Arc<Fanout>, changes: AppointmentChanges) -> Self {
        Self {
            store: changes.store.clone(),
            wake: changes.wake.clone(),
            fanout,
            changes,
            enabled: !Deadlines::from_config(config).is_empty()
                && !config.confirming_channels.is_empty(),
            tick: Duration::from_millis(config.tick_ms),
            batch: config.batch,
        }
    }

    /// Looks every tick until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        if !self.enabled {
            return;
        }
        loop {
            let look = self.look(Utc::now()).await;
            if look.followed > 0 || look.errors > 0 {
                tracing::info!(
                    overdue = look.overdue,
                    followed = look.followed,
                    nowhere = look.nowhere,
                    errors = look.errors,
                    "followed up messages not confirmed by their deadline"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(self.tick) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One look for messages whose deadline is at or before `now` (the wall clock but in
    /// tests): at most one batch. Follow-ups are planned and recorded at the wall clock.
    pub async fn look(&self, now: DateTime<Utc>) -> LookSummary {
        let mut summary = LookSummary::default();
        let overdue = match self.store.overdue_messages(now, self.batch).await {
            Ok(overdue) => overdue,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for messages past their deadline");
                summary.errors += 1;
                return summary;
            }
        };
        summary.overdue = overdue.len();
        for message in overdue {
            match self.follow(&message, Utc::now()).await {
                Ok(FollowUpOutcome::Recorded(Some(follow_up))) => {
                    summary.followed += 1;
                    tracing::info!(message = message.id.get(), follow_up = follow_up.get(), from = %message.channel, "not confirmed by its deadline: followed up on the next channel");
                }
                Ok(FollowUpOutcome::Recorded(None)) => summary.nowhere += 1,
                Ok(FollowUpOutcome::AlreadyHandled) => {}
                Err(e) => {
                    summary.errors += 1;
                    tracing::warn!(message = message.id.get(), error = %e, "could not follow up a message past its deadline");
                }
            }
        }
        if summary.followed > 0 {
            self.wake.notify_one();
        }
        summary
    }

    /// Plans and records the follow-up of one message: past its deadline, or refused by
    /// its channel after it was sent (a patient not in the NHS App), so the same news goes
    /// once on the patient's next usable channel.
    pub async fn follow(
        &self,
        message: &OverdueMessage,
        now: DateTime<Utc>,
    ) -> Result<FollowUpOutcome, FollowUpError> {
        let follow_up = self.plan(message, now).await?;
        Ok(self
            .store
            .record_follow_up(message.id, follow_up.as_ref(), now)
            .await?)
    }

    /// The same news on the patient's next usable channel, if they have one.
    async fn plan(
        &self,
        message: &OverdueMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<NewMessage>, FollowUpError> {
        // An anonymous follower has only the push subscription they followed with.
        let Some(patient_id) = message.patient_id else {
            return Ok(None);
        };
        if let Some(broadcast_id) = message.broadcast_id {
            return Ok(self
                .fanout
                .replan(broadcast_id, patient_id, Some(message.channel))
                .await?);
        }
        let Some(change) = self.store.change_of_message(message.id).await? else {
            // Not an appointment change's message: nothing else knows how to word it again.
            return Ok(None);
        };
        let Some(practice) = self.store.practice_by_id(message.practice_id).await? else {
            return Ok(None);
        };
        Ok(plan_follow_up(
            &self.changes,
            &practice,
            &change,
            (message.id, patient_id, message.channel),
            now,
        )
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn an_exact_key_wins_over_its_prefix_and_only_confirming_sends_get_a_deadline() {
        let config = FallbackConfig {
            deadline_seconds: BTreeMap::from([
                ("appointment.*".to_string(), 1800),
                ("appointment.cancelled".to_string(), 600),
                ("status.closed".to_string(), 7200),
            ]),
            ..FallbackConfig::default()
        };
        let deadlines = Deadlines::from_config(&config);
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(deadlines.of("appointment.moved"), minutes(30));
        assert_eq!(deadlines.of("appointment.cancelled"), minutes(10));
        assert_eq!(deadlines.of("status.closed"), minutes(120));
        assert_eq!(deadlines.of("status.phones_down"), None);
        assert_eq!(deadlines.of("appointmentx"), None);

        let policy = FallbackPolicy::from_config(&config);
        let sent = Utc::now();
        assert_eq!(
            policy.due_at("appointment.moved", Channel::Sms, true, sent),
            Some(sent + chrono::Duration::minutes(30))
        );
        // Email cannot confirm; a provider that never reports cannot either.
        assert_eq!(
            policy.due_at("appointment.moved", Channel::Email, true, sent),
            None
        );
        assert_eq!(
            policy.due_at("appointment.moved", Channel::Sms, false, sent),
            None
        );
        assert_eq!(policy.due_at("push.invite", Channel::Sms, true, sent), None);
    }
}
