//! The wire types more than one endpoint family answers with: a session as its holder or an
//! operator sees it, a session's kind, and the empty answer of an action. The families import
//! these and never each other.

use poem_openapi::{ApiResponse, Enum, Object, Tags};
use time::OffsetDateTime;
use websessions_domain::{EndSessionError, SessionId, SessionKind, SessionPolicy, SessionRecord};

/// Who holds a session.
#[derive(Enum, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A person's browser, holding the credential in an HttpOnly cookie.
    Browser,
    /// An API client, sending the credential as `Authorization: Bearer`.
    Api,
}

impl From<SessionKind> for Kind {
    fn from(kind: SessionKind) -> Self {
        match kind {
            SessionKind::Browser => Self::Browser,
            SessionKind::Api => Self::Api,
        }
    }
}

impl From<Kind> for SessionKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Browser => Self::Browser,
            Kind::Api => Self::Api,
        }
    }
}

/// The user a session belongs to.
#[derive(Object, Clone, Debug, PartialEq, Eq)]
pub struct SessionUserView {
    pub username: String,
    pub superuser: bool,
}

/// A session, as its holder or an operator sees it. It never contains the token, except
/// `credential` in an API client's login or password-change answer. `user` is null for an
/// anonymous session, `authenticated_at` null until a login, `absolute_expires_at` null
/// without an absolute limit.
#[derive(Object, Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The session's id (the part of the credential before the dot).
    pub id: i64,
    pub kind: Kind,
    #[oai(nullable)]
    pub user: Option<SessionUserView>,
    /// The client address the session was created from.
    pub ip_address: String,
    pub created_at: OffsetDateTime,
    /// The last successful login into this session.
    #[oai(nullable)]
    pub authenticated_at: Option<OffsetDateTime>,
    pub last_activity_at: OffsetDateTime,
    /// When the session ends if it stays idle.
    pub idle_expires_at: OffsetDateTime,
    /// When the session ends regardless of activity.
    #[oai(nullable)]
    pub absolute_expires_at: Option<OffsetDateTime>,
    /// The new credential (`<id>.<token>`): present only in the answer to an API client's
    /// login or password change. Send it as `Authorization: Bearer <credential>`.
    #[oai(skip_serializing_if_is_none)]
    pub credential: Option<String>,
}

impl SessionView {
    pub fn new(record: &SessionRecord, policy: &SessionPolicy) -> Self {
        let expiry = policy.expiry(record);
        Self {
            id: record.id.get(),
            kind: record.kind.into(),
            user: record.user.as_ref().map(|u| SessionUserView {
                username: u.username.to_string(),
                superuser: u.superuser,
            }),
            ip_address: record.ip_address.to_string(),
            created_at: record.created_at,
            authenticated_at: record.authenticated_at,
            last_activity_at: record.last_activity_at,
            idle_expires_at: expiry.idle,
            absolute_expires_at: expiry.absolute,
            credential: None,
        }
    }
}

/// The document's tag for administration, which two families share (sessions and users).
#[derive(Tags)]
pub(crate) enum AdminTag {
    /// Superusers: every session, and user accounts.
    Admin,
}

/// Done, with nothing to say.
#[derive(ApiResponse)]
pub(crate) enum Ended {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

/// A session id from a path: one that can name no session is simply not found.
pub(crate) fn session_id(id: i64) -> Result<SessionId, EndSessionError> {
    SessionId::new(id).ok_or(EndSessionError::NotFound)
}
