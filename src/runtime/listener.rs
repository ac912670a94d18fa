//! Binding listen sockets, and the accept loop of one listener: the allow
//! list, the connection caps, and handing each client to its own task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ModeSettings;
use crate::error::Error;
use crate::net;
use crate::proxy;
use crate::state::{ListenerSlot, Rejection, Snapshot};

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
    if let ModeSettings::Http(settings) = state.config.mode {
        let slot = Arc::clone(&ctx.slot);
        let permits = (global, local);
        if state.config.tls.is_some() {
            let task =
                proxy::http::tls::serve(stream, client, slot, state, close, settings, permits);
            ctx.connections.spawn(task);
            return;
        }
        let opening =
            proxy::http::open_client(stream, client, slot, state, close, settings, permits);
        // What an idle keep-alive connection costs is this task (the
        // connection's own state is in its `Conn`): keep it small.
        ctx.connections.spawn(async move {
            if let Some(conn) = opening.await {
                proxy::http::h1::serve(conn).await;
            }
        });
        return;
    }
    let task = connection(
        stream,
        client,
        Arc::clone(&ctx.slot),
        state,
        close,
        (global, local),
        accepted,
    );
    ctx.connections.spawn(task);
}

/// The task of one admitted connection: [`proxy::handle`], then its
/// duration and access log line. `permits` (the global and the listener's
/// connection slots) live as long as it does, so a slot is given back
/// however the connection ends.
///
/// This future is what an idle connection costs (with tokio's task around
/// it): keep it small. Captured values are stored once for its whole life,
/// so nothing here is copied into a second local.
#[allow(clippy::manual_async_fn)] // on purpose: an `async fn` stores its arguments twice (848 bytes, not 792)
fn connection(
    stream: TcpStream,
    mut client: SocketAddr,
    slot: Arc<ListenerSlot>,
    state: Arc<Snapshot>,
    close: CancellationToken,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    accepted: Instant,
) -> impl Future<Output = ()> + Send {
    async move {
        let _permits = permits;
        // `client` becomes the one a PROXY protocol header names, if any.
        let ended = proxy::handle(stream, &mut client, &slot, state, close).await;
        let duration = accepted.elapsed();
        slot.stats.connection_duration.observe(duration);
        if let Some(ended) = ended {
            proxy::log_access(&slot, client, ended, duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Semaphore;
    use tokio_util::sync::CancellationToken;

    use super::connection;
    use crate::testing;

    #[tokio::test]
    async fn a_connections_task_stays_small() {
        // Every idle connection is this future in a tokio task (plus its
        // sockets): 1.4 KiB per idle connection in all (docs/benchmarks.md)
        // holds while it stays in its allocation size class: 792 bytes in
        // release builds, 832 in test builds; 816 (in release) crossed into
        // the next class and cost 150 bytes per connection.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (_listeners, slot) = testing::listener("web").backend(addr).registered();
        let state = slot.snapshot.load_full();
        let permits = Arc::new(Semaphore::new(2));
        let permits = (
            Arc::clone(&permits).try_acquire_owned().unwrap(),
            permits.try_acquire_owned().unwrap(),
        );
        let task = connection(
            stream,
            addr,
            slot,
            state,
            CancellationToken::new(),
            permits,
            Instant::now(),
        );
        let size = std::mem::size_of_val(&task);
        println!("connection task future: {size} bytes");
        assert!(size <= 840, "the connection task grew to {size} bytes");
    }
}
