//! The validated configuration model, and the entry points that produce it.
//!
//! The pipeline is `text -> raw structs -> validated model`:
//!
//! ```text
//! balancer.toml --native.rs--\
//!                             >-- native::RawConfig --validate/--> Config --convert.rs--> TOML
//! setup.cfg     ----ini.rs---/
//! ```
//!
//! Raw structs keep what was typed (and where it was typed, as a byte span
//! that gives the line); the model here holds only checked values: resolved
//! addresses, `Duration`s, enums. Errors ([`ConfigError`], in `error.rs`)
//! carry the file, line, path to the value and the problem, and one run
//! reports every problem it can find. Nothing in this module listens,
//! connects or spawns a task (host names are resolved, and a
//! `source_address` is bound on a throwaway socket to learn whether this
//! machine has it: the only I/O), so `balancer check` and `balancer
//! convert` are free, and every error can be tested from a string.
//! `docs/config.md` is the user's reference to both formats.
//!
//! A listener's settings that apply to one mode only sit in its
//! [`ModeSettings`]; [`defaults`] and [`limits`] hold the default and the
//! bounds of every key. `duration.rs` is the one grammar of durations, and
//! [`format_duration`] the one way they are printed (`check` and `convert`
//! today; log lines that show a duration are to use it too).
// Config text comes from outside: nothing here may panic on it.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod convert;
mod duration;
mod error;
#[cfg(test)]
mod fuzz;
mod ini;
mod native;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

pub use convert::to_toml;
pub use duration::format_duration;
pub use error::ConfigErrors;

/// Which of the two file formats a config is written in. (`FileFormat`,
/// not `Format`, which `admin::metrics` names its exposition formats.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// The native TOML format (SPEC 2); chosen for files ending in `.toml`.
    Toml,
    /// The seed project's INI format (`setup.cfg`, SPEC 3); any other ending.
    Ini,
}

impl FileFormat {
    /// The format a file is read as, decided by its name alone.
    pub fn of_path(path: &Path) -> FileFormat {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => FileFormat::Toml,
            _ => FileFormat::Ini,
        }
    }
}

/// A whole, validated configuration: what `run` serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Process-wide settings (`[global]`).
    pub global: Global,
    /// The admin server (`[admin]`, or INI `admin=`); `None`: no admin port.
    pub admin: Option<Admin>,
    /// Every listener, in the order the file gives them.
    pub listeners: Vec<Listener>,
    /// `[fleet]`: the etcd cluster several instances share their backends
    /// through (`docs/fleet.md`); `None`: this instance alone.
    pub fleet: Option<Fleet>,
}

/// `[fleet]`: where the backend sets of the listeners without
/// `[listeners.discovery]` live, shared by every instance that names the
/// same etcd and prefix (SPEC 10, `docs/fleet.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// etcd endpoints as written, each `http://host:port`; at least one.
    pub etcd: Vec<String>,
    /// The key prefix: starts with `/`, does not end with one. A backend
    /// is the key `{prefix}/listeners/{listener}/backends/{address}`.
    pub prefix: String,
}

impl Config {
    /// Whether `listener` has its backends in the fleet:
    /// there is a `[fleet]`, and DNS does not give them.
    pub fn in_fleet(&self, listener: &Listener) -> bool {
        self.fleet.is_some() && listener.discovery.is_none()
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Worker threads of the runtime; 0 means one per CPU core.
    pub workers: usize,
    /// Bytes per direction per connection when copying in user space.
    pub buffer_size: usize,
    /// On SIGTERM/SIGINT, how long open connections may finish.
    pub drain_timeout: Duration,
    /// Process-wide cap on open client connections.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT, how long the listeners keep accepting after
    /// `/ready` turned 503, before the drain starts (zero: at once).
    pub shutdown_delay: Duration,
    /// Where the access log goes; `None`: no access log (`off`).
    pub access_log: Option<AccessLogTarget>,
    /// How access log lines are written.
    pub access_log_format: AccessLogFormat,
}

pub use crate::access_log::{Format as AccessLogFormat, Target as AccessLogTarget};

/// The admin server: HTTP admin API, `/metrics` and the dashboard (SPEC 7).
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Where it listens: an IP address and a port (0: any free port).
    pub listen: SocketAddr,
    /// When set, mutating calls need `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Host names requests may give as `Host` besides IP addresses and
    /// `localhost` (against DNS rebinding); empty: none.
    pub allowed_hosts: Vec<String>,
}

/// How a listener treats its traffic, by name only: what status, logs and
/// `balancer check` show, and what an error names. The settings that come
/// with a mode are in [`ModeSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Layer 4: bytes are relayed unchanged.
    Tcp,
    /// HTTP/1.1: each request is balanced (docs/http.md).
    Http,
}

impl Mode {
    /// The name used in the config (`mode = "tcp"`) and in status.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// A listener's mode together with the settings that apply to that mode
/// only.
///
/// An enum, not optional fields on [`Listener`], so that a tcp listener
/// cannot carry an http setting nor the reverse: the settings of a mode
/// exist only inside its variant, and code that needs them (the proxy's one
/// `match` on mode) reaches them only by matching the mode. Settings every
/// mode has (timeouts, backends, health checks) stay on `Listener`. Both
/// are checked in `validate/mode.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModeSettings {
    /// Layer 4: bytes are relayed unchanged.
    Tcp(TcpSettings),
    /// HTTP/1.1, balanced per request.
    Http(HttpSettings),
}

impl ModeSettings {
    /// The mode, by name.
    pub fn mode(&self) -> Mode {
        match self {
            ModeSettings::Tcp(_) => Mode::Tcp,
            ModeSettings::Http(_) => Mode::Http,
        }
    }
}

/// What only a tcp listener has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSettings {
    /// Bytes per direction per connection when the relay copies in user
    /// space. Not a listener key: every tcp listener takes `[global]
    /// buffer_size` (INI `[options] buffer_size`).
    pub buffer_size: usize,
    /// The PROXY protocol header sent to backends before the client's
    /// bytes (`proxy_protocol = "v1" | "v2"`); `None`: none (`"off"`).
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// What only an http listener has (SPEC 2, "http mode only").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// A request head must arrive within this (else 408); also how long a
    /// kept-alive client connection may wait for its next request.
    pub request_header_timeout: Duration,
    /// A larger request head (request line and headers) gets 431.
    pub max_header_bytes: usize,
    /// No response head from the backend within this gets 504 (default:
    /// the listener's `idle_timeout`).
    pub response_timeout: Duration,
    /// A pooled backend connection idle this long is closed.
    pub backend_idle_timeout: Duration,
    /// Idle pooled connections kept per backend (0: none are kept, every
    /// request opens its own).
    pub max_idle_per_backend: usize,
}

/// A listener's TLS, built when its certificate files are read (`tls`).
pub use crate::tls::{ServerTls, Version as TlsVersion};

/// A version of the PROXY protocol (the wire format is `net`'s).
pub use crate::net::proxy_protocol::Version as ProxyProtocol;

/// The balancing algorithm of a listener (SPEC 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Backends in config order, exact across worker threads.
    RoundRobin,
    /// A uniformly random backend.
    Random,
    /// Smooth weighted round robin, as nginx's.
    WeightedRoundRobin,
    /// Fewest outstanding connections relative to weight.
    LeastConnections,
    /// Two random choices, compared by outstanding connections and peak
    /// EWMA of connect latency.
    PowerOfTwo,
    /// Maglev consistent hashing of the client address.
    SourceHash,
}

impl Algorithm {
    /// The name used in both config formats.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::PowerOfTwo => "power_of_two",
            Algorithm::SourceHash => "source_hash",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listening address and how its clients are balanced.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique name: as configured, or the listen address as written
    /// (for INI mappings: the mapping key as written, e.g. `24003`).
    pub name: String,
    /// Where to accept clients.
    pub listen: SocketAddr,
    /// The mode, with the settings that apply to it only;
    /// [`Listener::mode`] gives its name.
    pub mode: ModeSettings,
    /// How a backend is picked for each new client connection.
    pub algorithm: Algorithm,
    /// How long one connect attempt to a backend may take.
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// How many other backends a failed connect moves on to.
    pub retries: u32,
    /// Bind outgoing connections to this address when set.
    pub source_address: Option<IpAddr>,
    /// Client networks let in; empty means everyone.
    pub allow: Vec<IpNet>,
    /// Sources allowed to send a PROXY protocol header, which every
    /// connection from them must begin with (`accept_proxy_protocol`);
    /// empty: headers are not read, and connections from anywhere are
    /// served as they come.
    pub accept_proxy_protocol: Vec<IpNet>,
    /// Cap on this listener's open client connections.
    pub max_connections: usize,
    /// The backends, in config order; never empty, except on a listener
    /// with `discovery`, whose backends DNS gives (its list is empty).
    pub backends: Vec<BackendSpec>,
    /// Where DNS discovery finds the backends (`[listeners.discovery]`,
    /// SPEC 10); `None`: the backends are `backends`.
    pub discovery: Option<Discovery>,
    /// How long a backend that comes back up (or is added) takes to ramp
    /// from 10% of its weight to all of it; zero for no ramp.
    pub slow_start: Duration,
    /// The decay time of each backend's peak EWMA of connect latency
    /// (`power_of_two`): a sample's weight halves in about `0.7 *
    /// ewma_decay`.
    pub ewma_decay: Duration,
    /// Active health checks, or `None` for passive detection only.
    pub health_check: Option<HealthCheck>,
    /// Passive detection (failed real connects), or `None` when it is off.
    pub passive_check: Option<PassiveCheck>,
    /// TLS terminated on this listener (`[listeners.tls]`), with its
    /// certificate files read at load; `None`: cleartext.
    pub tls: Option<ServerTls>,
}

impl Listener {
    /// The listener's mode by name (for status, logs and the summary); its
    /// settings are in the `mode` field.
    pub fn mode(&self) -> Mode {
        self.mode.mode()
    }
}

/// What an active health check does to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connect that succeeds within the timeout passes.
    Tcp,
    /// An HTTP/1.1 `GET path` answered with `expect_status` within the
    /// timeout passes.
    Http,
}

impl CheckKind {
    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A listener's `[listeners.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// tcp or http.
    pub kind: CheckKind,
    /// Time between the starts of two checks of one backend (jittered by up
    /// to 10% either way); more than zero.
    pub interval: Duration,
    /// How long one check may take; more than zero.
    pub timeout: Duration,
    /// The path an http check asks for; starts with `/`, visible ASCII.
    pub path: String,
    /// The status an http check expects, 100 to 599.
    pub expect_status: u16,
    /// Passed checks in a row that mark a down backend up; at least 1.
    pub rise: u32,
    /// Failed checks in a row that mark an up backend down; at least 1.
    pub fall: u32,
}

/// A listener's `[listeners.passive_check]`, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveCheck {
    /// Failed real connects in a row that mark an up backend down; >= 1.
    pub fall: u32,
    /// How long a backend marked down that way waits before real traffic
    /// tries it again; more than zero.
    pub backoff: Duration,
}

/// A listener's `[listeners.discovery]`: the DNS name its backends are
/// found under, and how often it is resolved again (`docs/discovery.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The name, and which records it is asked for.
    pub dns: DnsName,
    /// The DNS servers asked, in order; empty: the system's
    /// (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
    /// The shortest time between two resolutions, whatever the records'
    /// TTL; also how soon a failed resolution is tried again. More than
    /// zero.
    pub min_interval: Duration,
    /// The longest time between two resolutions, whatever the records'
    /// TTL; at least `min_interval`.
    pub max_interval: Duration,
}

/// The name of `[listeners.discovery] dns`, told apart by its shape: a name
/// that starts with `_` and has no port is an SRV name; `host:port` asks
/// for A/AAAA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsName {
    /// An SRV name (`_http._tcp.web.internal`): each record is a backend
    /// `target:port` with the record's weight.
    Srv(String),
    /// `host:port`: each A/AAAA record of `host` is a backend `ip:port` of
    /// weight 1.
    Host {
        /// The host name asked for.
        host: String,
        /// The port of every backend.
        port: u16,
    },
}

impl fmt::Display for DnsName {
    /// As written in the config: the SRV name, or `host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsName::Srv(name) => f.write_str(name),
            DnsName::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl DnsName {
    /// Which records are asked for, as status and `check` name them:
    /// `SRV` or `A/AAAA`.
    pub fn records(&self) -> &'static str {
        match self {
            DnsName::Srv(_) => "SRV",
            DnsName::Host { .. } => "A/AAAA",
        }
    }
}

/// A backend as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// The address as written in the config (`host:port`, `[v6]:port`): the
    /// backend's name everywhere (logs, metrics, admin API).
    pub address: String,
    /// The address connected to: `address` with its host resolved at load.
    pub resolved: SocketAddr,
    /// Relative share of traffic; at least 1.
    pub weight: u32,
}

/// Defaults of SPEC 2, in one place so `--help-config`, docs and `convert`
/// agree with validation.
pub mod defaults {
    use std::time::Duration;

    /// `[global] workers`: one per core.
    pub const WORKERS: usize = 0;
    /// `[global] buffer_size`.
    pub const BUFFER_SIZE: usize = 16 * 1024;
    /// `[global] drain_timeout`.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// `[global] shutdown_delay`: the drain starts at once.
    pub const SHUTDOWN_DELAY: Duration = Duration::ZERO;
    /// `[global] access_log_format`.
    pub const ACCESS_LOG_FORMAT: super::AccessLogFormat = super::AccessLogFormat::Text;
    /// `[global] max_connections`.
    pub const GLOBAL_MAX_CONNECTIONS: usize = 100_000;
    /// `mode` of a listener.
    pub const MODE: super::Mode = super::Mode::Tcp;
    /// `connect_timeout` of a listener.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// `idle_timeout` of a listener.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    /// `retries` of a listener.
    pub const RETRIES: u32 = 3;
    /// `max_connections` of a listener.
    pub const LISTENER_MAX_CONNECTIONS: usize = 10_000;
    /// `weight` of a backend.
    pub const WEIGHT: u32 = 1;
    /// `slow_start` of a listener.
    pub const SLOW_START: Duration = Duration::from_secs(30);
    /// `ewma_decay` of a listener (linkerd's default).
    pub const EWMA_DECAY: Duration = Duration::from_secs(10);
    /// `[listeners.health_check] kind`.
    pub const CHECK_KIND: super::CheckKind = super::CheckKind::Tcp;
    /// `[listeners.health_check] interval`.
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
    /// `[listeners.health_check] timeout`.
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
    /// `[listeners.health_check] path`.
    pub const CHECK_PATH: &str = "/health";
    /// `[listeners.health_check] expect_status`.
    pub const EXPECT_STATUS: u16 = 200;
    /// `[listeners.health_check] rise`.
    pub const RISE: u32 = 2;
    /// `[listeners.health_check] fall`.
    pub const FALL: u32 = 3;
    /// `request_header_timeout` of an http listener.
    pub const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// `max_header_bytes` of an http listener.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// `backend_idle_timeout` of an http listener.
    pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// `max_idle_per_backend` of an http listener.
    pub const MAX_IDLE_PER_BACKEND: usize = 64;
    /// `[listeners.tls] min_version`.
    pub const TLS_MIN_VERSION: super::TlsVersion = super::TlsVersion::Tls12;
    /// `[listeners.tls] handshake_timeout`.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `[listeners.tls] alpn` of an http listener: HTTP/2 for the clients
    /// that offer it, else HTTP/1.1 (a tcp listener offers none).
    pub const HTTP_ALPN: [&str; 2] = ["h2", "http/1.1"];
    /// `[listeners.discovery] min_interval`.
    pub const DISCOVERY_MIN_INTERVAL: Duration = Duration::from_secs(1);
    /// `[listeners.discovery] max_interval`.
    pub const DISCOVERY_MAX_INTERVAL: Duration = Duration::from_secs(300);
    /// `[fleet] prefix`.
    pub const FLEET_PREFIX: &str = "/balancer";
    /// The port of a `[listeners.discovery] resolvers` entry given as a
    /// bare IP address.
    pub const DNS_PORT: u16 = 53;
    /// `[listeners.passive_check] fall`.
    pub const PASSIVE_FALL: u32 = 3;
    /// `[listeners.passive_check] backoff`.
    pub const PASSIVE_BACKOFF: Duration = Duration::from_secs(10);
    /// `passive_check` of a listener that has none: enabled, with the
    /// defaults above.
    pub const PASSIVE_CHECK: super::PassiveCheck = super::PassiveCheck {
        fall: PASSIVE_FALL,
        backoff: PASSIVE_BACKOFF,
    };
}

/// The bounds validation enforces, beside [`defaults`] for the same reason:
/// the reference (`docs/config.md`), the admin API and the tests agree with
/// validation. A bound on a number read from a file is an `i64`, the type
/// the file's integers are read as (so a negative value reaches validation);
/// [`MAX_WEIGHT`](limits::MAX_WEIGHT) is a `u32`, the model's weight, because
/// the admin API holds the weights it is sent to the same bound.
pub mod limits {
    /// Largest backend `weight`, in a config file or sent to the admin API.
    pub const MAX_WEIGHT: u32 = 10_000;
    /// Largest `workers`: far above any core count, low enough to catch typos.
    pub(crate) const MAX_WORKERS: i64 = 1024;
    /// Largest `buffer_size` (16 MiB): anything above is a typo, and it is
    /// allocated twice per connection.
    pub(crate) const MAX_BUFFER_SIZE: i64 = 16 * 1024 * 1024;
    /// Largest `max_connections`, global or per listener.
    pub(crate) const MAX_CONNECTIONS: i64 = 10_000_000;
    /// Smallest `max_header_bytes`: a request line and a few headers.
    pub(crate) const MIN_HEADER_BYTES: i64 = 1024;
    /// Largest `max_header_bytes` (1 MiB), read into memory per request.
    pub(crate) const MAX_HEADER_BYTES: i64 = 1024 * 1024;
    /// Largest `max_idle_per_backend`.
    pub(crate) const MAX_IDLE_PER_BACKEND: i64 = 100_000;
    /// Largest `retries`.
    pub(crate) const MAX_RETRIES: i64 = 100;
    /// Longest duration, in days: keeps timer arithmetic far from overflow.
    pub(crate) const MAX_DURATION_DAYS: u64 = 365;
    /// Largest `rise` or `fall`: more is a typo, and would take hours to act.
    pub(crate) const MAX_RISE_FALL: i64 = 100;
    /// The HTTP status codes an http check may expect.
    pub(crate) const STATUS_RANGE: (i64, i64) = (100, 599);
    /// The longest ALPN protocol name, in bytes (RFC 7301: one length byte).
    pub(crate) const MAX_ALPN_BYTES: usize = 255;
}

/// Reads and validates the config at `path`, in the format its name says.
/// Errors name the file (as given), the line where it is known, the key and
/// the bad value. Relative paths in it (certificate files) are taken from
/// the folder the file is in.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::io(&origin, &e))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    parse_in(&text, FileFormat::of_path(path), &origin, folder)
}

/// Parses and validates config text; `origin` is how errors name the file.
/// Relative paths in it are taken from the working directory. (Tests'
/// shorthand: the binary reads files with [`load`], and the demo's
/// embedded text with [`parse_in`].)
#[cfg(test)]
pub fn parse(text: &str, format: FileFormat, origin: &str) -> Result<Config, ConfigErrors> {
    parse_in(text, format, origin, Path::new(""))
}

/// Parses and validates config text whose relative paths (certificate
/// files) are taken from `folder`; `origin` is how errors name the file.
pub fn parse_in(
    text: &str,
    format: FileFormat,
    origin: &str,
    folder: &Path,
) -> Result<Config, ConfigErrors> {
    let (raw, found) = match format {
        FileFormat::Toml => (native::parse(text, origin)?, Vec::new()),
        FileFormat::Ini => ini::parse(text, origin),
    };
    validate::validate(raw, found, text, format, origin, folder)
}

/// The summary `balancer check` prints: listeners, algorithms, backends,
/// with a line from `extra` added to each listener's part when it gives one
/// (`balancer check` adds the Maglev table digest, which `config` cannot
/// compute without depending on `balance`).
pub fn summary_with(config: &Config, extra: impl Fn(&Listener) -> Option<String>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let g = &config.global;
    let workers = if g.workers == 0 {
        "one per core".to_string()
    } else {
        g.workers.to_string()
    };
    let _ = writeln!(
        out,
        "global: workers {workers}, buffer_size {}, drain_timeout {}, max_connections {}",
        g.buffer_size,
        format_duration(g.drain_timeout),
        g.max_connections
    );
    if let Some(admin) = &config.admin {
        let token = if admin.token.is_some() {
            "changes need the token"
        } else {
            "no token"
        };
        let _ = writeln!(out, "admin on {} ({token})", admin.listen);
    }
    if let Some(fleet) = &config.fleet {
        let _ = writeln!(
            out,
            "fleet: backends shared through etcd {} under {}",
            fleet.etcd.join(", "),
            fleet.prefix
        );
    }
    for l in &config.listeners {
        let backends = match (&l.discovery, l.backends.len()) {
            (Some(_), _) => "backends found by DNS".to_string(),
            (None, 1) => "1 backend".to_string(),
            (None, n) => format!("{n} backends"),
        };
        let backends = if config.in_fleet(l) {
            format!("{backends} (seeds the fleet's set; etcd's set wins)")
        } else {
            backends
        };
        let _ = writeln!(
            out,
            "listener {} on {} ({}, {}), {backends}:",
            l.name,
            l.listen,
            l.mode(),
            l.algorithm,
        );
        for b in &l.backends {
            let _ = writeln!(out, "  {} weight {}", b.address, b.weight);
        }
        if let Some(d) = &l.discovery {
            discovery_summary(&mut out, d);
        }
        health_summary(&mut out, l);
        if let Some(tls) = &l.tls {
            tls_summary(&mut out, tls.settings(), std::time::SystemTime::now());
        }
        if let Some(line) = extra(l) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// How close to its expiry a certificate gets a warning from `balancer
/// check`: time enough to renew it.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// The TLS lines of a listener's summary: its settings, then each
/// certificate's names and expiry (a date, as of `now`), with a warning
/// for one that expires within [`EXPIRY_WARNING`] or has expired.
fn tls_summary(out: &mut String, tls: &crate::tls::Settings, now: std::time::SystemTime) {
    use std::fmt::Write as _;
    let alpn = if tls.alpn.is_empty() {
        "none".to_string()
    } else {
        tls.alpn.join(", ")
    };
    let _ = writeln!(
        out,
        "  tls: TLS {} and up, ALPN {alpn}, handshake timeout {}",
        tls.min_version,
        format_duration(tls.handshake_timeout)
    );
    const DAY: u64 = 24 * 3600;
    for c in &tls.certificates {
        let date = humantime::format_rfc3339_seconds(c.not_after).to_string();
        let date = date.get(..10).unwrap_or(&date);
        let names = if c.alt_names.is_empty() {
            c.names.join(", ")
        } else {
            c.alt_names.join(", ")
        };
        let (when, warn) = match c.not_after.duration_since(now) {
            Ok(left) => (
                format!("expires {date} (in {} days)", left.as_secs() / DAY),
                left < EXPIRY_WARNING,
            ),
            Err(past) => (
                format!(
                    "expired {date} ({} days ago)",
                    past.duration().as_secs() / DAY
                ),
                true,
            ),
        };
        let file = c.cert_path.display();
        let _ = writeln!(out, "  certificate {file}: {names}; {when}");
        if warn {
            let _ = writeln!(out, "  warning: certificate {file} {when}: renew it");
        }
    }
}

/// The discovery line of a listener's summary: where its backends are
/// found, through which servers, how often.
fn discovery_summary(out: &mut String, d: &Discovery) {
    use std::fmt::Write as _;
    let resolvers = if d.resolvers.is_empty() {
        "the system's resolvers".to_string()
    } else {
        d.resolvers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "  discovery: {} records of {} through {resolvers}, every {} to {} (the records' TTL)",
        d.dns.records(),
        d.dns,
        format_duration(d.min_interval),
        format_duration(d.max_interval)
    );
}

/// The health lines of a listener's summary.
fn health_summary(out: &mut String, l: &Listener) {
    use std::fmt::Write as _;
    let d = |d: Duration| format_duration(d);
    match &l.health_check {
        Some(c) => {
            let what = match c.kind {
                CheckKind::Tcp => "tcp connect".to_string(),
                CheckKind::Http => format!("http GET {} expecting {}", c.path, c.expect_status),
            };
            let _ = writeln!(
                out,
                "  health check: {what} every {}, timeout {}, rise {}, fall {}",
                d(c.interval),
                d(c.timeout),
                c.rise,
                c.fall
            );
        }
        None => {
            let _ = writeln!(out, "  health check: none");
        }
    }
    match &l.passive_check {
        Some(p) => {
            let _ = writeln!(
                out,
                "  passive check: down after {} failed connects, tried again after {}",
                p.fall,
                d(p.backoff)
            );
        }
        None => {
            let _ = writeln!(out, "  passive check: off");
        }
    }
    let _ = writeln!(out, "  slow start: {}", d(l.slow_start));
}
