//! `balancer`: a TCP (and, later, HTTP) load balancer.
//!
//! # Layout
//!
//! A connection passes through few places, each once: it is accepted in
//! [`runtime`] (`runtime/listener.rs`), a backend is picked by [`balance`],
//! connected to by [`proxy::connect`], its bytes are relayed by
//! [`proxy::tcp`], and everything is counted in [`backend::stats`].
//!
//! - [`cli`]: the command line (clap derive): subcommands and global flags.
//! - [`error`]: the top-level [`Error`]: how it renders and which exit code
//!   it maps to (2 for usage and config, 1 for runtime failures).
//! - [`config`]: pure text-to-model. The native TOML format and the seed's
//!   INI `setup.cfg` are read into the same raw structs, validated into one
//!   [`config::Config`], and can be printed back as TOML (`convert`).
//!   Nothing there binds or spawns, so `check` and `convert` are free.
//! - [`balance`]: the balancing algorithms behind one [`balance::Balancer`]
//!   trait, with no I/O: round robin, random, smooth weighted round robin,
//!   least connections, power of two choices (peak EWMA), Maglev.
//! - [`backend`]: a backend's address, weight and live state: health (up,
//!   down, draining; rise/fall counting; slow start), peak EWMA latency and
//!   counters; shared by `Arc` so it can outlive a config.
//! - [`health`]: active health checks (one task per listener, a check loop
//!   per backend, tcp or http probes) and passive detection (real connect
//!   results); both feed the backend's health state machine.
//! - [`proxy`]: connect to a backend with timeout, retries and
//!   `source_address`, then relay bytes both ways with half-close and idle
//!   timeout.
//! - [`runtime`]: owns lifecycles: binding listeners, accept loops,
//!   connection caps, signals, drain.
//! - [`admin`]: the admin server (SPEC 7) on its own listener: the
//!   dashboard, `/metrics` (every metric name in `admin::metrics::names`)
//!   and the JSON API, whose changes go through the one writer path in
//!   `runtime::state`.
//! - [`demo`]: `balancer backend` (a small HTTP server) and `balancer demo`
//!   (five backends plus the balancer, from an embedded config that goes
//!   through the same validation as any file).
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod admin;
pub(crate) mod backend;
pub(crate) mod balance;
pub mod cli;
pub(crate) mod config;
pub(crate) mod demo;
pub mod error;
pub(crate) mod health;
pub(crate) mod net;
pub(crate) mod proxy;
pub(crate) mod runtime;
pub(crate) mod state;
#[cfg(test)]
mod testing;

pub use error::Error;
