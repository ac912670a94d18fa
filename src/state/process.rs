//! What the process as a whole is doing, for the admin API and probes:
//! whether it is serving or draining (`/ready`), and which config
//! generation is in force, with how the last reload went.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::access_log::AccessLog;
use std::time::SystemTime;

/// The process's own state, shared by the runtime (its only writer) and
/// the admin server.
#[derive(Debug)]
pub struct Process {
    /// True while serving; false from the moment a shutdown is requested,
    /// so an outer balancer sees `/ready` fail before the listeners close.
    ready: AtomicBool,
    /// The config generation in force: 1 at start, one more per good
    /// reload.
    generation: AtomicU64,
    /// Reloads that were applied.
    reloads_ok: AtomicU64,
    /// Reloads that changed nothing because the file (or a bind) failed.
    reloads_failed: AtomicU64,
    /// The last reload, if any (a std mutex: held to copy or replace it).
    last_reload: Mutex<Option<ReloadRecord>>,
    /// The access log every listener writes to (each slot holds this
    /// handle too); empty when it is off.
    pub access_log: super::SharedAccessLog,
    /// The link to the fleet's etcd, with `[fleet]`: swapped by a reload
    /// that changes `[fleet]`, read by the admin API.
    pub fleet: arc_swap::ArcSwapOption<super::fleet::FleetLink>,
}

/// How one reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When it finished.
    pub at: SystemTime,
    /// `Ok(generation now in force)`, or every problem, one per line.
    pub result: Result<u64, String>,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            ready: AtomicBool::new(true),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload: Mutex::new(None),
            access_log: super::SharedAccessLog::default(),
            fleet: arc_swap::ArcSwapOption::empty(),
        }
    }
}

impl Process {
    /// The process state of a run whose access log is `log` (or none).
    pub fn with_access_log(self: Arc<Self>, log: Option<AccessLog>) -> Arc<Self> {
        self.access_log.store(log.map(Arc::new));
        self
    }

    /// Whether the process takes new traffic (`/ready` answers 200).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the process as draining: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    /// The config generation in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Records a good reload: the generation goes up by one, which is
    /// returned.
    pub fn reloaded(&self) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        self.record(Ok(generation));
        generation
    }

    /// Records a reload that changed nothing, with its problems.
    pub fn reload_failed(&self, problems: String) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.record(Err(problems));
    }

    /// Reloads so far: `(applied, failed)`.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// The last reload, if any.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Access log lines dropped so far (queue full, or the target could
    /// not be written); 0 without an access log.
    pub fn access_log_dropped(&self) -> u64 {
        self.access_log
            .load()
            .as_ref()
            .map_or(0, |log| log.dropped())
    }

    fn record(&self, result: Result<u64, String>) {
        let record = ReloadRecord {
            at: SystemTime::now(),
            result,
        };
        *self
            .last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(record);
    }
}
