//! The admin server (SPEC 7): an HTTP/1.1 server, separate from the data
//! plane, on its own already-bound listener. It serves the dashboard
//! ([`dashboard`]), `/metrics` ([`metrics`]) and the JSON API ([`api`]).
//!
//! It reads the same listener states as the data plane and changes them
//! only through [`Registry::update`], the one writer path. Every task it
//! starts (a connection, a backend waiting to be removed once idle) is
//! tracked and ends when the stop token is cancelled: [`serve`] returns
//! only once they all have.

pub mod api;
pub mod dashboard;
pub mod metrics;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::state::Registry;

pub use api::AdminError;

#[cfg(test)]
mod tests;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections open at once; more are closed at accept, so a flood
/// of idle connections cannot pile up tasks.
const MAX_CONNECTIONS: usize = 256;

/// On stop, how long open admin requests may take to finish before their
/// connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the admin server needs from the config (`[admin]`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// When set, every mutating call needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

/// The admin server's shared state: what every request handler sees.
#[derive(Debug)]
pub struct Admin {
    /// The live listener states: read for status and metrics, changed
    /// through `Registry::update`.
    registry: Arc<Registry>,
    /// The bearer token mutating calls need, if any.
    token: Option<String>,
    /// The Prometheus registry, collected at scrape time.
    metrics: metrics::Metrics,
    /// When the admin server was built (uptime in `/api/status`).
    started: Instant,
    /// Cancelled when the server must stop; ends removal tasks too.
    stop: CancellationToken,
    /// Background work started by requests (backends waiting to be
    /// removed once idle), waited for by [`serve`] on stop.
    tasks: TaskTracker,
    /// Backends a DELETE is draining, as `(listener, address)`: a std mutex
    /// (held for a lookup or an insert, never across `.await`).
    removals: Mutex<HashSet<(String, String)>>,
}

impl Admin {
    /// The admin state over `registry`; `stop` ends the server and its
    /// background tasks.
    pub fn new(registry: Arc<Registry>, settings: Settings, stop: CancellationToken) -> Arc<Admin> {
        Arc::new(Admin {
            metrics: metrics::Metrics::new(Arc::clone(&registry)),
            registry,
            token: settings.token.filter(|t| !t.is_empty()),
            started: Instant::now(),
            stop,
            tasks: TaskTracker::new(),
            removals: Mutex::new(HashSet::new()),
        })
    }

    /// The live listener states this server reads and changes.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn removals(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.removals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an admin listen address needs a warning: reachable from other
/// machines (not loopback) while mutating calls need no token.
pub fn is_exposed_without_token(listen: SocketAddr, settings: &Settings) -> bool {
    !listen.ip().is_loopback() && settings.token.as_deref().is_none_or(str::is_empty)
}

/// Serves admin requests on `listener` until `admin`'s stop token is
/// cancelled; then stops accepting, lets open requests finish for a
/// moment, closes the rest, and waits for every task it started.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener) {
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    let close = CancellationToken::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            () = admin.stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::debug!(client = %peer, max = MAX_CONNECTIONS, "admin connection closed: too many open");
                    continue;
                };
                let handler = Arc::clone(&admin);
                let service = service_fn(move |req| api::handle(Arc::clone(&handler), req));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                let close = close.clone();
                connections.spawn(async move {
                    // Held for the connection's life; freed however it ends.
                    let _slot = slot;
                    tokio::select! {
                        served = connection => if let Err(e) = served {
                            tracing::debug!(client = %peer, error = %e, "admin connection ended with an error");
                        },
                        () = close.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %crate::net::io_reason(&e), "admin accept failed; backing off");
                tokio::select! {
                    () = admin.stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        close.cancel();
    }
    connections.close();
    connections.wait().await;
    admin.tasks.close();
    admin.tasks.wait().await;
}
