//! Binding listen sockets, and the accept loop of one listener: the allow
//! list, the connection caps, and handing each client to its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::ListenerSlot;
use super::stats::Rejection;
use crate::error::Error;
use crate::proxy;

/// Pending connections the kernel queues per listen socket.
const BACKLOG: i32 = 1024;

/// Binds `addr` for listening, as a non-blocking std socket (so it can be
/// bound before the runtime serves it). `what` names the owner in errors.
pub fn bind(addr: SocketAddr, what: &str) -> Result<std::net::TcpListener, Error> {
    let fail = |e: std::io::Error| Error::bind(addr, what, &e);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    // Lets a restarted balancer bind at once while old connections linger
    // in TIME_WAIT; it does not allow two live listeners on one address.
    socket.set_reuse_address(true).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)?;
    Ok(socket.into())
}

/// What an accept loop needs besides its socket.
pub struct AcceptContext {
    /// The listener's slot; its state is loaded once per connection.
    pub slot: Arc<ListenerSlot>,
    /// Cancelled when the listener must stop accepting (drain).
    pub stop_accepting: CancellationToken,
    /// Cancelled when open connections must be closed (drain timeout).
    pub close_connections: CancellationToken,
    /// Tracks every connection task, so drain can wait for them.
    pub connections: TaskTracker,
    /// The process-wide connection cap.
    pub global_slots: Arc<Semaphore>,
    /// This listener's connection cap.
    pub listener_slots: Arc<Semaphore>,
    /// Clients turned away, for rate-limited warnings.
    pub rejected: RejectionLog,
}

/// Counts rejected clients and warns at most once a second, so a flood of
/// rejections cannot flood the log too.
#[derive(Debug)]
pub struct RejectionLog {
    count: AtomicU64,
    start: Instant,
    last_warn_ms: AtomicU64,
}

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog {
            count: AtomicU64::new(0),
            start: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
        }
    }
}

impl RejectionLog {
    fn record(&self, listener: &str, client: SocketAddr, why: Rejection) {
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(listener, client = %client, reason = why.reason(), "client rejected");
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = total == 1 || now_ms.saturating_sub(last) >= 1000;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(listener, client = %client, reason = why.reason(), rejected_total = total, "client rejected");
        }
    }
}

/// Accepts clients until `stop_accepting` is cancelled, then drops the
/// socket so new connects are refused at once.
pub async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = ctx.stop_accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                backoff = Duration::from_millis(5);
                admit(&ctx, stream, client);
            }
            Err(e) => {
                // Most accept errors are transient (a client gone before
                // accept, fd exhaustion): log, back off, keep serving.
                let state = ctx.slot.state.load();
                tracing::warn!(listener = %state.config.name, error = %crate::error::io_reason(&e), "accept failed; backing off");
                tokio::select! {
                    _ = ctx.stop_accepting.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Applies the allow list and caps, then spawns the connection's task.
fn admit(ctx: &AcceptContext, stream: TcpStream, client: SocketAddr) {
    let accepted = Instant::now();
    let state = ctx.slot.state.load_full();
    let name = &state.config.name;
    let allow = &state.config.allow;
    let ip = proxy::canonical_ip(client.ip());
    let reject = |why: Rejection| {
        ctx.slot.stats.record_rejection(why);
        ctx.rejected.record(name, client, why);
    };
    if !allow.is_empty() && !allow.iter().any(|net| net.contains(&ip)) {
        reject(Rejection::NotAllowed);
        return;
    }
    let Ok(global) = ctx.global_slots.clone().try_acquire_owned() else {
        reject(Rejection::GlobalFull);
        return;
    };
    let Ok(local) = ctx.listener_slots.clone().try_acquire_owned() else {
        reject(Rejection::ListenerFull);
        return;
    };
    let close = ctx.close_connections.clone();
    let slot = Arc::clone(&ctx.slot);
    ctx.connections.spawn(async move {
        // The permits live as long as the connection: dropping them frees
        // the slots whatever way the task ends.
        let _slots: (OwnedSemaphorePermit, OwnedSemaphorePermit) = (global, local);
        proxy::handle(stream, client, state, close).await;
        slot.stats.connection_duration.observe(accepted.elapsed());
    });
}
