//! Rate limits (GCRA, with governor): per provider and per practice, each instance taking
//! its share when several run; the per-patient cap is kept in the database.
//!
//! Nothing here sleeps: a limiter either lets a message go or says how long until it may,
//! and the caller decides whether to wait, try another message or suppress this one.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{LimitsConfig, ProviderConfig};
use crate::domain::{PracticeId, Rate};

/// Whether a limiter lets one more message go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go: the message has been counted.
    Go,
    /// Not before this long from now.
    Wait(Duration),
}

/// The limiters of one share: the configured rates divided among `instances`.
struct Shares {
    instances: u32,
    providers: HashMap<String, DefaultDirectRateLimiter>,
    practice: Option<(DefaultKeyedRateLimiter<PracticeId>, NonZeroU32)>,
    /// After a re-share, the practices that have started on the new limiter; a practice
    /// starts with its burst spent, as the provider limiters do. `None` at first start.
    practices_started: Option<Mutex<HashSet<PracticeId>>>,
}

/// Every limiter of one gateway process, shared by its dispatch workers. With several
/// instances each takes `1/N` of every provider's rate and burst (at least one) and of the
/// practice limit, `N` being the live dispatching instances.
pub struct RateLimits {
    providers: Vec<(String, Rate, u32)>,
    /// Whether some provider has no rate of its own (then no rate bounds what is held).
    unrated: bool,
    practice: Option<(Rate, u32)>,
    patient: Option<(Rate, u32)>,
    shares: RwLock<Arc<Shares>>,
    /// Nothing goes until this instant (nanoseconds after `epoch`; 0: not held).
    held_until: AtomicU64,
    epoch: Instant,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limiters for the configured providers' rates and the practice and patient limits.
    pub fn from_config(providers: &[ProviderConfig], limits: &LimitsConfig) -> Self {
        let unrated = providers.iter().any(|p| p.rate.is_none());
        let providers = providers
            .iter()
            .filter_map(|p| {
                let rate = p.rate?;
                // By default a provider may take one second's worth at once.
                let burst = p
                    .burst
                    .unwrap_or_else(|| rate.per_second().ceil().max(1.0) as u32);
                Some((p.name.clone(), rate, burst))
            })
            .collect();
        let mut this = Self {
            providers,
            unrated,
            practice: limits.practice.map(|rate| (rate, limits.practice_burst)),
            patient: limits.patient_bulk.map(|rate| (rate, limits.patient_burst)),
            shares: RwLock::new(Arc::new(Shares {
                instances: 1,
                providers: HashMap::new(),
                practice: None,
                practices_started: None,
            })),
            held_until: AtomicU64::new(0),
            epoch: Instant::now(),
            clock: DefaultClock::default(),
        };
        let first = this.shares_for(1, false);
        // A starting process cannot know what the provider took in the last second (from
        // another instance, or from this one before a restart), so its provider limiters
        // start with their burst spent: a restart or a join never adds a burst.
        for (name, rate, burst) in &this.providers {
            if let Some(limiter) = first.providers.get(name) {
                let _ = limiter.check_n(share(*rate, *burst, 1).1);
            }
        }
        this.shares = RwLock::new(Arc::new(first));
        this
    }

    /// Limiters for `instances` sharing the configured rates. `spent`: each starts with its
    /// burst used up, so that swapping limiters cannot let an extra burst through.
    fn shares_for(&self, instances: u32, spent: bool) -> Shares {
        let n = instances.max(1);
        let providers = self
            .providers
            .iter()
            .map(|(name, rate, burst)| {
                let (quota, burst) = share(*rate, *burst, n);
                let limiter = RateLimiter::direct(quota);
                if spent {
                    let _ = limiter.check_n(burst);
                }
                (name.clone(), limiter)
            })
            .collect();
        let practice = self.practice.map(|(rate, burst)| {
            let (quota, burst) = share(rate, burst, n);
            (RateLimiter::dashmap(quota), burst)
        });
        Shares {
            instances: n,
            providers,
            practice,
            practices_started: spent.then(Mutex::default),
        }
    }

    /// Divides the rates among `instances` live dispatching instances (this one included),
    /// if that is not already so. Returns whether the shares changed.
    pub fn reshare(&self, instances: u32) -> bool {
        let instances = instances.max(1);
        if self.current().instances == instances {
            return false;
        }
        let fresh = Arc::new(self.shares_for(instances, true));
        *self.shares.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        true
    }

    /// This instance's share of every provider's rate together, in messages per second;
    /// `None` if some provider has no rate (or none is configured).
    pub fn share_per_second(&self) -> Option<f64> {
        if self.unrated || self.providers.is_empty() {
            return None;
        }
        let total: f64 = self.providers.iter().map(|(_, r, _)| r.per_second()).sum();
        Some(total / f64::from(self.instances().max(1)))
    }

    /// How many instances the rates are divided among now.
    pub fn instances(&self) -> u32 {
        self.current().instances
    }

    /// Holds every send until `until` (or releases the hold with `None`): a joining instance
    /// waits for the others to shrink their shares, and one that may have been taken for dead
    /// stops until it has rejoined.
    pub fn hold(&self, until: Option<Instant>) {
        let nanos = until.map_or(0, |u| {
            u.saturating_duration_since(self.epoch).as_nanos().max(1) as u64
        });
        self.held_until.store(nanos, Ordering::SeqCst);
    }

    /// How long sends are still held, if they are.
    fn held(&self) -> Option<Duration> {
        let nanos = self.held_until.load(Ordering::SeqCst);
        if nanos == 0 {
            return None;
        }
        let until = self.epoch + Duration::from_nanos(nanos);
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn current(&self) -> Arc<Shares> {
        self.shares
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts one message to `provider` if its share of the rate allows it now.
    pub fn provider(&self, provider: &str) -> Verdict {
        if let Some(left) = self.held() {
            return Verdict::Wait(left.min(Duration::from_millis(250)));
        }
        match self.current().providers.get(provider) {
            Some(limiter) => self.verdict(limiter.check()),
            None => Verdict::Go,
        }
    }

    /// Counts one broadcast message of `practice_id` if the practice's rate allows it now.
    pub fn practice(&self, practice_id: PracticeId) -> Verdict {
        let shares = self.current();
        let Some((limiter, burst)) = &shares.practice else {
            return Verdict::Go;
        };
        if let Some(started) = &shares.practices_started {
            let first = started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(practice_id);
            if first {
                let _ = limiter.check_key_n(&practice_id, *burst);
            }
        }
        self.verdict(limiter.check_key(&practice_id))
    }

    /// The cap on non-urgent messages per patient and its burst, if there is one (counted
    /// in the database: see `store::ClusterStore::take_patient_quota`).
    pub fn patient_cap(&self) -> Option<(Rate, u32)> {
        self.patient
    }

    /// Forgets practices whose limits are back to full, to bound memory.
    pub fn forget_idle(&self) {
        if let Some((l, _)) = &self.current().practice {
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

/// One of `instances` shares of `rate` with `burst`: the interval `instances` times as long,
/// the burst divided (at least one). Returns the quota and the share's burst.
fn share(rate: Rate, burst: u32, instances: u32) -> (Quota, NonZeroU32) {
    let burst = (burst / instances).max(1);
    let interval = rate.interval().saturating_mul(instances);
    let quota = Quota::with_period(interval.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    (quota, NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
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
        assert_eq!(l.practice(PracticeId::new(1)), Verdict::Go);
        assert_eq!(l.practice(PracticeId::new(1)), Verdict::Go);
        match l.practice(PracticeId::new(1)) {
            Verdict::Wait(d) => assert!(d > Duration::from_secs(50), "{d:?}"),
            Verdict::Go => panic!("a third message in a burst of two went"),
        }
        assert_eq!(
            l.practice(PracticeId::new(2)),
            Verdict::Go,
            "another practice is not held"
        );
    }

    fn provider(rate: &str, burst: u32) -> ProviderConfig {
        ProviderConfig {
            name: "p".into(),
            kind: "log".into(),
            channel: crate::domain::Channel::Sms,
            rate: Some(rate.parse().unwrap()),
            burst: Some(burst),
            price_pence: None,
            settings: Default::default(),
        }
    }

    /// How many of `tries` checks, 1 ms apart, a provider limiter lets go.
    fn goes(l: &RateLimits, tries: usize) -> usize {
        (0..tries)
            .filter(|_| {
                std::thread::sleep(Duration::from_millis(1));
                l.provider("p") == Verdict::Go
            })
            .count()
    }

    #[test]
    fn a_share_divides_rate_and_burst_and_starts_spent() {
        let l = RateLimits::from_config(&[provider("10/s", 9)], &limits(None, None));
        assert_eq!(l.instances(), 1);
        assert_eq!(goes(&l, 9), 0, "no burst at first start");
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(goes(&l, 9), 9, "the burst refills at the rate");
        assert!(l.reshare(3));
        assert!(!l.reshare(3), "the same share again changes nothing");
        // A third of the rate: one every 300 ms, and the new burst (3) already spent.
        assert_eq!(goes(&l, 20), 0, "no extra burst after a re-share");
        std::thread::sleep(Duration::from_millis(320));
        assert_eq!(goes(&l, 5), 1);
        // A share is at least one message at once, however many instances.
        assert!(l.reshare(20));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(goes(&l, 5), 1);
    }

    #[test]
    fn a_hold_stops_every_provider_until_it_ends() {
        let l = RateLimits::from_config(&[provider("1000/s", 100)], &limits(None, None));
        l.hold(Some(Instant::now() + Duration::from_millis(100)));
        assert!(matches!(l.provider("p"), Verdict::Wait(_)));
        assert!(matches!(l.provider("unlimited"), Verdict::Wait(_)));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(l.provider("p"), Verdict::Go);
        l.hold(Some(Instant::now() + Duration::from_secs(60)));
        l.hold(None);
        assert_eq!(l.provider("p"), Verdict::Go);
    }

    #[test]
    fn practices_start_a_re_share_with_their_burst_spent() {
        let l = RateLimits::from_config(&[], &limits(Some("2/s"), None));
        assert_eq!(l.practice(PracticeId::new(1)), Verdict::Go);
        assert_eq!(l.practice(PracticeId::new(1)), Verdict::Go);
        l.reshare(2);
        // One a second each now; practice 2 was never seen but starts spent too.
        assert!(matches!(l.practice(PracticeId::new(2)), Verdict::Wait(_)));
        assert!(matches!(l.practice(PracticeId::new(1)), Verdict::Wait(_)));
    }

    #[test]
    fn unconfigured_limits_always_let_messages_go() {
        let l = RateLimits::from_config(&[], &limits(None, None));
        for _ in 0..1000 {
            assert_eq!(l.provider("any"), Verdict::Go);
            assert_eq!(l.practice(PracticeId::new(1)), Verdict::Go);
        }
    }
}
