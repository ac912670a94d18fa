//! A backend's health: up, down or draining, the rise/fall counting that
//! moves it between them, and the slow-start ramp after it comes back.
//!
//! # Evidence and states
//!
//! Two kinds of evidence feed one state machine ([`Health`]):
//!
//! - **Active checks** (`[listeners.health_check]`, run by `health/`):
//!   `fall` consecutive failed checks mark an up backend down, `rise`
//!   consecutive passed checks mark a down backend up again.
//! - **Real connects** (passive detection, fed by `proxy/connect.rs`):
//!   `fall` consecutive failed connects ([`PassivePolicy::fall`]) mark an up
//!   backend down; any successful connect resets the count. A backend down
//!   by connects is *tried again* after [`PassivePolicy::backoff`]: from then
//!   on the balancer may pick it as if it were up; the first connect that
//!   succeeds marks it up, a failed one starts another back-off. That works
//!   with or without active checks (with them, passing `rise` checks brings
//!   it back sooner).
//!
//! The two are counted apart, so a passing tcp check every few seconds does
//! not hide a backend whose real connects keep timing out, and a few
//! refused connects during a restart do not undo `rise` passed checks.
//!
//! `draining` is an operator's decision (admin API): no evidence moves a
//! backend out of it, though results are still counted.
//!
//! Why a backend is down ([`DownCause`]) decides whether it may still be
//! tried: one down by connects may be (after its back-off, or as a last
//! resort when nothing is up, see `proxy/connect.rs`); one down by failed
//! active checks, or set down by an operator, may not.
//!
//! # Slow start
//!
//! Every change to `up` from another state starts a ramp: for
//! [`HealthPolicy::slow_start`] the backend's effective weight grows
//! linearly from [`SLOW_START_MIN_PERMILLE`] (10%) of its weight to all of
//! it. Algorithms where weight applies read it through
//! [`Health::weight_permille`]. Backends present when the process starts
//! are at full weight at once (a ramp shared by all of them would change
//! nothing but the total).
//!
//! # Concurrency
//!
//! The data plane reads one byte per pick ([`Health::state`]) and, only
//! while a ramp or back-off is running, the clock; a successful connect
//! costs one more atomic load when nothing failed before it. Everything
//! else (counters of checks, last error, last change) sits behind a std
//! `Mutex` taken on cold paths: a check result, a failed connect, an
//! operator change. Every change of state is made with that lock held, so
//! exactly one caller gets the [`Transition`] back, and logs it once.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Listener, defaults};

/// The share of its weight a backend gets at the start of its slow-start
/// ramp, in thousandths (as Envoy's `min_weight_percent` default, 10%):
/// enough to be probed by real traffic at once, small enough not to flood.
pub const SLOW_START_MIN_PERMILLE: u64 = 100;

/// A backend's full weight, in thousandths of itself.
pub const FULL_PERMILLE: u64 = 1000;

/// Whether a backend takes new connections (SPEC 7's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new connections.
    Up,
    /// Marked down (by checks, failed connects or an operator): no new
    /// connections, except as a trial (see the module doc).
    Down,
    /// Being taken out by an operator: no new connections, open ones finish.
    Draining,
}

impl BackendState {
    /// The word used in logs and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Draining => "draining",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What marked a backend down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// `fall` consecutive failed active checks. Never tried by real
    /// traffic until `rise` checks pass.
    Checks,
    /// `fall` consecutive failed real connects. Tried again after the
    /// back-off, and as a last resort when no backend is up.
    Connects,
    /// An operator (or a test) set it down. Never tried until set up or
    /// until `rise` checks pass.
    Operator,
    /// http mode: [`BAD_ANSWERS_FALL`] answers 502, 503 or 504 from the
    /// backend itself in a row. Like `Connects`: tried again after the
    /// back-off (a good answer brings it back), and as a last resort.
    Answers,
}

/// How many 502, 503 or 504 answers in a row from a backend mark it down
/// (http mode, under passive detection; SPEC 4).
pub const BAD_ANSWERS_FALL: u32 = 5;

impl DownCause {
    /// The words used in the admin API.
    pub fn name(self) -> &'static str {
        match self {
            DownCause::Checks => "checks",
            DownCause::Connects => "connects",
            DownCause::Operator => "operator",
            DownCause::Answers => "answers",
        }
    }
}

/// Passive detection: how real connect failures count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    /// Consecutive failed connects that mark an up backend down; at least 1.
    pub fall: u32,
    /// How long a backend down by failed connects waits before real
    /// traffic tries it again.
    pub backoff: Duration,
}

/// The thresholds and durations of one listener's health handling, given
/// to each of its backends (see [`Health::configure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive passed active checks that mark a down backend up; >= 1.
    pub rise: u32,
    /// Consecutive failed active checks that mark an up backend down; >= 1.
    pub fall: u32,
    /// Passive detection, or `None` when real connect failures only count
    /// as failures and never change the state.
    pub passive: Option<PassivePolicy>,
    /// How long a backend that comes back up takes to reach its full
    /// weight; zero for no ramp.
    pub slow_start: Duration,
}

impl HealthPolicy {
    /// The policy of `listener`'s config: its health check's rise and fall
    /// (the defaults without one, which then only matter if checks are
    /// added), its passive check and its slow start.
    pub fn of(listener: &Listener) -> HealthPolicy {
        let (rise, fall) = listener
            .health_check
            .as_ref()
            .map_or((defaults::RISE, defaults::FALL), |c| (c.rise, c.fall));
        HealthPolicy {
            rise,
            fall,
            passive: listener.passive_check.map(|p| PassivePolicy {
                fall: p.fall,
                backoff: p.backoff,
            }),
            slow_start: listener.slow_start,
        }
    }
}

impl Default for HealthPolicy {
    /// The defaults of `docs/config.md`: rise 2, fall 3, passive detection
    /// after 3 failed connects with a 10 s back-off, 30 s of slow start.
    fn default() -> HealthPolicy {
        HealthPolicy {
            rise: defaults::RISE,
            fall: defaults::FALL,
            passive: Some(PassivePolicy {
                fall: defaults::PASSIVE_CHECK.fall,
                backoff: defaults::PASSIVE_CHECK.backoff,
            }),
            slow_start: defaults::SLOW_START,
        }
    }
}

/// One change of state, returned to the one caller that made it so it is
/// logged once: `is down: 3 failed checks: connection refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: BackendState,
    /// The state after.
    pub to: BackendState,
    /// Why, in words: `3 failed checks: connection refused`.
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "is {}: {}", self.to, self.reason)
    }
}

/// A copy of everything known about a backend's health, for the admin API
/// and metrics; taken under the lock, so its fields agree with each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The current state.
    pub state: BackendState,
    /// What marked it down, when it is down.
    pub down_cause: Option<DownCause>,
    /// Active checks passed in a row (0 after any failed one).
    pub check_successes: u32,
    /// Active checks failed in a row (0 after any passed one).
    pub check_failures: u32,
    /// Real connects failed in a row (0 after any successful one).
    pub connect_failures: u32,
    /// The last failure of a check or connect, in words.
    pub last_error: Option<String>,
    /// The last change of state: when, and why.
    pub last_change: Option<(Instant, String)>,
}

/// The state byte: [`BackendState`] and [`DownCause`] together, so one load says
/// both.
mod code {
    pub const UP: u8 = 0;
    pub const DOWN_CHECKS: u8 = 1;
    pub const DOWN_CONNECTS: u8 = 2;
    pub const DOWN_OPERATOR: u8 = 3;
    pub const DRAINING: u8 = 4;
    pub const DOWN_ANSWERS: u8 = 5;
}

fn decode(byte: u8) -> (BackendState, Option<DownCause>) {
    match byte {
        code::DOWN_CHECKS => (BackendState::Down, Some(DownCause::Checks)),
        code::DOWN_CONNECTS => (BackendState::Down, Some(DownCause::Connects)),
        code::DOWN_OPERATOR => (BackendState::Down, Some(DownCause::Operator)),
        code::DOWN_ANSWERS => (BackendState::Down, Some(DownCause::Answers)),
        code::DRAINING => (BackendState::Draining, None),
        _ => (BackendState::Up, None),
    }
}

fn encode(state: BackendState, cause: DownCause) -> u8 {
    match (state, cause) {
        (BackendState::Up, _) => code::UP,
        (BackendState::Draining, _) => code::DRAINING,
        (BackendState::Down, DownCause::Checks) => code::DOWN_CHECKS,
        (BackendState::Down, DownCause::Connects) => code::DOWN_CONNECTS,
        (BackendState::Down, DownCause::Operator) => code::DOWN_OPERATOR,
        (BackendState::Down, DownCause::Answers) => code::DOWN_ANSWERS,
    }
}

/// Instants as nanoseconds since a process-wide origin, so they fit in an
/// atomic. 0 is kept free to mean "not set": every stamp is at least 1.
fn stamp(at: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let nanos = at.saturating_duration_since(origin).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).saturating_add(1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `n thing` or `n things`.
fn count(n: u32, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// What the lock guards: everything not read per pick.
#[derive(Debug)]
struct Record {
    policy: HealthPolicy,
    check_successes: u32,
    check_failures: u32,
    last_error: Option<String>,
    last_change: Option<(Instant, String)>,
}

/// The health of one backend of one listener: its state, the evidence
/// counted towards changing it, and its slow-start ramp.
#[derive(Debug)]
pub struct Health {
    /// [`BackendState`] and [`DownCause`] as one byte (see `code`): the only field
    /// read on every pick. Written only with `record` locked.
    state: AtomicU8,
    /// Real connects failed in a row. An atomic because every successful
    /// connect reads it (and resets it when it is not 0).
    connect_failures: AtomicU32,
    /// http mode: answers 502, 503 or 504 in a row; read (and reset when
    /// not 0) by every other answer.
    bad_answers: AtomicU32,
    /// When a backend down by connects may be tried again ([`stamp`]).
    retry_at: AtomicU64,
    /// When the current slow-start ramp began ([`stamp`]); 0 when none runs.
    ramp_start: AtomicU64,
    /// How long the current ramp lasts, in nanoseconds.
    ramp_len: AtomicU64,
    /// Counters, last error and policy; a std `Mutex`, never held across
    /// an `.await`.
    record: Mutex<Record>,
}

// === impl Health ===

impl Health {
    /// A backend that is up, at full weight, with nothing counted yet.
    pub fn new(policy: HealthPolicy) -> Health {
        Health {
            state: AtomicU8::new(code::UP),
            connect_failures: AtomicU32::new(0),
            bad_answers: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            ramp_start: AtomicU64::new(0),
            ramp_len: AtomicU64::new(0),
            record: Mutex::new(Record {
                policy,
                check_successes: 0,
                check_failures: 0,
                last_error: None,
                last_change: None,
            }),
        }
    }

    /// Sets the thresholds (when a listener's snapshot is built, and again on
    /// every change of its config); counts so far are kept.
    pub fn configure(&self, policy: HealthPolicy) {
        self.lock().policy = policy;
    }

    /// The current state; one atomic load.
    pub fn state(&self) -> BackendState {
        decode(self.state.load(Ordering::Relaxed)).0
    }

    /// What marked the backend down, when it is down.
    #[cfg(test)]
    pub fn down_cause(&self) -> Option<DownCause> {
        decode(self.state.load(Ordering::Relaxed)).1
    }

    /// Whether the balancer may hand this backend a new connection at
    /// `now`: it is up, or it was marked down by failed connects and its
    /// back-off has run out (a trial). Reads the clock only in that case.
    pub fn is_available(&self, now: impl FnOnce() -> Instant) -> bool {
        match self.state.load(Ordering::Relaxed) {
            code::UP => true,
            code::DOWN_CONNECTS | code::DOWN_ANSWERS => {
                self.retry_at.load(Ordering::Relaxed) <= stamp(now())
            }
            _ => false,
        }
    }

    /// Whether the backend may be tried as a last resort when no backend is
    /// available: it was marked down by failed connects only (so nothing
    /// has shown it is gone for good), whatever its back-off.
    pub fn is_last_resort(&self) -> bool {
        matches!(
            self.state.load(Ordering::Relaxed),
            code::DOWN_CONNECTS | code::DOWN_ANSWERS
        )
    }

    /// Whether real traffic marked it down (failed connects or bad
    /// answers): what passive detection's cap counts.
    pub fn is_down_by_traffic(&self) -> bool {
        self.is_last_resort()
    }

    /// The share of its weight the backend competes with at `now`, in
    /// thousandths: [`FULL_PERMILLE`] except during a slow-start ramp,
    /// where it grows linearly from [`SLOW_START_MIN_PERMILLE`]. Reads the
    /// clock only while a ramp runs.
    pub fn weight_permille(&self, now: impl FnOnce() -> Instant) -> u64 {
        let start = self.ramp_start.load(Ordering::Relaxed);
        if start == 0 {
            return FULL_PERMILLE;
        }
        let len = self.ramp_len.load(Ordering::Relaxed);
        let elapsed = stamp(now()).saturating_sub(start);
        if elapsed >= len {
            // The ramp is over: later reads skip the clock. A new ramp
            // started meanwhile is not undone (the exchange fails).
            let _ =
                self.ramp_start
                    .compare_exchange(start, 0, Ordering::Relaxed, Ordering::Relaxed);
            return FULL_PERMILLE;
        }
        let grown = u128::from(elapsed) * u128::from(FULL_PERMILLE) / u128::from(len.max(1));
        u64::try_from(grown)
            .unwrap_or(FULL_PERMILLE)
            .clamp(SLOW_START_MIN_PERMILLE, FULL_PERMILLE)
    }

    /// Real connects failed in a row.
    pub fn connect_failures(&self) -> u32 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    /// A copy of everything known, for the admin API and metrics.
    pub fn snapshot(&self) -> HealthSnapshot {
        let record = self.lock();
        let (state, down_cause) = decode(self.state.load(Ordering::Relaxed));
        HealthSnapshot {
            state,
            down_cause,
            check_successes: record.check_successes,
            check_failures: record.check_failures,
            connect_failures: self.connect_failures(),
            last_error: record.last_error.clone(),
            last_change: record.last_change.clone(),
        }
    }

    /// Counts one active check result at `now`; returns the change of
    /// state it caused, if any (to be logged once by the caller).
    pub fn record_check(&self, result: Result<(), &str>, now: Instant) -> Option<Transition> {
        let mut record = self.lock();
        let (state, cause) = decode(self.state.load(Ordering::Relaxed));
        match result {
            Ok(()) => {
                record.check_failures = 0;
                record.check_successes = record.check_successes.saturating_add(1);
                let passed = record.check_successes;
                if state == BackendState::Down && passed >= record.policy.rise {
                    self.connect_failures.store(0, Ordering::Relaxed);
                    self.bad_answers.store(0, Ordering::Relaxed);
                    let reason = count(passed, "passed check");
                    return Some(self.change(
                        &mut record,
                        BackendState::Up,
                        DownCause::Checks,
                        reason,
                        now,
                    ));
                }
            }
            Err(error) => {
                record.check_successes = 0;
                record.check_failures = record.check_failures.saturating_add(1);
                record.last_error = Some(error.to_string());
                let failed = record.check_failures;
                if failed >= record.policy.fall {
                    if state == BackendState::Up {
                        let reason = format!("{}: {error}", count(failed, "failed check"));
                        return Some(self.change(
                            &mut record,
                            BackendState::Down,
                            DownCause::Checks,
                            reason,
                            now,
                        ));
                    }
                    if matches!(cause, Some(DownCause::Connects | DownCause::Answers)) {
                        // Checks now agree it is gone: no more trials.
                        self.state.store(code::DOWN_CHECKS, Ordering::Relaxed);
                    }
                }
            }
        }
        None
    }

    /// Counts a successful real connect at `now`: resets the failed-connect
    /// count and marks a backend that was down by failed connects up.
    /// The common case (nothing failed before) is one atomic load.
    pub fn record_connect_success(&self, now: Instant) -> Option<Transition> {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Relaxed) != code::DOWN_CONNECTS {
            return None;
        }
        let mut record = self.lock();
        if self.state.load(Ordering::Relaxed) != code::DOWN_CONNECTS {
            return None;
        }
        let reason = "a connect succeeded".to_string();
        Some(self.change(
            &mut record,
            BackendState::Up,
            DownCause::Connects,
            reason,
            now,
        ))
    }

    /// Counts a failed real connect at `now`, `error` saying why: `fall` in
    /// a row (under passive detection) mark an up backend down; a failed
    /// trial of a backend already down by connects starts a new back-off.
    pub fn record_connect_failure(&self, error: &str, now: Instant) -> Option<Transition> {
        let failed = self
            .connect_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let mut record = self.lock();
        record.last_error = Some(error.to_string());
        let passive = record.policy.passive?;
        match self.state.load(Ordering::Relaxed) {
            code::UP if failed >= passive.fall => {
                self.retry_at
                    .store(stamp(now + passive.backoff), Ordering::Relaxed);
                let reason = format!("{}: {error}", count(failed, "failed connect"));
                Some(self.change(
                    &mut record,
                    BackendState::Down,
                    DownCause::Connects,
                    reason,
                    now,
                ))
            }
            code::DOWN_CONNECTS => {
                self.retry_at
                    .store(stamp(now + passive.backoff), Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    /// Counts one answer from the backend (http mode) at `now`: `bad` for a
    /// 502, 503 or 504 it sent itself. [`BAD_ANSWERS_FALL`] bad ones in a
    /// row (under passive detection) mark an up backend down, unless
    /// `may_go_down` (asked only then) says too many of its listener's
    /// backends are down by traffic already; a bad trial of a backend down
    /// by answers starts a new back-off, a good answer brings it back up.
    /// The common case (a good answer, nothing bad before) is one atomic
    /// load.
    pub fn record_answer(
        &self,
        bad: bool,
        now: Instant,
        may_go_down: impl FnOnce() -> bool,
    ) -> Option<Transition> {
        if !bad {
            if self.bad_answers.load(Ordering::Relaxed) != 0 {
                self.bad_answers.store(0, Ordering::Relaxed);
            }
            if self.state.load(Ordering::Relaxed) != code::DOWN_ANSWERS {
                return None;
            }
            let mut record = self.lock();
            if self.state.load(Ordering::Relaxed) != code::DOWN_ANSWERS {
                return None;
            }
            let reason = "a good answer".to_string();
            return Some(self.change(
                &mut record,
                BackendState::Up,
                DownCause::Answers,
                reason,
                now,
            ));
        }
        let failed = self
            .bad_answers
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let mut record = self.lock();
        let passive = record.policy.passive?;
        match self.state.load(Ordering::Relaxed) {
            code::UP if failed >= BAD_ANSWERS_FALL && may_go_down() => {
                self.retry_at
                    .store(stamp(now + passive.backoff), Ordering::Relaxed);
                let reason = format!("{} 502, 503 or 504 in a row", count(failed, "answer"));
                Some(self.change(
                    &mut record,
                    BackendState::Down,
                    DownCause::Answers,
                    reason,
                    now,
                ))
            }
            code::DOWN_ANSWERS => {
                self.retry_at
                    .store(stamp(now + passive.backoff), Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    /// Sets the state by an operator's decision (admin API, tests); returns
    /// the previous state. `Down` set this way is never tried by real
    /// traffic; `Up` from any other state starts a slow-start ramp.
    pub fn set_state(&self, state: BackendState, now: Instant) -> BackendState {
        let mut record = self.lock();
        let (before, _) = decode(self.state.load(Ordering::Relaxed));
        if before != state {
            let reason = "set by an operator".to_string();
            self.change(&mut record, state, DownCause::Operator, reason, now);
        }
        before
    }

    /// Starts a slow-start ramp at `now` as long as the policy says (for a
    /// backend added to a running listener).
    pub fn start_ramp(&self, now: Instant) {
        let slow_start = self.lock().policy.slow_start;
        self.ramp(slow_start, now);
    }

    fn ramp(&self, len: Duration, now: Instant) {
        if len.is_zero() {
            self.ramp_start.store(0, Ordering::Relaxed);
        } else {
            self.ramp_len.store(nanos(len), Ordering::Relaxed);
            self.ramp_start.store(stamp(now), Ordering::Relaxed);
        }
    }

    /// Makes a change of state (the lock is held by the caller, so exactly
    /// one caller makes each change) and describes it.
    fn change(
        &self,
        record: &mut Record,
        to: BackendState,
        cause: DownCause,
        reason: String,
        now: Instant,
    ) -> Transition {
        let (from, _) = decode(self.state.swap(encode(to, cause), Ordering::Relaxed));
        if to == BackendState::Up && from != BackendState::Up {
            self.ramp(record.policy.slow_start, now);
        }
        if to == BackendState::Up {
            record.check_failures = 0;
        }
        record.last_change = Some((now, reason.clone()));
        Transition { from, to, reason }
    }

    /// The record; a panic while it was held cannot leave it inconsistent
    /// (every write is one assignment), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Health {
    fn default() -> Health {
        Health::new(HealthPolicy::default())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            rise: 2,
            fall: 3,
            passive: Some(PassivePolicy {
                fall: 2,
                backoff: Duration::from_secs(10),
            }),
            slow_start: Duration::from_secs(100),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_backend_is_up_at_full_weight() {
        let health = Health::new(policy());
        let now = Instant::now();
        assert_eq!(health.state(), BackendState::Up);
        assert!(health.is_available(|| now));
        assert_eq!(health.weight_permille(|| now), FULL_PERMILLE);
    }

    #[test]
    fn fall_failed_checks_in_a_row_mark_it_down_once_with_the_reason() {
        let health = Health::new(policy());
        let now = Instant::now();
        assert_eq!(health.record_check(Err("connection refused"), now), None);
        assert_eq!(health.record_check(Err("connection refused"), now), None);
        let change = health.record_check(Err("connection refused"), now);
        assert_eq!(
            change.map(|t| t.to_string()).as_deref(),
            Some("is down: 3 failed checks: connection refused")
        );
        assert_eq!(health.state(), BackendState::Down);
        assert_eq!(health.down_cause(), Some(DownCause::Checks));
        assert!(!health.is_available(|| now + secs(3600)));
        // More failures change nothing more, so nothing is logged twice.
        assert_eq!(health.record_check(Err("connection refused"), now), None);
    }

    #[test]
    fn a_passed_check_resets_the_failed_count() {
        let health = Health::new(policy());
        let now = Instant::now();
        health.record_check(Err("timed out"), now);
        health.record_check(Err("timed out"), now);
        health.record_check(Ok(()), now);
        health.record_check(Err("timed out"), now);
        health.record_check(Err("timed out"), now);
        assert_eq!(health.state(), BackendState::Up);
        assert_eq!(health.snapshot().check_failures, 2);
    }

    #[test]
    fn rise_passed_checks_bring_it_back_up_with_a_slow_start_ramp() {
        let health = Health::new(policy());
        let start = Instant::now();
        for _ in 0..3 {
            health.record_check(Err("refused"), start);
        }
        let back = start + secs(5);
        assert_eq!(health.record_check(Ok(()), back), None);
        let change = health.record_check(Ok(()), back).map(|t| t.to_string());
        assert_eq!(change.as_deref(), Some("is up: 2 passed checks"));
        assert!(health.is_available(|| back));
        assert_eq!(health.weight_permille(|| back), SLOW_START_MIN_PERMILLE);
        assert_eq!(health.weight_permille(|| back + secs(50)), 500);
        assert_eq!(health.weight_permille(|| back + secs(100)), FULL_PERMILLE);
    }

    #[test]
    fn the_ramp_never_goes_below_its_minimum_or_back_down_once_over() {
        let health = Health::new(policy());
        let start = Instant::now();
        health.set_state(BackendState::Down, start);
        health.set_state(BackendState::Up, start);
        assert_eq!(health.weight_permille(|| start + secs(5)), 100);
        assert_eq!(health.weight_permille(|| start + secs(20)), 200);
        assert_eq!(health.weight_permille(|| start + secs(200)), 1000);
        // Over: a read with an earlier clock no longer sees a ramp.
        assert_eq!(health.weight_permille(|| start), 1000);
    }

    #[test]
    fn no_slow_start_means_full_weight_at_once() {
        let health = Health::new(HealthPolicy {
            slow_start: Duration::ZERO,
            ..policy()
        });
        let now = Instant::now();
        health.set_state(BackendState::Down, now);
        health.set_state(BackendState::Up, now);
        assert_eq!(health.weight_permille(|| now), FULL_PERMILLE);
    }

    #[test]
    fn fall_failed_connects_mark_it_down_and_it_is_tried_again_after_the_backoff() {
        let health = Health::new(policy());
        let start = Instant::now();
        assert_eq!(health.record_connect_failure("refused", start), None);
        let change = health.record_connect_failure("refused", start);
        assert_eq!(
            change.map(|t| t.to_string()).as_deref(),
            Some("is down: 2 failed connects: refused")
        );
        assert_eq!(health.down_cause(), Some(DownCause::Connects));
        assert!(!health.is_available(|| start + secs(9)));
        assert!(health.is_available(|| start + secs(10)));
        // The trial succeeds: up again, ramping.
        let trial = start + secs(11);
        let change = health.record_connect_success(trial).map(|t| t.to_string());
        assert_eq!(change.as_deref(), Some("is up: a connect succeeded"));
        assert_eq!(health.state(), BackendState::Up);
        assert_eq!(health.connect_failures(), 0);
        assert_eq!(health.weight_permille(|| trial), SLOW_START_MIN_PERMILLE);
    }

    #[test]
    fn a_failed_trial_starts_a_new_backoff_without_a_new_transition() {
        let health = Health::new(policy());
        let start = Instant::now();
        health.record_connect_failure("refused", start);
        health.record_connect_failure("refused", start);
        let trial = start + secs(10);
        assert!(health.is_available(|| trial));
        assert_eq!(health.record_connect_failure("refused", trial), None);
        assert!(!health.is_available(|| trial + secs(9)));
        assert!(health.is_available(|| trial + secs(10)));
    }

    #[test]
    fn a_successful_connect_resets_the_failed_connect_count() {
        let health = Health::new(policy());
        let now = Instant::now();
        health.record_connect_failure("refused", now);
        assert_eq!(health.record_connect_success(now), None);
        assert_eq!(health.record_connect_failure("refused", now), None);
        assert_eq!(health.state(), BackendState::Up);
    }

    #[test]
    fn without_passive_detection_failed_connects_only_record_the_error() {
        let health = Health::new(HealthPolicy {
            passive: None,
            ..policy()
        });
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(health.record_connect_failure("refused", now), None);
        }
        assert_eq!(health.state(), BackendState::Up);
        let snapshot = health.snapshot();
        assert_eq!(snapshot.connect_failures, 10);
        assert_eq!(snapshot.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn failed_checks_of_a_backend_down_by_connects_stop_its_trials() {
        let health = Health::new(policy());
        let start = Instant::now();
        health.record_connect_failure("refused", start);
        health.record_connect_failure("refused", start);
        assert!(health.is_last_resort());
        for _ in 0..3 {
            assert_eq!(health.record_check(Err("refused"), start), None);
        }
        assert_eq!(health.down_cause(), Some(DownCause::Checks));
        assert!(!health.is_available(|| start + secs(3600)));
        assert!(!health.is_last_resort());
    }

    #[test]
    fn passed_checks_bring_back_a_backend_down_by_connects() {
        let health = Health::new(policy());
        let now = Instant::now();
        health.record_connect_failure("refused", now);
        health.record_connect_failure("refused", now);
        health.record_check(Ok(()), now);
        let change = health.record_check(Ok(()), now);
        assert_eq!(change.map(|t| t.to), Some(BackendState::Up));
        assert_eq!(health.connect_failures(), 0);
    }

    #[test]
    fn draining_is_left_only_by_an_operator() {
        let health = Health::new(policy());
        let now = Instant::now();
        assert_eq!(
            health.set_state(BackendState::Draining, now),
            BackendState::Up
        );
        for _ in 0..5 {
            assert_eq!(health.record_check(Err("refused"), now), None);
            assert_eq!(health.record_connect_failure("refused", now), None);
        }
        for _ in 0..5 {
            assert_eq!(health.record_check(Ok(()), now), None);
        }
        assert_eq!(health.state(), BackendState::Draining);
        assert!(!health.is_available(|| now));
        assert!(!health.is_last_resort());
        assert_eq!(
            health.set_state(BackendState::Up, now),
            BackendState::Draining
        );
        assert_eq!(health.weight_permille(|| now), SLOW_START_MIN_PERMILLE);
    }

    #[test]
    fn a_backend_set_down_by_an_operator_is_never_tried() {
        let health = Health::new(policy());
        let now = Instant::now();
        health.set_state(BackendState::Down, now);
        assert!(!health.is_available(|| now + secs(3600)));
        assert!(!health.is_last_resort());
        assert_eq!(health.down_cause(), Some(DownCause::Operator));
    }

    #[test]
    fn the_snapshot_names_the_last_change_and_error() {
        let health = Health::new(policy());
        let now = Instant::now();
        for _ in 0..3 {
            health.record_check(Err("timed out after 1s"), now);
        }
        let snapshot = health.snapshot();
        assert_eq!(snapshot.state, BackendState::Down);
        assert_eq!(snapshot.check_failures, 3);
        assert_eq!(snapshot.last_error.as_deref(), Some("timed out after 1s"));
        assert_eq!(
            snapshot.last_change,
            Some((now, "3 failed checks: timed out after 1s".to_string()))
        );
    }

    #[test]
    fn many_threads_failing_at_once_get_exactly_one_transition() {
        let health = Health::new(policy());
        let now = Instant::now();
        let changes: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..100)
                            .filter(|_| health.record_connect_failure("refused", now).is_some())
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(changes, 1);
    }
}
