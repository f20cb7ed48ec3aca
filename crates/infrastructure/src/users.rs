//! `UserRepository` on SeaORM: user rows, read and created. Usernames compare byte for byte on
//! every backend (a binary collation on MySQL/MariaDB, set by the migrations).

use async_trait::async_trait;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    SqlErr, TransactionTrait,
};
use websessions_domain::audit::AuditEntry;
use websessions_domain::ports::{Created, NewUser, UserRepository};
use websessions_domain::{InfraError, PasswordHash, User, UserId, Username};

use crate::audit::append_in;
use crate::db::Store;
use crate::entity::users;
use crate::error::{corrupt, lost, retry};
use crate::patience::Failure;
use crate::sessions::table::{from_unix, unix};

/// Users stored with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaUsers {
    store: Store,
}

impl SeaUsers {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn user(row: users::Model) -> Result<User, InfraError> {
    Ok(User {
        id: UserId(row.id),
        username: Username::parse(&row.username).map_err(|_| corrupt("username"))?,
        password_hash: PasswordHash::new(row.password_hash),
        superuser: row.superuser,
        disabled: row.disabled,
        created_at: from_unix(row.created_at)?,
        last_login_at: row.last_login_at.map(from_unix).transpose()?,
        password_changed_at: from_unix(row.password_changed_at)?,
    })
}

fn is_duplicate(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[async_trait]
impl UserRepository for SeaUsers {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn create(&self, new: NewUser, audit: AuditEntry) -> Result<Created, InfraError> {
        let now = unix(new.now);
        let row = users::ActiveModel {
            username: Set(new.username.as_str().to_owned()),
            password_hash: Set(new.password_hash.as_str().to_owned()),
            superuser: Set(new.superuser),
            disabled: Set(false),
            created_at: Set(now),
            last_login_at: Set(None),
            password_changed_at: Set(now),
            ..Default::default()
        };
        let (row, audit) = (&row, std::slice::from_ref(&audit));
        let inserted = self
            .store
            .run(|db| async move {
                let txn = db.begin().await.map_err(retry)?;
                let row = match row.clone().insert(&txn).await {
                    Ok(row) => row,
                    Err(error) if is_duplicate(&error) => return Ok(None),
                    Err(error) => return Err(retry(error)),
                };
                append_in(&txn, audit).await?;
                // Never replayed once its COMMIT was sent: were the answer lost, the name would
                // be found taken by its own creation.
                txn.commit().await.map_err(|e| Failure::from(lost(e)))?;
                Ok(Some(row))
            })
            .await?;
        match inserted {
            Some(row) => Ok(Created::User(user(row)?)),
            None => Ok(Created::Taken),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, InfraError> {
        let find = &users::Entity::find().filter(users::Column::Username.eq(username.as_str()));
        self.store
            .run(|db| async move { find.clone().one(db).await.map_err(retry) })
            .await?
            .map(user)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> Result<Vec<User>, InfraError> {
        let find = &users::Entity::find().order_by_asc(users::Column::Username);
        self.store
            .run(|db| async move { find.clone().all(db).await.map_err(retry) })
            .await?
            .into_iter()
            .map(user)
            .collect()
    }
}
