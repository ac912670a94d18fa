//! Counters of one listener (not of one backend): clients turned away at
//! accept, by reason, how long client connections lasted, and how TLS
//! handshakes ended. Written by
//! the accept loop and connection tasks with one or two `Relaxed` atomic
//! adds per event (each is an independent tally); read by `/metrics`.
//!
//! They live in the listener's slot, so they outlive the snapshots a
//! change publishes, as backend counters outlive them in `Arc<Backend>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::stats::{DurationHistogram, status_class};
use crate::logging::Throttle;

/// Why a client was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Its address is not in the listener's `allow` list.
    NotAllowed,
    /// The listener's `max_connections` is reached.
    ListenerFull,
    /// The process-wide `max_connections` is reached.
    GlobalFull,
    /// A connect failed on this machine (out of file descriptors, buffers
    /// or ports): the client was admitted, then closed.
    LocalResources,
    /// On a listener that accepts the PROXY protocol: a connection from a
    /// source not listed, or without a good header in time.
    ProxyProtocol,
}

impl Rejection {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Rejection; 5] = [
        Rejection::NotAllowed,
        Rejection::ListenerFull,
        Rejection::GlobalFull,
        Rejection::LocalResources,
        Rejection::ProxyProtocol,
    ];

    /// The reason in words, for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NotAllowed => "not in the allow list",
            Rejection::ListenerFull => "listener max_connections reached",
            Rejection::GlobalFull => "global max_connections reached",
            Rejection::LocalResources => "out of resources on this machine",
            Rejection::ProxyProtocol => "no PROXY protocol header from a trusted source",
        }
    }

    /// The value of the `reason` label of
    /// `balancer_rejected_connections_total` (a contract, like the metric
    /// names: named after the config key that caused the rejection).
    pub fn label(self) -> &'static str {
        match self {
            Rejection::NotAllowed => "not_allowed",
            Rejection::ListenerFull => "listener_max_connections",
            Rejection::GlobalFull => "global_max_connections",
            Rejection::LocalResources => "local_resources",
            Rejection::ProxyProtocol => "proxy_protocol",
        }
    }

    fn index(self) -> usize {
        match self {
            Rejection::NotAllowed => 0,
            Rejection::ListenerFull => 1,
            Rejection::GlobalFull => 2,
            Rejection::LocalResources => 3,
            Rejection::ProxyProtocol => 4,
        }
    }
}

/// How often a listener logs a message it could repeat for every client:
/// the first occurrence at once, then one line per interval with the count
/// left out.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The throttles of the messages one listener can repeat per client.
#[derive(Debug)]
pub struct ListenerLogs {
    /// "client rejected" (allow list, caps).
    pub rejected: Throttle,
    /// "client closed: no backend could be reached".
    pub unreachable: Throttle,
    /// "cannot connect: out of resources on this machine".
    pub local: Throttle,
}

impl Default for ListenerLogs {
    fn default() -> Self {
        ListenerLogs {
            rejected: Throttle::new(LOG_INTERVAL),
            unreachable: Throttle::new(LOG_INTERVAL),
            local: Throttle::new(LOG_INTERVAL),
        }
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Clients turned away at accept, indexed by [`Rejection`].
    rejected: [AtomicU64; Rejection::ALL.len()],
    /// How long client connections lasted, from accept to close.
    pub connection_duration: DurationHistogram,
    /// http mode: the balancer's own answers (400, 502, 503, ...) by
    /// status class, 1xx to 5xx; answers from backends are counted on
    /// the backend.
    pub local_responses: [AtomicU64; 5],
    /// Listeners with TLS: handshakes by how they ended.
    pub tls_handshakes: crate::tls::Handshakes,
}

impl ListenerStats {
    /// Counts one client turned away for `why`.
    pub fn record_rejection(&self, why: Rejection) {
        if let Some(count) = self.rejected.get(why.index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one answer of the balancer's own with `status`.
    pub fn record_response(&self, status: u16) {
        if let Some(count) = status_class(status).and_then(|i| self.local_responses.get(i)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Clients turned away for `why` so far.
    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected
            .get(why.index())
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_per_reason() {
        let stats = ListenerStats::default();
        stats.record_rejection(Rejection::NotAllowed);
        stats.record_rejection(Rejection::NotAllowed);
        stats.record_rejection(Rejection::GlobalFull);
        assert_eq!(stats.rejected(Rejection::NotAllowed), 2);
        assert_eq!(stats.rejected(Rejection::ListenerFull), 0);
        assert_eq!(stats.rejected(Rejection::GlobalFull), 1);
    }
}
