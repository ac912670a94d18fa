//! The balancing algorithms, behind one [`Balancer`] trait, with no I/O.
//!
//! A balancer is built from a listener's backend set when a config snapshot
//! is made ([`build`], the only `match` on [`Algorithm`]), and then shared
//! by every worker thread. Each new client connection calls
//! [`Balancer::pick`]; a retry after a failed connect calls it again with
//! the backends already tried, so the algorithm decides the fallback order
//! too.
//!
//! Algorithms see health only through [`PickContext::eligible`] (a backend
//! is up, or on a trial after its back-off) and, where weight applies,
//! through [`Backend::effective_weight`] (the configured weight, less
//! during a slow-start ramp); load-aware ones also read the backend's
//! counters and latency estimate. They never change a backend's state.
//!
//! | algorithm | file | uses weight | uses load |
//! |---|---|---|---|
//! | `round_robin` | `round_robin.rs` | no | no |
//! | `random` | `random.rs` | no | no |
//! | `weighted_round_robin` | `weighted.rs` | yes, with slow start | no |
//! | `least_connections` | `least_conn.rs` | yes, with slow start | outstanding connections |
//! | `power_of_two` | `p2c.rs` | yes, with slow start | outstanding connections, peak EWMA latency |
//! | `source_hash` | `maglev.rs` | yes, in the table (no slow start: that would move clients) | no |

mod least_conn;
pub mod maglev;
pub mod p2c;
mod random;
mod round_robin;
mod weighted;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::{Algorithm, Listener};

pub use least_conn::LeastConnections;
pub use maglev::{Maglev, TableSummary};
pub use p2c::PowerOfTwo;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

/// What one pick may look at.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The client's address (for hashing algorithms).
    pub client: IpAddr,
    /// Indexes into the backend slice already tried for this client; never
    /// picked again.
    pub tried: &'a [usize],
}

impl PickContext<'_> {
    /// Whether backend `index` may be picked: it takes new connections and
    /// was not tried yet for this client.
    pub fn eligible(&self, backends: &[Arc<Backend>], index: usize) -> bool {
        !self.tried.contains(&index) && backends.get(index).is_some_and(|b| b.is_available())
    }
}

/// A balancing algorithm over one fixed backend set.
///
/// Implementations hold only their own bookkeeping (counters, current
/// weights); the backend set is passed in on every call and is the same
/// slice, in the same order, as the one given to [`build`].
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The index of the backend for the next connection, or `None` when no
    /// backend is eligible (see [`PickContext::eligible`]).
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize>;

    /// The size and digest of the algorithm's lookup table, for algorithms
    /// that have one (`source_hash`), so operators can compare instances.
    fn table(&self) -> Option<TableSummary> {
        None
    }
}

/// The lookup table a listener's balancer would have (`source_hash`), for
/// `balancer check`: built from the config alone, as at start.
pub fn table_of(listener: &Listener) -> Option<TableSummary> {
    if listener.algorithm != Algorithm::SourceHash {
        return None;
    }
    let members: Vec<maglev::Member<'_>> = listener
        .backends
        .iter()
        .map(|b| maglev::Member {
            address: &b.address,
            weight: b.weight,
        })
        .collect();
    Some(Maglev::from_members(&members).summary())
}

/// Builds the balancer of `algorithm` for `backends`.
pub fn build(algorithm: Algorithm, backends: &[Arc<Backend>]) -> Box<dyn Balancer> {
    // Only least_connections watches loads; a balancer of another
    // algorithm built over these backends stops an older one's watching.
    for backend in backends {
        backend.watch_load(None);
    }
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new()),
        Algorithm::Random => Box::new(Random::new()),
        Algorithm::WeightedRoundRobin => Box::new(SmoothWeighted::new(backends)),
        Algorithm::LeastConnections => Box::new(LeastConnections::new(backends)),
        Algorithm::PowerOfTwo => Box::new(PowerOfTwo::new()),
        Algorithm::SourceHash => Box::new(Maglev::new(backends)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Test helpers shared by every algorithm's tests, and the contract of
    //! [`Balancer`] checked against every algorithm [`build`] can make.

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use super::{Balancer, PickContext, build};
    use crate::backend::{Backend, BackendState};
    use crate::config::{Algorithm, BackendSpec};

    /// Every algorithm, so contract tests cannot forget a new one.
    const ALGORITHMS: [Algorithm; 6] = [
        Algorithm::RoundRobin,
        Algorithm::Random,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::PowerOfTwo,
        Algorithm::SourceHash,
    ];

    /// Backends `127.0.0.1:9001`, `:9002`, ... with these weights, all up.
    pub(crate) fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .zip(9001u16..)
            .map(|(&weight, port)| {
                let resolved = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                Arc::new(Backend::new(&BackendSpec {
                    address: resolved.to_string(),
                    resolved,
                    weight,
                }))
            })
            .collect()
    }

    /// `n` backends of weight 1.
    pub(crate) fn equal_backends(n: usize) -> Vec<Arc<Backend>> {
        backends(&vec![1; n])
    }

    /// A context for a first attempt: nothing tried yet.
    pub(crate) fn fresh() -> PickContext<'static> {
        PickContext {
            client: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            tried: &[],
        }
    }

    /// A context for a retry after `tried` failed.
    pub(crate) fn retry(tried: &[usize]) -> PickContext<'_> {
        PickContext { tried, ..fresh() }
    }

    /// `count` picks on a fresh context, as letters `a`, `b`, ... so
    /// expected sequences read as in SPEC 4; `-` stands for `None`.
    pub(crate) fn letters(
        balancer: &dyn Balancer,
        backends: &[Arc<Backend>],
        count: usize,
    ) -> String {
        (0..count)
            .map(|_| match balancer.pick(backends, &fresh()) {
                Some(i) => char::from(b'a' + u8::try_from(i).expect("tests use < 26 backends")),
                None => '-',
            })
            .collect()
    }

    /// How many of `count` picks on a fresh context went to each backend.
    pub(crate) fn tally(
        balancer: &dyn Balancer,
        backends: &[Arc<Backend>],
        count: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; backends.len()];
        for _ in 0..count {
            let i = balancer
                .pick(backends, &fresh())
                .expect("a backend is eligible");
            counts[i] += 1;
        }
        counts
    }

    /// Per-backend totals of `threads` threads each making `count` picks
    /// at once on the same balancer.
    pub(crate) fn tally_from_threads(
        balancer: &dyn Balancer,
        backends: &[Arc<Backend>],
        threads: usize,
        count: usize,
    ) -> Vec<usize> {
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| tally(balancer, backends, count)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a picking thread panicked"))
                .collect()
        });
        let mut totals = vec![0; backends.len()];
        for counts in per_thread {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
        totals
    }

    #[test]
    fn every_algorithm_returns_none_for_an_empty_backend_set() {
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &[]);
            assert_eq!(balancer.pick(&[], &fresh()), None, "{algorithm}");
        }
    }

    #[test]
    fn every_algorithm_returns_none_when_every_backend_is_down_or_draining() {
        let set = backends(&[3, 1, 2]);
        set[0].set_state(BackendState::Down);
        set[1].set_state(BackendState::Draining);
        set[2].set_state(BackendState::Down);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            for _ in 0..10 {
                assert_eq!(balancer.pick(&set, &fresh()), None, "{algorithm}");
            }
        }
    }

    #[test]
    fn every_algorithm_returns_none_when_every_backend_was_tried() {
        let set = backends(&[3, 1, 2]);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            assert_eq!(balancer.pick(&set, &retry(&[2, 0, 1])), None, "{algorithm}");
        }
    }

    #[test]
    fn every_algorithm_finds_the_only_eligible_backend_every_time() {
        let set = backends(&[3, 1, 2, 1]);
        set[0].set_state(BackendState::Down);
        set[3].set_state(BackendState::Draining);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            for _ in 0..50 {
                assert_eq!(balancer.pick(&set, &retry(&[1])), Some(2), "{algorithm}");
            }
        }
    }

    #[test]
    fn every_algorithm_walks_through_every_backend_on_retries() {
        // A retry loop (proxy/connect.rs) passes what it tried so far; it
        // must reach every backend once and then get `None`.
        let set = backends(&[3, 1, 2, 1, 5]);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            let mut tried = Vec::new();
            while let Some(i) = balancer.pick(&set, &retry(&tried)) {
                assert!(!tried.contains(&i), "{algorithm} picked {i} twice");
                tried.push(i);
            }
            tried.sort_unstable();
            assert_eq!(tried, [0, 1, 2, 3, 4], "{algorithm}");
        }
    }

    /// A context for a first attempt of client `10.0.x.y` number `i`.
    pub(crate) fn client(i: u16) -> PickContext<'static> {
        let [x, y] = i.to_be_bytes();
        PickContext {
            client: IpAddr::V4(Ipv4Addr::new(10, 0, x, y)),
            tried: &[],
        }
    }

    #[test]
    fn every_algorithm_uses_a_backend_again_once_it_is_back_up() {
        // Many clients, so hashing algorithms reach both backends too.
        let set = equal_backends(2);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            set[1].set_state(BackendState::Down);
            assert!((0..200).all(|i| balancer.pick(&set, &client(i)) == Some(0)));
            set[1].set_state(BackendState::Up);
            assert!(
                (0..200).any(|i| balancer.pick(&set, &client(i)) == Some(1)),
                "{algorithm}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_algorithm_tries_a_backend_down_by_failed_connects_after_its_backoff() {
        use std::time::Duration;
        use tokio::time::{Instant, advance};
        let set = equal_backends(2);
        for algorithm in ALGORITHMS {
            let balancer = build(algorithm, &set);
            // Three failures mark it down with the default 10 s back-off.
            for _ in 0..3 {
                set[1]
                    .health
                    .record_connect_failure("refused", Instant::now());
            }
            assert_eq!(set[1].state(), BackendState::Down);
            assert!((0..200).all(|i| balancer.pick(&set, &client(i)) == Some(0)));
            advance(Duration::from_secs(10)).await;
            assert!(
                (0..200).any(|i| balancer.pick(&set, &client(i)) == Some(1)),
                "{algorithm}"
            );
            set[1].health.record_connect_success(Instant::now());
            assert_eq!(set[1].state(), BackendState::Up);
        }
    }
}
