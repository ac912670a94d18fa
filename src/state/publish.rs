//! How a listener's changes become its next snapshot, coalesced.
//!
//! A change is an edit of a [`Draft`] (the listener's config and backend
//! list): cheap, applied at once by the caller, in order with every other
//! change to that listener. Building the snapshot from the draft is what
//! costs (a Maglev table over 10,000 backends takes a third of a second),
//! so it is done once for every change that came in meanwhile: the first
//! caller to find no build running builds the latest draft and publishes
//! it, and keeps going while more edits arrive; the others wait until a
//! build that holds their edit is published. Sixteen changes sent together
//! cost one or two builds, not sixteen, and a caller returns only once its
//! change is in force.
//!
//! Callers run on tokio's blocking pool (`state::change` sends them
//! there), never on a worker thread: they block on the locks below. The
//! build itself runs on one thread of lower priority than the workers, so
//! that on a busy machine the data plane goes first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use super::{ListenerSlot, Snapshot};
use crate::backend::Backend;
use crate::config::Listener;

/// A listener's config and backends as changes leave them, before the
/// snapshot is built.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The listener's config.
    pub config: Listener,
    /// Its backends, shared with the snapshots that keep them.
    pub backends: Vec<Arc<Backend>>,
}

impl Draft {
    /// The backend named `address`, if listed.
    pub fn backend(&self, address: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.address == address)
    }
}

/// The coalescing of one listener's changes.
#[derive(Debug, Default)]
pub struct Publisher {
    /// The latest draft, and how many edits the listener has had in all
    /// (each edit's number is its place in line) and built.
    pending: Mutex<Pending>,
    /// Held by the one caller building; others wait on `published`.
    building: Mutex<()>,
    /// The number of the last edit whose snapshot is published.
    published: Mutex<u64>,
    /// Signalled on every publish.
    progress: Condvar,
    /// Snapshots built so far (for tests and operators: coalescing shows).
    builds: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// The listener as every edit so far leaves it (built or not); made
    /// from the snapshot at the first edit, then the one place edits go.
    draft: Option<Draft>,
    /// Edits so far.
    edits: u64,
    /// Edits in the draft the last build started from.
    built: u64,
}

/// How long a waiter sleeps before it looks whether it must build itself
/// (the builder may have finished just before the waiter's edit came in).
const RECHECK: Duration = Duration::from_millis(5);

impl Publisher {
    /// Snapshots built so far.
    #[cfg(test)]
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// Applies `edit` to the latest draft of `slot`'s listener; when it
    /// succeeds, returns its result once a snapshot holding it is
    /// published. An edit that fails must leave the draft as it found it:
    /// nothing is published for it.
    pub fn change<T, E>(
        &self,
        slot: &ListenerSlot,
        edit: impl FnOnce(&mut Draft) -> Result<T, E>,
    ) -> Result<T, E> {
        let (out, mine) = {
            let mut pending = lock(&self.pending);
            let draft = pending.draft.get_or_insert_with(|| {
                let current = slot.snapshot.load();
                Draft {
                    config: current.config.clone(),
                    backends: current.backends.clone(),
                }
            });
            let out = edit(draft)?;
            pending.edits += 1;
            (out, pending.edits)
        };
        self.wait_until_published(slot, mine);
        Ok(out)
    }

    /// Returns once edit number `mine` is published, building it (and
    /// whatever came after) when no one else is.
    fn wait_until_published(&self, slot: &ListenerSlot, mine: u64) {
        loop {
            if let Ok(_building) = self.building.try_lock() {
                self.build_until(slot, mine);
            }
            let published = lock(&self.published);
            if *published >= mine {
                return;
            }
            let (published, _) = self
                .progress
                .wait_timeout_while(published, RECHECK, |published| *published < mine)
                .unwrap_or_else(PoisonError::into_inner);
            if *published >= mine {
                return;
            }
        }
    }

    /// Builds and publishes the pending draft until edit number `mine` is
    /// published (edits that came in meanwhile go with it); the waiters
    /// for later edits build those. Called with `building` held.
    fn build_until(&self, slot: &ListenerSlot, mine: u64) {
        loop {
            let (draft, upto) = {
                let mut pending = lock(&self.pending);
                if pending.built == pending.edits {
                    return;
                }
                let Some(draft) = pending.draft.clone() else {
                    return;
                };
                pending.built = pending.edits;
                (draft, pending.edits)
            };
            let next = build_low_priority(draft);
            slot.snapshot.store(Arc::new(next));
            self.builds.fetch_add(1, Ordering::Relaxed);
            *lock(&self.published) = upto;
            self.progress.notify_all();
            if upto >= mine {
                return;
            }
        }
    }
}

/// The niceness of the thread that builds snapshots: below the workers'
/// (0), so a burst of changes to a large listener (a Maglev table over
/// 10,000 backends takes tens of milliseconds) yields the core to the data
/// plane rather than delaying its connections (docs/benchmarks.md, "Admin
/// changes under load").
const BUILDER_NICE: i32 = 10;

/// A build to run on the builder thread, and where its snapshot goes.
type Job = (Draft, mpsc::Sender<Snapshot>);

/// Builds `draft`'s snapshot on the one low-priority builder thread
/// (started on first use), and waits for it; in place when that thread
/// cannot be had.
fn build_low_priority(draft: Draft) -> Snapshot {
    static BUILDER: OnceLock<Option<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();
    let builder = BUILDER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("balancer-build".to_string())
            .spawn(move || {
                // Per thread on Linux (each thread has its own nice
                // value); failing leaves it at the workers' priority.
                #[cfg(target_os = "linux")]
                let _ = rustix::process::setpriority_process(None, BUILDER_NICE);
                for (draft, reply) in queue {
                    let _ = reply.send(Snapshot::with_backends(draft.config, draft.backends));
                }
            })
            .ok()
            .map(|_| Mutex::new(jobs))
    });
    let Some(jobs) = builder else {
        return Snapshot::with_backends(draft.config, draft.backends);
    };
    let (reply, built) = mpsc::channel();
    // A copy to build here should the builder be gone (it panicked).
    let fallback = draft.clone();
    if lock(jobs).send((draft, reply)).is_ok() {
        if let Ok(snapshot) = built.recv() {
            return snapshot;
        }
    }
    Snapshot::with_backends(fallback.config, fallback.backends)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
