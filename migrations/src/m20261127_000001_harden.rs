//! Hardening of the first schema (SPEC section 7, R8): usernames compare byte for byte and text
//! is full UTF-8 on MySQL/MariaDB, whatever the server's defaults; ended sessions are deleted
//! outright from now on, so the rows the first schema kept are removed; and every maintenance
//! statement gets an index to walk.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    TokenHash,
    CreatedAt,
    AuthenticatedAt,
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    LastFailureAt,
}

/// Every table of the schema.
const TABLES: [&str; 4] = ["users", "sessions", "login_failures", "account_lockouts"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::utf8mb4_bin(manager, &TABLES).await?;
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Sessions::Table)
                    .and_where(Expr::col(Sessions::TokenHash).is_null())
                    .to_owned(),
            )
            .await?;
        // Absolute expiry (R2, R8): anonymous sessions by creation, the others by their last
        // login, both walked in order along one index.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_authenticated_at_created_at")
                    .table(Sessions::Table)
                    .col(Sessions::AuthenticatedAt)
                    .col(Sessions::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Failures of names without an account (R8), oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_login_failures_last_failure_at")
                    .table(LoginFailures::Table)
                    .col(LoginFailures::LastFailureAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_login_failures_last_failure_at")
                    .table(LoginFailures::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_authenticated_at_created_at")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await
    }
}
