//! Errors as RFC 9457 `application/problem+json`. Each domain error maps to a status in full
//! (no catch-all arm), so a new domain variant does not compile until it has an answer. 5xx
//! are logged with their whole chain and shown to clients as an opaque problem.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use websessions_domain::{
    ChangePasswordError, CreateUserError, InfraError, LoginError, SetDataError, UserError,
};

/// An RFC 9457 problem detail.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem this is.
    #[oai(rename = "type")]
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

/// Every error answer of the API.
#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// Malformed input.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid session, or an anonymous one where a logged-in user is needed, or bad
    /// credentials. A presented cookie that is not valid is cleared.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// Clears an invalid session cookie.
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
    /// A logged-in user lacking the right, a wrong current password, or a refused cross-site
    /// request.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Unknown resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The path exists but does not take that method.
    #[oai(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Json<Problem>),
    /// The name is taken.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than 16 KiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    TooLarge(Json<Problem>),
    /// Well-formed input that breaks a rule (for example the password policy).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// The account is locked after repeated failed logins.
    #[oai(status = 423, content_type = "application/problem+json")]
    Locked(
        Json<Problem>,
        /// Whole seconds until the lock ends.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Something went wrong on the server.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// The database is unavailable; try again later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn json(status: StatusCode, detail: impl Into<String>) -> Json<Problem> {
    Json(Problem::new(status, detail))
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(json(StatusCode::BAD_REQUEST, detail))
    }

    pub fn unauthorized(detail: impl Into<String>, clear_cookie: Option<String>) -> Self {
        Self::Unauthorized(json(StatusCode::UNAUTHORIZED, detail), clear_cookie)
    }

    pub fn no_session(clear_cookie: Option<String>) -> Self {
        Self::unauthorized("no valid session was presented", clear_cookie)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(json(StatusCode::FORBIDDEN, detail))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(json(StatusCode::NOT_FOUND, detail))
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::TooLarge(json(StatusCode::PAYLOAD_TOO_LARGE, detail))
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable(json(StatusCode::UNPROCESSABLE_ENTITY, detail))
    }

    fn locked(retry_after: u64) -> Self {
        Self::Locked(
            json(
                StatusCode::LOCKED,
                "the account is locked after repeated failed logins; see Retry-After",
            ),
            retry_after,
        )
    }

    /// The problem for an error status that poem produced before any handler ran.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found("no such resource"),
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large("the body is larger than 16 KiB"),
            StatusCode::UNAUTHORIZED => Self::no_session(None),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(json(status, "try again later")),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(json(
                StatusCode::METHOD_NOT_ALLOWED,
                "this path does not take that method",
            )),
            s if s.is_client_error() => Self::bad_request(
                "the request does not match the documented parameters or JSON body",
            ),
            s => {
                tracing::error!(status = s.as_u16(), "request failed before its handler");
                Self::Internal(json(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
            }
        }
    }
}

impl From<InfraError> for ApiError {
    fn from(error: InfraError) -> Self {
        match error {
            InfraError::Unavailable(source) => {
                tracing::warn!(error = format!("{source:#}"), "database unavailable");
                Self::Unavailable(json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; try again later",
                ))
            }
            InfraError::Unexpected(source) => {
                tracing::error!(error = format!("{source:#}"), "unexpected failure");
                Self::Internal(json(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
            }
        }
    }
}

const BAD_CREDENTIALS: &str = "invalid username or password";

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Locked { retry_after, .. } => Self::locked(retry_after.seconds()),
            LoginError::InvalidCredentials => Self::unauthorized(BAD_CREDENTIALS, None),
            LoginError::Infra(e) => e.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::NotLoggedIn => {
                Self::unauthorized("a logged-in session is needed", None)
            }
            ChangePasswordError::Locked { retry_after, .. } => Self::locked(retry_after.seconds()),
            ChangePasswordError::WrongPassword => Self::forbidden("the current password is wrong"),
            ChangePasswordError::Policy(e) => Self::unprocessable(e.to_string()),
            ChangePasswordError::Infra(e) => e.into(),
        }
    }
}

impl From<SetDataError> for ApiError {
    fn from(error: SetDataError) -> Self {
        match error {
            SetDataError::NoSession => Self::no_session(None),
            SetDataError::TooLarge(e) => Self::too_large(e.to_string()),
            SetDataError::Infra(e) => e.into(),
        }
    }
}

impl From<CreateUserError> for ApiError {
    fn from(error: CreateUserError) -> Self {
        match error {
            CreateUserError::InvalidUsername(e) => Self::unprocessable(e.to_string()),
            CreateUserError::Policy(e) => Self::unprocessable(e.to_string()),
            CreateUserError::Taken => Self::Conflict(json(StatusCode::CONFLICT, "username taken")),
            CreateUserError::Infra(e) => e.into(),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::NotFound => Self::not_found("no such user"),
            UserError::Policy(e) => Self::unprocessable(e.to_string()),
            UserError::Infra(e) => e.into(),
        }
    }
}
