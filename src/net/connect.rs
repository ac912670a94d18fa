//! Connecting to a backend: one TCP connect, from a source address when
//! one is set, bounded by a timeout, with `TCP_NODELAY` on. The proxy's
//! connect attempts and the health checks' probes both go through
//! [`connect`], so they reach a backend the same way (a backend that only
//! answers the balancer's `source_address` answers its checks too).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::io_reason;

/// Why one connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect did not finish within its timeout.
    Timeout(Duration),
    /// The connect failed (refused, unreachable, reset, ...).
    Io(io::Error),
    /// It failed on this machine, whatever the backend: out of file
    /// descriptors, buffers or ports, or the source address cannot be
    /// bound. Says nothing about the backend's health.
    Local(io::Error),
}

impl ConnectError {
    /// Whether the failure is this machine's, not the backend's.
    pub fn is_local(&self) -> bool {
        matches!(self, ConnectError::Local(_))
    }

    /// Sorts an error of the connect itself: ours when the kernel ran out
    /// of something on this machine, else the backend's.
    fn of_connect(err: io::Error) -> ConnectError {
        use rustix::io::Errno;
        let ours = [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::ADDRNOTAVAIL,
        ];
        match Errno::from_io_error(&err) {
            Some(errno) if ours.contains(&errno) => ConnectError::Local(err),
            _ => ConnectError::Io(err),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout(t) => {
                write!(f, "timed out after {}", super::format_duration(*t))
            }
            ConnectError::Io(e) => f.write_str(&io_reason(e)),
            ConnectError::Local(e) => write!(f, "{} (on this machine)", io_reason(e)),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Connects to `target` within `timeout`, from `source` (any port) when
/// set; the stream has `TCP_NODELAY` on, as every relayed or probing
/// connection wants.
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    // Making and binding the socket can only fail on this machine.
    let socket = socket_for(target, source).map_err(ConnectError::Local)?;
    let connect = async {
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        Ok::<_, io::Error>(stream)
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ConnectError::of_connect(e)),
        Err(_) => Err(ConnectError::Timeout(timeout)),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::connect;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_listening_address_connects_with_nodelay_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = connect(listener.local_addr().unwrap(), None, TIMEOUT)
            .await
            .unwrap();
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_in_words() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(addr, None, TIMEOUT).await.unwrap_err();
        assert_eq!(err.to_string(), "connection refused");
    }

    #[tokio::test]
    async fn a_source_address_that_is_not_ours_is_a_local_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // TEST-NET-1 (RFC 5737): never an address of this machine.
        let source = Some("192.0.2.1".parse().unwrap());
        let err = connect(listener.local_addr().unwrap(), source, TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.is_local(), "{err}");
        assert!(err.to_string().ends_with("(on this machine)"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connect_is_the_backends_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!connect(addr, None, TIMEOUT).await.unwrap_err().is_local());
    }

    #[tokio::test]
    async fn a_connect_comes_from_the_source_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = Some("127.0.0.2".parse().unwrap());
        let _stream = connect(listener.local_addr().unwrap(), source, TIMEOUT)
            .await
            .unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
    }
}
