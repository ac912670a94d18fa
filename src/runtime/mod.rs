//! Lifecycles: the tokio runtime, binding every listener, the accept loops,
//! signals and drain. Shutdown order is one readable function, [`run`].
//!
//! Binding and running are separate steps ([`bind`], then [`run`]): a bad
//! address fails before anything serves (exit 1), and tests bind port 0 and
//! read back the real address.

pub mod drain;
pub mod limits;
pub mod listener;
mod reload;
pub mod signals;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::admin;
use crate::config::{Config, Fleet, Listener};
use crate::discovery::fleet;
use crate::error::Error;
use crate::health;
use crate::state::fleet::FleetLink;
use crate::state::{ListenerSlot, Listeners, Process, Snapshot};
use drain::Drain;
use listener::AcceptContext;
use reload::Request;
pub use reload::{ConfigSource, ReloadSender, Reloads};
use signals::Signals;

/// Listen sockets bound for a config, not yet served, and the access log
/// opened for it.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<(Listener, std::net::TcpListener)>,
    /// The admin server's socket and settings, when it has one.
    admin: Option<(admin::Settings, std::net::TcpListener)>,
    /// The access log, when the config has one.
    access_log: Option<AccessLog>,
}

impl Bound {
    /// The real address of the admin server, when it has one.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(_, s)| s.local_addr().ok())
    }

    /// The real address of each listener, by name (port 0 resolved).
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, s)| s.local_addr().ok().map(|a| (l.name.clone(), a)))
            .collect()
    }
}

/// Binds every listener of `config`, and the admin server's address when
/// it has one; fails (exit 1) naming the first address that cannot be
/// bound.
pub fn bind(config: &Config) -> Result<Bound, Error> {
    let listeners = config
        .listeners
        .iter()
        .map(|l| {
            Ok((
                l.clone(),
                listener::bind(l.listen, &format!("listener {}", l.name))?,
            ))
        })
        .collect::<Result<_, Error>>()?;
    let admin = match &config.admin {
        Some(a) => {
            let settings = admin::Settings {
                token: a.token.clone(),
                allowed_hosts: a.allowed_hosts.clone(),
            };
            Some((settings, listener::bind(a.listen, "admin")?))
        }
        None => None,
    };
    let access_log = open_access_log(&config.global)?;
    Ok(Bound {
        listeners,
        admin,
        access_log,
    })
}

/// Opens the access log `global` asks for (a file is created if missing);
/// `None` when it is off.
fn open_access_log(global: &crate::config::Global) -> Result<Option<AccessLog>, Error> {
    let Some(target) = &global.access_log else {
        return Ok(None);
    };
    AccessLog::start(target, global.access_log_format)
        .map(Some)
        .map_err(|e| Error::Runtime(e.to_string()))
}

/// Builds the runtime for `workers` threads (0: one per core). One worker
/// gets tokio's single-threaded runtime, which runs every task on the
/// thread that serves (as one HAProxy thread or one nginx worker does):
/// without a work-stealing scheduler to keep up, each http request costs
/// about 1,100 fewer instructions (5% of its user-space work; measured
/// with callgrind, docs/benchmarks.md). More workers share the
/// multi-threaded one.
pub fn build_runtime(workers: usize) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().thread_name("balancer-worker");
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.build().map_err(|e| {
        Error::Runtime(format!(
            "cannot start the runtime: {}",
            crate::net::io_reason(&e)
        ))
    })
}

/// `balancer run`: binds, serves until SIGTERM/SIGINT (reloading `path`
/// on SIGHUP), drains, returns.
pub fn serve(config: Config, path: PathBuf) -> Result<(), Error> {
    serve_with(config, Reloads::of(ConfigSource::File(path)))
}

/// Runs `config` as the binary does: on its own runtime, with signals,
/// open-file limits, reloads from `reloads`' source.
pub fn serve_with(config: Config, reloads: Reloads) -> Result<(), Error> {
    let runtime = build_runtime(config.global.workers)?;
    runtime.block_on(async move {
        let shutdown = Signals::install()?.listen(reloads.sender());
        limits::fit_open_files(&config);
        let bound = bind(&config)?;
        run(
            config,
            bound,
            shutdown.requested(),
            shutdown.forced(),
            reloads,
        )
        .await;
        Ok(())
    })
}

/// Serves `bound` until `shutdown` resolves, then drains: stop accepting,
/// wait up to `drain_timeout` for open connections (or until `forced`),
/// close the rest. Meanwhile each request of `reloads` reads the config
/// again and applies it ([`reload`]). Health checks and DNS discovery run
/// beside the listeners and stop when the drain starts (a draining process takes no
/// new connections, so health no longer matters). The admin server, when
/// bound, serves through the drain (so it can be watched) and stops last.
pub async fn run(
    config: Config,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
    forced: impl Future<Output = ()>,
    mut reloads: Reloads,
) {
    let mut serving = Serving::new(config, bound.access_log);
    for (listener_config, socket) in bound.listeners {
        let snapshot = Snapshot::new(listener_config);
        serving.serve_listener(snapshot, socket);
    }
    serving.follow_fleet().await;
    let admin_stop = CancellationToken::new();
    let admin_task = TaskTracker::new();
    if let Some((settings, socket)) = bound.admin {
        let admin = admin::Admin::new(
            Arc::clone(&serving.listeners),
            Arc::clone(&serving.process),
            reloads.sender(),
            settings,
            admin_stop.clone(),
        );
        start_admin(&admin_task, socket, admin);
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(request) = reloads.requests.recv() => match request {
                Request::Reload(answer) => {
                    serving.reload(reloads.source.as_ref(), answer).await;
                }
                Request::ReopenLogs => serving.reopen_access_log(),
            }
        }
    }
    let mut forced = std::pin::pin!(forced);
    serving.process.start_draining();
    let delay = serving.config.global.shutdown_delay;
    if !delay.is_zero() {
        tracing::info!(shutdown_delay = %crate::net::format_duration(delay), "not ready; listeners keep accepting until the delay is over");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut forced => {}
        }
    }
    serving.health.stop().await;
    serving.discovery.stop().await;
    serving.fleet.stop().await;
    let drain_timeout = serving.config.global.drain_timeout;
    serving.drain.run(drain_timeout, forced).await;
    admin_stop.cancel();
    admin_task.close();
    admin_task.wait().await;
    serving.listeners.close().await;
    serving.flush_access_log().await;
}

/// Everything `run` owns while serving, and what a reload changes.
struct Serving {
    /// The config in force.
    config: Config,
    /// Every listener's slot: what the data plane and the admin server
    /// read.
    listeners: Arc<Listeners>,
    /// Serving or draining; the config generation.
    process: Arc<Process>,
    /// Accept loops and connections, and how they stop.
    drain: Drain,
    /// Health checkers, per listener.
    health: HealthTasks,
    /// DNS discovery, per discovered listener.
    discovery: DiscoveryTasks,
    /// The etcd fleet, with `[fleet]`.
    fleet: FleetTask,
    /// The process-wide connection cap, swapped when a reload changes it.
    global_slots: Arc<ArcSwap<Semaphore>>,
}

impl Serving {
    fn new(config: Config, access_log: Option<AccessLog>) -> Serving {
        let cap = config.global.max_connections;
        Serving {
            config,
            listeners: Arc::new(Listeners::new()),
            process: Arc::new(Process::default()).with_access_log(access_log),
            drain: Drain::default(),
            health: HealthTasks::default(),
            discovery: DiscoveryTasks::default(),
            fleet: FleetTask::default(),
            global_slots: Arc::new(ArcSwap::from_pointee(Semaphore::new(cap))),
        }
    }

    /// Adds the listener of `snapshot` to `listeners`, starts its accept
    /// loop on `socket` and its health checker; `None` (logged) when the
    /// socket cannot be served.
    fn serve_listener(
        &mut self,
        snapshot: Snapshot,
        socket: std::net::TcpListener,
    ) -> Option<Arc<ListenerSlot>> {
        let config = &snapshot.config;
        let name = config.name.clone();
        let listen = socket.local_addr().unwrap_or(config.listen);
        let socket = match tokio::net::TcpListener::from_std(socket) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!(listener = %name, error = %crate::net::io_reason(&e), "cannot serve listener");
                return None;
            }
        };
        let (algorithm, backends) = (config.algorithm, snapshot.backends.len());
        if let Some(table) = snapshot.balancer.table() {
            tracing::info!(listener = %name, entries = table.entries, digest = %table.digest_hex(), "{table}");
        }
        let stop_accepting = self.drain.stop_accepting.child_token();
        let access_log = Arc::clone(&self.process.access_log);
        let slot = self.listeners.add(ListenerSlot::new(
            snapshot,
            listen,
            stop_accepting,
            access_log,
        ));
        tracing::info!(listener = %name, address = %listen, algorithm = %algorithm, backends, "listening");
        let context = AcceptContext {
            slot: Arc::clone(&slot),
            close_connections: self.drain.close_connections.clone(),
            connections: self.drain.connections.clone(),
            global_slots: Arc::clone(&self.global_slots),
        };
        self.drain
            .listeners
            .spawn(listener::accept_loop(socket, context));
        // Every listener: a reload may turn a tcp listener into an http one.
        self.drain
            .listeners
            .spawn(crate::proxy::http::sweep_pools(Arc::clone(&slot)));
        self.health.start(&slot);
        self.discovery.start(&self.listeners, &slot);
        Some(slot)
    }

    /// Starts, restarts or stops the fleet task so that it follows the
    /// config in force: restarted when `[fleet]` or the set of listeners
    /// in the fleet changed, stopped when `[fleet]` went.
    async fn follow_fleet(&mut self) {
        self.fleet
            .follow(&self.config, &self.listeners, &self.process)
            .await;
    }

    /// SIGUSR1: the access log file is closed and opened again (log
    /// rotation moved it away).
    fn reopen_access_log(&self) {
        match self.process.access_log.load_full() {
            Some(log) => {
                tracing::info!("reopening the access log");
                log.reopen();
            }
            None => tracing::info!("there is no access log to reopen"),
        }
    }

    /// At exit: what the access log has queued is written, within a second.
    async fn flush_access_log(&self) {
        if let Some(log) = self.process.access_log.load_full() {
            let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(1))).await;
        }
    }

    /// Stops listener `name`: no more accepts (its socket closes), no more
    /// checks; its open connections run on.
    fn stop_listener(&mut self, name: &str) -> Option<Arc<ListenerSlot>> {
        self.health.stop_listener(name);
        self.discovery.stop_listener(name);
        let slot = self.listeners.remove(name)?;
        slot.stop_accepting.cancel();
        Some(slot)
    }
}

/// Starts the admin server on `socket`, on `tasks`.
fn start_admin(tasks: &TaskTracker, socket: std::net::TcpListener, admin: Arc<admin::Admin>) {
    let address = socket.local_addr().ok();
    let socket = match tokio::net::TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(error = %crate::net::io_reason(&e), "cannot serve the admin API");
            return;
        }
    };
    if let Some(address) = address {
        if admin.is_exposed_without_token(address) {
            tracing::warn!(address = %address, "the admin API listens beyond loopback without a token: anyone who reaches it can change backends (set [admin] token)");
        }
        tracing::info!(address = %address, "admin listening");
    }
    tasks.spawn(admin::serve(admin, socket));
}

/// Tasks that run one per listener (health checks, DNS discovery): owned
/// here, stopped one by one (a reload) or together (the drain). Each
/// running task is listed by listener name with `K`, what it was started
/// with (compared by a reload), and its own token.
#[derive(Debug)]
struct PerListener<K> {
    /// Every task.
    tasks: TaskTracker,
    /// Cancelled to stop them all; each task has a child of it.
    cancel: CancellationToken,
    /// Each running task's settings and own token, by listener name.
    by_listener: HashMap<String, (K, CancellationToken)>,
}

impl<K> Default for PerListener<K> {
    fn default() -> PerListener<K> {
        PerListener {
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            by_listener: HashMap::new(),
        }
    }
}

impl<K> PerListener<K> {
    /// Spawns listener `name`'s task, made by `task` from its own token,
    /// started with `settings`.
    fn spawn<F>(&mut self, name: &str, settings: K, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.child_token();
        self.by_listener
            .insert(name.to_string(), (settings, cancel.clone()));
        self.tasks.spawn(task(cancel));
    }

    /// What listener `name`'s running task was started with, if it has one.
    fn running(&self, name: &str) -> Option<&K> {
        self.by_listener.get(name).map(|(settings, _)| settings)
    }

    /// Stops the task of listener `name`, if it has one.
    fn stop_listener(&mut self, name: &str) {
        if let Some((_, cancel)) = self.by_listener.remove(name) {
            cancel.cancel();
        }
    }

    /// Stops every task and waits until they have ended.
    async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The health check tasks, one per listener with a `health_check`.
type HealthTasks = PerListener<()>;

impl HealthTasks {
    /// Starts the checker of the listener in `slot`, when its config has a
    /// health check.
    fn start(&mut self, slot: &Arc<ListenerSlot>) {
        if slot.snapshot.load().config.health_check.is_none() {
            return;
        }
        let slot = Arc::clone(slot);
        self.spawn(&slot.name.clone(), (), |cancel| health::run(slot, cancel));
    }
}

/// The DNS discovery tasks, one per listener with `[listeners.discovery]`,
/// each listed with its settings.
type DiscoveryTasks = PerListener<crate::config::Discovery>;

impl DiscoveryTasks {
    /// Starts the discovery of the listener in `slot`, when its config has
    /// one.
    fn start(&mut self, listeners: &Arc<Listeners>, slot: &Arc<ListenerSlot>) {
        let Some(settings) = slot.snapshot.load().config.discovery.clone() else {
            return;
        };
        let (listeners, slot) = (Arc::clone(listeners), Arc::clone(slot));
        let running = settings.clone();
        self.spawn(&slot.name.clone(), running, |cancel| {
            crate::discovery::run(listeners, slot, settings, cancel)
        });
    }

    /// After a reload gave the listener in `slot` its config: a discovery
    /// whose settings changed (or went, or came) is restarted; one that
    /// stayed the same runs on.
    fn follow(&mut self, listeners: &Arc<Listeners>, slot: &Arc<ListenerSlot>) {
        let wanted = slot.snapshot.load().config.discovery.clone();
        if self.running(&slot.name) == wanted.as_ref() {
            return;
        }
        self.stop_listener(&slot.name);
        self.start(listeners, slot);
    }
}

/// The fleet task, with `[fleet]`: one for every listener in the fleet,
/// owned here, restarted by a reload that changes `[fleet]` or the
/// listeners in it, stopped when the drain starts.
#[derive(Debug, Default)]
struct FleetTask {
    /// The fleet task (one at a time: a restart waits for the old one to
    /// end).
    tasks: TaskTracker,
    /// The running task's settings and listeners, and its token.
    running: Option<(Fleet, Vec<String>, CancellationToken)>,
}

impl FleetTask {
    /// Makes the fleet task follow `config`: started, restarted (new
    /// settings or listeners: it seeds, reads and watches again) or
    /// stopped; a running task that still fits runs on. The link the
    /// admin API writes through is `process`'s.
    async fn follow(&mut self, config: &Config, listeners: &Arc<Listeners>, process: &Process) {
        let members: Vec<fleet::Member> = config
            .listeners
            .iter()
            .filter(|l| config.in_fleet(l))
            .map(|l| fleet::Member {
                name: l.name.clone(),
                seed: l.backends.clone(),
            })
            .collect();
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let fits = match (&self.running, &config.fleet) {
            (Some((running, running_names, _)), Some(wanted)) => {
                running == wanted && *running_names == names
            }
            (None, None) => true,
            _ => false,
        };
        if fits {
            return;
        }
        if let Some((_, _, cancel)) = self.running.take() {
            // Admin changes answer 503 until the next link is in place
            // (none goes to this instance alone meanwhile), and the old
            // task ends before the new one starts: it never applies a set
            // after its successor did.
            if let Some(link) = process.fleet.load_full() {
                link.disconnected("the fleet restarts after a reload".to_string());
            }
            cancel.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            self.tasks.reopen();
            tracing::info!("fleet task restarted: [fleet] or its listeners changed");
        }
        let Some(settings) = config.fleet.clone() else {
            process.fleet.store(None);
            return;
        };
        let client = match fleet::client(&settings) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot make the etcd client; the fleet is off until a reload");
                return;
            }
        };
        let link = Arc::new(FleetLink::new(settings.clone(), client));
        process.fleet.store(Some(Arc::clone(&link)));
        let cancel = CancellationToken::new();
        self.tasks.spawn(fleet::run(
            link,
            Arc::clone(listeners),
            members,
            cancel.clone(),
        ));
        self.running = Some((settings, names, cancel));
    }

    /// Stops the fleet task and waits until it has ended.
    async fn stop(&mut self) {
        if let Some((_, _, cancel)) = self.running.take() {
            cancel.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}
