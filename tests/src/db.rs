//! Fresh databases for tests: a temporary SQLite file always; a new PostgreSQL or MySQL
//! database under the server URL in `WEBSESSIONS_TEST_POSTGRES_URL` /
//! `WEBSESSIONS_TEST_MYSQL_URL`. Tests of a backend whose variable was not set when they were
//! built are marked ignored (`on!`); a set URL whose server is unreachable fails the test.
//! MySQL databases are created with a latin1 default character set, the hardest server default
//! the migrations must overcome (SPEC section 7).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use websessions_infrastructure::{PoolOptions, Store, connect, migrate};

/// A migrated, empty database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The pool and its patience, for the adapters.
    pub store: Store,
    /// The pool, for statements of the test's own.
    pub conn: DatabaseConnection,
    /// The URL a server process can open it with.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(tempfile::TempDir),
    Server { admin_url: String, name: String },
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    fn env(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("WEBSESSIONS_TEST_POSTGRES_URL"),
            Self::Mysql => Some("WEBSESSIONS_TEST_MYSQL_URL"),
        }
    }
}

/// `scheme://authority` of a URL, without path or query.
fn server_base(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "wst_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

fn pool() -> PoolOptions {
    PoolOptions {
        max_connections: 10,
        ..PoolOptions::default()
    }
}

impl TestDb {
    /// A migrated, empty database on `backend`. Panics when the backend's variable is unset or
    /// its server unreachable: a test that runs on a backend must not pass without it.
    pub async fn new(backend: Backend) -> Self {
        Self::create(backend, true).await
    }

    /// A database on `backend` with no schema at all, for tests of the migrations themselves.
    pub async fn unmigrated(backend: Backend) -> Self {
        Self::create(backend, false).await
    }

    async fn create(backend: Backend, migrated: bool) -> Self {
        let Some(var) = backend.env() else {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            let store = connect(&url, &pool()).await.expect("open SQLite");
            if migrated {
                migrate(&store).await.expect("migrate SQLite");
            }
            return Self {
                conn: store.connection().clone(),
                store,
                url,
                cleanup: Cleanup::File(dir),
            };
        };
        let url = std::env::var(var)
            .unwrap_or_else(|_| panic!("{var} is not set, yet a {backend:?} test ran"));
        let base = server_base(&url).to_owned();
        let admin_url = match backend {
            Backend::Postgres => format!("{base}/postgres"),
            _ => format!("{base}/mysql"),
        };
        let name = unique_name();
        let admin = admin(&admin_url).await;
        let charset = match backend {
            Backend::Mysql => " CHARACTER SET latin1 COLLATE latin1_swedish_ci",
            _ => "",
        };
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}{charset}"))
            .await
            .unwrap_or_else(|e| panic!("{var}: cannot create a test database: {e}"));
        admin.close().await.ok();
        let url = format!("{base}/{name}");
        let store = connect(&url, &pool())
            .await
            .unwrap_or_else(|e| panic!("{var}: cannot open the test database: {e}"));
        if migrated {
            migrate(&store).await.expect("migrate");
        }
        Self {
            conn: store.connection().clone(),
            store,
            url,
            cleanup: Cleanup::Server { admin_url, name },
        }
    }

    /// Runs `sql` (with `{db}` replaced by this database's name) on the server's admin
    /// database, for tests that take their database away; `false` on SQLite, which has no
    /// server.
    pub async fn as_admin(&self, sql: &str) -> bool {
        let Cleanup::Server { admin_url, name } = &self.cleanup else {
            return false;
        };
        let admin = admin(admin_url).await;
        admin
            .execute_unprepared(&sql.replace("{db}", name))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        admin.close().await.ok();
        true
    }

    /// Drops the database (on failure the panic skips this; the names are unique).
    pub async fn drop(self) {
        drop(self.conn);
        self.store.close().await;
        self.cleanup.run().await;
    }

    /// Drops the database from synchronous code (a `Drop` impl), even inside an async
    /// runtime: the pool is abandoned, not closed (closing would need the caller's runtime,
    /// which is blocked here), and a thread with its own runtime drops the database,
    /// forcibly on PostgreSQL.
    pub fn drop_blocking(self) {
        let cleanup = self.cleanup;
        drop((self.conn, self.store));
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(cleanup.run()))
        })
        .join();
    }
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::File(dir) => drop(dir),
            Cleanup::Server { admin_url, name } => {
                let admin = admin(&admin_url).await;
                let force = if admin_url.starts_with("postgres") {
                    " WITH (FORCE)"
                } else {
                    ""
                };
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
                    .await
                    .ok();
                admin.close().await.ok();
            }
        }
    }
}

async fn admin(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test database server at {url}: {e}"))
}
