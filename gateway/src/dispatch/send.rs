//! One channel's sender: takes the next message from the lanes, waits for a concurrency
//! slot, a provider in rotation and that provider's rate, then sends and records.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::failover::Circuit;
use super::fence::Admission;
use super::lanes::{Lanes, Next};
use super::limits::Verdict;
use super::recorder::Recorder;
use super::slots::Slots;
use super::Dispatcher;
use crate::domain::{Channel, MessageState, Priority};
use crate::outbox::completion;
use crate::providers::{Outgoing, PushKeys, SendError};
use crate::store::{ClaimedMessage, StoreError};
use crate::telemetry::metrics::{Limiter, Outcome};

/// Most sends of one channel waiting for their provider's rate at once.
const RATE_QUEUE: usize = 4;

impl Dispatcher {
    /// Sends `channel`'s messages until `stop`: one at a time through the limits, each send
    /// then running on its own so slow providers overlap up to the concurrency. Returns once
    /// the sends it started have been recorded.
    pub(super) async fn sender(
        self,
        channel: Channel,
        lanes: Arc<Lanes>,
        recorder: Recorder,
        permits: Arc<Slots>,
        stop: CancellationToken,
    ) {
        let mut sends = JoinSet::new();
        // Bulk sends of this channel waiting for their rate token at once: a few, so an
        // urgent message has few sends ahead of it (start marks still overlap freely).
        let ahead = Arc::new(Semaphore::new(RATE_QUEUE));
        while !stop.is_cancelled() {
            while sends.try_join_next().is_some() {}
            let message = match lanes.next(channel, &self.control.limits) {
                Next::Send(message) => message,
                Next::Wait(wait) => {
                    self.metrics.rate_limit_wait(Limiter::Practice, wait);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = lanes.arrival(channel) => {}
                        _ = stop.cancelled() => {}
                    }
                    continue;
                }
                Next::Empty => {
                    tokio::select! {
                        _ = lanes.arrival(channel) => {}
                        _ = stop.cancelled() => {}
                    }
                    continue;
                }
            };
            // If a wait is cut short by shutdown, the message's lease is given back.
            let permit = tokio::select! {
                p = permits.clone().acquire(channel) => Some(p),
                _ = stop.cancelled() => None,
            };
            let Some(permit) = permit else {
                lanes.done(channel);
                continue;
            };
            // With a slot, the send has begun: the lease fence's database check is asked for
            // now and the provider's rate is taken once it has answered, just before the send
            // (so the send follows its rate token at once, and the check's round trip
            // overlaps other sends).
            let admission = recorder.fence().request(&message).await;
            match self.clearance(channel, &stop).await {
                Some(circuit) => {
                    let this = self.clone();
                    let lanes = lanes.clone();
                    let recorder = recorder.clone();
                    let stop = stop.clone();
                    let queued = ahead.clone();
                    let span =
                        self.send_span(&message, circuit.as_ref().map(|c| c.provider().name()));
                    sends.spawn(async move {
                        this.send_and_record(
                            message,
                            circuit,
                            (admission, queued, stop),
                            &recorder,
                        )
                        .instrument(span)
                        .await;
                        drop(permit);
                        lanes.done(channel);
                    });
                }
                None => {
                    recorder.fence().abandon(admission).await;
                    lanes.done(channel);
                }
            }
        }
        while sends.join_next().await.is_some() {}
    }

    /// Waits for a provider of `channel` in rotation (the caller holds a concurrency slot).
    /// `None` if `stop` came first; a channel without providers gets no circuit.
    async fn clearance(
        &self,
        channel: Channel,
        stop: &CancellationToken,
    ) -> Option<Option<Arc<Circuit>>> {
        let circuit = loop {
            match self.control.rotation.choose(channel, Instant::now()) {
                None => break None,
                Some(Ok(circuit)) => break Some(circuit),
                Some(Err(until)) => tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = stop.cancelled() => return None,
                },
            }
        };
        Some(circuit)
    }

    /// Waits for room in `circuit`'s provider rate; false if `stop` came first.
    async fn provider_rate(&self, circuit: &Circuit, stop: &CancellationToken) -> bool {
        while let Verdict::Wait(wait) = self.control.limits.provider(circuit.provider().name()) {
            self.metrics.rate_limit_wait(Limiter::Provider, wait);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return false,
            }
        }
        true
    }

    /// Sends one message through `circuit`'s provider and records the outcome.
    async fn send_and_record(
        &self,
        message: ClaimedMessage,
        circuit: Option<Arc<Circuit>>,
        (admission, queued, stop): (Admission, Arc<Semaphore>, CancellationToken),
        recorder: &Recorder,
    ) {
        let started_at = Utc::now();
        // A message a newer status change has superseded, or of a cancelled broadcast, is not sent.
        if let Some(reason) = message
            .broadcast_id
            .and_then(|b| self.control.withdrawn_reason(message.practice_id, b))
        {
            if let Some(circuit) = &circuit {
                circuit.unused();
            }
            self.withdraw(&message, reason, recorder).await;
            return;
        }
        let provider_name = circuit.as_ref().map(|c| c.provider().name().to_string());
        let confirms = circuit
            .as_ref()
            .is_some_and(|c| c.provider().confirms_delivery());
        let result = if message.attempt_no > self.policy.max_attempts as i32 {
            // Claimed again after repeated crashes mid-send: stop before it loops for ever.
            Err(SendError::Permanent {
                reason: format!(
                    "gave up: {} attempts ended without an outcome",
                    message.attempt_no - 1
                ),
            })
        } else if let Some(circuit) = &circuit {
            // The lease fence: a message this worker may no longer hold is dropped unsent.
            let fence = recorder.fence();
            let Some(admitted) = fence.admit(admission).await else {
                circuit.unused();
                return;
            };
            // The rate, then the fence once more (a long wait, e.g. while sends are held, may
            // outlast the leases' renewals).
            // Bulk sends wait for the rate a few at a time, in turn; urgent ones go straight
            // to it, so they never wait behind more than those few.
            let turn = match message.priority {
                Priority::Urgent => None,
                Priority::Bulk => tokio::select! {
                    t = queued.acquire_owned() => t.ok(),
                    _ = stop.cancelled() => None,
                },
            };
            let rated = (turn.is_some() || message.priority == Priority::Urgent)
                && self.provider_rate(circuit, &stop).await;
            drop(turn);
            if !rated || !fence.holds(&admitted) {
                circuit.unused();
                fence.release_now(message.id).await;
                return;
            }
            // And the last moment to stop a message superseded or cancelled meanwhile.
            if let Some(reason) = message
                .broadcast_id
                .and_then(|b| self.control.withdrawn_reason(message.practice_id, b))
            {
                circuit.unused();
                self.withdraw(&message, reason, recorder).await;
                return;
            }
            match self.outgoing(&message).await {
                Ok(outgoing) => {
                    // A paused push service: the message goes back to the outbox unsent.
                    if self.held_by_origin(&message, circuit).await {
                        return;
                    }
                    let began = Instant::now();
                    let result = circuit.provider().send(&outgoing).await;
                    let name = circuit.provider().name();
                    self.metrics
                        .send_duration(message.channel, name, began.elapsed());
                    let state =
                        self.record_health(circuit, &message.address, result.as_ref().err());
                    self.circuit_gauge(name, state);
                    result
                }
                Err(e) => {
                    // The provider was not called: its place in the circuit is given back.
                    circuit.unused();
                    Err(SendError::Retryable {
                        reason: format!("could not read the message's details: {e}"),
                        retry_after: None,
                    })
                }
            }
        } else {
            Err(SendError::Permanent {
                reason: format!(
                    "no provider is configured for the {} channel",
                    message.channel
                ),
            })
        };
        if let Err(e) = &result {
            tracing::warn!(message = message.id.get(), attempt = message.attempt_no, error = %e, "send failed");
        }
        let bad_recipient = matches!(result, Err(SendError::BadRecipient { .. }));
        let finished_at = Utc::now();
        // Retries of bulk SMS, push and NHS App messages are held out of quiet hours too.
        let quiet = if message.priority == Priority::Bulk
            && matches!(
                message.channel,
                Channel::Sms | Channel::Push | Channel::NhsApp
            ) {
            self.quiet_hours_of(message.practice_id).await
        } else {
            None
        };
        let hold = move |at: chrono::DateTime<Utc>| match &quiet {
            Some(wait) => at + wait(at),
            None => at,
        };
        let mut done = completion(
            &message,
            provider_name.as_deref(),
            result,
            &self.policy,
            (started_at, finished_at),
            &hold,
        );
        if done.new_state == MessageState::Sent {
            done.fallback_due_at = self.fallback.due_at(
                &message.template_key,
                message.channel,
                confirms,
                finished_at,
            );
        }
        let outcome = match done.new_state {
            MessageState::Sent | MessageState::Delivered | MessageState::Read => Outcome::Sent,
            MessageState::Queued => Outcome::Retried,
            MessageState::Suppressed => Outcome::Suppressed,
            MessageState::Cancelled => Outcome::Cancelled,
            MessageState::Failed | MessageState::Sending => Outcome::Failed,
        };
        recorder.record(done).await;
        self.record_outcome(outcome);
        self.metrics
            .message_outcome(message.channel, provider_name.as_deref(), outcome);
        if bad_recipient {
            if let Err(e) = self.after_bad_recipient(&message).await {
                tracing::warn!(message = message.id.get(), error = %e, "could not mark the refused address");
            }
        }
    }

    /// A refused address: later fan-outs skip it (an expired push subscription is removed),
    /// and a broadcast message is planned again on the patient's next channel.
    async fn after_bad_recipient(&self, message: &ClaimedMessage) -> Result<(), StoreError> {
        if let Some(follower_id) = message.follower_id {
            // An anonymous follower has no other channel: the subscription is simply gone.
            return self.store.remove_follower(follower_id).await;
        }
        let Some(patient_id) = message.patient_id else {
            return Ok(());
        };
        match (message.channel, message.contact_id) {
            // The NHS App's contact is the patient's NHS number: the patient is marked.
            (Channel::NhsApp, _) => {
                self.store
                    .mark_nhs_app_unreachable(patient_id, Utc::now())
                    .await?;
            }
            (_, None) => return Ok(()),
            (Channel::Push, Some(contact_id)) => self.store.remove_contact(contact_id).await?,
            (Channel::Sms | Channel::Email, Some(contact_id)) => {
                self.store
                    .mark_bad_recipient(contact_id, Utc::now())
                    .await?
            }
        }
        if let (Some(fanout), Some(broadcast_id)) = (&self.fanout, message.broadcast_id) {
            match fanout.reroute(broadcast_id, patient_id).await {
                Ok(Some(channel)) => {
                    tracing::info!(message = message.id.get(), to = %channel, "re-routed to the patient's next channel")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(message = message.id.get(), error = %e, "could not re-route")
                }
            }
        }
        Ok(())
    }

    /// What the provider needs: the message, who it is from, and for push the browser's keys.
    async fn outgoing(&self, message: &ClaimedMessage) -> Result<Outgoing, StoreError> {
        let practice = self.practice(message.practice_id).await?.reference;
        let keys = match (message.channel, message.contact_id, message.follower_id) {
            (Channel::Push, Some(contact_id), _) => self.store.push_keys(contact_id).await?,
            (Channel::Push, None, Some(follower_id)) => {
                self.store.follower_push_keys(follower_id).await?
            }
            _ => None,
        };
        let push = keys.map(|(p256dh, auth)| PushKeys { p256dh, auth });
        let unsubscribe_url = match (
            message.channel,
            message.priority,
            message.contact_id,
            &self.links,
        ) {
            (Channel::Email, Priority::Bulk, Some(contact_id), Some(links)) => {
                Some(links.unsubscribe_url(contact_id))
            }
            _ => None,
        };
        let receipt_token = match (message.channel, &self.links) {
            (Channel::Push, Some(links)) => Some(links.push_receipt_token(message.id)),
            _ => None,
        };
        Ok(Outgoing {
            message_id: message.id.get(),
            template_key: message.template_key.clone(),
            channel: message.channel,
            address: message.address.clone(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            html: message.body_html.clone(),
            link: message.link.clone(),
            priority: message.priority,
            practice,
            unsubscribe_url,
            push,
            receipt_token,
        })
    }
}
