//! Every domain error's answer, written out in full (no catch-all arm, so a new domain variant
//! does not compile until it has one), and the statuses each can answer, declared by the same
//! token (`refuse!`). An operation's error type lists which of these it meets.

use std::sync::atomic::{AtomicU64, Ordering};

use websessions_domain::{
    AccessError, ChangePasswordError, CreateUserError, EndSessionError, InfraError, LoginError,
    LoginRequired, RateLimited, ResetPasswordError, Saturated, SetDataError, StartError, UserError,
};

use super::problem::refuse;

/// No valid session was presented where one is needed (an API-level answer for a rule that
/// found none).
#[derive(Debug)]
pub struct NoSession;

const BAD_CREDENTIALS: &str = "invalid username or password";
const LOCKED: &str = "the username is locked after repeated login attempts; see Retry-After";
const NO_SESSION: &str = "no valid session was presented";
const NOT_LOGGED_IN: &str = "a logged-in session is needed";
const UNAVAILABLE: &str = "the database is unavailable; try again later";

/// Logs a request the database's unavailability refused: at most one line a second, with how
/// many more were refused meanwhile, so an outage under load does not flood the log.
fn warn_unavailable(source: &anyhow::Error) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let also = UNLOGGED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        error = format!("{source:#}"),
        also_refused_since_the_last_line = also,
        "database unavailable"
    );
}

refuse! {
    InfraError {
        Self::Unavailable(source) | Self::Interrupted(source) => SERVICE_UNAVAILABLE({
            warn_unavailable(&source);
            UNAVAILABLE
        })
        .retry_after(1),
        Self::Unexpected(source) => INTERNAL_SERVER_ERROR({
            tracing::error!(error = format!("{source:#}"), "unexpected failure");
            "internal error"
        }),
    }

    RateLimited {
        RateLimited(retry_after) => TOO_MANY_REQUESTS(
            "too many requests from this address; see Retry-After"
        )
        .retry_after(retry_after.seconds()),
    }

    Saturated {
        Saturated => SERVICE_UNAVAILABLE("password checking is busy; try again shortly")
            .retry_after(1),
    }

    NoSession {
        NoSession => UNAUTHORIZED(NO_SESSION).no_session(),
    }

    StartError {
        Self::RateLimited(e) => part(e: RateLimited),
        Self::Infra(e) => part(e: InfraError),
    }

    LoginError {
        Self::Saturated(e) => part(e: Saturated),
        Self::Locked { retry_after, .. } => LOCKED(LOCKED).retry_after(retry_after.seconds()),
        Self::InvalidCredentials => UNAUTHORIZED(BAD_CREDENTIALS),
        Self::Infra(e) => part(e: InfraError),
    }

    ChangePasswordError {
        Self::NotLoggedIn => UNAUTHORIZED(NOT_LOGGED_IN),
        Self::Saturated(e) => part(e: Saturated),
        Self::Locked { retry_after, .. } => LOCKED(LOCKED).retry_after(retry_after.seconds()),
        Self::WrongPassword => FORBIDDEN("the current password is wrong"),
        Self::Policy(e) => UNPROCESSABLE_ENTITY(e.to_string()),
        Self::Infra(e) => part(e: InfraError),
    }

    SetDataError {
        Self::NoSession => UNAUTHORIZED(NO_SESSION).no_session(),
        Self::TooLarge(e) => PAYLOAD_TOO_LARGE(e.to_string()),
        Self::Infra(e) => part(e: InfraError),
    }

    LoginRequired {
        Self::NoSession => UNAUTHORIZED(NO_SESSION).no_session(),
        Self::NotLoggedIn => UNAUTHORIZED(NOT_LOGGED_IN),
        Self::Infra(e) => part(e: InfraError),
    }

    AccessError {
        Self::NoSession => UNAUTHORIZED(NO_SESSION).no_session(),
        Self::NotLoggedIn => UNAUTHORIZED(NOT_LOGGED_IN),
        Self::NotSuperuser => FORBIDDEN("a superuser is needed"),
        Self::Infra(e) => part(e: InfraError),
    }

    EndSessionError {
        Self::NotFound => NOT_FOUND("no such session"),
        Self::Infra(e) => part(e: InfraError),
    }

    CreateUserError {
        Self::InvalidUsername(e) => UNPROCESSABLE_ENTITY(e.to_string()),
        Self::Policy(e) => UNPROCESSABLE_ENTITY(e.to_string()),
        Self::Taken => CONFLICT("username taken"),
        Self::Saturated(e) => part(e: Saturated),
        Self::Infra(e) => part(e: InfraError),
    }

    ResetPasswordError {
        Self::NotFound => NOT_FOUND("no such user"),
        Self::Policy(e) => UNPROCESSABLE_ENTITY(e.to_string()),
        Self::Saturated(e) => part(e: Saturated),
        Self::Infra(e) => part(e: InfraError),
    }

    UserError {
        Self::NotFound => NOT_FOUND("no such user"),
        Self::Infra(e) => part(e: InfraError),
    }
}

#[cfg(test)]
mod tests {
    use poem::IntoResponse;
    use poem::http::{StatusCode, header};
    use websessions_domain::RetryAfter;

    use super::*;
    use crate::http::problem::{Refuse, Refused, SessionRefused};

    #[test]
    fn locks_limits_and_saturation_say_when_to_try_again() {
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let until = now + time::Duration::seconds(600);
        let locked = LoginError::Locked {
            until,
            retry_after: RetryAfter::between(now, until),
        };
        let response = locked.refusal().into_response();
        assert_eq!(response.status(), StatusCode::LOCKED);
        assert_eq!(response.headers()[header::RETRY_AFTER], "600");
        let busy = Saturated.refusal().into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let limited = RateLimited(RetryAfter::between(now, now)).refusal();
        assert_eq!(limited.into_response().headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn only_a_refused_credential_clears_the_cookie() {
        let cleared = |refusal: crate::http::problem::Refusal| {
            refusal.into_response().data::<SessionRefused>().is_some()
        };
        assert!(cleared(NoSession.refusal()));
        assert!(cleared(LoginRequired::NoSession.refusal()));
        assert!(!cleared(LoginRequired::NotLoggedIn.refusal()));
        assert!(!cleared(LoginError::InvalidCredentials.refusal()));
    }

    #[test]
    fn an_operator_error_with_a_superuser_is_its_own_status_set() {
        assert_eq!(
            Refused::<AccessError>::statuses(),
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE
            ]
        );
        assert!(!Refused::<LoginRequired>::statuses().contains(&StatusCode::FORBIDDEN));
    }
}
