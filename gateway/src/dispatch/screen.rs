//! Screening claimed messages before they queue in the lanes: bulk SMS and push inside
//! quiet hours go back to the outbox until the window ends, first tries beyond a patient's
//! cap (counted in the database, shared by every instance) are suppressed, and messages of
//! superseded or cancelled broadcasts are withdrawn.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::recorder::Recorder;
use super::Dispatcher;
use crate::domain::{
    AttemptOutcome, BroadcastId, Channel, MessageId, MessageState, PatientId, PracticeId, Priority,
    Rate,
};
use crate::schedule::PracticeZone;
use crate::store::{ClaimedMessage, Completion};
use crate::telemetry::metrics::Outcome;

impl Dispatcher {
    /// Sorts out claimed messages that must not go now: bulk SMS and push in quiet hours go
    /// back to the outbox until the window closes; bulk messages beyond the patient's cap
    /// are suppressed. Returns the rest.
    pub(super) async fn screen(
        &self,
        claimed: Vec<ClaimedMessage>,
        recorder: &Recorder,
    ) -> Vec<ClaimedMessage> {
        let now = Utc::now();
        let mut ready = Vec::with_capacity(claimed.len());
        let mut held = Vec::new();
        let mut capped = Vec::new();
        for message in claimed {
            if message.priority == Priority::Urgent {
                ready.push(message);
                continue;
            }
            if matches!(message.channel, Channel::Sms | Channel::Push) {
                if let Some(wait) = self.quiet_hours_of(message.practice_id).await {
                    let wait = wait(now);
                    if wait > chrono::Duration::zero() {
                        held.push((message, now + wait));
                        continue;
                    }
                }
            }
            if message.attempt_no == 1 && message.patient_id.is_some() {
                capped.push(message);
                continue;
            }
            ready.push(message);
        }
        let (allowed, over_cap) = self.patient_caps(capped, now).await;
        ready.extend(allowed);
        ready.sort_by_key(|m| (m.priority, m.id));
        if !held.is_empty() {
            let due: Vec<(MessageId, DateTime<Utc>)> =
                held.iter().map(|(m, at)| (m.id, *at)).collect();
            if let Err(e) = self.store.defer(&self.owner, &due, now).await {
                tracing::warn!(error = %e, "dispatch: could not hold messages for quiet hours; they will wait out their lease");
            }
            for (m, _) in &held {
                self.metrics
                    .message_outcome(m.channel, None, Outcome::Deferred);
            }
        }
        let suppressed = over_cap
            .into_iter()
            .map(|(m, cap)| suppression(&m, cap, now));
        let records = suppressed.map(|(channel, c)| async move {
            recorder.record(c).await;
            self.metrics
                .message_outcome(channel, None, Outcome::Suppressed);
        });
        futures_util::future::join_all(records).await;
        ready
    }

    /// Withdraws the claimed messages of broadcasts superseded or cancelled, and returns the
    /// rest. The store is asked about every broadcast among each claim (one indexed look-up
    /// per claim): a newer status change marks the broadcasts it supersedes at once but
    /// cancels their queued messages afterwards, so a message claimed meanwhile, here or on
    /// another instance, must be caught here. What is learnt is remembered in
    /// `DispatchControl`, so messages already out of the lanes, waiting for the rate, are
    /// dropped too.
    ///
    /// While spans are exported, one statement reads this and the traceparent each broadcast
    /// was started with, which its messages' sends continue (see `trace.rs`).
    pub(super) async fn drop_withdrawn(
        &self,
        mut ready: Vec<ClaimedMessage>,
        recorder: &Recorder,
    ) -> Vec<ClaimedMessage> {
        let mut among: Vec<BroadcastId> = ready.iter().filter_map(|m| m.broadcast_id).collect();
        among.sort_unstable();
        among.dedup();
        if !among.is_empty() {
            let read = if self.propagation.is_on() {
                self.store
                    .withdrawn_and_traced_among(&among)
                    .await
                    .map(|read| {
                        follow_broadcasts(&mut ready, &read.traceparents);
                        read.withdrawn
                    })
            } else {
                self.store.withdrawn_among(&among).await
            };
            match read {
                Ok(withdrawn) => {
                    for (id, reason) in withdrawn {
                        self.control.stop(id, reason);
                    }
                }
                // Not sent unchecked: the broadcasts' messages wait out their lease and are
                // claimed (and checked) again; one-patient messages go on.
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch: could not check broadcasts; their messages wait out their lease");
                    return ready
                        .into_iter()
                        .filter(|m| m.broadcast_id.is_none())
                        .collect();
                }
            }
        }
        let mut kept = Vec::with_capacity(ready.len());
        let mut dropped = Vec::new();
        for message in ready {
            let reason = message
                .broadcast_id
                .and_then(|b| self.control.withdrawn_reason(message.practice_id, b));
            match reason {
                Some(reason) => dropped.push((message, reason)),
                None => kept.push(message),
            }
        }
        let records = dropped
            .into_iter()
            .map(|(m, reason)| async move { self.withdraw(&m, reason, recorder).await });
        futures_util::future::join_all(records).await;
        kept
    }

    /// Splits first tries of non-urgent messages to patients into those within each
    /// patient's cap and those beyond it (with the cap), counting the former in the database
    /// so that every instance shares one count. If the count cannot be read, all go.
    async fn patient_caps(
        &self,
        messages: Vec<ClaimedMessage>,
        now: DateTime<Utc>,
    ) -> (Vec<ClaimedMessage>, Vec<(ClaimedMessage, Rate)>) {
        let Some((cap, burst)) = self.control.limits.patient_cap() else {
            return (messages, Vec::new());
        };
        if messages.is_empty() {
            return (messages, Vec::new());
        }
        let mut wanted: HashMap<PatientId, u32> = HashMap::new();
        for patient in messages.iter().filter_map(|m| m.patient_id) {
            *wanted.entry(patient).or_default() += 1;
        }
        let wanted: Vec<(PatientId, u32)> = wanted.into_iter().collect();
        let mut allowed: HashMap<PatientId, u32> = match self
            .store
            .take_patient_quota(&wanted, now, cap.interval(), burst)
            .await
        {
            Ok(allowed) => allowed.into_iter().collect(),
            Err(e) => {
                // The cap is a courtesy to patients; an outage must not suppress for good.
                tracing::warn!(error = %e, "dispatch: could not count patients' caps; sending");
                return (messages, Vec::new());
            }
        };
        let mut within = Vec::with_capacity(messages.len());
        let mut beyond = Vec::new();
        for m in messages {
            let left = m.patient_id.and_then(|p| allowed.get_mut(&p));
            match left {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    within.push(m);
                }
                _ => beyond.push((m, cap)),
            }
        }
        (within, beyond)
    }

    /// For the practice's bulk SMS and push: how long one due at a given time must still
    /// wait for quiet hours to end (zero outside them), judged in the practice's timezone by
    /// the worker's clock. `None` without quiet hours: the practice's own, else the
    /// gateway's (if the practice cannot be read, the gateway's in UK time).
    pub(super) async fn quiet_hours_of(
        &self,
        practice_id: PracticeId,
    ) -> Option<impl Fn(DateTime<Utc>) -> chrono::Duration + Send> {
        let (quiet, timezone) = match self.practice(practice_id).await {
            Ok(p) => (p.quiet_hours.or(self.quiet_hours)?, p.timezone),
            Err(_) => (self.quiet_hours?, PracticeZone::UK),
        };
        let timezone = timezone.tz();
        // The worker's clock may be set (tests): a time is judged as that far from its "now".
        let offset = (self.clock)() - Utc::now();
        Some(move |at: DateTime<Utc>| {
            let local = at + offset;
            quiet.next_allowed(local, timezone) - local
        })
    }
}

/// Gives each message of a broadcast the traceparent its broadcast was started with.
fn follow_broadcasts(messages: &mut [ClaimedMessage], traceparents: &[(BroadcastId, String)]) {
    for message in messages.iter_mut().filter(|m| m.trace.is_none()) {
        let started = traceparents
            .iter()
            .find(|(id, _)| Some(*id) == message.broadcast_id);
        message.trace = started.map(|(_, traceparent)| traceparent.clone());
    }
}

/// The record of a message not sent because the patient had reached their cap.
fn suppression(message: &ClaimedMessage, cap: Rate, now: DateTime<Utc>) -> (Channel, Completion) {
    (
        message.channel,
        Completion {
            message_id: message.id,
            attempt_no: message.attempt_no,
            provider: None,
            outcome: AttemptOutcome::Suppressed,
            provider_ref: None,
            error: Some(format!(
                "suppressed: the patient has had their cap of {cap} non-urgent messages"
            )),
            new_state: MessageState::Suppressed,
            next_attempt_at: None,
            started_at: now,
            finished_at: now,
            fallback_due_at: None,
        },
    )
}
