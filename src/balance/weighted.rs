//! Smooth weighted round robin, as nginx's. (Stub.)

use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// Smooth weighted round robin.
#[derive(Debug, Default)]
pub struct SmoothWeighted;

impl SmoothWeighted {
    /// A new balancer for `backends`, using their weights.
    pub fn new(_backends: &[Arc<Backend>]) -> SmoothWeighted {
        SmoothWeighted
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        (0..backends.len()).find(|&i| ctx.eligible(backends, i))
    }
}
