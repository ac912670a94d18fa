//! The harness every integration test uses, one job per file:
//!
//! - `process`: the real `balancer` binary in a guard ([`Balancer`]) that
//!   waits until it listens and kills it on drop; [`run`] for commands
//!   that finish ([`Output`]).
//! - `logs`: what a child prints, drained by a thread and awaited line by
//!   line; readiness lines in text or JSON.
//! - `clients`: loopback clients with deadlines: connect, read a greeting,
//!   echo, read until closed, half-close, refused connects.
//! - `backends`: in-process backends on `127.0.0.1:0` ([`Backend`]).
//! - `faults`: fault injection (issue 14): [`FaultBackend`], whose
//!   connections follow a [`Script`] and can be killed or reset at any
//!   moment; bytes checked by [`Digest`]; a process's descriptors, memory
//!   and CPU time ([`Usage`]).
//! - `dnsmasq`: a real DNS server on loopback for discovery ([`Dnsmasq`]):
//!   A records from a hosts file re-read on SIGHUP, SRV records.
//! - `etcd`: a real etcd member on loopback for the fleet ([`Etcd`]),
//!   stopped and started again on the same ports and data; keys read and
//!   written with etcdctl.
//! - `http`: one HTTP/1.1 request and its answer ([`HttpResponse`]).
//! - `http_backend`: an HTTP/1.1 backend that records each request as it
//!   arrived and answers as the request asks ([`HttpBackend`]).
//! - `tls`: certificates made with rcgen ([`Certs`]) and a rustls client
//!   ([`TlsClient`]) that shows what the server chose.
//! - `metrics_text`: [`sample`] reads one sample out of `/metrics`; it is
//!   `src/testing/metrics_text.rs`, shared with the unit tests.
//!
//! This file holds what they all share: the deadlines, [`eventually`], the
//! fixtures and config files a test runs on, the lock on fixed ports, and
//! the check that no Rust debug formatting reaches a user.
//!
//! Nothing here sleeps to synchronize: a test waits for a log line, an EOF,
//! a refused connect or an exit status, each with a deadline.

mod backends;
mod clients;
mod dnsmasq;
mod etcd;
mod faults;
mod http;
mod http_backend;
mod logs;
mod process;
mod tls;

/// The Prometheus sample reader the unit tests use too (std only, so it
/// compiles here as it is).
#[path = "../../../src/testing/metrics_text.rs"]
mod metrics_text;

pub use backends::Backend;
pub use clients::{
    Closed, assert_closed_without_data, backend_name_via, backends_reached, connect, connect_from,
    connect_refused, count, echoes, half_close, read_line, read_until_closed, refused_address,
};
pub use dnsmasq::Dnsmasq;
pub use etcd::{Etcd, Relay};
pub use faults::{
    Digest, FaultBackend, Script, Usage, pattern, raise_own_file_limit, read_digest, reset,
};
pub use http::{HttpResponse, admin_call, http_get, http_request};
pub use http_backend::{HttpBackend, Seen};
pub use metrics_text::sample;
pub use process::{Balancer, Output, check, run, run_with_config};
pub use tls::{
    Certs, HANDSHAKE_PATIENCE, Prefixed, TlsClient, answered, block_on, h1_client, h2_client,
    peer_certificate, reload_by_sighup, request,
};

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a process may take to start listening or to exit when asked.
/// Generous: CI has two cores and may be compiling beside the tests.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How long something SPEC calls immediate ("closed at once", "refused at
/// once") may take before the test calls it a failure.
pub const PROMPTLY: Duration = Duration::from_secs(3);

/// How often `eventually` and exit waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Fragments of Rust debug formatting or panics that must never reach a
/// user (SPEC 1).
const DEBUG_FORMATTING: &[&str] = &[
    "Some(",
    "None)",
    "Os {",
    "Custom {",
    "ParseIntError",
    "AddrParseError",
    "panicked",
    "RUST_BACKTRACE",
];

/// The built binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_balancer")
}

/// `127.0.0.1:port`: where tests listen and connect (only loopback).
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A fixture file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Serializes the tests that use fixed ports (the seed's 24003/24004 and
/// 8080-8084, the demo's 9000 too). Hold the guard for the whole test.
///
/// Two locks: a mutex for the tests of this binary, which `cargo test`
/// runs as threads of one process, and a machine-wide one for other test
/// processes (another checkout's `cargo test` on the same machine binds the
/// same ports). The machine-wide lock is a listening Unix socket with an
/// abstract name: only one process can listen on a name, and the kernel
/// frees it when that process ends, however it ends.
pub fn fixed_ports() -> FixedPorts {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the ports are
    // free again once its guards dropped, so the next test may go on.
    let threads = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    FixedPorts {
        _processes: machine_lock(),
        _threads: threads,
    }
}

/// The guard of [`fixed_ports`]: the ports are the holder's until it drops.
pub struct FixedPorts {
    _processes: Option<UnixListener>,
    _threads: MutexGuard<'static, ()>,
}

/// How long another test process may hold the fixed ports before a test
/// gives up waiting: long enough for its seed, demo and admin tests.
const OTHER_PROCESS_PATIENCE: Duration = Duration::from_secs(120);

/// Listens on the abstract socket `balancer-tests-fixed-ports`, waiting
/// while another process does.
#[cfg(target_os = "linux")]
fn machine_lock() -> Option<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = std::os::unix::net::SocketAddr::from_abstract_name("balancer-tests-fixed-ports")
        .expect("an abstract socket name");
    let mut held = None;
    let got = eventually(OTHER_PROCESS_PATIENCE, || {
        held = UnixListener::bind_addr(&name).ok();
        held.is_some()
    });
    assert!(
        got,
        "another test process held the fixed ports for {OTHER_PROCESS_PATIENCE:?}"
    );
    held
}

/// Elsewhere there are no abstract sockets; the mutex alone serializes
/// this process's tests.
#[cfg(not(target_os = "linux"))]
fn machine_lock() -> Option<UnixListener> {
    None
}

/// Polls `cond` until it holds or `within` has passed; says which.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be
/// reproduced and no byte pattern repeats within the stream.
pub fn pseudo_random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The first fragment of Rust debug formatting or a panic in `text`.
pub fn debug_formatting_in(text: &str) -> Option<&'static str> {
    DEBUG_FORMATTING.iter().copied().find(|f| text.contains(f))
}

/// Panics if `text` shows Rust debug formatting or a panic.
pub fn assert_no_debug_formatting(what: &str, text: &str) {
    if let Some(fragment) = debug_formatting_in(text) {
        panic!("{what} contains Rust debug formatting {fragment:?}:\n{text}");
    }
}

// === Config files ===

/// Which config format a test writes (SPEC 1: decided by the file name).
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// Written as `balancer.toml`.
    Toml,
    /// Written as `setup.cfg`, the seed's INI format.
    Ini,
}

impl Format {
    /// The file name a config of this format is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Toml => "balancer.toml",
            Format::Ini => "setup.cfg",
        }
    }
}

/// A fresh temporary directory holding `config` under `format`'s file
/// name, for running the binary in it: errors then name the file as a
/// user typed it (`balancer.toml`, not a long temporary path).
pub fn config_dir(config: &str, format: Format) -> TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    std::fs::write(dir.path().join(format.file_name()), config)
        .expect("the temporary config can be written");
    dir
}
