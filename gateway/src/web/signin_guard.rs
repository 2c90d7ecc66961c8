//! Guarding console sign-in against floods and guessing.
//!
//! * **Throttle**: failed sign-ins are counted per user name and per client address. After
//!   `free_failures` failures for a name (or `address_failures` from an address) further
//!   attempts are refused at once, without checking the password, for `lock_seconds`; each
//!   failure after that doubles the lock, up to `max_lock_seconds`. Counts are forgotten
//!   after `max_lock_seconds` without a failure; a correct sign-in clears its name's count.
//! * **Hashing limit**: Argon2 runs on the blocking pool, at most `hash_concurrency` at once;
//!   when `hash_queue` callers already wait for a turn, the next is refused at once (503), so
//!   a flood of sign-ins can neither stall the async runtime nor pile up.
//!
//! The state is per process (each instance of a cluster counts its own).

use std::collections::HashMap;
use std::net::IpAddr;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, TryAcquireError};

use crate::config::SigninConfig;

/// Who failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user name as typed (trimmed, lower case, at most 64 characters).
    User(String),
    /// A client address.
    Address(IpAddr),
}

impl Subject {
    /// The user name as counted.
    pub fn user(name: &str) -> Self {
        Subject::User(name.trim().to_lowercase().chars().take(64).collect())
    }

    /// How the audit log names it.
    pub fn audit_subject(&self) -> String {
        match self {
            Subject::User(name) => format!("user:{name}"),
            Subject::Address(ip) => format!("address:{ip}"),
        }
    }
}

/// A lock that has just started, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// Who is locked.
    pub subject: Subject,
    /// Failures counted so far.
    pub failures: u32,
    /// For how long.
    pub seconds: u64,
}

/// Why a sign-in was not even checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: locked for this long still.
    Locked(Duration),
    /// Too many password checks waiting.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The throttle and the hashing limit of one process.
pub struct SigninGuard {
    config: SigninConfig,
    counts: Mutex<HashMap<Subject, Count>>,
    hashing: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl SigninGuard {
    /// A guard with these settings.
    pub fn new(config: SigninConfig) -> Self {
        let permits = config.hash_concurrency.max(1);
        Self {
            config,
            counts: Mutex::new(HashMap::new()),
            hashing: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SigninConfig {
        &self.config
    }

    /// The longest remaining lock of these subjects, if any is locked at `now`.
    pub fn locked(&self, subjects: &[Subject], now: Instant) -> Option<Duration> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        subjects
            .iter()
            .filter_map(|s| counts.get(s)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failed sign-in against each subject; returns the locks that start now.
    pub fn failed(&self, subjects: &[Subject], now: Instant) -> Vec<Locked> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let forget = Duration::from_secs(self.config.max_lock_seconds.max(1));
        if counts.len() >= self.config.max_tracked {
            counts.retain(|_, c| c.locked_until.is_some_and(|u| u > now));
            if counts.len() >= self.config.max_tracked {
                counts.clear();
            }
        }
        let mut started = Vec::new();
        for subject in subjects {
            let count = counts.entry(subject.clone()).or_insert(Count {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if now.saturating_duration_since(count.last_failure) > forget {
                count.failures = 0;
            }
            count.failures = count.failures.saturating_add(1);
            count.last_failure = now;
            let free = match subject {
                Subject::User(_) => self.config.free_failures,
                Subject::Address(_) => self.config.address_failures,
            };
            if count.failures >= free.max(1) {
                let seconds = lock_for(
                    count.failures - free.max(1),
                    self.config.lock_seconds,
                    self.config.max_lock_seconds,
                );
                count.locked_until = Some(now + Duration::from_secs(seconds));
                started.push(Locked {
                    subject: subject.clone(),
                    failures: count.failures,
                    seconds,
                });
            }
        }
        started
    }

    /// A correct sign-in: the name's count is cleared (the address's is not, so that one
    /// account's owner cannot clear an address that guesses others' passwords).
    pub fn succeeded(&self, user: &Subject) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.remove(user);
    }

    /// Runs `check` (a password verification) on the blocking pool once a hashing turn is
    /// free, or refuses at once when too many already wait.
    pub async fn hash<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let permit = match self.hashing.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Refusal::Busy),
            Err(TryAcquireError::NoPermits) => {
                // Counted while waiting, also if the request is dropped meanwhile.
                let waiting = Waiting::enter(&self.waiting);
                if waiting.ahead >= self.config.hash_queue {
                    return Err(Refusal::Busy);
                }
                let permit = self.hashing.clone().acquire_owned().await;
                drop(waiting);
                permit.map_err(|_| Refusal::Busy)?
            }
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = check();
            drop(permit);
            outcome
        })
        .await;
        outcome.map_err(|_| Refusal::Busy)
    }
}

/// One caller waiting for a hashing turn, counted until dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Seconds locked after `beyond` failures past the free ones: `first`, doubled each time, at
/// most `longest`.
pub fn lock_for(beyond: u32, first: u64, longest: u64) -> u64 {
    let doubled = first.saturating_mul(1u64.checked_shl(beyond.min(63)).unwrap_or(u64::MAX));
    doubled.min(longest).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> SigninGuard {
        SigninGuard::new(SigninConfig::default())
    }

    #[test]
    fn locks_double_and_stop_at_the_longest() {
        assert_eq!(lock_for(0, 60, 900), 60);
        assert_eq!(lock_for(1, 60, 900), 120);
        assert_eq!(lock_for(3, 60, 900), 480);
        assert_eq!(lock_for(4, 60, 900), 900);
        assert_eq!(lock_for(u32::MAX, u64::MAX, 900), 900);
        assert_eq!(lock_for(0, 0, 900), 1);
    }

    #[test]
    fn a_name_locks_after_its_free_failures_and_a_success_clears_it() {
        let g = guard();
        let now = Instant::now();
        let ada = [Subject::user(" Ada ")];
        for _ in 0..4 {
            assert!(g.failed(&ada, now).is_empty());
        }
        assert_eq!(g.locked(&ada, now), None);
        let started = g.failed(&ada, now);
        assert_eq!(
            started,
            [Locked {
                subject: Subject::User("ada".into()),
                failures: 5,
                seconds: 60
            }]
        );
        assert_eq!(g.locked(&ada, now), Some(Duration::from_secs(60)));
        assert_eq!(g.locked(&[Subject::user("ben")], now), None);
        let later = now + Duration::from_secs(61);
        assert_eq!(g.locked(&ada, later), None);
        assert_eq!(g.failed(&ada, later)[0].seconds, 120);
        g.succeeded(&ada[0]);
        assert_eq!(g.locked(&ada, later), None);
    }

    #[test]
    fn an_address_locks_after_its_own_count_across_names() {
        let g = guard();
        let now = Instant::now();
        let address = Subject::Address("203.0.113.7".parse().unwrap());
        let mut locks = Vec::new();
        for i in 0..20 {
            locks.extend(g.failed(&[Subject::user(&format!("u{i}")), address.clone()], now));
        }
        assert_eq!(locks.len(), 1, "{locks:?}");
        assert_eq!(locks[0].subject, address);
        let other = Subject::Address("203.0.113.8".parse().unwrap());
        assert_eq!(g.locked(&[Subject::user("u0"), other], now), None);
        assert!(g.locked(&[Subject::user("x"), address], now).is_some());
    }

    #[test]
    fn counts_are_forgotten_and_memory_is_bounded() {
        let g = SigninGuard::new(SigninConfig {
            max_tracked: 10,
            ..Default::default()
        });
        let now = Instant::now();
        for i in 0..1000 {
            g.failed(&[Subject::user(&format!("u{i}"))], now);
        }
        assert!(g.counts.lock().unwrap().len() <= 10);
        let ada = [Subject::user("ada")];
        for _ in 0..4 {
            g.failed(&ada, now);
        }
        let much_later = now + Duration::from_secs(901);
        assert!(g.failed(&ada, much_later).is_empty(), "count forgotten");
    }

    #[tokio::test]
    async fn hashing_beyond_the_queue_is_refused_at_once() {
        let g = Arc::new(SigninGuard::new(SigninConfig {
            hash_concurrency: 1,
            hash_queue: 1,
            ..Default::default()
        }));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let mut running = Vec::new();
        for _ in 0..2 {
            let (g, wait) = (g.clone(), wait.clone());
            running.push(tokio::spawn(async move {
                g.hash(move || {
                    let _ = wait.lock().unwrap().recv();
                })
                .await
            }));
        }
        while g.waiting.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(g.hash(|| ()).await, Err(Refusal::Busy));
        release.send(()).unwrap();
        release.send(()).unwrap();
        for r in running {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        assert_eq!(g.hash(|| 7).await, Ok(7));
    }
}
