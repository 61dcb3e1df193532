//! A real browser for the console's tests: Debian's headless Chromium, driven through its ChromeDriver by a
//! WebDriver client (fantoccini). `scripts/setup.sh` installs both.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A ChromeDriver on a loopback port with one headless Chromium session; both end when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and opens a session (a fresh profile, no network but loopback's).
    pub async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "Chromium and ChromeDriver are needed: scripts/setup.sh installs them"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Chromium's processes end with it.
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a Chromium session through chromedriver");
        Browser { client, driver, driver_url, _profile: profile }
    }

    /// The element `css` selects, waiting up to 10 s for it to exist.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    /// Waits up to 10 s until `script` (a JavaScript expression) is true in the page.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.client.execute(&format!("return Boolean({script});"), vec![]).await.unwrap();
            if value == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: still false after 10 s: {script}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluates `script` (a JavaScript expression) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(&format!("return {script};"), vec![]).await.unwrap()
    }

    /// What the page logged to the browser's console since the last call, as (level, message).
    pub async fn console_log(&self) -> Vec<(String, String)> {
        let session = self.client.session_id().await.unwrap().expect("a session");
        crate::harness::install_crypto_provider();
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("the browser's log")
            .json()
            .await
            .expect("JSON");
        answer["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every Chromium process it started, whatever state the test left them in.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
