//! Headless Chromium for the dashboard test, driven through chromedriver
//! over WebDriver (plain HTTP and JSON on loopback, no extra crate).
//!
//! The browser and driver are Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs them; nothing is downloaded). Without them a test
//! skips, except under CI (`CI` set), where a missing tool is a failure so
//! a broken install step cannot pass unseen. Chromium runs with the flags
//! the dashboard issue names and a fresh `--user-data-dir`; both processes
//! sit in guards that kill them on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{DEADLINE, eventually, http_request, loopback};

/// Flags Chromium runs with (the issue's), besides `--user-data-dir`.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
];

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Whether a test needing `what` may run: true when it is there; when it
/// is not, a failure under CI and a skip (said on stderr) elsewhere.
pub fn tool_or_skip(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing on CI: {install}"
    );
    eprintln!("skipped: {what} is not installed ({install})");
    false
}

/// A chromedriver process and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None`
    /// (after [`tool_or_skip`]) when they are not installed.
    pub fn start() -> Option<Browser> {
        let chromium = on_path(&["chromium", "chromium-browser"]);
        let driver = on_path(&["chromedriver"]);
        let install = "apt-get install chromium chromium-driver";
        if !tool_or_skip("chromium", chromium.is_some(), install)
            || !tool_or_skip("chromedriver", driver.is_some(), install)
        {
            return None;
        }
        let (chromium, driver) = (chromium?, driver?);
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = loopback(port);
        let mut browser = Browser {
            driver: child,
            addr,
            session: String::new(),
            _profile: tempfile::tempdir().expect("a profile directory"),
        };
        let ready = eventually(DEADLINE, || {
            browser
                .call("GET", "/status", None)
                .is_ok_and(|v| v["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver did not get ready within {DEADLINE:?}");
        browser.session = browser.new_session(&chromium);
        Some(browser)
    }

    fn new_session(&self, chromium: &Path) -> String {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self._profile.path().display()
        ));
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium, "args": args },
                "goog:loggingPrefs": { "browser": "ALL" },
            }}
        });
        let answer = self
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("a browser session starts: {e}"));
        answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_string()
    }

    /// One WebDriver call; `Err` on a transport failure or a WebDriver
    /// error answer.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(Value::to_string);
        let headers = [("Content-Type", "application/json")];
        let answer = http_request(
            self.addr,
            method,
            path,
            &headers,
            body.as_deref().map(str::as_bytes),
            DEADLINE,
        )?;
        let value: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("not JSON ({e}): {}", answer.body))?;
        if answer.status == 200 {
            Ok(value)
        } else {
            Err(format!(
                "WebDriver {method} {path}: {} {value}",
                answer.status
            ))
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads `url` (returns when the page has loaded).
    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.session_call("POST", "/execute/sync", Some(&body))["value"].take()
    }

    /// The browser console's entries so far: `(level, message)`.
    pub fn console(&self) -> Vec<(String, String)> {
        let body = json!({ "type": "browser" });
        let entries = self.session_call("POST", "/se/log", Some(&body));
        entries["value"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (text("level"), text("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a screenshot of the page as PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        let answer = self.session_call("GET", "/screenshot", None);
        let encoded = answer["value"].as_str().expect("a base64 screenshot");
        let png = base64_decode(encoded).expect("valid base64");
        std::fs::write(path, png).expect("the screenshot can be written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&b| b != b'=').collect();
        let mut n = 0u32;
        for &c in &data {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * (4 - data.len() as u32);
        let decoded = n.to_be_bytes();
        out.extend_from_slice(&decoded[1..data.len()]);
    }
    Some(out)
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
    assert_eq!(base64_decode("aGVsbG8h"), Some(b"hello!".to_vec()));
    assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
    assert_eq!(base64_decode("a$=="), None);
}
