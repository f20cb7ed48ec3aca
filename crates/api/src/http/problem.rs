//! Refusals as RFC 9457 `application/problem+json`, and how each operation documents exactly
//! the ones it can answer.
//!
//! Every domain error maps to a `Refusal` in full (no catch-all arm), so a new domain variant
//! does not compile until it has an answer. An operation answers `Refused<S>`, where `S` lists
//! the statuses that operation can refuse with (its own, and those the HTTP guard adds before
//! it runs); the OpenAPI document lists those and no others, each with its real headers.
//! 5xx are logged with their whole chain and shown to clients as an opaque problem.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use websessions_domain::{
    AccessError, ChangePasswordError, CreateUserError, EndSessionError, InfraError, LoginError,
    RateLimited, ResetPasswordError, Saturated, SetDataError, StartError, UserError,
};

/// An RFC 9457 problem detail.
#[derive(Object, serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem this is.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person to read.
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

/// The media type of every refusal.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A refusal: a status, a detail for people, and the headers its status carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    detail: Cow<'static, str>,
    /// Whole seconds, for 423, 429 and 503.
    retry_after: Option<u64>,
    /// A `Set-Cookie` that clears an invalid session cookie (401).
    clear_cookie: Option<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
            clear_cookie: None,
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The same refusal, clearing the session cookie.
    pub fn clearing(mut self, cookie: String) -> Self {
        self.clear_cookie = Some(cookie);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn no_session() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "no valid session was presented")
    }

    pub fn not_logged_in() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "a logged-in session is needed")
    }

    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 16 KiB",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        )
    }

    pub fn unprocessable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn unavailable(detail: &'static str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail).retry_after(1)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// The refusal for an error status that poem produced before any handler ran.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found("no such resource"),
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this path does not take that method",
            ),
            s if s.is_client_error() => {
                Self::bad_request("the request does not match the documented parameters")
            }
            s => {
                tracing::error!(status = s.as_u16(), "request failed before its handler");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let problem = Problem::new(self.status, self.detail);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::builder()
            .status(self.status)
            .content_type(PROBLEM_JSON)
            .body(body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(cookie) = self
            .clear_cookie
            .and_then(|c| HeaderValue::try_from(c).ok())
        {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

impl From<InfraError> for Refusal {
    fn from(error: InfraError) -> Self {
        match error {
            InfraError::Unavailable(source) | InfraError::Interrupted(source) => {
                warn_unavailable(&source);
                Self::unavailable("the database is unavailable; try again later")
            }
            InfraError::Unexpected(source) => {
                tracing::error!(error = format!("{source:#}"), "unexpected failure");
                Self::internal()
            }
        }
    }
}

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

impl From<RateLimited> for Refusal {
    fn from(RateLimited(retry_after): RateLimited) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address; see Retry-After",
        )
        .retry_after(retry_after.seconds())
    }
}

impl From<Saturated> for Refusal {
    fn from(Saturated: Saturated) -> Self {
        Self::unavailable("password checking is busy; try again shortly")
    }
}

const BAD_CREDENTIALS: &str = "invalid username or password";

fn locked(retry_after: u64) -> Refusal {
    Refusal::new(
        StatusCode::LOCKED,
        "the username is locked after repeated login attempts; see Retry-After",
    )
    .retry_after(retry_after)
}

impl From<StartError> for Refusal {
    fn from(error: StartError) -> Self {
        match error {
            StartError::RateLimited(e) => e.into(),
            StartError::Infra(e) => e.into(),
        }
    }
}

impl From<LoginError> for Refusal {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Saturated(e) => e.into(),
            LoginError::Locked { retry_after, .. } => locked(retry_after.seconds()),
            LoginError::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, BAD_CREDENTIALS),
            LoginError::Infra(e) => e.into(),
        }
    }
}

impl From<ChangePasswordError> for Refusal {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::NotLoggedIn => Self::not_logged_in(),
            ChangePasswordError::Saturated(e) => e.into(),
            ChangePasswordError::Locked { retry_after, .. } => locked(retry_after.seconds()),
            ChangePasswordError::WrongPassword => Self::forbidden("the current password is wrong"),
            ChangePasswordError::Policy(e) => Self::unprocessable(e.to_string()),
            ChangePasswordError::Infra(e) => e.into(),
        }
    }
}

impl From<SetDataError> for Refusal {
    fn from(error: SetDataError) -> Self {
        match error {
            SetDataError::NoSession => Self::no_session(),
            SetDataError::TooLarge(e) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            SetDataError::Infra(e) => e.into(),
        }
    }
}

impl From<AccessError> for Refusal {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NoSession => Self::no_session(),
            AccessError::NotLoggedIn => Self::not_logged_in(),
            AccessError::NotSuperuser => Self::forbidden("a superuser is needed"),
            AccessError::Infra(e) => e.into(),
        }
    }
}

impl From<EndSessionError> for Refusal {
    fn from(error: EndSessionError) -> Self {
        match error {
            EndSessionError::NotFound => Self::not_found("no such session"),
            EndSessionError::Infra(e) => e.into(),
        }
    }
}

impl From<CreateUserError> for Refusal {
    fn from(error: CreateUserError) -> Self {
        match error {
            CreateUserError::InvalidUsername(e) => Self::unprocessable(e.to_string()),
            CreateUserError::Policy(e) => Self::unprocessable(e.to_string()),
            CreateUserError::Taken => Self::new(StatusCode::CONFLICT, "username taken"),
            CreateUserError::Saturated(e) => e.into(),
            CreateUserError::Infra(e) => e.into(),
        }
    }
}

impl From<ResetPasswordError> for Refusal {
    fn from(error: ResetPasswordError) -> Self {
        match error {
            ResetPasswordError::NotFound => Self::not_found("no such user"),
            ResetPasswordError::Policy(e) => Self::unprocessable(e.to_string()),
            ResetPasswordError::Saturated(e) => e.into(),
            ResetPasswordError::Infra(e) => e.into(),
        }
    }
}

impl From<UserError> for Refusal {
    fn from(error: UserError) -> Self {
        match error {
            UserError::NotFound => Self::not_found("no such user"),
            UserError::Infra(e) => e.into(),
        }
    }
}

/// The statuses one operation can refuse with.
pub trait Statuses: Send + Sync + 'static {
    const ALL: &'static [StatusCode];
}

/// Declares a set of refusal statuses for the operations that share it.
macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = [$($status:ident),* $(,)?];)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl $crate::http::problem::Statuses for $name {
            const ALL: &'static [::poem::http::StatusCode] = &[$(::poem::http::StatusCode::$status),*];
        }
    )*};
}
pub(crate) use statuses;

/// A refusal of an operation whose possible refusals are `S`.
#[derive(Debug)]
pub struct Refused<S: Statuses> {
    refusal: Refusal,
    _statuses: PhantomData<S>,
}

impl<S: Statuses> Refused<S> {
    pub fn refusal(&self) -> &Refusal {
        &self.refusal
    }
}

impl<S: Statuses> From<Refusal> for Refused<S> {
    fn from(refusal: Refusal) -> Self {
        // A refusal outside `S` is a defect in the table: a test build stops on it; a
        // release build still answers, and reports it.
        debug_assert!(
            S::ALL.contains(&refusal.status),
            "{} is not among the documented refusals",
            refusal.status
        );
        if !S::ALL.contains(&refusal.status) {
            tracing::error!(
                status = refusal.status.as_u16(),
                "an operation refused with an undocumented status"
            );
        }
        Self {
            refusal,
            _statuses: PhantomData,
        }
    }
}

/// Every domain error converts to every operation's refusal through `Refusal`.
macro_rules! refused_from {
    ($($error:ty),* $(,)?) => {$(
        impl<S: Statuses> From<$error> for Refused<S> {
            fn from(error: $error) -> Self {
                Refusal::from(error).into()
            }
        }
    )*};
}

refused_from!(
    InfraError,
    RateLimited,
    Saturated,
    StartError,
    LoginError,
    ChangePasswordError,
    SetDataError,
    AccessError,
    EndSessionError,
    CreateUserError,
    ResetPasswordError,
    UserError,
);

impl<S: Statuses> IntoResponse for Refused<S> {
    fn into_response(self) -> Response {
        self.refusal.into_response()
    }
}

impl<S: Statuses> From<Refused<S>> for poem::Error {
    fn from(refused: Refused<S>) -> Self {
        poem::Error::from_response(refused.into_response())
    }
}

/// What each status means to a client, and the headers it carries.
fn describe(status: StatusCode) -> (&'static str, Vec<MetaHeader>) {
    let retry_after = |description: &str| MetaHeader {
        name: "Retry-After".into(),
        description: Some(description.into()),
        required: true,
        deprecated: false,
        schema: u64::schema_ref(),
    };
    match status {
        StatusCode::BAD_REQUEST => (
            "Malformed request: a body that is not JSON, or a parameter of the wrong form.",
            vec![],
        ),
        StatusCode::UNAUTHORIZED => (
            "No valid session (or an anonymous one where a logged-in user is needed), or bad \
             credentials. A presented cookie that is not valid is cleared.",
            vec![MetaHeader {
                name: "Set-Cookie".into(),
                description: Some("Clears an invalid session cookie.".into()),
                required: false,
                deprecated: false,
                schema: String::schema_ref(),
            }],
        ),
        StatusCode::FORBIDDEN => (
            "Refused: a cookie-bearing request from another site (R12), a logged-in user \
             lacking the right, or a wrong current password.",
            vec![],
        ),
        StatusCode::NOT_FOUND => ("No such resource.", vec![]),
        StatusCode::CONFLICT => ("The name is taken.", vec![]),
        StatusCode::PAYLOAD_TOO_LARGE => ("The body is larger than 16 KiB.", vec![]),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("The body is not application/json.", vec![]),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "JSON of the wrong shape or types, or a value that breaks a rule (for example the \
             password policy).",
            vec![],
        ),
        StatusCode::LOCKED => (
            "The username is locked after repeated login attempts (R9: attempts are counted before their password is checked).",
            vec![retry_after("Whole seconds until the lock ends.")],
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            "Too many requests from this client address.",
            vec![retry_after(
                "Whole seconds until a request is admitted again.",
            )],
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "The database is unavailable, or password checking is busy; try again.",
            vec![retry_after("Whole seconds to wait before trying again.")],
        ),
        _ => ("Something went wrong on the server.", vec![]),
    }
}

impl<S: Statuses> ApiResponse for Refused<S> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: S::ALL
                .iter()
                .map(|status| {
                    let (description, headers) = describe(*status);
                    MetaResponse {
                        description,
                        status: Some(status.as_u16()),
                        status_range: None,
                        content: vec![MetaMediaType {
                            content_type: PROBLEM_JSON,
                            schema: Problem::schema_ref(),
                        }],
                        headers,
                    }
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_headers_of_their_status() {
        let locked = locked(600).into_response();
        assert_eq!(locked.status(), StatusCode::LOCKED);
        assert_eq!(locked.headers()[header::RETRY_AFTER], "600");
        assert_eq!(locked.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let busy = Refusal::from(Saturated).into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let cleared = Refusal::no_session()
            .clearing("c=; Max-Age=0".into())
            .into_response();
        assert_eq!(cleared.headers()[header::SET_COOKIE], "c=; Max-Age=0");
        assert!(cleared.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn every_status_with_retry_after_documents_it_as_required() {
        for status in [
            StatusCode::LOCKED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let (_, headers) = describe(status);
            assert!(
                headers
                    .iter()
                    .any(|h| h.name == "Retry-After" && h.required)
            );
        }
        let (_, headers) = describe(StatusCode::NOT_FOUND);
        assert!(headers.is_empty());
    }
}
