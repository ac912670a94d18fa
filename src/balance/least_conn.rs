//! Least connections: the eligible backend with the fewest outstanding
//! connections relative to its weight; ties broken round robin.
//!
//! A backend's load is its open connections plus its connects in flight
//! ([`Stats::outstanding`](crate::backend::Stats::outstanding)), so a burst
//! of clients arriving together is spread before any connect finishes.
//! The pick minimises `load / weight`, as nginx's `least_conn` does. The
//! weight is [`Backend::effective_weight`], so a backend in its slow-start
//! ramp takes a growing share instead of every new connection: it has the
//! fewest open ones when it comes back, which is exactly when least
//! connections would flood it.
//!
//! Ties: the backends that share the smallest ratio take turns, in config
//! order (one shared atomic counts the turns, as round robin does), so
//! equal backends share evenly instead of the first always winning, and
//! backends that cannot be picked (down, draining, tried) take no turn
//! and give none away. The pick scans the backends twice: once for the
//! smallest ratio and how many share it, once for the tie whose turn it is.
//! So weights shape the shares once connections are held open; backends
//! that are all idle (short connections) simply take turns. (Minimising
//! `(load + 1) / weight` instead would send every short connection to the
//! heaviest backend and none to the others.) Ratios are compared by
//! cross-multiplying in `u128`: exact, no floats.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Picks the eligible backend with the fewest outstanding connections per
/// unit of weight.
#[derive(Debug, Default)]
pub struct LeastConnections {
    /// Where the next scan starts; `Relaxed`, it only rotates tie-breaks.
    next: AtomicUsize,
}

impl LeastConnections {
    /// A new least-connections balancer.
    pub fn new() -> LeastConnections {
        LeastConnections::default()
    }
}

/// `(load, weight)` of one backend: the ratio compared, kept as a
/// fraction.
fn ratio(backend: &Backend) -> (u128, u128) {
    let load = u128::from(backend.stats.outstanding());
    (load, u128::from(backend.effective_weight().max(1)))
}

impl Balancer for LeastConnections {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        // First pass: the smallest ratio among the eligible, and how many
        // backends have it.
        let mut best: Option<((u128, u128), usize)> = None;
        for index in 0..backends.len() {
            let Some(candidate) = candidate(backends, ctx, index) else {
                continue;
            };
            best = match best {
                Some((low, ties)) if same(candidate, low) => Some((low, ties + 1)),
                Some((low, _)) if !below(candidate, low) => best,
                _ => Some((candidate, 1)),
            };
        }
        let (low, ties) = best?;
        // Second pass: the tied backends take turns, in config order.
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % ties;
        (0..backends.len())
            .filter(|&index| candidate(backends, ctx, index).is_some_and(|c| same(c, low)))
            .nth(turn)
    }
}

/// The ratio of backend `index`, when it is eligible.
fn candidate(
    backends: &[Arc<Backend>],
    ctx: &PickContext<'_>,
    index: usize,
) -> Option<(u128, u128)> {
    if !ctx.eligible(backends, index) {
        return None;
    }
    backends.get(index).map(|b| ratio(b))
}

/// `a < b` as fractions `load / weight`, exactly (cross-multiplied).
fn below((load, weight): (u128, u128), (low_load, low_weight): (u128, u128)) -> bool {
    load * low_weight < low_load * weight
}

/// `a == b` as fractions.
fn same((load, weight): (u128, u128), (low_load, low_weight): (u128, u128)) -> bool {
    load * low_weight == low_load * weight
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use proptest::prelude::*;

    use super::LeastConnections;
    use crate::backend::{Backend, BackendState, ConnectionGuard};
    use crate::balance::Balancer;
    use crate::balance::tests::{backends, equal_backends, fresh, letters, retry};

    /// Opens `count` connections on backend `index` (held by the guards).
    fn open(set: &[Arc<Backend>], index: usize, count: usize) -> Vec<ConnectionGuard> {
        (0..count)
            .map(|_| ConnectionGuard::new(Arc::clone(&set[index])))
            .collect()
    }

    /// Picks `count` times, opening a connection on each pick (as the
    /// proxy does), and returns the picks as letters and the guards.
    fn connect(
        balancer: &LeastConnections,
        set: &[Arc<Backend>],
        count: usize,
    ) -> (String, Vec<ConnectionGuard>) {
        let mut guards = Vec::new();
        let mut picks = String::new();
        for _ in 0..count {
            let i = balancer.pick(set, &fresh()).expect("a backend is eligible");
            picks.push(char::from(b'a' + i as u8));
            guards.push(ConnectionGuard::new(Arc::clone(&set[i])));
        }
        (picks, guards)
    }

    #[test]
    fn idle_equal_backends_take_turns_instead_of_the_first_always_winning() {
        let set = equal_backends(3);
        assert_eq!(letters(&LeastConnections::new(), &set, 6), "abcabc");
    }

    #[test]
    fn new_connections_go_to_the_backend_with_fewest_open() {
        let set = equal_backends(3);
        let _held = (open(&set, 0, 5), open(&set, 1, 2), open(&set, 2, 4));
        let balancer = LeastConnections::new();
        for _ in 0..10 {
            assert_eq!(balancer.pick(&set, &fresh()), Some(1));
        }
    }

    #[test]
    fn connections_held_open_steer_new_ones_to_the_others_until_they_catch_up() {
        let set = equal_backends(3);
        let _held = open(&set, 0, 4);
        let balancer = LeastConnections::new();
        let (picks, _guards) = connect(&balancer, &set, 8);
        // b and c share the first 8 evenly; a gets none until they have 4.
        assert_eq!(picks.matches('a').count(), 0, "{picks}");
        let (more, _more) = connect(&balancer, &set, 3);
        assert_eq!(
            more.chars().filter(|&c| c == 'a').count(),
            1,
            "each gets one of the next three: {more}"
        );
    }

    #[test]
    fn ties_take_turns_among_the_available_backends_only() {
        // Regression (issue 16): with c and d draining, a got 3 of every 4.
        let set = equal_backends(4);
        set[2].set_state(BackendState::Draining);
        set[3].set_state(BackendState::Down);
        let picks = letters(&LeastConnections::new(), &set, 400);
        assert_eq!(picks.matches('a').count(), 200, "{picks}");
        assert_eq!(picks.matches('b').count(), 200, "{picks}");
    }

    #[test]
    fn connects_in_flight_count_as_load() {
        let set = equal_backends(2);
        set[0].stats.connecting.fetch_add(3, Ordering::Relaxed);
        assert_eq!(letters(&LeastConnections::new(), &set, 3), "bbb");
    }

    #[test]
    fn idle_backends_take_turns_whatever_their_weights() {
        let set = backends(&[3, 1]);
        assert_eq!(letters(&LeastConnections::new(), &set, 4), "abab");
    }

    #[test]
    fn weights_3_and_1_share_connections_held_open_3_to_1() {
        let set = backends(&[3, 1]);
        let (picks, _guards) = connect(&LeastConnections::new(), &set, 8);
        assert_eq!(picks.matches('a').count(), 6, "{picks}");
        assert_eq!(picks.matches('b').count(), 2, "{picks}");
    }

    #[test]
    fn a_backend_in_slow_start_is_not_flooded_although_it_has_no_connections() {
        // b comes back with no connections while a holds 30: without slow
        // start b would take the next 30 connections in a row.
        let set = equal_backends(2);
        let _held = open(&set, 0, 30);
        set[1].set_state(BackendState::Down);
        set[1].set_state(BackendState::Up);
        let (picks, _guards) = connect(&LeastConnections::new(), &set, 30);
        // At 10% of its weight, b takes connections until b/0.1 reaches
        // a/1 (3 against a's 30), then shares at about 1 in 11.
        let b = picks.matches('b').count();
        assert!((3..=6).contains(&b), "{picks}");
    }

    #[test]
    fn down_draining_and_tried_backends_are_never_picked() {
        let set = equal_backends(4);
        set[0].set_state(BackendState::Down);
        set[1].set_state(BackendState::Draining);
        let balancer = LeastConnections::new();
        for _ in 0..10 {
            assert_eq!(balancer.pick(&set, &retry(&[2])), Some(3));
        }
    }

    #[test]
    fn closed_connections_free_their_backend_again() {
        let set = equal_backends(2);
        let held = open(&set, 0, 3);
        let balancer = LeastConnections::new();
        assert_eq!(balancer.pick(&set, &fresh()), Some(1));
        drop(held);
        assert_eq!(letters(&balancer, &set, 4).len(), 4);
        assert!(letters(&balancer, &set, 4).contains('a'));
    }

    proptest! {
        #[test]
        fn the_pick_has_the_smallest_ratio_of_load_to_weight(
            weights_and_loads in proptest::collection::vec((1u32..=20, 0usize..30), 1..=10),
            rounds in 1usize..5,
        ) {
            let weights: Vec<u32> = weights_and_loads.iter().map(|&(w, _)| w).collect();
            let set = backends(&weights);
            let _held: Vec<_> = weights_and_loads
                .iter()
                .enumerate()
                .map(|(i, &(_, load))| open(&set, i, load))
                .collect();
            let balancer = LeastConnections::new();
            for _ in 0..rounds {
                let i = balancer.pick(&set, &fresh()).unwrap();
                let (weight, load) = weights_and_loads[i];
                for &(w, l) in &weights_and_loads {
                    // load/weight <= l/w
                    prop_assert!(load * w as usize <= l * weight as usize);
                }
            }
        }
    }
}
