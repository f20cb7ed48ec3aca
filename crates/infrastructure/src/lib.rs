//! websessions' infrastructure: SeaORM adapters implementing the domain's ports on SQLite,
//! PostgreSQL and MySQL/MariaDB, argon2id hashing on low-priority threads of its own with a
//! bounded queue, per-address token buckets, OS randomness and the system clock.
//!
//! The sessions table has one home (`sessions`: its vocabulary in `sessions/table.rs`, the hot
//! path's rooms in `sessions/hot_path/`); the other adapters borrow its vocabulary and never
//! each other. The audit trail's chain (R19) is `audit`'s. It depends on the domain (whose ports it implements) and never on the API.

mod accounts;
mod audit;
mod batches;
mod db;
mod entity;
mod error;
mod limits;
mod lockouts;
mod patience;
mod sessions;
mod system;
mod users;

pub use accounts::SeaAccounts;
pub use audit::SeaAudit;
pub use db::{PoolOptions, Store, connect, migrate};
pub use limits::{AddressLimits, MAX_ADDRESSES, Monotonic, SystemMonotonic};
pub use lockouts::SeaLockouts;
pub use patience::{Patience, WaitObserver};
pub use sea_orm::{DatabaseConnection, DbErr};
pub use sessions::SeaSessions;
pub use system::{Argon2Hasher, DEFAULT_MAX_PENDING_HASHES, OsTokens, SystemClock, TokioTimer};
pub use users::SeaUsers;
