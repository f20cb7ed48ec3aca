//! The session holder's endpoints (SPEC section 4): start, recognise, log in, log out, client
//! state and password change, with their wire types and the refusals each can answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use time::OffsetDateTime;
use websessions_domain::{
    Issued, LoginAttempt, Password, SessionKind, SessionPolicy, SessionRecord, SetDataError,
};

use super::body::JsonBody;
use super::context::Context;
use super::edge::{clear_cookie, set_cookie};
use super::problem::{Refused, statuses};
use super::security::{OptionalSession, RequiredSession};

#[derive(Tags)]
enum Tag {
    /// Starting, recognising, logging into and out of a session.
    Session,
}

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

/// A login attempt. `client` is `browser` (the default: the credential comes back in the
/// session cookie and the user's other browser sessions end) or `api` (it comes back as
/// `credential` in the answer).
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub client: Option<Kind>,
}

/// A password change by the session's own user; the new password is 10 to 1024 characters.
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// The session's client state: any JSON object of at most 16 KiB.
pub type ClientState = BTreeMap<String, serde_json::Value>;

/// A started session.
#[derive(ApiResponse)]
pub(crate) enum Started {
    /// The presented session, which is valid.
    #[oai(status = 200)]
    Ok(Json<SessionView>),
    /// A new anonymous browser session; its credential is in the cookie.
    #[oai(status = 201)]
    Created(
        Json<SessionView>,
        /// The session cookie.
        #[oai(header = "Set-Cookie")]
        String,
    ),
}

/// The recognised session.
#[derive(ApiResponse)]
pub(crate) enum Recognised {
    /// The presented session; recognition counted as activity.
    #[oai(status = 200)]
    Ok(Json<SessionView>),
}

/// A session with a new credential.
#[derive(ApiResponse)]
pub(crate) enum Reissued {
    /// The session; a browser's new credential is in the cookie, an API client's in
    /// `credential`.
    #[oai(status = 200)]
    Ok(
        Json<SessionView>,
        /// The browser's new session cookie.
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
}

/// Logged out.
#[derive(ApiResponse)]
pub(crate) enum LoggedOut {
    /// Done; the session cookie is cleared.
    #[oai(status = 204)]
    NoContent(
        /// Clears the session cookie.
        #[oai(header = "Set-Cookie")]
        String,
    ),
}

/// The session's client state.
#[derive(ApiResponse)]
pub(crate) enum StateAnswer {
    /// The JSON object.
    #[oai(status = 200)]
    Ok(Json<ClientState>),
}

statuses! {
    /// Starting a session.
    StartStatuses = [BAD_REQUEST, FORBIDDEN, PAYLOAD_TOO_LARGE, TOO_MANY_REQUESTS,
        INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
    /// Reading what a valid session is or holds.
    ReadStatuses = [UNAUTHORIZED, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
    /// Logging in.
    LoginStatuses = [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE, UNPROCESSABLE_ENTITY, LOCKED, TOO_MANY_REQUESTS,
        INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
    /// Logging out.
    LogoutStatuses = [BAD_REQUEST, FORBIDDEN, PAYLOAD_TOO_LARGE, INTERNAL_SERVER_ERROR,
        SERVICE_UNAVAILABLE];
    /// Replacing the client state.
    StateStatuses = [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE, UNPROCESSABLE_ENTITY, INTERNAL_SERVER_ERROR,
        SERVICE_UNAVAILABLE];
    /// Changing one's own password.
    PasswordStatuses = [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE, UNPROCESSABLE_ENTITY, LOCKED, INTERNAL_SERVER_ERROR,
        SERVICE_UNAVAILABLE];
}

/// The session holder's endpoints.
#[derive(Debug)]
pub struct SessionApi {
    pub ctx: Arc<Context>,
}

impl SessionApi {
    /// The answer carrying a session's new credential: a browser's in the cookie, an API
    /// client's in the body.
    fn reissued(&self, issued: &Issued) -> Reissued {
        let mut view = SessionView::new(&issued.session, &self.ctx.policy);
        let cookie = match (&issued.credential, issued.session.kind) {
            (Some(credential), SessionKind::Browser) => {
                Some(set_cookie(&self.ctx.edge.cookie, credential))
            }
            (Some(credential), SessionKind::Api) => {
                view.credential = Some(credential.expose());
                None
            }
            (None, _) => None,
        };
        Reissued::Ok(Json(view), cookie)
    }
}

#[OpenApi]
impl SessionApi {
    /// Start a session
    ///
    /// Returns the presented session when it is valid (200); otherwise creates an anonymous
    /// browser session bound to the client's address and sets its cookie (201). New sessions
    /// are limited per client address (429).
    #[oai(
        path = "/v1/session",
        method = "post",
        tag = "Tag::Session",
        operation_id = "startSession"
    )]
    async fn start(
        &self,
        req: &Request,
        _auth: OptionalSession,
    ) -> Result<Started, Refused<StartStatuses>> {
        let (presented, _) = self.ctx.presented(req);
        let issued = self.ctx.holder.start(&presented).await?;
        let view = Json(SessionView::new(&issued.session, &self.ctx.policy));
        Ok(match &issued.credential {
            Some(credential) => {
                Started::Created(view, set_cookie(&self.ctx.edge.cookie, credential))
            }
            None => Started::Ok(view),
        })
    }

    /// Recognise the session
    ///
    /// The presented session, when valid; recognition counts as activity. It never creates
    /// a session. A gateway asks `GET /v1/auth` instead.
    #[oai(
        path = "/v1/session",
        method = "get",
        tag = "Tag::Session",
        operation_id = "getSession"
    )]
    async fn current(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<Recognised, Refused<ReadStatuses>> {
        let (presented, carrier) = self.ctx.presented(req);
        match self.ctx.holder.recognise(&presented).await? {
            Some(record) => Ok(Recognised::Ok(Json(SessionView::new(
                &record,
                &self.ctx.policy,
            )))),
            None => Err(self.ctx.no_session(carrier).into()),
        }
    }

    /// Log in
    ///
    /// Binds the user to the presented session (when it is anonymous or already theirs and
    /// of the same kind) or to a new one, and rotates its token: the previous credential
    /// stops working. A browser gets the new credential in the cookie, an API client as
    /// `credential` in the body. Unknown user, wrong password and disabled account get the
    /// same 401. After repeated failures the username is locked (423 with Retry-After), and
    /// then even the right password is refused until the lock ends. Attempts are limited
    /// per client address (429), and refused with 503 while password checking is saturated.
    #[oai(
        path = "/v1/session/login",
        method = "post",
        tag = "Tag::Session",
        operation_id = "login"
    )]
    async fn login(
        &self,
        req: &Request,
        body: JsonBody<LoginRequest>,
        _auth: OptionalSession,
    ) -> Result<Reissued, Refused<LoginStatuses>> {
        let (presented, _) = self.ctx.presented(req);
        // R5f: the address's limit comes before the body is even read.
        let pass = self.ctx.holder.admit_login(presented.ip)?;
        let LoginRequest {
            username,
            password,
            client,
        } = body.parse()?;
        let attempt = LoginAttempt {
            username,
            password: Password::new(password),
            kind: client.unwrap_or(Kind::Browser).into(),
        };
        let issued = self.ctx.holder.login(&presented, pass, attempt).await?;
        Ok(self.reissued(&issued))
    }

    /// Log out
    ///
    /// Ends the presented session for good and clears the cookie. Answers 204 also when no
    /// valid session was presented.
    #[oai(
        path = "/v1/session/logout",
        method = "post",
        tag = "Tag::Session",
        operation_id = "logout"
    )]
    async fn logout(
        &self,
        req: &Request,
        _auth: OptionalSession,
    ) -> Result<LoggedOut, Refused<LogoutStatuses>> {
        let (presented, _) = self.ctx.presented(req);
        self.ctx.holder.logout(&presented).await?;
        Ok(LoggedOut::NoContent(clear_cookie(&self.ctx.edge.cookie)))
    }

    /// Read the client state
    ///
    /// The session's JSON object (empty until set). It survives login and is wiped by
    /// logout.
    #[oai(
        path = "/v1/session/data",
        method = "get",
        tag = "Tag::Session",
        operation_id = "getSessionData"
    )]
    async fn data(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<StateAnswer, Refused<ReadStatuses>> {
        let (presented, carrier) = self.ctx.presented(req);
        match self.ctx.holder.data(&presented).await? {
            Some(data) => Ok(StateAnswer::Ok(Json(
                data.into_object().into_iter().collect(),
            ))),
            None => Err(self.ctx.no_session(carrier).into()),
        }
    }

    /// Replace the client state
    ///
    /// Stores a JSON object of at most 16 KiB (the request body) as the session's state and
    /// answers with it.
    #[oai(
        path = "/v1/session/data",
        method = "put",
        tag = "Tag::Session",
        operation_id = "setSessionData"
    )]
    async fn set_data(
        &self,
        req: &Request,
        body: JsonBody<ClientState>,
        _auth: RequiredSession,
    ) -> Result<StateAnswer, Refused<StateStatuses>> {
        let (presented, carrier) = self.ctx.presented(req);
        let object = body.parse()?.into_iter().collect();
        match self.ctx.holder.set_data(&presented, object).await {
            Ok(data) => Ok(StateAnswer::Ok(Json(
                data.into_object().into_iter().collect(),
            ))),
            Err(SetDataError::NoSession) => Err(self.ctx.no_session(carrier).into()),
            Err(other) => Err(other.into()),
        }
    }

    /// Change one's own password
    ///
    /// Needs the current password (a wrong one answers 403 and counts as a failed login).
    /// Rotates this session's credential (a browser gets a new cookie, an API client the new
    /// `credential`) and ends every other session of the user.
    #[oai(
        path = "/v1/session/password",
        method = "put",
        tag = "Tag::Session",
        operation_id = "changePassword"
    )]
    async fn change_password(
        &self,
        req: &Request,
        body: JsonBody<PasswordChange>,
        _auth: RequiredSession,
    ) -> Result<Reissued, Refused<PasswordStatuses>> {
        let (presented, _) = self.ctx.presented(req);
        let PasswordChange {
            current_password,
            new_password,
        } = body.parse()?;
        let (current, new) = (Password::new(current_password), Password::new(new_password));
        let issued = self
            .ctx
            .holder
            .change_password(&presented, current, new)
            .await?;
        Ok(self.reissued(&issued))
    }
}
