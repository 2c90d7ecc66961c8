//! Failover: each provider's health (circuit breaker and Retry-After pause), and the choice
//! of provider for a channel: the first in config order that is in rotation.
//!
//! A pause a peer asks for is cut to `dispatch.max_peer_delay_seconds` and can never
//! overflow. The same [`Health`] is kept per push origin by [`super::origins`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::FailoverConfig;
use crate::domain::Channel;
use crate::providers::http::clamp_peer_delay;
use crate::providers::{Provider, ProviderRegistry, SendError};

/// The longest pause a peer can impose unless configured otherwise.
const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Where a provider's circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// In rotation.
    Closed,
    /// Cooled down: one probe message may go.
    HalfOpen,
    /// Out of rotation until the cool-down ends.
    Open,
}

/// The health of one peer (a provider, or a push service origin): failures in a row, the
/// circuit, and a pause it asked for.
#[derive(Debug, Default)]
pub(super) struct Health {
    failures_in_row: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    paused_until: Option<Instant>,
}

impl Health {
    /// Takes a place if the peer may be sent to at `now`, else says until when it may not.
    pub(super) fn admit(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.paused_until.filter(|u| *u > now) {
            return Err(until);
        }
        match self.open_until {
            Some(until) if until > now => Err(until),
            Some(_) if self.probe_in_flight => Err(now + Duration::from_millis(50)),
            Some(_) => {
                self.probe_in_flight = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Takes in how one send ended at `now` (`None`: accepted); returns the state it leaves.
    /// A pause asked for is cut to `max_pause`.
    pub(super) fn record(
        &mut self,
        settings: &FailoverConfig,
        max_pause: Duration,
        error: Option<&SendError>,
        now: Instant,
    ) -> CircuitState {
        let cool_down = Duration::from_secs(settings.cool_down_seconds);
        let was_probe = std::mem::take(&mut self.probe_in_flight);
        match error {
            // The peer answered: a message-specific refusal says nothing of its health.
            None | Some(SendError::Permanent { .. }) | Some(SendError::BadRecipient { .. }) => {
                self.failures_in_row = 0;
                self.open_until = None;
            }
            Some(SendError::Retryable {
                retry_after: Some(after),
                ..
            }) => {
                // Busy, not broken: nothing goes to it until the time it named (within reason).
                let wait = clamp_peer_delay(*after, max_pause);
                let until = now.checked_add(wait).unwrap_or(now);
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
                if was_probe {
                    self.open_until = Some(until);
                }
            }
            Some(SendError::Retryable { .. }) => {
                self.failures_in_row = self.failures_in_row.saturating_add(1);
                if was_probe || self.failures_in_row >= settings.failures {
                    self.open_until = Some(now.checked_add(cool_down).unwrap_or(now));
                }
            }
        }
        self.state(now)
    }

    /// The state as of `now`.
    pub(super) fn state(&self, now: Instant) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(until) if until > now => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// Until when it is paused or its circuit open, if either is so at `now`.
    pub(super) fn out_until(&self, now: Instant) -> Option<Instant> {
        let paused = self.paused_until.filter(|u| *u > now);
        let open = self.open_until.filter(|u| *u > now);
        paused.max(open)
    }

    /// Whether nothing is remembered that still matters at `now` (safe to forget).
    pub(super) fn is_clear(&self, now: Instant) -> bool {
        self.failures_in_row == 0
            && self.open_until.is_none()
            && !self.probe_in_flight
            && self.paused_until.is_none_or(|u| u <= now)
    }

    /// Gives back a place taken by `admit` when the peer was not called after all.
    pub(super) fn unused(&mut self) {
        self.probe_in_flight = false;
    }
}

/// One provider with its health.
pub struct Circuit {
    provider: Arc<dyn Provider>,
    health: Mutex<Health>,
    settings: FailoverConfig,
    max_pause: Duration,
}

impl Circuit {
    /// A closed circuit for `provider`.
    pub fn new(provider: Arc<dyn Provider>, settings: FailoverConfig) -> Self {
        Self::with_max_pause(provider, settings, DEFAULT_MAX_PAUSE)
    }

    /// A closed circuit whose pauses last at most `max_pause`, whatever the provider asks.
    pub fn with_max_pause(
        provider: Arc<dyn Provider>,
        settings: FailoverConfig,
        max_pause: Duration,
    ) -> Self {
        Self {
            provider,
            health: Mutex::new(Health::default()),
            settings,
            max_pause,
        }
    }

    /// The provider behind it.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave the counters inconsistent.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place if the provider may be sent to at `now`, else says until when it may not.
    fn admit(&self, now: Instant) -> Result<(), Instant> {
        self.lock().admit(now)
    }

    /// Takes in how one send ended at `now` (`None`: accepted); returns the state it leaves.
    pub fn record(&self, error: Option<&SendError>, now: Instant) -> CircuitState {
        self.lock()
            .record(&self.settings, self.max_pause, error, now)
    }

    /// Gives back a place taken by `choose` when the provider was not called after all.
    pub fn unused(&self) {
        self.lock().unused();
    }

    /// The state as of `now`.
    pub fn state(&self, now: Instant) -> CircuitState {
        self.lock().state(now)
    }

    /// Whether it is paused or its circuit open at `now`.
    fn out(&self, now: Instant) -> bool {
        self.lock().out_until(now).is_some()
    }
}

/// Every channel's providers in order of preference, each with its circuit.
pub struct Rotation {
    channels: Vec<(Channel, Vec<Arc<Circuit>>)>,
}

impl Rotation {
    /// Circuits for every provider in the registry.
    pub fn new(registry: &ProviderRegistry, settings: &FailoverConfig) -> Self {
        Self::with_max_pause(registry, settings, DEFAULT_MAX_PAUSE)
    }

    /// Circuits for every provider in the registry, each paused at most `max_pause` at once.
    pub fn with_max_pause(
        registry: &ProviderRegistry,
        settings: &FailoverConfig,
        max_pause: Duration,
    ) -> Self {
        let channels = Channel::ALL
            .iter()
            .map(|c| {
                let circuits = registry
                    .for_channel(*c)
                    .iter()
                    .map(|p| {
                        Arc::new(Circuit::with_max_pause(
                            p.clone(),
                            settings.clone(),
                            max_pause,
                        ))
                    })
                    .collect();
                (*c, circuits)
            })
            .collect();
        Self { channels }
    }

    /// The circuits of one channel, in order of preference.
    pub fn circuits(&self, channel: Channel) -> &[Arc<Circuit>] {
        self.channels
            .iter()
            .find(|(c, _)| *c == channel)
            .map_or(&[], |(_, circuits)| circuits.as_slice())
    }

    /// Whether `channel` has providers and every one of them is paused or open at `now`:
    /// its messages cannot go, so it claims no share of the concurrency slots.
    pub fn all_out(&self, channel: Channel, now: Instant) -> bool {
        let circuits = self.circuits(channel);
        !circuits.is_empty() && circuits.iter().all(|c| c.out(now))
    }

    /// The first provider of `channel` in rotation at `now` (its place taken), or, when none
    /// is, the earliest moment one may be; `None` if the channel has no provider at all.
    pub fn choose(&self, channel: Channel, now: Instant) -> Option<Result<Arc<Circuit>, Instant>> {
        let circuits = self.circuits(channel);
        let mut earliest: Option<Instant> = None;
        for circuit in circuits {
            match circuit.admit(now) {
                Ok(()) => return Some(Ok(circuit.clone())),
                Err(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
            }
        }
        earliest.map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Accepted, Outgoing};

    struct Named(&'static str);

    #[async_trait::async_trait]
    impl Provider for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn channel(&self) -> Channel {
            Channel::Sms
        }
        async fn send(&self, _: &Outgoing) -> Result<Accepted, SendError> {
            Ok(Accepted { provider_ref: None })
        }
    }

    fn rotation(failures: u32) -> Rotation {
        let mut registry = ProviderRegistry::default();
        registry.add(Arc::new(Named("first")));
        registry.add(Arc::new(Named("second")));
        Rotation::new(
            &registry,
            &FailoverConfig {
                failures,
                cool_down_seconds: 10,
            },
        )
    }

    fn down() -> SendError {
        SendError::Retryable {
            reason: "503".into(),
            retry_after: None,
        }
    }

    fn chosen(r: &Rotation, now: Instant) -> &'static str {
        match r.choose(Channel::Sms, now) {
            Some(Ok(c)) if c.provider().name() == "first" => "first",
            Some(Ok(_)) => "second",
            _ => "none",
        }
    }

    #[test]
    fn repeated_failures_move_traffic_to_the_next_provider_until_a_probe_succeeds() {
        let r = rotation(3);
        let t0 = Instant::now();
        let first = r.circuits(Channel::Sms)[0].clone();
        for _ in 0..2 {
            assert_eq!(first.record(Some(&down()), t0), CircuitState::Closed);
        }
        assert_eq!(chosen(&r, t0), "first");
        assert_eq!(first.record(Some(&down()), t0), CircuitState::Open);
        assert_eq!(chosen(&r, t0), "second");
        assert_eq!(chosen(&r, t0 + Duration::from_secs(9)), "second");
        // Cooled down: one probe goes to the first, the rest to the second meanwhile.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(first.state(later), CircuitState::HalfOpen);
        assert_eq!(chosen(&r, later), "first");
        assert_eq!(chosen(&r, later), "second");
        // A failed probe opens it again; a good one closes it.
        assert_eq!(first.record(Some(&down()), later), CircuitState::Open);
        assert_eq!(chosen(&r, later + Duration::from_secs(1)), "second");
        let again = later + Duration::from_secs(11);
        assert_eq!(chosen(&r, again), "first");
        assert_eq!(first.record(None, again), CircuitState::Closed);
        assert_eq!(chosen(&r, again), "first");
    }

    #[test]
    fn retry_after_pauses_the_provider_without_counting_a_failure() {
        let r = rotation(1);
        let t0 = Instant::now();
        let first = r.circuits(Channel::Sms)[0].clone();
        let busy = SendError::Retryable {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(first.record(Some(&busy), t0), CircuitState::Closed);
        assert_eq!(chosen(&r, t0 + Duration::from_millis(1999)), "second");
        assert_eq!(chosen(&r, t0 + Duration::from_secs(2)), "first");
    }

    #[test]
    fn an_absurd_retry_after_pauses_for_the_cap_without_overflowing() {
        let t0 = Instant::now();
        for seconds in [u64::MAX, 1_000_000_000] {
            let r = rotation(1);
            let first = r.circuits(Channel::Sms)[0].clone();
            let busy = SendError::Retryable {
                reason: "429".into(),
                retry_after: Some(Duration::from_secs(seconds)),
            };
            assert_eq!(first.record(Some(&busy), t0), CircuitState::Closed);
            let cap = DEFAULT_MAX_PAUSE;
            assert_eq!(chosen(&r, t0 + cap - Duration::from_secs(1)), "second");
            assert_eq!(chosen(&r, t0 + cap), "first", "Retry-After: {seconds}");
        }
    }

    #[test]
    fn a_channel_whose_providers_are_all_out_says_when_to_come_back() {
        let r = rotation(1);
        let t0 = Instant::now();
        for c in r.circuits(Channel::Sms) {
            c.record(Some(&down()), t0);
        }
        assert!(r.all_out(Channel::Sms, t0));
        assert!(!r.all_out(Channel::Sms, t0 + Duration::from_secs(10)));
        assert!(
            !r.all_out(Channel::Email, t0),
            "no providers: nothing to be out"
        );
        match r.choose(Channel::Sms, t0) {
            Some(Err(until)) => assert_eq!(until, t0 + Duration::from_secs(10)),
            _ => panic!("expected a time to come back"),
        }
        assert!(r.choose(Channel::Email, t0).is_none());
    }
}
