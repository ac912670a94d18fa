//! `Upgrade` (WebSocket and any other protocol switch): the request goes to
//! a backend with its `Upgrade` and `Connection: upgrade`, and after a
//! `101 Switching Protocols` both connections are relayed as tcp mode
//! relays them (splice, half-close, `idle_timeout`) until either side
//! closes. The whole exchange is one request in the counters and the
//! access log.

use std::sync::Arc;

use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Finish;
use crate::config::defaults::BUFFER_SIZE;
use crate::proxy::tcp::{self, Moved, RelayOptions};

/// The `Upgrade` value of a request that asks for one, to put back after
/// the hop-by-hop headers went.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    if super::headers::wants_upgrade(headers) {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts `Upgrade: protocol` and `Connection: upgrade` (back) on a message.
pub fn mark(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// An upgrade the backend accepted: what the client connection needs to
/// relay once it has sent the `101` on (in the answer's extensions).
#[derive(Debug)]
pub struct UpgradeTo {
    /// The backend's connection, with the bytes it sent past the `101`.
    pub backend: (TcpStream, Vec<u8>),
    /// The request's bookkeeping, finished when the relay ends.
    pub finish: Finish,
    /// The listener's `idle_timeout`, which the relay keeps.
    pub idle_timeout: std::time::Duration,
}

/// An [`UpgradeTo`] as an answer's extension carries it (extensions must
/// be `Clone`): taken once by the connection that sends the `101`.
#[derive(Debug, Clone)]
pub struct PendingUpgrade(Arc<std::sync::Mutex<Option<UpgradeTo>>>);

impl PendingUpgrade {
    /// `upgrade`, to be taken once.
    pub fn new(upgrade: UpgradeTo) -> PendingUpgrade {
        PendingUpgrade(Arc::new(std::sync::Mutex::new(Some(upgrade))))
    }

    /// The upgrade, the first time.
    pub fn take(&self) -> Option<UpgradeTo> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl UpgradeTo {
    /// Relays between `client` (which sent `early` past its request) and
    /// the backend (whatever it sent past the `101` first) as tcp mode
    /// does, until both sides are done or `close` is cancelled; then
    /// finishes the request with the bytes moved.
    pub async fn relay<C: tcp::Stream + Send>(
        self,
        mut client: C,
        early: Vec<u8>,
        close: tokio_util::sync::CancellationToken,
    ) {
        let UpgradeTo {
            backend,
            finish,
            idle_timeout,
        } = self;
        let (mut backend, backend_early) = backend;
        let mut moved = Moved::default();
        if !early.is_empty() {
            if backend.write_all(&early).await.is_err() {
                finish.done(false, 0, None);
                return;
            }
            moved.bytes_in = early.len() as u64;
        }
        if !backend_early.is_empty() {
            if client.write_all(&backend_early).await.is_err() {
                finish.done(false, 0, None);
                return;
            }
            moved.bytes_out = backend_early.len() as u64;
        }
        let backend_ref = Arc::clone(finish.backend());
        let options = RelayOptions::new(BUFFER_SIZE, idle_timeout);
        let (outcome, moved) =
            tcp::relay(client, backend, &options, &backend_ref.stats, &close, moved).await;
        finish.done_upgraded(matches!(outcome, tcp::Outcome::Done), moved);
    }
}
