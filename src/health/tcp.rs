//! The tcp probe: a check passes when a TCP connect to the backend succeeds
//! within the timeout. The connection is closed at once, without a byte
//! sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::ProbeError;
use crate::proxy::connect::socket_for;

/// Connects to `addr` (from `source` when set) within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    connect(addr, source, timeout).await.map(drop)
}

/// A connection to `addr` within `timeout`; shared with the http probe.
pub(super) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ProbeError> {
    let connect = async {
        let socket = socket_for(addr, source)?;
        socket.connect(addr).await
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ProbeError::Io(e)),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::probe;

    #[tokio::test]
    async fn a_listening_backend_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(probe(addr, None, Duration::from_secs(5)).await.is_ok());
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe(addr, None, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.to_string(), "connection refused");
    }

    #[tokio::test]
    async fn a_connect_from_the_source_address_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source = Some("127.0.0.1".parse().unwrap());
        assert!(probe(addr, source, Duration::from_secs(5)).await.is_ok());
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.1");
    }
}
