//! The data plane of a tcp listener: [`handle`] is the whole life of one
//! client connection after it was admitted. It reads the PROXY protocol
//! header a balancer in front sent (when the listener accepts one), picks
//! and connects to a backend ([`connect`]), sends the backend a PROXY
//! protocol header of its own (when configured), relays bytes both ways
//! ([`tcp`]), and writes the access log line when the connection ends.
//! On a listener with TLS, the handshake comes between the PROXY protocol
//! header and the backend ([`tls`]), and the decrypted bytes are relayed.

pub mod connect;
pub mod http;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod tcp;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::access_log::{self, Record};
use crate::backend::{Backend, ConnectionGuard};
use crate::config::ModeSettings;
use crate::net::proxy_protocol::{self, Header};
use crate::state::{ListenerSlot, Rejection, Snapshot};
use connect::NoBackend;

/// How long a balancer in front may take to send its PROXY protocol header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves one admitted client `peer` (which becomes the client its PROXY
/// protocol header names, when the listener accepts one): read that header, connect to a backend (with retries), relay until
/// both sides are done, the connection idles out, or `close` is cancelled
/// (drain timeout). Never fails: outcomes are logged, counted, and written
/// to the access log.
///
/// A plain `fn` returning the future, not an `async fn`, so the arguments
/// are stored once in it: this future lives as long as the connection, and
/// its size is most of what an idle connection costs.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn handle<'a>(
    mut client: TcpStream,
    peer: &'a mut SocketAddr,
    slot: &'a Arc<ListenerSlot>,
    state: Arc<Snapshot>,
    close: CancellationToken,
) -> impl Future<Output = Option<Ended>> + Send + 'a {
    async move {
        if state.config.tls.is_some() {
            // Boxed: a TLS connection's state is its own size, and a
            // cleartext connection's future does not grow by it.
            return Box::pin(tls::handle(client, peer, slot, state, close)).await;
        }
        let _ = client.set_nodelay(true);
        // Boxed: the opening (header, connect with retries) is short-lived,
        // so its state is allocated only while opening instead of widening
        // every connection's future for its whole life.
        let opened = Box::pin(open(&mut client, *peer, slot, &state, &close)).await;
        let (backend, guard, early) = match opened {
            Ok(opened) => opened,
            Err(not_opened) => return ended_early(not_opened, peer),
        };
        // From here on the client is the real one (its PROXY header's); the
        // caller sees it too.
        *peer = early.client;
        tracing::debug!(listener = %state.config.name, client = %peer, backend = %guard.backend().address, "connected");
        let options = relay_options(&state);
        let relayed = tcp::relay(
            client,
            backend,
            &options,
            &guard.backend().stats,
            &close,
            early.moved,
        );
        let (outcome, moved) = relayed.await;
        Some(ended(&state, *peer, guard, outcome, moved))
    }
}

/// How the relay of a listener's connections behaves: its copy buffer
/// and idle timeout.
fn relay_options(state: &Snapshot) -> tcp::RelayOptions {
    let buffer_size = match &state.config.mode {
        ModeSettings::Tcp(settings) => settings.buffer_size,
        ModeSettings::Http(_) => crate::config::defaults::BUFFER_SIZE,
    };
    tcp::RelayOptions::new(buffer_size, state.config.idle_timeout)
}

/// How a relayed connection ended, logged at debug, for the access log.
fn ended(
    state: &Snapshot,
    peer: SocketAddr,
    guard: ConnectionGuard,
    outcome: tcp::Outcome,
    moved: tcp::Moved,
) -> Ended {
    tracing::debug!(listener = %state.config.name, client = %peer, backend = %guard.backend().address, outcome = %outcome, "connection ended");
    let outcome = match outcome {
        tcp::Outcome::Done => access_log::Outcome::Ok,
        tcp::Outcome::IdleTimeout => access_log::Outcome::IdleTimeout,
        tcp::Outcome::Closed => access_log::Outcome::DrainTimeout,
        tcp::Outcome::Failed(_) => access_log::Outcome::Reset,
    };
    Ended {
        backend: Some(Arc::clone(guard.backend())),
        outcome,
        moved,
    }
}

/// How a connection that never reached the relay ended (for the access
/// log, when it was a client at all), its client set in `peer`.
fn ended_early(not_opened: NotOpened, peer: &mut SocketAddr) -> Option<Ended> {
    not_opened.map(|(client, outcome)| {
        *peer = client;
        Ended {
            backend: None,
            outcome,
            moved: tcp::Moved::default(),
        }
    })
}

/// How a connection ended, for the access log ([`log_access`]).
#[derive(Debug)]
pub struct Ended {
    /// The backend it was relayed to, if one was reached.
    pub backend: Option<Arc<Backend>>,
    /// How it ended.
    pub outcome: access_log::Outcome,
    /// Payload bytes both ways (a PROXY header not counted).
    pub moved: tcp::Moved,
}

/// What opening a connection found out besides the backend stream.
struct Opening {
    /// The client as every later step sees it: the source of its PROXY
    /// protocol header, or the peer address.
    client: SocketAddr,
    /// Client bytes that came with the header and were sent to the backend
    /// before the relay (counted as bytes in).
    moved: tcp::Moved,
}

/// Why a connection ended before its relay: `Some` with the client and
/// the outcome for the access log, or `None` for a client turned away
/// before it was one (its header, its address), which only the rejection
/// counters and the throttled warnings record.
pub type NotOpened = Option<(SocketAddr, access_log::Outcome)>;

/// What a client connection brings before its first byte of payload: the
/// client it stands for and the bytes that came after a PROXY protocol
/// header, when the listener accepts one.
pub struct Arrival {
    /// The source its PROXY protocol header names, or the peer address.
    pub client: SocketAddr,
    /// Payload bytes read with the header, to be passed on first.
    pub early: Vec<u8>,
}

/// Reads the PROXY protocol header a balancer in front sends, when the
/// listener accepts one, and applies the allow list to the client it
/// names (the peer itself was checked at accept).
pub async fn arrive(
    client: &mut TcpStream,
    peer: SocketAddr,
    slot: &ListenerSlot,
    state: &Snapshot,
) -> Result<Arrival, NotOpened> {
    let config = &state.config;
    let mut arrival = Arrival {
        client: peer,
        early: Vec::new(),
    };
    if config.accept_proxy_protocol.is_empty() {
        return Ok(arrival);
    }
    let received = proxy_protocol::read_header(client, PROXY_HEADER_TIMEOUT)
        .await
        .map_err(|e| turn_away(slot, peer, Rejection::ProxyProtocol, &e.to_string()))?;
    if let Some((source, _)) = received.header.addresses() {
        arrival.client = SocketAddr::new(source.ip().to_canonical(), source.port());
    }
    arrival.early = received.rest;
    let ip = arrival.client.ip();
    if !config.allow.is_empty() && !config.allow.iter().any(|net| net.contains(&ip)) {
        return Err(turn_away(
            slot,
            arrival.client,
            Rejection::NotAllowed,
            "not in the allow list",
        ));
    }
    Ok(arrival)
}

/// The connection's start: its PROXY protocol header (when the listener
/// accepts one), the allow list on the real client, a connected backend
/// (with retries), and the headers and early bytes the backend must get
/// before the relay.
async fn open(
    client: &mut TcpStream,
    peer: SocketAddr,
    slot: &ListenerSlot,
    state: &Snapshot,
    close: &CancellationToken,
) -> Result<(TcpStream, ConnectionGuard, Opening), NotOpened> {
    let arrival = arrive(client, peer, slot, state).await?;
    reach(arrival, client.local_addr().ok(), slot, state, close).await
}

/// Picks and connects a backend for the client of `arrival` (with
/// retries), and sends it what it must get before the relay: a PROXY
/// protocol header (when configured; `destination` is the address the
/// client connected to), then the arrival's early bytes.
async fn reach(
    arrival: Arrival,
    destination: Option<SocketAddr>,
    slot: &ListenerSlot,
    state: &Snapshot,
    close: &CancellationToken,
) -> Result<(TcpStream, ConnectionGuard, Opening), NotOpened> {
    let config = &state.config;
    let Arrival {
        client: source,
        early,
    } = arrival;
    let mut opening = Opening {
        client: source,
        moved: tcp::Moved::default(),
    };
    let connected = tokio::select! {
        connected = connect::connect(state, opening.client.ip()) => connected,
        () = close.cancelled() => return Err(None),
    };
    let (mut backend, guard) = match connected {
        Ok(found) => found,
        Err(err) => {
            no_backend(slot, opening.client, &err);
            let outcome = match err {
                NoBackend::Local(_) => access_log::Outcome::LocalResources,
                NoBackend::Unreachable { .. } => access_log::Outcome::NoBackend,
            };
            return Err(Some((opening.client, outcome)));
        }
    };
    let sent = match &config.mode {
        ModeSettings::Tcp(settings) => settings.proxy_protocol,
        ModeSettings::Http(_) => None,
    };
    let mut preamble = match (sent, destination) {
        (Some(version), Some(destination)) => version.encode(&Header::Proxied {
            source: opening.client,
            destination,
        }),
        _ => Vec::new(),
    };
    preamble.extend_from_slice(&early);
    if !preamble.is_empty() {
        if backend.write_all(&preamble).await.is_err() {
            return Err(Some((opening.client, access_log::Outcome::Reset)));
        }
        let early_bytes = early.len() as u64;
        guard
            .backend()
            .stats
            .bytes_in
            .fetch_add(early_bytes, std::sync::atomic::Ordering::Relaxed);
        opening.moved.bytes_in = early_bytes;
    }
    Ok((backend, guard, opening))
}

/// Counts and logs (throttled) a client turned away after accept; it is
/// closed when the connection task ends.
fn turn_away(slot: &ListenerSlot, client: SocketAddr, why: Rejection, detail: &str) -> NotOpened {
    slot.stats.record_rejection(why);
    let (listener, reason) = (slot.name.as_str(), why.reason());
    tracing::debug!(listener, client = %client, reason, detail, "client rejected");
    if let Some(left_out) = slot.logs.rejected.admit() {
        tracing::warn!(listener, client = %client, reason, detail, left_out, "client rejected");
    }
    None
}

/// Logs (throttled) and counts why `peer` got no backend.
pub fn no_backend(slot: &ListenerSlot, peer: SocketAddr, err: &NoBackend) {
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

/// Writes the access log line of `client`'s connection, which ended after
/// `duration`, when the access log is on.
pub fn log_access(slot: &ListenerSlot, client: SocketAddr, ended: Ended, duration: Duration) {
    let Some(log) = slot.access_log.load_full() else {
        return;
    };
    log.log(Record {
        ended: SystemTime::now(),
        duration,
        listener: Arc::from(slot.name.as_str()),
        client,
        backend: ended.backend.map(|b| b.address.clone()),
        bytes_in: ended.moved.bytes_in,
        bytes_out: ended.moved.bytes_out,
        outcome: ended.outcome,
        http: None,
    });
}
