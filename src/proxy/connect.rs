//! Connecting to a backend: the balancer picks, a connect attempt runs with
//! `connect_timeout` (from `source_address` when set), and a failure moves
//! on to the next backend the balancer picks, up to `retries` times. Every
//! attempt's result feeds passive detection.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::{Backend, ConnectingGuard, ConnectionGuard};
use crate::balance::PickContext;
use crate::health::passive;
use crate::net::{self, connect::ConnectError};
use crate::state::Snapshot;

/// Why a client got no backend.
#[derive(Debug)]
pub enum NoBackend {
    /// Every backend tried failed, or none could be picked.
    Unreachable {
        /// How many backends were tried.
        attempts: usize,
        /// The last attempt's backend and failure, if any was tried.
        last: Option<(String, ConnectError)>,
    },
    /// A connect failed on this machine (out of file descriptors, buffers
    /// or ports; the source address cannot be bound): no backend is to
    /// blame, and trying others would fail the same way.
    Local(ConnectError),
}

impl fmt::Display for NoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoBackend::Unreachable { last: None, .. } => f.write_str("no backend is available"),
            NoBackend::Unreachable {
                attempts,
                last: Some((backend, err)),
            } => write!(
                f,
                "{attempts} backend{} tried, the last ({backend}): {err}",
                if *attempts == 1 { "" } else { "s" }
            ),
            NoBackend::Local(err) => write!(f, "cannot connect: {err}"),
        }
    }
}

/// Connects to a backend for `client`, trying up to `retries + 1` distinct
/// backends in the order the balancer gives. On success the returned guard
/// counts the connection against that backend until it is dropped.
///
/// Every attempt is reported to passive detection
/// ([`health::passive`](crate::health::passive)): its latency on success,
/// its failure otherwise (`fall` in a row mark the backend down). When the
/// balancer has no backend left (none is up, or every one that is was
/// tried), the backends marked down by failed connects only are tried as a
/// last resort, within the same budget of attempts.
///
/// A failure that is this machine's (see [`NoBackend::Local`]) is neither
/// held against the backend nor retried elsewhere.
pub async fn connect(
    state: &Snapshot,
    client: IpAddr,
) -> Result<(TcpStream, ConnectionGuard), NoBackend> {
    let mut attempts = Attempts::new(state);
    while let Some(backend) = attempts.next(state, client) {
        match connect_to(state, backend, true).await {
            Ok(stream) => return Ok((stream, ConnectionGuard::new(Arc::clone(backend)))),
            Err(err) if err.is_local() => return Err(NoBackend::Local(err)),
            Err(err) => attempts.failed(backend, err),
        }
    }
    Err(attempts.into_error())
}

/// The backends one client (tcp) or one request (http) has tried, within
/// the listener's budget of `retries + 1` attempts.
#[derive(Debug)]
pub struct Attempts {
    tried: Vec<usize>,
    max: usize,
    last: Option<(String, ConnectError)>,
}

impl Attempts {
    /// No attempt yet, a budget of the listener's `retries + 1`.
    pub fn new(state: &Snapshot) -> Attempts {
        let max = usize::try_from(state.config.retries)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        Attempts {
            tried: Vec::with_capacity(max.min(state.backends.len())),
            max,
            last: None,
        }
    }

    /// The next backend to try: the balancer's pick among the backends not
    /// tried yet, or a backend down by failed connects only as a last
    /// resort; `None` when the budget is spent or no backend is left.
    pub fn next<'s>(&mut self, state: &'s Snapshot, client: IpAddr) -> Option<&'s Arc<Backend>> {
        if self.tried.len() >= self.max {
            return None;
        }
        let ctx = PickContext {
            client,
            tried: &self.tried,
        };
        let picked = state.balancer.pick(&state.backends, &ctx);
        let index = picked.or_else(|| passive::last_resort(&state.backends, &self.tried))?;
        self.tried.push(index);
        state.backends.get(index)
    }

    /// How many backends were tried so far.
    pub fn count(&self) -> usize {
        self.tried.len()
    }

    /// Records that `backend` (the last one [`Attempts::next`] gave) could
    /// not be reached.
    pub fn failed(&mut self, backend: &Backend, err: ConnectError) {
        self.last = Some((backend.address.clone(), err));
    }

    /// Why no backend was reached.
    pub fn into_error(self) -> NoBackend {
        NoBackend::Unreachable {
            attempts: self.tried.len(),
            last: self.last,
        }
    }
}

/// One connect attempt to `backend` with the listener's `connect_timeout`
/// and `source_address`, counted as in flight while it runs and reported
/// to passive detection (unless the failure is this machine's; its latency
/// as an EWMA sample when `sample`) and, for failures, to the log
/// (throttled).
pub async fn connect_to(
    state: &Snapshot,
    backend: &Backend,
    sample: bool,
) -> Result<TcpStream, ConnectError> {
    let config = &state.config;
    let started = Instant::now();
    let result = {
        let _connecting = ConnectingGuard::new(backend);
        net::connect::connect(
            backend.resolved,
            config.source_address,
            config.connect_timeout,
        )
        .await
    };
    let now = Instant::now();
    match &result {
        Ok(_) => {
            let latency = sample.then(|| now - started);
            passive::connect_succeeded(&config.name, backend, latency, now);
        }
        Err(err) if err.is_local() => {}
        Err(err) => {
            passive::connect_failed(&config.name, backend, err, now);
            // Every failure at debug; otherwise a few lines, however
            // many clients a refusing backend fails.
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(listener = %config.name, backend = %backend.address, error = %err, "connect failed");
            } else if let Some(left_out) = backend.failure_log.admit() {
                tracing::info!(listener = %config.name, backend = %backend.address, error = %err, left_out, "connect failed");
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::Ordering;

    use tokio::net::TcpListener;

    use super::{NoBackend, connect};
    use crate::backend::BackendState;
    use crate::backend::health::DownCause;
    use crate::state::Snapshot;
    use crate::testing::{self, eventually};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A round-robin listener over `backends`, with `extra` (tables) after.
    fn listener(backends: &[SocketAddr], extra: &str) -> Snapshot {
        let listener = testing::listener("web")
            .backends(backends)
            .set("retries", 3);
        match extra {
            "" => listener,
            table => listener.table(table),
        }
        .snapshot()
    }

    /// An address nothing listens on (bound, then closed).
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn fall_failed_connects_mark_a_backend_down_and_it_is_no_longer_tried() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed_port().await;
        let state = listener(
            &[dead, live.local_addr().unwrap()],
            "[listeners.passive_check]\nfall = 2\nbackoff = \"1h\"",
        );
        for _ in 0..10 {
            let (_stream, guard) = connect(&state, CLIENT).await.unwrap();
            assert_eq!(guard.backend().resolved, live.local_addr().unwrap());
        }
        let backend = &state.backends[0];
        assert_eq!(backend.state(), BackendState::Down);
        assert_eq!(backend.health.down_cause(), Some(DownCause::Connects));
        // Two failures marked it down; round robin tried it no more after.
        assert_eq!(backend.stats.connect_failures.load(Ordering::Relaxed), 2);
        assert!(
            state.backends[1]
                .latency
                .get_at(tokio::time::Instant::now())
                .is_some()
        );
    }

    #[tokio::test]
    async fn without_passive_detection_a_dead_backend_keeps_being_tried() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed_port().await;
        let state = listener(
            &[dead, live.local_addr().unwrap()],
            "[listeners.passive_check]\nenabled = false",
        );
        for _ in 0..10 {
            connect(&state, CLIENT).await.unwrap();
        }
        assert_eq!(state.backends[0].state(), BackendState::Up);
        let failures = state.backends[0]
            .stats
            .connect_failures
            .load(Ordering::Relaxed);
        assert!(failures >= 5, "{failures}");
    }

    #[tokio::test]
    async fn a_backend_down_by_connects_is_tried_again_after_its_backoff() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let flaky = closed_port().await;
        let state = listener(
            &[flaky, live.local_addr().unwrap()],
            "[listeners.passive_check]\nfall = 1\nbackoff = \"100ms\"",
        );
        connect(&state, CLIENT).await.unwrap();
        let backend = &state.backends[0];
        assert_eq!(backend.state(), BackendState::Down);
        let _back = TcpListener::bind(flaky).await.unwrap();
        // Once the back-off is over it is a candidate again, and the first
        // connect that reaches it marks it up.
        eventually("the backend is up after its back-off", || async {
            connect(&state, CLIENT).await.unwrap();
            backend.state() == BackendState::Up
        })
        .await;
        let change = backend.health.snapshot().last_change.map(|(_, why)| why);
        assert_eq!(change.as_deref(), Some("a connect succeeded"));
    }

    #[tokio::test]
    async fn with_every_backend_down_by_connects_the_last_resort_still_connects() {
        let a = closed_port().await;
        let b = closed_port().await;
        let state = listener(
            &[a, b],
            "[listeners.passive_check]\nfall = 1\nbackoff = \"1h\"",
        );
        assert!(connect(&state, CLIENT).await.is_err());
        assert!(
            state
                .backends
                .iter()
                .all(|b| b.state() == BackendState::Down)
        );
        // b comes back; nothing is up, but b is a last resort.
        let _b = TcpListener::bind(b).await.unwrap();
        let (_stream, guard) = connect(&state, CLIENT).await.unwrap();
        assert_eq!(guard.backend().resolved, b);
        assert_eq!(state.backends[1].state(), BackendState::Up);
    }

    #[tokio::test]
    async fn backends_down_by_failed_checks_are_never_a_last_resort() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = listener(&[live.local_addr().unwrap()], "");
        let now = tokio::time::Instant::now();
        for _ in 0..3 {
            state.backends[0].health.record_check(Err("refused"), now);
        }
        let err = connect(&state, CLIENT).await.unwrap_err();
        assert!(matches!(err, NoBackend::Unreachable { attempts: 0, .. }));
        assert_eq!(err.to_string(), "no backend is available");
    }
}
