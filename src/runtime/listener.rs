//! Binding listen sockets, and the accept loop of one listener: the allow
//! list, the connection caps, and handing each client to its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::net;
use crate::proxy;
use crate::state::{ListenerSlot, Rejection};

/// Binds `addr` for listening, as a non-blocking std socket (so it can be
/// bound before the runtime serves it). `what` names the owner in errors.
pub fn bind(addr: SocketAddr, what: &str) -> Result<std::net::TcpListener, Error> {
    net::accept::bind(addr).map_err(|e| Error::bind(addr, what, &e))
}

/// What an accept loop needs besides its socket.
pub struct AcceptContext {
    /// The listener's slot: its snapshot (loaded once per connection), its
    /// stop token and its connection cap.
    pub slot: Arc<ListenerSlot>,
    /// Cancelled when open connections must be closed (drain timeout).
    pub close_connections: CancellationToken,
    /// Tracks every connection task, so drain can wait for them.
    pub connections: TaskTracker,
    /// The process-wide connection cap (swapped by a reload that changes
    /// it).
    pub global_slots: Arc<ArcSwap<Semaphore>>,
}

/// Accepts clients until the slot's `stop_accepting` is cancelled, then
/// drops the socket so new connects are refused at once.
pub async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
    let owner = format!("listener {}", ctx.slot.name);
    let stop = ctx.slot.stop_accepting.clone();
    net::accept::accept_loop(listener, &stop, &owner, |stream, client| {
        admit(&ctx, stream, client);
    })
    .await;
}

/// Applies the allow list and caps, then spawns the connection's task.
fn admit(ctx: &AcceptContext, stream: TcpStream, client: SocketAddr) {
    let accepted = Instant::now();
    let state = ctx.slot.snapshot.load_full();
    let name = &state.config.name;
    let allow = &state.config.allow;
    let ip = client.ip().to_canonical();
    let reject = |why: Rejection| {
        ctx.slot.stats.record_rejection(why);
        let reason = why.reason();
        tracing::debug!(listener = %name, client = %client, reason, "client rejected");
        if let Some(left_out) = ctx.slot.logs.rejected.admit() {
            tracing::warn!(listener = %name, client = %client, reason, left_out, "client rejected");
        }
    };
    // Behind a balancer that sends PROXY protocol headers, only it may
    // connect, and the allow list applies to the client its header names
    // (checked once the header is read).
    let trusted = &state.config.accept_proxy_protocol;
    if !trusted.is_empty() {
        if !trusted.iter().any(|net| net.contains(&ip)) {
            reject(Rejection::ProxyProtocol);
            return;
        }
    } else if !allow.is_empty() && !allow.iter().any(|net| net.contains(&ip)) {
        reject(Rejection::NotAllowed);
        return;
    }
    let Ok(global) = ctx.global_slots.load_full().try_acquire_owned() else {
        reject(Rejection::GlobalFull);
        return;
    };
    let Ok(local) = ctx.slot.connection_slots.load_full().try_acquire_owned() else {
        reject(Rejection::ListenerFull);
        return;
    };
    let close = ctx.close_connections.clone();
    let slot = Arc::clone(&ctx.slot);
    ctx.connections.spawn(async move {
        // The permits live as long as the connection: dropping them frees
        // the slots whatever way the task ends.
        let _slots: (OwnedSemaphorePermit, OwnedSemaphorePermit) = (global, local);
        proxy::handle(stream, client, &slot, state, close).await;
        slot.stats.connection_duration.observe(accepted.elapsed());
    });
}
