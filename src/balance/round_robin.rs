//! Round robin: backends in config order, exact across all worker threads,
//! because the position is one shared atomic counter.
//!
//! Every call to `fetch_add` hands out a distinct turn, and turn `t` belongs
//! to backend `t % n`. A turn that lands on a backend that cannot be picked
//! (down, draining, or already tried by this client) is used up and the
//! next turn is taken. Skipping *turns* rather than walking to the next
//! backend keeps the shares equal: with `b` down in `a b c`, `a` and `c`
//! each get half, where "take the next one up" would give `c` two turns in
//! three (`b`'s share would all go to its neighbour).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Hands out backends in config order.
///
/// Exact: over any run of picks, each eligible backend gets the turns that
/// fell on it, whichever threads made them, so `N` picks over `k` live
/// backends give exactly `N/k` each when `k` divides `N`. (The one
/// exception is the race that `RoundRobin::scan` covers, which needs an
/// ineligible backend and several threads picking at once; it answers with
/// an eligible backend rather than `None`, at the price of one turn's
/// exactness.)
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The next turn. `Relaxed` is enough: the counter orders nothing but
    /// itself, and `fetch_add` never hands two callers the same turn. It
    /// wraps after 2^64 turns, which costs one uneven round at most.
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first backend.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }

    /// Takes the next turn: the index of the backend it falls on. `n` is
    /// the number of backends, never 0.
    fn turn(&self, n: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }

    /// The first eligible backend from the next turn's position on, without
    /// taking a turn.
    ///
    /// Needed because `n` turns of one caller cover every backend only when
    /// no other thread takes turns in between: with `a` down in `a b`, one
    /// caller may draw turns 0 and 2 (both `a`) while another draws turn 1.
    /// Without this walk the first caller would answer `None` although `b`
    /// is up. It runs only in that race (or when nothing is eligible), so it
    /// does not disturb the shares. `backends` is never empty here.
    fn scan(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let n = backends.len();
        let start = self.next.load(Ordering::Relaxed);
        (0..n)
            .map(|offset| start.wrapping_add(offset) % n)
            .find(|&i| ctx.eligible(backends, i))
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        (0..n)
            .map(|_| self.turn(n))
            .find(|&i| ctx.eligible(backends, i))
            .or_else(|| self.scan(backends, ctx))
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use proptest::prelude::*;

    use super::RoundRobin;
    use crate::backend::BackendState;
    use crate::balance::Balancer;
    use crate::balance::tests::{equal_backends, fresh, letters, retry, tally, tally_from_threads};

    #[test]
    fn picks_go_through_the_backends_in_config_order() {
        let set = equal_backends(4);
        assert_eq!(letters(&RoundRobin::new(), &set, 10), "abcdabcdab");
    }

    #[test]
    fn a_single_backend_gets_every_pick() {
        let set = equal_backends(1);
        assert_eq!(letters(&RoundRobin::new(), &set, 5), "aaaaa");
    }

    #[test]
    fn weights_are_ignored() {
        let set = crate::balance::tests::backends(&[5, 1, 3]);
        assert_eq!(letters(&RoundRobin::new(), &set, 6), "abcabc");
    }

    #[test]
    fn twelve_hundred_picks_over_three_backends_give_exactly_four_hundred_each() {
        let set = equal_backends(3);
        assert_eq!(tally(&RoundRobin::new(), &set, 1200), [400, 400, 400]);
    }

    #[test]
    fn picks_from_many_threads_are_exactly_even() {
        const THREADS: usize = 8;
        const PICKS_PER_THREAD: usize = 5 * 10_000;
        let set = equal_backends(5);
        let balancer = RoundRobin::new();
        let totals = tally_from_threads(&balancer, &set, THREADS, PICKS_PER_THREAD);
        let each = THREADS * PICKS_PER_THREAD / set.len();
        assert_eq!(totals, vec![each; set.len()]);
    }

    #[test]
    fn a_live_backend_is_always_found_while_other_threads_take_turns() {
        // With `a` down, a caller's turns can all land on `a` when other
        // threads take the turns on `b` in between; it must still get `b`.
        let set = equal_backends(2);
        set[0].set_state(BackendState::Down);
        let balancer = RoundRobin::new();
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20_000 {
                        assert_eq!(balancer.pick(&set, &fresh()), Some(1));
                    }
                });
            }
        });
    }

    #[test]
    fn down_and_draining_backends_are_skipped() {
        let set = equal_backends(5);
        set[1].set_state(BackendState::Down);
        set[3].set_state(BackendState::Draining);
        assert_eq!(letters(&RoundRobin::new(), &set, 7), "aceacea");
    }

    #[test]
    fn a_down_backends_share_is_split_evenly_not_given_to_its_neighbour() {
        let set = equal_backends(3);
        set[1].set_state(BackendState::Down);
        assert_eq!(tally(&RoundRobin::new(), &set, 1000), [500, 0, 500]);
    }

    #[test]
    fn tried_backends_are_skipped() {
        let set = equal_backends(3);
        let balancer = RoundRobin::new();
        // Turn 0 falls on the tried `a`, so the retry gets `b`.
        assert_eq!(balancer.pick(&set, &retry(&[0])), Some(1));
        // Turn 2 falls on `c`; turns 3 (`a`) and 4 (`b`) were tried.
        assert_eq!(balancer.pick(&set, &retry(&[1])), Some(2));
        assert_eq!(balancer.pick(&set, &retry(&[0, 1])), Some(2));
        // Only `b` is left; `a` is down.
        set[0].set_state(BackendState::Down);
        assert_eq!(balancer.pick(&set, &retry(&[2])), Some(1));
    }

    #[test]
    fn nothing_eligible_gives_none_and_the_order_resumes_after() {
        let set = equal_backends(2);
        let balancer = RoundRobin::new();
        set[0].set_state(BackendState::Down);
        set[1].set_state(BackendState::Down);
        assert_eq!(balancer.pick(&set, &fresh()), None);
        set[0].set_state(BackendState::Up);
        set[1].set_state(BackendState::Up);
        assert_eq!(letters(&balancer, &set, 4), "abab");
    }

    proptest! {
        #[test]
        fn any_multiple_of_k_picks_over_k_backends_are_exactly_even(
            k in 1usize..=16,
            rounds in 1usize..=50,
            warm_up in 0usize..64,
        ) {
            let set = equal_backends(k);
            let balancer = RoundRobin::new();
            tally(&balancer, &set, warm_up);
            prop_assert_eq!(tally(&balancer, &set, k * rounds), vec![rounds; k]);
        }

        #[test]
        fn live_backends_share_evenly_whichever_are_down(
            down in proptest::collection::vec(any::<bool>(), 1..=16),
            rounds in 1usize..=20,
        ) {
            let set = equal_backends(down.len());
            for (backend, &is_down) in set.iter().zip(&down) {
                if is_down {
                    backend.set_state(BackendState::Down);
                }
            }
            let live = down.iter().filter(|&&d| !d).count();
            prop_assume!(live > 0);
            let balancer = RoundRobin::new();
            let counts = tally(&balancer, &set, live * rounds);
            for (count, &is_down) in counts.iter().zip(&down) {
                prop_assert_eq!(*count, if is_down { 0 } else { rounds });
            }
        }
    }
}
