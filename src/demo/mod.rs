//! `balancer demo` and `balancer backend`.

pub mod backend;
