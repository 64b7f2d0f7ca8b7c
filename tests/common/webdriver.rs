//! A small W3C WebDriver client for Debian's `chromedriver` driving
//! headless Chromium: sessions, navigation, elements, typing, clicking,
//! scripts and screenshots, over HTTP on loopback. Every wait polls for a
//! condition with a generous bound and fails the test with what it saw:
//! nothing depends on how fast the machine is.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait may last before the test fails.
const WAIT_MAX: Duration = Duration::from_secs(60);

pub struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

impl Driver {
    /// Starts `chromedriver` and a headless Chromium session with a fresh
    /// profile in `profile`, a window of `width`×`height`, and no network
    /// but loopback.
    pub fn start(profile: &Path, width: u32, height: u32) -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (.ci/run installs Debian's chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut driver = Self {
            child,
            base,
            session: String::new(),
            agent,
        };
        let started = Instant::now();
        loop {
            let ready = driver
                .agent
                .get(&format!("{}/status", driver.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(started.elapsed() < WAIT_MAX, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let answer = driver.request("POST", "/session", Some(capabilities));
        driver.session = answer["sessionId"].as_str().expect("a session id").to_owned();
        driver
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_request(method, path, body)
            .unwrap_or_else(|(status, value)| panic!("{method} {path}: {status} {value}"))
    }

    /// The answer's value, or its status and body when it is an error.
    fn try_request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, (u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("an answer");
        let value: Value = serde_json::from_str(&text).expect("a JSON answer");
        if status < 300 {
            Ok(value["value"].clone())
        } else {
            Err((status, value))
        }
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.request(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Acts on the element `css`, finding it again if the page replaced it
    /// in between (the page re-renders its result area).
    fn on_element(&self, css: &str, method: &str, action: &str, body: Option<Value>) {
        let started = Instant::now();
        loop {
            let element = self.find(css).unwrap_or_else(|| panic!("no {css}"));
            let path = format!("/session/{}/element/{element}/{action}", self.session);
            match self.try_request(method, &path, body.clone()) {
                Ok(_) => return,
                Err((_, value)) if value["value"]["error"] == "stale element reference" => {
                    assert!(started.elapsed() < WAIT_MAX, "{css} kept going stale");
                }
                Err((status, value)) => panic!("{action} on {css}: {status} {value}"),
            }
        }
    }

    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({"url": url})));
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.session("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Runs `script` (a function body) with `args`; returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.session("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self.execute(
            "const e = document.querySelector(arguments[0]); return e ? [e] : [];",
            json!([css]),
        );
        found.as_array()?.first()?.get(ELEMENT)?.as_str().map(str::to_owned)
    }

    /// The visible text of the element `css` once `ready` holds for it.
    pub fn wait_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let seen = self.text(css);
            if ready(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < WAIT_MAX,
                "{css} never got ready; last text: {seen:?}; page: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The rendered text of the first element matching `css` now (empty if
    /// there is none): what a reader sees, hidden parts left out.
    pub fn text(&self, css: &str) -> String {
        self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            json!([css, name]),
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Clears the input `css` and types `text` into it, key by key.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "POST", "clear", None);
        self.on_element(css, "POST", "value", Some(json!({"text": text})));
    }

    pub fn click(&self, css: &str) {
        self.on_element(css, "POST", "click", None);
    }

    /// A PNG of the whole window, saved to `file`.
    pub fn screenshot(&self, file: &Path) {
        let png = self.session("GET", "/screenshot", None);
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            png.as_str().expect("base64 PNG"),
        )
        .expect("base64");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} bytes",
            bytes.len()
        );
        std::fs::write(file, bytes).expect("save the screenshot");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
