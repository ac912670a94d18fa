//! Hot reload (SPEC 5, 7): read the config again, and apply it as a diff
//! by listener name, keeping what can be kept.
//!
//! A reload is asked for by SIGHUP or `POST /api/reload` ([`Reloads`]),
//! and carried out by the runtime's own loop, one at a time:
//!
//! 1. The file is read and validated on the blocking pool (host names are
//!    resolved there), never on a worker. A bad file changes nothing: its
//!    problems are logged at error, counted, and answered to the API.
//! 2. Sockets are bound for listeners that are new or whose listen address
//!    changed, before anything else changes: if one cannot be bound the
//!    whole reload fails and nothing changes.
//! 3. Then it is applied: removed listeners stop accepting (their open
//!    connections run on, and still count for SIGTERM's drain); listeners
//!    that stay get a new snapshot through `state::change::reconfigure`
//!    (backends that stay keep their `Arc<Backend>`: health, counters,
//!    latency, slow-start ramp; admin API changes give way to the file and
//!    are logged) and keep their socket when their address did not change;
//!    new ones start; health checkers restart with the new settings; the
//!    global connection cap is swapped. The generation goes up by one.
//!    A listener in a `[fleet]` keeps the backends etcd gave it (the
//!    file's list only seeds a listener never seeded), and the fleet task
//!    restarts when `[fleet]` or the set of listeners in it changed.
//!
//! What a reload cannot change (the number of worker threads, the admin
//! server's address and token) is logged as needing a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::access_log::AccessLog;
use crate::backend::BackendState;
use crate::config::{self, Config, ConfigErrors, FileFormat, Listener};
use crate::state::change;
use crate::state::{ListenerSlot, Snapshot};

/// Where the config comes from, to be read again on reload.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, in the format its name says.
    File(PathBuf),
    /// Text built into the binary (`balancer demo`), named `origin`.
    Embedded {
        /// The config text.
        text: &'static str,
        /// How errors name it.
        origin: &'static str,
        /// Where its relative paths (certificate files) are taken from.
        folder: PathBuf,
    },
}

impl ConfigSource {
    /// Reads and validates the config (blocking: file I/O and DNS).
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::File(path) => config::load(path),
            ConfigSource::Embedded {
                text,
                origin,
                folder,
            } => config::parse_in(text, FileFormat::Toml, origin, folder),
        }
    }
}

/// The answer to a reload asked for through the API: the generation now
/// in force, or every problem, one per line.
pub type ReloadAnswer = Result<u64, String>;

/// What the runtime's loop is asked to do besides serving.
#[derive(Debug)]
pub(super) enum Request {
    /// Reload the config; the answer (the API's, when it waits) hears how
    /// it went.
    Reload(Option<oneshot::Sender<ReloadAnswer>>),
    /// SIGUSR1: reopen the access log file.
    ReopenLogs,
}

/// Asks for reloads: cheap to clone, held by the signal task and the
/// admin server.
#[derive(Debug, Clone)]
pub struct ReloadSender(mpsc::UnboundedSender<Request>);

impl ReloadSender {
    /// Asks for a reload and does not wait (SIGHUP).
    pub fn request(&self) {
        let _ = self.0.send(Request::Reload(None));
    }

    /// Asks for the access log to be reopened (SIGUSR1).
    pub fn reopen_logs(&self) {
        let _ = self.0.send(Request::ReopenLogs);
    }

    /// Asks for a reload and waits until it is done (`POST /api/reload`).
    pub async fn reload(&self) -> ReloadAnswer {
        let (answer, outcome) = oneshot::channel();
        if self.0.send(Request::Reload(Some(answer))).is_err() {
            return Err("the balancer is shutting down".to_string());
        }
        outcome
            .await
            .unwrap_or_else(|_| Err("the balancer is shutting down".to_string()))
    }
}

/// The reload requests of one run, and where its config comes from.
#[derive(Debug)]
pub struct Reloads {
    /// Read again on every reload; `None`: there is nothing to reload.
    pub(super) source: Option<ConfigSource>,
    /// Requests, in order.
    pub(super) requests: mpsc::UnboundedReceiver<Request>,
    /// Handed out to whoever may ask.
    sender: ReloadSender,
}

impl Reloads {
    /// Reloads that read `source` again.
    pub fn of(source: ConfigSource) -> Reloads {
        Reloads::new(Some(source))
    }

    /// No reloads: every request is answered that there is no file (tests
    /// that run a config built in memory).
    pub fn none() -> Reloads {
        Reloads::new(None)
    }

    fn new(source: Option<ConfigSource>) -> Reloads {
        let (sender, requests) = mpsc::unbounded_channel();
        Reloads {
            source,
            requests,
            sender: ReloadSender(sender),
        }
    }

    /// Something that can ask for reloads.
    pub fn sender(&self) -> ReloadSender {
        self.sender.clone()
    }
}

// === impl Serving: applying a reload ===

impl super::Serving {
    /// Carries out one reload request: reads `source` again and applies
    /// it, answering the request (when it waits) and recording how it went.
    pub(super) async fn reload(
        &mut self,
        source: Option<&ConfigSource>,
        answer: Option<oneshot::Sender<ReloadAnswer>>,
    ) {
        let outcome = match source {
            None => Err("there is no config file to reload".to_string()),
            Some(source) => self.reload_from(source.clone()).await,
        };
        let outcome = match outcome {
            Ok(()) => {
                let generation = self.process.reloaded();
                tracing::info!(generation, "config reloaded");
                Ok(generation)
            }
            Err(problems) => {
                tracing::error!(
                    "config reload failed; the running config stays as it was:\n{problems}"
                );
                self.process.reload_failed(problems.clone());
                Err(problems)
            }
        };
        if let Some(answer) = answer {
            let _ = answer.send(outcome);
        }
    }

    /// Loads the config, binds what is new, then applies the diff; on any
    /// error before the apply, nothing has changed.
    async fn reload_from(&mut self, source: ConfigSource) -> Result<(), String> {
        let loaded = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|_| "the config could not be read: the runtime is stopping".to_string())?;
        let next = loaded.map_err(|errors| errors.to_string())?;
        let mut sockets = self.bind_new(&next)?;
        let access_log = self.open_access_log(&next)?;
        self.warn_about_restart_only_changes(&next);
        let listeners = Arc::clone(&self.listeners);
        for slot in listeners.all().iter() {
            if !next.listeners.iter().any(|l| l.name == slot.name) {
                self.stop_listener(&slot.name);
                tracing::info!(listener = %slot.name, "listener removed by reload; its open connections run on");
            }
        }
        for config in &next.listeners {
            let socket = sockets.remove(&config.name);
            let in_fleet = next.in_fleet(config);
            self.apply_listener(config.clone(), socket, in_fleet).await;
        }
        if let Some(log) = access_log {
            tracing::info!("the access log follows the reloaded config");
            self.process.access_log.store(log.map(Arc::new));
        }
        if next.global.max_connections != self.config.global.max_connections {
            let cap = Semaphore::new(next.global.max_connections);
            self.global_slots.store(Arc::new(cap));
        }
        self.config = next;
        self.follow_fleet().await;
        Ok(())
    }

    /// Binds the sockets of listeners that are new or whose listen address
    /// changed, by name; the first that cannot be bound fails the reload
    /// (the others are dropped: nothing changed).
    fn bind_new(&self, next: &Config) -> Result<HashMap<String, std::net::TcpListener>, String> {
        let mut sockets = HashMap::new();
        for config in &next.listeners {
            let kept = self
                .listeners
                .find(&config.name)
                .is_some_and(|slot| keeps_socket(&slot, config));
            if !kept {
                let what = format!("listener {}", config.name);
                let socket =
                    super::listener::bind(config.listen, &what).map_err(|e| e.to_string())?;
                sockets.insert(config.name.clone(), socket);
            }
        }
        Ok(sockets)
    }

    /// The access log `next` asks for, when it differs from the one in
    /// force: `Some(None)` to turn it off, `Some(Some(log))` a new one;
    /// `None` when it stays. Opening a file can fail the reload.
    fn open_access_log(&self, next: &Config) -> Result<Option<Option<AccessLog>>, String> {
        let (now, then) = (&self.config.global, &next.global);
        if now.access_log == then.access_log && now.access_log_format == then.access_log_format {
            return Ok(None);
        }
        let Some(target) = &then.access_log else {
            return Ok(Some(None));
        };
        AccessLog::start(target, then.access_log_format)
            .map(|log| Some(Some(log)))
            .map_err(|e| e.to_string())
    }

    /// Applies one listener's new config: a new snapshot on the slot it
    /// has (same address), or a new slot on `socket` (new listener, or a
    /// new address) carrying the backends it had. A listener `in_fleet`
    /// keeps the backends etcd gave it.
    async fn apply_listener(
        &mut self,
        config: Listener,
        socket: Option<std::net::TcpListener>,
        in_fleet: bool,
    ) {
        let name = config.name.clone();
        let old = self.listeners.find(&name);
        let Some(socket) = socket else {
            let Some(slot) = old else { return };
            return self.reconfigure(&slot, config, in_fleet).await;
        };
        // New, or moved: the old slot (if any) stops; its backends carry
        // over to the new one, then the config's list is applied to them.
        let carried = old
            .as_ref()
            .map(|slot| slot.snapshot.load().backends.clone());
        if old.is_some() {
            self.stop_listener(&name);
        }
        let snapshot = tokio::task::spawn_blocking({
            let config = config.clone();
            move || match carried {
                Some(backends) => Snapshot::with_backends(config, backends),
                None => Snapshot::new(config),
            }
        })
        .await;
        let Ok(snapshot) = snapshot else { return };
        let moved = old.is_some();
        if let Some(slot) = self.serve_listener(snapshot, socket) {
            if moved {
                self.reconfigure(&slot, config, in_fleet).await;
            } else {
                tracing::info!(listener = %name, "listener added by reload");
            }
        }
    }

    /// Gives the listener in `slot` its new config: backends matched by
    /// address (admin API changes give way to the file, logged; a listener
    /// `in_fleet` keeps etcd's), a new connection cap if it changed, and a
    /// health checker with the new settings.
    async fn reconfigure(&mut self, slot: &Arc<ListenerSlot>, config: Listener, in_fleet: bool) {
        let name = config.name.clone();
        let before = slot.snapshot.load_full();
        let file_before = self.config.listeners.iter().find(|l| l.name == name);
        let removing = |address: &str| self.listeners.is_removing(&name, address);
        if !in_fleet {
            for dropped in admin_changes_dropped(file_before, &before, &config, removing) {
                tracing::info!(listener = %name, "reload replaces a change made through the admin API: {dropped}");
            }
        }
        let cap = config.max_connections;
        if cap != before.config.max_connections {
            slot.connection_slots.store(Arc::new(Semaphore::new(cap)));
        }
        match change::reconfigure(&self.listeners, config, in_fleet).await {
            Ok(done) => {
                for added in &done.added {
                    tracing::info!(listener = %name, backend = %added, "backend added by reload");
                }
                for removed in &done.removed {
                    tracing::info!(listener = %name, backend = %removed, "backend removed by reload; draining, removed once idle");
                }
            }
            Err(e) => {
                tracing::error!(listener = %name, error = %e, "cannot apply the reloaded config")
            }
        }
        self.health.stop_listener(&name);
        self.health.start(slot);
        let listeners = Arc::clone(&self.listeners);
        self.discovery.follow(&listeners, slot);
    }

    /// Logs what a reload cannot change without a restart.
    fn warn_about_restart_only_changes(&self, next: &Config) {
        if next.global.workers != self.config.global.workers {
            tracing::warn!("[global] workers changed: a restart is needed to apply it");
        }
        if next.admin != self.config.admin {
            tracing::warn!("[admin] changed: a restart is needed to apply it");
        }
    }
}

/// Whether the listener in `slot` keeps its socket under `config`: its
/// address is unchanged (a configured port 0 keeps the port it got).
fn keeps_socket(slot: &ListenerSlot, config: &Listener) -> bool {
    let before = slot.snapshot.load().config.listen;
    config.listen == before
}

/// The backend of `list` named `address`, if it has one.
fn in_file<'a>(list: &'a Listener, address: &str) -> Option<&'a crate::config::BackendSpec> {
    list.backends.iter().find(|b| b.address == address)
}

/// The changes made through the admin API to a listener (what its live
/// snapshot has that its file config `file` did not) that `next`, the new
/// file, does not keep, in words. `removing` says which backends are on
/// their way out already (drained by an earlier change, not the API's
/// doing).
fn admin_changes_dropped(
    file: Option<&Listener>,
    live: &Snapshot,
    next: &Listener,
    removing: impl Fn(&str) -> bool,
) -> Vec<String> {
    let Some(file) = file else {
        return Vec::new();
    };
    // DNS gave a discovered listener its backends, and the admin API
    // cannot change them: there is nothing of an operator's to lose.
    if file.discovery.is_some() || next.discovery.is_some() {
        return Vec::new();
    }
    let mut dropped = Vec::new();
    for backend in &live.backends {
        let address = backend.address.as_str();
        let (was, now) = (in_file(file, address), in_file(next, address));
        match (was, now) {
            (None, None) if !removing(address) => {
                dropped.push(format!("backend {address} (added) is removed"));
            }
            (Some(was), Some(now)) => {
                if backend.weight() != was.weight && backend.weight() != now.weight {
                    let weight = backend.weight();
                    dropped.push(format!(
                        "backend {address} weight {weight} is {} again",
                        now.weight
                    ));
                }
                if backend.state() == BackendState::Draining {
                    dropped.push(format!("backend {address} (draining) is up again"));
                }
            }
            _ => {}
        }
    }
    dropped
}
