//! R14's per-address limits: token buckets (GCRA, exactly a bucket of `N` refilled at `N` per
//! period, kept as one instant per address), keyed as IPv4, or IPv6 by /64 (what one
//! subscriber is usually given). The table holds at most `MAX_ADDRESSES` addresses, in shards
//! (each its own lock, so concurrent checks rarely wait on each other), each forgetting its
//! least recently used address when full: an address never seen before always starts with a
//! full bucket, whatever the table holds, and no address shares a bucket with another. A
//! check costs the same whatever the table's size (one hash, one LRU update). Forgetting a
//! bucket that was not full gives its address its allowance back: with more addresses than
//! the table holds an attacker regains allowances, and R9, not R14, bounds guessing.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;
use websessions_domain::ports::RateLimits;
use websessions_domain::{ClientIp, LimitedAction, Rate, RetryAfter};

/// How many addresses each limit tracks at most.
pub const MAX_ADDRESSES: usize = 100_000;

/// Shards of each limit's table.
const SHARDS: usize = 16;

/// A monotonic clock in nanoseconds, for the buckets (tests pass a fake one).
pub trait Monotonic: Send + Sync {
    fn nanos(&self) -> u64;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemMonotonic(Instant);

impl Default for SystemMonotonic {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Monotonic for SystemMonotonic {
    fn nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
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

    /// Which shard holds the key (a cheap mix of its bits).
    fn shard(self) -> usize {
        let bits = match self {
            Self::V4(v4) => u64::from(v4),
            Self::V6(prefix) => prefix,
        };
        (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS
    }
}

/// One limit: GCRA with emission interval `interval` (a token every `period / N`) and burst
/// tolerance `tolerance` (`N - 1` intervals), each address's state its theoretical arrival
/// time (nanoseconds of the clock).
#[derive(Debug)]
struct Buckets {
    interval: u64,
    tolerance: u64,
    shards: Vec<Mutex<LruCache<Key, u64>>>,
}

impl Buckets {
    fn new(rate: Rate, capacity: usize) -> Self {
        let count = u64::from(rate.count.get());
        let period = u64::try_from(rate.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = (period / count).max(1);
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            interval,
            tolerance: interval.saturating_mul(count - 1),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
        }
    }

    fn admit(&self, ip: ClientIp, now: u64) -> Result<(), RetryAfter> {
        let key = Key::of(ip);
        let mut shard = self.shards[key.shard()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A new address starts full; when the shard is full, its least recently used goes.
        let arrival = shard.get(&key).copied().unwrap_or(now).max(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            // Not admitted: nothing is taken, and the address's place is refreshed.
            let wait = Duration::from_nanos(ahead - self.tolerance);
            shard.promote(&key);
            return Err(RetryAfter::after(wait));
        }
        shard.put(key, arrival.saturating_add(self.interval));
        Ok(())
    }

    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The two limits of R14; an absent one (`0`) admits everything.
pub struct AddressLimits<C: Monotonic = SystemMonotonic> {
    session_start: Option<Buckets>,
    login: Option<Buckets>,
    clock: C,
}

impl<C: Monotonic> std::fmt::Debug for AddressLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressLimits")
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl AddressLimits<SystemMonotonic> {
    /// `None` for a limit means no limit.
    pub fn new(session_start: Option<Rate>, login: Option<Rate>) -> Self {
        Self::with_clock(
            session_start,
            login,
            MAX_ADDRESSES,
            SystemMonotonic::default(),
        )
    }
}

impl<C: Monotonic> AddressLimits<C> {
    /// The limits, each tracking at most `capacity` addresses, on `clock`.
    pub fn with_clock(
        session_start: Option<Rate>,
        login: Option<Rate>,
        capacity: usize,
        clock: C,
    ) -> Self {
        Self {
            session_start: session_start.map(|rate| Buckets::new(rate, capacity)),
            login: login.map(|rate| Buckets::new(rate, capacity)),
            clock,
        }
    }

    /// How many addresses each limit tracks now.
    pub fn tracked(&self) -> (usize, usize) {
        let len = |b: &Option<Buckets>| b.as_ref().map_or(0, Buckets::tracked);
        (len(&self.session_start), len(&self.login))
    }
}

impl<C: Monotonic> RateLimits for AddressLimits<C> {
    fn admit(&self, action: LimitedAction, ip: ClientIp) -> Result<(), RetryAfter> {
        let buckets = match action {
            LimitedAction::SessionStart => &self.session_start,
            LimitedAction::Login => &self.login,
        };
        buckets
            .as_ref()
            .map_or(Ok(()), |b| b.admit(ip, self.clock.nanos()))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Fake(AtomicU64);

    impl Fake {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Monotonic for &Fake {
        fn nanos(&self) -> u64 {
            // Far from zero, as a real clock is.
            1_000_000_000_000 + self.0.load(Ordering::SeqCst)
        }
    }

    fn ip(text: &str) -> ClientIp {
        ClientIp::new(text.parse().unwrap())
    }

    fn v4(n: u32) -> ClientIp {
        ClientIp::new(IpAddr::V4(n.into()))
    }

    fn rate(count: u32, period: Duration) -> Option<Rate> {
        Some(Rate {
            count: NonZeroU32::new(count).unwrap(),
            period,
        })
    }

    #[test]
    fn r14_a_bucket_of_n_empties_then_refills_at_n_per_period() {
        let clock = Fake::default();
        let limits = AddressLimits::with_clock(rate(3, Duration::from_secs(60)), None, 100, &clock);
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
        let clock = Fake::default();
        let limits =
            AddressLimits::with_clock(None, rate(1, Duration::from_secs(3600)), 100, &clock);
        let login = |text| limits.admit(LimitedAction::Login, ip(text));
        assert!(login("2001:db8:1:2::1").is_ok());
        assert!(login("2001:db8:1:2:ffff::9").is_err(), "same /64");
        assert!(login("2001:db8:1:3::1").is_ok(), "another /64");
        assert!(login("::ffff:192.0.2.7").is_ok());
        assert!(login("192.0.2.7").is_err(), "the same IPv4 address");
    }

    #[test]
    fn r14_a_full_table_forgets_its_least_recently_used_and_never_refuses_a_new_address() {
        let clock = Fake::default();
        let capacity = 16 * 64;
        let limits =
            AddressLimits::with_clock(None, rate(1, Duration::from_secs(3600)), capacity, &clock);
        let login = |ip| limits.admit(LimitedAction::Login, ip);
        // Ten times more addresses than the table holds, each spending its one token.
        for n in 0..(10 * capacity as u32) {
            assert_eq!(login(v4(0x0a00_0000 + n)), Ok(()), "a new address, refused");
            assert!(login(v4(0x0a00_0000 + n)).is_err(), "its second attempt");
        }
        assert!(
            limits.tracked().1 <= capacity + SHARDS,
            "{:?}",
            limits.tracked()
        );
        // An address that keeps trying is recent, so it stays limited while the table churns.
        let persistent = ip("192.0.2.200");
        assert_eq!(login(persistent), Ok(()));
        for n in 0..(5 * capacity as u32) {
            let _ = login(v4(0x0b00_0000 + n));
            if n % 64 == 0 {
                assert!(login(persistent).is_err(), "forgotten while it kept trying");
            }
        }
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
