//! Passive detection: the results of real connects (from
//! `proxy/connect.rs`) fed into the same state machine as active checks
//! ([`Health`](crate::backend::Health)), and the last resort used when no
//! backend is available.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::log_transition;
use crate::backend::Backend;
use crate::net::connect::ConnectError;

/// A connect to `backend` of `listener` succeeded after `latency`: a
/// latency sample for the EWMA when given (tcp mode; http mode samples the
/// time to the answer instead, see [`answered`]), and a success that resets
/// the failed count (and brings back a backend that was down by failed
/// connects).
pub fn connect_succeeded(
    listener: &str,
    backend: &Backend,
    latency: Option<Duration>,
    now: Instant,
) {
    if let Some(latency) = latency {
        backend.latency.observe(latency, now);
    }
    if let Some(change) = backend.health.record_connect_success(now) {
        log_transition(listener, backend, &change);
    }
}

/// A connect to `backend` of `listener` failed: counted, and `fall` in a
/// row mark it down. A timeout is also a latency sample (the latency was
/// at least that long), so `power_of_two` steers away at once; a refused
/// connect says nothing about latency.
pub fn connect_failed(listener: &str, backend: &Backend, error: &ConnectError, now: Instant) {
    backend.stats.record_connect_failure();
    if let ConnectError::Timeout(waited) = error {
        backend.latency.observe(*waited, now);
    }
    if let Some(change) = backend
        .health
        .record_connect_failure(&error.to_string(), now)
    {
        log_transition(listener, backend, &change);
    }
}

/// The latency sample of an answer with a 5xx status, when it came faster:
/// a backend that fails fast must not look fast to `power_of_two`.
pub const SLOW_ANSWER: Duration = Duration::from_secs(1);

/// `backend` of `listener` (one of `set`, its backends) answered with
/// `status` (its own answer, not the balancer's) `latency` after the
/// request was sent (http mode): the time to the answer's head is the
/// EWMA's sample (a 5xx counts as at least [`SLOW_ANSWER`]), and a 502,
/// 503 or 504 counts towards marking it down, which passive detection
/// never does to more than half (rounded down) of `set` at once.
pub fn answered(
    listener: &str,
    backend: &Backend,
    set: &[Arc<Backend>],
    status: u16,
    latency: Duration,
    now: Instant,
) {
    let sample = if status >= 500 {
        latency.max(SLOW_ANSWER)
    } else {
        latency
    };
    backend.latency.observe(sample, now);
    let bad = matches!(status, 502..=504);
    let cap = set.len() / 2;
    let may_go_down = || set.iter().filter(|b| b.health.is_down_by_traffic()).count() < cap;
    if let Some(change) = backend.health.record_answer(bad, now, may_go_down) {
        log_transition(listener, backend, &change);
    }
}

/// The backend to try when the balancer has none left: the first, in
/// config order, that was marked down by failed real connects only and is
/// not in `tried`. Backends marked down by failed active checks, set down
/// by an operator, or draining are never tried: a failed check is better
/// evidence than a failed connect, and draining is a decision.
pub fn last_resort(backends: &[Arc<Backend>], tried: &[usize]) -> Option<usize> {
    backends
        .iter()
        .enumerate()
        .find(|(i, b)| !tried.contains(i) && b.health.is_last_resort())
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{SLOW_ANSWER, answered, connect_failed, connect_succeeded, last_resort};
    use crate::backend::BackendState;
    use crate::backend::health::DownCause;
    use crate::balance::tests::equal_backends;
    use crate::net::connect::ConnectError;

    fn refused() -> ConnectError {
        ConnectError::Io(io::Error::from(io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn three_refused_connects_mark_a_backend_down_by_connects() {
        let set = equal_backends(1);
        let now = Instant::now();
        for _ in 0..3 {
            connect_failed("web", &set[0], &refused(), now);
        }
        assert_eq!(set[0].state(), BackendState::Down);
        assert_eq!(set[0].health.down_cause(), Some(DownCause::Connects));
        let snapshot = set[0].health.snapshot();
        assert_eq!(snapshot.last_error.as_deref(), Some("connection refused"));
        assert_eq!(
            set[0]
                .stats
                .connect_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn a_timeout_is_a_latency_sample_and_a_refusal_is_not() {
        let set = equal_backends(2);
        let now = Instant::now();
        connect_failed(
            "web",
            &set[0],
            &ConnectError::Timeout(Duration::from_secs(3)),
            now,
        );
        connect_failed("web", &set[1], &refused(), now);
        assert_eq!(set[0].latency.get_at(now), Some(Duration::from_secs(3)));
        assert_eq!(set[1].latency.get_at(now), None);
    }

    #[test]
    fn a_success_records_the_latency_and_brings_the_backend_back() {
        let set = equal_backends(1);
        let now = Instant::now();
        for _ in 0..3 {
            connect_failed("web", &set[0], &refused(), now);
        }
        connect_succeeded("web", &set[0], Some(Duration::from_millis(2)), now);
        assert_eq!(set[0].state(), BackendState::Up);
        assert_eq!(set[0].latency.get_at(now), Some(Duration::from_millis(2)));
    }

    #[test]
    fn five_bad_answers_in_a_row_mark_a_backend_down_and_a_good_one_brings_it_back() {
        let set = equal_backends(4);
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        for status in [502, 503, 504, 502] {
            answered("web", &set[0], &set, status, ms, now);
        }
        // A good answer in between starts the count again.
        answered("web", &set[0], &set, 200, ms, now);
        for _ in 0..4 {
            answered("web", &set[0], &set, 503, ms, now);
        }
        assert_eq!(set[0].state(), BackendState::Up);
        // Any other answer (a 500 too: the application's error, not a
        // gateway's) breaks the run.
        answered("web", &set[0], &set, 500, ms, now);
        answered("web", &set[0], &set, 503, ms, now);
        assert_eq!(set[0].state(), BackendState::Up);
        for _ in 0..4 {
            answered("web", &set[0], &set, 504, ms, now);
        }
        assert_eq!(set[0].state(), BackendState::Down);
        assert_eq!(set[0].health.down_cause(), Some(DownCause::Answers));
        assert_eq!(last_resort(&set, &[]), Some(0));
        answered("web", &set[0], &set, 200, ms, now);
        assert_eq!(set[0].state(), BackendState::Up);
    }

    #[test]
    fn bad_answers_never_take_more_than_half_of_the_backends_down() {
        let set = equal_backends(5);
        let now = Instant::now();
        for backend in &set {
            for _ in 0..10 {
                answered("web", backend, &set, 502, Duration::from_millis(1), now);
            }
        }
        let down = set
            .iter()
            .filter(|b| b.state() == BackendState::Down)
            .count();
        assert_eq!(down, 2, "5 backends: at most 2 down by traffic");
    }

    #[test]
    fn a_fast_5xx_is_a_slow_sample_and_a_fast_200_a_fast_one() {
        let set = equal_backends(2);
        let now = Instant::now();
        let fast = Duration::from_millis(3);
        answered("web", &set[0], &set, 500, fast, now);
        answered("web", &set[1], &set, 200, fast, now);
        assert_eq!(set[0].latency.get_at(now), Some(SLOW_ANSWER));
        assert_eq!(set[1].latency.get_at(now), Some(fast));
    }

    #[test]
    fn the_last_resort_is_a_backend_down_by_connects_only() {
        let set = equal_backends(4);
        let now = Instant::now();
        set[0].set_state(BackendState::Draining);
        set[1].set_state(BackendState::Down);
        for _ in 0..3 {
            set[2].health.record_check(Err("refused"), now);
            connect_failed("web", &set[3], &refused(), now);
        }
        assert_eq!(last_resort(&set, &[]), Some(3));
        assert_eq!(last_resort(&set, &[3]), None);
    }
}
