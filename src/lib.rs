//! `balancer`: a TCP (and, next, HTTP) load balancer.
//!
//! # Layout
//!
//! A connection passes through few places, each once: it is accepted and
//! admitted in `runtime` (`runtime/listener.rs`, on `net::accept`), a
//! backend is picked by `balance` from the listener's `state`
//! snapshot, connected to by `proxy::connect` (on `net::connect`), its
//! bytes are relayed by `proxy::tcp`, and everything is counted in
//! `backend::stats`. A config's way: `config` reads and checks it,
//! `state` publishes it as snapshots, and every later change (the admin
//! API, reload, DNS discovery) goes through `state::change`.
//!
//! The modules, from the bottom up (each imports only those above it in
//! this list, and `net` none of ours):
//!
//! - `net`: network basics written once: the address grammar and the
//!   resolver, connect with a source address and a timeout, the accept
//!   loop with back-off, the hyper HTTP/1.1 server setup, and how an I/O
//!   error or a user's value is said in words.
//! - `tls`: TLS termination on rustls (aws-lc-rs): certificates and keys
//!   read from PEM files and matched, the SNI choice among them, a
//!   listener's rustls config, and the counted handshake with its timeout.
//! - `config`: pure text-to-model. The native TOML format and the seed's
//!   INI `setup.cfg` are read into the same raw structs, validated into one
//!   `config::Config`, and can be printed back as TOML (`convert`).
//!   Nothing there binds or spawns, so `check` and `convert` are free.
//! - `backend`: a backend's address, weight and live state: health (up,
//!   down, draining; rise/fall counting; slow start), peak EWMA latency and
//!   counters; shared by `Arc` so it outlives any one config.
//! - `balance`: the balancing algorithms behind one `Balancer` trait,
//!   with no I/O: round robin, random, smooth weighted round robin, least
//!   connections, power of two choices (peak EWMA), Maglev.
//! - `state`: the live state every plane reads: each listener's slot
//!   (its snapshot of config, backends and balancer; its counters; its stop
//!   token and connection cap), and the named changes that are the only
//!   way it changes.
//! - `health`: active health checks (one task per listener, a check loop
//!   per backend, tcp or http probes) and passive detection (real connect
//!   results); both write the backend's health.
//! - `discovery`: backends found by DNS (`[listeners.discovery]`, on
//!   hickory-resolver): one task per discovered listener resolves SRV or
//!   A/AAAA records, applies each new set through `state::change`, and
//!   resolves again when the TTL runs out; DNS trouble keeps the last
//!   good set. `discovery::fleet`: backends shared through etcd
//!   (`[fleet]`, on etcd-client): one task seeds, reads and watches the
//!   fleet's keys and applies them through `state::change`; the admin
//!   API's changes to fleet listeners are written there.
//! - `proxy`: the data plane of one client connection: pick, connect
//!   with retries, relay bytes both ways (copy or splice) with half-close
//!   and idle timeout; TLS on it; http mode (`proxy::http`: each request
//!   balanced, HTTP/1.1 from clients, and HTTP/2 over TLS).
//! - `admin`: the admin server (SPEC 7) on its own listener: the
//!   dashboard, `/metrics` (every metric name in [`metric_names`], which
//!   the integration tests read too)
//!   and the JSON API, whose changes are `state::change` calls.
//! - `access_log`: the access log (SPEC 8): one line per finished
//!   connection, text or JSON, to stderr, stdout or a file, through a
//!   bounded queue to one writer thread (never blocking a worker), reopened
//!   on SIGUSR1.
//! - `runtime`: owns lifecycles: binding, accept loops and admission
//!   (allow list, caps), health, discovery and fleet tasks, the admin
//!   server, signals, drain.
//! - `demo`: `balancer backend` (a small HTTP server) and `balancer demo`
//!   (five backends plus the balancer, from an embedded config that goes
//!   through the same validation as any file).
//! - [`cli`] and [`error`]: the command line and the top-level [`Error`]:
//!   how it renders and which exit code it maps to (2 for usage and config,
//!   1 for runtime failures).
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod backend;
pub(crate) mod balance;
pub mod cli;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod discovery;
pub mod error;
pub(crate) mod health;
pub(crate) mod logging;
pub(crate) mod net;
pub(crate) mod proxy;
pub(crate) mod runtime;
pub(crate) mod state;
#[cfg(test)]
mod testing;
pub(crate) mod tls;

pub use admin::metrics::names as metric_names;
pub use error::Error;
