//! The named changes of a listener's backends, the only way anything
//! changes them: add one, change its weight or state, drain it and remove
//! it once idle, or set the whole list at once.
//!
//! Each change is checked and applied to the listener's draft, in line with
//! every other change to it (`state::publish`), and returns once the next
//! snapshot, built over the same `Arc<Backend>`s (so counters, health,
//! latency and a slow-start ramp stay), is published for the next
//! connection; changes that come together share one build. The admin API calls
//! [`add_backend`], [`change_backend`] and [`remove_backend`] (refused on
//! a listener whose backends DNS discovery gives); discovery calls
//! [`set_backends`] and reload [`reconfigure`], which keep each backend
//! matched by its address.
//!
//! A backend is never dropped while it has open connections: a removal
//! sets it draining (no new connections, open ones finish) and a tracked
//! task removes it once it is idle, unless it stopped draining meanwhile
//! (an operator set it `up` again, or a new backend list named it again).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Draft, Listeners};
use crate::backend::{Backend, BackendState, HealthPolicy};
use crate::config::BackendSpec;
use crate::net::Quoted;

/// How often a backend that is draining to be removed is checked for being
/// idle.
const REMOVAL_POLL: Duration = Duration::from_millis(100);

/// Why a change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No listener has this name.
    #[error("no listener named {}", Quoted(.0))]
    UnknownListener(String),
    /// The listener has no backend with this address.
    #[error("listener {} has no backend {}", Quoted(.listener), Quoted(.address))]
    UnknownBackend {
        /// The listener's name.
        listener: String,
        /// The address asked for.
        address: String,
    },
    /// An added backend that the listener already has.
    #[error("listener {} already has backend {}", Quoted(.listener), Quoted(.address))]
    DuplicateBackend {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
    /// A listener whose backends DNS discovery gives: a change here would
    /// be undone by the next resolution.
    #[error(
        "the backends of listener {} are found by DNS ({}): change the DNS records, \
         or the config and reload",
        Quoted(.listener),
        Quoted(.dns)
    )]
    Discovered {
        /// The listener's name.
        listener: String,
        /// The name its backends are found under, as configured.
        dns: String,
    },
    /// The runtime is shutting down; nothing changed.
    #[error("the balancer is shutting down")]
    ShuttingDown,
    /// A removal that would leave the listener without a backend.
    #[error(
        "backend {} is the last one of listener {} and cannot be removed",
        Quoted(.address),
        Quoted(.listener)
    )]
    LastBackend {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
}

/// A change of one backend in place; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendChange {
    /// The new weight (at least 1).
    pub weight: Option<u32>,
    /// The new state, as an operator sets it (`up` or `draining`).
    pub state: Option<BackendState>,
}

/// What [`set_backends`] did, by backend address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendsSet {
    /// Backends that were not there: added, up, ramping up over the
    /// listener's `slow_start`.
    pub added: Vec<String>,
    /// Backends no longer listed that started draining now (removed once
    /// idle); those draining from an earlier change are not repeated.
    pub removed: Vec<String>,
    /// Backends that stayed (same address): health and counters kept.
    pub kept: Vec<String>,
}

/// Adds a backend to `listener`, up, at full weight, with zeroed counters.
pub async fn add_backend(
    listeners: &Arc<Listeners>,
    listener: &str,
    spec: &BackendSpec,
) -> Result<Arc<Backend>, ChangeError> {
    let (listeners, listener, spec) = (Arc::clone(listeners), listener.to_string(), spec.clone());
    off_the_workers(move || add_backend_now(&listeners, &listener, &spec)).await
}

fn add_backend_now(
    listeners: &Listeners,
    listener: &str,
    spec: &BackendSpec,
) -> Result<Arc<Backend>, ChangeError> {
    in_listener(listeners, listener, |draft| {
        not_discovered(draft, listener)?;
        if draft.backend(&spec.address).is_some() {
            return Err(ChangeError::DuplicateBackend {
                listener: listener.to_string(),
                address: spec.address.clone(),
            });
        }
        let backend = Arc::new(Backend::new(spec));
        draft.backends.push(Arc::clone(&backend));
        Ok(backend)
    })
}

/// Changes the weight and/or the state of backend `address` of
/// `listener`. Setting it `up` while it drains to be removed cancels the
/// removal.
pub async fn change_backend(
    listeners: &Arc<Listeners>,
    listener: &str,
    address: &str,
    change: BackendChange,
) -> Result<Arc<Backend>, ChangeError> {
    let (listeners, listener, address) = (
        Arc::clone(listeners),
        listener.to_string(),
        address.to_string(),
    );
    off_the_workers(move || change_backend_now(&listeners, &listener, &address, change)).await
}

fn change_backend_now(
    listeners: &Listeners,
    listener: &str,
    address: &str,
    change: BackendChange,
) -> Result<Arc<Backend>, ChangeError> {
    in_listener(listeners, listener, |draft| {
        not_discovered(draft, listener)?;
        let backend = Arc::clone(find_backend(draft, listener, address)?);
        if let Some(weight) = change.weight {
            backend.set_weight(weight);
        }
        if let Some(state) = change.state {
            backend.set_state(state);
            if state != BackendState::Draining {
                cancel_removal(listeners, listener, &backend.address);
            }
        }
        Ok(backend)
    })
}

/// Drains backend `address` of `listener` (no new connections, open ones
/// finish) and removes it once it is idle, in a task tracked by
/// `listeners`. Refused when it is the last backend that is not already
/// being removed. Draining one that is already being removed changes
/// nothing.
pub async fn remove_backend(
    listeners: &Arc<Listeners>,
    listener: &str,
    address: &str,
) -> Result<Arc<Backend>, ChangeError> {
    let (listeners, listener, address) = (
        Arc::clone(listeners),
        listener.to_string(),
        address.to_string(),
    );
    off_the_workers(move || remove_backend_now(&listeners, &listener, &address)).await
}

fn remove_backend_now(
    listeners: &Arc<Listeners>,
    listener: &str,
    address: &str,
) -> Result<Arc<Backend>, ChangeError> {
    let (backend, started) = in_listener(listeners, listener, |draft| {
        not_discovered(draft, listener)?;
        let backend = Arc::clone(find_backend(draft, listener, address)?);
        let staying = draft
            .backends
            .iter()
            .filter(|b| !Arc::ptr_eq(b, &backend))
            .filter(|b| !listeners.is_removing(listener, &b.address))
            .count();
        if staying == 0 {
            return Err(ChangeError::LastBackend {
                listener: listener.to_string(),
                address: address.to_string(),
            });
        }
        let started = start_removal(listeners, listener, &backend);
        Ok((backend, started))
    })?;
    if started {
        tracing::info!(
            listener,
            backend = address,
            "backend draining; removed once idle"
        );
    }
    Ok(backend)
}

/// Makes `specs` the backends of `listener`. A backend whose address stays
/// keeps its `Arc<Backend>` (health, counters, latency, ramp) and takes the
/// new weight; if it was draining, it is up again (the list wants it). A
/// new address is added, ramping up over the listener's `slow_start`. A
/// backend no longer listed is drained and removed once idle. A backend
/// whose address now resolves elsewhere is a new backend in its place.
pub async fn set_backends(
    listeners: &Arc<Listeners>,
    listener: &str,
    specs: &[BackendSpec],
) -> Result<BackendsSet, ChangeError> {
    let (listeners, listener, specs) =
        (Arc::clone(listeners), listener.to_string(), specs.to_vec());
    let draining = HashSet::new();
    off_the_workers(move || replace_backends(&listeners, &listener, None, &specs, &draining)).await
}

/// Makes `specs` the backends of `listener` as [`set_backends`] does, with
/// those whose address is in `draining` set draining: they stay, take no
/// new connections, and let open ones finish (as an operator's drain);
/// the others are up. The fleet calls it with etcd's set, whose values
/// say each backend's state.
pub async fn set_fleet_backends(
    listeners: &Arc<Listeners>,
    listener: &str,
    specs: &[BackendSpec],
    draining: HashSet<String>,
) -> Result<BackendsSet, ChangeError> {
    let (listeners, listener, specs) =
        (Arc::clone(listeners), listener.to_string(), specs.to_vec());
    off_the_workers(move || replace_backends(&listeners, &listener, None, &specs, &draining)).await
}

/// Gives `listener` a new config (a reload): its backends become the
/// config's, matched by address as [`set_backends`] does (so those that
/// stay keep their health and counters, and admin API changes give way to
/// the file), except on a listener with discovery, whose backends stay
/// as DNS gave them, and on one in a fleet (`in_fleet`), whose backends
/// stay as etcd gave them; the next connection gets the new algorithm,
/// caps, timeouts and allow list.
pub async fn reconfigure(
    listeners: &Arc<Listeners>,
    config: crate::config::Listener,
    in_fleet: bool,
) -> Result<BackendsSet, ChangeError> {
    let listeners = Arc::clone(listeners);
    off_the_workers(move || {
        let name = config.name.clone();
        if config.discovery.is_some() || in_fleet {
            // DNS or etcd owns the set: it stays as the discovery or fleet
            // task left it until that task applies its next set.
            return in_listener(&listeners, &name, |draft| {
                draft.config = config;
                Ok(BackendsSet::default())
            });
        }
        let specs = config.backends.clone();
        replace_backends(&listeners, &name, Some(config), &specs, &HashSet::new())
    })
    .await
}

/// Refuses an admin change to a listener whose backends DNS discovery
/// gives.
fn not_discovered(draft: &Draft, listener: &str) -> Result<(), ChangeError> {
    match &draft.config.discovery {
        Some(discovery) => Err(ChangeError::Discovered {
            listener: listener.to_string(),
            dns: discovery.dns.to_string(),
        }),
        None => Ok(()),
    }
}

/// The body of [`set_backends`], [`set_fleet_backends`] and
/// [`reconfigure`]: `specs` become the backends of `listener`, those in
/// `draining` draining and the others up, under `config` when given (else
/// its current one).
fn replace_backends(
    listeners: &Arc<Listeners>,
    listener: &str,
    config: Option<crate::config::Listener>,
    specs: &[BackendSpec],
    draining: &HashSet<String>,
) -> Result<BackendsSet, ChangeError> {
    in_listener(listeners, listener, |draft| {
        let by_address: HashMap<&str, &Arc<Backend>> = draft
            .backends
            .iter()
            .map(|b| (b.address.as_str(), b))
            .collect();
        let listed: HashSet<&str> = specs.iter().map(|s| s.address.as_str()).collect();
        let mut done = BackendsSet::default();
        let mut backends = Vec::with_capacity(specs.len());
        let now = Instant::now();
        let listener_config = config.as_ref().unwrap_or(&draft.config);
        let policy = HealthPolicy::of(listener_config);
        let ewma_decay = listener_config.ewma_decay;
        for spec in specs {
            let staying = by_address
                .get(spec.address.as_str())
                .filter(|b| b.resolved == spec.resolved);
            let drain = draining.contains(&spec.address);
            let backend = match staying {
                Some(&backend) => {
                    backend.set_weight(spec.weight);
                    // Listed again: a removal under way stops, and the
                    // backend takes the state the list gives it.
                    cancel_removal(listeners, listener, &backend.address);
                    match (backend.state() == BackendState::Draining, drain) {
                        (true, false) => {
                            backend.set_state(BackendState::Up);
                        }
                        (false, true) => {
                            backend.set_state(BackendState::Draining);
                        }
                        _ => {}
                    }
                    done.kept.push(spec.address.clone());
                    Arc::clone(backend)
                }
                None => {
                    let backend = Arc::new(Backend::new(spec));
                    // The listener's policy before the ramp starts: it
                    // says how long the ramp is (the snapshot applies it
                    // again, to every backend).
                    backend.configure(policy, ewma_decay);
                    if drain {
                        backend.set_state(BackendState::Draining);
                    } else {
                        backend.health.start_ramp(now);
                    }
                    done.added.push(spec.address.clone());
                    backend
                }
            };
            backends.push(backend);
        }
        for gone in &draft.backends {
            if !listed.contains(gone.address.as_str()) {
                // Listed as removed only the first time: a backend still
                // draining from an earlier change is already on its way.
                if start_removal(listeners, listener, gone) {
                    done.removed.push(gone.address.clone());
                }
                backends.push(Arc::clone(gone));
            }
        }
        if let Some(config) = config {
            draft.config = config;
        }
        draft.backends = backends;
        Ok(done)
    })
}

/// Runs `change` on tokio's blocking pool, never on a worker thread: a
/// change rebuilds the listener's balancer, and a Maglev table over
/// thousands of backends takes a third of a second to build; on a worker
/// it would stall every connection scheduled there. The snapshot is
/// published when it is ready.
async fn off_the_workers<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, ChangeError> + Send + 'static,
) -> Result<T, ChangeError> {
    match tokio::task::spawn_blocking(change).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ChangeError::ShuttingDown),
    }
}

/// Applies `edit` to the latest draft of `listener`, returning once it is
/// published.
fn in_listener<T>(
    listeners: &Listeners,
    listener: &str,
    edit: impl FnOnce(&mut Draft) -> Result<T, ChangeError>,
) -> Result<T, ChangeError> {
    listeners
        .edit(listener, edit)
        .unwrap_or_else(|| Err(ChangeError::UnknownListener(listener.to_string())))
}

fn find_backend<'a>(
    draft: &'a Draft,
    listener: &str,
    address: &str,
) -> Result<&'a Arc<Backend>, ChangeError> {
    draft
        .backend(address)
        .ok_or_else(|| ChangeError::UnknownBackend {
            listener: listener.to_string(),
            address: address.to_string(),
        })
}

/// Sets `backend` draining and starts the task that removes it once idle;
/// false when a removal of it was already under way. Called under the
/// listener's line of edits.
fn start_removal(listeners: &Arc<Listeners>, listener: &str, backend: &Arc<Backend>) -> bool {
    backend.set_state(BackendState::Draining);
    let key = (listener.to_string(), backend.address.clone());
    let cancelled = {
        let mut removals = listeners.removals();
        if removals.contains_key(&key) {
            return false;
        }
        let cancelled = listeners.closing.child_token();
        removals.insert(key.clone(), cancelled.clone());
        cancelled
    };
    listeners.removal_tasks.spawn(remove_when_idle(
        Arc::clone(listeners),
        key,
        Arc::clone(backend),
        cancelled,
    ));
    true
}

/// Cancels the pending removal of backend `address` of `listener`, if
/// any: from now on it is not shown as being removed, and its task ends
/// without touching the listener. Called in the listener's line of edits.
fn cancel_removal(listeners: &Listeners, listener: &str, address: &str) {
    let key = (listener.to_string(), address.to_string());
    if let Some(cancelled) = listeners.removals().remove(&key) {
        cancelled.cancel();
        tracing::info!(
            listener,
            backend = address,
            "backend removal cancelled: it is no longer draining"
        );
    }
}

/// Waits until `backend` has no open connection, then removes it from its
/// listener. Ends without a change when `cancelled` fires first (the
/// removal was cancelled, or `listeners` closes).
async fn remove_when_idle(
    listeners: Arc<Listeners>,
    key: (String, String),
    backend: Arc<Backend>,
    cancelled: CancellationToken,
) {
    let mut poll = tokio::time::interval(REMOVAL_POLL);
    loop {
        tokio::select! {
            () = cancelled.cancelled() => return,
            _ = poll.tick() => {}
        }
        if backend.stats.active.load(Relaxed) == 0 {
            break;
        }
    }
    let removing = {
        let (listeners, key) = (Arc::clone(&listeners), key.clone());
        tokio::task::spawn_blocking(move || remove_now(&listeners, &key, &backend, &cancelled))
    };
    let (listener, address) = (&key.0, &key.1);
    match removing.await.ok().flatten() {
        Some(Ok(())) => tracing::info!(listener = %listener, backend = %address, "backend removed"),
        Some(Err(())) => {}
        // The listener itself is gone: nothing is left to remove it from.
        None => {
            listeners.removals().remove(&key);
        }
    }
}

/// Removes `backend` from its listener, unless its removal was cancelled
/// (`Err`); decided in the listener's line of edits, where cancellations
/// happen too.
/// `None` when the listener is gone.
fn remove_now(
    listeners: &Listeners,
    key: &(String, String),
    backend: &Arc<Backend>,
    cancelled: &CancellationToken,
) -> Option<Result<(), ()>> {
    listeners.edit(&key.0, |draft| {
        if cancelled.is_cancelled() {
            return Err(());
        }
        listeners.removals().remove(key);
        draft.backends.retain(|b| !Arc::ptr_eq(b, backend));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::ConnectionGuard;
    use crate::testing::{self, eventually};

    /// Listener `web` over backends `127.0.0.1:1` .. `:n`, with a slow
    /// start long enough that a new backend's ramp shows.
    fn web(n: u16) -> (Arc<Listeners>, Arc<super::super::ListenerSlot>) {
        (1..=n)
            .fold(testing::listener("web"), |l, port| {
                l.backend(format!("127.0.0.1:{port}"))
            })
            .set("slow_start", "10s")
            .registered()
    }

    fn spec(address: &str, weight: u32) -> BackendSpec {
        BackendSpec {
            address: address.to_string(),
            resolved: address.parse().unwrap(),
            weight,
        }
    }

    fn addresses(slot: &super::super::ListenerSlot) -> Vec<String> {
        let snapshot = slot.snapshot.load();
        snapshot
            .backends
            .iter()
            .map(|b| b.address.clone())
            .collect()
    }

    #[tokio::test]
    async fn an_added_backend_is_published_up_and_a_second_add_is_refused() {
        let (listeners, slot) = web(1);
        let added = add_backend(&listeners, "web", &spec("127.0.0.1:9", 3))
            .await
            .unwrap();
        assert_eq!(added.state(), BackendState::Up);
        assert_eq!(addresses(&slot), ["127.0.0.1:1", "127.0.0.1:9"]);
        let again = add_backend(&listeners, "web", &spec("127.0.0.1:9", 1)).await;
        assert_eq!(
            again.unwrap_err().to_string(),
            "listener \"web\" already has backend \"127.0.0.1:9\""
        );
        let nowhere = add_backend(&listeners, "api", &spec("127.0.0.1:9", 1)).await;
        assert_eq!(
            nowhere.unwrap_err(),
            ChangeError::UnknownListener("api".into())
        );
    }

    // One worker thread: if the rebuild ran on it, nothing else could run
    // until the change was done.
    #[tokio::test(flavor = "current_thread")]
    async fn a_change_rebuilds_the_balancer_off_the_runtime_threads() {
        // Regression (issue 16 item 5): a POST to a 10,000-backend
        // source_hash listener built its Maglev table on a worker for 333
        // ms, stalling every connection on that worker.
        let (listeners, slot) = (1..=2_000u16)
            .fold(testing::listener("web"), |l, port| {
                l.backend(format!("127.0.0.1:{port}"))
            })
            .set("algorithm", "source_hash")
            .registered();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let change = tokio::spawn({
            let (listeners, done) = (Arc::clone(&listeners), Arc::clone(&done));
            async move {
                add_backend(&listeners, "web", &spec("127.0.0.2:1", 1))
                    .await
                    .unwrap();
                done.store(true, Relaxed);
            }
        });
        // Lets the change start; it must give this thread back while the
        // table is built.
        tokio::task::yield_now().await;
        assert!(
            !done.load(Relaxed),
            "the change ran to its end on the runtime's only thread"
        );
        change.await.unwrap();
        assert_eq!(slot.snapshot.load().backends.len(), 2_001);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_that_come_together_share_their_builds() {
        // Issue 17: 20 parallel POSTs to a 10,000-backend source_hash
        // listener took 7 s, one Maglev build each, one after another.
        let (listeners, slot) = (1..=2_000u16)
            .fold(testing::listener("web"), |l, port| {
                l.backend(format!("127.0.0.1:{port}"))
            })
            .set("algorithm", "source_hash")
            .registered();
        let before = slot.changes.builds();
        let adds = (1..=16u16).map(|port| {
            let listeners = Arc::clone(&listeners);
            tokio::spawn(async move {
                add_backend(&listeners, "web", &spec(&format!("127.0.0.2:{port}"), 1)).await
            })
        });
        for added in futures_join(adds).await {
            added.unwrap().unwrap();
        }
        assert_eq!(
            slot.snapshot.load().backends.len(),
            2_016,
            "every change is in"
        );
        let builds = slot.changes.builds() - before;
        println!("16 changes, {builds} builds");
        assert!(builds < 16, "16 changes took {builds} builds");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_change_answers_while_others_keep_coming() {
        // Issue 17's bench: the caller that happened to build kept building
        // the changes of others while they came, and answered only when
        // they stopped (after the whole 5 s phase).
        let (listeners, slot) = (1..=2_000u16)
            .fold(testing::listener("web"), |l, port| {
                l.backend(format!("127.0.0.1:{port}"))
            })
            .set("algorithm", "source_hash")
            .registered();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let total = Arc::new(std::sync::atomic::AtomicU32::new(0));
        // Four streams of reweights, each bounded to 200 changes.
        let streams: Vec<_> = (1..=4u16)
            .map(|port| {
                let (listeners, stop, total) = (
                    Arc::clone(&listeners),
                    Arc::clone(&stop),
                    Arc::clone(&total),
                );
                tokio::spawn(async move {
                    let mut made = 0u32;
                    while !stop.load(Relaxed) && made < 200 {
                        let change = BackendChange {
                            weight: Some(1 + made % 2),
                            state: None,
                        };
                        let address = format!("127.0.0.1:{port}");
                        change_backend(&listeners, "web", &address, change)
                            .await
                            .unwrap();
                        made += 1;
                        total.fetch_add(1, Relaxed);
                    }
                    made
                })
            })
            .collect();
        testing::eventually("40 changes are made", || async {
            total.load(Relaxed) >= 40
        })
        .await;
        stop.store(true, Relaxed);
        let mut made = Vec::new();
        for stream in streams {
            made.push(stream.await.unwrap());
        }
        // Each stream went on making changes: none was kept building the
        // others' until they stopped.
        assert!(
            made.iter().all(|&m| m >= 2),
            "changes made per stream: {made:?}"
        );
        assert_eq!(slot.snapshot.load().backends.len(), 2_000);
    }

    /// Awaits every handle, in order.
    async fn futures_join<T>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<Result<T, tokio::task::JoinError>> {
        let mut out = Vec::new();
        for handle in handles.collect::<Vec<_>>() {
            out.push(handle.await);
        }
        out
    }

    #[tokio::test]
    async fn a_change_keeps_the_backend_and_its_counters() {
        let (listeners, slot) = web(2);
        let before = Arc::clone(&slot.snapshot.load().backends[1]);
        before.stats.record_connect_failure();
        let change = BackendChange {
            weight: Some(5),
            state: Some(BackendState::Draining),
        };
        let after = change_backend(&listeners, "web", "127.0.0.1:2", change)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&before, &after));
        assert_eq!((after.weight(), after.state()), (5, BackendState::Draining));
        assert_eq!(after.stats.connect_failures.load(Relaxed), 1);
        let missing = change_backend(&listeners, "web", "127.0.0.1:7", change)
            .await
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "listener \"web\" has no backend \"127.0.0.1:7\""
        );
    }

    // Paused time: "still listed after three polls" is waited for on the
    // virtual clock, not the machine's.
    #[tokio::test(start_paused = true)]
    async fn a_removed_backend_drains_and_goes_once_its_last_connection_ends() {
        let (listeners, slot) = web(2);
        let backend = Arc::clone(&slot.snapshot.load().backends[0]);
        let open = ConnectionGuard::new(Arc::clone(&backend));
        remove_backend(&listeners, "web", "127.0.0.1:1")
            .await
            .unwrap();
        assert_eq!(backend.state(), BackendState::Draining);
        assert!(listeners.is_removing("web", "127.0.0.1:1"));
        // The last one left cannot be removed as well.
        let last = remove_backend(&listeners, "web", "127.0.0.1:2")
            .await
            .unwrap_err();
        assert!(matches!(last, ChangeError::LastBackend { .. }), "{last}");
        // Still listed while its connection is open.
        tokio::time::sleep(REMOVAL_POLL * 3).await;
        assert_eq!(addresses(&slot), ["127.0.0.1:1", "127.0.0.1:2"]);
        drop(open);
        eventually("the idle backend is removed", || async {
            addresses(&slot) == ["127.0.0.1:2"]
        })
        .await;
        assert!(!listeners.is_removing("web", "127.0.0.1:1"));
        listeners.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn setting_a_draining_backend_up_cancels_its_removal_at_once() {
        let (listeners, slot) = web(2);
        let backend = Arc::clone(&slot.snapshot.load().backends[0]);
        let open = ConnectionGuard::new(Arc::clone(&backend));
        remove_backend(&listeners, "web", "127.0.0.1:1")
            .await
            .unwrap();
        let up = BackendChange {
            weight: None,
            state: Some(BackendState::Up),
        };
        change_backend(&listeners, "web", "127.0.0.1:1", up)
            .await
            .unwrap();
        // At once: no window in which it is up and still being removed
        // (issue 16 item 8).
        assert!(!listeners.is_removing("web", "127.0.0.1:1"));
        drop(open);
        tokio::time::sleep(REMOVAL_POLL * 3).await;
        assert_eq!(addresses(&slot), ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(backend.state(), BackendState::Up);
        listeners.close().await;
    }

    #[tokio::test]
    async fn a_discovered_listener_refuses_admin_changes_and_a_reload_keeps_its_set() {
        let discovered = testing::listener("web")
            .table("[listeners.discovery]\ndns = \"web.test:80\"\nresolvers = [\"127.0.0.1\"]");
        let (listeners, slot) = discovered.registered();
        let found = [spec("127.0.0.1:1", 1), spec("127.0.0.1:2", 1)];
        set_backends(&listeners, "web", &found).await.unwrap();
        let refused = ChangeError::Discovered {
            listener: "web".into(),
            dns: "web.test:80".into(),
        };
        let add = add_backend(&listeners, "web", &spec("127.0.0.1:9", 1)).await;
        assert_eq!(add.unwrap_err(), refused);
        let change = BackendChange {
            weight: Some(2),
            state: None,
        };
        let changed = change_backend(&listeners, "web", "127.0.0.1:1", change).await;
        assert_eq!(changed.unwrap_err(), refused);
        let removed = remove_backend(&listeners, "web", "127.0.0.1:1").await;
        assert_eq!(removed.unwrap_err(), refused);
        assert_eq!(
            refused.to_string(),
            "the backends of listener \"web\" are found by DNS (\"web.test:80\"): \
             change the DNS records, or the config and reload"
        );
        // A reload of the discovered listener keeps what DNS gave it.
        let before = slot.snapshot.load().backends.clone();
        let next = discovered.set("algorithm", "random").build();
        let done = reconfigure(&listeners, next, false).await.unwrap();
        assert_eq!(done, BackendsSet::default());
        let after = slot.snapshot.load();
        assert_eq!(after.config.algorithm, crate::config::Algorithm::Random);
        assert!(
            before
                .iter()
                .zip(&after.backends)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
        assert_eq!(after.backends.len(), 2);
        listeners.close().await;
    }

    #[tokio::test]
    async fn set_backends_keeps_staying_backends_adds_new_ones_and_drains_the_rest() {
        let (listeners, slot) = web(3);
        let before: Vec<Arc<Backend>> = slot.snapshot.load().backends.clone();
        before[1].stats.record_connect_failure();
        before[1].set_state(BackendState::Draining);
        let wanted = [
            spec("127.0.0.1:2", 4),
            spec("127.0.0.1:3", 1),
            spec("127.0.0.1:4", 1),
        ];
        let done = set_backends(&listeners, "web", &wanted).await.unwrap();
        assert_eq!(done.kept, ["127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(done.added, ["127.0.0.1:4"]);
        assert_eq!(done.removed, ["127.0.0.1:1"]);
        let now = slot.snapshot.load().backends.clone();
        // Staying backends are the same Arcs: counters and health kept; the
        // list wants the drained one, so it is up again, at its new weight.
        assert!(Arc::ptr_eq(&now[0], &before[1]));
        assert!(Arc::ptr_eq(&now[1], &before[2]));
        assert_eq!(now[0].stats.connect_failures.load(Relaxed), 1);
        assert_eq!((now[0].weight(), now[0].state()), (4, BackendState::Up));
        // The new one ramps up; the gone one drains until it is removed.
        assert!(
            now[2].effective_weight() < 1000,
            "{}",
            now[2].effective_weight()
        );
        assert_eq!(before[0].state(), BackendState::Draining);
        eventually("the gone backend is removed", || async {
            addresses(&slot) == ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"]
        })
        .await;
        listeners.close().await;
    }

    #[tokio::test]
    async fn a_new_backend_ramps_up_over_its_listeners_slow_start_not_the_default() {
        let (listeners, slot) = testing::listener("web")
            .backend("127.0.0.1:1")
            .set("slow_start", "0s")
            .registered();
        let wanted = [spec("127.0.0.1:1", 1), spec("127.0.0.1:2", 2)];
        set_backends(&listeners, "web", &wanted).await.unwrap();
        let added = Arc::clone(&slot.snapshot.load().backends[1]);
        assert_eq!(added.effective_weight(), 2000);
        listeners.close().await;
    }

    #[tokio::test]
    async fn a_fleet_set_drains_the_backends_it_marks_draining_and_keeps_them() {
        let (listeners, slot) = web(2);
        let wanted = [
            spec("127.0.0.1:1", 1),
            spec("127.0.0.1:2", 1),
            spec("127.0.0.1:3", 1),
        ];
        let draining: HashSet<String> = ["127.0.0.1:2", "127.0.0.1:3"]
            .map(String::from)
            .into_iter()
            .collect();
        let done = set_fleet_backends(&listeners, "web", &wanted, draining)
            .await
            .unwrap();
        assert_eq!(done.added, ["127.0.0.1:3"]);
        assert!(done.removed.is_empty());
        let states: Vec<BackendState> = slot
            .snapshot
            .load()
            .backends
            .iter()
            .map(|b| b.state())
            .collect();
        assert_eq!(
            states,
            [
                BackendState::Up,
                BackendState::Draining,
                BackendState::Draining
            ]
        );
        assert!(!listeners.is_removing("web", "127.0.0.1:2"));
        // Up again when the next set says so.
        set_fleet_backends(&listeners, "web", &wanted, HashSet::new())
            .await
            .unwrap();
        assert!(
            slot.snapshot
                .load()
                .backends
                .iter()
                .all(|b| b.state() == BackendState::Up)
        );
        listeners.close().await;
    }

    #[tokio::test]
    async fn set_backends_replaces_a_backend_whose_address_resolves_elsewhere() {
        let (listeners, slot) = web(1);
        let before = Arc::clone(&slot.snapshot.load().backends[0]);
        let moved = BackendSpec {
            address: "127.0.0.1:1".into(),
            resolved: "127.0.0.2:1".parse().unwrap(),
            weight: 1,
        };
        let done = set_backends(&listeners, "web", &[moved]).await.unwrap();
        assert_eq!(
            (done.added.len(), done.kept.len(), done.removed.len()),
            (1, 0, 0)
        );
        let now = Arc::clone(&slot.snapshot.load().backends[0]);
        assert!(!Arc::ptr_eq(&now, &before));
        assert_eq!(now.resolved.to_string(), "127.0.0.2:1");
        assert_eq!(addresses(&slot), ["127.0.0.1:1"]);
    }
}
