//! Administration (`/v1/admin`), for superusers: every session (list, count, revoke, purge)
//! and user accounts (create, list, show, delete, reset, unlock, disable, enable, end
//! sessions). Each operation needs a superuser's session: 401 without a logged-in one, 403 for
//! other users.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use time::OffsetDateTime;
use websessions_domain::{
    AccessError, CreateUserError, EndSessionError, InfraError, LockoutState, Password,
    ResetPasswordError, SessionFilter, SessionId, User, UserError,
};

use super::body::{BodyRefusal, JsonBody};
use super::context::Context;
use super::problem::{Refused, refusals};
use super::security::RequiredSession;
use super::wire::{Ended, SessionView, session_id};

#[derive(Tags)]
enum Tag {
    /// Superusers: every session, and user accounts.
    Admin,
}

/// A page of valid sessions, by id.
#[derive(Object, Debug)]
pub struct SessionPage {
    pub items: Vec<SessionView>,
    /// Pass as `after` for the next page; null on the last page.
    #[oai(nullable)]
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

/// A user account, with its lockout state: the failed logins since the last successful one or
/// the last unlock, and the lock while it is in force (else null). A disabled user cannot log
/// in and has no sessions; `last_login_at` is null until the first login.
#[derive(Object, Debug)]
pub struct UserView {
    pub username: String,
    pub superuser: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
    pub failure_count: u32,
    #[oai(nullable)]
    pub locked_until: Option<OffsetDateTime>,
}

impl UserView {
    fn new(user: &User, lockout: LockoutState) -> Self {
        Self {
            username: user.username.to_string(),
            superuser: user.superuser,
            disabled: user.disabled,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
            failure_count: lockout.failure_count,
            locked_until: lockout.locked_until,
        }
    }
}

/// The users, by username.
#[derive(Object, Debug)]
pub struct UserList {
    pub items: Vec<UserSummary>,
}

/// A user account in a list.
#[derive(Object, Debug)]
pub struct UserSummary {
    pub username: String,
    pub superuser: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
}

impl From<&User> for UserSummary {
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

/// A new user: a username of 1 to 191 characters of letters, digits and `, _ - { } . @`, and
/// a password of 10 to 1024 characters.
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub username: String,
    pub password: String,
    #[oai(default)]
    #[serde(default)]
    pub superuser: bool,
}

/// A password set by an operator: 10 to 1024 characters.
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPasswordRequest {
    pub new_password: String,
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
    Ok(Json<UserView>),
}

refusals! {
    /// Reading or acting on every session.
    AdminRefusal = AccessError | InfraError;
    /// Ending a session by id.
    RevokeRefusal = AccessError | EndSessionError;
    /// Creating a user.
    CreateRefusal = AccessError | BodyRefusal | CreateUserError;
    /// Reading or acting on a named user.
    UserRefusal = AccessError | UserError;
    /// Resetting a user's password.
    ResetRefusal = AccessError | BodyRefusal | ResetPasswordError;
}

/// The default page size of `listSessions`.
const DEFAULT_PAGE: u64 = 100;

/// Superuser endpoints.
#[derive(Debug)]
pub struct AdminApi {
    pub ctx: Arc<Context>,
}

#[OpenApi]
impl AdminApi {
    /// List sessions
    ///
    /// Valid sessions by id, optionally only a user's (`user` is a username; one naming no
    /// account matches nothing) or only those active since a time. Keyset paging: pass the
    /// previous page's `next` as `after`. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "listSessions"
    )]
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
        _auth: RequiredSession,
    ) -> Result<PageAnswer, Refused<AdminRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let filter = SessionFilter {
            user: user.0,
            active_since: active_since.0,
            after: after.0.and_then(SessionId::new),
            limit: limit.0.unwrap_or(DEFAULT_PAGE),
        };
        let page = self.ctx.admin.sessions(&by, filter).await?;
        let items = page
            .items
            .iter()
            .map(|s| SessionView::new(s, &self.ctx.policy))
            .collect();
        let next = page.next.map(SessionId::get);
        Ok(PageAnswer::Ok(Json(SessionPage { items, next })))
    }

    /// Count active sessions
    ///
    /// Sessions whose last activity is at or after `active_since` (R10). Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/count",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "countActiveSessions"
    )]
    async fn count(
        &self,
        req: &Request,
        /// RFC 3339 time.
        active_since: Query<OffsetDateTime>,
        _auth: RequiredSession,
    ) -> Result<CountAnswer, Refused<AdminRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let count = self
            .ctx
            .admin
            .count_active_since(&by, active_since.0)
            .await?;
        Ok(CountAnswer::Ok(Json(Count { count })))
    }

    /// End a session
    ///
    /// Ends any valid session by id; 404 when there is none. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/:id",
        method = "delete",
        tag = "Tag::Admin",
        operation_id = "revokeSession"
    )]
    async fn revoke(
        &self,
        req: &Request,
        id: Path<i64>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<RevokeRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.admin.revoke(&by, session_id(id.0)?).await?;
        Ok(Ended::NoContent)
    }

    /// Run maintenance
    ///
    /// Deletes expired sessions, expired lockouts and the failures of usernames without an
    /// account now, in bounded batches. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/purge",
        method = "post",
        tag = "Tag::Admin",
        operation_id = "purge"
    )]
    async fn purge(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<PurgeAnswer, Refused<AdminRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let report = self.ctx.admin.purge(&by).await?;
        Ok(PurgeAnswer::Ok(Json(Deleted {
            deleted: report.total(),
        })))
    }

    /// Create a user
    ///
    /// 409 when the name is taken (names compare byte for byte). Needs a superuser.
    #[oai(
        path = "/v1/admin/users",
        method = "post",
        tag = "Tag::Admin",
        operation_id = "createUser"
    )]
    async fn create_user(
        &self,
        req: &Request,
        body: JsonBody<NewUserRequest>,
        _auth: RequiredSession,
    ) -> Result<CreatedUser, Refused<CreateRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let NewUserRequest {
            username,
            password,
            superuser,
        } = body.parse()?;
        let password = Password::new(password);
        let user = self
            .ctx
            .users
            .create_user(&by, &username, password, superuser)
            .await?;
        let view = UserView::new(&user, LockoutState::default());
        Ok(CreatedUser::Created(Json(view)))
    }

    /// List users
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "listUsers"
    )]
    async fn users(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<UsersAnswer, Refused<AdminRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let users = self.ctx.users.users(&by).await?;
        let items = users.iter().map(UserSummary::from).collect();
        Ok(UsersAnswer::Ok(Json(UserList { items })))
    }

    /// Show a user
    ///
    /// The account with its failure count and lock. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username",
        method = "get",
        tag = "Tag::Admin",
        operation_id = "getUser"
    )]
    async fn user(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<UserAnswer, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let (user, lockout) = self.ctx.users.user(&by, &username.0).await?;
        Ok(UserAnswer::Ok(Json(UserView::new(&user, lockout))))
    }

    /// Delete a user
    ///
    /// The user's sessions end with it. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username",
        method = "delete",
        tag = "Tag::Admin",
        operation_id = "deleteUser"
    )]
    async fn delete_user(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.users.delete_user(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Reset a user's password
    ///
    /// Ends every session of the user. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/password",
        method = "put",
        tag = "Tag::Admin",
        operation_id = "resetPassword"
    )]
    async fn reset_password(
        &self,
        req: &Request,
        username: Path<String>,
        body: JsonBody<NewPasswordRequest>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<ResetRefusal>> {
        let by = self.ctx.superuser(req).await?;
        let password = Password::new(body.parse()?.new_password);
        self.ctx
            .users
            .reset_password(&by, &username.0, password)
            .await?;
        Ok(Ended::NoContent)
    }

    /// Unlock a username
    ///
    /// Clears its failed logins and lock. Works for names without an account too, since
    /// failures are counted for any username. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/unlock",
        method = "post",
        tag = "Tag::Admin",
        operation_id = "unlockUser"
    )]
    async fn unlock(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.users.unlock(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Disable a user
    ///
    /// Ends the user's sessions; logins are refused until the user is enabled. Needs a
    /// superuser.
    #[oai(
        path = "/v1/admin/users/:username/disable",
        method = "post",
        tag = "Tag::Admin",
        operation_id = "disableUser"
    )]
    async fn disable(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.users.set_disabled(&by, &username.0, true).await?;
        Ok(Ended::NoContent)
    }

    /// Enable a user
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/enable",
        method = "post",
        tag = "Tag::Admin",
        operation_id = "enableUser"
    )]
    async fn enable(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.users.set_disabled(&by, &username.0, false).await?;
        Ok(Ended::NoContent)
    }

    /// End a user's sessions
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/sessions",
        method = "delete",
        tag = "Tag::Admin",
        operation_id = "endUserSessions"
    )]
    async fn end_user_sessions(
        &self,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = self.ctx.superuser(req).await?;
        self.ctx.users.end_user_sessions(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }
}
