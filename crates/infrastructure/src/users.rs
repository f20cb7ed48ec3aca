//! `UserRepository` on SeaORM. Changes that end sessions do so in the same transaction.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, SqlErr, TransactionTrait,
};
use time::OffsetDateTime;
use websessions_domain::ports::{NewUser, Rotation, UserRepository};
use websessions_domain::{CreateUserError, InfraError, PasswordHash, User, UserId, Username};

use crate::entity::{sessions, users};
use crate::error::{corrupt, infra};
use crate::sessions::{by_id_and_hash, end_for_user_in, from_unix, hash_bytes, unix, valid};

/// Users stored with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaUsers {
    db: DatabaseConnection,
}

impl SeaUsers {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
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
    async fn create(&self, new: NewUser) -> Result<User, CreateUserError> {
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
        match row.insert(&self.db).await {
            Ok(row) => Ok(user(row)?),
            Err(error) if is_duplicate(&error) => Err(CreateUserError::Taken),
            Err(error) => Err(infra(error).into()),
        }
    }

    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, InfraError> {
        users::Entity::find()
            .filter(users::Column::Username.eq(username.as_str()))
            .one(&self.db)
            .await
            .map_err(infra)?
            .map(user)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<User>, InfraError> {
        users::Entity::find()
            .order_by_asc(users::Column::Username)
            .all(&self.db)
            .await
            .map_err(infra)?
            .into_iter()
            .map(user)
            .collect()
    }

    async fn set_password(
        &self,
        user: UserId,
        hash: PasswordHash,
        now: OffsetDateTime,
        rotation: Option<Rotation>,
    ) -> Result<Option<u64>, InfraError> {
        let txn = self.db.begin().await.map_err(infra)?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
            .col_expr(users::Column::PasswordChangedAt, Expr::value(unix(now)))
            .filter(users::Column::Id.eq(user.0))
            .exec(&txn)
            .await
            .map_err(infra)?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        let keep = match rotation {
            Some(rotation) => {
                let rotated = sessions::Entity::update_many()
                    .col_expr(
                        sessions::Column::TokenHash,
                        Expr::value(hash_bytes(&rotation.new_hash)),
                    )
                    .col_expr(sessions::Column::LastActivityAt, Expr::value(unix(now)))
                    .filter(by_id_and_hash(rotation.session, &rotation.old_hash))
                    .filter(sessions::Column::UserId.eq(user.0))
                    .filter(valid(rotation.cutoffs))
                    .exec(&txn)
                    .await
                    .map_err(infra)?;
                if rotated.rows_affected == 0 {
                    // The session ended meanwhile: dropping the transaction rolls back.
                    return Ok(None);
                }
                Some(rotation.session)
            }
            None => None,
        };
        let ended = end_for_user_in(&txn, user, keep).await?;
        txn.commit().await.map_err(infra)?;
        Ok(Some(ended))
    }

    async fn set_disabled(&self, user: UserId, disabled: bool) -> Result<u64, InfraError> {
        let txn = self.db.begin().await.map_err(infra)?;
        users::Entity::update_many()
            .col_expr(users::Column::Disabled, Expr::value(disabled))
            .filter(users::Column::Id.eq(user.0))
            .exec(&txn)
            .await
            .map_err(infra)?;
        let ended = if disabled {
            end_for_user_in(&txn, user, None).await?
        } else {
            0
        };
        txn.commit().await.map_err(infra)?;
        Ok(ended)
    }

    async fn delete(&self, user: UserId) -> Result<Option<u64>, InfraError> {
        let txn = self.db.begin().await.map_err(infra)?;
        // Deleting the live sessions first counts them; the cascade removes the rest.
        let ended = sessions::Entity::delete_many()
            .filter(sessions::Column::UserId.eq(user.0))
            .filter(sessions::Column::TokenHash.is_not_null())
            .exec(&txn)
            .await
            .map_err(infra)?
            .rows_affected;
        let deleted = users::Entity::delete_by_id(user.0)
            .exec(&txn)
            .await
            .map_err(infra)?;
        if deleted.rows_affected == 0 {
            return Ok(None);
        }
        txn.commit().await.map_err(infra)?;
        Ok(Some(ended))
    }
}
