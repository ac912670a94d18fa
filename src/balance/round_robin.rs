//! Round robin: backends in config order, exact across all worker threads,
//! because the position is one shared atomic counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Hands out backends in config order.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The next position; `Relaxed` is enough, the counter orders nothing
    /// but itself and `fetch_add` never hands two callers the same value.
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first backend.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let n = backends.len();
        // Each skipped (ineligible) position consumes a turn, so at most n
        // turns find an eligible backend if there is one.
        (0..n)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n.max(1))
            .find(|&i| ctx.eligible(backends, i))
    }
}
