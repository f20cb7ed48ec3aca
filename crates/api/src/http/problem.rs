//! Refusals as RFC 9457 `application/problem+json`, and how each operation's statuses follow
//! from its error types.
//!
//! An error type becomes an answer through `Refuse`, implemented with `refuse!`: each variant
//! names its status once, and that one token is both the status the variant answers with and
//! the status the document lists, so the two cannot disagree. An operation answers
//! `Refused<E>`, where `E` is its own error type, usually an enum of the error types it meets
//! (`refusals!`), and `Refused<E>` converts from those types only: a handler that meets an
//! error its operation does not declare does not compile. What the HTTP guard refuses before
//! any handler runs (R12, the body bound, a malformed parameter) is added to every operation
//! by the document pass, from the guard's own declaration (`guard::statuses`).
//! 5xx are logged with their whole chain and shown to clients as an opaque problem.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};

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

/// Marks an answer that refused the presented credential as no session: the guard clears the
/// session cookie when the credential came in it.
#[derive(Clone, Copy, Debug)]
pub struct SessionRefused;

/// A refusal: a status, a detail for people, and the headers its status carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    detail: Cow<'static, str>,
    /// Whole seconds, for 423, 429 and 503.
    retry_after: Option<u64>,
    /// The presented credential is no valid session (its cookie is cleared).
    no_session: bool,
}

impl Refusal {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
            no_session: false,
        }
    }

    /// The same refusal, with `Retry-After` in whole seconds (at least 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The same refusal, saying the presented credential is no valid session.
    pub fn no_session(mut self) -> Self {
        self.no_session = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The refusal for an error status that poem produced before any handler ran.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(status, "no such resource"),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "the body is larger than 16 KiB"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, "this path does not take that method")
            }
            s if s.is_client_error() => Self::new(
                StatusCode::BAD_REQUEST,
                "the request does not match the documented parameters",
            ),
            s => {
                tracing::error!(status = s.as_u16(), "request failed before its handler");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
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
        if self.no_session {
            response.set_data(SessionRefused);
        }
        response
    }
}

/// An error that an operation can be refused with: every status it can answer, and the
/// answer for each value. Implemented with `refuse!`, so that each variant's status is
/// written once for both.
pub trait Refuse: Sized {
    /// Adds every status a value of this type can be answered with to `into`.
    fn statuses(into: &mut Vec<StatusCode>);

    /// The answer for this value.
    fn refusal(self) -> Refusal;
}

/// Implements `Refuse` for error types, one arm a variant: either
/// `pattern => STATUS(detail)` with optional `.retry_after(seconds)` or `.no_session()`, or
/// `pattern => part(binding: Type)` for a variant that holds another `Refuse` type.
macro_rules! refuse {
    (@statuses $into:ident part ($binding:ident : $part:ty)) => {
        <$part as $crate::http::problem::Refuse>::statuses($into);
    };
    (@statuses $into:ident $status:ident $detail:tt) => {
        $into.push(::poem::http::StatusCode::$status);
    };
    (@refusal part ($binding:ident : $part:ty)) => {
        $crate::http::problem::Refuse::refusal($binding)
    };
    (@refusal $status:ident ($detail:expr) $(. $modifier:ident $arguments:tt)*) => {
        $crate::http::problem::Refusal::new(::poem::http::StatusCode::$status, $detail)
            $(. $modifier $arguments)*
    };
    ($($error:ty {
        $($pattern:pat => $kind:ident $arguments:tt $(. $modifier:ident $modifier_arguments:tt)*),+ $(,)?
    })*) => {$(
        impl $crate::http::problem::Refuse for $error {
            fn statuses(into: &mut Vec<::poem::http::StatusCode>) {
                $($crate::http::problem::refuse!(@statuses into $kind $arguments);)+
            }

            #[allow(unused_variables)]
            fn refusal(self) -> $crate::http::problem::Refusal {
                match self {
                    $($pattern => $crate::http::problem::refuse!(
                        @refusal $kind $arguments $(. $modifier $modifier_arguments)*
                    ),)+
                }
            }
        }
    )*};
}
pub(crate) use refuse;

/// Declares an operation's error type: an enum with one variant per error type it meets,
/// named after it, whose statuses are theirs together. `Refused<Name>` converts from each of
/// those types and from nothing else.
macro_rules! refusals {
    ($($(#[$doc:meta])* $name:ident = $($part:ident)|+;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        #[allow(clippy::enum_variant_names)]
        pub(crate) enum $name {
            $($part($part),)+
        }

        impl $crate::http::problem::Refuse for $name {
            fn statuses(into: &mut Vec<::poem::http::StatusCode>) {
                $(<$part as $crate::http::problem::Refuse>::statuses(into);)+
            }

            fn refusal(self) -> $crate::http::problem::Refusal {
                match self {
                    $(Self::$part(error) => $crate::http::problem::Refuse::refusal(error),)+
                }
            }
        }

        $(impl From<$part> for $crate::http::problem::Refused<$name> {
            fn from(error: $part) -> Self {
                $crate::http::problem::Refused::new($name::$part(error))
            }
        })+
    )*};
}
pub(crate) use refusals;

/// An operation's refusal, of its error type `E`.
#[derive(Debug)]
pub struct Refused<E> {
    refusal: Refusal,
    _error: PhantomData<E>,
}

impl<E: Refuse> Refused<E> {
    pub fn new(error: E) -> Self {
        Self {
            refusal: error.refusal(),
            _error: PhantomData,
        }
    }

    pub fn refusal(&self) -> &Refusal {
        &self.refusal
    }

    /// Every status `E` can be answered with, once each, in order.
    pub fn statuses() -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        E::statuses(&mut statuses);
        statuses.sort();
        statuses.dedup();
        statuses
    }
}

impl<E: Refuse> From<E> for Refused<E> {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl<E> IntoResponse for Refused<E>
where
    E: Send,
{
    fn into_response(self) -> Response {
        self.refusal.into_response()
    }
}

impl<E: Send> From<Refused<E>> for poem::Error {
    fn from(refused: Refused<E>) -> Self {
        let no_session = refused.refusal.no_session;
        let mut error = poem::Error::from_response(refused.into_response());
        // An error's own data replaces its response's when it becomes one again.
        if no_session {
            error.set_data(SessionRefused);
        }
        error
    }
}

/// What each status means to a client, and the headers it carries.
pub(crate) fn describe(status: StatusCode) -> (&'static str, Vec<MetaHeader>) {
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
             credentials. A presented cookie that names no session is cleared.",
            vec![MetaHeader {
                name: "Set-Cookie".into(),
                description: Some("Clears an invalid session cookie.".into()),
                required: false,
                deprecated: false,
                schema: String::schema_ref(),
            }],
        ),
        StatusCode::FORBIDDEN => (
            "Refused: a browser's state-changing request from another site (R12), a logged-in \
             user lacking the right, or a wrong current password.",
            vec![],
        ),
        StatusCode::NOT_FOUND => ("No such resource.", vec![]),
        StatusCode::REQUEST_TIMEOUT => (
            "The body did not arrive within the body timeout; an HTTP/1.1 connection is closed.",
            vec![],
        ),
        StatusCode::CONFLICT => ("The name is taken.", vec![]),
        StatusCode::PAYLOAD_TOO_LARGE => ("The body is larger than 16 KiB.", vec![]),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("The body is not application/json.", vec![]),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "JSON of the wrong shape or types, or a value that breaks a rule (for example the \
             password policy).",
            vec![],
        ),
        StatusCode::LOCKED => (
            "The username is locked after repeated login attempts (R9: attempts are counted \
             before their password is checked).",
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

/// The document's response for `status`.
pub(crate) fn meta_response(status: StatusCode) -> MetaResponse {
    let (description, headers) = describe(status);
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
}

impl<E: Refuse + Send> ApiResponse for Refused<E> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: Self::statuses().into_iter().map(meta_response).collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Inner {
        Busy,
    }

    #[derive(Debug)]
    enum Outer {
        Locked(u64),
        Missing,
        Inner(Inner),
    }

    refuse! {
        Inner {
            Self::Busy => SERVICE_UNAVAILABLE("busy").retry_after(1),
        }
        Outer {
            Self::Locked(seconds) => LOCKED("locked").retry_after(seconds),
            Self::Missing => NOT_FOUND("no such thing").no_session(),
            Self::Inner(inner) => part(inner: Inner),
        }
    }

    #[test]
    fn each_variant_answers_the_status_its_type_declares() {
        let statuses = Refused::<Outer>::statuses();
        assert_eq!(
            statuses,
            [
                StatusCode::NOT_FOUND,
                StatusCode::LOCKED,
                StatusCode::SERVICE_UNAVAILABLE
            ]
        );
        for value in [
            Outer::Locked(600),
            Outer::Missing,
            Outer::Inner(Inner::Busy),
        ] {
            let refusal = value.refusal();
            assert!(statuses.contains(&refusal.status()), "{refusal:?}");
        }
    }

    #[test]
    fn refusals_carry_the_headers_of_their_status() {
        let locked = Outer::Locked(600).refusal().into_response();
        assert_eq!(locked.status(), StatusCode::LOCKED);
        assert_eq!(locked.headers()[header::RETRY_AFTER], "600");
        assert_eq!(locked.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let missing = Outer::Missing.refusal().into_response();
        assert!(missing.headers().get(header::RETRY_AFTER).is_none());
        assert!(missing.data::<SessionRefused>().is_some());
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
