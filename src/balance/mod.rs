//! The balancing algorithms, behind one [`Balancer`] trait, with no I/O.
//!
//! A balancer is built from a listener's backend set when a config snapshot
//! is made ([`build`], the only `match` on [`Algorithm`]), and then shared
//! by every worker thread. Each new client connection calls
//! [`Balancer::pick`]; a retry after a failed connect calls it again with
//! the backends already tried, so the algorithm decides the fallback order
//! too.

mod random;
mod round_robin;
mod weighted;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Algorithm;

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
}

/// Builds the balancer of `algorithm` for `backends`.
pub fn build(algorithm: Algorithm, backends: &[Arc<Backend>]) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new()),
        Algorithm::Random => Box::new(Random::new()),
        Algorithm::WeightedRoundRobin => Box::new(SmoothWeighted::new(backends)),
    }
}
