//! TLS termination (SPEC 9), on rustls with the aws-lc-rs crypto provider.
//!
//! - `certificate.rs`: a [`Certificate`]: a chain and its private key read
//!   from PEM files (PKCS#8, PKCS#1 RSA or SEC1 EC keys), checked to
//!   belong together, with the names and expiry `balancer check` and the
//!   expiry gauge show. Every bad file is a [`FileError`] naming it.
//! - `resolve.rs`: the SNI choice among a listener's certificates (exact
//!   name, then a one-label `*.` wildcard, else the first).
//! - `handshake.rs`: [`accept`], one server handshake under the listener's
//!   timeout, counted in [`Handshakes`] by [`Outcome`].
//! - `socket.rs`: a [`TlsSocket`], a connection past its handshake that a
//!   reader and a writer on two tasks share (http mode's HTTP/1.1 server).
//!
//! A listener's [`ServerTls`] is built once per config load (at start and
//! on each reload), when its files are read, and shared by every
//! connection the listener accepts under that config: a reload builds a
//! new one from the files as they are then, and connections already open
//! keep the one they started with. Its rustls config resumes sessions
//! both ways: TLS 1.3 and 1.2 tickets (from the provider's ticketer, whose
//! keys rotate every 6 hours) and a server-side session cache.
//!
//! The crypto provider is given explicitly everywhere ([`provider`]),
//! never taken from rustls' process-wide default, so nothing depends on
//! which providers the dependency tree happens to enable. aws-lc-rs is
//! the fastest provider rustls has; its C library builds with the `cc`
//! crate alone (no cmake) on Linux x86_64.
//!
//! This module imports nothing of the crate but `net`'s words for errors,
//! so `config` (which reads certificates at load), `state`, `proxy` and
//! `admin` can all use it.

mod certificate;
mod handshake;
mod resolve;
mod socket;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use tokio_rustls::TlsAcceptor;

pub use certificate::{Certificate, FileProblem};
pub use handshake::{Handshakes, Outcome, accept};
pub use socket::TlsSocket;

/// Sessions a listener's server-side cache keeps for resumption by
/// session ID (TLS 1.2 clients that do not take tickets), as HAProxy's
/// default `tune.ssl.cachesize`; the oldest are dropped first.
const SESSION_CACHE_SIZE: usize = 20_000;

/// The crypto provider every TLS config of the process uses: aws-lc-rs
/// with rustls' default cipher suites and key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// The oldest TLS version a listener accepts (`min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl Version {
    /// The name used in the config: `1.2` or `1.3`.
    pub fn name(self) -> &'static str {
        match self {
            Version::Tls12 => "1.2",
            Version::Tls13 => "1.3",
        }
    }

    /// The versions served from this one up, newest first.
    fn served(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Version::Tls12 => rustls::ALL_VERSIONS,
            Version::Tls13 => &TLS13_ONLY,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A listener's `[listeners.tls]`, checked, with its files read.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Its certificates, in config order; the first is the default (no
    /// SNI, or no name matches). Never empty.
    pub certificates: Vec<Certificate>,
    /// The oldest version accepted.
    pub min_version: Version,
    /// The ALPN protocols offered, in order of preference; empty: no ALPN.
    pub alpn: Vec<String>,
    /// How long a client may take to complete its handshake.
    pub handshake_timeout: Duration,
}

/// A listener's TLS: its settings and the rustls config built from them,
/// shared by its connections (cheap to clone).
#[derive(Clone)]
pub struct ServerTls(Arc<Inner>);

struct Inner {
    settings: Settings,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// The rustls server config of `settings`: their versions,
    /// certificates (chosen by SNI) and ALPN protocols, with session
    /// resumption on. Fails only when `settings` has no certificate or
    /// the provider cannot serve its versions.
    pub fn new(settings: Settings) -> Result<ServerTls, rustls::Error> {
        let by_name = resolve::ByName::new(&settings.certificates)
            .ok_or_else(|| rustls::Error::General("no certificate".to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(settings.min_version.served())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(by_name));
        config.alpn_protocols = settings
            .alpn
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(ServerTls(Arc::new(Inner { settings, acceptor })))
    }

    /// What it was built from.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// What starts handshakes with its config.
    fn acceptor(&self) -> &TlsAcceptor {
        &self.0.acceptor
    }
}

impl PartialEq for ServerTls {
    /// Equal settings (the same files with the same contents) build the
    /// same config.
    fn eq(&self, other: &ServerTls) -> bool {
        self.settings() == other.settings()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings().fmt(f)
    }
}
