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
//! order (the next after the last pick), so equal backends share evenly
//! instead of the first always winning, and backends that cannot be picked
//! (down, draining, tried) take no turn and give none away.
//!
//! O(log n): the loads are kept in a tree of minimums ([`LoadTree`]) that
//! the connection guards update as connections start and end, so a pick
//! reads the smallest ratio at its root and walks down to the tie whose
//! turn it is, instead of looking at every backend. A retry (a client with
//! backends already tried) uses a pass over every backend, the plain rule.
//! So weights shape the shares once connections are held open; backends
//! that are all idle (short connections) simply take turns. (Minimising
//! `(load + 1) / weight` instead would send every short connection to the
//! heaviest backend and none to the others.) Ratios are compared by
//! cross-multiplying in `u128`: exact, no floats.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use super::{Balancer, PickContext};
use crate::backend::health::FULL_PERMILLE;
use crate::backend::{Backend, BackendState, LoadWatch, LoadWatcher};

/// Picks the eligible backend with the fewest outstanding connections per
/// unit of weight.
#[derive(Debug)]
pub struct LeastConnections {
    /// Loads per weight of the backends that are plainly up, kept current
    /// by the connection guards (see [`LoadTree`]).
    tree: Arc<LoadTree>,
    /// The index picked last: ties go to the next one after it.
    last: AtomicUsize,
}

impl LeastConnections {
    /// A new least-connections balancer over `backends`, which it asks to
    /// report their load changes to it.
    pub fn new(backends: &[Arc<Backend>]) -> LeastConnections {
        let tree = Arc::new(LoadTree::new(backends));
        let watcher: Arc<dyn LoadWatcher> = Arc::clone(&tree) as Arc<dyn LoadWatcher>;
        for (index, backend) in backends.iter().enumerate() {
            backend.watch_load(Some(LoadWatch {
                watcher: Arc::downgrade(&watcher),
                index,
            }));
        }
        LeastConnections {
            tree,
            last: AtomicUsize::new(usize::MAX),
        }
    }

    /// The pick by a pass over every backend: the plain rule, for a retry
    /// (a client with backends already tried, which the tree cannot leave
    /// out) and should the tree ever fail to settle.
    fn pick_by_scan(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
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
        let (low, _) = best?;
        // Second pass: of the tied, the first after the last pick.
        let tied = |index: &usize| candidate(backends, ctx, *index).is_some_and(|c| same(c, low));
        let picked = self.after_last(backends.len(), tied)?;
        self.last.store(picked, Ordering::Relaxed);
        Some(picked)
    }

    /// The first index after the last pick (wrapping) that `wanted` takes.
    fn after_last(&self, n: usize, wanted: impl Fn(&usize) -> bool) -> Option<usize> {
        let start = self.last.load(Ordering::Relaxed).wrapping_add(1) % n.max(1);
        (start..n).chain(0..start).find(|i| wanted(i))
    }

    /// How far `index` comes after the last pick, cyclically: of tied
    /// backends, the nearest goes first.
    fn distance(&self, n: usize, index: usize) -> usize {
        let start = self.last.load(Ordering::Relaxed).wrapping_add(1) % n.max(1);
        (index + n - start) % n.max(1)
    }
}

/// `(load, weight)` of one backend in thousandths of a weight unit: the
/// ratio compared, kept as a fraction.
fn ratio(backend: &Backend) -> (u128, u128) {
    let load = u128::from(backend.stats.outstanding());
    (load, u128::from(backend.effective_weight().max(1)))
}

impl Balancer for LeastConnections {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        if !ctx.tried.is_empty() {
            return self.pick_by_scan(backends, ctx);
        }
        // Each round settles one thing the tree had wrong (a backend no
        // longer plainly up, or back, or a load not yet reported) and
        // looks again; a handful is plenty.
        for _ in 0..8 {
            if let Some(picked) = self.pick_by_tree(backends) {
                return picked;
            }
        }
        self.pick_by_scan(backends, ctx)
    }
}

impl LeastConnections {
    /// One round of a pick through the tree: `Some(pick)` when it settled,
    /// `None` when it corrected the tree and must look again.
    fn pick_by_tree(&self, backends: &[Arc<Backend>]) -> Option<Option<usize>> {
        let tree = &self.tree;
        let n = backends.len();
        // Backends that are not plainly up (down on a trial, ramping) are
        // compared one by one; those plainly up again go back in the tree.
        let mut side: Option<(usize, (u128, u128))> = None;
        for &index in tree.side.load().iter() {
            let backend = backends.get(index)?;
            if !backend.is_available() {
                continue;
            }
            if is_plain(backend) {
                tree.reinsert(index, backend);
                return None;
            }
            let candidate = ratio(backend);
            let better = |(best, low): (usize, (u128, u128))| {
                below(candidate, low)
                    || (same(candidate, low) && self.distance(n, index) < self.distance(n, best))
            };
            if side.is_none_or(better) {
                side = Some((index, candidate));
            }
        }
        let from_tree = match tree.lowest() {
            None => None,
            Some(low) => {
                let start = self.last.load(Ordering::Relaxed).wrapping_add(1) % n.max(1);
                let index = tree.first_at_or_below(start, low)?;
                let backend = backends.get(index)?;
                if !is_plain(backend) {
                    tree.evict(index);
                    return None;
                }
                if tree.key_of(backend, index) != tree.leaf(index) {
                    tree.load_changed(index, backend);
                    return None;
                }
                Some((index, ratio(backend)))
            }
        };
        let picked = match (from_tree, side) {
            (None, None) => return Some(None),
            (Some((index, _)), None) | (None, Some((index, _))) => index,
            (Some((tree_index, tree_ratio)), Some((side_index, side_ratio))) => {
                if below(side_ratio, tree_ratio)
                    || (same(side_ratio, tree_ratio)
                        && self.distance(n, side_index) < self.distance(n, tree_index))
                {
                    side_index
                } else {
                    tree_index
                }
            }
        };
        self.last.store(picked, Ordering::Relaxed);
        Some(Some(picked))
    }
}

/// Whether `backend` is plainly up: up, at its full weight. Only those are
/// in the tree, whose keys are load per configured weight.
fn is_plain(backend: &Backend) -> bool {
    backend.state() == BackendState::Up
        && backend.health.weight_permille(tokio::time::Instant::now) >= FULL_PERMILLE
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

// === impl LoadTree ===

/// The loads per weight of a backend set, in a tree of minimums: a leaf
/// per backend holds its key (outstanding connections per configured
/// weight, in fixed point exact enough to order any two ratios), each node
/// the smallest key below it. The connection guards report every load
/// change ([`LoadWatcher`]), which rewrites one leaf and the nodes above
/// it: O(log n) atomic stores, no lock. A pick reads the root and walks
/// down to the first backend with that key after the last pick: O(log n).
///
/// Only backends that are plainly up are kept in it; one found down,
/// draining or ramping when a pick reaches it is moved to `side`, a short
/// list compared one by one (their weight changes over time, or they are
/// available only on a trial), and moved back once plainly up. Concurrent
/// updates can leave a node briefly stale; a pick checks the backend it
/// lands on against its real load and corrects the tree when they differ.
#[derive(Debug)]
struct LoadTree {
    /// Leaves: a power of two at least the number of backends.
    width: usize,
    /// Node `1` is the root, node `i`'s children are `2i` and `2i + 1`,
    /// backend `b`'s leaf is `width + b`. `u64::MAX` is "none".
    nodes: Box<[AtomicU64]>,
    /// Each backend's configured weight.
    weights: Box<[u32]>,
    /// Which backends are out of the tree (in `side`).
    out: Box<[AtomicBool]>,
    /// The backends out of the tree.
    side: ArcSwap<Vec<usize>>,
}

/// The fixed point of keys: distinct ratios of loads and weights up to
/// 10,000 differ by at least 1/10^8, more than 1/2^30.
const KEY_SHIFT: u32 = 30;

impl LoadTree {
    fn new(backends: &[Arc<Backend>]) -> LoadTree {
        let width = backends.len().next_power_of_two().max(1);
        let tree = LoadTree {
            width,
            nodes: (0..2 * width).map(|_| AtomicU64::new(u64::MAX)).collect(),
            weights: backends.iter().map(|b| b.weight().max(1)).collect(),
            out: (0..backends.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
            side: ArcSwap::from_pointee(Vec::new()),
        };
        for (index, backend) in backends.iter().enumerate() {
            tree.load_changed(index, backend);
        }
        tree
    }

    /// The key of `backend` (at `index`) from its load now.
    fn key_of(&self, backend: &Backend, index: usize) -> u64 {
        let weight = u64::from(self.weights.get(index).copied().unwrap_or(1));
        let load = backend.stats.outstanding();
        if load >= 1 << (63 - KEY_SHIFT) {
            return u64::MAX - 1;
        }
        (load << KEY_SHIFT) / weight
    }

    /// The key in backend `index`'s leaf.
    fn leaf(&self, index: usize) -> u64 {
        self.nodes
            .get(self.width + index)
            .map_or(u64::MAX, |n| n.load(Ordering::Relaxed))
    }

    /// The smallest key in the tree, if any backend is in it.
    fn lowest(&self) -> Option<u64> {
        let root = self.nodes.get(1)?.load(Ordering::Relaxed);
        (root != u64::MAX).then_some(root)
    }

    /// Sets backend `index`'s leaf to `key` and brings the nodes above it
    /// up to date.
    fn set(&self, index: usize, key: u64) {
        let mut node = self.width + index;
        let Some(leaf) = self.nodes.get(node) else {
            return;
        };
        leaf.store(key, Ordering::Relaxed);
        while node > 1 {
            node /= 2;
            let left = self
                .nodes
                .get(2 * node)
                .map_or(u64::MAX, |n| n.load(Ordering::Relaxed));
            let right = self
                .nodes
                .get(2 * node + 1)
                .map_or(u64::MAX, |n| n.load(Ordering::Relaxed));
            if let Some(parent) = self.nodes.get(node) {
                parent.store(left.min(right), Ordering::Relaxed);
            }
        }
    }

    /// The first backend at or after `start` (wrapping) whose key is at
    /// most `bound`.
    fn first_at_or_below(&self, start: usize, bound: u64) -> Option<usize> {
        self.first_in(1, 0, self.width, start, bound)
            .or_else(|| self.first_in(1, 0, self.width, 0, bound))
    }

    /// The first leaf index at or after `start` in node `node` (covering
    /// `[low, low + span)`) whose key is at most `bound`.
    fn first_in(
        &self,
        node: usize,
        low: usize,
        span: usize,
        start: usize,
        bound: u64,
    ) -> Option<usize> {
        if low + span <= start {
            return None;
        }
        if self.nodes.get(node)?.load(Ordering::Relaxed) > bound {
            return None;
        }
        if span == 1 {
            return Some(low);
        }
        let half = span / 2;
        self.first_in(2 * node, low, half, start, bound)
            .or_else(|| self.first_in(2 * node + 1, low + half, half, start, bound))
    }

    /// Takes backend `index` out of the tree, into `side`.
    fn evict(&self, index: usize) {
        let Some(out) = self.out.get(index) else {
            return;
        };
        if !out.swap(true, Ordering::Relaxed) {
            self.side.rcu(|side| {
                let mut side = Vec::clone(side);
                side.push(index);
                side
            });
        }
        self.set(index, u64::MAX);
    }

    /// Puts backend `index` back in the tree, out of `side`.
    fn reinsert(&self, index: usize, backend: &Backend) {
        let Some(out) = self.out.get(index) else {
            return;
        };
        if out.swap(false, Ordering::Relaxed) {
            self.side.rcu(|side| {
                side.iter()
                    .copied()
                    .filter(|&i| i != index)
                    .collect::<Vec<_>>()
            });
        }
        self.set(index, self.key_of(backend, index));
    }
}

impl LoadWatcher for LoadTree {
    fn load_changed(&self, index: usize, backend: &Backend) {
        if self
            .out
            .get(index)
            .is_some_and(|out| out.load(Ordering::Relaxed))
        {
            return;
        }
        self.set(index, self.key_of(backend, index));
    }
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
        assert_eq!(letters(&LeastConnections::new(&set), &set, 6), "abcabc");
    }

    #[test]
    fn new_connections_go_to_the_backend_with_fewest_open() {
        let set = equal_backends(3);
        let _held = (open(&set, 0, 5), open(&set, 1, 2), open(&set, 2, 4));
        let balancer = LeastConnections::new(&set);
        for _ in 0..10 {
            assert_eq!(balancer.pick(&set, &fresh()), Some(1));
        }
    }

    #[test]
    fn connections_held_open_steer_new_ones_to_the_others_until_they_catch_up() {
        let set = equal_backends(3);
        let _held = open(&set, 0, 4);
        let balancer = LeastConnections::new(&set);
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
        let picks = letters(&LeastConnections::new(&set), &set, 400);
        assert_eq!(picks.matches('a').count(), 200, "{picks}");
        assert_eq!(picks.matches('b').count(), 200, "{picks}");
    }

    #[test]
    fn connects_in_flight_count_as_load() {
        let set = equal_backends(2);
        set[0].stats.connecting.fetch_add(3, Ordering::Relaxed);
        assert_eq!(letters(&LeastConnections::new(&set), &set, 3), "bbb");
    }

    #[test]
    fn idle_backends_take_turns_whatever_their_weights() {
        let set = backends(&[3, 1]);
        assert_eq!(letters(&LeastConnections::new(&set), &set, 4), "abab");
    }

    #[test]
    fn weights_3_and_1_share_connections_held_open_3_to_1() {
        let set = backends(&[3, 1]);
        let (picks, _guards) = connect(&LeastConnections::new(&set), &set, 8);
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
        let (picks, _guards) = connect(&LeastConnections::new(&set), &set, 30);
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
        let balancer = LeastConnections::new(&set);
        for _ in 0..10 {
            assert_eq!(balancer.pick(&set, &retry(&[2])), Some(3));
        }
    }

    #[test]
    fn closed_connections_free_their_backend_again() {
        let set = equal_backends(2);
        let held = open(&set, 0, 3);
        let balancer = LeastConnections::new(&set);
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
            let balancer = LeastConnections::new(&set);
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

    /// The rule written as plainly as possible, with its own turn: the
    /// eligible backend with the smallest load per effective weight; of
    /// those tied, the first after the last pick.
    struct Reference {
        last: Option<usize>,
    }

    impl Reference {
        fn pick(&mut self, set: &[Arc<Backend>]) -> Option<usize> {
            let ratio = |b: &Backend| {
                (
                    u128::from(b.stats.outstanding()),
                    u128::from(b.effective_weight().max(1)),
                )
            };
            let eligible: Vec<usize> = (0..set.len()).filter(|&i| set[i].is_available()).collect();
            let low = eligible
                .iter()
                .map(|&i| ratio(&set[i]))
                .min_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)))?;
            let tied: Vec<usize> = eligible
                .into_iter()
                .filter(|&i| {
                    let r = ratio(&set[i]);
                    r.0 * low.1 == low.0 * r.1
                })
                .collect();
            let start = self.last.map_or(0, |l| l + 1);
            let picked = tied
                .iter()
                .copied()
                .find(|&i| i >= start)
                .or(tied.first().copied())?;
            self.last = Some(picked);
            Some(picked)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_tree_picks_what_the_plain_rule_picks_through_loads_and_states(
            weights in proptest::collection::vec(1u32..=8, 1..=2_000),
            steps in proptest::collection::vec((0u8..10, any::<u32>()), 1..300),
        ) {
            let set = backends(&weights);
            // A ramp so long that a backend's effective weight does not move
            // while the test runs: ramps are compared, not raced.
            for backend in &set {
                backend.configure(
                    crate::backend::HealthPolicy {
                        slow_start: std::time::Duration::from_secs(3_600_000),
                        ..crate::backend::HealthPolicy::default()
                    },
                    std::time::Duration::from_secs(10),
                );
            }
            let balancer = LeastConnections::new(&set);
            let mut reference = Reference { last: None };
            let mut held: Vec<ConnectionGuard> = Vec::new();
            for (op, value) in steps {
                let index = value as usize % set.len();
                match op {
                    // Mostly picks that open a connection, as the proxy does.
                    0..=4 => {
                        let picked = balancer.pick(&set, &fresh());
                        prop_assert_eq!(picked, reference.pick(&set));
                        if let Some(i) = picked {
                            held.push(ConnectionGuard::new(Arc::clone(&set[i])));
                        }
                    }
                    5 | 6 => {
                        if !held.is_empty() {
                            held.swap_remove(value as usize % held.len());
                        }
                    }
                    7 => { set[index].set_state(BackendState::Down); }
                    8 => { set[index].set_state(BackendState::Draining); }
                    // Back up: ramping, so it is compared by its share.
                    _ => { set[index].set_state(BackendState::Up); }
                }
            }
        }
    }
}
