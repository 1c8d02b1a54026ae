//! Headless Chromium for tests, driven through chromedriver's WebDriver HTTP protocol (plain
//! JSON over HTTP with the tests' own client: no Selenium).

use super::*;

use std::time::Instant;

use serde_json::json;

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port (and the browsers it starts, in its process group), killed and
/// reaped on drop.
pub(crate) struct Driver {
    child: Child,
    pub(crate) url: String,
}

impl Driver {
    pub(crate) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start chromedriver")
        };
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid: it and any browser it left behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command: its `value`, or a panic with WebDriver's error.
pub(crate) async fn webdriver(method: &str, url: &str, body: Value) -> Value {
    let body = if method == "GET" || method == "DELETE" {
        String::new()
    } else {
        body.to_string()
    };
    let headers = [("Content-Type", "application/json; charset=utf-8")];
    let (code, answer) = request_with(method, url, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert_eq!(code, 200, "{method} {url}: {answer}");
    answer["value"].clone()
}

/// A browser session on `driver`.
pub(crate) struct Browser {
    /// The session's URL, `<driver>/session/<id>`.
    pub(crate) session: String,
}

impl Browser {
    pub(crate) async fn open(driver: &Driver, profile: &std::path::Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = request_with("GET", &format!("{}/status", driver.url), &[], "").await;
            if matches!(&ready, Ok((200, v)) if v["value"]["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver is not ready: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1800",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let value = webdriver("POST", &format!("{}/session", driver.url), capabilities).await;
        Browser {
            session: format!(
                "{}/session/{}",
                driver.url,
                value["sessionId"].as_str().unwrap()
            ),
        }
    }

    pub(crate) async fn go(&self, url: &str) {
        webdriver(
            "POST",
            &format!("{}/url", self.session),
            json!({ "url": url }),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub(crate) async fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        webdriver("POST", &format!("{}/execute/sync", self.session), body).await
    }

    /// Runs `script` until it returns `true`, for up to `within`.
    pub(crate) async fn wait_for(&self, what: &str, within: Duration, script: &str) {
        let deadline = Instant::now() + within;
        while self.run(script).await != Value::Bool(true) {
            let text = self.run("return document.body.innerText").await;
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; the page: {text}"
            );
            // The DOM announces nothing to WebDriver; look again shortly.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let body = json!({ "using": "css selector", "value": css });
        let value = webdriver("POST", &format!("{}/element", self.session), body).await;
        value["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Clicks the element `css` selects.
    pub(crate) async fn click(&self, css: &str) {
        let element = self.element(css).await;
        let url = format!("{}/element/{element}/click", self.session);
        webdriver("POST", &url, json!({})).await;
    }

    pub(crate) async fn close(self) {
        webdriver("DELETE", &self.session, Value::Null).await;
    }
}

/// Standard base64, as WebDriver sends a screenshot.
pub(crate) fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
}

/// True when Chromium and chromedriver are installed; see [`super::tool_present`]
/// (`SWAPVISOR_REQUIRE_CHROMIUM`).
pub(crate) fn chromium_present() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    super::tool_present(
        present,
        "the browser test",
        "SWAPVISOR_REQUIRE_CHROMIUM",
        &format!("{CHROMIUM} or {CHROMEDRIVER} is missing (Debian's chromium and chromium-driver)"),
    )
}
