//! Peak EWMA of a backend's latency, with time decay and non-mutating
//! reads (as Finagle's `PeakEwma` and linkerd's `ewma` crate).
//!
//! [`Ewma`] is the pure value: an estimate, the instant of its last sample
//! and a decay time `tau`. A sample `s` taken `dt` after the last one moves
//! the estimate `e` to `e * w + s * (1 - w)` with `w = exp(-dt / tau)`, so
//! samples weigh by the time they stand for, not by their number: a burst
//! of fast samples in one millisecond barely moves an estimate built over
//! seconds. *Peak*: a sample above the current (decayed) estimate replaces
//! it outright, so a backend that turns slow is seen as slow at once and
//! trusted again only gradually.
//!
//! A read at `now` ([`Ewma::get_at`]) returns the estimate decayed towards
//! zero by `exp(-(now - last) / tau)` without changing anything. So a
//! backend that got no traffic (because it looked slow) looks faster and
//! faster, until it is picked again and measured afresh: a slow backend is
//! avoided, not abandoned.
//!
//! `tau` is clamped up to [`MIN_DECAY`] (1 ms), so `dt / tau` is never a
//! division by zero, and a `now` before the last sample (two threads'
//! clocks read in the other order) counts as no time at all, so the
//! estimate never grows by being read.
//!
//! [`PeakEwma`] shares one `Ewma` between the connection tasks that write
//! samples and the balancer that reads it on every pick: behind a mutex
//! held for a few arithmetic operations, so a read sees one whole estimate
//! and concurrent writes each apply, with no allocation per sample (an
//! http listener writes one per request).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The smallest decay time used; a shorter one (including zero) is raised
/// to it, so the decay never divides by zero.
pub const MIN_DECAY: Duration = Duration::from_millis(1);

/// A time-decayed peak EWMA of latency; a plain value (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    /// The estimate in seconds at `at`; `None` before the first sample.
    estimate: Option<f64>,
    /// When the estimate was last updated.
    at: Instant,
    /// The decay time `tau` in seconds, at least [`MIN_DECAY`].
    decay: f64,
}

// === impl Ewma ===

impl Ewma {
    /// An estimate with no sample yet, decaying with `decay` (clamped up
    /// to [`MIN_DECAY`]).
    pub fn new(decay: Duration, now: Instant) -> Ewma {
        Ewma {
            estimate: None,
            at: now,
            decay: decay.max(MIN_DECAY).as_secs_f64(),
        }
    }

    /// The decay time in use.
    #[cfg(test)]
    pub fn decay(&self) -> Duration {
        Duration::from_secs_f64(self.decay)
    }

    /// The estimate projected to `now`: decayed towards zero since the last
    /// sample, without changing anything. `None` before the first sample.
    pub fn get_at(&self, now: Instant) -> Option<Duration> {
        self.seconds_at(now).map(Duration::from_secs_f64)
    }

    /// [`Ewma::get_at`] in seconds, as the balancer compares it.
    pub fn seconds_at(&self, now: Instant) -> Option<f64> {
        let estimate = self.estimate?;
        Some(estimate * self.weight_of_past(now))
    }

    /// The estimate after a sample `sample` taken at `now`: replaced when
    /// the sample is above the decayed estimate (the peak), otherwise
    /// moved towards it by the time since the last sample.
    #[must_use]
    pub fn add_peak(&self, sample: Duration, now: Instant) -> Ewma {
        let sample = sample.as_secs_f64();
        let estimate = match self.estimate {
            None => sample,
            Some(estimate) => {
                let w = self.weight_of_past(now);
                let decayed = estimate * w;
                if sample > decayed {
                    sample
                } else {
                    decayed + sample * (1.0 - w)
                }
            }
        };
        // The first sample sets the stamp; later ones never move it back.
        let at = if self.estimate.is_none() {
            now
        } else {
            now.max(self.at)
        };
        Ewma {
            estimate: Some(estimate),
            at,
            decay: self.decay,
        }
    }

    /// The same estimate, decaying with `decay` from now on.
    #[must_use]
    pub fn with_decay(&self, decay: Duration) -> Ewma {
        Ewma {
            decay: decay.max(MIN_DECAY).as_secs_f64(),
            ..*self
        }
    }

    /// `exp(-dt / tau)`: how much of the estimate is left at `now`; 1 when
    /// `now` is not after the last sample.
    fn weight_of_past(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (-elapsed / self.decay).exp()
    }
}

/// One backend's peak EWMA of connect latency, written by connection tasks
/// and read by the balancer (see the module doc).
#[derive(Debug)]
pub struct PeakEwma {
    current: Mutex<Ewma>,
}

// === impl PeakEwma ===

impl PeakEwma {
    /// No sample yet, decaying with `decay`.
    pub fn new(decay: Duration) -> PeakEwma {
        PeakEwma {
            current: Mutex::new(Ewma::new(decay, Instant::now())),
        }
    }

    /// Adds a latency sample taken at `now`.
    pub fn observe(&self, sample: Duration, now: Instant) {
        let mut current = self.lock();
        *current = current.add_peak(sample, now);
    }

    /// The estimate, whatever a panic elsewhere left.
    fn lock(&self) -> MutexGuard<'_, Ewma> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The estimate at `now` (changes nothing); `None` before the first
    /// sample.
    pub fn get_at(&self, now: Instant) -> Option<Duration> {
        self.lock().get_at(now)
    }

    /// The estimate at `now` in seconds, as the balancer compares it.
    pub fn seconds_at(&self, now: Instant) -> Option<f64> {
        self.lock().seconds_at(now)
    }

    /// Sets the decay time (a listener's `ewma_decay`), keeping the
    /// estimate.
    pub fn set_decay(&self, decay: Duration) {
        let mut current = self.lock();
        *current = current.with_decay(decay);
    }
}

impl Default for PeakEwma {
    /// No sample yet, decaying with the default `ewma_decay` (10 s, as
    /// linkerd's: a sample's weight halves in about 7 s).
    fn default() -> PeakEwma {
        PeakEwma::new(crate::config::defaults::EWMA_DECAY)
    }
}

impl From<Ewma> for PeakEwma {
    fn from(ewma: Ewma) -> PeakEwma {
        PeakEwma {
            current: Mutex::new(ewma),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use tokio::time::Instant;

    use super::{Ewma, MIN_DECAY, PeakEwma};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn close(a: Option<Duration>, b: f64) -> bool {
        a.is_some_and(|a| (a.as_secs_f64() - b).abs() < 1e-9)
    }

    #[test]
    fn there_is_no_estimate_before_the_first_sample() {
        let now = Instant::now();
        let ewma = Ewma::new(secs(10), now);
        assert_eq!(ewma.get_at(now), None);
        assert_eq!(ewma.get_at(now + secs(100)), None);
    }

    #[test]
    fn the_first_sample_is_the_estimate() {
        let now = Instant::now();
        let ewma = Ewma::new(secs(10), now).add_peak(ms(20), now);
        assert!(close(ewma.get_at(now), 0.020));
    }

    #[test]
    fn a_read_decays_the_estimate_towards_zero_without_changing_it() {
        let now = Instant::now();
        let ewma = Ewma::new(secs(10), now).add_peak(secs(1), now);
        assert!(close(ewma.get_at(now + secs(10)), (-1.0f64).exp()));
        assert!(close(ewma.get_at(now + secs(20)), (-2.0f64).exp()));
        // Reading changed nothing: the same read gives the same answer.
        assert!(close(ewma.get_at(now + secs(10)), (-1.0f64).exp()));
    }

    #[test]
    fn a_peak_replaces_the_estimate_at_once() {
        let now = Instant::now();
        let ewma = Ewma::new(secs(10), now)
            .add_peak(ms(1), now)
            .add_peak(ms(50), now + ms(1));
        assert!(close(ewma.get_at(now + ms(1)), 0.050));
    }

    #[test]
    fn a_lower_sample_moves_the_estimate_by_the_time_it_stands_for() {
        let now = Instant::now();
        let high = Ewma::new(secs(10), now).add_peak(ms(100), now);
        // 10 ms later: a 1 ms sample barely moves a 100 ms estimate.
        let soon = high.add_peak(ms(1), now + ms(10));
        let soon = soon.get_at(now + ms(10)).unwrap().as_secs_f64();
        assert!(soon > 0.099 && soon < 0.100, "{soon}");
        // One decay time later the old estimate is worth exp(-1) of itself.
        let late = high.add_peak(ms(1), now + secs(10));
        let expected = 0.1 * (-1.0f64).exp() + 0.001 * (1.0 - (-1.0f64).exp());
        assert!(close(late.get_at(now + secs(10)), expected));
    }

    #[test]
    fn a_zero_decay_is_clamped_to_the_minimum() {
        let now = Instant::now();
        let zero = Ewma::new(Duration::ZERO, now).add_peak(ms(5), now);
        let min = Ewma::new(MIN_DECAY, now).add_peak(ms(5), now);
        assert_eq!(zero.decay(), MIN_DECAY);
        let later = now + ms(2);
        assert_eq!(zero.get_at(later), min.get_at(later));
        assert!(zero.get_at(later).is_some_and(|d| d < ms(1)));
    }

    #[test]
    fn a_clock_read_before_the_last_sample_counts_as_no_time() {
        let now = Instant::now();
        let ewma = Ewma::new(secs(10), now).add_peak(ms(30), now + secs(1));
        assert!(close(ewma.get_at(now), 0.030));
        // A late-arriving older sample does not move the stamp back.
        let after = ewma.add_peak(ms(1), now);
        assert!(close(after.get_at(now + secs(1)), 0.030));
    }

    #[test]
    fn a_shared_estimate_takes_samples_from_many_threads() {
        let now = Instant::now();
        let shared = PeakEwma::new(secs(10));
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let shared = &shared;
                scope.spawn(move || {
                    for i in 0..1000u64 {
                        shared.observe(ms(1 + (i + t) % 3), now);
                    }
                });
            }
        });
        // All samples at one instant: the peak, 3 ms, is what stands.
        assert!(close(shared.get_at(now), 0.003));
    }

    #[test]
    fn changing_the_decay_keeps_the_estimate() {
        let now = Instant::now();
        let shared = PeakEwma::new(secs(10));
        shared.observe(ms(8), now);
        shared.set_decay(secs(1));
        assert!(close(shared.get_at(now), 0.008));
        assert!(close(shared.get_at(now + secs(1)), 0.008 * (-1.0f64).exp()));
    }

    proptest! {
        #[test]
        fn the_estimate_stays_between_the_last_sample_and_the_largest(
            samples in proptest::collection::vec((0u64..10_000, 0u64..5_000), 1..100),
            decay_ms in 0u64..20_000,
        ) {
            let start = Instant::now();
            let mut ewma = Ewma::new(ms(decay_ms), start);
            let mut at = start;
            let mut largest = Duration::ZERO;
            for (sample_us, gap_ms) in samples {
                at += ms(gap_ms);
                let sample = Duration::from_micros(sample_us);
                largest = largest.max(sample);
                ewma = ewma.add_peak(sample, at);
                let now = ewma.get_at(at).unwrap();
                prop_assert!(now <= largest + Duration::from_nanos(1));
                // A peak replaces; a lower sample blends into an estimate
                // at least as large: either way never below the sample.
                prop_assert!(now + Duration::from_nanos(1) >= sample);
            }
        }

        #[test]
        fn reading_later_never_gives_a_larger_estimate(
            sample_us in 0u64..1_000_000,
            first in 0u64..100_000,
            second in 0u64..100_000,
        ) {
            let start = Instant::now();
            let ewma = Ewma::new(secs(10), start).add_peak(Duration::from_micros(sample_us), start);
            let (a, b) = (first.min(second), first.max(second));
            prop_assert!(ewma.get_at(start + ms(a)) >= ewma.get_at(start + ms(b)));
        }
    }
}
