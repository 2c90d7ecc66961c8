//! Rate limits (GCRA, with governor): per provider, per practice and per patient.
//!
//! Nothing here sleeps: a limiter either lets a message go or says how long until it may,
//! and the caller decides whether to wait, try another message or suppress this one.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{LimitsConfig, ProviderConfig};
use crate::domain::Rate;

/// The GCRA quota for `rate` with `burst` (at least 1) sent at once after a quiet spell.
pub fn quota(rate: Rate, burst: u32) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// Whether a limiter lets one more message go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go: the message has been counted.
    Go,
    /// Not before this long from now.
    Wait(Duration),
}

/// Every limiter of one gateway process, shared by its dispatch workers.
pub struct RateLimits {
    providers: HashMap<String, DefaultDirectRateLimiter>,
    practice: Option<DefaultKeyedRateLimiter<i64>>,
    patient: Option<(DefaultKeyedRateLimiter<i64>, Rate)>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limiters for the configured providers' rates and the practice and patient limits.
    pub fn from_config(providers: &[ProviderConfig], limits: &LimitsConfig) -> Self {
        let providers = providers
            .iter()
            .filter_map(|p| {
                let rate = p.rate?;
                // By default a provider may take one second's worth at once.
                let burst = p
                    .burst
                    .unwrap_or_else(|| rate.per_second().ceil().max(1.0) as u32);
                Some((p.name.clone(), RateLimiter::direct(quota(rate, burst))))
            })
            .collect();
        Self {
            providers,
            practice: limits
                .practice
                .map(|rate| RateLimiter::dashmap(quota(rate, limits.practice_burst))),
            patient: limits.patient_bulk.map(|rate| {
                (
                    RateLimiter::dashmap(quota(rate, limits.patient_burst)),
                    rate,
                )
            }),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one message to `provider` if its rate allows it now.
    pub fn provider(&self, provider: &str) -> Verdict {
        match self.providers.get(provider) {
            Some(limiter) => self.verdict(limiter.check()),
            None => Verdict::Go,
        }
    }

    /// Counts one broadcast message of `practice_id` if the practice's rate allows it now.
    pub fn practice(&self, practice_id: i64) -> Verdict {
        match &self.practice {
            Some(limiter) => self.verdict(limiter.check_key(&practice_id)),
            None => Verdict::Go,
        }
    }

    /// Counts one non-urgent message to `patient_id`; `Err` names the cap it would exceed.
    pub fn patient(&self, patient_id: i64) -> Result<(), Rate> {
        match &self.patient {
            Some((limiter, rate)) => limiter.check_key(&patient_id).map_err(|_| *rate),
            None => Ok(()),
        }
    }

    /// Forgets practices and patients whose limits are back to full, to bound memory.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.practice {
            l.retain_recent();
        }
        if let Some((l, _)) = &self.patient {
            l.retain_recent();
        }
    }

    fn verdict(
        &self,
        checked: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
    ) -> Verdict {
        match checked {
            Ok(()) => Verdict::Go,
            Err(not_until) => Verdict::Wait(
                not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_micros(100)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(practice: Option<&str>, patient: Option<&str>) -> LimitsConfig {
        LimitsConfig {
            practice: practice.map(|r| r.parse().unwrap()),
            practice_burst: 2,
            patient_bulk: patient.map(|r| r.parse().unwrap()),
            patient_burst: 2,
        }
    }

    #[test]
    fn practice_limit_counts_each_practice_apart() {
        let l = RateLimits::from_config(&[], &limits(Some("1/min"), None));
        assert_eq!(l.practice(1), Verdict::Go);
        assert_eq!(l.practice(1), Verdict::Go);
        match l.practice(1) {
            Verdict::Wait(d) => assert!(d > Duration::from_secs(50), "{d:?}"),
            Verdict::Go => panic!("a third message in a burst of two went"),
        }
        assert_eq!(l.practice(2), Verdict::Go, "another practice is not held");
    }

    #[test]
    fn patient_cap_refuses_beyond_the_burst_and_names_the_rate() {
        let l = RateLimits::from_config(&[], &limits(None, Some("2/day")));
        assert!(l.patient(9).is_ok());
        assert!(l.patient(9).is_ok());
        assert_eq!(l.patient(9).unwrap_err().to_string(), "2/day");
        assert!(l.patient(10).is_ok());
    }

    #[test]
    fn unconfigured_limits_always_let_messages_go() {
        let l = RateLimits::from_config(&[], &limits(None, None));
        for _ in 0..1000 {
            assert_eq!(l.provider("any"), Verdict::Go);
            assert_eq!(l.practice(1), Verdict::Go);
            assert!(l.patient(1).is_ok());
        }
    }
}
