//! Counters of one listener (not of one backend): clients turned away at
//! accept, by reason, and how long client connections lasted. Written by
//! the accept loop and connection tasks with one or two `Relaxed` atomic
//! adds per event (each is an independent tally); read by `/metrics`.
//!
//! They live in the listener's slot, so they outlive the snapshots a
//! change publishes, as backend counters outlive them in `Arc<Backend>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Upper bounds (seconds) of the connection duration histogram's buckets:
/// from a refused connect (milliseconds) to long-lived streams (an hour).
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A histogram of durations over [`DURATION_BUCKETS`], lock-free: one
/// atomic per bucket (not cumulative; cumulated when read) plus the sum.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Observations per bucket; the last one is above every bound (`+Inf`).
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// Sum of every observation, in microseconds.
    sum_micros: AtomicU64,
}

/// A read of a [`DurationHistogram`]: counts per bucket, not cumulative
/// (as `prometheus-client` takes them; it cumulates when it encodes).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of every observation, in seconds.
    pub sum: f64,
    /// Number of observations: the sum of the buckets read.
    pub count: u64,
    /// `(upper bound in seconds, observations in this bucket)`: above the
    /// previous bound, at or below this one; the last bound is
    /// `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
}

impl DurationHistogram {
    /// Records one duration: two `Relaxed` atomic adds.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let index = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts, for `/metrics`. The count is the sum of the buckets
    /// read, so the `+Inf` bucket and `_count` always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.buckets.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets
            .iter()
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
        // A sum of microseconds shown in seconds: precision loss does not matter.
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HistogramSnapshot {
            sum,
            count,
            buckets,
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
}

impl ListenerStats {
    /// Counts one client turned away for `why`.
    pub fn record_rejection(&self, why: Rejection) {
        if let Some(count) = self.rejected.get(why.index()) {
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
    fn a_duration_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(7200));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.005, 1)));
        assert_eq!(s.buckets.get(1), Some(&(0.01, 1)));
        assert_eq!(s.buckets.get(15), Some(&(3600.0, 0)));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum - 7200.012).abs() < 1e-6, "sum {}", s.sum);
    }

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
