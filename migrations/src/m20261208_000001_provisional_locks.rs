//! R9's provisional locks: a lock carries, while the attempt that started it is still being
//! verified, the end of that attempt's lease. Until then other attempts wait for the outcome
//! instead of being refused; after it, the lock stands.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccountLockouts {
    Table,
    LeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AccountLockouts::Table)
                    .add_column(
                        ColumnDef::new(AccountLockouts::LeaseUntil)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AccountLockouts::Table)
                    .drop_column(AccountLockouts::LeaseUntil)
                    .to_owned(),
            )
            .await
    }
}
