//! Administration of user accounts, for superusers and the command line: create, list, show,
//! delete, reset a password (R7), unlock (R9), disable and enable (R7), end a user's sessions.
//! Every change that ends sessions does so in the same account transaction.

use async_trait::async_trait;

use crate::audit::AuditEvent;
use crate::error::{CreateUserError, InfraError, ResetPasswordError, UserError};
use crate::model::{EndCause, LockoutState, Superuser, User};
use crate::ports::{AccountChange, Created, Expect, NewUser, UserSessions};
use crate::service::Sessions;
use crate::value::{NewPassword, Password, Username};

/// What a superuser (or the operator at the command line) can do with accounts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserAdmin: Send + Sync {
    /// Creates a user, validating the username and the password policy.
    async fn create_user(
        &self,
        by: &Superuser,
        username: &str,
        password: Password,
        superuser: bool,
    ) -> Result<User, CreateUserError>;

    /// All users, by username.
    async fn users(&self, by: &Superuser) -> Result<Vec<User>, InfraError>;

    /// One user, with its lockout state.
    async fn user(&self, by: &Superuser, username: &str)
    -> Result<(User, LockoutState), UserError>;

    /// Deletes a user; its sessions go with it (R7).
    async fn delete_user(&self, by: &Superuser, username: &str) -> Result<(), UserError>;

    /// An operator's password reset: ends all the user's sessions (R7).
    async fn reset_password(
        &self,
        by: &Superuser,
        username: &str,
        password: Password,
    ) -> Result<(), ResetPasswordError>;

    /// Clears a username's failures and lock (R9); works for names without an account too.
    async fn unlock(&self, by: &Superuser, username: &str) -> Result<(), UserError>;

    /// Disabling ends all the user's sessions and stops logins (R7); enabling undoes it.
    async fn set_disabled(
        &self,
        by: &Superuser,
        username: &str,
        disabled: bool,
    ) -> Result<(), UserError>;

    /// Ends all the user's sessions; how many ended.
    async fn end_user_sessions(&self, by: &Superuser, username: &str) -> Result<u64, UserError>;
}

/// What an account change's work did, for its records (R19).
#[derive(Clone, Copy, Debug)]
struct Worked {
    /// Whether it changed the account (disabling a disabled account does not).
    changed: bool,
    /// Session rows it deleted that had already expired (a deletion's).
    expired: u64,
}

impl Worked {
    const CHANGED: Self = Self {
        changed: true,
        expired: 0,
    };
}

/// A boxed future, for closures that borrow the transaction they run in.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Sessions {
    async fn existing_user(&self, username: &str) -> Result<User, UserError> {
        let username = Username::parse(username).map_err(|_| UserError::NotFound)?;
        self.ports
            .users
            .find_by_username(&username)
            .await?
            .ok_or(UserError::NotFound)
    }

    /// Runs `work` in an account transaction on `user`'s row, then ends all the user's valid
    /// sessions when `end_sessions` says so, recording `event` by `by` (and the sessions
    /// ended) with it (R19); `None` when the user was deleted meanwhile.
    async fn change_account(
        &self,
        user: &User,
        end_sessions: bool,
        (by, event): (&Superuser, AuditEvent),
        work: impl for<'a> Fn(
            &'a mut Box<dyn AccountChange>,
        ) -> BoxFuture<'a, Result<Worked, InfraError>>
        + Send
        + Sync,
    ) -> Result<Option<u64>, InfraError> {
        self.again(|| self.change_account_once(user, end_sessions, (by, event), &work))
            .await
    }

    async fn change_account_once(
        &self,
        user: &User,
        end_sessions: bool,
        (by, event): (&Superuser, AuditEvent),
        work: &(
             impl for<'a> Fn(&'a mut Box<dyn AccountChange>) -> BoxFuture<'a, Result<Worked, InfraError>>
             + Send
             + Sync
         ),
    ) -> Result<Option<u64>, InfraError> {
        let mut change = self.ports.accounts.begin().await?;
        if !change.lock_user(user.id, Expect::Exists).await? {
            return Ok(None);
        }
        let now = self.ports.clock.now();
        let ended = if end_sessions {
            let all = UserSessions {
                user: user.id,
                kind: None,
                except: None,
                cutoffs: self.policy.cutoffs(now),
            };
            change.end_sessions(all).await?
        } else {
            0
        };
        let worked = work(&mut change).await?;
        let name = user.username.as_str();
        let mut records = Vec::new();
        if worked.changed {
            records.push(
                self.record(event, by.client())
                    .username(name)
                    .actor(by.actor()),
            );
        }
        for (cause, count) in [
            (EndCause::Revoked, ended),
            (EndCause::Expired, worked.expired),
        ] {
            if count > 0 {
                records.push(
                    self.ended_record(cause, &user.username, count, by.client())
                        .actor(by.actor()),
                );
            }
        }
        self.commit_recorded(change, &records).await?;
        self.ended(EndCause::Revoked, ended);
        Ok(Some(ended))
    }
}

#[async_trait]
impl UserAdmin for Sessions {
    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn create_user(
        &self,
        by: &Superuser,
        username: &str,
        password: Password,
        superuser: bool,
    ) -> Result<User, CreateUserError> {
        let username = Username::parse(username)?;
        let password = NewPassword::parse(password)?;
        let ticket = self.admit_hashing()?;
        let password_hash = self
            .ports
            .hasher
            .hash(&ticket, password.password().clone())
            .await?;
        drop(ticket);
        let record = self
            .record(AuditEvent::UserCreated, by.client())
            .username(username.as_str())
            .actor(by.actor())
            .detail("superuser", if superuser { "true" } else { "false" });
        let new = NewUser {
            username,
            password_hash,
            superuser,
            now: self.ports.clock.now(),
        };
        match self.ports.users.create(new, record.clone()).await? {
            Created::User(user) => {
                self.audited([&record]);
                Ok(user)
            }
            Created::Taken => Err(CreateUserError::Taken),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn users(&self, _by: &Superuser) -> Result<Vec<User>, InfraError> {
        self.ports.users.list().await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn user(
        &self,
        _by: &Superuser,
        username: &str,
    ) -> Result<(User, LockoutState), UserError> {
        let user = self.existing_user(username).await?;
        let now = self.ports.clock.now();
        let lock = self.ports.lockouts.state(&user.username, now).await?;
        Ok((user, lock))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn delete_user(&self, by: &Superuser, username: &str) -> Result<(), UserError> {
        let user = self.existing_user(username).await?;
        let id = user.id;
        let record = (by, AuditEvent::UserDeleted);
        self.change_account(&user, true, record, |change| {
            Box::pin(async move {
                // Valid sessions were ended first; what the deletion takes had expired.
                let expired = change.delete_user(id).await?;
                Ok(Worked {
                    changed: true,
                    expired,
                })
            })
        })
        .await?
        .ok_or(UserError::NotFound)
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn reset_password(
        &self,
        by: &Superuser,
        username: &str,
        password: Password,
    ) -> Result<(), ResetPasswordError> {
        let password = NewPassword::parse(password)?;
        let user = self
            .existing_user(username)
            .await
            .map_err(|error| match error {
                UserError::NotFound => ResetPasswordError::NotFound,
                UserError::Infra(e) => ResetPasswordError::Infra(e),
            })?;
        let ticket = self.admit_hashing()?;
        let hash = self
            .ports
            .hasher
            .hash(&ticket, password.password().clone())
            .await?;
        drop(ticket);
        let (id, now) = (user.id, self.ports.clock.now());
        let record = (by, AuditEvent::PasswordReset);
        self.change_account(&user, true, record, |change| {
            let hash = hash.clone();
            Box::pin(async move {
                change.set_password(id, hash, now).await?;
                Ok(Worked::CHANGED)
            })
        })
        .await?
        .ok_or(ResetPasswordError::NotFound)
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn unlock(&self, by: &Superuser, username: &str) -> Result<(), UserError> {
        let username = Username::parse(username).map_err(|_| UserError::NotFound)?;
        let record = self
            .record(AuditEvent::Unlocked, by.client())
            .username(username.as_str())
            .actor(by.actor());
        // Nothing to clear is nothing to record (R19).
        if self.ports.lockouts.clear(&username, record.clone()).await? {
            self.audited([&record]);
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn set_disabled(
        &self,
        by: &Superuser,
        username: &str,
        disabled: bool,
    ) -> Result<(), UserError> {
        let user = self.existing_user(username).await?;
        let id = user.id;
        let event = if disabled {
            AuditEvent::UserDisabled
        } else {
            AuditEvent::UserEnabled
        };
        self.change_account(&user, disabled, (by, event), |change| {
            Box::pin(async move {
                let changed = change.set_disabled(id, disabled).await?;
                Ok(Worked {
                    changed,
                    expired: 0,
                })
            })
        })
        .await?
        .ok_or(UserError::NotFound)
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn end_user_sessions(&self, by: &Superuser, username: &str) -> Result<u64, UserError> {
        let user = self.existing_user(username).await?;
        let actor = (by.actor(), by.client());
        self.end_sessions_of(&user.username, user.id, None, actor)
            .await?
            .ok_or(UserError::NotFound)
    }
}
