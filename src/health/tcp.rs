//! The tcp probe: a check passes when a TCP connect to the backend succeeds
//! within the timeout. The connection is closed at once, without a byte
//! sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ProbeError;
use crate::net::connect::connect;

/// Connects to `addr` (from `source` when set) within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    connect(addr, source, timeout).await.map(drop)?;
    Ok(())
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
}
