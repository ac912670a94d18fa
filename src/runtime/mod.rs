//! Lifecycles: the tokio runtime, binding every listener, the accept loops,
//! signals and drain. Shutdown order is one readable function, [`run`].
//!
//! Binding and running are separate steps ([`bind`], then [`run`]): a bad
//! address fails before anything serves (exit 1), and tests bind port 0 and
//! read back the real address.

pub mod drain;
pub mod limits;
pub mod listener;
pub mod signals;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::config::{Config, Listener};
use crate::error::Error;
use crate::health;
use crate::state::{ListenerSlot, Listeners, Process, Snapshot};
use drain::Drain;
use listener::AcceptContext;
use signals::Signals;

/// Listen sockets bound for a config, not yet served.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<(Listener, std::net::TcpListener)>,
    /// The admin server's socket and settings, when it has one.
    admin: Option<(admin::Settings, std::net::TcpListener)>,
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
                // `[admin] allowed_hosts` comes with the config change of issue 16.
                allowed_hosts: Vec::new(),
            };
            Some((settings, listener::bind(a.listen, "admin")?))
        }
        None => None,
    };
    Ok(Bound { listeners, admin })
}

/// Builds the multi-threaded runtime with `workers` threads (0: one per
/// core).
pub fn build_runtime(workers: usize) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
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

/// `balancer run`: binds, serves until SIGTERM/SIGINT, drains, returns.
pub fn serve(config: Config) -> Result<(), Error> {
    let runtime = build_runtime(config.global.workers)?;
    runtime.block_on(async move {
        let shutdown = Signals::install()?.listen();
        limits::fit_open_files(&config);
        let bound = bind(&config)?;
        run(config, bound, shutdown.requested(), shutdown.forced()).await;
        Ok(())
    })
}

/// Serves `bound` until `shutdown` resolves, then drains: stop accepting,
/// wait up to `drain_timeout` for open connections, close the rest. Health
/// checks run beside the listeners and stop when the drain starts (a
/// draining process takes no new connections, so health no longer matters).
/// The admin server, when bound, serves through the drain (so it can be
/// watched) and stops last.
pub async fn run(
    config: Config,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
    forced: impl Future<Output = ()>,
) {
    let drain = Drain::default();
    let health = HealthTasks::default();
    let listeners = Arc::new(Listeners::new());
    let process = Arc::new(Process::default());
    let global_slots = Arc::new(Semaphore::new(config.global.max_connections));
    for (listener_config, socket) in bound.listeners {
        let Some(slot) = serve_listener(listener_config, socket, &listeners, &drain, &global_slots)
        else {
            continue;
        };
        if slot.snapshot.load().config.health_check.is_some() {
            health.spawn(slot);
        }
    }
    let admin_stop = CancellationToken::new();
    let admin_task = TaskTracker::new();
    if let Some((settings, socket)) = bound.admin {
        start_admin(
            &admin_task,
            socket,
            settings,
            &listeners,
            &process,
            &admin_stop,
        );
    }
    shutdown.await;
    process.start_draining();
    health.stop().await;
    drain.run(config.global.drain_timeout, forced).await;
    admin_stop.cancel();
    admin_task.close();
    admin_task.wait().await;
    listeners.close().await;
}

/// Adds the listener to `listeners` and starts its accept loop on
/// `socket`; `None` (logged) when the socket cannot be served.
fn serve_listener(
    config: Listener,
    socket: std::net::TcpListener,
    listeners: &Listeners,
    drain: &Drain,
    global_slots: &Arc<Semaphore>,
) -> Option<Arc<ListenerSlot>> {
    let name = config.name.clone();
    let listen = socket.local_addr().unwrap_or(config.listen);
    let socket = match tokio::net::TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(listener = %name, error = %crate::net::io_reason(&e), "cannot serve listener");
            return None;
        }
    };
    let (algorithm, backends) = (config.algorithm, config.backends.len());
    let stop_accepting = drain.stop_accepting.child_token();
    let slot = listeners.add(ListenerSlot::new(
        Snapshot::new(config),
        listen,
        stop_accepting,
    ));
    tracing::info!(listener = %name, address = %listen, algorithm = %algorithm, backends, "listening");
    if let Some(table) = slot.snapshot.load().balancer.table() {
        tracing::info!(listener = %name, entries = table.entries, digest = %table.digest_hex(), "{table}");
    }
    let context = AcceptContext {
        slot: Arc::clone(&slot),
        close_connections: drain.close_connections.clone(),
        connections: drain.connections.clone(),
        global_slots: Arc::clone(global_slots),
    };
    drain
        .listeners
        .spawn(listener::accept_loop(socket, context));
    Some(slot)
}

/// Starts the admin server on `socket`, on `tasks`, until `stop`.
fn start_admin(
    tasks: &TaskTracker,
    socket: std::net::TcpListener,
    settings: admin::Settings,
    listeners: &Arc<Listeners>,
    process: &Arc<Process>,
    stop: &CancellationToken,
) {
    let address = socket.local_addr().ok();
    let socket = match tokio::net::TcpListener::from_std(socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!(error = %crate::net::io_reason(&e), "cannot serve the admin API");
            return;
        }
    };
    if let Some(address) = address {
        if admin::is_exposed_without_token(address, &settings) {
            tracing::warn!(address = %address, "the admin API listens beyond loopback without a token: anyone who reaches it can change backends (set [admin] token)");
        }
        tracing::info!(address = %address, "admin listening");
    }
    let admin = admin::Admin::new(
        Arc::clone(listeners),
        Arc::clone(process),
        settings,
        stop.clone(),
    );
    tasks.spawn(admin::serve(admin, socket));
}

/// The health check tasks, one per listener with a `health_check`: owned
/// here, stopped together.
#[derive(Debug, Default)]
struct HealthTasks {
    /// Every listener's checker task.
    tasks: TaskTracker,
    /// Cancelled to stop them all.
    cancel: CancellationToken,
}

impl HealthTasks {
    /// Starts the checker of the listener in `slot`.
    fn spawn(&self, slot: Arc<ListenerSlot>) {
        self.tasks
            .spawn(health::run(slot, self.cancel.child_token()));
    }

    /// Stops every checker and waits until they have ended.
    async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
