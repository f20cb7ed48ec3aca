//! websessions' domain: the session rules of SPEC section 3 (R1..R15) and the ports they run
//! on. It owns what a valid session, credential, username and password are (`value`), when a
//! session is valid and the lockout arithmetic (`policy`), and the order of every check, split
//! by who acts: the session holder (`holder`), a logged-in user on their own sessions (`me`),
//! a superuser on every session (`admin`) and on accounts (`users`).
//!
//! It must not depend on a database, HTTP or runtime IO crate: adapters implement the ports
//! (`ports`) in the infrastructure crate, and the API calls the actors' traits.

pub mod admin;
pub mod audit;
pub mod credential;
pub mod error;
#[cfg(any(test, feature = "mocks"))]
pub mod fixtures;
pub mod holder;
pub mod me;
pub mod model;
mod password;
pub mod policy;
pub mod ports;
pub mod service;
pub mod users;
pub mod value;

pub use admin::{MAX_PAGE, Page, SessionAdmin, SessionFilter};
pub use credential::{Credential, CredentialError, Token, TokenHash, TokenLength};
pub use error::{
    AccessError, ChangePasswordError, CreateUserError, EndSessionError, InfraError, LoginError,
    LoginRequired, RateLimited, ResetPasswordError, RetryAfter, Saturated, SetDataError,
    StartError, UserError,
};
pub use holder::{LoginAttempt, LoginPass, SessionHolder};
pub use me::{Me, SelfService};
pub use model::{
    Attempt, Counted, EndCause, LimitedAction, LockoutState, LoginResult, PurgeReport,
    SessionQuery, SessionRecord, SessionUser, Superuser, User,
};
pub use policy::{
    Cutoffs, Expiry, LockoutPolicy, PolicyError, Rate, RateError, SessionPolicy, SessionSettings,
};
pub use service::{Issued, Ports, Presented, Sessions};
pub use users::UserAdmin;
pub use value::{
    ClientIp, NewPassword, Password, PasswordHash, PasswordPolicyError, SessionData, SessionId,
    SessionKind, UserId, Username,
};

#[cfg(test)]
mod tests;
