//! websessions' domain: the session rules of SPEC section 3 (R1..R13) and the ports they run
//! on. It owns what a valid session, credential, username and password are, the lockout
//! arithmetic, and the order of every check.
//!
//! It must not depend on a database, HTTP or runtime IO crate: adapters implement the ports
//! (`ports`) in the infrastructure crate, and the API calls `SessionService`.

pub mod error;
pub mod model;
pub mod policy;
pub mod ports;
pub mod service;
pub mod value;

pub use error::{
    ChangePasswordError, CreateUserError, InfraError, LoginError, RetryAfter, SetDataError,
    UserError,
};
pub use model::{
    EndCause, LockoutState, LoginResult, PurgeReport, RecordedFailure, SessionQuery, SessionRecord,
    SessionUser, User,
};
pub use policy::{Cutoffs, LockoutPolicy, SessionPolicy};
pub use service::{Issued, LoginAttempt, Ports, Presented, SessionService, Sessions};
pub use value::{
    ClientIp, Credential, NewPassword, Password, PasswordHash, PasswordPolicyError, SessionData,
    SessionId, SessionKind, Token, TokenHash, TokenLength, UserId, Username,
};

#[cfg(test)]
mod tests;
