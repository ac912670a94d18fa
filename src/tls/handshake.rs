//! The server side of one TLS handshake, bounded in time and counted:
//! [`accept`] turns an accepted TCP connection into a TLS stream, and
//! [`Handshakes`] counts how each handshake ended (the `result` label of
//! `balancer_tls_handshakes_total`).
//!
//! A handshake runs on its connection's own task, so a client that stops
//! in the middle holds no worker and never delays the accept loop: its
//! task waits on its socket like any idle connection, until the timeout.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::ServerTls;
use crate::net::{format_duration, io_reason};

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It completed: the connection is served.
    Ok,
    /// It did not complete within the listener's handshake timeout.
    Timeout,
    /// The client sent what TLS refuses: not TLS at all, no version,
    /// cipher suite or ALPN protocol in common, a bad message, an alert.
    Error,
    /// The client closed or reset the connection before the end (port
    /// scanners, TCP health checks, a client that gave up).
    Closed,
}

impl Outcome {
    /// Every outcome, in the order `/metrics` and `/api/status` list them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Timeout,
        Outcome::Error,
        Outcome::Closed,
    ];

    /// The value of the `result` label (a contract, like metric names).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Closed => "closed",
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::Timeout => 1,
            Outcome::Error => 2,
            Outcome::Closed => 3,
        }
    }
}

/// Handshakes of one listener by outcome: one `Relaxed` add per handshake
/// (independent tallies); read by `/metrics` and `/api/status`.
#[derive(Debug, Default)]
pub struct Handshakes([AtomicU64; Outcome::ALL.len()]);

impl Handshakes {
    /// Counts one handshake that ended with `outcome`.
    pub fn record(&self, outcome: Outcome) {
        if let Some(count) = self.0.get(outcome.index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Handshakes that ended with `outcome` so far.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.0
            .get(outcome.index())
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }
}

/// Why a handshake failed, for the debug log.
#[derive(Debug)]
pub struct HandshakeError {
    /// How it is counted.
    pub outcome: Outcome,
    /// What happened, in words.
    pub reason: String,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Completes the server side of a handshake on `stream` within the
/// listener's handshake timeout, and counts how it ended in `counts`.
/// `early` are bytes already read from the stream (past a PROXY protocol
/// header), the start of the client's hello: given to TLS before any more
/// is read.
pub async fn accept(
    tls: &ServerTls,
    stream: TcpStream,
    early: &[u8],
    counts: &Handshakes,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let timeout = tls.settings().handshake_timeout;
    let result = match begin(tls, stream, early) {
        Ok(accepting) => match tokio::time::timeout(timeout, accepting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(failure(&e)),
            Err(_) => Err(HandshakeError {
                outcome: Outcome::Timeout,
                reason: format!("no handshake within {}", format_duration(timeout)),
            }),
        },
        Err(refused) => Err(refused),
    };
    counts.record(match &result {
        Ok(_) => Outcome::Ok,
        Err(e) => e.outcome,
    });
    result
}

/// Starts the handshake, giving TLS the `early` bytes first; refused at
/// once when they are not the start of a TLS hello.
fn begin(
    tls: &ServerTls,
    stream: TcpStream,
    early: &[u8],
) -> Result<tokio_rustls::Accept<TcpStream>, HandshakeError> {
    let mut refused = None;
    let accepting = tls.acceptor().accept_with(stream, |connection| {
        if early.is_empty() {
            return;
        }
        let mut rest = early;
        while !rest.is_empty() {
            if let Err(e) = connection.read_tls(&mut rest) {
                refused = Some(failure(&e));
                return;
            }
        }
        if let Err(e) = connection.process_new_packets() {
            refused = Some(protocol_error(&e));
        }
    });
    match refused {
        Some(refused) => Err(refused),
        None => Ok(accepting),
    }
}

/// A failed handshake's I/O error as counted: the client going away, or
/// TLS refusing what it sent.
fn failure(err: &io::Error) -> HandshakeError {
    let closed = matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    if closed {
        return HandshakeError {
            outcome: Outcome::Closed,
            reason: "the client closed the connection during the handshake".to_string(),
        };
    }
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => protocol_error(tls),
        None => HandshakeError {
            outcome: Outcome::Error,
            reason: io_reason(err),
        },
    }
}

/// What TLS refused, in rustls's words.
fn protocol_error(err: &rustls::Error) -> HandshakeError {
    HandshakeError {
        outcome: Outcome::Error,
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::tls::testing::{Files, client_config};
    use crate::tls::{Certificate, Settings, Version};

    /// A server config for `localhost`, and the file of its certificate.
    fn server(files: &Files) -> (ServerTls, std::path::PathBuf) {
        let (cert, key) = files.pair("site", &["localhost"]);
        let settings = Settings {
            certificates: vec![Certificate::load(&cert, &key).unwrap()],
            min_version: Version::Tls12,
            alpn: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        };
        (ServerTls::new(settings).unwrap(), cert)
    }

    /// A connected loopback pair: (the server's side, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (server.unwrap().0, client.unwrap())
    }

    #[tokio::test]
    async fn bytes_read_before_the_handshake_are_its_start() {
        let files = Files::new();
        let (tls, cert) = server(&files);
        let (mut server_side, client_side) = pair().await;
        let config = client_config(&[&cert], &[], rustls::ALL_VERSIONS);
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let client = tokio::spawn(async move {
            let mut stream = connector.connect(name, client_side).await.unwrap();
            stream.write_all(b"ping").await.unwrap();
            stream.flush().await.unwrap();
            stream
        });
        // As past a PROXY protocol header: the hello's first bytes were
        // read by someone else.
        let mut early = [0u8; 7];
        server_side.read_exact(&mut early).await.unwrap();
        let counts = Handshakes::default();
        let mut stream = accept(&tls, server_side, &early, &counts).await.unwrap();
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        assert_eq!(counts.count(Outcome::Ok), 1);
        drop(client.await.unwrap());
    }

    #[tokio::test]
    async fn early_bytes_that_are_not_tls_are_refused_at_once() {
        let files = Files::new();
        let (tls, _) = server(&files);
        let (server_side, _client) = pair().await;
        let counts = Handshakes::default();
        let refused = accept(&tls, server_side, b"GET / HTTP/1.1\r\n", &counts).await;
        let err = refused.err().unwrap();
        assert_eq!(err.outcome, Outcome::Error);
        assert_eq!(counts.count(Outcome::Error), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_times_out_and_one_that_leaves_is_closed() {
        let files = Files::new();
        let (tls, _) = server(&files);
        let counts = Handshakes::default();
        let (server_side, _silent) = pair().await;
        let started = tokio::time::Instant::now();
        let err = accept(&tls, server_side, &[], &counts).await.err().unwrap();
        assert_eq!(err.outcome, Outcome::Timeout);
        assert_eq!(err.to_string(), "no handshake within 10s");
        assert!(started.elapsed() >= Duration::from_secs(10));
        let (server_side, leaving) = pair().await;
        drop(leaving);
        let err = accept(&tls, server_side, &[], &counts).await.err().unwrap();
        assert_eq!(err.outcome, Outcome::Closed);
        let counted: Vec<u64> = Outcome::ALL.iter().map(|&o| counts.count(o)).collect();
        assert_eq!(counted, [0, 1, 0, 1]);
    }
}
