//! An instance's link to its fleet's etcd (`[fleet]`, SPEC 10,
//! `docs/fleet.md`): the client every etcd call goes through, whether the
//! fleet task has etcd now (`/api/status`, `balancer_fleet_connected`), the
//! last revision it applied, and why it last lost etcd.
//!
//! Written by the fleet task (`discovery::fleet`), read by the admin API,
//! which also writes through the client and then waits here until this
//! instance's own watch has applied its write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::Fleet;

/// The link of one run of the fleet task: a reload that changes `[fleet]`
/// replaces it whole.
pub struct FleetLink {
    /// The endpoints and prefix it was made for.
    pub settings: Fleet,
    /// The etcd client (cheap to clone: one shared HTTP/2 channel over the
    /// endpoints). It connects lazily: making it never waits for etcd.
    pub client: crate::discovery::fleet::etcd::Client,
    /// Whether the fleet task has etcd now: its read and its watch are up.
    connected: AtomicBool,
    /// Why etcd was last lost, and since when the link is as it is (a std
    /// mutex: held to copy or replace them).
    record: Mutex<Record>,
    /// The last etcd revision applied to this instance's listeners; 0
    /// before the first read.
    applied: watch::Sender<i64>,
}

/// How the link changed last.
#[derive(Debug, Clone)]
struct Record {
    /// Since when `connected` has its value.
    since: SystemTime,
    /// Why etcd was last lost (kept once connected again); `None` when it
    /// never was.
    last_error: Option<String>,
}

/// What `/api/status` shows of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Whether the fleet task has etcd now.
    pub connected: bool,
    /// The last etcd revision applied here; 0 before the first read.
    pub revision: i64,
    /// Why etcd was last lost, in words.
    pub last_error: Option<String>,
    /// Since when `connected` has its value.
    pub since: SystemTime,
}

impl std::fmt::Debug for FleetLink {
    // The client has no Debug of its own.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLink")
            .field("settings", &self.settings)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl FleetLink {
    /// A link for `settings` over `client`, not connected yet.
    pub fn new(settings: Fleet, client: crate::discovery::fleet::etcd::Client) -> FleetLink {
        FleetLink {
            settings,
            client,
            connected: AtomicBool::new(false),
            record: Mutex::new(Record {
                since: SystemTime::now(),
                last_error: None,
            }),
            applied: watch::Sender::new(0),
        }
    }

    /// Whether the fleet task has etcd now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The fleet task has etcd again (or for the first time).
    pub fn connected(&self) {
        let mut record = self.record();
        if !self.connected.swap(true, Ordering::Relaxed) {
            record.since = SystemTime::now();
        }
    }

    /// The fleet task lost etcd (or could not reach it), for `reason`.
    pub fn disconnected(&self, reason: String) {
        let mut record = self.record();
        if self.connected.swap(false, Ordering::Relaxed) {
            record.since = SystemTime::now();
        }
        record.last_error = Some(reason);
    }

    /// Records that every change up to etcd revision `revision` is applied
    /// here. Revisions go up, except when etcd's data was replaced and
    /// everything was read again at its (lower) revision.
    pub fn applied(&self, revision: i64) {
        self.applied.send_if_modified(|applied| {
            let changed = revision != *applied;
            *applied = revision;
            changed
        });
    }

    /// The last revision applied here.
    pub fn revision(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until revision `revision` is applied here, at most `patience`;
    /// whether it was.
    pub async fn wait_applied(&self, revision: i64, patience: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let reached = applied.wait_for(|&applied| applied >= revision);
        matches!(tokio::time::timeout(patience, reached).await, Ok(Ok(_)))
    }

    /// The link as `/api/status` shows it.
    pub fn status(&self) -> LinkStatus {
        let record = self.record().clone();
        LinkStatus {
            connected: self.is_connected(),
            revision: self.revision(),
            last_error: record.last_error,
            since: record.since,
        }
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
