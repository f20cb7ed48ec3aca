//! websessions' infrastructure: SeaORM adapters implementing the domain's ports on SQLite,
//! PostgreSQL and MySQL/MariaDB, argon2id hashing on low-priority threads of its own, OS
//! randomness and the system clock.
//!
//! It depends on the domain (whose ports it implements) and never on the API.

mod db;
mod entity;
mod error;
mod lockouts;
mod recognition;
mod sessions;
mod system;
#[cfg(feature = "testing")]
pub mod testing;
mod users;

pub use db::{PoolOptions, connect, migrate};
pub use lockouts::SeaLockouts;
pub use sea_orm::{DatabaseConnection, DbErr};
pub use sessions::SeaSessions;
pub use system::{Argon2Hasher, OsTokens, SystemClock};
pub use users::SeaUsers;
