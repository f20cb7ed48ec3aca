//! Users, sessions, login failures and lockouts, with the indexes of the hot paths (SPEC §7).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Superuser,
    Disabled,
    CreatedAt,
    LastLoginAt,
    PasswordChangedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    TokenHash,
    IpAddress,
    UserId,
    Kind,
    CreatedAt,
    AuthenticatedAt,
    LastActivityAt,
    Data,
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    Username,
    FailureCount,
    LastFailureAt,
}

#[derive(DeriveIden)]
enum AccountLockouts {
    Table,
    Username,
    LockedUntil,
}

/// 191 characters keep a utf8mb4 unique index within MySQL's key length limit.
const USERNAME_LEN: u32 = 191;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Username, USERNAME_LEN))
                    .col(string_len(Users::PasswordHash, 255))
                    .col(boolean(Users::Superuser).default(false))
                    .col(boolean(Users::Disabled).default(false))
                    .col(big_integer(Users::CreatedAt))
                    .col(big_integer_null(Users::LastLoginAt))
                    .col(big_integer(Users::PasswordChangedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(big_pk_auto(Sessions::Id))
                    // SHA-256 of the token (R1); NULL once the session ended.
                    .col(var_binary_null(Sessions::TokenHash, 32))
                    .col(string_len(Sessions::IpAddress, 45))
                    .col(big_integer_null(Sessions::UserId))
                    .col(string_len(Sessions::Kind, 16))
                    .col(big_integer(Sessions::CreatedAt))
                    .col(big_integer_null(Sessions::AuthenticatedAt))
                    .col(big_integer(Sessions::LastActivityAt))
                    .col(text(Sessions::Data))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user_id")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_last_activity_at")
                    .table(Sessions::Table)
                    .col(Sessions::LastActivityAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginFailures::Table)
                    .col(string_len(LoginFailures::Username, USERNAME_LEN).primary_key())
                    .col(big_integer(LoginFailures::FailureCount))
                    .col(big_integer(LoginFailures::LastFailureAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccountLockouts::Table)
                    .col(string_len(AccountLockouts::Username, USERNAME_LEN).primary_key())
                    .col(big_integer(AccountLockouts::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_account_lockouts_locked_until")
                    .table(AccountLockouts::Table)
                    .col(AccountLockouts::LockedUntil)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AccountLockouts::Table.into_iden(),
            LoginFailures::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
