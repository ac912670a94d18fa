//! TLS for tests: certificates made with rcgen and written to a temporary
//! folder ([`Certs`]), and a rustls client ([`TlsClient`]) that shows what
//! the server chose: its certificate, version and ALPN protocol.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::DEADLINE;

/// Runs `future` to its end on the shared test runtime, within
/// [`DEADLINE`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    super::backends::runtime().block_on(async {
        tokio::time::timeout(DEADLINE, future)
            .await
            .expect("a TLS test step finishes within the deadline")
    })
}

/// A temporary folder of certificate and key files, removed on drop.
pub struct Certs(TempDir);

impl Certs {
    pub fn new() -> Certs {
        Certs(tempfile::tempdir().expect("a temporary directory can be created"))
    }

    /// Where file `name` is in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// A new self-signed ECDSA P-256 certificate for `names` (DNS names or
    /// IP addresses), written with its key to `NAME.pem` and `NAME.key`
    /// (replacing what was there); the certificate as DER.
    pub fn make(&self, name: &str, names: &[&str]) -> CertificateDer<'static> {
        self.make_until(name, names, None)
    }

    /// As [`Certs::make`], expiring at the end of `(year, month, day)`
    /// when given.
    pub fn make_until(
        &self,
        name: &str,
        names: &[&str],
        not_after: Option<(i32, u8, u8)>,
    ) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("valid names");
        if let Some((year, month, day)) = not_after {
            params.not_after = rcgen::date_time_ymd(year, month, day);
        }
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = params.self_signed(&key).expect("a certificate");
        self.write(&format!("{name}.pem"), cert.pem().as_bytes());
        self.write(&format!("{name}.key"), key.serialize_pem().as_bytes());
        cert.der().clone()
    }

    /// Writes `bytes` to file `name` (beside, then renamed over, so a
    /// reload never reads half a file); its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        let next = self.path(&format!("{name}.next"));
        std::fs::write(&next, bytes).expect("the file can be written");
        std::fs::rename(&next, &path).expect("the file can be renamed");
        path
    }

    /// The `{ cert = ..., key = ... }` entry of `NAME.pem` and `NAME.key`.
    pub fn entry(&self, name: &str) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.path(&format!("{name}.pem")).display(),
            self.path(&format!("{name}.key")).display()
        )
    }
}

/// What a test client offers.
pub struct TlsClient {
    /// The server name sent as SNI; `None` sends none.
    pub sni: Option<&'static str>,
    /// The ALPN protocols offered.
    pub alpn: Vec<&'static str>,
    /// The TLS versions offered.
    pub versions: &'static [&'static SupportedProtocolVersion],
}

impl Default for TlsClient {
    fn default() -> Self {
        TlsClient {
            sni: Some("localhost"),
            alpn: Vec::new(),
            versions: rustls::ALL_VERSIONS,
        }
    }
}

impl TlsClient {
    /// Connects to `addr` and completes a handshake. The server's
    /// certificate is not verified (tests compare it themselves, see
    /// [`peer_certificate`]).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        self.handshake(stream, addr).await
    }

    /// Completes a handshake over `stream`, connected to `server`.
    pub async fn handshake<S>(&self, stream: S, server: SocketAddr) -> io::Result<TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(self.versions)
            .expect("the provider serves these versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let name = match self.sni {
            Some(name) => ServerName::try_from(name).expect("a DNS name"),
            // An IP address as the server name: rustls sends no SNI.
            None => ServerName::IpAddress(server.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector.connect(name.to_owned(), stream).await
    }
}

/// The leaf certificate the server sent on `stream`.
pub fn peer_certificate<S>(stream: &TlsStream<S>) -> CertificateDer<'static> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server sent a certificate")
        .clone()
        .into_owned()
}

/// Sends `balancer` a SIGHUP and waits until its admin port shows config
/// `generation`: the reload (with its certificate files read again) took.
pub fn reload_by_sighup(balancer: &super::Balancer, generation: u64) {
    let admin = balancer.wait_admin();
    balancer.signal(rustix::process::Signal::HUP);
    let reloaded = super::eventually(DEADLINE, || {
        super::http_get(admin, "/api/status").is_ok_and(|status| {
            serde_json::from_str::<serde_json::Value>(&status.body)
                .is_ok_and(|status| status["generation"] == generation)
        })
    });
    assert!(reloaded, "no reload:\n{}", balancer.stderr());
}

/// How long a test waits for something that must not happen at once (a
/// handshake timeout of the balancer's) before calling it a failure.
pub const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(10);

/// Accepts any server certificate: tests compare the certificate they got
/// with the one they expect, which says more than a chain check would.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are checked: the handshake is real, only the chain of
    // trust is skipped.
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client stream whose first write goes out together with `prefix`, in
/// one write: a PROXY protocol header and the TLS hello that follows it
/// arrive in one segment, as from a balancer in front.
pub struct Prefixed {
    stream: TcpStream,
    /// What is left to write of the prefix and the first write.
    pending: Vec<u8>,
    /// The length of the first write, once joined to the prefix.
    first: Option<usize>,
}

impl Prefixed {
    pub fn new(stream: TcpStream, prefix: &[u8]) -> Prefixed {
        Prefixed {
            stream,
            pending: prefix.to_vec(),
            first: None,
        }
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.first.is_none() {
            if this.pending.is_empty() {
                return std::pin::Pin::new(&mut this.stream).poll_write(cx, buf);
            }
            this.pending.extend_from_slice(buf);
            this.first = Some(buf.len());
        }
        while !this.pending.is_empty() {
            let n = std::task::ready!(
                std::pin::Pin::new(&mut this.stream).poll_write(cx, &this.pending)
            )?;
            this.pending.drain(..n);
        }
        let first = this.first.take().unwrap_or_default();
        std::task::Poll::Ready(Ok(first))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One answer read whole by a hyper client: its version, status, headers
/// and body.
#[derive(Debug)]
pub struct Answered {
    pub version: hyper::Version,
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Answered {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads `response` whole.
pub async fn answered(response: hyper::Response<hyper::body::Incoming>) -> Answered {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .expect("the answer's body arrives whole")
        .to_bytes()
        .to_vec();
    Answered {
        version: parts.version,
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// A request for a hyper client: `method` on `uri` with `headers` and
/// `body`.
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .expect("a valid request")
}

/// A hyper connection driven by a task on the test runtime: its handle
/// ends when the connection does (`Ok` for a clean end).
pub type Driven = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// An HTTP/2 connection over TLS to `addr` (the client offers only `h2`,
/// and checks it was chosen): its request sender, cloned for concurrent
/// streams, and the task driving it.
pub async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    Driven,
) {
    let client = TlsClient {
        alpn: vec!["h2"],
        ..TlsClient::default()
    };
    let stream = client.connect(addr).await.expect("a handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("an HTTP/2 handshake");
    (sender, tokio::spawn(connection))
}

/// An HTTP/1.1 connection over TLS to `addr`, the client offering `alpn`:
/// its request sender, the task driving it, and the ALPN protocol the
/// server chose.
pub async fn h1_client(
    addr: SocketAddr,
    alpn: Vec<&'static str>,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    Driven,
    Option<Vec<u8>>,
) {
    let client = TlsClient {
        alpn,
        ..TlsClient::default()
    };
    let stream = client.connect(addr).await.expect("a handshake");
    let chosen = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("an HTTP/1.1 handshake");
    (sender, tokio::spawn(connection), chosen)
}
