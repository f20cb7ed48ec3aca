//! The ports: what the rules need from the outside world, as small role-named contracts.
//! Adapters live in the infrastructure crate; fakes come from mockall (feature `mocks`).

mod audit;
mod events;
mod storage;
mod system;

pub use audit::AuditTrail;
pub use events::{Events, NoEvents};
pub use storage::{
    AccountChange, AccountStore, Created, Expect, LockoutPurge, LockoutRepository, NewSession,
    NewUser, Owner, SessionRepository, Sweep, Target, UserRepository, UserSessions,
};
pub use system::{Clock, HashTicket, PasswordHasher, RateLimits, Timer, TokenSource};

#[cfg(any(test, feature = "mocks"))]
pub use audit::MockAuditTrail;
#[cfg(any(test, feature = "mocks"))]
pub use events::MockEvents;
#[cfg(any(test, feature = "mocks"))]
pub use storage::{
    MockAccountChange, MockAccountStore, MockLockoutRepository, MockSessionRepository,
    MockUserRepository,
};
#[cfg(any(test, feature = "mocks"))]
pub use system::{MockClock, MockPasswordHasher, MockRateLimits, MockTimer, MockTokenSource};
