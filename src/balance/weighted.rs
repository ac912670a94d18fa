//! Smooth weighted round robin, exactly as nginx's
//! (`ngx_http_upstream_get_peer` in `ngx_http_upstream_round_robin.c`).
//!
//! Each backend `i` has a weight `w_i` and a current weight `c_i`, all 0 at
//! build. A pick adds every eligible backend's weight to its current
//! weight, takes the backend with the largest current weight (ties go to
//! the one listed first), and subtracts from the winner the total `W` of
//! the eligible weights. Weights 3, 1, 2, 1 give `a c b a d c a` and then
//! the same again, never the burst `a a a b c c d` of repeating each
//! backend `weight` times (SPEC 4).
//!
//! # Guarantees, with every backend eligible
//!
//! The sum of the current weights is 0 after every pick (`W` is added,
//! `W` is subtracted). After `k` picks from build, backend `i` was picked
//! `p_i(k)` times and `c_i = k*w_i - p_i(k)*W`, so how far it is from its
//! exact share `k*w_i/W` is `-c_i/W`. Bounds on `c_i` are bounds on that:
//!
//! - Never ahead: before the subtraction the current weights sum to `W`,
//!   so the winner's is at least `W/n` and, after it, at least
//!   `-(n-1)*W/n`; the others only grew. So `c_i >= -(n-1)*W/n > -W`, and
//!   `p_i(k) <= ceil(k*w_i/W)` for every prefix: no backend ever runs a
//!   whole pick ahead of its share. (That is what rules out `a a a`.)
//! - Exact over every period: after `W` picks, `p_i(W) <= w_i` for every
//!   backend by the bound above, and the `p_i(W)` sum to `W`, the sum of
//!   the `w_i`; so each is exactly `w_i` and every `c_i` is 0 again. The
//!   sequence repeats with period `W`, and *any* `W` consecutive picks give
//!   each backend exactly its weight.
//! - Never far behind: the others sum to `-c_i`, so
//!   `c_i <= (n-1)^2*W/n`. A run of `k` consecutive picks starting
//!   anywhere gives backend `i` its share `k*w_i/W` plus the difference of
//!   two `c_i` over `W`, which is within `n-1` of it. A tighter "at most
//!   one over the ceiling" for every run is false: weights
//!   `2 49 1 49 1 49 1 2 2 49 3 2 1 50 49 3` have a run two over.
//!
//! The tests check each of these as a property over any weights.
//!
//! # Skipping
//!
//! A backend that is not eligible for a pick (down, draining, or already
//! tried by this client) is left out of that pick the nginx way: its
//! current weight is neither raised nor lowered, and `W` counts only the
//! eligible weights. A backend down from the start therefore leaves the
//! others exactly the sequence they would have on their own.
//!
//! # Many backends
//!
//! nginx's pass is O(n) per pick. Up to [`EXACT_NGINX_MAX`] backends that
//! is a few dozen additions; beyond, [`Deadlines`] schedules turns by
//! earliest due time in a heap, O(log n) per pick, with the same
//! guarantees with every backend eligible (each backend exactly its weight
//! in any `W` consecutive picks; never a whole pick behind its share) but
//! its own order and its own way of skipping (a backend down or draining
//! loses its turn). Measured per pick with 10,000 backends: see
//! docs/benchmarks.md.
//!
//! # Why a mutex
//!
//! A pick reads and writes every current weight, and smoothness depends on
//! picks being applied one after another, so the vector is one unit of
//! state. It sits in a std `Mutex` held only for that O(n) loop of
//! additions and compares, with no I/O, allocation or `.await` inside.
//! Measured on a 2-core development machine, a whole pick (lock included)
//! takes about 20 ns with 4 backends, 40 ns with 16 and 150 ns with 64;
//! two threads doing nothing but pick still make over 14 million picks a
//! second between them with 16 backends. A pick happens once per new
//! connection (or request, in http mode), whose connect alone costs tens of
//! microseconds, so the lock is free almost every time it is taken. An
//! atomic per backend would not be enough (two racing picks would both see
//! the same largest weight), and a precomputed table of `W` turns would be
//! lock-free only while every backend is eligible and weights never change,
//! which slow start and health checks break.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Up to this many backends a pick is nginx's exact O(n) pass; beyond it,
/// the O(log n) earliest-deadline scheduler ([`Deadlines`]).
pub const EXACT_NGINX_MAX: usize = 64;

/// Smooth weighted round robin over one backend set: nginx's exact
/// algorithm for up to [`EXACT_NGINX_MAX`] backends, an earliest-deadline
/// scheduler with the same guarantees beyond.
#[derive(Debug)]
pub enum SmoothWeighted {
    /// nginx's pass over every backend.
    Nginx(Nginx),
    /// Earliest deadline first, in a heap.
    Deadlines(Deadlines),
}

impl SmoothWeighted {
    /// A new balancer for `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> SmoothWeighted {
        if backends.len() <= EXACT_NGINX_MAX {
            SmoothWeighted::Nginx(Nginx::new(backends))
        } else {
            SmoothWeighted::Deadlines(Deadlines::new(backends))
        }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        match self {
            SmoothWeighted::Nginx(nginx) => nginx.pick(backends, ctx),
            SmoothWeighted::Deadlines(deadlines) => deadlines.pick(backends, ctx),
        }
    }
}

// === impl Nginx ===

/// nginx's smooth weighted round robin, exactly (module doc).
#[derive(Debug)]
pub struct Nginx {
    /// nginx's `current_weight` of each backend, by index, in thousandths
    /// of a weight unit (as [`Backend::effective_weight`]). A std `Mutex`
    /// (not an async one, nothing awaits while it is held), locked only by
    /// [`Nginx::pick`] for one pass over the backends.
    current: Mutex<Vec<i64>>,
}

impl Nginx {
    /// A new balancer for `backends`; every current weight starts at 0, so
    /// the first pick goes to the heaviest backend.
    pub fn new(backends: &[Arc<Backend>]) -> Nginx {
        Nginx {
            current: Mutex::new(vec![0; backends.len()]),
        }
    }

    /// The weight `backend` competes with in this pick: its configured
    /// weight, in thousandths, less during a slow-start ramp (nginx uses
    /// its `effective_weight` the same way). Scaling every weight by 1000
    /// scales every current weight too, so the sequence is the same as
    /// with the plain weights.
    fn effective_weight(backend: &Backend) -> i64 {
        i64::try_from(backend.effective_weight()).unwrap_or(i64::MAX)
    }

    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        // A panic cannot happen while the lock is held (no indexing, and the
        // arithmetic saturates), and the weights stay usable if one did.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        // `zip` stops at the shorter of the two: the slice is the one given
        // at build, but a mismatch must not panic.
        for (index, (backend, weight)) in backends.iter().zip(current.iter_mut()).enumerate() {
            if !ctx.eligible(backends, index) {
                continue;
            }
            let effective = Nginx::effective_weight(backend);
            // With every backend eligible |current| < n*W (module doc);
            // skipping freezes some and shifts that range, still far inside
            // i64 for u32 weights. Saturating keeps any drift from wrapping.
            *weight = weight.saturating_add(effective);
            total = total.saturating_add(effective);
            if best.is_none_or(|(_, largest)| *weight > largest) {
                best = Some((index, *weight));
            }
        }
        let (winner, _) = best?;
        if let Some(weight) = current.get_mut(winner) {
            *weight = weight.saturating_sub(total);
        }
        Some(winner)
    }
}

// === impl Deadlines ===

/// Earliest deadline first over the backends' configured weights: backend
/// `i`'s `k`-th turn is due at `k / w_i` (in periods of `W` picks), and a
/// pick takes the turn due first, ties to the backend listed first. Every
/// backend's `w_i` turns of a period are due within it and a pick takes
/// one turn, so with every backend eligible each period of `W` picks gives
/// each backend exactly its weight, the picks repeat with period `W` (so
/// any `W` consecutive picks do too), and no backend falls a whole pick
/// behind its share. Due times are kept as `(turns, weight)` and compared
/// by cross-multiplying in `u128`: exact, no drift.
///
/// Skipping, in O(log n) rather than nginx's pass over every backend:
/// - a backend that is down or draining loses its turn when it comes due
///   (its next turn is scheduled), so it does not pile up at the front;
/// - a backend already tried by this client keeps its turn for the next
///   pick;
/// - a backend in its slow-start ramp takes a turn that comes due only
///   with the share of its weight it has (a credit in thousandths), and
///   loses the rest, so its share grows with its ramp.
///
/// The heap sits in a std `Mutex` held for one pick: a few `O(log n)`
/// steps, no I/O, no `.await`.
#[derive(Debug)]
pub struct Deadlines {
    /// The turns, earliest due on top, and each backend's ramp credit.
    state: Mutex<DeadlineState>,
}

#[derive(Debug)]
struct DeadlineState {
    heap: BinaryHeap<Turn>,
    /// Per backend, thousandths of a turn earned during a ramp.
    credit: Vec<u64>,
}

/// A backend's next turn: due at `turns / weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    turns: u64,
    weight: u32,
    index: usize,
}

impl Ord for Turn {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the turn due first, and
    /// of those due together the backend listed first.
    fn cmp(&self, other: &Self) -> Ordering {
        let due = u128::from(self.turns) * u128::from(other.weight);
        let other_due = u128::from(other.turns) * u128::from(self.weight);
        other_due
            .cmp(&due)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Deadlines {
    /// Every backend's first turn due at `1 / w_i`.
    pub fn new(backends: &[Arc<Backend>]) -> Deadlines {
        let heap = backends
            .iter()
            .enumerate()
            .map(|(index, backend)| Turn {
                turns: 1,
                weight: backend.weight().max(1),
                index,
            })
            .collect();
        Deadlines {
            state: Mutex::new(DeadlineState {
                heap,
                credit: vec![0; backends.len()],
            }),
        }
    }

    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let DeadlineState { heap, credit } = &mut *state;
        let mut kept = Vec::new();
        let mut picked = None;
        // Each backend is looked at a few times at most: enough for every
        // one to lose a turn, or to earn one in a ramp.
        let budget = backends.len().saturating_mul(2).max(16);
        for _ in 0..budget {
            let Some(mut turn) = heap.pop() else { break };
            let Some(backend) = backends.get(turn.index) else {
                continue;
            };
            if ctx.tried.contains(&turn.index) {
                kept.push(turn);
                continue;
            }
            turn.turns = turn.turns.saturating_add(1);
            let takes = backend.is_available() && Deadlines::earns(credit, turn.index, backend);
            heap.push(turn);
            if takes {
                picked = Some(turn.index);
                break;
            }
        }
        heap.extend(kept);
        picked
    }

    /// Whether `backend` takes the turn that came due: always at full
    /// weight; in a ramp, once its credit of thousandths makes a whole turn.
    fn earns(credit: &mut [u64], index: usize, backend: &Backend) -> bool {
        let share = backend.health.weight_permille(tokio::time::Instant::now);
        if share >= crate::backend::health::FULL_PERMILLE {
            return true;
        }
        let Some(earned) = credit.get_mut(index) else {
            return true;
        };
        *earned = earned.saturating_add(share);
        if *earned >= crate::backend::health::FULL_PERMILLE {
            *earned -= crate::backend::health::FULL_PERMILLE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{EXACT_NGINX_MAX, SmoothWeighted};
    use crate::backend::{Backend, BackendState, HealthPolicy};
    use crate::balance::Balancer;
    use crate::balance::tests::{backends, fresh, letters, retry, tally, tally_from_threads};

    /// Backends that come back up at full weight at once, so sequences
    /// across a change of state are nginx's exactly.
    fn without_slow_start(set: &[Arc<Backend>]) {
        for backend in set {
            backend.health.configure(HealthPolicy {
                slow_start: Duration::ZERO,
                ..HealthPolicy::default()
            });
        }
    }

    #[test]
    fn a_backend_back_up_ramps_from_a_tenth_of_its_weight() {
        // b (weight 10) comes back next to a (weight 10): at 10% it gets
        // about 1 pick in 11 instead of 1 in 2.
        let (swrr, set) = balancer(&[10, 10]);
        set[1].set_state(BackendState::Down);
        set[1].set_state(BackendState::Up);
        let counts = tally(&swrr, &set, 110);
        assert!((9..=11).contains(&counts[1]), "{counts:?}");
    }

    fn balancer(weights: &[u32]) -> (SmoothWeighted, Vec<Arc<Backend>>) {
        let set = backends(weights);
        (SmoothWeighted::new(&set), set)
    }

    #[test]
    fn weights_3_1_2_1_interleave_as_a_c_b_a_d_c_a() {
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        assert_eq!(letters(&swrr, &set, 7), "acbadca");
    }

    #[test]
    fn weights_3_1_2_1_repeat_the_same_seven_picks_forever() {
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        assert_eq!(letters(&swrr, &set, 7 * 100), "acbadca".repeat(100));
    }

    #[test]
    fn weights_3_1_2_1_never_burst_one_backend() {
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        let picks = letters(&swrr, &set, 700);
        // `a` is picked twice in a row only across a period boundary
        // (`...c a | a c...`), never three times.
        assert!(!picks.contains("aaa"), "{picks}");
    }

    #[test]
    fn weights_5_1_1_give_nginxs_documented_a_a_b_a_c_a_a() {
        // The example in nginx's commit introducing smooth weighting.
        let (swrr, set) = balancer(&[5, 1, 1]);
        assert_eq!(letters(&swrr, &set, 14), "aabacaa".repeat(2));
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        let (swrr, set) = balancer(&[4, 4, 4, 4]);
        assert_eq!(letters(&swrr, &set, 12), "abcdabcdabcd");
    }

    #[test]
    fn a_single_backend_gets_every_pick() {
        let (swrr, set) = balancer(&[7]);
        assert_eq!(letters(&swrr, &set, 5), "aaaaa");
    }

    #[test]
    fn a_backend_down_from_the_start_leaves_the_others_their_own_sequence() {
        // b, c, d with weights 1, 2, 1 alone give c b d c.
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        set[0].set_state(BackendState::Down);
        assert_eq!(letters(&swrr, &set, 12), "cbdc".repeat(3));
    }

    #[test]
    fn a_draining_backend_is_skipped_from_where_the_sequence_stood() {
        // After `a c b` the current weights are 2 -4 -1 3. With `d`
        // draining, a, b, c (3, 1, 2) go on from there the nginx way:
        // 5 -3 1 -> a (-1); 2 -2 3 -> c (-3); 5 -1 -1 -> a (-1);
        // 2 0 1 -> a (-4); -1 1 3 -> c (-3); 2 2 -1 -> a (-4).
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        assert_eq!(letters(&swrr, &set, 3), "acb");
        set[3].set_state(BackendState::Draining);
        assert_eq!(letters(&swrr, &set, 6), "acaaca");
    }

    #[test]
    fn a_tried_backend_is_skipped_for_that_pick_only() {
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        // a is tried: b c d (1 2 1) compete, c wins with 2 and drops to -2.
        assert_eq!(swrr.pick(&set, &retry(&[0])), Some(2));
        // All compete again from 0 1 -2 1: 3 2 0 2 -> a.
        assert_eq!(swrr.pick(&set, &fresh()), Some(0));
    }

    #[test]
    fn nothing_eligible_gives_none_and_leaves_the_sequence_untouched() {
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        without_slow_start(&set);
        assert_eq!(letters(&swrr, &set, 2), "ac");
        for backend in &set {
            backend.set_state(BackendState::Down);
        }
        assert_eq!(letters(&swrr, &set, 3), "---");
        for backend in &set {
            backend.set_state(BackendState::Up);
        }
        assert_eq!(letters(&swrr, &set, 12), "badcaacbadca");
    }

    #[test]
    fn picks_from_many_threads_give_exact_weights() {
        const THREADS: usize = 4;
        const PERIODS_PER_THREAD: usize = 5_000;
        let (swrr, set) = balancer(&[3, 1, 2, 1]);
        let totals = tally_from_threads(&swrr, &set, THREADS, 7 * PERIODS_PER_THREAD);
        let periods = THREADS * PERIODS_PER_THREAD;
        assert_eq!(totals, [3 * periods, periods, 2 * periods, periods]);
    }

    #[test]
    fn a_run_of_picks_can_be_two_over_its_ceiling_so_runs_are_bounded_by_n_minus_1() {
        // Why the run property below allows n - 1 and not "ceiling + 1":
        // these weights (found by search) have a run of picks, starting
        // mid-sequence, that gives one backend two more than its ceiling.
        let weights = [2, 49, 1, 49, 1, 49, 1, 2, 2, 49, 3, 2, 1, 50, 49, 3];
        let (swrr, set) = balancer(&weights);
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let sequence = picks(&swrr, &set, 2 * total);
        let mut worst = 0;
        for start in 0..total {
            let mut counts = [0usize; 16];
            for (k, &winner) in (1..).zip(&sequence[start..start + total]) {
                counts[winner] += 1;
                for (&count, &w) in counts.iter().zip(&weights) {
                    let ceiling = (k * w as usize).div_ceil(total);
                    worst = worst.max(count.saturating_sub(ceiling));
                }
            }
        }
        assert_eq!(worst, 2);
    }

    /// Any 1 to 16 backends with weights 1 to 50, and a number of picks to
    /// make first so properties hold from any point of the sequence.
    fn weights_and_warm_up() -> impl Strategy<Value = (Vec<u32>, usize)> {
        proptest::collection::vec(1u32..=50, 1..=16).prop_flat_map(|weights| {
            let total: u32 = weights.iter().sum();
            let period = usize::try_from(total).expect("a small sum");
            (Just(weights), 0..=3 * period)
        })
    }

    /// The backend index of each of `count` picks, all backends eligible.
    fn picks(swrr: &SmoothWeighted, set: &[Arc<Backend>], count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| swrr.pick(set, &fresh()).expect("every backend is up"))
            .collect()
    }

    proptest! {
        #[test]
        fn any_sum_of_weights_consecutive_picks_give_each_backend_exactly_its_weight(
            (weights, warm_up) in weights_and_warm_up(),
        ) {
            let (swrr, set) = balancer(&weights);
            let total: u32 = weights.iter().sum();
            picks(&swrr, &set, warm_up);
            let counts = tally(&swrr, &set, total as usize);
            let expected: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
            prop_assert_eq!(counts, expected);
        }

        #[test]
        fn no_backend_is_ever_a_whole_pick_ahead_of_its_share(
            (weights, _) in weights_and_warm_up(),
        ) {
            // For every prefix of k picks from build and every backend i:
            // p_i(k) <= ceil(k * w_i / W), and p_i(k) >= k*w_i/W - (n-1)^2/n.
            let (swrr, set) = balancer(&weights);
            let n = weights.len() as i64;
            let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
            let mut counts = vec![0i64; weights.len()];
            for (k, winner) in (1i64..).zip(picks(&swrr, &set, 2 * total as usize)) {
                counts[winner] += 1;
                for (&count, &w) in counts.iter().zip(&weights) {
                    let share = k * i64::from(w);
                    let ceiling = (share + total - 1) / total;
                    prop_assert!(count <= ceiling, "{count} picks of weight {w} after {k}");
                    prop_assert!(count * n * total >= share * n - (n - 1) * (n - 1) * total);
                }
            }
        }

        #[test]
        fn any_run_of_picks_gives_each_backend_within_n_minus_1_of_its_share(
            (weights, warm_up) in weights_and_warm_up(),
        ) {
            // From any point of the sequence, each run of k picks gives
            // backend i a count with |count - k*w_i/W| <= n - 1.
            let (swrr, set) = balancer(&weights);
            let n = weights.len() as i64;
            let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
            picks(&swrr, &set, warm_up);
            let mut counts = vec![0i64; weights.len()];
            for (k, winner) in (1i64..).zip(picks(&swrr, &set, total as usize)) {
                counts[winner] += 1;
                for (&count, &w) in counts.iter().zip(&weights) {
                    let off = (count * total - k * i64::from(w)).abs();
                    prop_assert!(off <= (n - 1) * total, "{count} of {k} for weight {w}");
                }
            }
        }

        #[test]
        fn backends_down_from_the_start_leave_the_others_exactly_their_weights(
            (weights, warm_up) in weights_and_warm_up(),
            down in proptest::collection::vec(any::<bool>(), 16),
        ) {
            let (swrr, set) = balancer(&weights);
            for (backend, &is_down) in set.iter().zip(&down) {
                if is_down {
                    backend.set_state(BackendState::Down);
                }
            }
            let live_total: u32 = weights.iter().zip(&down).filter(|&(_, &d)| !d).map(|(w, _)| w).sum();
            prop_assume!(live_total > 0);
            tally(&swrr, &set, warm_up);
            let counts = tally(&swrr, &set, live_total as usize);
            for ((&count, &w), &is_down) in counts.iter().zip(&weights).zip(&down) {
                prop_assert_eq!(count, if is_down { 0 } else { w as usize });
            }
        }

        #[test]
        fn a_pick_never_lands_on_an_ineligible_backend_and_finds_any_eligible_one(
            weights in proptest::collection::vec(1u32..=50, 1..=16),
            rounds in proptest::collection::vec((any::<u16>(), any::<u16>()), 1..200),
        ) {
            // Each round sets the up/down pattern from one bit mask and the
            // tried set from another, then picks once.
            let (swrr, set) = balancer(&weights);
            for (up_mask, tried_mask) in rounds {
                for (i, backend) in set.iter().enumerate() {
                    let up = up_mask & (1 << i) != 0;
                    backend.set_state(if up { BackendState::Up } else { BackendState::Down });
                }
                let tried: Vec<usize> = (0..set.len()).filter(|&i| tried_mask & (1 << i) != 0).collect();
                let ctx = retry(&tried);
                let any_eligible = (0..set.len()).any(|i| ctx.eligible(&set, i));
                match swrr.pick(&set, &ctx) {
                    Some(i) => prop_assert!(ctx.eligible(&set, i)),
                    None => prop_assert!(!any_eligible),
                }
            }
        }
    }

    // === Deadlines: many backends ===

    /// The deadline scheduler's rule, written as plainly as possible: the
    /// turn due first (then the backend listed first) among those not
    /// tried; one not available loses its turn; the first available takes
    /// it. No ramps here.
    struct Reference {
        turns: Vec<u64>,
        weights: Vec<u32>,
    }

    impl Reference {
        fn new(weights: &[u32]) -> Reference {
            Reference {
                turns: vec![1; weights.len()],
                weights: weights.to_vec(),
            }
        }

        fn pick(&mut self, available: &[bool], tried: &[usize]) -> Option<usize> {
            for _ in 0..self.weights.len() * 2 {
                let next = (0..self.weights.len())
                    .filter(|i| !tried.contains(i))
                    .min_by(|&a, &b| {
                        let due_a = u128::from(self.turns[a]) * u128::from(self.weights[b]);
                        let due_b = u128::from(self.turns[b]) * u128::from(self.weights[a]);
                        due_a.cmp(&due_b).then(a.cmp(&b))
                    })?;
                self.turns[next] += 1;
                if available[next] {
                    return Some(next);
                }
            }
            None
        }
    }

    #[test]
    fn many_backends_are_scheduled_by_deadlines_in_log_time() {
        let weights: Vec<u32> = (0..200).map(|i| 1 + i % 5).collect();
        let (swrr, set) = balancer(&weights);
        assert!(matches!(swrr, SmoothWeighted::Deadlines(_)));
        let total: u32 = weights.iter().sum();
        // Any W consecutive picks, from any start, give exactly the weights.
        tally(&swrr, &set, 137);
        let counts = tally(&swrr, &set, total as usize);
        let expected: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
        assert_eq!(counts, expected);
    }

    #[test]
    fn up_to_64_backends_are_nginxs_exact_pass() {
        let (swrr, _) = balancer(&[1; EXACT_NGINX_MAX]);
        assert!(matches!(swrr, SmoothWeighted::Nginx(_)));
        let (swrr, _) = balancer(&[1; EXACT_NGINX_MAX + 1]);
        assert!(matches!(swrr, SmoothWeighted::Deadlines(_)));
    }

    #[test]
    fn a_backend_in_its_ramp_gets_a_share_that_grows_with_it() {
        let weights = vec![1u32; 100];
        let (swrr, set) = balancer(&weights);
        for backend in &set {
            backend.configure(
                HealthPolicy {
                    slow_start: Duration::from_secs(3600),
                    ..HealthPolicy::default()
                },
                Duration::from_secs(10),
            );
        }
        set[7].set_state(BackendState::Down);
        set[7].set_state(BackendState::Up);
        let counts = tally(&swrr, &set, 100 * 50);
        // At 10% of its weight it gets about a tenth of the others' share.
        assert!((3..=8).contains(&counts[7]), "{}", counts[7]);
        assert!(
            counts.iter().enumerate().all(|(i, &c)| i == 7 || c >= 50),
            "{counts:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn deadlines_pick_what_the_plain_rule_picks_through_any_states(
            weights in proptest::collection::vec(1u32..=20, 65..=2_000),
            rounds in proptest::collection::vec((any::<u64>(), 0usize..3), 1..60),
        ) {
            let (swrr, set) = balancer(&weights);
            without_slow_start(&set);
            let mut reference = Reference::new(&weights);
            for (seed, tried_count) in rounds {
                // A pseudo-random up/down pattern from the seed, about one
                // backend in eight down, and a few tried ones.
                let available: Vec<bool> = (0..set.len())
                    .map(|i| (seed.rotate_left(i as u32 % 64) ^ i as u64) % 8 != 0)
                    .collect();
                for (backend, &up) in set.iter().zip(&available) {
                    backend.set_state(if up { BackendState::Up } else { BackendState::Down });
                }
                let tried: Vec<usize> = (0..tried_count).map(|k| (seed as usize + k * 7) % set.len()).collect();
                let ctx = retry(&tried);
                for _ in 0..5 {
                    let picked = swrr.pick(&set, &ctx);
                    prop_assert_eq!(picked, reference.pick(&available, &tried));
                    if let Some(i) = picked {
                        prop_assert!(ctx.eligible(&set, i));
                    }
                }
            }
        }
    }
}
