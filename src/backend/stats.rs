//! A backend's counters: plain atomics (`Relaxed`: each is an independent
//! tally, nothing is ordered by them), and guards that keep the active and
//! connecting counts right whatever way a connection or attempt ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Backend;

/// Counters of one backend. Read by the balancer (load), the admin API and
/// metrics; written by the proxy, one `fetch_add` per event or per chunk
/// relayed.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections open to this backend now.
    pub active: AtomicU64,
    /// Connect attempts to this backend in flight now.
    pub connecting: AtomicU64,
    /// Client connections ever relayed to this backend.
    pub total: AtomicU64,
    /// Bytes from clients to this backend.
    pub bytes_in: AtomicU64,
    /// Bytes from this backend to clients.
    pub bytes_out: AtomicU64,
    /// Connect attempts to this backend that failed or timed out.
    pub connect_failures: AtomicU64,
    /// http mode: answers by status class, 1xx to 5xx.
    pub responses: [AtomicU64; 5],
    /// http mode: how long requests took, from the request head to the
    /// answer's last byte.
    pub request_duration: DurationHistogram,
}

/// The status classes of [`Stats::responses`], as `/metrics` labels them.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`STATUS_CLASSES`] of an HTTP status code (100-599), or
/// `None` for a code outside them.
pub fn status_class(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100 - 1)),
        _ => None,
    }
}

impl Stats {
    /// Records a failed connect attempt.
    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one http answer with `status` that took `duration`.
    pub fn record_response(&self, status: u16, duration: Duration) {
        if let Some(count) = status_class(status).and_then(|i| self.responses.get(i)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.request_duration.observe(duration);
    }

    /// The load load-aware algorithms compare: connections open plus
    /// connects in flight. Counting attempts too keeps a burst of new
    /// clients from all picking the same idle backend before any of their
    /// connects has finished.
    pub fn outstanding(&self) -> u64 {
        self.active
            .load(Ordering::Relaxed)
            .saturating_add(self.connecting.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) of the duration histograms' buckets (connections
/// of a listener, http requests to a backend): from a refused connect
/// (milliseconds; an http request on a local network, half of one) to
/// long-lived streams (an hour).
pub const DURATION_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
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

impl HistogramSnapshot {
    /// Adds `other`'s observations (same buckets) to these.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        self.sum += other.sum;
        self.count = self.count.saturating_add(other.count);
        for ((_, mine), (_, theirs)) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The `q` quantile (0 to 1) in seconds, estimated as Prometheus'
    /// `histogram_quantile` does: linearly within the bucket it falls in
    /// (from 0 in the first); in the `+Inf` bucket, the largest finite
    /// bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // Counts far below 2^53: exact as f64.
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for &(bound, n) in &self.buckets {
            let upto = below.saturating_add(n);
            if n > 0 && upto as f64 >= rank {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (bound - lower) * within);
            }
            below = upto;
            if bound.is_finite() {
                lower = bound;
            }
        }
        Some(lower)
    }
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

/// Counts a connection as active for as long as it lives; created when a
/// backend connect succeeds, dropped when the relay ends (or is cancelled).
#[derive(Debug)]
pub struct ConnectionGuard {
    backend: Arc<Backend>,
}

impl ConnectionGuard {
    /// Counts one more active and total connection on `backend`.
    pub fn new(backend: Arc<Backend>) -> ConnectionGuard {
        backend.stats.active.fetch_add(1, Ordering::Relaxed);
        backend.stats.total.fetch_add(1, Ordering::Relaxed);
        backend.load_changed();
        ConnectionGuard { backend }
    }

    /// The backend this connection goes to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.backend.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.load_changed();
    }
}

/// Counts a connect attempt as in flight for as long as it lives, even
/// when the attempt is cancelled (client gone, drain).
#[derive(Debug)]
pub struct ConnectingGuard<'a> {
    backend: &'a Backend,
}

impl<'a> ConnectingGuard<'a> {
    /// Counts one more connect in flight on `backend`.
    pub fn new(backend: &'a Backend) -> ConnectingGuard<'a> {
        backend.stats.connecting.fetch_add(1, Ordering::Relaxed);
        backend.load_changed();
        ConnectingGuard { backend }
    }
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        self.backend
            .stats
            .connecting
            .fetch_sub(1, Ordering::Relaxed);
        self.backend.load_changed();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::DurationHistogram;

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(7200));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.0005, 0)));
        assert_eq!(s.buckets.get(3), Some(&(0.005, 1)));
        assert_eq!(s.buckets.get(4), Some(&(0.01, 1)));
        assert_eq!(s.buckets.get(18), Some(&(3600.0, 0)));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum - 7200.012).abs() < 1e-6, "sum {}", s.sum);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket_as_prometheus_does() {
        let h = DurationHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        // 100 observations of 0.7 ms: all in (0.5 ms, 1 ms].
        for _ in 0..100 {
            h.observe(Duration::from_micros(700));
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 0.00075).abs() < 1e-9, "{p50}");
        assert!((s.quantile(1.0).unwrap() - 0.001).abs() < 1e-9);
        // Merged with 100 in (5 ms, 10 ms]: the median is at the top of
        // the first group, p99 in the second.
        let other = DurationHistogram::default();
        for _ in 0..100 {
            other.observe(Duration::from_millis(8));
        }
        let mut merged = s.clone();
        merged.merge(&other.snapshot());
        assert_eq!(merged.count, 200);
        assert!((merged.quantile(0.5).unwrap() - 0.001).abs() < 1e-9);
        let p99 = merged.quantile(0.99).unwrap();
        assert!(p99 > 0.005 && p99 <= 0.01, "{p99}");
        // Beyond the last bound: the last finite bound.
        let slow = DurationHistogram::default();
        slow.observe(Duration::from_secs(7200));
        assert_eq!(slow.snapshot().quantile(0.5), Some(3600.0));
    }
}
