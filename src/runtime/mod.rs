//! Lifecycles.
