//! Starts the real `websessions` binary on a free port against a fresh database, and talks
//! to it over real HTTP.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use websessions_tests::{Backend, TestDb};

pub const COOKIE: &str = "__Host-websession";

pub struct Server {
    child: Child,
    /// Everything the server wrote to standard error, drained as it comes so that a full
    /// pipe never blocks the server.
    logs: Arc<Mutex<Vec<u8>>>,
    drain: Option<std::thread::JoinHandle<()>>,
    port: u16,
    pub base: String,
    env: HashMap<String, String>,
    pub http: reqwest::Client,
    db: Option<TestDb>,
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Server {
    /// A server on `backend` with `settings` (variable, value) on top of the defaults. All
    /// traffic comes from one address, so R14's limits are off unless `settings` set them.
    pub async fn start(backend: Backend, settings: &[(&str, &str)]) -> Self {
        let db = TestDb::new(backend).await;
        let url = db.url.clone();
        Self::spawn(&url, settings, free_port(), Some(db)).await
    }

    /// A server on a database it does not own (several servers may share one), on `port`.
    pub async fn start_on(url: &str, settings: &[(&str, &str)], port: u16) -> Self {
        Self::spawn(url, settings, port, None).await
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    async fn spawn(url: &str, settings: &[(&str, &str)], port: u16, db: Option<TestDb>) -> Self {
        let mut env: HashMap<String, String> = [
            ("WEBSESSIONS_DATABASE_URL", url),
            ("WEBSESSIONS_LISTEN", &format!("127.0.0.1:{port}")),
            ("WEBSESSIONS_LOG_FORMAT", "json"),
            ("WEBSESSIONS_SESSION_START_LIMIT", "0"),
            ("WEBSESSIONS_LOGIN_LIMIT", "0"),
            ("RUST_LOG", "debug,sea_orm=warn,sqlx=warn"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (key, value) in settings {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_websessions"))
            .arg("serve")
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let drain = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let mut server = Self {
            child,
            logs,
            drain: Some(drain),
            port,
            base: format!("http://127.0.0.1:{port}"),
            env,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            db,
        };
        server.wait_until_live().await;
        server
    }

    async fn wait_until_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(drain) = self.drain.take() {
                    drain.join().unwrap();
                }
                panic!("the server exited with {status}: {}", self.logs());
            }
            if let Ok(resp) = self.http.get(self.url("/health/live")).send().await
                && resp.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not come up within 30 s");
    }

    /// The `WEBSESSIONS_*` settings the server runs with, for commands run beside it.
    pub fn settings(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// The server's database (of a server that owns one).
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs a `websessions` command with the server's configuration, `stdin` on its input.
    pub fn command(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_websessions"))
            .args(args)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Creates a user through the CLI, the way an operator creates the first superuser.
    pub fn create_user(&self, name: &str, password: &str) {
        let out = self.command(&["user", "create", name], &format!("{password}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates a superuser through the CLI.
    pub fn create_superuser(&self, name: &str, password: &str) {
        let args = ["user", "create", name, "--superuser"];
        let out = self.command(&args, &format!("{password}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the server has logged so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }

    /// Sends SIGTERM and returns the exit status and everything the server logged.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        // The drain thread ends at end of file, once it has every byte.
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        let logs = self.logs();
        if let Some(db) = self.db.take() {
            db.drop().await;
        }
        (status, logs)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(db) = self.db.take() {
            db.drop_blocking();
        }
    }
}

/// The value of the session cookie a response sets, and its whole header.
pub fn set_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")))
        .map(|header| {
            let value = header[COOKIE.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            (value, header.to_owned())
        })
}

pub fn cookie_header(credential: &str) -> String {
    format!("{COOKIE}={credential}")
}
