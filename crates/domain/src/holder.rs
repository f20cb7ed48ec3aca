//! The session holder's operations: recognition (R2, R3), start (R4), login (R5), logout
//! (R6), password change (R7) and client state (R13), with R14's per-address limits and
//! R15's bound on password hashing.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditEvent, Client};
use crate::credential::Credential;
use crate::error::{
    ChangePasswordError, InfraError, LoginError, RateLimited, RetryAfter, Saturated, SetDataError,
    StartError,
};
use crate::model::{
    Attempt, Counted, EndCause, LimitedAction, LoginResult, SessionRecord, SessionUser, User,
};
use crate::policy::LockoutPolicy;
use crate::ports::{Expect, HashTicket, NewSession, Sweep, UserSessions};
use crate::service::{Issued, Presented, Proven, Sessions};
use crate::value::{ClientIp, Password, SessionData, SessionKind, Username};

/// A login attempt (R5).
#[derive(Clone, Debug)]
pub struct LoginAttempt {
    pub username: String,
    pub password: Password,
    pub kind: SessionKind,
}

/// Proof that a login passed the client address's limit (R14), which comes before the body
/// is even read (R5f); only `SessionHolder::admit_login` grants one.
#[derive(Debug)]
pub struct LoginPass {
    _granted: (),
}

impl LoginPass {
    /// A pass without a limit check, for tests over mocks.
    #[cfg(any(test, feature = "mocks"))]
    pub fn granted() -> Self {
        Self { _granted: () }
    }
}

/// What a session's holder can do.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionHolder: Send + Sync {
    /// R2, R3: the presented session when valid (touched), else `None`. Never creates a row.
    async fn recognise(&self, presented: &Presented) -> Result<Option<SessionRecord>, InfraError>;

    /// R4: the presented valid session, or a new anonymous browser session.
    async fn start(&self, presented: &Presented) -> Result<Issued, StartError>;

    /// R14: takes a token from the address's login bucket, before the attempt is read.
    fn admit_login(&self, ip: ClientIp) -> Result<LoginPass, RateLimited>;

    /// R5: binds a user to a session, rotating its token.
    ///
    /// R5f's order of checks, stated here once: before any handler the edge refuses a
    /// browser's cross-site write (R12, 403) and a body over 16 KiB (413); the handler takes
    /// `admit_login`'s pass (R14, 429) before it reads the body, then refuses a body of the
    /// wrong shape (400, 415, 422); then this method: R15 (503), the lock (423), the R5a
    /// refusals, the count (R9), and only then the password's verification.
    async fn login(
        &self,
        presented: &Presented,
        pass: LoginPass,
        attempt: LoginAttempt,
    ) -> Result<Issued, LoginError>;

    /// R6: ends the presented session if valid, then runs one batch of maintenance.
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
}

/// Where R9's first step left an attempt.
pub(crate) enum Counting {
    /// A lock is in force: nothing was counted.
    Locked(OffsetDateTime),
    /// A provisional lock is in force: nothing was counted.
    Provisional,
    /// A password too long to have been set (R5a): refused without a count.
    Overlong,
    Counted(Counted),
}

/// Where R15 and R9 left a guess at a password (`Sessions::guess`).
pub(crate) enum Guess {
    /// Counted, with its place in the hashing queue: the password may be verified.
    Counted(HashTicket, Counted),
    /// Refused by a lock until then, as it stood at `now`; nothing was counted.
    Locked {
        now: OffsetDateTime,
        until: OffsetDateTime,
    },
    /// A password too long to have been set (R5a): refused without a count.
    Overlong,
}

/// How often an attempt that meets a provisional lock looks at it again.
const PROVISIONAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl Sessions {
    /// R15: a place in the hashing queue, or `Saturated` (reported, nothing recorded). Every
    /// password hash and verification takes its place here.
    pub(crate) fn admit_hashing(&self) -> Result<HashTicket, Saturated> {
        self.ports
            .hasher
            .admit()
            .inspect_err(|_| self.ports.events.shed())
    }

    /// R14: a token from the client address's bucket for `action`, or `RateLimited`
    /// (reported, nothing recorded).
    fn admit(&self, action: LimitedAction, ip: ClientIp) -> Result<(), RateLimited> {
        self.ports.limits.admit(action, ip).map_err(|retry_after| {
            self.ports.events.rate_limited(action);
            RateLimited(retry_after)
        })
    }

    /// R9: a counted attempt whose password did not verify. A lock its count started stands
    /// from now on (no longer provisional), and is reported; `failure` and, when the lock
    /// stands, `lock_started` are recorded with it (R19).
    pub(crate) async fn failed(
        &self,
        username: &Username,
        counted: Counted,
        failure: AuditEntry,
    ) -> Result<(), InfraError> {
        let mut records = vec![failure];
        if let Some(until) = counted.started_lock {
            let lock = self
                .lock_started(username, until)
                .detail("failures", u64::from(counted.failure_count));
            records.push(lock);
        }
        let audited = records.clone();
        self.ports
            .lockouts
            .failed(username, counted, records)
            .await?;
        if counted.started_lock.is_some() {
            self.ports.events.lockout_started();
        }
        self.audited(&audited);
        Ok(())
    }

    /// A `lock_started` record (R19) of `username`'s lock until `until`.
    fn lock_started(&self, username: &Username, until: OffsetDateTime) -> AuditEntry {
        AuditEntry::new(AuditEvent::LockStarted, self.ports.clock.now())
            .username(username.as_str())
            .detail("until", rfc3339(until).as_str())
    }

    /// R9, R19: a provisional lock whose lease lapsed with no outcome stands; the first
    /// attempt that meets it says so, once, and it is reported.
    async fn lapsed(&self, username: &Username, until: OffsetDateTime) -> Result<(), InfraError> {
        let record = self.lock_started(username, until).detail("lease", "lapsed");
        if self
            .ports
            .lockouts
            .stood(username, until, record.clone())
            .await?
        {
            self.ports.events.lockout_started();
            self.audited([&record]);
        }
        Ok(())
    }

    /// A `login_failed` record (R19) of an attempt at `username` (as typed) for `reason`.
    pub(crate) fn failure(&self, username: &str, reason: &str, client: &Client) -> AuditEntry {
        self.record(AuditEvent::LoginFailed, client)
            .username(username)
            .detail("reason", reason)
    }

    /// R15, then R9's step, for a guess at `username`'s password, with the hashing place
    /// `ticket` R15 already granted. An attempt that meets a provisional lock gives its place
    /// back and waits for the verification of the attempt that started it, looking at the lock
    /// every `PROVISIONAL_POLL` (holding no database connection and no hashing place), then
    /// goes again: a lock that stands refuses it, a removed one lets it be counted afresh.
    /// Waiting longer than the lease, it is refused for a second.
    pub(crate) async fn guess<E>(
        &self,
        mut ticket: HashTicket,
        username: &Username,
        password: &Password,
    ) -> Result<Guess, E>
    where
        E: From<InfraError> + From<Saturated>,
    {
        let lease = std::time::Duration::try_from(LockoutPolicy::LEASE).unwrap_or_default();
        let mut waited = std::time::Duration::ZERO;
        loop {
            let now = self.ports.clock.now();
            match self.count_attempt(username, password, now).await? {
                Counting::Counted(counted) => return Ok(Guess::Counted(ticket, counted)),
                Counting::Locked(until) => return Ok(Guess::Locked { now, until }),
                Counting::Overlong => return Ok(Guess::Overlong),
                Counting::Provisional => drop(ticket),
            }
            loop {
                if waited >= lease {
                    let now = self.ports.clock.now();
                    let until = now + time::Duration::SECOND;
                    return Ok(Guess::Locked { now, until });
                }
                self.ports.timer.sleep(PROVISIONAL_POLL).await;
                waited += PROVISIONAL_POLL;
                let now = self.ports.clock.now();
                if !self.ports.lockouts.state(username, now).await?.provisional {
                    break;
                }
            }
            ticket = self.admit_hashing()?;
        }
    }

    /// R9: the lock first; then the attempt is counted in the same atomic step,
    /// before its password is verified. An over-long password is refused without a count.
    pub(crate) async fn count_attempt(
        &self,
        username: &Username,
        password: &Password,
        now: OffsetDateTime,
    ) -> Result<Counting, InfraError> {
        if password.is_overlong() {
            let state = self.ports.lockouts.state(username, now).await?;
            return Ok(state
                .locked_until
                .map_or(Counting::Overlong, Counting::Locked));
        }
        Ok(
            match self
                .ports
                .lockouts
                .attempt(username, now, self.lockout)
                .await?
            {
                Attempt::Locked { until, lapsed } => {
                    if lapsed {
                        self.lapsed(username, until).await?;
                    }
                    Counting::Locked(until)
                }
                Attempt::Provisional => Counting::Provisional,
                Attempt::Counted(counted) => Counting::Counted(counted),
            },
        )
    }

    /// R5c: a refused attempt logs out the presented session. A lock its count started
    /// stands, and is reported. `failure` is recorded (R19): with the lock's confirmation
    /// when the attempt was counted, else on its own, right after the verification.
    async fn refuse(
        &self,
        presented: &Presented,
        proven: Option<&Proven>,
        counted: Option<(&Username, Counted)>,
        failure: AuditEntry,
    ) -> Result<LoginError, InfraError> {
        if let Some(proven) = proven {
            self.end_proven(proven, EndCause::Logout, &presented.client())
                .await?;
        }
        match counted {
            Some((username, counted)) => self.failed(username, counted, failure).await?,
            None => self.record_refusal(vec![failure]).await?,
        }
        self.ports.events.login(LoginResult::BadCredentials);
        Ok(LoginError::InvalidCredentials)
    }

    /// R5b: the account whose password `password` is, when it is enabled; else why not, as
    /// R19's `login_failed` reason. An unknown user is verified against a dummy hash, at the
    /// same cost.
    pub(crate) async fn verify_account(
        &self,
        ticket: &HashTicket,
        username: &Username,
        password: Password,
    ) -> Result<Result<User, &'static str>, InfraError> {
        let user = self.ports.users.find_by_username(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self.ports.hasher.verify(ticket, password, hash).await?;
        Ok(match user {
            Some(user) if verified && !user.disabled => Ok(user),
            Some(_) if verified => Err(DISABLED),
            _ => Err(BAD_CREDENTIALS),
        })
    }

    /// R5d, R5e: in one transaction, only while the account is unchanged since its password
    /// verified: binds `user` to the presented session when it is of the requested kind and
    /// anonymous or already theirs (else to a new session), rotating the token, and ends the
    /// user's other browser sessions. `None` when an operator changed the account meanwhile.
    async fn bind_login(
        &self,
        presented: &Presented,
        proven: Option<Proven>,
        user: &User,
        kind: SessionKind,
        now: OffsetDateTime,
    ) -> Result<Option<Issued>, InfraError> {
        // A presented session of the requested kind that belongs to another user is logged
        // out first; one of the other kind is left alone, whoever holds it.
        let reusable = match proven {
            Some(p) if p.record.kind == kind => {
                if p.record.user.as_ref().is_none_or(|u| u.id == user.id) {
                    Some(p)
                } else {
                    self.end_proven(&p, EndCause::Logout, &presented.client())
                        .await?;
                    None
                }
            }
            _ => None,
        };
        let token = self.ports.tokens.token(self.policy.token_length())?;
        let token_hash = token.hash();
        let mut change = self.ports.accounts.begin().await?;
        let expect = Expect::Unchanged(user.password_hash.clone());
        if !change.lock_user(user.id, expect).await? {
            return Ok(None);
        }
        change.record_login(user.id, now).await?;
        let reused = match &reusable {
            Some(p) => change.bind(&p.target, user.id, token_hash, now).await?,
            None => false,
        };
        let (id, created_at, ip_address) = match reusable.filter(|_| reused) {
            Some(p) => (p.record.id, p.record.created_at, p.record.ip_address),
            None => {
                let new = NewSession {
                    token_hash,
                    ip_address: presented.ip,
                    kind,
                    user: Some(user.id),
                    now,
                };
                (change.create_session(new).await?, now, presented.ip)
            }
        };
        let replaced = if kind == SessionKind::Browser && self.policy.single_browser_session() {
            let others = UserSessions {
                user: user.id,
                kind: Some(SessionKind::Browser),
                except: Some(id),
                cutoffs: self.policy.cutoffs(now),
            };
            change.end_sessions(others).await?
        } else {
            0
        };
        let client = presented.client();
        let mut records = vec![
            self.record(AuditEvent::LoginSucceeded, &client)
                .username(user.username.as_str())
                .actor(user.username.as_str())
                .session(id)
                .detail("kind", kind.as_str()),
        ];
        if replaced > 0 {
            records.push(
                self.ended_record(EndCause::Replaced, &user.username, replaced, &client)
                    .actor(user.username.as_str()),
            );
        }
        self.commit_recorded(change, &records).await?;
        if !reused {
            self.ports.events.session_started(kind);
        }
        self.ended(EndCause::Replaced, replaced);
        Ok(Some(Issued {
            session: SessionRecord {
                id,
                token_hash,
                ip_address,
                kind,
                user: Some(SessionUser {
                    id: user.id,
                    username: user.username.clone(),
                    superuser: user.superuser,
                }),
                created_at,
                authenticated_at: Some(now),
                last_activity_at: now,
            },
            credential: Some(Credential::new(id, token)),
        }))
    }
}

/// A time as R19's records show it.
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// R19's `login_failed` reasons.
pub(crate) const BAD_CREDENTIALS: &str = "bad_credentials";
pub(crate) const DISABLED: &str = "disabled";

pub(crate) fn locked(now: OffsetDateTime, until: OffsetDateTime) -> (OffsetDateTime, RetryAfter) {
    (until, RetryAfter::between(now, until))
}

#[async_trait]
impl SessionHolder for Sessions {
    // The hot path (recognition): no span of its own, since an instrumented future costs a
    // poll wrapper and its size on every request even with spans off; the request's span
    // and the batched read's cover it.
    async fn recognise(&self, presented: &Presented) -> Result<Option<SessionRecord>, InfraError> {
        let now = self.ports.clock.now();
        let proven = self.recognise_at(presented, now).await?;
        Ok(proven.map(|p| p.record))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn start(&self, presented: &Presented) -> Result<Issued, StartError> {
        let now = self.ports.clock.now();
        if let Some(proven) = self.recognise_at(presented, now).await? {
            return Ok(Issued {
                session: proven.record,
                credential: None,
            });
        }
        // R14: a token is taken only when a row is about to be created.
        self.admit(LimitedAction::SessionStart, presented.ip)?;
        let token = self.ports.tokens.token(self.policy.token_length())?;
        let token_hash = token.hash();
        let kind = SessionKind::Browser;
        let new = NewSession {
            token_hash,
            ip_address: presented.ip,
            kind,
            user: None,
            now,
        };
        let id = self.ports.sessions.create(new).await?;
        self.ports.events.session_started(kind);
        Ok(Issued {
            session: SessionRecord {
                id,
                token_hash,
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

    fn admit_login(&self, ip: ClientIp) -> Result<LoginPass, RateLimited> {
        self.admit(LimitedAction::Login, ip)?;
        Ok(LoginPass { _granted: () })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn login(
        &self,
        presented: &Presented,
        _pass: LoginPass,
        attempt: LoginAttempt,
    ) -> Result<Issued, LoginError> {
        // R5f's order (see the trait).
        let ticket = self.admit_hashing()?;
        let now = self.ports.clock.now();
        let proven = self.validate(presented, now).await?;
        let client = presented.client();
        let failure = |reason| self.failure(&attempt.username, reason, &client);
        let Ok(username) = Username::parse(&attempt.username) else {
            // R5a: no such name can be locked or counted.
            let failure = failure(BAD_CREDENTIALS);
            return Err(self
                .refuse(presented, proven.as_ref(), None, failure)
                .await?);
        };
        let (ticket, counted) = match self
            .guess::<LoginError>(ticket, &username, &attempt.password)
            .await?
        {
            Guess::Counted(ticket, counted) => (ticket, counted),
            Guess::Locked { now, until } => {
                self.ports.events.login(LoginResult::Locked);
                let (until, retry_after) = locked(now, until);
                return Err(LoginError::Locked { until, retry_after });
            }
            Guess::Overlong => {
                let failure = failure(BAD_CREDENTIALS);
                return Err(self
                    .refuse(presented, proven.as_ref(), None, failure)
                    .await?);
            }
        };
        let verified = self
            .verify_account(&ticket, &username, attempt.password)
            .await?;
        drop(ticket);
        let user = match verified {
            Ok(user) => user,
            Err(reason) => {
                let counted = Some((&username, counted));
                let failure = failure(reason);
                return Err(self
                    .refuse(presented, proven.as_ref(), counted, failure)
                    .await?);
            }
        };
        // R9: the password verified for an enabled account: its count goes, and its lock if
        // it started one, whatever R5d decides next.
        self.ports.lockouts.verified(&username, counted).await?;
        let kind = attempt.kind;
        match self
            .again(|| self.bind_login(presented, proven.clone(), &user, kind, now))
            .await?
        {
            Some(issued) => {
                self.ports.events.login(LoginResult::Success);
                Ok(issued)
            }
            // R5d: an operator's reset, disabling or deletion won the race: the password
            // given is no longer the account's, or the account cannot sign in.
            None => {
                let failure = failure(BAD_CREDENTIALS);
                Err(self
                    .refuse(presented, proven.as_ref(), None, failure)
                    .await?)
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn logout(&self, presented: &Presented) -> Result<(), InfraError> {
        let now = self.ports.clock.now();
        // One read first, so a logged-in session's ending is recorded with it (R19).
        if let Some(proven) = self.validate(presented, now).await? {
            self.end_proven(&proven, EndCause::Logout, &presented.client())
                .await?;
        }
        // R6: "perform periodic maintenance, as this is a good time". One batch only: the
        // backlog is housekeeping's, and a logout must stay quick. The logout itself has
        // happened; a failing purge is reported but does not undo it.
        if let Err(error) = self.sweep(Sweep::OneBatch, crate::audit::OPERATOR).await {
            tracing::warn!(error = %error, "maintenance after logout failed");
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn data(&self, presented: &Presented) -> Result<Option<SessionData>, InfraError> {
        let now = self.ports.clock.now();
        let Some(proven) = self.recognise_at(presented, now).await? else {
            return Ok(None);
        };
        let target = &proven.target;
        self.ports.sessions.data(target.id, target.token_hash).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_data(
        &self,
        presented: &Presented,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionData, SetDataError> {
        let data = SessionData::new(data)?;
        let now = self.ports.clock.now();
        let Some(proven) = self.recognise_at(presented, now).await? else {
            return Err(SetDataError::NoSession);
        };
        if self
            .ports
            .sessions
            .set_data(&proven.target, data.clone())
            .await?
        {
            Ok(data)
        } else {
            Err(SetDataError::NoSession)
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn change_password(
        &self,
        presented: &Presented,
        current: Password,
        new: Password,
    ) -> Result<Issued, ChangePasswordError> {
        self.change_own_password(presented, current, new).await
    }
}
