//! The data plane of a tcp listener: connect to a backend ([`connect`]),
//! then relay bytes both ways ([`tcp`]). [`handle`] is the whole life of
//! one client connection after it was admitted.

pub mod connect;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod tcp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::ModeSettings;
use crate::state::{ListenerSlot, Rejection, Snapshot};
use connect::NoBackend;

/// Logs (throttled) and counts why `peer` got no backend.
fn no_backend(slot: &ListenerSlot, peer: SocketAddr, err: &NoBackend) {
    let listener = slot.name.as_str();
    tracing::debug!(listener, client = %peer, error = %err, "client closed: no backend");
    match err {
        NoBackend::Local(_) => {
            slot.stats.record_rejection(Rejection::LocalResources);
            if let Some(left_out) = slot.logs.local.admit() {
                tracing::warn!(listener, client = %peer, error = %err, left_out, "client closed: out of resources on this machine (raise ulimit -n, or lower max_connections)");
            }
        }
        NoBackend::Unreachable { .. } => {
            if let Some(left_out) = slot.logs.unreachable.admit() {
                tracing::warn!(listener, client = %peer, error = %err, left_out, "client closed: no backend could be reached");
            }
        }
    }
}

/// Serves one admitted client: connect to a backend (with retries), relay
/// until both sides are done, the connection idles out, or `close` is
/// cancelled (drain timeout). Never fails: outcomes are logged.
///
/// A plain `fn` returning the future, not an `async fn`, so the arguments
/// are stored once in it: this future lives as long as the connection, and
/// its size is most of what an idle connection costs.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn handle<'a>(
    client: TcpStream,
    peer: SocketAddr,
    slot: &'a ListenerSlot,
    state: Arc<Snapshot>,
    close: CancellationToken,
) -> impl Future<Output = ()> + Send + 'a {
    async move {
        let _ = client.set_nodelay(true);
        // Boxed: the connect phase (retries, timeouts) is short-lived, so
        // its state is allocated only while connecting instead of widening
        // every connection's future for its whole life.
        let connected = Box::pin(async {
            tokio::select! {
                connected = connect::connect(&state, peer.ip().to_canonical()) => Some(connected),
                _ = close.cancelled() => None,
            }
        })
        .await;
        let listener = state.config.name.as_str();
        let (backend, guard) = match connected {
            None => return,
            Some(Ok(found)) => found,
            Some(Err(err)) => return no_backend(slot, peer, &err),
        };
        let address = guard.backend().address.as_str();
        tracing::debug!(listener, client = %peer, backend = address, "connected");
        // tcp is the only mode served yet; with http, this becomes the one
        // `match` on mode.
        let ModeSettings::Tcp(settings) = &state.config.mode;
        let options = tcp::RelayOptions::new(settings.buffer_size, state.config.idle_timeout);
        let outcome = tcp::relay(client, backend, &options, &guard.backend().stats, &close).await;
        tracing::debug!(listener, client = %peer, backend = address, outcome = %outcome, "connection ended");
    }
}
