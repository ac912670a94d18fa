//! Power of two choices: draw two distinct eligible backends at random and
//! pick the one with the lower cost, as Finagle's `PeakEwma` balancer and
//! linkerd's `p2c` do.
//!
//! The cost of a backend is `(outstanding + 1) * latency / weight`:
//!
//! - `outstanding` is its open connections plus connects in flight, so a
//!   backend holding long connections, or slow to accept, looks loaded;
//! - `latency` is the peak EWMA of its connect latency at the moment of
//!   the pick ([`PeakEwma`](crate::backend::PeakEwma)), so a backend that
//!   turns slow is avoided at once, and looks better again as its estimate
//!   decays without new samples (it is retried, not abandoned);
//! - `weight` is [`Backend::effective_weight`], so weights and slow start
//!   apply here too.
//!
//! A backend never measured has no latency yet. It costs nothing while it
//! has nothing outstanding (so it gets a connection and thereby a sample),
//! and the most of all while its first connects are in flight (Finagle's
//! penalty), so a new backend that turns out slow to connect is not handed
//! every new client before its first sample arrives.
//!
//! Why two choices: comparing two random backends instead of scanning all
//! of them is O(1) and, unlike "always the best one", cannot send a whole
//! burst to the same backend before its load shows; the least loaded of
//! two random choices already makes the maximum load exponentially better
//! than one random choice (Mitzenmacher, 2001).

use std::sync::Arc;

use tokio::time::Instant;

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Picks the cheaper of two random eligible backends.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl PowerOfTwo {
    /// A new power-of-two-choices balancer.
    pub fn new() -> PowerOfTwo {
        PowerOfTwo
    }

    /// Two distinct random eligible backends, or the only one, or none.
    ///
    /// The first attempt draws two distinct indexes over all backends,
    /// which is the whole cost when they are eligible. Otherwise it counts
    /// the eligible ones and draws two distinct ones among those, so a
    /// down backend's share is spread over all others, not its neighbour.
    fn candidates(backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Candidates {
        let n = backends.len();
        if n >= 2 {
            let (a, b) = distinct_pair(n);
            if ctx.eligible(backends, a) && ctx.eligible(backends, b) {
                return Candidates::Two(a, b);
            }
        }
        let eligible = || (0..n).filter(|&i| ctx.eligible(backends, i));
        match eligible().count() {
            0 => Candidates::None,
            1 => eligible().next().map_or(Candidates::None, Candidates::One),
            m => {
                let (x, y) = distinct_pair(m);
                // A backend may change state between the count and these
                // walks; a missing one leaves the one that is still there.
                match (eligible().nth(x), eligible().nth(y)) {
                    (Some(a), Some(b)) => Candidates::Two(a, b),
                    (Some(a), None) | (None, Some(a)) => Candidates::One(a),
                    (None, None) => eligible().next().map_or(Candidates::None, Candidates::One),
                }
            }
        }
    }
}

/// What [`PowerOfTwo::candidates`] found.
enum Candidates {
    None,
    One(usize),
    Two(usize, usize),
}

/// Two distinct uniformly random indexes below `n` (which is at least 2):
/// the second is drawn among the `n - 1` others.
fn distinct_pair(n: usize) -> (usize, usize) {
    let a = rand::random_range(0..n);
    let b = rand::random_range(0..n - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// The cost of sending one more connection to `backend` at `now` (see the
/// module doc); lower is better.
pub fn cost(backend: &Backend, now: Instant) -> f64 {
    let outstanding = backend.stats.outstanding();
    // Both exact as f64 below 2^53, far beyond any real load or weight.
    let load = outstanding.saturating_add(1) as f64;
    let weight = backend.effective_weight().max(1) as f64;
    match backend.latency.seconds_at(now) {
        Some(latency) => load * latency / weight,
        None if outstanding == 0 => 0.0,
        None => f64::INFINITY,
    }
}

impl Balancer for PowerOfTwo {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        match PowerOfTwo::candidates(backends, ctx) {
            Candidates::None => None,
            Candidates::One(only) => Some(only),
            Candidates::Two(a, b) => {
                let now = Instant::now();
                let cost_of = |i: usize| backends.get(i).map_or(f64::INFINITY, |b| cost(b, now));
                let (cost_a, cost_b) = (cost_of(a), cost_of(b));
                let chosen = if cost_b < cost_a { b } else { a };
                tracing::trace!(a, cost_a, b, cost_b, chosen, "power of two choices");
                Some(chosen)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{PowerOfTwo, cost, distinct_pair};
    use crate::backend::{Backend, BackendState, ConnectionGuard};
    use crate::balance::Balancer;
    use crate::balance::tests::{backends, equal_backends, retry, tally};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Gives every backend one latency sample, in milliseconds.
    fn measured(latencies_ms: &[u64]) -> Vec<Arc<Backend>> {
        let set = equal_backends(latencies_ms.len());
        let now = Instant::now();
        for (backend, &latency) in set.iter().zip(latencies_ms) {
            backend.latency.observe(ms(latency), now);
        }
        set
    }

    #[test]
    fn the_two_draws_are_always_distinct_and_cover_every_pair() {
        let mut seen = [[false; 4]; 4];
        for _ in 0..10_000 {
            let (a, b) = distinct_pair(4);
            assert_ne!(a, b);
            seen[a][b] = true;
        }
        for (a, row) in seen.iter().enumerate() {
            for (b, &hit) in row.iter().enumerate() {
                assert_eq!(hit, a != b, "pair {a} {b}");
            }
        }
    }

    #[test]
    fn a_slow_backend_loses_every_comparison_with_a_fast_one() {
        // The two draws are distinct, so the slow one is always compared
        // with a fast one, and loses.
        let set = measured(&[1, 1, 50]);
        let counts = tally(&PowerOfTwo::new(), &set, 3_000);
        assert_eq!(counts[2], 0, "{counts:?}");
    }

    #[test]
    fn the_cost_grows_with_outstanding_connections() {
        let set = measured(&[10, 10]);
        let now = Instant::now();
        let _held: Vec<_> = (0..3)
            .map(|_| ConnectionGuard::new(Arc::clone(&set[0])))
            .collect();
        assert!(cost(&set[0], now) > 3.9 * cost(&set[1], now));
        assert_eq!(tally(&PowerOfTwo::new(), &set, 100), [0, 100]);
    }

    #[test]
    fn a_busy_fast_backend_loses_to_an_idle_slower_one() {
        // 10 open at 1 ms costs 11 ms; 0 open at 5 ms costs 5 ms.
        let set = measured(&[1, 5]);
        let _held: Vec<_> = (0..10)
            .map(|_| ConnectionGuard::new(Arc::clone(&set[0])))
            .collect();
        assert_eq!(tally(&PowerOfTwo::new(), &set, 100), [0, 100]);
    }

    #[test]
    fn an_unmeasured_backend_is_tried_when_idle_and_avoided_while_connecting() {
        let set = measured(&[5, 5]);
        let fresh = Arc::new(Backend::new(&crate::config::BackendSpec {
            address: "127.0.0.1:9999".into(),
            resolved: "127.0.0.1:9999".parse().unwrap(),
            weight: 1,
        }));
        let now = Instant::now();
        assert_eq!(cost(&fresh, now), 0.0);
        fresh.stats.connecting.fetch_add(1, Ordering::Relaxed);
        assert_eq!(cost(&fresh, now), f64::INFINITY);
        assert!(cost(&set[0], now).is_finite());
    }

    #[test]
    fn a_slow_estimate_decays_so_the_backend_is_tried_again() {
        let set = equal_backends(1);
        let now = Instant::now();
        set[0].latency.observe(ms(100), now);
        let early = cost(&set[0], now);
        let later = cost(&set[0], now + Duration::from_secs(30));
        assert!(later < early / 10.0, "{early} {later}");
    }

    #[test]
    fn heavier_backends_cost_less_per_connection() {
        let set = backends(&[4, 1]);
        let now = Instant::now();
        for backend in &set {
            backend.latency.observe(ms(8), now);
        }
        assert!((cost(&set[1], now) / cost(&set[0], now) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn equal_backends_share_evenly() {
        let set = measured(&[2, 2, 2, 2]);
        let counts = tally(&PowerOfTwo::new(), &set, 40_000);
        // Ties go to the first drawn, which is uniform: 10,000 each, with a
        // band of over ten standard deviations.
        for &count in &counts {
            assert!(count.abs_diff(10_000) < 1_000, "{counts:?}");
        }
    }

    #[test]
    fn down_draining_and_tried_backends_are_never_picked() {
        let set = measured(&[1, 1, 9, 9, 9]);
        set[0].set_state(BackendState::Down);
        set[1].set_state(BackendState::Draining);
        let balancer = PowerOfTwo::new();
        let mut counts = [0usize; 5];
        for _ in 0..3_000 {
            counts[balancer.pick(&set, &retry(&[2])).unwrap()] += 1;
        }
        assert_eq!(counts[..3], [0, 0, 0]);
        assert!(counts[3] > 1_000 && counts[4] > 1_000, "{counts:?}");
    }
}
