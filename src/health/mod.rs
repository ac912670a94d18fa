//! Health checking: active checks of every backend of a listener, and the
//! passive detection fed by real connects ([`passive`]). Both write the
//! backend's [`Health`](crate::backend::Health); the data plane only reads
//! it.
//!
//! # Active checks
//!
//! The runtime starts one task per listener that has a `health_check`
//! ([`run`]), owned by its task tracker and stopped by its cancellation
//! token. That task starts one check loop per backend and, every interval,
//! starts loops for backends added since (admin API); a loop ends by itself
//! when its backend is gone from the listener or the listener's config no
//! longer has a health check. So checks of many backends run concurrently,
//! each on its own schedule, and a slow or hanging backend delays only its
//! own checks (each is bounded by `timeout`). The data plane never waits
//! for a check.
//!
//! Schedule: a loop's first check comes after a random part of one
//! interval, and each next one starts `interval` after the previous one
//! started, jittered by up to 10% either way ([`jittered`]), so the checks
//! of many listeners and backends spread out instead of firing in
//! lockstep. A backend in use by several listeners is checked once per
//! listener, each with that listener's settings: simple, and each
//! listener's view of it is its own.
//!
//! Checks connect from the listener's `source_address` when it has one,
//! as its client connections do: backends that only answer the balancer's
//! address (as the demo's do) must answer its checks too.
//!
//! Every change of state is logged once, by whoever caused it
//! ([`log_transition`]): `backend 127.0.0.1:8081 of listener web is down:
//! 3 failed checks: connection refused`.

pub mod http;
pub mod passive;
pub mod tcp;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendState, Transition};
use crate::config::{CheckKind, HealthCheck, Listener, ModeSettings};
use crate::net::connect::ConnectError;
use crate::net::proxy_protocol::Header;
use crate::state::ListenerSlot;

/// Why one check failed; its `Display` is the reason in the log line.
#[derive(Debug)]
pub enum ProbeError {
    /// The check did not finish within its timeout.
    Timeout(Duration),
    /// The connect, write or read failed.
    Io(io::Error),
    /// An http check got another status than expected.
    Status {
        /// The status answered.
        got: u16,
        /// The status expected.
        expected: u16,
    },
    /// An http check got something that is not an HTTP/1 answer.
    Malformed(&'static str),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Timeout(t) => {
                write!(f, "timed out after {}", crate::net::format_duration(*t))
            }
            ProbeError::Io(e) => f.write_str(&crate::net::io_reason(e)),
            ProbeError::Status { got, expected } => {
                write!(f, "status {got}, expected {expected}")
            }
            ProbeError::Malformed(what) => write!(f, "malformed answer: {what}"),
        }
    }
}

impl From<ConnectError> for ProbeError {
    fn from(err: ConnectError) -> Self {
        match err {
            ConnectError::Timeout(t) => ProbeError::Timeout(t),
            ConnectError::Io(e) | ConnectError::Local(e) => ProbeError::Io(e),
        }
    }
}

/// Logs a change of a backend's state once, with its reason: a warning
/// when it stops taking connections, info when it takes them again.
pub fn log_transition(listener: &str, backend: &Backend, change: &Transition) {
    let address = backend.address.as_str();
    let state = change.to.name();
    if change.to == BackendState::Up {
        tracing::info!(
            listener,
            backend = address,
            state,
            "backend {address} of listener {listener} {change}"
        );
    } else {
        tracing::warn!(
            listener,
            backend = address,
            state,
            "backend {address} of listener {listener} {change}"
        );
    }
}

/// `interval` jittered by up to 10% either way.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.9..=1.1))
}

/// A random part of one `interval`: when a new loop runs its first check.
fn first_delay(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.0..=1.0))
}

/// Runs the active checks of the listener in `slot` until `cancel` is
/// cancelled or its config has no health check; then stops every check
/// loop and returns once they have ended.
pub async fn run(slot: Arc<ListenerSlot>, cancel: CancellationToken) {
    let mut loops: JoinSet<String> = JoinSet::new();
    let mut checked: HashSet<String> = HashSet::new();
    loop {
        let state = slot.snapshot.load_full();
        let Some(interval) = state.config.health_check.as_ref().map(|c| c.interval) else {
            break;
        };
        for backend in &state.backends {
            if checked.insert(backend.address.clone()) {
                let address = backend.address.clone();
                loops.spawn(check_loop(Arc::clone(&slot), address, cancel.clone()));
            }
        }
        drop(state);
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(ended) = loops.join_next() => {
                if let Ok(address) = ended {
                    checked.remove(&address);
                }
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
    cancel_loops(&mut loops).await;
}

/// Stops the check loops and waits for them: they end at their next await.
async fn cancel_loops(loops: &mut JoinSet<String>) {
    loops.shutdown().await;
}

/// Checks the backend named `address` of the listener in `slot`, forever,
/// until it is gone, the listener has no health check, or `cancel` fires.
/// Returns the address, so [`run`] can start a new loop if it comes back.
async fn check_loop(slot: Arc<ListenerSlot>, address: String, cancel: CancellationToken) -> String {
    let Some(interval) = slot
        .snapshot
        .load()
        .config
        .health_check
        .as_ref()
        .map(|c| c.interval)
    else {
        return address;
    };
    let mut next = Instant::now() + first_delay(interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return address,
            () = tokio::time::sleep_until(next) => {}
        }
        let started = Instant::now();
        let state = slot.snapshot.load_full();
        let (Some(check), Some(backend)) = (&state.config.health_check, state.backend(&address))
        else {
            return address;
        };
        let result = tokio::select! {
            () = cancel.cancelled() => return address,
            result = probe(check, backend, &state.config) => result,
        };
        let reason = result.err().map(|e| e.to_string());
        let outcome = reason.as_deref().map_or(Ok(()), Err);
        if let Some(change) = backend.health.record_check(outcome, Instant::now()) {
            log_transition(&state.config.name, backend, &change);
        }
        next = started + jittered(check.interval);
    }
}

/// One check of `backend` as `check` says, from the listener's
/// `source_address`. A backend that gets PROXY protocol headers from the
/// listener gets one on its checks too (`LOCAL` in v2, `UNKNOWN` in v1:
/// the check is the balancer's own connection, no client's), so backends
/// that require the header do not fail them.
async fn probe(
    check: &HealthCheck,
    backend: &Backend,
    listener: &Listener,
) -> Result<(), ProbeError> {
    let source = listener.source_address;
    let preamble = match &listener.mode {
        ModeSettings::Tcp(settings) => settings
            .proxy_protocol
            .map(|version| version.encode(&Header::Local))
            .unwrap_or_default(),
        ModeSettings::Http(_) => Vec::new(),
    };
    match check.kind {
        CheckKind::Tcp => tcp::probe(backend.resolved, source, check.timeout, &preamble).await,
        CheckKind::Http => {
            let request = http::HttpCheck {
                host: &backend.address,
                path: &check.path,
                expect_status: check.expect_status,
            };
            http::probe(backend.resolved, source, check.timeout, &preamble, request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::{first_delay, jittered, run};
    use crate::backend::BackendState;
    use crate::backend::health::DownCause;
    use crate::state::ListenerSlot;
    use crate::testing::{self, DEADLINE, eventually};

    /// A listener slot over `backends` with this health check table body.
    fn slot(backends: &[SocketAddr], check: &str) -> Arc<ListenerSlot> {
        testing::listener("web")
            .backends(backends)
            .set("slow_start", "0s")
            .table(&format!("[listeners.health_check]\n{check}"))
            .slot()
    }

    fn state_of(slot: &ListenerSlot, index: usize) -> BackendState {
        slot.snapshot.load().backends[index].state()
    }

    /// Answers every connection with `status` until dropped.
    async fn http_backend(status: u16) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (addr, server)
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_first_checks_within_one_interval() {
        let interval = Duration::from_secs(2);
        for _ in 0..1000 {
            let j = jittered(interval);
            assert!(j >= Duration::from_millis(1800) && j <= Duration::from_millis(2200));
            assert!(first_delay(interval) <= interval);
        }
    }

    #[tokio::test]
    async fn a_stopped_backend_goes_down_after_fall_checks_and_up_after_rise() {
        let steady = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let flaky = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let flaky_addr = flaky.local_addr().unwrap();
        let slot = slot(
            &[steady.local_addr().unwrap(), flaky_addr],
            "interval = \"50ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n",
        );
        let cancel = CancellationToken::new();
        let checker = tokio::spawn(run(Arc::clone(&slot), cancel.clone()));

        drop(flaky);
        eventually("backend 1 is down", || async {
            state_of(&slot, 1) == BackendState::Down
        })
        .await;
        let backend = Arc::clone(&slot.snapshot.load().backends[1]);
        assert_eq!(backend.health.down_cause(), Some(DownCause::Checks));
        let snapshot = backend.health.snapshot();
        assert_eq!(snapshot.last_error.as_deref(), Some("connection refused"));
        assert_eq!(
            snapshot.last_change.map(|(_, why)| why).as_deref(),
            Some("2 failed checks: connection refused")
        );
        assert_eq!(state_of(&slot, 0), BackendState::Up);

        let _restarted = TcpListener::bind(flaky_addr).await.unwrap();
        eventually("backend 1 is up again", || async {
            state_of(&slot, 1) == BackendState::Up
        })
        .await;
        assert_eq!(
            backend
                .health
                .snapshot()
                .last_change
                .map(|(_, why)| why)
                .as_deref(),
            Some("2 passed checks")
        );
        cancel.cancel();
        tokio::time::timeout(DEADLINE, checker)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_http_check_answered_with_the_wrong_status_marks_the_backend_down() {
        let (good, _good) = http_backend(200).await;
        let (bad, _bad) = http_backend(500).await;
        let slot = slot(
            &[good, bad],
            "kind = \"http\"\ninterval = \"50ms\"\npath = \"/health\"\nfall = 2\n",
        );
        let cancel = CancellationToken::new();
        let checker = tokio::spawn(run(Arc::clone(&slot), cancel.clone()));
        eventually("backend 1 is down", || async {
            state_of(&slot, 1) == BackendState::Down
        })
        .await;
        let backend = Arc::clone(&slot.snapshot.load().backends[1]);
        assert_eq!(
            backend.health.snapshot().last_error.as_deref(),
            Some("status 500, expected 200")
        );
        // The good one keeps passing: its passed count grows.
        let good_backend = Arc::clone(&slot.snapshot.load().backends[0]);
        eventually("the good backend passed 3 checks", || async {
            good_backend.health.snapshot().check_successes >= 3
        })
        .await;
        assert_eq!(good_backend.state(), BackendState::Up);
        cancel.cancel();
        tokio::time::timeout(DEADLINE, checker)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn checks_never_bring_back_a_draining_backend() {
        let (addr, _server) = http_backend(200).await;
        let slot = slot(&[addr], "kind = \"http\"\ninterval = \"50ms\"\nrise = 1\n");
        let backend = Arc::clone(&slot.snapshot.load().backends[0]);
        backend.set_state(BackendState::Draining);
        let cancel = CancellationToken::new();
        let checker = tokio::spawn(run(Arc::clone(&slot), cancel.clone()));
        eventually("the backend passed 3 checks", || async {
            backend.health.snapshot().check_successes >= 3
        })
        .await;
        assert_eq!(backend.state(), BackendState::Draining);
        cancel.cancel();
        tokio::time::timeout(DEADLINE, checker)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn cancelling_stops_a_checker_whose_check_hangs() {
        // A backend that accepts and never answers: the check waits for its
        // 60 s timeout, and cancellation must not.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slot = slot(
            &[silent.local_addr().unwrap()],
            "kind = \"http\"\ninterval = \"10ms\"\ntimeout = \"60s\"\n",
        );
        let cancel = CancellationToken::new();
        let checker = tokio::spawn(run(Arc::clone(&slot), cancel.clone()));
        // Wait until the check is under way: its connect was accepted.
        let accepted = tokio::time::timeout(DEADLINE, silent.accept()).await;
        assert!(accepted.is_ok());
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), checker)
            .await
            .expect("the checker stops at once")
            .unwrap();
    }

    #[tokio::test]
    async fn a_listener_without_a_health_check_has_no_checker_to_run() {
        let slot = testing::listener("web").backend("127.0.0.1:9").slot();
        let done = tokio::time::timeout(DEADLINE, run(slot, CancellationToken::new())).await;
        assert!(done.is_ok());
    }
}
