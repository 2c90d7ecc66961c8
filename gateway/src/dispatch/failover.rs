//! Failover: each provider's health (circuit breaker and Retry-After pause), and the choice
//! of provider for a channel: the first in config order that is in rotation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::FailoverConfig;
use crate::domain::Channel;
use crate::providers::{Provider, ProviderRegistry, SendError};

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

#[derive(Debug, Default)]
struct Health {
    failures_in_row: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    paused_until: Option<Instant>,
}

/// One provider with its health.
pub struct Circuit {
    provider: Arc<dyn Provider>,
    health: Mutex<Health>,
    settings: FailoverConfig,
}

impl Circuit {
    /// A closed circuit for `provider`.
    pub fn new(provider: Arc<dyn Provider>, settings: FailoverConfig) -> Self {
        Self {
            provider,
            health: Mutex::new(Health::default()),
            settings,
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
        let mut h = self.lock();
        if let Some(until) = h.paused_until.filter(|u| *u > now) {
            return Err(until);
        }
        match h.open_until {
            Some(until) if until > now => Err(until),
            Some(_) if h.probe_in_flight => Err(now + Duration::from_millis(50)),
            Some(_) => {
                h.probe_in_flight = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Takes in how one send ended at `now` (`None`: accepted); returns the state it leaves.
    pub fn record(&self, error: Option<&SendError>, now: Instant) -> CircuitState {
        let cool_down = Duration::from_secs(self.settings.cool_down_seconds);
        let mut h = self.lock();
        let was_probe = std::mem::take(&mut h.probe_in_flight);
        match error {
            // The provider answered: a message-specific refusal says nothing of its health.
            None | Some(SendError::Permanent { .. }) | Some(SendError::BadRecipient { .. }) => {
                h.failures_in_row = 0;
                h.open_until = None;
            }
            Some(SendError::Retryable {
                retry_after: Some(after),
                ..
            }) => {
                // Busy, not broken: nothing goes to it until the time it named.
                let until = now + *after;
                h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
                if was_probe {
                    h.open_until = Some(until);
                }
            }
            Some(SendError::Retryable { .. }) => {
                h.failures_in_row = h.failures_in_row.saturating_add(1);
                if was_probe || h.failures_in_row >= self.settings.failures {
                    h.open_until = Some(now + cool_down);
                }
            }
        }
        state_of(&h, now)
    }

    /// Gives back a place taken by `choose` when the provider was not called after all.
    pub fn unused(&self) {
        self.lock().probe_in_flight = false;
    }

    /// The state as of `now`.
    pub fn state(&self, now: Instant) -> CircuitState {
        state_of(&self.lock(), now)
    }
}

fn state_of(h: &Health, now: Instant) -> CircuitState {
    match h.open_until {
        None => CircuitState::Closed,
        Some(until) if until > now => CircuitState::Open,
        Some(_) => CircuitState::HalfOpen,
    }
}

/// Every channel's providers in order of preference, each with its circuit.
pub struct Rotation {
    channels: Vec<(Channel, Vec<Arc<Circuit>>)>,
}

impl Rotation {
    /// Circuits for every provider in the registry.
    pub fn new(registry: &ProviderRegistry, settings: &FailoverConfig) -> Self {
        let channels = Channel::ALL
            .iter()
            .map(|c| {
                let circuits = registry
                    .for_channel(*c)
                    .iter()
                    .map(|p| Arc::new(Circuit::new(p.clone(), settings.clone())))
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
    fn a_channel_whose_providers_are_all_out_says_when_to_come_back() {
        let r = rotation(1);
        let t0 = Instant::now();
        for c in r.circuits(Channel::Sms) {
            c.record(Some(&down()), t0);
        }
        match r.choose(Channel::Sms, t0) {
            Some(Err(until)) => assert_eq!(until, t0 + Duration::from_secs(10)),
            _ => panic!("expected a time to come back"),
        }
        assert!(r.choose(Channel::Email, t0).is_none());
    }
}
