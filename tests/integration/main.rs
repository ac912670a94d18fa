//! Integration tests: the real `balancer` binary, run as a user runs it,
//! over loopback sockets. One test binary (as ripgrep's `tests/tests.rs`),
//! so it compiles once.
//!
//! - `harness/`: start the binary with a temporary config and wait until
//!   it listens; in-process backends; clients with deadlines; HTTP;
//!   `eventually` (its `mod.rs` names the file for each job).
//! - `access_log`: the access log's lines in both formats, rotation with
//!   SIGUSR1; `shutdown_delay`.
//! - `cli`: help, version, usage errors, every config error, exit codes.
//! - `config`: what `check` refuses before anything runs and how it prints
//!   what it accepts (issue 16).
//! - `tcp`: relaying: bytes unchanged, half-close, idle timeout, `allow`.
//! - `balancing`: which backend each connection gets, retries, caps.
//! - `discovery`: DNS discovery against a real dnsmasq: A and SRV
//!   records, records added and removed, the DNS server gone, 409s.
//! - `drain`: SIGTERM/SIGINT drain and exit, SIGHUP.
//! - `fleet`: the etcd fleet against a real etcd: changes through one
//!   instance's admin API reach the others, seeding, Maglev agreement,
//!   etcd stopped and restarted, compaction, malformed values, config
//!   errors.
//! - `seed`: the seed's `setup.cfg` unchanged, `check` and `convert`.
//! - `demo`: `balancer backend` and `balancer demo`.
//! - `admin`: the admin API, metrics (read by a real Prometheus parser),
//!   changes at run time, and the dashboard in headless Chromium
//!   (`browser`: chromedriver over WebDriver).
//! - `admin_fuzz`: random and mutated change bodies and path segments
//!   against one running admin API: never a 5xx, errors as JSON.
//! - `faults_tcp`: fault injection on a tcp listener (issue 14):
//!   backends killed, reset, silent or stalled mid-transfer, clients reset
//!   or half-closed, clients that never read, descriptors run out; bytes
//!   checked by digest, descriptors counted back.
//! - `faults_http`: the same faults on an http listener: the status each
//!   client is told, bytes by digest, descriptors counted back.
//! - `faults_load`: by numbers, both modes: 200 clients that never read
//!   (memory bounded), descriptors run out (no spinning), 5,000
//!   concurrent checksummed connections, slowloris and garbage.
//! - `hardening`: issue 16's cases: a stuck stderr, log floods, running
//!   out of file descriptors, admin slowloris and DNS rebinding.
//! - `proxy_protocol`: PROXY protocol headers sent to backends and
//!   accepted from a balancer in front, exact bytes, every rejection.
//! - `reload`: SIGHUP and `POST /api/reload`: the diff by listener name,
//!   state kept, bad files and bind failures changing nothing, reloads
//!   under load, the seed's INI.
//! - `tls`: TLS on tcp listeners: bytes both ways, half-close, PROXY
//!   header before the handshake, SNI, versions, ALPN, failed and stalled
//!   handshakes, certificates on reload, every bad file.
//! - `tls_http`: TLS on http listeners: ALPN's choice of HTTP/2 or
//!   HTTP/1.1, concurrent h2 streams, the forwarded `https`, the drain's
//!   GOAWAY, limits, certificates on reload, the access log, the
//!   smuggling table's invariants over TLS.
//! - `health`: active and passive health checks, slow start,
//!   least_connections steering, Maglev agreement between two processes,
//!   bad health-check values.
//!
//! Tests that bind fixed ports (`seed`, `demo`, the demo's admin port in
//! `admin`) hold `harness::fixed_ports()` so they never run at the same
//! time, not even beside another checkout's test run on the same machine.

mod browser;
mod harness;

mod access_log;
mod admin;
mod admin_fuzz;
mod balancing;
mod cli;
mod config;
mod demo;
mod discovery;
mod drain;
mod faults_http;
mod faults_load;
mod faults_tcp;
mod fleet;
mod hardening;
mod health;
mod http;
mod http_differential;
mod http_errors;
mod http_exchange;
mod http_ops;
mod http_pool;
mod http_smuggling;
mod http_status;
mod http_streams;
mod proxy_protocol;
mod reload;
mod seed;
mod tcp;
mod tls;
mod tls_http;
