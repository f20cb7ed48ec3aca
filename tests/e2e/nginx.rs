//! The gateway the gateway tests run: nginx with `tests/gateway/nginx.conf` (its `${...}`
//! placeholders filled in) in a folder of its own, in front of a small application that echoes
//! the identity headers it receives, and two websessions processes on one database, all on
//! loopback, with the tests' client sending from an address other than nginx's. Every process
//! it starts, it stops by its PID.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use websessions_tests::{Backend, TestDb};

use crate::contract::SendChecked;
use crate::server::{Server, cookie_header, free_port, set_cookie};
use crate::support::{PASSWORD, sample, samples};

pub(crate) const TEMPLATE: &str = include_str!("../gateway/nginx.conf");

fn nginx_binary() -> String {
    std::env::var("WEBSESSIONS_TEST_NGINX").expect("WEBSESSIONS_TEST_NGINX names nginx")
}

/// The protected application: answers every request with the identity headers it received,
/// and counts the requests that reached it.
pub(crate) struct Application {
    pub(crate) port: u16,
    pub(crate) hits: Arc<AtomicUsize>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Application {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let echo = poem::endpoint::make(move |req: poem::Request| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                poem::web::Json(json!({
                    "path": req.uri().path(),
                    "host": header("host"),
                    "forwarded_for": header("x-forwarded-for"),
                    "user": header("x-websessions-user"),
                    "session": header("x-websessions-session"),
                    "superuser": header("x-websessions-superuser"),
                    "assurance": header("x-websessions-assurance"),
                    "reason": header("x-websessions-reason"),
                }))
            }
        });
        let listener = poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"));
        let task = tokio::spawn(async move {
            let _ = poem::Server::new(listener).run(echo).await;
        });
        Self { port, hits, task }
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// nginx, running `tests/gateway/nginx.conf` in a folder of its own.
pub(crate) struct Nginx {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) base: String,
}

impl Nginx {
    pub(crate) async fn start(upstreams: &[u16], application: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=0;\n        "))
            .collect();
        let config = TEMPLATE
            .replace("${DIR}", &dir.path().display().to_string())
            .replace("${WEBSESSIONS_SERVERS}", servers.trim_end())
            .replace("${APPLICATION}", &format!("127.0.0.1:{application}"))
            .replace("${LISTEN}", &format!("127.0.0.1:{port}"));
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Self {
            child,
            dir,
            port,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                nginx.errors()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address the tests' client sends from: not nginx's (127.0.0.1), so that what separates
/// a client from its proxy is tested (SPEC section 9).
pub(crate) const CLIENT: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Another client's address, an attacker's.
pub(crate) const OTHER: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));

/// An HTTP client sending from `address`, following no redirect.
pub(crate) fn client_from(address: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(address)
        .build()
        .unwrap()
}

/// Two websessions processes on one database, behind nginx (127.0.0.1, the only trusted
/// proxy), in front of the application; the tests' client sends from `CLIENT`.
pub(crate) struct Gateway {
    pub(crate) servers: Vec<Server>,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) nginx: Nginx,
    pub(crate) application: Application,
    pub(crate) http: reqwest::Client,
    pub(crate) db: Option<TestDb>,
}

impl Gateway {
    pub(crate) async fn start(backend: Backend, settings: &[(&str, &str)]) -> Self {
        let db = TestDb::new(backend).await;
        let mut all = vec![("WEBSESSIONS_TRUSTED_PROXIES", "127.0.0.1/32")];
        all.extend_from_slice(settings);
        let settings: Vec<(String, String)> = all
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut servers = Vec::new();
        for _ in 0..2 {
            servers.push(Server::start_on(&db.url, &all, free_port()).await);
        }
        servers[0].create_user("alice", PASSWORD);
        servers[0].create_superuser("root", PASSWORD);
        let application = Application::start().await;
        let ports: Vec<u16> = servers.iter().map(Server::port).collect();
        let nginx = Nginx::start(&ports, application.port).await;
        Self {
            servers,
            settings,
            nginx,
            application,
            http: client_from(CLIENT),
            db: Some(db),
        }
    }

    /// Restarts server `n` on its port: SIGTERM, wait for it to finish its requests and
    /// exit, start it again.
    pub(crate) async fn restart(&mut self, n: usize) {
        let url = self.db.as_ref().unwrap().url.clone();
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let old = self.servers.remove(n);
        let port = old.port();
        let (status, logs) = old.stop().await;
        assert_eq!(status.code(), Some(0), "{logs}");
        self.servers
            .insert(n, Server::start_on(&url, &settings, port).await);
    }

    /// The port nginx listens on (on loopback).
    pub(crate) fn port(&self) -> u16 {
        self.nginx.port()
    }

    /// Logs `name` in through nginx as a browser (a first login: no cookie).
    pub(crate) async fn browser_login(&self, name: &str) -> String {
        let resp = self
            .http
            .post(self.nginx.url("/v1/session/login"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        set_cookie(resp.headers()).unwrap().0
    }

    /// Whether `credential` (a cookie) is valid on server `n`, asked directly.
    pub(crate) async fn valid_on(&self, n: usize, credential: &str) -> bool {
        let resp = self
            .http
            .get(self.servers[n].url("/v1/session"))
            .header("cookie", cookie_header(credential))
            .send_checked()
            .await
            .unwrap();
        resp.status() == StatusCode::OK
    }

    pub(crate) async fn valid_on_both(&self, credential: &str) -> [bool; 2] {
        [
            self.valid_on(0, credential).await,
            self.valid_on(1, credential).await,
        ]
    }

    /// The metrics of both processes, summed for `series`.
    pub(crate) async fn sum(&self, series: &str) -> f64 {
        let mut total = 0.0;
        for server in &self.servers {
            let text = self
                .http
                .get(server.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += sample(&samples(&text), series);
        }
        total
    }

    pub(crate) fn logs(&self) -> String {
        self.servers
            .iter()
            .map(Server::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // The servers go first; the database is theirs.
        self.servers.clear();
        if let Some(db) = self.db.take() {
            db.drop_blocking();
        }
    }
}
