//! The websessions schema, one migration set for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Timestamps are stored as whole Unix seconds (BIGINT) so that comparisons behave the same on
//! every backend and no time zone setting of a server can shift them.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_schema;
mod m20261127_000001_harden;
mod m20261208_000001_provisional_locks;
mod m20261209_000001_audit_trail;

/// On MySQL/MariaDB, converts `tables` to utf8mb4 with its binary collation: any client text
/// is stored, and text (usernames above all: `Admin` and `admin` are two accounts) compares byte
/// for byte, whatever the server's defaults. Elsewhere, nothing.
pub(crate) async fn utf8mb4_bin(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
    if manager.get_database_backend() != DbBackend::MySql {
        return Ok(());
    }
    for table in tables {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await?;
    }
    Ok(())
}

/// Applies the migrations in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_schema::Migration),
            Box::new(m20261127_000001_harden::Migration),
            Box::new(m20261208_000001_provisional_locks::Migration),
            Box::new(m20261209_000001_audit_trail::Migration),
        ]
    }
}
