//! What a child process prints: each output stream drained by a thread
//! into [`Lines`] (so the child never blocks on a full pipe) and awaited
//! line by line with a deadline; and the readiness lines a test waits for,
//! in either log format.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The lines one output stream of a child printed, filled by a thread that
/// keeps draining the pipe so the child never blocks on a full pipe.
#[derive(Default)]
pub(super) struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    closed: bool,
    /// While set, the thread reads nothing more, so the child's pipe fills
    /// as if nobody read it.
    paused: bool,
}

impl Lines {
    /// Starts a thread that reads `reader` to its end into a new `Lines`.
    pub(super) fn drain(reader: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                sink.wait_unpaused();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        sink.push(line.trim_end_matches(['\n', '\r']).to_string());
                    }
                }
            }
            sink.close();
        });
        lines
    }

    fn state(&self) -> MutexGuard<'_, LinesState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops (`true`) or resumes (`false`) reading the stream.
    pub(super) fn pause(&self, paused: bool) {
        self.state().paused = paused;
        self.changed.notify_all();
    }

    fn wait_unpaused(&self) {
        let state = self.state();
        let _state = self
            .changed
            .wait_while(state, |s| s.paused)
            .unwrap_or_else(|p| p.into_inner());
    }

    fn push(&self, line: String) {
        self.state().lines.push(line);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state().closed = true;
        self.changed.notify_all();
    }

    pub(super) fn text(&self) -> String {
        self.state().lines.join("\n")
    }

    /// Waits until `found` returns `Some` over the lines so far, the stream
    /// closes (the child exited) or `within` passes.
    pub(super) fn wait_for<T>(
        &self,
        within: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let mut state = self.state();
        loop {
            if let Some(t) = found(&state.lines) {
                return Some(t);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the stream is closed and all of it was read.
    pub(super) fn wait_closed(&self, within: Duration) {
        self.wait_for(within, |_| None::<()>);
    }
}

/// Drops ANSI escape sequences (colors) so log lines parse the same
/// whether or not the logger colors them.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte(0x40..=0x7e)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A readiness line: `... listening listener=NAME address=IP:PORT` (the
/// demo backends say `backend=NAME`), in either log format: text, where
/// values may be quoted, or JSON (`--log-format json`), where they are
/// fields of the object.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    if line.starts_with('{') {
        parse_listening_json(line)
    } else {
        parse_listening_text(line)
    }
}

/// A JSON readiness line: `{"fields":{"message":"listening",
/// "listener":NAME,"address":IP:PORT,...},...}`.
fn parse_listening_json(line: &str) -> Option<(String, SocketAddr)> {
    let object: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &object["fields"];
    if fields["message"] != "listening" {
        return None;
    }
    let name = fields["listener"]
        .as_str()
        .or_else(|| fields["backend"].as_str())?;
    let address = fields["address"].as_str()?.parse().ok()?;
    Some((name.to_string(), address))
}

fn parse_listening_text(line: &str) -> Option<(String, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains(" listening ") {
        return None;
    }
    let mut name = None;
    let mut address = None;
    for token in line.split_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let value = value.trim_matches('"');
        match key {
            "listener" | "backend" => name = Some(value.to_string()),
            "address" => address = value.parse().ok(),
            _ => {}
        }
    }
    Some((name?, address?))
}
