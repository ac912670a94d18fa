//! The admin server (SPEC 7): an HTTP/1.1 server, separate from the data
//! plane, on its own already-bound listener.
//!
//! - `routes`: what each path names and the dispatch to its handler;
//!   `auth`: the token and same-origin checks of mutating calls.
//! - [`status`]: `GET /api/status` and a backend's own view;
//!   `changes`: `POST`, `PATCH`, `DELETE` of a backend.
//! - [`metrics`]: `/metrics`, every metric name in one place;
//!   [`dashboard`]: the embedded page.
//! - `error`: why a request failed and its status; `body`: JSON
//!   bodies in and out, path segments.
//!
//! It reads the same snapshots as the data plane and changes them only
//! through `state::change`, the one writer path.
//! Every connection it serves is tracked and ends when the stop token is
//! cancelled: [`serve`] returns only once they all have.

mod auth;
mod body;
mod changes;
pub mod dashboard;
mod error;
pub mod metrics;
mod routes;
pub mod status;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::logging::Throttle;
use crate::net::accept::accept_loop;
use crate::net::http_server::HttpServer;
use crate::runtime::ReloadSender;
use crate::state::{Listeners, Process};

#[cfg(test)]
use body::BODY_LIMIT;
pub use error::AdminError;

#[cfg(test)]
mod tests;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin connections open at once; more are closed at accept, so a flood
/// of idle connections cannot pile up tasks.
const MAX_CONNECTIONS: usize = 256;

/// Admin connections open at once from one client address: one client
/// (a script gone wrong, a slowloris) cannot take every slot.
const MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// How often turning admin connections away is logged: the first at
/// once, then one line per interval with the count left out.
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// On stop, how long open admin requests may take to finish before their
/// connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the admin server needs from the config (`[admin]`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// When set, every mutating call needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Names besides IP addresses and `localhost` that requests may give
    /// as `Host` (`/metrics` takes any).
    pub allowed_hosts: Vec<String>,
}

/// The admin server's shared state: what every request handler sees.
#[derive(Debug)]
pub struct Admin {
    /// The live listeners: read for status and metrics, changed through
    /// `state::change`.
    listeners: Arc<Listeners>,
    /// Serving or draining (`/ready`); the config generation.
    process: Arc<Process>,
    /// Asks the runtime to reload the config (`POST /api/reload`).
    reloads: ReloadSender,
    /// The bearer token mutating calls need, if any.
    token: Option<String>,
    /// Names a request may give as `Host` besides IPs and `localhost`.
    allowed_hosts: Vec<String>,
    /// The Prometheus registry, collected at scrape time.
    metrics: metrics::Metrics,
    /// When the admin server was built (uptime in `/api/status`).
    started: Instant,
    /// Cancelled when the server must stop.
    stop: CancellationToken,
}

impl Admin {
    /// The admin state over `listeners`; `stop` ends the server.
    pub fn new(
        listeners: Arc<Listeners>,
        process: Arc<Process>,
        reloads: ReloadSender,
        settings: Settings,
        stop: CancellationToken,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            metrics: metrics::Metrics::new(Arc::clone(&listeners), Arc::clone(&process)),
            process,
            reloads,
            listeners,
            token: settings.token.filter(|t| !t.is_empty()),
            allowed_hosts: settings.allowed_hosts,
            started: Instant::now(),
            stop,
        })
    }
}

impl Admin {
    /// Whether listening on `listen` needs a warning: see
    /// [`is_exposed_without_token`].
    pub fn is_exposed_without_token(&self, listen: SocketAddr) -> bool {
        is_exposed_without_token(listen, self.token.as_deref())
    }
}

/// Whether an admin listen address needs a warning: reachable from other
/// machines (not loopback) while mutating calls need no token.
pub fn is_exposed_without_token(listen: SocketAddr, token: Option<&str>) -> bool {
    !listen.ip().is_loopback() && token.is_none_or(str::is_empty)
}

/// Serves admin requests on `listener` until `admin`'s stop token is
/// cancelled; then stops accepting, lets open requests finish for a
/// moment, closes the rest, and returns once every connection has ended.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener) {
    let server = HttpServer::new("admin", HEADER_READ_TIMEOUT);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_client = Arc::new(PerClient::default());
    let refused = Throttle::new(REFUSED_LOG_INTERVAL);
    accept_loop(listener, &admin.stop, "admin", |stream, client| {
        let turned_away = |why: &str| {
            tracing::debug!(client = %client, reason = why, "admin connection closed");
            if let Some(left_out) = refused.admit() {
                tracing::warn!(client = %client, reason = why, left_out, "admin connection closed");
            }
        };
        let Some(own) = per_client.take(client.ip()) else {
            return turned_away("too many open from this client");
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            return turned_away("too many open");
        };
        let handler = Arc::clone(&admin);
        let service = service_fn(move |request| routes::handle(Arc::clone(&handler), request));
        server.serve(stream, client, service, (slot, own));
    })
    .await;
    server.shutdown(Some(SHUTDOWN_GRACE)).await;
}

/// Admin connections open per client address.
#[derive(Debug, Default)]
struct PerClient {
    /// Open connections by address; an address leaves the map when its
    /// last connection ends (a std mutex: held for one lookup).
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// A slot for one more connection from `ip`, or `None` when it has
    /// [`MAX_CONNECTIONS_PER_CLIENT`] open already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = ip.to_canonical();
        let mut open = self.lock();
        let count = open.entry(ip).or_default();
        if *count >= MAX_CONNECTIONS_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            ip,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place in [`PerClient`]; given back on drop.
#[derive(Debug)]
struct ClientSlot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
