//! R7: a holder changes their own password. The current password is counted and verified
//! like a login's (R9), the new one must meet the policy, and in one transaction the token
//! rotates and the user's other sessions end.

use time::OffsetDateTime;

use crate::audit::{AuditEvent, Client};
use crate::error::{ChangePasswordError, InfraError};
use crate::holder::{BAD_CREDENTIALS, Guess, locked};
use crate::model::{EndCause, User};
use crate::ports::{Expect, UserSessions};
use crate::service::{Issued, Presented, Proven, Sessions};
use crate::value::{NewPassword, Password, PasswordHash};

impl Sessions {
    /// `SessionHolder::change_password`.
    pub(crate) async fn change_own_password(
        &self,
        presented: &Presented,
        current: Password,
        new: Password,
    ) -> Result<Issued, ChangePasswordError> {
        // R7's order: R15, the lock, the current password (counted first), the policy.
        let ticket = self.admit_hashing()?;
        let now = self.ports.clock.now();
        let Some(proven) = self.recognise_at(presented, now).await? else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        let Some(me) = proven.record.user.clone() else {
            return Err(ChangePasswordError::NotLoggedIn);
        };
        let (ticket, counted) = match self
            .guess::<ChangePasswordError>(ticket, &me.username, &current)
            .await?
        {
            Guess::Counted(ticket, counted) => (ticket, counted),
            Guess::Locked { now, until } => {
                let (until, retry_after) = locked(now, until);
                return Err(ChangePasswordError::Locked { until, retry_after });
            }
            Guess::Overlong => {
                let client = presented.client();
                let failure = self.wrong_password(&me.username, BAD_CREDENTIALS, &proven, &client);
                self.record_refusal(vec![failure]).await?;
                return Err(ChangePasswordError::WrongPassword);
            }
        };
        let user = match self.verify_account(&ticket, &me.username, current).await? {
            Ok(user) => user,
            Err(reason) => {
                let failure =
                    self.wrong_password(&me.username, reason, &proven, &presented.client());
                self.failed(&me.username, counted, failure).await?;
                return Err(ChangePasswordError::WrongPassword);
            }
        };
        self.ports.lockouts.verified(&me.username, counted).await?;
        let new = NewPassword::parse(new)?;
        let new_hash = self
            .ports
            .hasher
            .hash(&ticket, new.password().clone())
            .await?;
        drop(ticket);
        let client = presented.client();
        self.again(|| {
            self.rotate_for_new_password(proven.clone(), &user, new_hash.clone(), now, &client)
        })
        .await?
        .ok_or(ChangePasswordError::NotLoggedIn)
    }

    /// R19: a password change's current password that did not verify is a failed login of
    /// the session's user, recorded with the session it came through.
    fn wrong_password(
        &self,
        username: &crate::value::Username,
        reason: &str,
        proven: &Proven,
        client: &Client,
    ) -> crate::audit::AuditEntry {
        self.failure(username.as_str(), reason, client)
            .actor(username.as_str())
            .session(proven.record.id)
            .detail("during", "password_change")
    }

    /// R7, in one transaction while the account is unchanged since the current password
    /// verified: stores the new hash, rotates the presented session's token and ends the
    /// user's other sessions. `None` when the session or the account changed meanwhile.
    async fn rotate_for_new_password(
        &self,
        proven: Proven,
        user: &User,
        new_hash: PasswordHash,
        now: OffsetDateTime,
        client: &Client,
    ) -> Result<Option<Issued>, InfraError> {
        let Proven { mut record, target } = proven;
        let (credential, token_hash) = self.new_credential(record.id)?;
        let mut change = self.ports.accounts.begin().await?;
        let expect = Expect::Unchanged(user.password_hash.clone());
        if !change.lock_user(user.id, expect).await?
            || !change.rotate(&target, user.id, token_hash, now).await?
        {
            return Ok(None);
        }
        change.set_password(user.id, new_hash, now).await?;
        let others = UserSessions {
            user: user.id,
            kind: None,
            except: Some(record.id),
            cutoffs: self.policy.cutoffs(now),
        };
        let ended = change.end_sessions(others).await?;
        let name = user.username.as_str();
        let mut records = vec![
            self.record(AuditEvent::PasswordChanged, client)
                .username(name)
                .actor(name)
                .session(record.id),
        ];
        if ended > 0 {
            records.push(
                self.ended_record(EndCause::PasswordChange, &user.username, ended, client)
                    .actor(name),
            );
        }
        self.commit_recorded(change, &records).await?;
        self.ended(EndCause::PasswordChange, ended);
        record.token_hash = token_hash;
        record.last_activity_at = now;
        Ok(Some(Issued {
            session: record,
            credential: Some(credential),
        }))
    }
}
