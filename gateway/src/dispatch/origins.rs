//! Health per push service: for a provider that reaches many independent services (web
//! push, see [`Provider::origin`]), pauses (Retry-After) and circuits are kept per origin
//! (`scheme://host:port`) instead of for the whole provider. One endpoint, such as an
//! anonymous follower's, can then pause or trip only its own origin: messages for other push
//! services go on, and messages for a paused origin are given back to the outbox, due when
//! it may be tried again, instead of waiting in memory.
//!
//! Only origins with something to remember are kept, at most [`MAX_ORIGINS`] of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::failover::{Circuit, CircuitState, Health};
use super::Dispatcher;
use crate::config::FailoverConfig;
use crate::providers::{Provider, SendError};
use crate::store::ClaimedMessage;
use crate::telemetry::metrics::Outcome;

/// Most origins remembered at once; beyond this a new failing origin is not tracked (its
/// messages still back off one by one through the retry schedule).
pub const MAX_ORIGINS: usize = 10_000;

/// A push service origin that may not be sent to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedOrigin {
    /// The provider reaching it.
    pub provider: String,
    /// `scheme://host:port`.
    pub origin: String,
    /// How long until it may be tried again.
    pub left: Duration,
}

/// The health of each origin with something to remember, by (provider, origin).
pub struct Origins {
    settings: FailoverConfig,
    max_pause: Duration,
    health: Mutex<HashMap<(String, String), Health>>,
}

impl Origins {
    /// No origin known yet; pauses last at most `max_pause`.
    pub fn new(settings: FailoverConfig, max_pause: Duration) -> Self {
        Self {
            settings,
            max_pause,
            health: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Health>> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place if `origin` may be sent to at `now`, else says until when it may not.
    pub fn admit(&self, provider: &str, origin: &str, now: Instant) -> Result<(), Instant> {
        let mut known = self.lock();
        match known.get_mut(&(provider.to_string(), origin.to_string())) {
            Some(health) => health.admit(now),
            None => Ok(()),
        }
    }

    /// Takes in how one send to `origin` ended; returns the state of its circuit.
    pub fn record(
        &self,
        provider: &str,
        origin: &str,
        error: Option<&SendError>,
        now: Instant,
    ) -> CircuitState {
        let key = (provider.to_string(), origin.to_string());
        let mut known = self.lock();
        if !known.contains_key(&key) {
            if !matches!(error, Some(SendError::Retryable { .. })) {
                // Nothing to remember about a healthy origin.
                return CircuitState::Closed;
            }
            if known.len() >= MAX_ORIGINS {
                known.retain(|_, h| !h.is_clear(now));
            }
            if known.len() >= MAX_ORIGINS {
                tracing::warn!(provider, origin, "too many failing push origins to track");
                return CircuitState::Closed;
            }
        }
        let health = known.entry(key.clone()).or_default();
        let state = health.record(&self.settings, self.max_pause, error, now);
        if health.is_clear(now) {
            known.remove(&key);
        }
        state
    }

    /// Gives back a place taken by `admit` when the origin was not called after all.
    pub fn unused(&self, provider: &str, origin: &str) {
        if let Some(h) = self
            .lock()
            .get_mut(&(provider.to_string(), origin.to_string()))
        {
            h.unused();
        }
    }

    /// The origins paused or with their circuit open at `now`, longest wait first.
    pub fn paused(&self, now: Instant) -> Vec<PausedOrigin> {
        let mut paused: Vec<PausedOrigin> = self
            .lock()
            .iter()
            .filter_map(|((provider, origin), h)| {
                let until = h.out_until(now)?;
                Some(PausedOrigin {
                    provider: provider.clone(),
                    origin: origin.clone(),
                    left: until.saturating_duration_since(now),
                })
            })
            .collect();
        paused.sort_by(|a, b| b.left.cmp(&a.left).then(a.origin.cmp(&b.origin)));
        paused
    }
}

impl Dispatcher {
    /// If the push service `message` goes to through `circuit` is paused or its circuit
    /// open, gives the message back to the outbox (no attempt counted), due when the service
    /// may be tried again, and returns true. Otherwise its place is taken: the outcome must
    /// then go to [`Dispatcher::record_health`].
    pub(super) async fn held_by_origin(&self, message: &ClaimedMessage, circuit: &Circuit) -> bool {
        let provider = circuit.provider();
        let Some(origin) = provider.origin(&message.address) else {
            return false;
        };
        let now = Instant::now();
        let Err(until) = self.control.origins.admit(provider.name(), &origin, now) else {
            return false;
        };
        // The provider's own place, taken when it was chosen, is not used.
        circuit.unused();
        let wait = until
            .saturating_duration_since(now)
            .min(crate::config::PEER_DELAY_CEILING);
        let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        tracing::debug!(
            message = message.id.get(),
            origin,
            ?wait,
            "push service paused; message put back"
        );
        match self
            .store
            .defer(&self.owner, &[(message.id, due)], Utc::now())
            .await
        {
            Ok(_) => self.metrics.message_outcome(
                message.channel,
                Some(provider.name()),
                Outcome::Deferred,
            ),
            // The lease runs out and the message is claimed again later.
            Err(e) => {
                tracing::warn!(message = message.id.get(), error = %e, "could not put a message back")
            }
        }
        true
    }

    /// Takes in how a send through `circuit` to `address` ended: against the push service's
    /// origin if the provider has origins (a failing or busy push service says nothing of
    /// the others), else against the provider. Returns the provider's circuit state.
    pub(super) fn record_health(
        &self,
        circuit: &Circuit,
        address: &str,
        error: Option<&SendError>,
    ) -> CircuitState {
        let provider: &dyn Provider = circuit.provider().as_ref();
        let now = Instant::now();
        match provider.origin(address) {
            Some(origin) => {
                circuit.unused();
                self.control
                    .origins
                    .record(provider.name(), &origin, error, now);
                circuit.state(now)
            }
            None => circuit.record(error, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Origins {
        Origins::new(
            FailoverConfig {
                failures: 2,
                cool_down_seconds: 10,
            },
            Duration::from_secs(3600),
        )
    }

    fn busy(seconds: u64) -> SendError {
        SendError::Retryable {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(seconds)),
        }
    }

    fn down() -> SendError {
        SendError::Retryable {
            reason: "could not connect".into(),
            retry_after: None,
        }
    }

    const A: &str = "https://a.push.example";
    const B: &str = "https://b.push.example";

    #[test]
    fn one_origin_pauses_only_itself_and_for_at_most_the_cap() {
        let o = origins();
        let t0 = Instant::now();
        o.record("push", A, Some(&busy(u64::MAX)), t0);
        assert_eq!(o.admit("push", A, t0), Err(t0 + Duration::from_secs(3600)));
        assert_eq!(o.admit("push", B, t0), Ok(()));
        assert_eq!(o.admit("other", A, t0), Ok(()), "per provider too");
        assert!(o.admit("push", A, t0 + Duration::from_secs(3600)).is_ok());
        let paused = o.paused(t0);
        assert_eq!(paused.len(), 1);
        assert_eq!(paused[0].origin, A);
        assert_eq!(paused[0].left, Duration::from_secs(3600));
        assert!(o.paused(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn failures_open_one_origin_and_a_good_probe_closes_it() {
        let o = origins();
        let t0 = Instant::now();
        assert_eq!(o.record("push", A, Some(&down()), t0), CircuitState::Closed);
        assert_eq!(o.record("push", A, Some(&down()), t0), CircuitState::Open);
        assert!(o.admit("push", A, t0).is_err());
        assert!(o.admit("push", B, t0).is_ok());
        let later = t0 + Duration::from_secs(10);
        assert!(o.admit("push", A, later).is_ok(), "one probe");
        assert!(o.admit("push", A, later).is_err(), "only one");
        assert_eq!(o.record("push", A, None, later), CircuitState::Closed);
        assert!(o.lock().is_empty(), "a healthy origin is forgotten");
    }

    #[test]
    fn healthy_origins_take_no_memory_and_failing_ones_are_bounded() {
        let o = origins();
        let t0 = Instant::now();
        for i in 0..100 {
            o.record("push", &format!("https://{i}.example"), None, t0);
        }
        assert!(o.lock().is_empty());
        for i in 0..MAX_ORIGINS + 10 {
            o.record("push", &format!("https://{i}.example"), Some(&down()), t0);
        }
        assert_eq!(o.lock().len(), MAX_ORIGINS);
    }
}
