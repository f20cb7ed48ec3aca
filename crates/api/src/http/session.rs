//! The session holder's endpoints (SPEC section 4): start, recognise, log in, log out, client
//! state and password change, with their wire types and the refusals each can answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use websessions_domain::{
    ChangePasswordError, InfraError, Issued, LoginAttempt, LoginError, Password, RateLimited,
    SessionKind, SetDataError, StartError,
};

use super::body::{BodyRefusal, JsonBody};
use super::context::Context;
use super::edge::{clear_cookie, set_cookie};
use super::problem::{Refused, refusals};
use super::refusals::NoSession;
use super::security::{OptionalSession, RequiredSession};
use super::wire::{Kind, SessionView};

#[derive(Tags)]
enum Tag {
    /// Starting, recognising, logging into and out of a session.
    Session,
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

refusals! {
    /// Recognising a session, or reading its client state.
    Recognition = NoSession | InfraError;
    /// Logging in.
    LoginRefusal = RateLimited | BodyRefusal | LoginError;
    /// Logging out.
    LogoutRefusal = InfraError;
    /// Replacing the client state.
    StateRefusal = BodyRefusal | SetDataError;
    /// Changing one's own password.
    PasswordRefusal = BodyRefusal | ChangePasswordError;
}

/// The session holder's endpoints.
#[derive(Debug)]
pub struct SessionApi;

/// The answer carrying a session's new credential: a browser's in the cookie, an API
/// client's in the body.
fn reissued(ctx: &Context, issued: &Issued) -> Reissued {
    let mut view = SessionView::new(&issued.session, &ctx.policy);
    let cookie = match (&issued.credential, issued.session.kind) {
        (Some(credential), SessionKind::Browser) => Some(set_cookie(&ctx.edge.cookie, credential)),
        (Some(credential), SessionKind::Api) => {
            view.credential = Some(credential.expose());
            None
        }
        (None, _) => None,
    };
    Reissued::Ok(Json(view), cookie)
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: OptionalSession,
    ) -> Result<Started, Refused<StartError>> {
        let presented = ctx.presented(req);
        let issued = ctx.holder.start(&presented).await?;
        let view = Json(SessionView::new(&issued.session, &ctx.policy));
        Ok(match &issued.credential {
            Some(credential) => Started::Created(view, set_cookie(&ctx.edge.cookie, credential)),
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<Recognised, Refused<Recognition>> {
        let presented = ctx.presented(req);
        let record = ctx.holder.recognise(&presented).await?.ok_or(NoSession)?;
        Ok(Recognised::Ok(Json(SessionView::new(&record, &ctx.policy))))
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        body: JsonBody<LoginRequest>,
        _auth: OptionalSession,
    ) -> Result<Reissued, Refused<LoginRefusal>> {
        let presented = ctx.presented(req);
        let pass = ctx.holder.admit_login(presented.ip)?;
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
        let issued = ctx.holder.login(&presented, pass, attempt).await?;
        Ok(reissued(&ctx, &issued))
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: OptionalSession,
    ) -> Result<LoggedOut, Refused<LogoutRefusal>> {
        let presented = ctx.presented(req);
        ctx.holder.logout(&presented).await?;
        Ok(LoggedOut::NoContent(clear_cookie(&ctx.edge.cookie)))
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<StateAnswer, Refused<Recognition>> {
        let presented = ctx.presented(req);
        let data = ctx.holder.data(&presented).await?.ok_or(NoSession)?;
        Ok(StateAnswer::Ok(Json(
            data.into_object().into_iter().collect(),
        )))
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        body: JsonBody<ClientState>,
        _auth: RequiredSession,
    ) -> Result<StateAnswer, Refused<StateRefusal>> {
        let presented = ctx.presented(req);
        let object = body.parse()?.into_iter().collect();
        let data = ctx.holder.set_data(&presented, object).await?;
        Ok(StateAnswer::Ok(Json(
            data.into_object().into_iter().collect(),
        )))
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        body: JsonBody<PasswordChange>,
        _auth: RequiredSession,
    ) -> Result<Reissued, Refused<PasswordRefusal>> {
        let presented = ctx.presented(req);
        let PasswordChange {
            current_password,
            new_password,
        } = body.parse()?;
        let (current, new) = (Password::new(current_password), Password::new(new_password));
        let issued = ctx.holder.change_password(&presented, current, new).await?;
        Ok(reissued(&ctx, &issued))
    }
}
