//! Random: a uniformly random eligible backend. (Stub.)

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
}

impl Balancer for Random {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        (0..backends.len()).find(|&i| ctx.eligible(backends, i))
    }
}
