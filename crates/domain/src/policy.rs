//! The validated settings the rules run under, and the arithmetic they imply.

use time::{Duration, OffsetDateTime};

use crate::value::TokenLength;

/// How sessions are recognised, touched and issued (R1..R5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
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

impl Default for SessionPolicy {
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

impl SessionPolicy {
    /// The oldest timestamps a valid session may have at `now`.
    pub fn cutoffs(&self, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            idle: now - self.idle_timeout,
            absolute: self.absolute_timeout.map(|limit| now - limit),
        }
    }
}

/// A session is valid at some instant when `last_activity_at >= idle` and, when `absolute` is
/// set, the later of `authenticated_at` and `created_at` is `>= absolute` (R2). Storage adapters
/// put exactly these comparisons into their conditional writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoffs {
    pub idle: OffsetDateTime,
    pub absolute: Option<OffsetDateTime>,
}

impl Cutoffs {
    pub fn admits(
        &self,
        last_activity_at: OffsetDateTime,
        created_at: OffsetDateTime,
        authenticated_at: Option<OffsetDateTime>,
    ) -> bool {
        let started = authenticated_at.map_or(created_at, |at| at.max(created_at));
        last_activity_at >= self.idle && self.absolute.is_none_or(|cutoff| started >= cutoff)
    }
}

/// CamCOPS's lockout arithmetic (R9), with a validated threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    threshold: u32,
    increment: Duration,
}

impl LockoutPolicy {
    /// `None` when `threshold` is 0 or `increment` is negative.
    pub fn new(threshold: u32, increment: Duration) -> Option<Self> {
        (threshold >= 1 && !increment.is_negative()).then_some(Self {
            threshold,
            increment,
        })
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// When the n-th recorded failure reaches a multiple of the threshold, the username is
    /// locked until `now + (n / threshold) * increment`; otherwise it is not locked by it.
    pub fn lock_after(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (failures > 0 && failures.is_multiple_of(self.threshold))
            .then(|| now + self.increment * (failures / self.threshold))
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
    fn r9_threshold_must_be_at_least_one() {
        assert_eq!(LockoutPolicy::new(0, Duration::minutes(1)), None);
        let every = LockoutPolicy::new(1, Duration::minutes(1)).unwrap();
        assert_eq!(every.lock_after(1, NOW), Some(NOW + Duration::minutes(1)));
        assert_eq!(every.lock_after(3, NOW), Some(NOW + Duration::minutes(3)));
    }

    #[test]
    fn r2_cutoffs_admit_the_idle_limit_exactly_and_not_one_second_past() {
        let policy = SessionPolicy::default();
        let cutoffs = policy.cutoffs(NOW);
        let at_limit = NOW - Duration::minutes(30);
        assert!(cutoffs.admits(at_limit, at_limit, None));
        assert!(!cutoffs.admits(at_limit - Duration::seconds(1), at_limit, None));
    }

    #[test]
    fn r2_absolute_limit_counts_from_the_later_of_creation_and_login() {
        let policy = SessionPolicy::default();
        let cutoffs = policy.cutoffs(NOW);
        let old = NOW - Duration::hours(12) - Duration::seconds(1);
        assert!(!cutoffs.admits(NOW, old, None));
        assert!(cutoffs.admits(NOW, old, Some(NOW - Duration::hours(12))));
        let none = SessionPolicy {
            absolute_timeout: None,
            ..policy
        };
        assert!(
            none.cutoffs(NOW)
                .admits(NOW, old - Duration::days(400), None)
        );
    }
}
