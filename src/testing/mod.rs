//! What the unit tests share (compiled for `cargo test` only): waiting for
//! a condition with a deadline instead of sleeping, reading samples out of
//! `/metrics` text, and builders for configs with every default filled in,
//! so a test names only what it is about and a new config field breaks no
//! test.

mod metrics_text;

use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) use metrics_text::sample;

/// How long a condition may take before a test fails: generous for a
/// loaded 2-core CI machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test (naming `what`) after
/// [`DEADLINE`] of real time.
///
/// Between polls it sleeps a few milliseconds of tokio time, so it works
/// with paused time too (the sleep then advances the clock at once, and the
/// loop is bounded by the real deadline).
pub(crate) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
