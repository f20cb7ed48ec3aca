//! Self-service (`/v1/me`) and superuser (`/v1/admin`) endpoints (SPEC §4, OWASP ASVS 5.0
//! chapter 7): users see and end their own sessions; superusers see and end anyone's, and
//! manage users.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use time::OffsetDateTime;
use websessions_domain::{LockoutState, Password, SessionId, SessionQuery, User};

use super::api::{Answer, Context, SessionAuth};
use super::model::{Kind, SessionView};
use super::problem::ApiError;

#[derive(Tags)]
enum Tag {
    /// A logged-in user's own sessions.
    Me,
    /// Superusers: every session, and user accounts.
    Admin,
}

/// One of the caller's own sessions.
#[derive(Object, Debug)]
pub struct MySession {
    pub id: i64,
    pub kind: Kind,
    pub ip_address: String,
    pub created_at: OffsetDateTime,
    pub last_activity_at: OffsetDateTime,
    /// Whether this is the session the request came with.
    pub current: bool,
}

/// The caller's valid sessions, by id.
#[derive(Object, Debug)]
pub struct MySessions {
    pub items: Vec<MySession>,
}

/// A page of sessions.
#[derive(Object, Debug)]
pub struct SessionPage {
    pub items: Vec<SessionView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<i64>,
}

/// How many sessions.
#[derive(Object, Debug)]
pub struct Count {
    pub count: u64,
}

/// How many rows maintenance deleted.
#[derive(Object, Debug)]
pub struct Deleted {
    pub deleted: u64,
}

/// A user account.
#[derive(Object, Debug)]
pub struct UserView {
    pub username: String,
    pub superuser: bool,
    /// A disabled user cannot log in and has no sessions.
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            username: user.username.to_string(),
            superuser: user.superuser,
            disabled: user.disabled,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
        }
    }
}

/// A user account with its lockout state.
#[derive(Object, Debug)]
pub struct UserDetail {
    #[oai(flatten)]
    pub user: UserView,
    /// Failed logins since the last successful one or the last unlock.
    pub failure_count: u32,
    /// Set while the username is locked.
    pub locked_until: Option<OffsetDateTime>,
}

/// The users, by username.
#[derive(Object, Debug)]
pub struct UserList {
    pub items: Vec<UserView>,
}

/// A new user.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct NewUserRequest {
    /// 1 to 191 characters of letters, digits and `, _ - { } . @`.
    pub username: String,
    /// 10 to 1024 characters.
    pub password: String,
    #[oai(default)]
    pub superuser: bool,
}

/// A password set by an operator.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct NewPasswordRequest {
    /// 10 to 1024 characters.
    pub new_password: String,
}

#[derive(ApiResponse)]
pub(crate) enum MySessionsAnswer {
    /// The caller's valid sessions.
    #[oai(status = 200)]
    Ok(Json<MySessions>),
}

#[derive(ApiResponse)]
pub(crate) enum Ended {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub(crate) enum PageAnswer {
    /// A page of valid sessions, by id.
    #[oai(status = 200)]
    Ok(Json<SessionPage>),
}

#[derive(ApiResponse)]
pub(crate) enum CountAnswer {
    /// The count.
    #[oai(status = 200)]
    Ok(Json<Count>),
}

#[derive(ApiResponse)]
pub(crate) enum PurgeAnswer {
    /// What maintenance deleted.
    #[oai(status = 200)]
    Ok(Json<Deleted>),
}

#[derive(ApiResponse)]
pub(crate) enum CreatedUser {
    /// The new user.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
pub(crate) enum UsersAnswer {
    /// The users.
    #[oai(status = 200)]
    Ok(Json<UserList>),
}

#[derive(ApiResponse)]
pub(crate) enum UserAnswer {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<UserDetail>),
}

/// At most this many of one's own sessions are listed (a person has a handful; API clients
/// that log in without ever logging out could have more).
const MY_SESSIONS_LIMIT: u64 = 500;

fn session_id(id: i64) -> Answer<SessionId> {
    SessionId::new(id).ok_or_else(|| ApiError::not_found("no such session"))
}

/// Self-service and superuser endpoints.
#[derive(Debug)]
pub struct AccountApi {
    pub ctx: Arc<Context>,
}

#[OpenApi]
impl AccountApi {
    /// List my sessions
    ///
    /// The logged-in user's valid sessions, marking the one this request came with.
    #[oai(path = "/v1/me/sessions", method = "get", tag = "Tag::Me")]
    async fn my_sessions(&self, req: &Request, _auth: SessionAuth) -> Answer<MySessionsAnswer> {
        let (current, user) = self.ctx.logged_in(req).await?;
        let query = SessionQuery {
            user: Some(user.id),
            active_since: None,
            after: None,
            limit: MY_SESSIONS_LIMIT,
        };
        let items = self
            .ctx
            .service
            .list_sessions(query)
            .await?
            .into_iter()
            .map(|s| MySession {
                id: s.id.get(),
                kind: s.kind.into(),
                ip_address: s.ip_address.to_string(),
                created_at: s.created_at,
                last_activity_at: s.last_activity_at,
                current: s.id == current.id,
            })
            .collect();
        Ok(MySessionsAnswer::Ok(Json(MySessions { items })))
    }

    /// End one of my sessions
    ///
    /// Ends one of the logged-in user's own sessions. Someone else's id answers 404, exactly
    /// like an unknown one.
    #[oai(path = "/v1/me/sessions/:id", method = "delete", tag = "Tag::Me")]
    async fn end_my_session(
        &self,
        req: &Request,
        id: Path<i64>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        let (_, user) = self.ctx.logged_in(req).await?;
        if self
            .ctx
            .service
            .end_own_session(user.id, session_id(id.0)?)
            .await?
        {
            Ok(Ended::NoContent)
        } else {
            Err(ApiError::not_found("no such session"))
        }
    }

    /// End all my other sessions
    ///
    /// Ends every session of the logged-in user except the one this request came with.
    #[oai(path = "/v1/me/sessions", method = "delete", tag = "Tag::Me")]
    async fn end_my_other_sessions(&self, req: &Request, _auth: SessionAuth) -> Answer<Ended> {
        let (current, user) = self.ctx.logged_in(req).await?;
        self.ctx
            .service
            .end_user_sessions(user.id, Some(current.id))
            .await?;
        Ok(Ended::NoContent)
    }

    /// List sessions
    ///
    /// Valid sessions by id, optionally only a user's (`user` is a username) or only those
    /// active since a time. Keyset paging: pass the previous page's `next` as `after`.
    #[oai(path = "/v1/admin/sessions", method = "get", tag = "Tag::Admin")]
    async fn sessions(
        &self,
        req: &Request,
        /// Only this user's sessions (a username).
        user: Query<Option<String>>,
        /// Only sessions active at or after this time (RFC 3339).
        active_since: Query<Option<OffsetDateTime>>,
        /// Page size, 1 to 500 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
        /// Only ids greater than this: the `next` of the previous page.
        after: Query<Option<i64>>,
        _auth: SessionAuth,
    ) -> Answer<PageAnswer> {
        self.ctx.superuser(req).await?;
        let limit = limit.0.unwrap_or(100);
        let user = match user.0 {
            Some(name) => match self.ctx.service.user(&name).await {
                Ok((user, _)) => Some(user.id),
                // A filter on a user that does not exist matches nothing.
                Err(websessions_domain::UserError::NotFound) => {
                    return Ok(PageAnswer::Ok(Json(SessionPage {
                        items: vec![],
                        next: None,
                    })));
                }
                Err(other) => return Err(other.into()),
            },
            None => None,
        };
        let query = SessionQuery {
            user,
            active_since: active_since.0,
            after: after.0.and_then(SessionId::new),
            // One more than asked tells whether there is a next page.
            limit: limit + 1,
        };
        let mut sessions = self.ctx.service.list_sessions(query).await?;
        let more = sessions.len() as u64 > limit;
        sessions.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = more.then(|| sessions.last().map(|s| s.id.get())).flatten();
        let items = sessions
            .iter()
            .map(|s| SessionView::new(s, &self.ctx.policy))
            .collect();
        Ok(PageAnswer::Ok(Json(SessionPage { items, next })))
    }

    /// Count active sessions
    ///
    /// Sessions not logged out whose last activity is at or after `active_since`.
    #[oai(path = "/v1/admin/sessions/count", method = "get", tag = "Tag::Admin")]
    async fn count(
        &self,
        req: &Request,
        /// RFC 3339 time.
        active_since: Query<OffsetDateTime>,
        _auth: SessionAuth,
    ) -> Answer<CountAnswer> {
        self.ctx.superuser(req).await?;
        let count = self.ctx.service.count_active_since(active_since.0).await?;
        Ok(CountAnswer::Ok(Json(Count { count })))
    }

    /// End a session
    ///
    /// Ends any session by id; 404 when there is no live session with that id.
    #[oai(path = "/v1/admin/sessions/:id", method = "delete", tag = "Tag::Admin")]
    async fn revoke(&self, req: &Request, id: Path<i64>, _auth: SessionAuth) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        if self.ctx.service.revoke(session_id(id.0)?).await? {
            Ok(Ended::NoContent)
        } else {
            Err(ApiError::not_found("no such session"))
        }
    }

    /// Run maintenance
    ///
    /// Deletes expired and ended sessions and expired lockouts now, in bounded batches.
    #[oai(path = "/v1/admin/sessions/purge", method = "post", tag = "Tag::Admin")]
    async fn purge(&self, req: &Request, _auth: SessionAuth) -> Answer<PurgeAnswer> {
        self.ctx.superuser(req).await?;
        let report = self.ctx.service.maintain().await?;
        Ok(PurgeAnswer::Ok(Json(Deleted {
            deleted: report.total(),
        })))
    }

    /// Create a user
    #[oai(path = "/v1/admin/users", method = "post", tag = "Tag::Admin")]
    async fn create_user(
        &self,
        req: &Request,
        body: Json<NewUserRequest>,
        _auth: SessionAuth,
    ) -> Answer<CreatedUser> {
        self.ctx.superuser(req).await?;
        let NewUserRequest {
            username,
            password,
            superuser,
        } = body.0;
        let user = self
            .ctx
            .service
            .create_user(&username, Password::new(password), superuser)
            .await?;
        Ok(CreatedUser::Created(Json(UserView::from(&user))))
    }

    /// List users
    #[oai(path = "/v1/admin/users", method = "get", tag = "Tag::Admin")]
    async fn users(&self, req: &Request, _auth: SessionAuth) -> Answer<UsersAnswer> {
        self.ctx.superuser(req).await?;
        let users = self.ctx.service.list_users().await?;
        let items = users.iter().map(UserView::from).collect();
        Ok(UsersAnswer::Ok(Json(UserList { items })))
    }

    /// Show a user
    ///
    /// The account with its failure count and lock.
    #[oai(path = "/v1/admin/users/:username", method = "get", tag = "Tag::Admin")]
    async fn user(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<UserAnswer> {
        self.ctx.superuser(req).await?;
        let (
            user,
            LockoutState {
                failure_count,
                locked_until,
            },
        ) = self.ctx.service.user(&username.0).await?;
        Ok(UserAnswer::Ok(Json(UserDetail {
            user: UserView::from(&user),
            failure_count,
            locked_until,
        })))
    }

    /// Delete a user
    ///
    /// The user's sessions end with it.
    #[oai(
        path = "/v1/admin/users/:username",
        method = "delete",
        tag = "Tag::Admin"
    )]
    async fn delete_user(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        self.ctx.service.delete_user(&username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Reset a user's password
    ///
    /// Ends every session of the user.
    #[oai(
        path = "/v1/admin/users/:username/password",
        method = "put",
        tag = "Tag::Admin"
    )]
    async fn reset_password(
        &self,
        req: &Request,
        username: Path<String>,
        body: Json<NewPasswordRequest>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        self.ctx
            .service
            .reset_password(&username.0, Password::new(body.0.new_password))
            .await?;
        Ok(Ended::NoContent)
    }

    /// Unlock a username
    ///
    /// Clears its failed logins and lock. Works for names without an account too, since
    /// failures are counted for any username.
    #[oai(
        path = "/v1/admin/users/:username/unlock",
        method = "post",
        tag = "Tag::Admin"
    )]
    async fn unlock(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        self.ctx.service.unlock(&username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Disable a user
    ///
    /// Ends the user's sessions; logins are refused until the user is enabled.
    #[oai(
        path = "/v1/admin/users/:username/disable",
        method = "post",
        tag = "Tag::Admin"
    )]
    async fn disable(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        self.ctx.service.set_disabled(&username.0, true).await?;
        Ok(Ended::NoContent)
    }

    /// Enable a user
    #[oai(
        path = "/v1/admin/users/:username/enable",
        method = "post",
        tag = "Tag::Admin"
    )]
    async fn enable(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        self.ctx.service.set_disabled(&username.0, false).await?;
        Ok(Ended::NoContent)
    }

    /// End a user's sessions
    #[oai(
        path = "/v1/admin/users/:username/sessions",
        method = "delete",
        tag = "Tag::Admin"
    )]
    async fn end_user_sessions(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: SessionAuth,
    ) -> Answer<Ended> {
        self.ctx.superuser(req).await?;
        let (user, _) = self.ctx.service.user(&username.0).await?;
        self.ctx.service.end_user_sessions(user.id, None).await?;
        Ok(Ended::NoContent)
    }
}
