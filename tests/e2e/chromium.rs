//! A headless Chromium of a test's own, driven over WebDriver (fantoccini and Debian's
//! `chromium-driver`), one at a time (each is a few hundred MiB and two cores' worth of work),
//! keeping a screenshot of every step for a failure (`target/tmp/browser/<test>/`) and, when
//! asked, the README's pictures of the pages.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::server::{Server, free_port};
use crate::support::PASSWORD;

/// One browser at a time: each is a few hundred MiB and two cores' worth of work.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a page may take to do what it should.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A headless Chromium of this test's own, with its chromedriver.
pub(crate) struct Browser {
    /// One browser at a time, held while this one is open.
    _one: tokio::sync::MutexGuard<'static, ()>,
    client: Option<Client>,
    driver: Child,
    test: &'static str,
    /// A screenshot of each step, kept for a failure.
    steps: Vec<(String, Vec<u8>)>,
}

impl Browser {
    pub(crate) async fn open(test: &'static str) -> Self {
        let one = ONE_BROWSER.lock().await;
        let driver_binary =
            std::env::var("WEBSESSIONS_TEST_CHROMEDRIVER").expect("a chromedriver binary");
        let chromium = std::env::var("WEBSESSIONS_TEST_CHROMIUM")
            .unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let port = free_port();
        // A process group of its own, so that the browsers it starts go with it.
        let driver = Command::new(driver_binary)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // As root, in a container: no sandbox, no GPU, no small /dev/shm.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=900,1000",
                    "--no-first-run",
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Self {
            _one: one,
            client: Some(client),
            driver,
            test,
            steps: Vec::new(),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub(crate) async fn goto(&mut self, url: &str) {
        self.client().goto(url).await.unwrap();
        self.snap(url).await;
    }

    /// Keeps a screenshot of the page as it is now, named after `step`.
    pub(crate) async fn snap(&mut self, step: &str) {
        if let Ok(png) = self.client().screenshot().await {
            self.steps.push((step.to_owned(), png));
        }
    }

    /// Writes the page as it is now to `tests/browser/screenshots/<name>.png`, when asked to
    /// (`WEBSESSIONS_UPDATE_SCREENSHOTS=1`).
    pub(crate) async fn picture(&self, name: &str) {
        if std::env::var("WEBSESSIONS_UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client().screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The address the browser shows.
    pub(crate) async fn url(&self) -> reqwest::Url {
        self.client().current_url().await.unwrap()
    }

    /// Waits until the address's path (and query, when given) is `path`.
    pub(crate) async fn wait_for_path(&mut self, path: &str) -> reqwest::Url {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.url().await;
            let shown = match url.query() {
                Some(query) if path.contains('?') => format!("{}?{query}", url.path()),
                _ => url.path().to_owned(),
            };
            if shown == path {
                self.snap(path).await;
                return url;
            }
            if Instant::now() > deadline {
                self.snap("timed out").await;
                panic!("the browser stayed on {url}, not {path}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn count(&self, css: &str) -> usize {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .len()
    }

    /// Waits until `css` matches `n` elements.
    pub(crate) async fn wait_for_count(&mut self, css: &str, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(css).await != n {
            if Instant::now() > deadline {
                self.snap("timed out").await;
                panic!("{css} never matched {n} elements");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn click(&mut self, css: &str) {
        let element = self.client().find(Locator::Css(css)).await.unwrap();
        element.click().await.unwrap();
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let element = self.client().find(Locator::Css(css)).await.unwrap();
        element.text().await.unwrap()
    }

    /// Signs in with the form of `base`'s sign-in page, asking to return to `return_to`.
    pub(crate) async fn sign_in(&mut self, base: &str, return_to: Option<&str>) {
        let url = match return_to {
            Some(target) => format!(
                "{base}/login?return_to={}",
                utf8_percent_encode(target, NON_ALPHANUMERIC)
            ),
            None => format!("{base}/login"),
        };
        self.goto(&url).await;
        self.submit_sign_in(PASSWORD).await;
    }

    /// Fills the sign-in form on the page with alice and `password`, and submits it.
    pub(crate) async fn submit_sign_in(&mut self, password: &str) {
        for (id, text) in [("username", "alice"), ("password", password)] {
            let field = self.client().find(Locator::Id(id)).await.unwrap();
            field.send_keys(text).await.unwrap();
        }
        self.click("#sign-in button[type=submit]").await;
    }

    /// Waits for a page the test serves to say it has done its work (its title).
    pub(crate) async fn wait_for_title(&mut self, title: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.client().title().await.unwrap() != title {
            assert!(Instant::now() < deadline, "the page never said {title:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.ok();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("browser")
                .join(self.test);
            std::fs::create_dir_all(&dir).ok();
            for (n, (step, png)) in self.steps.iter().enumerate() {
                let name: String = step
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .take(60)
                    .collect();
                std::fs::write(dir.join(format!("{n:02}-{name}.png")), png).ok();
            }
            eprintln!("screenshots of every step: {}", dir.display());
        }
        // chromedriver and every browser it started: its process group (whose id is its
        // own, never anyone else's).
        if let Some(group) = i32::try_from(self.driver.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.wait();
    }
}

/// A page of another origin, served by the test: `html` at every path.
pub(crate) struct Page {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Page {
    pub(crate) async fn serve(html: String) -> Self {
        let port = free_port();
        let page = poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()));
        let listener = poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"));
        let task = tokio::spawn(async move {
            let _ = poem::Server::new(listener).run(page).await;
        });
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { port, task }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server's logged requests to `path` (method, status).
pub(crate) fn requests_to(server: &Server, path: &str) -> Vec<(String, u64)> {
    server
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "request" && line["fields"]["path"] == path)
        .map(|line| {
            // The request's span holds what the request was and became.
            let request = &line["spans"][0];
            (
                request["method"].as_str().unwrap_or_default().to_owned(),
                request["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}
