//! The JSON shapes of the API. `///` lines here are the documentation API consumers read.

use poem_openapi::{Enum, Object};
use time::OffsetDateTime;
use websessions_domain::{SessionKind, SessionPolicy, SessionRecord};

/// Who holds a session.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
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
/// `credential` in an API client's login or password-change answer.
#[derive(Object, Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The session's id (the part of the credential before the dot).
    pub id: i64,
    pub kind: Kind,
    /// The logged-in user; null for an anonymous session.
    pub user: Option<SessionUserView>,
    /// The client address the session was created from.
    pub ip_address: String,
    pub created_at: OffsetDateTime,
    /// The last successful login into this session; null when anonymous.
    pub authenticated_at: Option<OffsetDateTime>,
    pub last_activity_at: OffsetDateTime,
    /// When the session ends if it stays idle.
    pub idle_expires_at: OffsetDateTime,
    /// When the session ends regardless of activity; null when there is no absolute limit.
    pub absolute_expires_at: Option<OffsetDateTime>,
    /// The new credential (`<id>.<token>`): present only in the answer to an API client's
    /// login or password change. Send it as `Authorization: Bearer <credential>`.
    #[oai(skip_serializing_if_is_none)]
    pub credential: Option<String>,
}

impl SessionView {
    pub fn new(record: &SessionRecord, policy: &SessionPolicy) -> Self {
        let started = record
            .authenticated_at
            .map_or(record.created_at, |at| at.max(record.created_at));
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
            idle_expires_at: record.last_activity_at + policy.idle_timeout,
            absolute_expires_at: policy.absolute_timeout.map(|limit| started + limit),
            credential: None,
        }
    }
}

/// A login attempt.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// `browser` (default): the credential comes back in a cookie and the user's other
    /// browser sessions end. `api`: it comes back as `credential` in the body.
    pub client: Option<Kind>,
}

/// A password change by the session's own user.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 10 to 1024 characters.
    pub new_password: String,
}

/// Liveness or readiness.
#[derive(Object, Debug)]
pub struct Health {
    /// `ok`, or `unavailable` when the database cannot be reached.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;
    use websessions_domain::{ClientIp, SessionId};

    #[test]
    fn expiry_times_follow_the_stored_values_the_server_enforces() {
        let created = datetime!(2026-01-01 08:00 UTC);
        let record = SessionRecord {
            id: SessionId::new(3).unwrap(),
            token_hash: None,
            ip_address: ClientIp::new("192.0.2.1".parse().unwrap()),
            kind: SessionKind::Browser,
            user: None,
            created_at: created,
            authenticated_at: Some(created + Duration::hours(1)),
            last_activity_at: created + Duration::hours(2),
        };
        let view = SessionView::new(&record, &SessionPolicy::default());
        assert_eq!(
            view.idle_expires_at,
            created + Duration::hours(2) + Duration::minutes(30)
        );
        assert_eq!(
            view.absolute_expires_at,
            Some(created + Duration::hours(13))
        );
        let no_limit = SessionPolicy {
            absolute_timeout: None,
            ..SessionPolicy::default()
        };
        assert_eq!(
            SessionView::new(&record, &no_limit).absolute_expires_at,
            None
        );
    }
}
