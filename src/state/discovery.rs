//! What a discovered listener's DNS resolutions did: counts by result
//! (`balancer_discovery_resolutions_total`) and the last one, with when the
//! next is due (`/api/status`). Written by the listener's discovery task
//! (`discovery`), read by the admin API; it lives in the listener's slot,
//! so the counts go on across reloads that restart the task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// How one resolution ended: the `result` label of
/// `balancer_discovery_resolutions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Records came back and became the backend set.
    Ok,
    /// The name has no records (or none usable): the last good set stays.
    Empty,
    /// No DNS server answered in time: the last good set stays.
    Timeout,
    /// A server refused or failed the query, or none could be reached:
    /// the last good set stays.
    Error,
}

impl Resolution {
    /// Every result, in the order metrics and status list them.
    pub const ALL: [Resolution; 4] = [
        Resolution::Ok,
        Resolution::Empty,
        Resolution::Timeout,
        Resolution::Error,
    ];

    /// The metric label and status word.
    pub fn label(self) -> &'static str {
        match self {
            Resolution::Ok => "ok",
            Resolution::Empty => "empty",
            Resolution::Timeout => "timeout",
            Resolution::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The last resolution of a discovered listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResolution {
    /// When it ended.
    pub at: SystemTime,
    /// How.
    pub result: Resolution,
    /// Why it failed, in words; `None` when it succeeded.
    pub error: Option<String>,
    /// When the next resolution is due.
    pub next: SystemTime,
}

/// A listener's resolutions; empty on a listener without discovery.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Resolutions so far, indexed by [`Resolution`].
    counts: [AtomicU64; Resolution::ALL.len()],
    /// The last one (a std mutex: held to copy or replace one value).
    last: Mutex<Option<LastResolution>>,
}

impl DiscoveryStats {
    /// Records one resolution.
    pub fn record(&self, last: LastResolution) {
        if let Some(count) = self.counts.get(last.result.index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(last);
    }

    /// Resolutions that ended with `result` so far.
    pub fn count(&self, result: Resolution) -> u64 {
        self.counts
            .get(result.index())
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// The last resolution, `None` before the first has ended.
    pub fn last(&self) -> Option<LastResolution> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_are_counted_by_result_and_the_last_one_kept() {
        let stats = DiscoveryStats::default();
        assert_eq!(stats.last(), None);
        let now = SystemTime::now();
        for result in [Resolution::Ok, Resolution::Timeout, Resolution::Timeout] {
            stats.record(LastResolution {
                at: now,
                result,
                error: None,
                next: now,
            });
        }
        let counts: Vec<u64> = Resolution::ALL.iter().map(|&r| stats.count(r)).collect();
        assert_eq!(counts, [1, 0, 2, 0]);
        assert_eq!(stats.last().map(|l| l.result), Some(Resolution::Timeout));
    }
}
