//! The live state every plane reads, and the one way it changes.
//!
//! Each listener has a [`ListenerSlot`]: its name and address, its counters
//! ([`stats`]), what stops it (its own accept token) and caps it (its
//! connection slots), and an `ArcSwap<`[`Snapshot`]`>` that its accept loop
//! loads once per connection. A snapshot is immutable once published: the
//! listener's config, its backends (shared `Arc<Backend>`s, whose counters
//! and health outlive any one snapshot) and the balancer built over them.
//!
//! [`Listeners`] lists every slot for readers outside the data plane
//! (admin API, metrics, health checks) and is the one writer path: the
//! named changes in [`change`] (add, change, drain and remove once idle,
//! `set_backends` for discovery, `reconfigure` for reload) each edit the
//! listener's draft in turn, so two changes never race and lose one
//! another, and the listener's [`Publisher`] builds the snapshot (reusing
//! the `Arc<Backend>` of backends that stay) once for every change that
//! came in meanwhile. Open connections keep the snapshot they started with; the
//! next connection sees the new one on every worker thread.
//!
//! This module sits below every plane: proxy, health, admin and runtime
//! import it; it imports none of them.

pub mod change;
pub mod discovery;
pub mod fleet;
mod process;
mod publish;
mod snapshot;
pub mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use process::Process;
pub use publish::{Draft, Publisher};
pub use snapshot::Snapshot;
pub use stats::{ListenerLogs, ListenerStats, Rejection};

/// The access log every listener writes to: one handle, swapped in place
/// by a reload that changes it; empty when it is off.
pub type SharedAccessLog = Arc<arc_swap::ArcSwapOption<crate::access_log::AccessLog>>;

/// A listener's name, its current snapshot, and what outlives its
/// snapshots.
#[derive(Debug)]
pub struct ListenerSlot {
    /// The listener's unique name.
    pub name: String,
    /// The address it really listens on (a configured port 0 resolved).
    pub listen: SocketAddr,
    /// Its counters (rejections, connection durations).
    pub stats: ListenerStats,
    /// The throttles of its per-client log messages.
    pub logs: ListenerLogs,
    /// Its DNS resolutions, when it has `[listeners.discovery]`.
    pub discovery: discovery::DiscoveryStats,
    /// The access log, shared by every listener (swapped by a reload that
    /// changes it); empty when it is off.
    pub access_log: SharedAccessLog,
    /// Turns its changes into snapshots, coalesced.
    pub changes: Publisher,
    /// The current snapshot; loaded once per connection by the accept loop.
    pub snapshot: ArcSwap<Snapshot>,
    /// Cancelled to stop this listener's accept loop: by the drain (it is
    /// a child of the process's token) or, alone, when the listener goes.
    pub stop_accepting: CancellationToken,
    /// This listener's connection cap (`max_connections`): a permit moves
    /// into each connection's task and is given back when it ends. A
    /// reload that changes the cap swaps in a new semaphore: connections
    /// open before it hold permits of the old one.
    pub connection_slots: ArcSwap<Semaphore>,
}

impl ListenerSlot {
    /// The slot of a listener serving `snapshot` on `listen` (the bound
    /// socket's address, which differs from the config's for port 0),
    /// stopped by `stop_accepting`.
    pub fn new(
        snapshot: Snapshot,
        listen: SocketAddr,
        stop_accepting: CancellationToken,
        access_log: SharedAccessLog,
    ) -> ListenerSlot {
        ListenerSlot {
            name: snapshot.config.name.clone(),
            listen,
            stats: ListenerStats::default(),
            logs: ListenerLogs::default(),
            discovery: discovery::DiscoveryStats::default(),
            access_log,
            changes: Publisher::default(),
            connection_slots: ArcSwap::from_pointee(Semaphore::new(
                snapshot.config.max_connections,
            )),
            snapshot: ArcSwap::from_pointee(snapshot),
            stop_accepting,
        }
    }
}

/// Every listener's slot, in config order, and the one writer path.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The slots, in config order.
    slots: ArcSwap<Vec<Arc<ListenerSlot>>>,
    /// Held while the list of slots changes (a std mutex: nothing awaits
    /// while holding it).
    writer: Mutex<()>,
    /// Backends draining to be removed once idle, by `(listener,
    /// address)`, each with the token that cancels its removal. Changed
    /// only in the listener's line of edits, so a removal and its
    /// cancellation go with the snapshot that holds them (a std mutex:
    /// held for a lookup or an insert, never across `.await`).
    removals: Mutex<HashMap<(String, String), CancellationToken>>,
    /// The tasks that wait for those backends to be idle.
    removal_tasks: TaskTracker,
    /// Cancelled by [`Listeners::close`]: pending removals stop waiting.
    closing: CancellationToken,
}

impl Listeners {
    /// No listeners yet.
    pub fn new() -> Listeners {
        Listeners::default()
    }

    /// Adds a listener's slot (at start, or when a reload adds one).
    pub fn add(&self, slot: ListenerSlot) -> Arc<ListenerSlot> {
        let _writer = self.write_lock();
        let slot = Arc::new(slot);
        let mut list = Vec::clone(&self.slots.load());
        list.push(Arc::clone(&slot));
        self.slots.store(Arc::new(list));
        slot
    }

    /// Every listener's slot, in config order.
    pub fn all(&self) -> Arc<Vec<Arc<ListenerSlot>>> {
        self.slots.load_full()
    }

    /// The slot of the listener named `name`.
    pub fn find(&self, name: &str) -> Option<Arc<ListenerSlot>> {
        self.slots.load().iter().find(|s| s.name == name).cloned()
    }

    /// Takes listener `name` out of the list (a reload removed it); its
    /// slot lives on in the tasks that still hold it.
    pub fn remove(&self, name: &str) -> Option<Arc<ListenerSlot>> {
        let _writer = self.write_lock();
        let list = self.slots.load();
        let gone = list.iter().find(|s| s.name == name).cloned()?;
        let kept = list.iter().filter(|s| s.name != name).cloned().collect();
        self.slots.store(Arc::new(kept));
        Some(gone)
    }

    /// Whether backend `address` of `listener` is draining to be removed
    /// once idle.
    pub fn is_removing(&self, listener: &str, address: &str) -> bool {
        self.removals()
            .contains_key(&(listener.to_string(), address.to_string()))
    }

    /// Stops waiting for pending removals (they stay in their listener) and
    /// returns once their tasks have ended. Called last at shutdown.
    pub async fn close(&self) {
        self.closing.cancel();
        self.removal_tasks.close();
        self.removal_tasks.wait().await;
    }

    /// Applies `edit` to listener `name`'s latest draft and returns once
    /// the snapshot holding it is published (see [`Publisher`]); edits of
    /// one listener apply one after another, each to what the previous
    /// left. `None` when there is no such listener.
    fn edit<T, E>(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Draft) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        let slot = self.find(name)?;
        Some(slot.changes.change(&slot, edit))
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn removals(&self) -> MutexGuard<'_, HashMap<(String, String), CancellationToken>> {
        self.removals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
