//! Limits on anonymous follows (a browser following a practice without a sign-up link):
//! a rate per client address, kept in memory by each instance. The cap on followers per
//! practice is counted in the database (`FollowerStore::add_follower`).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many checks pass between clean-ups of addresses not seen for a while.
const RETAIN_EVERY: u64 = 4_096;

/// The per-address rate of anonymous follows.
pub struct FollowLimits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl FollowLimits {
    /// `per_minute` follows per client address (at least one), all of them at once if they
    /// come together, then one each `60 / per_minute` seconds.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            per_address: RateLimiter::dashmap(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one follow for `client`, or says how long until the next is allowed.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            // Forget addresses whose allowance is whole again, so memory stays bounded by
            // the addresses seen in about a minute.
            self.per_address.retain_recent();
        }
        self.per_address
            .check_key(&address_key(client))
            .map_err(|not_until| {
                not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_secs(1))
            })
    }
}

/// What one client is counted as: an IPv4 address (also when written IPv4-mapped), or an
/// IPv6 /64, which a single home or device is usually given whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_allowance() {
        let limits = FollowLimits::new(3);
        let one: IpAddr = "203.0.113.1".parse().unwrap();
        let two: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check(one).is_ok());
        }
        let wait = limits.check(one).unwrap_err();
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limits.check(two).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let limits = FollowLimits::new(2);
        assert!(limits.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(limits.check("2001:db8:1:2::ffff".parse().unwrap()).is_ok());
        assert!(limits
            .check("2001:db8:1:2:abcd::9".parse().unwrap())
            .is_err());
        assert!(limits.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
        assert!(limits.check("198.51.100.4".parse().unwrap()).is_ok());
        assert!(limits.check("::ffff:198.51.100.4".parse().unwrap()).is_ok());
        assert!(limits.check("198.51.100.4".parse().unwrap()).is_err());
    }
}
