//! `SessionRepository` on SeaORM: the sessions table in one folder. `table` is its vocabulary
//! (R2's condition translated once, the row mapping), `hot_path` recognition's prebuilt
//! statements, and this adapter everything else. Every write that could race is conditional
//! (`... WHERE still valid`), never a read followed by a write. Ending a session deletes its
//! row.

mod hot_path;
pub(crate) mod table;

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use time::OffsetDateTime;
use websessions_domain::audit::AuditEntry;
use websessions_domain::ports::{NewSession, Owner, SessionRepository, Sweep, Target};
use websessions_domain::{
    Cutoffs, InfraError, SessionData, SessionId, SessionQuery, SessionRecord, TokenHash,
};

use self::hot_path::HotPath;
use self::table::{SessionRow, hash_bytes, matches, select_records, unix, valid_at};
use crate::audit::recorded;
use crate::batches::{Audited, Batches};
use crate::db::Store;
use crate::entity::sessions;
use crate::error::{corrupt, once, retry};

/// Sessions stored with SeaORM; recognition runs on the hot path chosen for the database.
#[derive(Clone, Debug)]
pub struct SeaSessions {
    store: Store,
    hot_path: Arc<dyn HotPath>,
}

impl SeaSessions {
    /// On PostgreSQL and MySQL/MariaDB, recognition gets its own connections, opened as needed
    /// up to the pool's size and with its acquire timeout (so the service holds at most twice
    /// that many).
    ///
    /// # Errors
    /// When the hot path's statements cannot be rendered for the database (a defect).
    pub fn new(store: Store) -> Result<Self, InfraError> {
        let hot_path = hot_path::for_database(&store)?;
        Ok(Self { store, hot_path })
    }

    /// Closes recognition's own connections (the shared pool is closed with its `Store`).
    pub async fn close(&self) {
        self.hot_path.close().await;
    }
}

impl SeaSessions {
    /// Deletes what `delete` matches (one row at most) and, when it deleted one, appends
    /// `entry` with it (R19); whether it deleted.
    async fn end_recorded(
        &self,
        delete: &sea_orm::DeleteMany<sessions::Entity>,
        entry: AuditEntry,
    ) -> Result<bool, InfraError> {
        recorded(&self.store, |txn| {
            let (delete, entry) = (delete.clone(), entry.clone());
            Box::pin(async move {
                let ended = delete.exec(txn).await.map_err(retry)?.rows_affected == 1;
                Ok((ended, if ended { vec![entry] } else { vec![] }))
            })
        })
        .await
    }
}

/// Inserts a session row in `db` (possibly a transaction); its id.
pub(crate) async fn insert<C: ConnectionTrait>(db: &C, session: &NewSession) -> Result<i64, DbErr> {
    let now = unix(session.now);
    let row = sessions::ActiveModel {
        token_hash: Set(Some(hash_bytes(&session.token_hash))),
        ip_address: Set(session.ip_address.to_string()),
        user_id: Set(session.user.map(|u| u.0)),
        kind: Set(session.kind.as_str().to_owned()),
        created_at: Set(now),
        authenticated_at: Set(session.user.map(|_| now)),
        last_activity_at: Set(now),
        data: Set("{}".to_owned()),
        ..Default::default()
    };
    Ok(sessions::Entity::insert(row).exec(db).await?.last_insert_id)
}

/// The id the database gave a new session.
pub(crate) fn inserted(id: i64) -> Result<SessionId, InfraError> {
    SessionId::new(id).ok_or_else(|| corrupt("session id"))
}

#[async_trait]
impl SessionRepository for SeaSessions {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn create(&self, session: NewSession) -> Result<SessionId, InfraError> {
        // An insert commits itself: it runs again only if it never reached the server.
        let session = &session;
        let id = self
            .store
            .run(|db| async move { insert(db, session).await.map_err(once) })
            .await?;
        inserted(id)
    }

    // The hot path (recognition): no span of its own, since an instrumented future costs a
    // poll wrapper and its size on every request even with spans off; the request's span
    // and the batched read's cover it.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRecord>, InfraError> {
        let row = self.hot_path.find(id).await?;
        row.map(SessionRow::into_record).transpose()
    }

    // The hot path (recognition): no span of its own, since an instrumented future costs a
    // poll wrapper and its size on every request even with spans off; the request's span
    // and the batched read's cover it.
    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError> {
        self.hot_path.touch(target, now).await
    }

    // The hot path (recognition): no span of its own, since an instrumented future costs a
    // poll wrapper and its size on every request even with spans off; the request's span
    // and the batched read's cover it.
    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, InfraError> {
        let row = self.hot_path.touch_and_find(target, now).await?;
        row.map(SessionRow::into_record).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %target.id))]
    async fn end(&self, target: &Target, audit: Option<AuditEntry>) -> Result<bool, InfraError> {
        let delete = &sessions::Entity::delete_many().filter(matches(target));
        if let Some(entry) = audit {
            return self.end_recorded(delete, entry).await;
        }
        // Logout is safe to repeat (SPEC section 5: it waits for the database).
        let result = self
            .store
            .run(|db| async move { delete.clone().exec(db).await.map_err(retry) })
            .await?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %id))]
    async fn end_by_id(
        &self,
        id: SessionId,
        owner: Owner,
        cutoffs: Cutoffs,
        audit: Option<AuditEntry>,
    ) -> Result<bool, InfraError> {
        let delete = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.eq(id.get()))
            .filter(valid_at(cutoffs))
            .filter(match owner {
                Owner::Nobody => sessions::Column::UserId.is_null(),
                Owner::User(user) => sessions::Column::UserId.eq(user.0),
            });
        if let Some(entry) = audit {
            return self.end_recorded(&delete, entry).await;
        }
        // Repeated after a lost answer it would report "not found" for a session it ended:
        // it runs again only if it never reached the server.
        let delete = &delete;
        let result = self
            .store
            .run(|db| async move { delete.clone().exec(db).await.map_err(once) })
            .await?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %id))]
    async fn data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
    ) -> Result<Option<SessionData>, InfraError> {
        let find = &sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Data)
            .filter(sessions::Column::Id.eq(id.get()))
            .filter(sessions::Column::TokenHash.eq(hash_bytes(&token_hash)));
        let text: Option<String> = self
            .store
            .run(|db| async move { find.clone().into_tuple().one(db).await.map_err(retry) })
            .await?;
        text.map(|text| {
            serde_json::from_str(&text)
                .ok()
                .and_then(|object| SessionData::new(object).ok())
                .ok_or_else(|| corrupt("session data"))
        })
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %target.id))]
    async fn set_data(&self, target: &Target, data: SessionData) -> Result<bool, InfraError> {
        let text = serde_json::Value::Object(data.into_object()).to_string();
        let update = &sessions::Entity::update_many()
            .col_expr(sessions::Column::Data, Expr::value(text))
            .filter(matches(target));
        let result = self
            .store
            .run(|db| async move { update.clone().exec(db).await.map_err(once) })
            .await?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(
        &self,
        query: SessionQuery,
        cutoffs: Cutoffs,
    ) -> Result<Vec<SessionRecord>, InfraError> {
        let mut select = select_records().filter(valid_at(cutoffs));
        if let Some(user) = query.user {
            select = select.filter(sessions::Column::UserId.eq(user.0));
        }
        if let Some(since) = query.active_since {
            select = select.filter(sessions::Column::LastActivityAt.gte(unix(since)));
        }
        if let Some(after) = query.after {
            select = select.filter(sessions::Column::Id.gt(after.get()));
        }
        let select = &select.order_by_asc(sessions::Column::Id).limit(query.limit);
        self.store
            .run(|db| async move {
                let rows = select.clone().into_model::<SessionRow>().all(db).await;
                rows.map_err(retry)
            })
            .await?
            .into_iter()
            .map(SessionRow::into_record)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError> {
        let find =
            &sessions::Entity::find().filter(sessions::Column::LastActivityAt.gte(unix(since)));
        self.store
            .run(|db| async move { find.clone().count(db).await.map_err(retry) })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(
        &self,
        cutoffs: Cutoffs,
        batch: u64,
        sweep: Sweep,
        expired_record: &AuditEntry,
    ) -> Result<u64, InfraError> {
        let mut deleted = 0;
        for (condition, order) in table::expired(cutoffs) {
            let expired = Batches::<sessions::Entity> {
                key: sessions::Column::Id,
                order,
                condition,
            };
            let audited = Audited {
                owner: sessions::Column::UserId,
                entry: expired_record,
            };
            deleted += expired
                .delete::<i64>(&self.store, batch, sweep, Some(audited))
                .await?;
        }
        Ok(deleted)
    }
}
