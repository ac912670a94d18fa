//! Connecting to a backend: the balancer picks, a connect attempt runs with
//! `connect_timeout` (from `source_address` when set), and a failure moves
//! on to the next backend the balancer picks, up to `retries` times.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::backend::{Backend, ConnectionGuard};
use crate::balance::PickContext;
use crate::runtime::state::ListenerState;

/// Why no backend could be reached for a client.
#[derive(Debug)]
pub struct ConnectError {
    /// How many backends were tried.
    pub attempts: usize,
    /// The last attempt's backend and failure, if any was tried.
    pub last: Option<(String, AttemptError)>,
}

/// Why one connect attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The connect did not finish within `connect_timeout`.
    Timeout(Duration),
    /// The connect failed (refused, unreachable, ...).
    Io(io::Error),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Timeout(t) => {
                write!(f, "timed out after {}", humantime::format_duration(*t))
            }
            AttemptError::Io(e) => f.write_str(&crate::error::io_reason(e)),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.last {
            None => f.write_str("no backend is available"),
            Some((backend, err)) => write!(
                f,
                "{} backend{} tried, the last ({backend}): {err}",
                self.attempts,
                if self.attempts == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Connects to a backend for `client`, trying up to `retries + 1` distinct
/// backends in the order the balancer gives. On success the returned guard
/// counts the connection against that backend until it is dropped.
pub async fn connect(
    state: &ListenerState,
    client: IpAddr,
) -> Result<(TcpStream, ConnectionGuard), ConnectError> {
    let config = &state.config;
    let attempts_max = usize::try_from(config.retries)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut tried: Vec<usize> = Vec::with_capacity(attempts_max.min(state.backends.len()));
    let mut last = None;
    while tried.len() < attempts_max {
        let ctx = PickContext {
            client,
            tried: &tried,
        };
        let Some(index) = state.balancer.pick(&state.backends, &ctx) else {
            break;
        };
        tried.push(index);
        let Some(backend) = state.backends.get(index) else {
            break;
        };
        match attempt(backend, config.source_address, config.connect_timeout).await {
            Ok(stream) => return Ok((stream, ConnectionGuard::new(Arc::clone(backend)))),
            Err(err) => {
                backend.stats.record_connect_failure();
                tracing::info!(listener = %config.name, backend = %backend.address, error = %err, "connect failed");
                last = Some((backend.address.clone(), err));
            }
        }
    }
    Err(ConnectError {
        attempts: tried.len(),
        last,
    })
}

/// One connect attempt to `backend`, bound to `source` when set.
async fn attempt(
    backend: &Backend,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, AttemptError> {
    let connect = async {
        let socket = socket_for(backend.addr, source)?;
        let stream = socket.connect(backend.addr).await?;
        stream.set_nodelay(true)?;
        Ok::<_, io::Error>(stream)
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(AttemptError::Io(e)),
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// A socket of `target`'s family, bound to `source` (any port) when set.
fn socket_for(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpSocket> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket)
}
