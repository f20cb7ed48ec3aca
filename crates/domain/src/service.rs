//! `Sessions`, the rules over the ports, and what every actor's service shares: recognising
//! a presented session (R2, R3), issuing credentials, ending a user's sessions in an account
//! transaction, and maintenance (R8). The actors' operations live beside it: `holder`
//! (the session holder), `me` (self-service), `admin` (sessions, for superusers) and `users`
//! (accounts, for superusers and the command line).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditEvent, Client};
use crate::credential::{Credential, TokenHash};
use crate::error::InfraError;
use crate::model::{EndCause, PurgeReport, SessionRecord};
use crate::policy::{LockoutPolicy, SessionPolicy};
use crate::ports::{
    AccountChange, AccountStore, AuditTrail, Clock, Events, Expect, LockoutRepository,
    PasswordHasher, RateLimits, SessionRepository, Sweep, Target, Timer, TokenSource,
    UserRepository, UserSessions,
};
use crate::value::{ClientIp, SessionId, UserId};

/// Maintenance deletes at most this many rows per statement (R8: no long table locks).
pub const PURGE_BATCH: u64 = 1000;

/// How often an account transaction the connection interrupted runs again, each time after
/// the storage has waited for the database to be back.
const RERUNS: usize = 3;

/// What a request presents: its credential (if any parsed), its client IP (R11) and, for a
/// request that may change state, its user agent (what an audit record keeps, R19; reading
/// requests leave it out, so recognition copies nothing).
#[derive(Clone, Debug)]
pub struct Presented {
    pub credential: Option<Credential>,
    pub ip: ClientIp,
    pub user_agent: Option<String>,
}

impl Presented {
    /// Where the request came from, as an audit record keeps it.
    pub fn client(&self) -> Client {
        Client {
            ip: Some(self.ip),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// A session as recognised, with the credential its holder must use from now on when it is
/// new or rotated.
#[derive(Clone, Debug)]
pub struct Issued {
    pub session: SessionRecord,
    /// `Some` when the holder must be given a new credential.
    pub credential: Option<Credential>,
}

/// The ports `Sessions` runs on.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // trait objects of ports have no Debug
pub struct Ports {
    pub sessions: Arc<dyn SessionRepository>,
    pub accounts: Arc<dyn AccountStore>,
    pub users: Arc<dyn UserRepository>,
    pub lockouts: Arc<dyn LockoutRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenSource>,
    pub clock: Arc<dyn Clock>,
    pub timer: Arc<dyn Timer>,
    pub limits: Arc<dyn RateLimits>,
    pub events: Arc<dyn Events>,
    pub audit: Arc<dyn AuditTrail>,
}

/// The rules, implemented over the ports: one value serves every actor's trait
/// (`SessionHolder`, `SelfService`, `SessionAdmin`, `UserAdmin`).
#[derive(Clone)]
pub struct Sessions {
    pub(crate) ports: Ports,
    pub(crate) policy: SessionPolicy,
    pub(crate) lockout: LockoutPolicy,
    /// How long audit records are kept (R19); `None` keeps them all.
    pub(crate) audit_retention: Option<time::Duration>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

/// A valid presented session, and the conditional-write target that names it.
#[derive(Clone, Debug)]
pub(crate) struct Proven {
    pub(crate) record: SessionRecord,
    pub(crate) target: Target,
}

impl Sessions {
    pub fn new(ports: Ports, policy: SessionPolicy, lockout: LockoutPolicy) -> Self {
        Self {
            ports,
            policy,
            lockout,
            audit_retention: None,
        }
    }

    /// Keeps audit records for `retention` (R19); `None` keeps them all.
    #[must_use]
    pub fn with_audit_retention(mut self, retention: Option<time::Duration>) -> Self {
        self.audit_retention = retention;
        self
    }

    /// A record of `event`, now, from `client` (R19).
    pub(crate) fn record(&self, event: AuditEvent, client: &Client) -> AuditEntry {
        AuditEntry::new(event, self.ports.clock.now()).client(client)
    }

    /// Commits `change` with `records`, appended just before its COMMIT (R19: a change and
    /// its records commit together), then reports them.
    pub(crate) async fn commit_recorded(
        &self,
        mut change: Box<dyn AccountChange>,
        records: &[AuditEntry],
    ) -> Result<(), InfraError> {
        for record in records {
            change.audit(record.clone());
        }
        change.commit().await?;
        self.audited(records);
        Ok(())
    }

    /// Appends `records` of a refusal that changed nothing, in a transaction of their own,
    /// then reports them.
    pub(crate) async fn record_refusal(&self, records: Vec<AuditEntry>) -> Result<(), InfraError> {
        self.ports.audit.append(records.clone()).await?;
        self.audited(&records);
        Ok(())
    }

    /// Reports records that committed (R19's metric).
    pub(crate) fn audited<'a>(&self, entries: impl IntoIterator<Item = &'a AuditEntry>) {
        for entry in entries {
            self.ports.events.audited(entry.event);
        }
    }

    /// A `sessions_ended` record of the sessions of `user` that `cause` ended (R19).
    pub(crate) fn ended_record(
        &self,
        cause: EndCause,
        user: &crate::value::Username,
        count: u64,
        client: &Client,
    ) -> AuditEntry {
        self.record(AuditEvent::SessionsEnded, client)
            .username(user.as_str())
            .detail("cause", cause.as_str())
            .count(count)
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// The target naming `id` as presented with `token_hash` from `ip`, at `now`.
    pub(crate) fn target(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        ip: ClientIp,
        now: OffsetDateTime,
    ) -> Target {
        Target {
            id,
            token_hash,
            cutoffs: self.policy.cutoffs(now),
            ip: self.policy.check_ip().then_some(ip),
        }
    }

    /// R2 without the touch: one read, then `Target::matches`.
    pub(crate) async fn validate(
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
        let target = self.target(record.id, credential.token().hash(), presented.ip, now);
        Ok(target.matches(&record).then_some(Proven { record, target }))
    }

    /// R2 and R3: validate, then touch when the stored activity is `touch_interval` old.
    pub(crate) async fn recognise_at(
        &self,
        presented: &Presented,
        now: OffsetDateTime,
    ) -> Result<Option<Proven>, InfraError> {
        if self.policy.touch_interval().is_zero() {
            // Every request writes: let the conditional write check validity and read the row
            // back in one statement. The token hash is then compared by the database; an
            // equality on SHA-256 digests reveals nothing a guesser can use.
            let Some(credential) = &presented.credential else {
                return Ok(None);
            };
            let target = self.target(
                credential.id(),
                credential.token().hash(),
                presented.ip,
                now,
            );
            let touched = self.ports.sessions.touch_and_find(&target, now).await?;
            return Ok(touched.map(|record| Proven { record, target }));
        }
        let Some(mut proven) = self.validate(presented, now).await? else {
            return Ok(None);
        };
        if now - proven.record.last_activity_at >= self.policy.touch_interval() {
            if !self.ports.sessions.touch(&proven.target, now).await? {
                return Ok(None);
            }
            proven.record.last_activity_at = now;
        }
        Ok(Some(proven))
    }

    /// Ends a presented session while it still matches; reports it under `cause`, and
    /// records it when it had a user: as `event` (a logout), else as `sessions_ended`.
    pub(crate) async fn end_proven(
        &self,
        proven: &Proven,
        cause: EndCause,
        client: &Client,
    ) -> Result<(), InfraError> {
        // The target names the token, and a login always rotates it: while the target
        // matches, the row's user is the one read.
        let record = proven.record.user.as_ref().map(|user| {
            let entry = match cause {
                EndCause::Logout => self
                    .record(AuditEvent::Logout, client)
                    .username(user.username.as_str())
                    .actor(user.username.as_str()),
                _ => self.ended_record(cause, &user.username, 1, client),
            };
            entry.session(proven.record.id)
        });
        let audited = record.clone();
        if self.ports.sessions.end(&proven.target, record).await? {
            self.ended(cause, 1);
            self.audited(&audited);
        }
        Ok(())
    }

    /// Reports `count` sessions ended by `cause`.
    pub(crate) fn ended(&self, cause: EndCause, count: u64) {
        if count > 0 {
            self.ports.events.sessions_ended(cause, count);
        }
    }

    /// A fresh credential for session `id`, and the hash storage keeps (R1).
    pub(crate) fn new_credential(
        &self,
        id: SessionId,
    ) -> Result<(Credential, TokenHash), InfraError> {
        let token = self.ports.tokens.token(self.policy.token_length())?;
        let hash = token.hash();
        Ok((Credential::new(id, token), hash))
    }

    /// Runs an account transaction again when the connection interrupted it before anything
    /// was committed (a database restart), up to `RERUNS` times; every decision in it is made
    /// again from the same inputs.
    pub(crate) async fn again<T, F, Fut>(&self, mut unit: F) -> Result<T, InfraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, InfraError>>,
    {
        let mut left = RERUNS;
        loop {
            match unit().await {
                Err(InfraError::Interrupted(_)) if left > 0 => left -= 1,
                Err(InfraError::Interrupted(error)) => return Err(InfraError::Unavailable(error)),
                other => return other,
            }
        }
    }

    /// Ends every valid session of `user` except `except`, after taking the user's row (one
    /// lock order with logins); how many ended, or `None` when the user no longer exists.
    /// `by` is recorded as the actor (R19).
    pub(crate) async fn end_sessions_of(
        &self,
        user: &crate::value::Username,
        id: UserId,
        except: Option<SessionId>,
        by: (&str, &Client),
    ) -> Result<Option<u64>, InfraError> {
        self.again(|| self.end_sessions_once(user, id, except, by))
            .await
    }

    async fn end_sessions_once(
        &self,
        user: &crate::value::Username,
        id: UserId,
        except: Option<SessionId>,
        (actor, client): (&str, &Client),
    ) -> Result<Option<u64>, InfraError> {
        let cause = EndCause::Revoked;
        let mut change = self.ports.accounts.begin().await?;
        if !change.lock_user(id, Expect::Exists).await? {
            return Ok(None);
        }
        let now = self.ports.clock.now();
        let ended = change
            .end_sessions(UserSessions {
                user: id,
                kind: None,
                except,
                cutoffs: self.policy.cutoffs(now),
            })
            .await?;
        let records: Vec<_> = (ended > 0)
            .then(|| self.ended_record(cause, user, ended, client).actor(actor))
            .into_iter()
            .collect();
        self.commit_recorded(change, &records).await?;
        self.ended(cause, ended);
        Ok(Some(ended))
    }

    /// R8: deletes what `sweep` allows of the expired sessions, expired lockouts and the
    /// failures of names without an account.
    /// `actor` is recorded as who ended the expired sessions (R19).
    pub(crate) async fn sweep(&self, sweep: Sweep, actor: &str) -> Result<PurgeReport, InfraError> {
        let now = self.ports.clock.now();
        let cutoffs = self.policy.cutoffs(now);
        let expired = AuditEntry::new(AuditEvent::SessionsEnded, now)
            .actor(actor)
            .detail("cause", EndCause::Expired.as_str());
        let expired_sessions = self
            .ports
            .sessions
            .purge(cutoffs, PURGE_BATCH, sweep, &expired)
            .await?;
        let lockouts = self.ports.lockouts.purge(now, PURGE_BATCH, sweep).await?;
        let audit_records = match self.audit_retention {
            Some(retention) => {
                self.ports
                    .audit
                    .expire(now - retention, PURGE_BATCH, sweep)
                    .await?
            }
            None => 0,
        };
        let report = PurgeReport {
            expired_sessions,
            expired_lockouts: lockouts.expired_locks,
            orphan_failures: lockouts.orphan_failures,
            audit_records,
        };
        self.ended(EndCause::Expired, expired_sessions);
        self.ports.events.purged(report);
        Ok(report)
    }
}
