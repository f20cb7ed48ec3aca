//! The session rules (R1..R10, R13) over the ports. `SessionService` is what the API calls
//! (and mocks); `Sessions` implements it.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{
    ChangePasswordError, CreateUserError, InfraError, LoginError, RetryAfter, SetDataError,
    UserError,
};
use crate::model::{
    EndCause, LockoutState, LoginResult, PurgeReport, SessionQuery, SessionRecord, SessionUser,
    User,
};
use crate::policy::{LockoutPolicy, SessionPolicy};
use crate::ports::{
    Clock, Events, LockoutRepository, LoginTarget, LoginWrite, NewSession, NewUser, PasswordHasher,
    Rotation, SessionRepository, Sweep, TokenSource, UserRepository,
};
use crate::value::{
    ClientIp, Credential, NewPassword, Password, SessionData, SessionId, SessionKind, TokenHash,
    UserId, Username,
};

/// Maintenance deletes at most this many rows per statement (R8: no long table locks).
pub const PURGE_BATCH: u64 = 1000;

/// What a request presents: its credential (if any parsed) and its client IP (R11).
#[derive(Clone, Debug)]
pub struct Presented {
    pub credential: Option<Credential>,
    pub ip: ClientIp,
}

/// A session as recognised, with the credential its holder must use from now on when it is
/// new or rotated.
#[derive(Clone, Debug)]
pub struct Issued {
    pub session: SessionRecord,
    /// `Some` when the holder must be given a new credential.
    pub credential: Option<Credential>,
}

/// A login attempt (R5).
#[derive(Clone, Debug)]
pub struct LoginAttempt {
    pub username: String,
    pub password: Password,
    pub kind: SessionKind,
}

/// The rules, as the API sees them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionService: Send + Sync {
    /// R2, R3: the presented session when valid (touched), else `None`. Never creates a row.
    async fn recognise(&self, presented: &Presented) -> Result<Option<SessionRecord>, InfraError>;

    /// R4: the presented valid session, or a new anonymous browser session.
    async fn start(&self, presented: &Presented) -> Result<Issued, InfraError>;

    /// R5: binds a user to a session, rotating its token.
    async fn login(
        &self,
        presented: &Presented,
        attempt: LoginAttempt,
    ) -> Result<Issued, LoginError>;

    /// R6: ends the presented session if valid, then runs maintenance.
    async fn logout(&self, presented: &Presented) -> Result<(), InfraError>;

    /// R13: the presented session's client state; `None` without a valid session.
    async fn data(&self, presented: &Presented) -> Result<Option<SessionData>, InfraError>;

    /// R13: replaces the presented session's client state.
    async fn set_data(
        &self,
        presented: &Presented,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionData, SetDataError>;

    /// R7: a holder changes their own password; the session's token rotates and the user's
    /// other sessions end.
    async fn change_password(
        &self,
        presented: &Presented,
        current: Password,
        new: Password,
    ) -> Result<Issued, ChangePasswordError>;

    /// R10: valid sessions matching the query, by id.
    async fn list_sessions(&self, query: SessionQuery) -> Result<Vec<SessionRecord>, InfraError>;

    /// R10: sessions not logged out and active since `since`.
    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError>;

    /// Ends one session by id (an operator's revocation); whether a live one ended.
    async fn revoke(&self, id: SessionId) -> Result<bool, InfraError>;

    /// Ends one of `owner`'s valid sessions; `false` (never an error) when the id is unknown,
    /// not valid, or another user's, so that ids cannot be probed.
    async fn end_own_session(&self, owner: UserId, id: SessionId) -> Result<bool, InfraError>;

    /// Ends a user's sessions, except `except`; how many ended.
    async fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
    ) -> Result<u64, InfraError>;

    /// R8: deletes expired and ended sessions and expired lockouts.
    async fn maintain(&self) -> Result<PurgeReport, InfraError>;

    /// Creates a user, validating the username and the password policy.
    async fn create_user(
        &self,
        username: &str,
        password: Password,
        superuser: bool,
    ) -> Result<User, CreateUserError>;

    /// All users, by username.
    async fn list_users(&self) -> Result<Vec<User>, InfraError>;

    /// One user, with its lockout state.
    async fn user(&self, username: &str) -> Result<(User, LockoutState), UserError>;

    /// Deletes a user; its sessions go with it (R7).
    async fn delete_user(&self, username: &str) -> Result<(), UserError>;

    /// An operator's password reset: ends all the user's sessions (R7).
    async fn reset_password(&self, username: &str, password: Password) -> Result<(), UserError>;

    /// Clears a username's failures and lock (R9); works for names without an account too.
    async fn unlock(&self, username: &str) -> Result<(), UserError>;

    /// Disabling ends all the user's sessions and stops logins (R7); enabling undoes it.
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), UserError>;
}

/// The ports `Sessions` runs on.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // trait objects of ports have no Debug
pub struct Ports {
    pub sessions: Arc<dyn SessionRepository>,
    pub users: Arc<dyn UserRepository>,
    pub lockouts: Arc<dyn LockoutRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenSource>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn Events>,
}

/// The rules, implemented over the ports.
pub struct Sessions {
    ports: Ports,
    policy: SessionPolicy,
    lockout: LockoutPolicy,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

/// A valid presented session and the hash of the token that proved it.
type Proven = (SessionRecord, TokenHash);

impl Sessions {
    pub fn new(ports: Ports, policy: SessionPolicy, lockout: LockoutPolicy) -> Self {
        Self {
            ports,
            policy,
            lockout,
        }
    }

    /// R2 without the touch: one read, then every check in memory.
    async fn validate(
        &self,
        presented: &Presented,
        now: OffsetDateTime,
    ) -> Result<Option<Proven>, InfraError> {
        let Some(credential) = &presented.credential else {
            return Ok(None);
        };
        let Some(record) = self.ports.sessions.find(credential.id()).await? else {
            return Ok(None);
        };
        let hash = credential.token().hash();
        let valid = record
            .token_hash
            .is_some_and(|stored| stored.matches(&hash))
            && self.policy.cutoffs(now).admits(
                record.last_activity_at,
                record.created_at,
                record.authenticated_at,
            )
            && (!self.policy.check_ip || record.ip_address == presented.ip);
        Ok(valid.then_some((record, hash)))
    }

    /// R2 and R3: validate, then touch when the stored activity is `touch_interval` old.
    async fn recognise_at(
        &self,
        presented: &Presented,
        now: OffsetDateTime,
    ) -> Result<Option<Proven>, InfraError> {
        if self.policy.touch_interval.is_zero() {
            // Every request writes: let the conditional write check validity and read the row
            // back in one statement. The token hash is then compared by the database; an
            // equality on SHA-256 digests reveals nothing a guesser can use.
            let Some(credential) = &presented.credential else {
                return Ok(None);
            };
            let hash = credential.token().hash();
            let ip = self.policy.check_ip.then_some(presented.ip);
            let cutoffs = self.policy.cutoffs(now);
            let touched = self
                .ports
                .sessions
                .touch_and_find(credential.id(), hash, cutoffs, ip, now)
                .await?;
            return Ok(touched.map(|record| (record, hash)));
        }
        let Some((mut record, hash)) = self.validate(presented, now).await? else {
            return Ok(None);
        };
        if now - record.last_activity_at >= self.policy.touch_interval {
            let cutoffs = self.policy.cutoffs(now);
            if !self
                .ports
                .sessions
                .touch(record.id, hash, cutoffs, now)
                .await?
            {
                return Ok(None);
            }
            record.last_activity_at = now;
        }
        Ok(Some((record, hash)))
    }

    async fn end_proven(&self, proven: Option<Proven>, cause: EndCause) -> Result<(), InfraError> {
        if let Some((record, hash)) = proven
            && self.ports.sessions.end(record.id, Some(hash)).await?
        {
            self.ports.events.sessions_ended(cause, 1);
        }
        Ok(())
    }

    /// R8: deletes what `sweep` allows of the expired and ended sessions and expired lockouts.
    async fn sweep(&self, sweep: Sweep) -> Result<PurgeReport, InfraError> {
        let now = self.ports.clock.now();
        let cutoffs = self.policy.cutoffs(now);
        let (expired_sessions, ended_sessions) = self
            .ports
            .sessions
            .purge(cutoffs, PURGE_BATCH, sweep)
            .await?;
        let expired_lockouts = self.ports.lockouts.purge(now, PURGE_BATCH, sweep).await?;
        let report = PurgeReport {
            expired_sessions,
            ended_sessions,
            expired_lockouts,
        };
        if expired_sessions > 0 {
            self.ports
                .events
                .sessions_ended(EndCause::Expired, expired_sessions);
        }
        self.ports.events.purged(report);
        Ok(report)
    }

    /// R5c: a refused attempt logs out the presented session.
    async fn refuse(&self, proven: Option<Proven>) -> Result<LoginError, InfraError> {
        self.end_proven(proven, EndCause::Logout).await?;
        self.ports.events.login(LoginResult::BadCredentials);
        Ok(LoginError::InvalidCredentials)
    }

    async fn record_failure(
        &self,
        username: &Username,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let recorded = self
            .ports
            .lockouts
            .record_failure(username, now, self.lockout)
            .await?;
        if recorded.locked_until.is_some() {
            self.ports.events.lockout_started();
        }
        Ok(())
    }

    async fn existing_user(&self, username: &str) -> Result<User, UserError> {
        let username = Username::parse(username).map_err(|_| UserError::NotFound)?;
        self.ports
            .users
            .find_by_username(&username)
            .await?
            .ok_or(UserError::NotFound)
    }

    fn new_credential(&self, id: SessionId) -> Result<(Credential, TokenHash), InfraError> {
        let token = self.ports.tokens.token(self.policy.token_length)?;
        let hash = token.hash();
        Ok((Credential::new(id, token), hash))
    }
}

#[async_trait]
impl SessionService for Sessions {
    async fn recognise(&self, presented: &Presented) -> Result<Option<SessionRecord>, InfraError> {
        let now = self.ports.clock.now();
        Ok(self
            .recognise_at(presented, now)
            .await?
            .map(|(record, _)| record))
    }

    async fn start(&self, presented: &Presented) -> Result<Issued, InfraError> {
        let now = self.ports.clock.now();
        if let Some((session, _)) = self.recognise_at(presented, now).await? {
            return Ok(Issued {
                session,
                credential: None,
            });
        }
        let token = self.ports.tokens.token(self.policy.token_length)?;
        let token_hash = token.hash();
        let kind = SessionKind::Browser;
        let id = self
            .ports
            .sessions
            .create(NewSession {
                token_hash,
                ip_address: presented.ip,
                kind,
                now,
            })
            .await?;
        self.ports.events.session_started(kind);
        Ok(Issued {
            session: SessionRecord {
                id,
                token_hash: Some(token_hash),
                ip_address: presented.ip,
                kind,
                user: None,
                created_at: now,
                authenticated_at: None,
                last_activity_at: now,
            },
            credential: Some(Credential::new(id, token)),
        })
    }

    async fn login(
        &self,
        presented: &Presented,
        attempt: LoginAttempt,
    ) -> Result<Issued, LoginError> {
        let now = self.ports.clock.now();
        let proven = self.validate(presented, now).await?;
        // R5a: malformed usernames are refused like bad credentials, without a failure.
        let Ok(username) = Username::parse(&attempt.username) else {
            return Err(self.refuse(proven).await?);
        };
        // R5f: the lock comes before every other check.
        if let Some(until) = self
            .ports
            .lockouts
            .state(&username, now)
            .await?
            .locked_until
        {
            self.ports.events.login(LoginResult::Locked);
            let retry_after = RetryAfter::between(now, until);
            return Err(LoginError::Locked { until, retry_after });
        }
        if attempt.password.is_overlong() {
            return Err(self.refuse(proven).await?);
        }
        let user = self.ports.users.find_by_username(&username).await?;
        // R5b: an unknown user is verified against a dummy hash, at the same cost.
        let verified = self
            .ports
            .hasher
            .verify(
                attempt.password,
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let user = match user {
            Some(user) if verified && !user.disabled => user,
            _ => {
                self.record_failure(&username, now).await?;
                return Err(self.refuse(proven).await?);
            }
        };
        self.ports.lockouts.clear(&username).await?;

        // R5d, R5e: reuse the presented session only when it is of the requested kind and
        // anonymous or already this user's; a session of another user is logged out first.
        let (target, reused) = match proven {
            Some((record, hash))
                if record.kind == attempt.kind
                    && record.user.as_ref().is_none_or(|u| u.id == user.id) =>
            {
                let target = LoginTarget::Existing {
                    id: record.id,
                    token_hash: hash,
                };
                (target, Some(record))
            }
            other => {
                if other.as_ref().is_some_and(|(r, _)| r.user.is_some()) {
                    self.end_proven(other, EndCause::Logout).await?;
                }
                (LoginTarget::New, None)
            }
        };
        let token = self.ports.tokens.token(self.policy.token_length)?;
        let token_hash = token.hash();
        let outcome = self
            .ports
            .sessions
            .login(LoginWrite {
                user: user.id,
                target,
                kind: attempt.kind,
                ip_address: presented.ip,
                token_hash,
                now,
                cutoffs: self.policy.cutoffs(now),
                end_other_browser_sessions: attempt.kind == SessionKind::Browser
                    && self.policy.single_browser_session,
            })
            .await?;
        if outcome.created {
            self.ports.events.session_started(attempt.kind);
        }
        if outcome.replaced > 0 {
            self.ports
                .events
                .sessions_ended(EndCause::Replaced, outcome.replaced);
        }
        self.ports.events.login(LoginResult::Success);
        let (created_at, ip_address) = match reused {
            Some(record) if !outcome.created => (record.created_at, record.ip_address),
            _ => (now, presented.ip),
        };
        Ok(Issued {
            session: SessionRecord {
                id: outcome.session,
                token_hash: Some(token_hash),
                ip_address,
                kind: attempt.kind,
                user: Some(SessionUser {
                    id: user.id,
                    username: user.username,
                    superuser: user.superuser,
                }),
                created_at,
                authenticated_at: Some(now),
                last_activity_at: now,
            },
            credential: Some(Credential::new(outcome.session, token)),
        })
    }

    async fn logout(&self, presented: &Presented) -> Result<(), InfraError> {
        let now = self.ports.clock.now();
        let proven = self.validate(presented, now).await?;
        self.end_proven(proven, EndCause::Logout).await?;
        // R6: "perform periodic maintenance, as this is a good time". One batch only: the
        // backlog is housekeeping's, and a logout must stay quick. The logout itself has
        // happened; a failing purge is reported but does not undo it.
        if let Err(error) = self.sweep(Sweep::OneBatch).await {
            tracing::warn!(error = %error, "maintenance after logout failed");
        }
        Ok(())
    }

    async fn data(&self, presented: &Presented) -> Result<Option<SessionData>, InfraError> {
        let now = self.ports.clock.now();
        let Some((record, hash)) = self.recognise_at(presented, now).await? else {
            return Ok(None);
        };
        self.ports.sessions.data(record.id, hash).await
    }

    async fn set_data(
        &self,
        presented: &Presented,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionData, SetDataError> {
        let data = SessionData::new(data)?;
        let now = self.ports.clock.now();
        let Some((record, hash)) = self.recognise_at(presented, now).await? else {
            return Err(SetDataError::NoSession);
        };
        let cutoffs = self.policy.cutoffs(now);
        if self
            .ports
            .sessions
            .set_data(record.id, hash, cutoffs, data.clone())
            .await?
        {
            Ok(data)
        } else {
            Err(SetDataError::NoSession)
        }
    }

    async fn change_password(
        &self,
        presented: &Presented,
        current: Password,
        new: Password,
    ) -> Result<Issued, ChangePasswordError> {
        let now = self.ports.clock.now();
        let Some((mut record, old_hash)) = self.recognise_at(presented, now).await? else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        let Some(session_user) = record.user.clone() else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        // R7 order: lock (423), current password (403), then the new password's policy.
        let lock = self
            .ports
            .lockouts
            .state(&session_user.username, now)
            .await?;
        if let Some(until) = lock.locked_until {
            let retry_after = RetryAfter::between(now, until);
            return Err(ChangePasswordError::Locked { until, retry_after });
        }
        if current.is_overlong() {
            return Err(ChangePasswordError::WrongPassword);
        }
        let Some(user) = self
            .ports
            .users
            .find_by_username(&session_user.username)
            .await?
        else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        let verified = self
            .ports
            .hasher
            .verify(current, Some(user.password_hash))
            .await?;
        if !verified {
            self.record_failure(&user.username, now).await?;
            return Err(ChangePasswordError::WrongPassword);
        }
        let new = NewPassword::parse(new)?;
        let hash = self.ports.hasher.hash(new.password().clone()).await?;
        let (credential, new_hash) = self.new_credential(record.id)?;
        let rotation = Rotation {
            session: record.id,
            old_hash,
            new_hash,
            cutoffs: self.policy.cutoffs(now),
        };
        let Some(ended) = self
            .ports
            .users
            .set_password(user.id, hash, now, Some(rotation))
            .await?
        else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        if ended > 0 {
            self.ports
                .events
                .sessions_ended(EndCause::PasswordChange, ended);
        }
        record.token_hash = Some(new_hash);
        record.last_activity_at = now;
        Ok(Issued {
            session: record,
            credential: Some(credential),
        })
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Vec<SessionRecord>, InfraError> {
        let cutoffs = self.policy.cutoffs(self.ports.clock.now());
        self.ports.sessions.list(query, cutoffs).await
    }

    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError> {
        self.ports.sessions.count_active_since(since).await
    }

    async fn revoke(&self, id: SessionId) -> Result<bool, InfraError> {
        let ended = self.ports.sessions.end(id, None).await?;
        if ended {
            self.ports.events.sessions_ended(EndCause::Revoked, 1);
        }
        Ok(ended)
    }

    async fn end_own_session(&self, owner: UserId, id: SessionId) -> Result<bool, InfraError> {
        let now = self.ports.clock.now();
        let Some(record) = self.ports.sessions.find(id).await? else {
            return Ok(false);
        };
        let owned = record.user.as_ref().is_some_and(|u| u.id == owner)
            && self.policy.cutoffs(now).admits(
                record.last_activity_at,
                record.created_at,
                record.authenticated_at,
            );
        let Some(hash) = record.token_hash.filter(|_| owned) else {
            return Ok(false);
        };
        let ended = self.ports.sessions.end(id, Some(hash)).await?;
        if ended {
            self.ports.events.sessions_ended(EndCause::Revoked, 1);
        }
        Ok(ended)
    }

    async fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
    ) -> Result<u64, InfraError> {
        let ended = self.ports.sessions.end_for_user(user, except).await?;
        if ended > 0 {
            self.ports.events.sessions_ended(EndCause::Revoked, ended);
        }
        Ok(ended)
    }

    async fn maintain(&self) -> Result<PurgeReport, InfraError> {
        self.sweep(Sweep::All).await
    }

    async fn create_user(
        &self,
        username: &str,
        password: Password,
        superuser: bool,
    ) -> Result<User, CreateUserError> {
        let username = Username::parse(username)?;
        let password = NewPassword::parse(password)?;
        let password_hash = self.ports.hasher.hash(password.password().clone()).await?;
        self.ports
            .users
            .create(NewUser {
                username,
                password_hash,
                superuser,
                now: self.ports.clock.now(),
            })
            .await
    }

    async fn list_users(&self) -> Result<Vec<User>, InfraError> {
        self.ports.users.list().await
    }

    async fn user(&self, username: &str) -> Result<(User, LockoutState), UserError> {
        let user = self.existing_user(username).await?;
        let lock = self
            .ports
            .lockouts
            .state(&user.username, self.ports.clock.now())
            .await?;
        Ok((user, lock))
    }

    async fn delete_user(&self, username: &str) -> Result<(), UserError> {
        let user = self.existing_user(username).await?;
        let ended = self
            .ports
            .users
            .delete(user.id)
            .await?
            .ok_or(UserError::NotFound)?;
        if ended > 0 {
            self.ports.events.sessions_ended(EndCause::Revoked, ended);
        }
        Ok(())
    }

    async fn reset_password(&self, username: &str, password: Password) -> Result<(), UserError> {
        let password = NewPassword::parse(password)?;
        let user = self.existing_user(username).await?;
        let hash = self.ports.hasher.hash(password.password().clone()).await?;
        let now = self.ports.clock.now();
        let ended = self
            .ports
            .users
            .set_password(user.id, hash, now, None)
            .await?
            .unwrap_or(0);
        if ended > 0 {
            self.ports.events.sessions_ended(EndCause::Revoked, ended);
        }
        Ok(())
    }

    async fn unlock(&self, username: &str) -> Result<(), UserError> {
        let username = Username::parse(username).map_err(|_| UserError::NotFound)?;
        Ok(self.ports.lockouts.clear(&username).await?)
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), UserError> {
        let user = self.existing_user(username).await?;
        let ended = self.ports.users.set_disabled(user.id, disabled).await?;
        if ended > 0 {
            self.ports.events.sessions_ended(EndCause::Revoked, ended);
        }
        Ok(())
    }
}
