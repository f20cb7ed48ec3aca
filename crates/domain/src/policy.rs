//! The validated settings the rules run under, and the arithmetic they imply: R2's validity
//! (`Cutoffs::admits`, the one statement of when a session is valid), the expiry times a
//! session shows, and R9's lockout arithmetic. SPEC section 5's bounds are enforced by the
//! constructors, so no arithmetic here can overflow.

use std::num::NonZeroU32;

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::credential::{TokenHash, TokenLength};
use crate::model::SessionRecord;
use crate::value::{ClientIp, SessionId};

/// The longest any duration setting may be (SPEC section 5): 365 days.
pub const MAX_SETTING: Duration = Duration::days(365);

/// How sessions are recognised, touched and issued (R1..R5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    idle_timeout: Duration,
    absolute_timeout: Option<Duration>,
    check_ip: bool,
    touch_interval: Duration,
    token_length: TokenLength,
    single_browser_session: bool,
}

/// A session setting outside SPEC section 5's bounds.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the idle timeout must be 1 s to 365 days")]
    IdleTimeout,
    #[error("the absolute timeout must be 0 (none) or from the idle timeout to 365 days")]
    AbsoluteTimeout,
    #[error("the touch interval must be below the idle timeout")]
    TouchInterval,
    #[error("the lockout threshold must be at least 1")]
    LockoutThreshold,
    #[error("the lockout increment must be 1 s to 365 days")]
    LockoutIncrement,
}

/// The settings a `SessionPolicy` is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session idle for longer than this is no longer valid (R2).
    pub idle_timeout: Duration,
    /// A session authenticated (or created) longer ago than this is no longer valid; `None`
    /// means no absolute limit (R2).
    pub absolute_timeout: Option<Duration>,
    /// Whether the request's client IP must equal the session's (R2).
    pub check_ip: bool,
    /// `last_activity_at` is not rewritten while younger than this (R3).
    pub touch_interval: Duration,
    pub token_length: TokenLength,
    /// A browser login ends the user's other browser sessions (R5e).
    pub single_browser_session: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::minutes(30),
            absolute_timeout: Some(Duration::hours(12)),
            check_ip: true,
            touch_interval: Duration::seconds(15),
            token_length: TokenLength::default(),
            single_browser_session: true,
        }
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self::from_settings(SessionSettings::default())
    }
}

impl SessionPolicy {
    /// The settings within SPEC section 5's bounds: idle 1 s to 365 days; absolute none or
    /// from the idle timeout to 365 days; the touch interval below the idle timeout.
    pub fn new(settings: SessionSettings) -> Result<Self, PolicyError> {
        let idle = settings.idle_timeout;
        if idle < Duration::SECOND || idle > MAX_SETTING {
            return Err(PolicyError::IdleTimeout);
        }
        if settings
            .absolute_timeout
            .is_some_and(|absolute| absolute < idle || absolute > MAX_SETTING)
        {
            return Err(PolicyError::AbsoluteTimeout);
        }
        if settings.touch_interval.is_negative() || settings.touch_interval >= idle {
            return Err(PolicyError::TouchInterval);
        }
        Ok(Self::from_settings(settings))
    }

    fn from_settings(settings: SessionSettings) -> Self {
        Self {
            idle_timeout: settings.idle_timeout,
            absolute_timeout: settings.absolute_timeout,
            check_ip: settings.check_ip,
            touch_interval: settings.touch_interval,
            token_length: settings.token_length,
            single_browser_session: settings.single_browser_session,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute_timeout
    }

    pub fn check_ip(&self) -> bool {
        self.check_ip
    }

    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
    }

    pub fn token_length(&self) -> TokenLength {
        self.token_length
    }

    pub fn single_browser_session(&self) -> bool {
        self.single_browser_session
    }

    /// The oldest timestamps a valid session may have at `now`.
    pub fn cutoffs(&self, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            idle: now - self.idle_timeout,
            absolute: self.absolute_timeout.map(|limit| now - limit),
        }
    }

    /// When `session` ends if it stays idle, and regardless of activity, computed from the
    /// stored values the rules enforce.
    pub fn expiry(&self, session: &SessionRecord) -> Expiry {
        Expiry {
            idle: session.last_activity_at + self.idle_timeout,
            absolute: self
                .absolute_timeout
                .map(|limit| started(session.created_at, session.authenticated_at) + limit),
        }
    }
}

/// When a session ends (SessionView's `idle_expires_at` and `absolute_expires_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub idle: OffsetDateTime,
    /// `None` without an absolute limit.
    pub absolute: Option<OffsetDateTime>,
}

/// The later of creation and the last login: where R2's absolute limit counts from.
fn started(created_at: OffsetDateTime, authenticated_at: Option<OffsetDateTime>) -> OffsetDateTime {
    authenticated_at.map_or(created_at, |at| at.max(created_at))
}

/// R2's validity in one place. A session is valid at some instant when
/// `last_activity_at >= idle` and, when `absolute` is set, the later of `authenticated_at` and
/// `created_at` is `>= absolute`. The storage adapter translates exactly this once (a SeaQuery
/// condition) for its conditional writes; the contract suite proves the two agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoffs {
    pub idle: OffsetDateTime,
    pub absolute: Option<OffsetDateTime>,
}

impl Cutoffs {
    pub fn admits(&self, session: &SessionRecord) -> bool {
        session.last_activity_at >= self.idle
            && self.absolute.is_none_or(|cutoff| {
                started(session.created_at, session.authenticated_at) >= cutoff
            })
    }
}

/// A presented session, as R2 names it: the row `id` while it still holds `token_hash`, is
/// valid under `cutoffs` and, when `ip` is given (`check_ip`), was created from it. The
/// service checks a read row with `matches`; the storage adapter translates exactly this once
/// for its conditional writes, and the contract suite proves the two agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: SessionId,
    pub token_hash: TokenHash,
    pub cutoffs: Cutoffs,
    pub ip: Option<ClientIp>,
}

impl Target {
    /// R2 for a row read back: its token hash (compared in constant time), its validity and,
    /// with the address check, its address.
    pub fn matches(&self, session: &SessionRecord) -> bool {
        session.id == self.id
            && session.token_hash.matches(&self.token_hash)
            && self.cutoffs.admits(session)
            && self.ip.is_none_or(|ip| session.ip_address == ip)
    }
}

/// An R14 limit: a bucket of `count` tokens, refilled at `count` per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: std::time::Duration,
}

/// A limit that is not `N/s`, `N/min` or `N/h` with N >= 1, nor `0`.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("expected N/s, N/min or N/h (N >= 1), or 0 for no limit")]
pub struct RateError;

impl Rate {
    /// `N/s`, `N/min` or `N/h` with N >= 1; `0` is no limit (`None`).
    pub fn parse(text: &str) -> Result<Option<Self>, RateError> {
        let text = text.trim();
        if text == "0" {
            return Ok(None);
        }
        let (count, per) = text.split_once('/').ok_or(RateError)?;
        let count = count
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or(RateError)?;
        let seconds = match per.trim() {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            _ => return Err(RateError),
        };
        Ok(Some(Self {
            count,
            period: std::time::Duration::from_secs(seconds),
        }))
    }
}

/// CamCOPS's lockout arithmetic (R9), with validated settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    threshold: u32,
    increment: Duration,
}

/// The latest instant a lock can last until: lengths saturate here instead of overflowing.
const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);

impl LockoutPolicy {
    /// A threshold of at least 1 and an increment of 1 s to 365 days (SPEC section 5).
    pub fn new(threshold: u32, increment: Duration) -> Result<Self, PolicyError> {
        if threshold == 0 {
            return Err(PolicyError::LockoutThreshold);
        }
        if increment < Duration::SECOND || increment > MAX_SETTING {
            return Err(PolicyError::LockoutIncrement);
        }
        Ok(Self {
            threshold,
            increment,
        })
    }

    /// When the n-th counted attempt reaches a multiple of the threshold, the username is
    /// locked until `now + (n / threshold) * increment` (saturating); otherwise it is not
    /// locked by it.
    pub fn lock_after(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if failures == 0 || !failures.is_multiple_of(self.threshold) {
            return None;
        }
        let length = self
            .increment
            .checked_mul(i32::try_from(failures / self.threshold).unwrap_or(i32::MAX))
            .unwrap_or(Duration::MAX);
        Some(
            now.checked_add(length)
                .map_or(LATEST, |until| until.min(LATEST)),
        )
    }
}

impl LockoutPolicy {
    /// How long a lock stays provisional while the attempt that started it is verified: past
    /// it (the verifier died, or is slow), the lock stands (R9).
    pub const LEASE: Duration = Duration::seconds(5);

    /// The end of the lease of a lock started at `now`.
    pub fn lease_until(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + Self::LEASE
    }
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            increment: Duration::minutes(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn record(
        created_at: OffsetDateTime,
        authenticated_at: Option<OffsetDateTime>,
        last_activity_at: OffsetDateTime,
    ) -> SessionRecord {
        SessionRecord {
            authenticated_at,
            last_activity_at,
            ..crate::fixtures::session(1, 1, created_at)
        }
    }

    #[test]
    fn r14_rates_are_n_per_second_minute_or_hour_or_zero() {
        let per =
            |text| Rate::parse(text).map(|rate| rate.map(|r| (r.count.get(), r.period.as_secs())));
        assert_eq!(per("5/s"), Ok(Some((5, 1))));
        assert_eq!(per(" 600/min "), Ok(Some((600, 60))));
        assert_eq!(per("1/h"), Ok(Some((1, 3600))));
        assert_eq!(per("0"), Ok(None));
        for bad in ["10", "0/min", "-1/s", "5/day", "x/s", "", "/s", "5/"] {
            assert_eq!(Rate::parse(bad), Err(RateError), "{bad}");
        }
    }

    #[test]
    fn r9_no_lock_below_the_threshold() {
        let policy = LockoutPolicy::default();
        assert_eq!(policy.lock_after(9, NOW), None);
        assert_eq!(policy.lock_after(11, NOW), None);
        assert_eq!(policy.lock_after(19, NOW), None);
    }

    #[test]
    fn r9_lock_at_threshold_and_double_at_twice_the_threshold() {
        let policy = LockoutPolicy::default();
        assert_eq!(
            policy.lock_after(10, NOW),
            Some(NOW + Duration::minutes(10))
        );
        assert_eq!(
            policy.lock_after(20, NOW),
            Some(NOW + Duration::minutes(20))
        );
        assert_eq!(
            policy.lock_after(30, NOW),
            Some(NOW + Duration::minutes(30))
        );
    }

    #[test]
    fn r9_settings_outside_the_bounds_are_refused() {
        assert_eq!(
            LockoutPolicy::new(0, Duration::minutes(1)),
            Err(PolicyError::LockoutThreshold)
        );
        assert_eq!(
            LockoutPolicy::new(1, Duration::ZERO),
            Err(PolicyError::LockoutIncrement)
        );
        assert_eq!(
            LockoutPolicy::new(1, Duration::days(366)),
            Err(PolicyError::LockoutIncrement)
        );
        let every = LockoutPolicy::new(1, Duration::minutes(1)).unwrap();
        assert_eq!(every.lock_after(1, NOW), Some(NOW + Duration::minutes(1)));
        assert_eq!(every.lock_after(3, NOW), Some(NOW + Duration::minutes(3)));
    }

    #[test]
    fn r9_lock_lengths_saturate_instead_of_overflowing() {
        let policy = LockoutPolicy::new(1, MAX_SETTING).unwrap();
        assert_eq!(policy.lock_after(u32::MAX, NOW), Some(LATEST));
        assert_eq!(policy.lock_after(u32::MAX, LATEST), Some(LATEST));
    }

    #[test]
    fn r2_cutoffs_admit_the_idle_limit_exactly_and_not_one_second_past() {
        let cutoffs = SessionPolicy::default().cutoffs(NOW);
        let at_limit = NOW - Duration::minutes(30);
        assert!(cutoffs.admits(&record(at_limit, None, at_limit)));
        let past = at_limit - Duration::seconds(1);
        assert!(!cutoffs.admits(&record(at_limit, None, past)));
    }

    #[test]
    fn r2_absolute_limit_counts_from_the_later_of_creation_and_login() {
        let policy = SessionPolicy::default();
        let cutoffs = policy.cutoffs(NOW);
        let old = NOW - Duration::hours(12) - Duration::seconds(1);
        assert!(!cutoffs.admits(&record(old, None, NOW)));
        assert!(cutoffs.admits(&record(old, Some(NOW - Duration::hours(12)), NOW)));
        let none = SessionPolicy::new(SessionSettings {
            absolute_timeout: None,
            ..SessionSettings::default()
        })
        .unwrap();
        let ancient = old - Duration::days(400);
        assert!(none.cutoffs(NOW).admits(&record(ancient, None, NOW)));
    }

    #[test]
    fn expiry_times_follow_the_stored_values_the_rules_enforce() {
        let created = datetime!(2026-01-01 08:00 UTC);
        let session = record(
            created,
            Some(created + Duration::hours(1)),
            created + Duration::hours(2),
        );
        let expiry = SessionPolicy::default().expiry(&session);
        let idle_ends = created + Duration::hours(2) + Duration::minutes(30);
        assert_eq!(expiry.idle, idle_ends);
        assert_eq!(expiry.absolute, Some(created + Duration::hours(13)));
        let no_limit = SessionPolicy::new(SessionSettings {
            absolute_timeout: None,
            ..SessionSettings::default()
        })
        .unwrap();
        assert_eq!(no_limit.expiry(&session).absolute, None);
    }

    #[test]
    fn session_settings_outside_the_bounds_are_refused() {
        let with = |change: fn(&mut SessionSettings)| {
            let mut settings = SessionSettings::default();
            change(&mut settings);
            SessionPolicy::new(settings)
        };
        assert_eq!(
            with(|s| s.idle_timeout = Duration::ZERO),
            Err(PolicyError::IdleTimeout)
        );
        assert_eq!(
            with(|s| s.idle_timeout = Duration::days(366)),
            Err(PolicyError::IdleTimeout)
        );
        assert_eq!(
            with(|s| s.absolute_timeout = Some(Duration::minutes(29))),
            Err(PolicyError::AbsoluteTimeout)
        );
        assert_eq!(
            with(|s| s.absolute_timeout = Some(Duration::days(366))),
            Err(PolicyError::AbsoluteTimeout)
        );
        assert_eq!(
            with(|s| s.touch_interval = Duration::minutes(30)),
            Err(PolicyError::TouchInterval)
        );
        assert!(with(|s| s.touch_interval = Duration::minutes(29)).is_ok());
        assert!(with(|s| s.touch_interval = Duration::ZERO).is_ok());
        let longest = with(|s| {
            s.idle_timeout = MAX_SETTING;
            s.absolute_timeout = Some(MAX_SETTING);
        });
        assert!(longest.is_ok());
    }
}
