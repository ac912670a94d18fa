//! What the unit tests share (compiled for `cargo test` only): waiting for
//! a condition with a deadline instead of sleeping, reading samples out of
//! `/metrics` text, and builders for configs with every default filled in,
//! so a test names only what it is about and a new config field breaks no
//! test.

mod metrics_text;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::state::{ListenerSlot, Listeners};

pub(crate) use metrics_text::sample;

/// How long a condition may take before a test fails: generous for a
/// loaded 2-core CI machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test (naming `what`) after
/// [`DEADLINE`] of real time.
///
/// Between polls it sleeps a few milliseconds of tokio time, so it works
/// with paused time too (the sleep then advances the clock at once, and the
/// loop is bounded by the real deadline).
pub(crate) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === Config builders ===

/// A listener for a test, written as the TOML a user would write and
/// parsed through the real validation, so every default is the product's
/// own and a new config field breaks no test. It listens on
/// `127.0.0.1:0`; a test names only what it is about.
#[derive(Debug, Clone)]
pub(crate) struct ListenerBuilder {
    /// `name = ...`.
    name: String,
    /// `backends = [...]`: address as written, weight.
    backends: Vec<(String, u32)>,
    /// Further keys of the listener's table, as TOML values.
    keys: Vec<(String, toml::Value)>,
    /// Sub-tables (`[listeners.health_check]` ...), as TOML text.
    tables: Vec<String>,
}

/// A listener named `name` with no backends yet.
pub(crate) fn listener(name: &str) -> ListenerBuilder {
    ListenerBuilder {
        name: name.to_string(),
        backends: Vec::new(),
        keys: Vec::new(),
        tables: Vec::new(),
    }
}

impl ListenerBuilder {
    /// Adds a backend of weight 1 (any address `Display`s as `host:port`).
    pub(crate) fn backend(self, address: impl std::fmt::Display) -> Self {
        self.weighted(address, 1)
    }

    /// Adds a backend of `weight`.
    pub(crate) fn weighted(mut self, address: impl std::fmt::Display, weight: u32) -> Self {
        self.backends.push((address.to_string(), weight));
        self
    }

    /// Adds backends of weight 1.
    pub(crate) fn backends<A: std::fmt::Display>(
        self,
        addresses: impl IntoIterator<Item = A>,
    ) -> Self {
        addresses.into_iter().fold(self, Self::backend)
    }

    /// Sets a key of the listener's table: `.set("retries", 1)`,
    /// `.set("slow_start", "0s")`.
    pub(crate) fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.keys.push((key.to_string(), value.into()));
        self
    }

    /// Adds a sub-table, as TOML text starting with its header:
    /// `"[listeners.health_check]\ninterval = \"50ms\""`.
    pub(crate) fn table(mut self, text: &str) -> Self {
        self.tables.push(text.to_string());
        self
    }

    /// The `[[listeners]]` table as TOML text.
    pub(crate) fn toml(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("[[listeners]]\n");
        let _ = writeln!(out, "name = {}", toml::Value::from(self.name.as_str()));
        let _ = writeln!(out, "listen = \"127.0.0.1:0\"");
        for (key, value) in &self.keys {
            let _ = writeln!(out, "{key} = {value}");
        }
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|(address, weight)| format!("{{ address = \"{address}\", weight = {weight} }}"))
            .collect();
        let _ = writeln!(out, "backends = [{}]", backends.join(", "));
        for table in &self.tables {
            let _ = writeln!(out, "{table}");
        }
        out
    }

    /// The validated listener; panics (failing the test) with the
    /// validation errors when the TOML is not valid.
    pub(crate) fn build(&self) -> crate::config::Listener {
        let config = config("", std::slice::from_ref(self));
        config
            .listeners
            .into_iter()
            .next()
            .expect("a config built from one listener has one")
    }

    /// Its snapshot, with new backends.
    pub(crate) fn snapshot(&self) -> crate::state::Snapshot {
        crate::state::Snapshot::new(self.build())
    }

    /// Its slot in a new registry of listeners, at its configured address.
    pub(crate) fn slot(&self) -> Arc<ListenerSlot> {
        self.registered().1
    }

    /// A new registry of listeners holding only this one, and its slot.
    pub(crate) fn registered(&self) -> (Arc<Listeners>, Arc<ListenerSlot>) {
        let snapshot = self.snapshot();
        let listen = snapshot.config.listen;
        let listeners = Arc::new(Listeners::new());
        let slot = listeners.add(ListenerSlot::new(
            snapshot,
            listen,
            CancellationToken::new(),
            crate::state::SharedAccessLog::default(),
        ));
        (listeners, slot)
    }
}

/// A whole config: `head` (the `[global]` and `[admin]` tables, as TOML
/// text) and `listeners`; panics (failing the test) with the validation
/// errors when it is not valid.
pub(crate) fn config(head: &str, listeners: &[ListenerBuilder]) -> crate::config::Config {
    let mut text = format!("{head}\n");
    for listener in listeners {
        text.push_str(&listener.toml());
    }
    match crate::config::parse(&text, crate::config::FileFormat::Toml, "test.toml") {
        Ok(config) => config,
        Err(errors) => panic!("invalid test config:\n{text}\n{errors}"),
    }
}
