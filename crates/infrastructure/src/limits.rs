//! R14's per-address token buckets, on `governor` (GCRA, exactly a token bucket of `N`
//! refilled at `N` per period). Addresses are keyed as IPv4, or IPv6 by /64 (what one
//! subscriber is usually given). Memory stays bounded: buckets that are full again (idle) are
//! forgotten every `SWEEP_EVERY` checks, and past `MAX_ADDRESSES` tracked addresses new
//! checks share one overflow bucket of the same rate, so a flood of fresh addresses is
//! throttled as a whole instead of growing the table.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use websessions_domain::ports::RateLimits;
use websessions_domain::{ClientIp, LimitedAction, Rate, RetryAfter};

/// How many addresses one limit tracks before new ones share the overflow bucket.
pub const MAX_ADDRESSES: usize = 100_000;

/// Forget idle buckets once every this many checks (amortised cost).
const SWEEP_EVERY: u64 = 1024;

/// `rate` as governor's quota: one token every `period / count`, a burst of `count`.
fn quota(rate: Rate) -> Option<Quota> {
    let each = rate.period.checked_div(rate.count.get())?;
    Quota::with_period(each).map(|quota| quota.allow_burst(rate.count))
}

/// A client address as a bucket key.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Key {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl Key {
    fn of(ip: ClientIp) -> Self {
        match ip.get() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// One limit's buckets.
#[derive(Debug)]
struct Buckets<C: Clock> {
    by_address: RateLimiter<Key, HashMapStateStore<Key>, C, NoOpMiddleware<C::Instant>>,
    overflow: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    checks: AtomicU64,
    clock: C,
}

impl<C: Clock + Clone> Buckets<C> {
    fn new(quota: Quota, clock: C) -> Self {
        Self {
            by_address: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            overflow: RateLimiter::direct_with_clock(quota, clock.clone()),
            checks: AtomicU64::new(0),
            clock,
        }
    }

    fn admit(&self, ip: ClientIp) -> Result<(), RetryAfter> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.forget_idle();
        }
        let verdict = if self.by_address.len() < MAX_ADDRESSES {
            self.by_address.check_key(&Key::of(ip))
        } else {
            self.forget_idle();
            if self.by_address.len() < MAX_ADDRESSES {
                self.by_address.check_key(&Key::of(ip))
            } else {
                self.overflow.check()
            }
        };
        verdict.map_err(|not_until| RetryAfter::after(not_until.wait_time_from(self.clock.now())))
    }

    fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
    }
}

/// The two limits of R14; an absent one (`0`) admits everything.
#[derive(Debug)]
pub struct AddressLimits<C: Clock = MonotonicClock> {
    session_start: Option<Buckets<C>>,
    login: Option<Buckets<C>>,
}

impl AddressLimits<MonotonicClock> {
    /// `None` for a limit means no limit.
    pub fn new(session_start: Option<Rate>, login: Option<Rate>) -> Self {
        Self::with_clock(session_start, login, MonotonicClock)
    }
}

impl<C: Clock + Clone> AddressLimits<C> {
    /// The limits on `clock` (tests pass a fake one).
    pub fn with_clock(session_start: Option<Rate>, login: Option<Rate>, clock: C) -> Self {
        let buckets = |rate: Option<Rate>| {
            rate.and_then(quota)
                .map(|quota| Buckets::new(quota, clock.clone()))
        };
        Self {
            session_start: buckets(session_start),
            login: buckets(login),
        }
    }

    /// How many addresses each limit tracks now.
    pub fn tracked(&self) -> (usize, usize) {
        let len = |b: &Option<Buckets<C>>| b.as_ref().map_or(0, |b| b.by_address.len());
        (len(&self.session_start), len(&self.login))
    }
}

impl<C: Clock + Clone + Send + Sync> RateLimits for AddressLimits<C>
where
    C::Instant: Send + Sync,
{
    fn admit(&self, action: LimitedAction, ip: ClientIp) -> Result<(), RetryAfter> {
        let buckets = match action {
            LimitedAction::SessionStart => &self.session_start,
            LimitedAction::Login => &self.login,
        };
        buckets.as_ref().map_or(Ok(()), |b| b.admit(ip))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(text: &str) -> ClientIp {
        ClientIp::new(text.parse().unwrap())
    }

    fn rate(count: u32, period: Duration) -> Option<Rate> {
        Some(Rate {
            count: NonZeroU32::new(count).unwrap(),
            period,
        })
    }

    #[test]
    fn r14_a_bucket_of_n_empties_then_refills_at_n_per_period() {
        let clock = FakeRelativeClock::default();
        let limits =
            AddressLimits::with_clock(rate(3, Duration::from_secs(60)), None, clock.clone());
        let start = |ip| limits.admit(LimitedAction::SessionStart, ip);
        for _ in 0..3 {
            assert_eq!(start(ip("192.0.2.1")), Ok(()));
        }
        // Empty: the next token comes 20 s later.
        assert_eq!(start(ip("192.0.2.1")).unwrap_err().seconds(), 20);
        clock.advance(Duration::from_millis(19_500));
        assert_eq!(start(ip("192.0.2.1")).unwrap_err().seconds(), 1);
        clock.advance(Duration::from_millis(500));
        assert_eq!(start(ip("192.0.2.1")), Ok(()));
        assert!(start(ip("192.0.2.1")).is_err());
        // Another address has its own bucket; logins are unlimited here.
        assert_eq!(start(ip("192.0.2.2")), Ok(()));
        for _ in 0..100 {
            assert_eq!(limits.admit(LimitedAction::Login, ip("192.0.2.1")), Ok(()));
        }
    }

    #[test]
    fn r14_ipv6_addresses_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
        let limits = AddressLimits::with_clock(
            None,
            rate(1, Duration::from_secs(3600)),
            FakeRelativeClock::default(),
        );
        let login = |text| limits.admit(LimitedAction::Login, ip(text));
        assert!(login("2001:db8:1:2::1").is_ok());
        assert!(login("2001:db8:1:2:ffff::9").is_err(), "same /64");
        assert!(login("2001:db8:1:3::1").is_ok(), "another /64");
        assert!(login("::ffff:192.0.2.7").is_ok());
        assert!(login("192.0.2.7").is_err(), "the same IPv4 address");
    }

    #[test]
    fn r14_idle_buckets_are_forgotten_so_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limits =
            AddressLimits::with_clock(rate(2, Duration::from_secs(1)), None, clock.clone());
        for n in 0..(SWEEP_EVERY - 1) {
            let addr = ClientIp::new(IpAddr::V4((0x0a00_0000 + n as u32).into()));
            limits.admit(LimitedAction::SessionStart, addr).unwrap();
        }
        assert_eq!(limits.tracked().0, (SWEEP_EVERY - 1) as usize);
        // A second later every bucket is full again; the next check sweeps them away.
        clock.advance(Duration::from_secs(1));
        limits
            .admit(LimitedAction::SessionStart, ip("192.0.2.1"))
            .unwrap();
        assert_eq!(limits.tracked().0, 1);
    }

    #[test]
    fn r14_no_limit_admits_everything() {
        let limits = AddressLimits::new(None, None);
        for _ in 0..1000 {
            assert!(
                limits
                    .admit(LimitedAction::SessionStart, ip("192.0.2.1"))
                    .is_ok()
            );
        }
    }
}
