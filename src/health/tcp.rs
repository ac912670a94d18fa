//! The tcp probe: a check passes when a TCP connect to the backend succeeds
//! within the timeout. The connection is closed at once, with nothing sent
//! but the PROXY protocol header the backend expects, if any.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::ProbeError;
use crate::net::connect::connect;

/// Connects to `addr` (from `source` when set) and sends `preamble` (a
/// PROXY protocol header, or nothing), all within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    preamble: &[u8],
) -> Result<(), ProbeError> {
    let check = async {
        let mut stream = connect(addr, source, timeout).await?;
        if !preamble.is_empty() {
            stream.write_all(preamble).await.map_err(ProbeError::Io)?;
        }
        Ok(())
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
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
        assert!(probe(addr, None, Duration::from_secs(5), &[]).await.is_ok());
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe(addr, None, Duration::from_secs(5), &[])
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "connection refused");
    }

    #[tokio::test]
    async fn a_backend_behind_the_proxy_protocol_gets_its_header_and_nothing_else() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header = crate::net::proxy_protocol::Version::V1
            .encode(&crate::net::proxy_protocol::Header::Local);
        assert_eq!(header, b"PROXY UNKNOWN\r\n");
        let probing = probe(addr, None, Duration::from_secs(5), &header);
        let receiving = async {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            got
        };
        let (probed, got) = tokio::join!(probing, receiving);
        assert!(probed.is_ok());
        assert_eq!(got, header);
    }
}
