//! Random: a uniformly random eligible backend, with no shared state at all
//! (each worker thread draws from its own thread-local generator).
//!
//! The pick draws one index over all `n` backends and keeps it when that
//! backend is eligible, which is the whole cost when every backend is up:
//! one draw, one state load, no allocation. Otherwise it counts the `m`
//! eligible backends and draws again among those. Each eligible backend is
//! then picked with probability `1/n + (n-m)/n * 1/m = 1/m`: exactly
//! uniform over the eligible ones. The obvious shortcut, walking from a
//! drawn ineligible index to the next eligible one, is what this avoids:
//! it would hand a down backend's whole share to its neighbour.

use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Picks uniformly at random among eligible backends.
#[derive(Debug, Default)]
pub struct Random;

impl Random {
    /// A new random balancer.
    pub fn new() -> Random {
        Random
    }

    /// A uniformly random eligible backend, counting them first; the path
    /// taken only when the first draw hit an ineligible backend.
    fn pick_among_eligible(backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let eligible = || (0..backends.len()).filter(|&i| ctx.eligible(backends, i));
        let count = eligible().count();
        if count == 0 {
            return None;
        }
        let nth = rand::random_range(0..count);
        // A backend may go down between the count and the walk; any one
        // still eligible is then a right answer, and `None` only if none is.
        eligible().nth(nth).or_else(|| eligible().next_back())
    }
}

impl Balancer for Random {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        let first = rand::random_range(0..backends.len());
        if ctx.eligible(backends, first) {
            Some(first)
        } else {
            Random::pick_among_eligible(backends, ctx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Random;
    use crate::backend::BackendState;
    use crate::balance::Balancer;
    use crate::balance::tests::{backends, equal_backends, retry, tally};

    /// How far a count may stray from its expectation before a test fails.
    ///
    /// Every test below expects 10,000 picks per backend out of 60,000 or
    /// 70,000, a standard deviation under 100. A band of 1,000 is over ten
    /// standard deviations, so a correct balancer fails it less than once
    /// in 10^20 runs, while a bias that doubles a backend's share (or any
    /// bias over 10%) fails every time.
    const BAND: usize = 1_000;

    fn assert_near(counts: &[usize], expected: &[usize]) {
        for (i, (&count, &want)) in counts.iter().zip(expected).enumerate() {
            assert!(
                count.abs_diff(want) <= BAND,
                "backend {i} got {count}, expected {want} +- {BAND}: {counts:?}"
            );
        }
    }

    #[test]
    fn seventy_thousand_picks_over_seven_backends_are_spread_evenly() {
        let set = equal_backends(7);
        assert_near(&tally(&Random::new(), &set, 70_000), &[10_000; 7]);
    }

    #[test]
    fn weights_are_ignored() {
        let set = backends(&[50, 1, 1, 1, 1, 1, 1]);
        assert_near(&tally(&Random::new(), &set, 70_000), &[10_000; 7]);
    }

    #[test]
    fn a_down_backends_share_is_spread_over_all_others_not_its_neighbour() {
        let set = equal_backends(7);
        set[3].set_state(BackendState::Down);
        let counts = tally(&Random::new(), &set, 60_000);
        assert_eq!(counts[3], 0);
        assert_near(
            &counts,
            &[10_000, 10_000, 10_000, 0, 10_000, 10_000, 10_000],
        );
    }

    #[test]
    fn with_most_backends_down_the_live_ones_share_evenly() {
        let set = equal_backends(7);
        for i in [0, 1, 2, 4, 6] {
            set[i].set_state(BackendState::Draining);
        }
        let counts = tally(&Random::new(), &set, 20_000);
        assert_near(&counts, &[0, 0, 0, 10_000, 0, 10_000, 0]);
        assert_eq!(counts[3] + counts[5], 20_000);
    }

    #[test]
    fn retries_spread_evenly_over_the_backends_not_tried() {
        let set = equal_backends(7);
        let balancer = Random::new();
        let mut counts = [0; 7];
        for _ in 0..60_000 {
            let i = balancer
                .pick(&set, &retry(&[0]))
                .expect("six backends are eligible");
            counts[i] += 1;
        }
        assert_near(
            &counts,
            &[0, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000],
        );
        assert_eq!(counts[0], 0);
    }
}
