//! `Upgrade` (WebSocket and any other protocol switch): the request goes to
//! a backend with its `Upgrade` and `Connection: upgrade`, and after a
//! `101 Switching Protocols` both connections are relayed as tcp mode
//! relays them (splice, half-close, `idle_timeout`) until either side
//! closes. The whole exchange is one request in the counters and the
//! access log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Finish;
use super::client_io::ClientIo;
use crate::config::defaults::BUFFER_SIZE;
use crate::proxy::tcp::{self, Moved, RelayOptions};

/// The relay a connection runs once hyper hands over both sockets.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

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

/// The relay of an upgraded exchange: waits for hyper to hand over the
/// client's and the backend's connections, passes on what either had
/// already sent past the `101`, relays until both sides are done, and
/// then finishes the request with the bytes moved.
pub fn relay(
    client: OnUpgrade,
    backend: OnUpgrade,
    finish: Finish,
    idle_timeout: std::time::Duration,
    close: tokio_util::sync::CancellationToken,
) -> Pending {
    Box::pin(async move {
        let (Ok(client), Ok(backend)) = (client.await, backend.await) else {
            finish.done(false, 0);
            return;
        };
        let (Some((mut client, client_early)), Some((mut backend, backend_early))) =
            (client_socket(client), backend_socket(backend))
        else {
            finish.done(false, 0);
            return;
        };
        let mut moved = Moved::default();
        if !client_early.is_empty() {
            if backend.write_all(&client_early).await.is_err() {
                finish.done(false, 0);
                return;
            }
            moved.bytes_in = client_early.len() as u64;
        }
        if !backend_early.is_empty() {
            if client.write_all(&backend_early).await.is_err() {
                finish.done(false, 0);
                return;
            }
            moved.bytes_out = backend_early.len() as u64;
        }
        let backend_ref = Arc::clone(finish.backend());
        let options = RelayOptions::new(BUFFER_SIZE, idle_timeout);
        let (outcome, moved) =
            tcp::relay(client, backend, &options, &backend_ref.stats, &close, moved).await;
        finish.done_upgraded(matches!(outcome, tcp::Outcome::Done), moved);
    })
}

/// The client's socket out of hyper, and the bytes hyper had read past the
/// request.
fn client_socket(upgraded: Upgraded) -> Option<(TcpStream, Vec<u8>)> {
    let parts = upgraded.downcast::<TokioIo<ClientIo>>().ok()?;
    let (mut early, stream) = parts.io.into_inner().into_inner().into_parts();
    early.splice(0..0, parts.read_buf.iter().copied());
    Some((stream, early))
}

/// The backend's socket out of hyper, and the bytes hyper had read past
/// the `101`.
fn backend_socket(upgraded: Upgraded) -> Option<(TcpStream, Vec<u8>)> {
    let parts = upgraded.downcast::<TokioIo<TcpStream>>().ok()?;
    Some((parts.io.into_inner(), parts.read_buf.to_vec()))
}
