//! The outbox's rules: how a send's result becomes the message's next state, and when
//! a retry is due. Pure functions; the store applies them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::config::DispatchConfig;
use crate::domain::{AttemptOutcome, MessageState};
use crate::providers::{Accepted, SendError};
use crate::store::{ClaimedMessage, Completion};

/// The retry schedule: exponential backoff with full jitter, capped, for a bounded number of tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Tries before giving up.
    pub max_attempts: u32,
    /// How long after it was planned a message may still be retried.
    pub max_age: Duration,
    /// The longest a provider's Retry-After may put a retry off.
    pub max_peer_delay: Duration,
}

impl RetryPolicy {
    /// The policy in the dispatch settings.
    pub fn from_config(config: &DispatchConfig) -> Self {
        Self {
            base: Duration::from_millis(config.retry_base_ms),
            cap: Duration::from_millis(config.retry_cap_ms),
            max_attempts: config.max_attempts,
            max_age: Duration::from_secs(config.retry_max_age_seconds),
            max_peer_delay: Duration::from_secs(config.max_peer_delay_seconds),
        }
    }

    /// The longest wait after try `attempt_no` (1-based): base doubled per try, capped.
    pub fn ceiling(&self, attempt_no: i32) -> Duration {
        let doublings = attempt_no.saturating_sub(1).clamp(0, 30) as u32;
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The wait after try `attempt_no`: uniform in [0, ceiling] ("full jitter"), and never
    /// shorter than the provider's Retry-After (itself cut to `max_peer_delay`).
    pub fn delay(
        &self,
        attempt_no: i32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt_no).as_millis() as u64;
        let jittered = Duration::from_millis(rng.gen_range(0..=ceiling));
        retry_after.map_or(jittered, |after| {
            jittered.max(crate::providers::http::clamp_peer_delay(
                after,
                self.max_peer_delay,
            ))
        })
    }
}

/// What to record after one try: the attempt and the message's next state. A retry is
/// moved by `hold` (quiet hours) and fails instead if it would fall after the maximum age.
pub fn completion(
    message: &ClaimedMessage,
    provider: Option<&str>,
    result: Result<Accepted, SendError>,
    policy: &RetryPolicy,
    (started_at, finished_at): (DateTime<Utc>, DateTime<Utc>),
    hold: &dyn Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Completion {
    let mut c = Completion {
        message_id: message.id,
        attempt_no: message.attempt_no,
        provider: provider.map(str::to_string),
        outcome: AttemptOutcome::Accepted,
        provider_ref: None,
        error: None,
        new_state: MessageState::Sent,
        next_attempt_at: None,
        started_at,
        finished_at,
        fallback_due_at: None,
    };
    match result {
        Ok(accepted) => c.provider_ref = accepted.provider_ref,
        Err(SendError::Retryable {
            reason,
            retry_after,
        }) => {
            c.outcome = AttemptOutcome::Retryable;
            let delay = policy.delay(message.attempt_no, retry_after, &mut rand::thread_rng());
            let next = hold(later(finished_at, delay));
            let deadline = later(message.created_at, policy.max_age);
            if message.attempt_no >= policy.max_attempts as i32 {
                c.new_state = MessageState::Failed;
                c.error = Some(format!(
                    "gave up after {} attempts: {reason}",
                    message.attempt_no
                ));
            } else if next > deadline {
                c.new_state = MessageState::Failed;
                c.error = Some(format!(
                    "gave up after {} attempts over {} minutes: {reason}",
                    message.attempt_no,
                    (finished_at - message.created_at).num_minutes()
                ));
            } else {
                c.new_state = MessageState::Queued;
                c.next_attempt_at = Some(next);
                c.error = Some(reason);
            }
        }
        Err(SendError::Permanent { reason }) => {
            c.outcome = AttemptOutcome::Permanent;
            c.new_state = MessageState::Failed;
            c.error = Some(reason);
        }
        Err(SendError::BadRecipient { reason }) => {
            c.outcome = AttemptOutcome::BadRecipient;
            c.new_state = MessageState::Failed;
            c.error = Some(reason);
        }
    }
    c
}

/// `at` plus `wait`, or the latest time there is: never an overflow panic.
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BroadcastId, Channel, ContactId, MessageId, PatientId, PracticeId, Priority,
    };

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 3,
            max_age: Duration::from_secs(3600),
            max_peer_delay: Duration::from_secs(120),
        }
    }

    fn now_as_is(at: DateTime<Utc>) -> DateTime<Utc> {
        at
    }

    fn claimed(attempt_no: i32) -> ClaimedMessage {
        ClaimedMessage {
            id: MessageId::new(7),
            practice_id: PracticeId::new(1),
            patient_id: Some(PatientId::new(2)),
            follower_id: None,
            broadcast_id: Some(BroadcastId::new(4)),
            contact_id: Some(ContactId::new(3)),
            channel: Channel::Sms,
            address: "+447700900001".into(),
            subject: None,
            body: "hi".into(),
            body_html: None,
            link: None,
            priority: Priority::Bulk,
            attempt_no,
            created_at: Utc::now(),
            trace: None,
            template_key: "status.closed".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_secs(1));
        assert_eq!(p.ceiling(3), Duration::from_secs(4));
        assert_eq!(p.ceiling(40), Duration::from_secs(60));
        let mut rng = rand::thread_rng();
        for attempt in 1..10 {
            let d = p.delay(attempt, None, &mut rng);
            assert!(d <= p.ceiling(attempt));
            let d = p.delay(attempt, Some(Duration::from_secs(90)), &mut rng);
            assert!(d >= Duration::from_secs(90));
            // A Retry-After past the cap is cut to it.
            let d = p.delay(attempt, Some(Duration::from_secs(u64::MAX)), &mut rng);
            let cap = Duration::from_secs(120);
            assert!(d >= cap && d <= cap.max(p.ceiling(attempt)), "{d:?}");
        }
    }

    #[test]
    fn an_absurd_retry_after_becomes_a_retry_within_the_cap() {
        let p = policy();
        let now = Utc::now();
        let busy = SendError::Retryable {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(u64::MAX)),
        };
        let c = completion(
            &claimed(1),
            Some("push"),
            Err(busy),
            &p,
            (now, now),
            &now_as_is,
        );
        assert_eq!(c.new_state, MessageState::Queued);
        let next = c.next_attempt_at.unwrap();
        assert!(next <= now + chrono::Duration::seconds(120), "{next}");
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn results_map_to_states() {
        let p = policy();
        let now = Utc::now();
        let ok = completion(
            &claimed(1),
            Some("log"),
            Ok(Accepted {
                provider_ref: Some("r".into()),
            }),
            &p,
            (now, now),
            &now_as_is,
        );
        assert_eq!(
            (ok.new_state, ok.outcome),
            (MessageState::Sent, AttemptOutcome::Accepted)
        );
        let retry = SendError::Retryable {
            reason: "503".into(),
            retry_after: None,
        };
        let again = completion(
            &claimed(1),
            Some("log"),
            Err(retry.clone()),
            &p,
            (now, now),
            &now_as_is,
        );
        assert_eq!(again.new_state, MessageState::Queued);
        assert!(again.next_attempt_at.is_some());
        let last = completion(
            &claimed(3),
            Some("log"),
            Err(retry.clone()),
            &p,
            (now, now),
            &now_as_is,
        );
        assert_eq!(last.new_state, MessageState::Failed);
        // Held past the maximum age (say by quiet hours): it fails now instead.
        let overnight = |at: DateTime<Utc>| at + chrono::Duration::hours(2);
        let late = completion(
            &claimed(1),
            Some("log"),
            Err(retry),
            &p,
            (now, now),
            &overnight,
        );
        assert_eq!(late.new_state, MessageState::Failed);
        assert!(late
            .error
            .unwrap()
            .starts_with("gave up after 1 attempts over 0 minutes: 503"));
        let held = |at: DateTime<Utc>| at + chrono::Duration::minutes(30);
        let retry = SendError::Retryable {
            reason: "503".into(),
            retry_after: None,
        };
        let waits = completion(&claimed(1), Some("log"), Err(retry), &p, (now, now), &held);
        assert!(waits.next_attempt_at.unwrap() >= now + chrono::Duration::minutes(30));
        let bad = completion(
            &claimed(1),
            None,
            Err(SendError::BadRecipient { reason: "x".into() }),
            &p,
            (now, now),
            &now_as_is,
        );
        assert_eq!(
            (bad.new_state, bad.outcome),
            (MessageState::Failed, AttemptOutcome::BadRecipient)
        );
    }
}
