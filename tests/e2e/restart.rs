//! A database restart fails no request (SPEC section 5, `WEBSESSIONS_DATABASE_WAIT`). Each test
//! runs a database server of its own on a free port (a PostgreSQL cluster made with `initdb`
//! and run as the `postgres` user, or a MariaDB data directory made with `mariadb-install-db`),
//! puts the real binary on it under a steady load of recognitions and logins, and stops and
//! starts that server: never the machine's shared ones. Which binaries to use comes from
//! `WEBSESSIONS_TEST_PG_BIN` (PostgreSQL's `bin` directory) and `WEBSESSIONS_TEST_MARIADBD`;
//! tests of an engine whose variable was not set when they were built are ignored. After the
//! restart, every login that committed has its audit record and every record its session (R19).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::{Server, free_port};
use crate::support::{PASSWORD, api_login, get_json, metrics, readiness};

/// The wait the servers here run with: longer than the restarts, shorter than the stop.
const WAIT: Duration = Duration::from_secs(4);
/// How long the database is down in the restart (stop, this long, start).
const RESTART_DOWN: Duration = Duration::from_millis(1500);
/// How long the database is down in the outage: well past the wait.
const OUTAGE_DOWN: Duration = Duration::from_secs(8);

/// The database server a test runs of its own: PostgreSQL, or MariaDB for MySQL.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Postgres,
    Mariadb,
}

impl Engine {
    fn of(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::Postgres,
            Backend::Mysql => Self::Mariadb,
            Backend::Sqlite => unreachable!("SQLite has no server to restart"),
        }
    }
}

/// A database server this test owns: created, stopped, started and removed by it.
struct OwnDatabase {
    engine: Engine,
    dir: tempfile::TempDir,
    port: u16,
    /// MariaDB's server process while it runs (PostgreSQL's is `pg_ctl`'s).
    mariadbd: Option<Child>,
    running: bool,
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn configured(var: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set")))
}

impl OwnDatabase {
    /// A new, running server of `engine` with an empty database.
    fn create(engine: Engine) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        match engine {
            Engine::Postgres => {
                // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
                run(Command::new("chown").arg("postgres:").arg(dir.path()));
                run(Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(Self::pg_bin("initdb"))
                    .args(["-A", "trust", "-U", "postgres", "-N", "-D"])
                    .arg(&data));
            }
            Engine::Mariadb => {
                let install = configured("WEBSESSIONS_TEST_MARIADBD")
                    .parent()
                    .and_then(Path::parent)
                    .map(|prefix| prefix.join("bin/mariadb-install-db"))
                    .filter(|path| path.exists())
                    .unwrap_or_else(|| PathBuf::from("mariadb-install-db"));
                // A temporary directory of its own: a mariadbd starting beside it removes
                // every `#sql*` file in its tmpdir, which broke a concurrent bootstrap in /tmp.
                std::fs::create_dir(dir.path().join("tmp")).unwrap();
                run(Command::new(install)
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--tmpdir={}", dir.path().join("tmp").display()))
                    .args(["--user=root", "--auth-root-authentication-method=normal"]));
            }
        }
        let mut db = Self {
            engine,
            dir,
            port,
            mariadbd: None,
            running: false,
        };
        db.start();
        db
    }

    fn pg_bin(tool: &str) -> PathBuf {
        configured("WEBSESSIONS_TEST_PG_BIN").join(tool)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL the service opens.
    fn url(&self) -> String {
        match self.engine {
            Engine::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            // `mariadb-install-db` creates the empty database `test`.
            Engine::Mariadb => format!("mysql://root@127.0.0.1:{}/test", self.port),
        }
    }

    /// Starts the server and returns once it accepts connections.
    fn start(&mut self) {
        match self.engine {
            Engine::Postgres => {
                let options = format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.dir.path().display()
                );
                run(Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(Self::pg_bin("pg_ctl"))
                    .arg("-D")
                    .arg(self.data())
                    .arg("-l")
                    .arg(self.dir.path().join("log"))
                    .args(["-w", "-o", &options, "start"]));
            }
            Engine::Mariadb => {
                let log = std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("log"))
                    .unwrap();
                let child = Command::new(configured("WEBSESSIONS_TEST_MARIADBD"))
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!(
                        "--tmpdir={}",
                        self.dir.path().join("tmp").display()
                    ))
                    .arg(format!(
                        "--socket={}",
                        self.dir.path().join("sock").display()
                    ))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("pid").display()
                    ))
                    .args([
                        "--user=root",
                        "--bind-address=127.0.0.1",
                        "--skip-log-bin",
                        "--innodb-flush-log-at-trx-commit=2",
                    ])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                self.mariadbd = Some(child);
                // mariadbd listens once it is ready for connections.
                let deadline = Instant::now() + Duration::from_secs(60);
                while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    assert!(Instant::now() < deadline, "mariadbd did not start");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        self.running = true;
    }

    /// Stops the server (a clean, fast shutdown: open connections are ended).
    fn stop(&mut self) {
        match self.engine {
            Engine::Postgres => run(Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(Self::pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"])),
            Engine::Mariadb => {
                if let Some(mut child) = self.mariadbd.take() {
                    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
                    child.wait().unwrap();
                }
            }
        }
        self.running = false;
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        if self.running {
            match self.engine {
                Engine::Postgres => {
                    let _ = Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(Self::pg_bin("pg_ctl"))
                        .arg("-D")
                        .arg(self.data())
                        .args(["-m", "immediate", "-w", "stop"])
                        .output();
                }
                Engine::Mariadb => {
                    if let Some(mut child) = self.mariadbd.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
        }
    }
}

/// One request of the load: when it started, how long it took, what it answered (0: no
/// answer at all), and its `Retry-After`.
#[derive(Clone, Debug)]
struct Sample {
    started: Instant,
    took: Duration,
    status: u16,
    retry_after: Option<String>,
}

async fn sample(request: reqwest::RequestBuilder) -> Sample {
    let started = Instant::now();
    let (status, retry_after) = match request.send_checked().await {
        Ok(resp) => (
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(_) => (0, None),
    };
    Sample {
        started,
        took: started.elapsed(),
        status,
        retry_after,
    }
}

/// A client whose timeout is well past the wait (a load generator's must exceed it).
fn patient_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT * 4)
        .build()
        .unwrap()
}

/// Recognitions of `credentials` in turn until `stop`.
async fn recognitions(
    base: String,
    credentials: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let http = patient_client();
    let mut samples = Vec::new();
    for credential in credentials.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let request = http
            .get(format!("{base}/v1/session"))
            .bearer_auth(credential);
        samples.push(sample(request).await);
    }
    samples
}

/// API logins of alice until `stop`.
async fn logins(base: String, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let http = patient_client();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let request = http
            .post(format!("{base}/v1/session/login"))
            .json(&json!({"username": "alice", "password": PASSWORD, "client": "api"}));
        samples.push(sample(request).await);
    }
    samples
}

/// The `q`-quantile of the samples' latencies.
fn quantile(samples: &[&Sample], q: f64) -> Duration {
    let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    took.sort();
    let index = ((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1;
    took[index]
}

/// A server on its own `engine` server, with alice and 16 API credentials of hers.
async fn serving(engine: Engine) -> (OwnDatabase, Server, Vec<String>) {
    let db = tokio::task::spawn_blocking(move || OwnDatabase::create(engine))
        .await
        .unwrap();
    let wait = format!("{}s", WAIT.as_secs());
    let settings = [("WEBSESSIONS_DATABASE_WAIT", wait.as_str())];
    let server = Server::start_on(&db.url(), &settings, free_port()).await;
    server.create_user("alice", PASSWORD);
    let mut credentials = Vec::new();
    for _ in 0..16 {
        credentials.push(api_login(&server, "alice", PASSWORD).await);
    }
    (db, server, credentials)
}

/// Stops the database, keeps it down for `down`, starts it again; when it stopped and when it
/// was back.
async fn bounce(db: OwnDatabase, down: Duration) -> (OwnDatabase, Instant, Instant) {
    tokio::task::spawn_blocking(move || {
        let mut db = db;
        let stopping = Instant::now();
        db.stop();
        std::thread::sleep(down);
        db.start();
        (db, stopping, Instant::now())
    })
    .await
    .unwrap()
}

/// Under a steady load of recognitions (6 clients) and logins (1 client), the database is
/// restarted (down for 1.5 s, shorter than the 4 s wait): every recognition answers 200, and
/// every login 200 or, when its COMMIT's answer was lost, 503 with `Retry-After: 1`.
async fn a_database_restart_fails_no_recognition(backend: Backend) {
    let engine = Engine::of(backend);
    let (db, server, credentials) = serving(engine).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = credentials
        .chunks(credentials.len() / 6)
        .take(6)
        .map(|chunk| {
            tokio::spawn(recognitions(
                server.base.clone(),
                chunk.to_vec(),
                stop.clone(),
            ))
        })
        .collect();
    let writer = tokio::spawn(logins(server.base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (db, stopped, back) = bounce(db, RESTART_DOWN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for reader in readers {
        reads.extend(reader.await.unwrap());
    }
    let writes = writer.await.unwrap();

    let failed: Vec<&Sample> = reads.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} recognitions failed, e.g. {:?}\n{}",
        failed.len(),
        reads.len(),
        failed.first(),
        server.logs()
    );
    let during: Vec<&Sample> = reads
        .iter()
        .filter(|s| s.started >= stopped && s.started <= back)
        .collect();
    assert!(
        !during.is_empty(),
        "no recognition was sent during the restart"
    );
    let lost: Vec<&Sample> = writes.iter().filter(|s| s.status == 503).collect();
    let refused: Vec<&Sample> = writes
        .iter()
        .filter(|s| s.status != 200 && s.status != 503)
        .collect();
    assert!(refused.is_empty(), "logins answered {refused:?}");
    for answer in &lost {
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    }
    let waited = metrics(&server).await;
    assert!(
        waited
            .get("websessions_database_wait_seconds_count")
            .is_some_and(|n| *n > 0.0),
        "the waits were not measured"
    );
    // The figures, for the record (speed is asserted by no test).
    let all: Vec<&Sample> = reads.iter().collect();
    eprintln!(
        "{engine:?} restart, down {:.2} s: {} recognitions (all 200), {} during the restart: \
         p99 {:.0} ms, max {:.0} ms; overall p99 {:.0} ms; {} logins, {} answered 503 \
         (COMMIT answer lost)",
        (back - stopped).as_secs_f64(),
        reads.len(),
        during.len(),
        quantile(&during, 0.99).as_secs_f64() * 1e3,
        quantile(&during, 1.0).as_secs_f64() * 1e3,
        quantile(&all, 0.99).as_secs_f64() * 1e3,
        writes.len(),
        lost.len(),
    );
    records_match_sessions(&server).await;
    server.stop().await;
    drop(db);
}

/// R19 across the restart: every login that committed (answered 200, or 503 when its
/// COMMIT's answer was lost) has its record and every record its session, and the chain
/// verifies.
async fn records_match_sessions(server: &Server) {
    server.create_superuser("root", PASSWORD);
    let root = api_login(server, "root", PASSWORD).await;
    let mut sessions = 0;
    let mut after = String::new();
    loop {
        let page = get_json(
            server,
            &format!("/v1/admin/sessions?user=alice&limit=500{after}"),
            &root,
        )
        .await;
        sessions += page["items"].as_array().unwrap().len();
        match page["next"].as_i64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let printed = server.command(&["audit", "--json"], "");
    assert!(printed.status.success());
    let logins = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|r| r["event"] == "login_succeeded" && r["username"] == "alice")
        .count();
    assert_eq!(logins, sessions, "alice's logins recorded and her sessions");
    let verified = server.command(&["audit", "verify"], "");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// With the database down for longer than the wait, requests answer 503 with `Retry-After`
/// once the wait has passed (not at once, and not never), readiness says 503 meanwhile, and
/// the service recovers by itself when the database is back.
async fn a_database_down_past_the_wait_is_503_and_the_service_recovers(backend: Backend) {
    let engine = Engine::of(backend);
    let (mut db, server, credentials) = serving(engine).await;
    db = tokio::task::spawn_blocking(move || {
        db.stop();
        db
    })
    .await
    .unwrap();
    let http = patient_client();
    let started = Instant::now();
    let mut requests: Vec<_> = credentials
        .iter()
        .take(4)
        .map(|credential| {
            let request = http.get(server.url("/v1/session")).bearer_auth(credential);
            tokio::spawn(sample(request))
        })
        .collect();
    let login = http
        .post(server.url("/v1/session/login"))
        .json(&json!({"username": "alice", "password": PASSWORD, "client": "api"}));
    requests.push(tokio::spawn(sample(login)));
    assert_eq!(readiness(&server).await, StatusCode::SERVICE_UNAVAILABLE);
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
        // Bounds wide enough for any machine: the request waited, and it did not hang.
        assert!(
            answer.took >= WAIT / 2,
            "answered before waiting: {answer:?}"
        );
        assert!(
            answer.took < WAIT * 3,
            "waited far past the wait: {answer:?}"
        );
    }
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    eprintln!(
        "{engine:?} down past the {} s wait: {} requests answered 503 after {:.2}..{:.2} s",
        WAIT.as_secs(),
        answers.len(),
        answers.iter().map(|a| a.took).min().unwrap().as_secs_f64(),
        slowest.as_secs_f64(),
    );
    let remaining = OUTAGE_DOWN.saturating_sub(started.elapsed());
    db = tokio::task::spawn_blocking(move || {
        std::thread::sleep(remaining);
        db.start();
        db
    })
    .await
    .unwrap();
    // Back by itself: no restart of the service, every credential still valid.
    for credential in &credentials {
        let resp = http
            .get(server.url("/v1/session"))
            .bearer_auth(credential)
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["user"]["username"], "alice");
    }
    assert_eq!(readiness(&server).await, StatusCode::OK);
    api_login(&server, "alice", PASSWORD).await;
    server.stop().await;
    drop(db);
}

websessions_tests::on! {
    postgres needs pg_bin: [
        a_database_restart_fails_no_recognition,
        a_database_down_past_the_wait_is_503_and_the_service_recovers,
    ];
    mysql as mariadb needs mariadbd: [
        a_database_restart_fails_no_recognition,
        a_database_down_past_the_wait_is_503_and_the_service_recovers,
    ];
}
