//! The etcd fleet (`[fleet]`, SPEC 10, `docs/fleet.md`): every listener
//! without `[listeners.discovery]` takes its backends from etcd, where
//! every instance of the fleet reads them and the admin API writes them.
//!
//! One task per run follows etcd for all of them ([`run`]):
//!
//! 1. Seeding: for each listener, one transaction writes the config's
//!    backends and the listener's `seeded` key, only when that key was
//!    never created (`create_revision == 0`). So the first instance seeds
//!    the listener, and an instance with another file, or a restart after
//!    every backend was deleted, adopts what etcd holds.
//! 2. One read of every listener's keys, applied through
//!    [`state::change::set_fleet_backends`](crate::state::change::set_fleet_backends)
//!    (new backends ramp up, those gone drain and are then removed, those
//!    that stay keep their health and counters; `draining` keeps a backend
//!    but gives it no new connection).
//! 3. A watch from the read's revision + 1: each change is applied as it
//!    comes, well within a second. A watch whose revision was compacted
//!    away reads everything again and watches from there.
//!
//! etcd unreachable, at start or later: the listeners keep what they have
//! (the config's backends, or the last set applied), the link says so
//! (`/api/status`, `balancer_fleet_connected`), and the task tries again
//! after a capped, jittered exponential back-off, resuming the watch from
//! the last revision it applied. A malformed value or key (bad JSON, a
//! weight out of range, an unknown state, a bad address) is logged with
//! its key and ignored: it never takes a listener down. Nothing that comes
//! from etcd is trusted to be well-formed, and nothing waits for etcd on a
//! worker thread but this task and the admin requests that write.

pub mod etcd;
mod keys;
pub mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd::{Compare, EVENT_DELETE, EVENT_PUT, RequestOp, ResponseHeader, TxnRequest};
use tokio_util::sync::CancellationToken;

use crate::backend::BackendState;
use crate::config::{BackendSpec, Fleet};
use crate::net::addr;
use crate::state::fleet::FleetLink;
use crate::state::{Listeners, change};
pub use keys::{Layout, Value};

/// The first wait after etcd could not be reached; it doubles with each
/// failure in a row, up to [`BACKOFF_MAX`], jittered.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two tries to reach etcd.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long one etcd request may take (the watch's own stream is not
/// bounded: the HTTP/2 keep-alive below finds a dead one).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2 pings on the etcd connection, and how long an answer may take:
/// a watch over a partitioned network ends within their sum.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long resolving a backend's host name (an address in a key) may
/// take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most backends a listener can seed: etcd takes 128 operations per
/// transaction by default (`--max-txn-ops`), and the `seeded` key is one.
const MAX_SEED: usize = 127;

/// A listener in the fleet: its name, and the config's backends that seed
/// etcd when it has never been seeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The listener's name.
    pub name: String,
    /// Its backends in the config.
    pub seed: Vec<BackendSpec>,
}

/// The client for `settings`: one HTTP/2 channel balanced over the
/// endpoints, connected lazily (this never waits for etcd), with request,
/// connect and keep-alive timeouts, and requests refused by a member that
/// has no leader (a partitioned member's data may be stale).
pub fn client(settings: &Fleet) -> Result<etcd::Client, String> {
    let options = etcd::Options {
        timeout: REQUEST_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        keep_alive: (KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT),
    };
    etcd::Client::new(&settings.etcd, options).map_err(|e| reason(&e))
}

/// Follows etcd for `members` until `stop` is cancelled: seeds, reads,
/// watches, and applies every change to `listeners`; reconnects with
/// back-off when etcd is lost.
pub async fn run(
    link: Arc<FleetLink>,
    listeners: Arc<Listeners>,
    members: Vec<Member>,
    stop: CancellationToken,
) {
    let endpoints = link.settings.etcd.join(", ");
    tracing::info!(etcd = %endpoints, prefix = %link.settings.prefix, listeners = members.len(), "fleet started");
    let mut follower = Follower::new(link, listeners, members);
    let mut failures = 0u32;
    loop {
        let lost = tokio::select! {
            () = stop.cancelled() => return,
            lost = follower.session(&mut failures) => lost,
        };
        if failures == 0 {
            let kept = follower.backends_kept();
            tracing::warn!(etcd = %endpoints, error = %lost, backends_kept = kept, "fleet: etcd cannot be reached; the listeners keep their backends, retrying with back-off");
        } else {
            tracing::debug!(etcd = %endpoints, error = %lost, "fleet: etcd still cannot be reached");
        }
        follower.link.disconnected(lost);
        let wait = backoff(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The wait after `failures` failures in a row: [`BACKOFF_MIN`] doubled
/// each time, at most [`BACKOFF_MAX`], jittered by up to 10% either way.
fn backoff(failures: u32) -> Duration {
    let doubled = BACKOFF_MIN.saturating_mul(1u32 << failures.min(16));
    crate::health::jittered(doubled.min(BACKOFF_MAX))
}

/// A backend as etcd lists it, checked and resolved.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Its weight and state.
    value: Value,
    /// The address connected to.
    resolved: SocketAddr,
}

/// What the fleet task knows and has applied, across reconnections.
struct Follower {
    /// The client, and where the state of the link is shown.
    link: Arc<FleetLink>,
    /// The listeners the sets are applied to.
    listeners: Arc<Listeners>,
    /// The fleet's keys.
    layout: Layout,
    /// The listeners in the fleet, with the config's backends.
    members: Vec<Member>,
    /// Listeners seeded (or found seeded) by this task.
    seeded: HashSet<String>,
    /// The last revision applied: the watch resumes after it; 0 before the
    /// first read.
    revision: i64,
    /// etcd's backends of each member, by address.
    entries: HashMap<String, BTreeMap<String, Entry>>,
    /// The set last applied to each member.
    applied: HashMap<String, (Vec<BackendSpec>, HashSet<String>)>,
    /// Host names of addresses in keys, resolved once.
    resolved: HashMap<String, SocketAddr>,
}

impl Follower {
    fn new(link: Arc<FleetLink>, listeners: Arc<Listeners>, members: Vec<Member>) -> Follower {
        Follower {
            layout: Layout::new(&link.settings.prefix),
            link,
            listeners,
            members,
            seeded: HashSet::new(),
            revision: 0,
            entries: HashMap::new(),
            applied: HashMap::new(),
            resolved: HashMap::new(),
        }
    }

    /// Backends the members have now, all together (for the warning when
    /// etcd is lost).
    fn backends_kept(&self) -> usize {
        self.members
            .iter()
            .filter_map(|m| self.listeners.find(&m.name))
            .map(|slot| slot.snapshot.load().backends.len())
            .sum()
    }

    /// One connection's work: seed, read (unless a revision to resume
    /// from is known), watch until etcd is lost; returns why it was.
    /// `failures` is reset once the watch is up.
    async fn session(&mut self, failures: &mut u32) -> String {
        let mut client = self.link.client.clone();
        if let Err(e) = self.seed(&mut client).await {
            return e;
        }
        if self.revision == 0 {
            if let Err(e) = self.read_all(&mut client).await {
                return e;
            }
        }
        loop {
            match self.watch(&mut client, failures).await {
                Watched::Compacted(compacted) => {
                    tracing::warn!(
                        revision = self.revision,
                        compacted,
                        "fleet: the watch's revision was compacted; reading every backend again"
                    );
                    if let Err(e) = self.read_all(&mut client).await {
                        return e;
                    }
                }
                Watched::Behind(now) => {
                    tracing::warn!(
                        revision = self.revision,
                        etcd_revision = now,
                        "fleet: etcd is at an earlier revision than the last one applied (its data was replaced); seeding it with the backends served, then reading every backend again"
                    );
                    self.seeded.clear();
                    if let Err(e) = self.seed(&mut client).await {
                        return e;
                    }
                    if let Err(e) = self.read_all(&mut client).await {
                        return e;
                    }
                }
                Watched::Lost(e) => return e,
            }
        }
    }

    /// Seeds every member not seeded yet, each in one transaction (see
    /// [`Follower::seed_of`] for what with).
    async fn seed(&mut self, client: &mut etcd::Client) -> Result<(), String> {
        let names: Vec<String> = self
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|name| !self.seeded.contains(name))
            .collect();
        for name in names {
            let backends = self.seed_of(&name);
            if backends.len() > MAX_SEED {
                tracing::error!(listener = %name, backends = backends.len(), max = MAX_SEED, "fleet: too many backends to seed in one etcd transaction; seed the listener with etcdctl (its keys and its seeded key), its backends come from etcd meanwhile");
                self.seeded.insert(name);
                continue;
            }
            let marker = self.layout.seeded(&name);
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let mut puts = vec![RequestOp::put(
                marker.clone(),
                serde_json::json!({ "seeded_at": at.to_string() }).to_string(),
            )];
            for (address, value) in &backends {
                let key = self.layout.backend(&name, address);
                puts.push(RequestOp::put(key, value.encode()));
            }
            let txn = TxnRequest {
                compare: vec![Compare::create_revision_is(marker, 0)],
                success: puts,
                failure: Vec::new(),
            };
            let done = client.txn(txn).await.map_err(|e| reason(&e))?;
            let from = if self.revision > 0 {
                "the backends it served"
            } else {
                "the config's backends"
            };
            if done.succeeded {
                tracing::info!(listener = %name, backends = backends.len(), "fleet: listener seeded in etcd with {from}");
            } else {
                tracing::info!(listener = %name, "fleet: listener already seeded; etcd's backends are used");
            }
            self.seeded.insert(name);
        }
        Ok(())
    }

    /// What seeds member `name`: the config's backends, up; or, once this
    /// task has read etcd (so etcd's data was replaced since: a new
    /// cluster, a restored backup), the set it last applied, so that
    /// operators' changes outlive the loss.
    fn seed_of(&self, name: &str) -> Vec<(String, Value)> {
        if self.revision > 0 {
            return self
                .entries
                .get(name)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(address, entry)| (address.clone(), entry.value))
                        .collect()
                })
                .unwrap_or_default();
        }
        let member = self.members.iter().find(|m| m.name == name);
        member
            .map(|m| {
                m.seed
                    .iter()
                    .map(|spec| {
                        let value = Value {
                            weight: spec.weight,
                            state: BackendState::Up,
                        };
                        (spec.address.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads every listener's keys and applies them; the watch then
    /// resumes after the read's revision.
    async fn read_all(&mut self, client: &mut etcd::Client) -> Result<(), String> {
        let prefix = self.layout.listeners();
        let read = client
            .range(prefix.into(), true)
            .await
            .map_err(|e| reason(&e))?;
        let revision = ResponseHeader::revision_of(read.header.as_ref());
        self.entries.clear();
        for kv in &read.kvs {
            self.put(&kv.key, &kv.value).await;
        }
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        for name in &names {
            self.apply(name).await;
        }
        self.revision = revision;
        self.link.applied(revision);
        Ok(())
    }

    /// Watches every listener's keys from the revision after the last one
    /// applied, applying each change, until etcd is lost or the revision
    /// was compacted.
    async fn watch(&mut self, client: &mut etcd::Client, failures: &mut u32) -> Watched {
        let start = self.revision.saturating_add(1);
        let mut stream = match client.watch(self.layout.listeners().into(), start).await {
            Ok(stream) => stream,
            Err(e) => return Watched::Lost(reason(&e)),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Watched::Lost("etcd closed the watch".to_string()),
                Err(status) => return Watched::Lost(reason(&etcd::Error::Status(status))),
            };
            if response.compact_revision > 0 {
                return Watched::Compacted(response.compact_revision);
            }
            if response.canceled {
                let why = &response.cancel_reason;
                return Watched::Lost(format!("etcd cancelled the watch: {why}"));
            }
            if response.created {
                let now = ResponseHeader::revision_of(response.header.as_ref());
                if now < self.revision {
                    return Watched::Behind(now);
                }
                if *failures > 0 || !self.link.is_connected() {
                    tracing::info!(
                        revision = self.revision,
                        "fleet: etcd connected; watching from the last revision applied"
                    );
                }
                *failures = 0;
                self.link.connected();
                // Events after the start revision may still come: the
                // revision applied moves with them, not with this answer.
                continue;
            }
            let revision = self.apply_events(&response.events).await;
            // Events carry their own revisions; an answer without any (a
            // progress notification) says everything up to its header's
            // revision was sent.
            let revision = revision.or_else(|| response.header.as_ref().map(|h| h.revision));
            if let Some(revision) = revision.filter(|&r| r > self.revision) {
                self.revision = revision;
                self.link.applied(revision);
            }
        }
    }

    /// Applies a watch answer's events: each changed listener's set once.
    /// The highest revision among them, if any.
    async fn apply_events(&mut self, events: &[etcd::Event]) -> Option<i64> {
        let mut changed = HashSet::new();
        let mut revision = None;
        for event in events {
            let Some(kv) = &event.kv else { continue };
            revision = revision.max(Some(kv.mod_revision));
            let listener = match event.r#type {
                EVENT_PUT => self.put(&kv.key, &kv.value).await,
                EVENT_DELETE => self.delete(&kv.key),
                _ => None,
            };
            changed.extend(listener);
        }
        for name in changed {
            self.apply(&name).await;
        }
        revision
    }

    /// Records a key's value, when it is a member's backend and
    /// well-formed (else it is logged and ignored); the member it changed.
    async fn put(&mut self, key: &[u8], value: &[u8]) -> Option<String> {
        let key = String::from_utf8_lossy(key);
        let names = self.members.iter().map(|m| m.name.as_str());
        let (listener, address) = self.layout.parse(&key, names)?;
        let (listener, address) = (listener.to_string(), address.to_string());
        let entry = match self.entry(&address, value).await {
            Ok(entry) => entry,
            Err(problem) => {
                tracing::warn!(key = %key, error = %problem, "fleet: malformed backend in etcd ignored");
                return None;
            }
        };
        let backends = self.entries.entry(listener.clone()).or_default();
        if backends.get(&address) == Some(&entry) {
            return None;
        }
        backends.insert(address, entry);
        Some(listener)
    }

    /// Forgets a deleted key, when it is a member's backend; the member it
    /// changed.
    fn delete(&mut self, key: &[u8]) -> Option<String> {
        let key = String::from_utf8_lossy(key);
        let names = self.members.iter().map(|m| m.name.as_str());
        let (listener, address) = self.layout.parse(&key, names)?;
        let gone = self.entries.get_mut(listener)?.remove(address);
        gone.map(|_| listener.to_string())
    }

    /// A backend from its address (in the key) and its value: checked,
    /// and resolved (a host name once, the first address kept).
    async fn entry(&mut self, address: &str, value: &[u8]) -> Result<Entry, String> {
        let value = Value::parse(value)?;
        let parsed = addr::backend_address(address)
            .map_err(|e| format!("address {} in the key: {e}", crate::net::Quoted(address)))?;
        let resolved = match self.resolved.get(address) {
            Some(&resolved) => resolved,
            None => {
                let resolved = addr::resolve(parsed, RESOLVE_TIMEOUT).await.map_err(|e| {
                    format!("address {} in the key: {e}", crate::net::Quoted(address))
                })?;
                self.resolved.insert(address.to_string(), resolved);
                resolved
            }
        };
        Ok(Entry { value, resolved })
    }

    /// Makes etcd's set the backends of member `name`, when it differs
    /// from the set last applied.
    async fn apply(&mut self, name: &str) {
        let empty = BTreeMap::new();
        let entries = self.entries.get(name).unwrap_or(&empty);
        let specs: Vec<BackendSpec> = entries
            .iter()
            .map(|(address, entry)| BackendSpec {
                address: address.clone(),
                resolved: entry.resolved,
                weight: entry.value.weight,
            })
            .collect();
        let draining: HashSet<String> = entries
            .iter()
            .filter(|(_, e)| e.value.state == BackendState::Draining)
            .map(|(address, _)| address.clone())
            .collect();
        let wanted = (specs, draining);
        if self.applied.get(name) == Some(&wanted) {
            return;
        }
        let (specs, draining) = wanted.clone();
        let done = change::set_fleet_backends(&self.listeners, name, &specs, draining).await;
        match done {
            Ok(done) => {
                for added in &done.added {
                    tracing::info!(listener = %name, backend = %added, "backend added by the fleet");
                }
                for removed in &done.removed {
                    tracing::info!(listener = %name, backend = %removed, "backend gone from the fleet; draining, removed once idle");
                }
                self.applied.insert(name.to_string(), wanted);
            }
            // A reload removed the listener; the task restarts with the
            // new list.
            Err(e) => tracing::debug!(listener = %name, error = %e, "fleet set not applied"),
        }
    }
}

/// How a watch ended.
enum Watched {
    /// Its start revision was compacted away (to this one): read again.
    Compacted(i64),
    /// etcd is at this revision, before the last one applied: its data
    /// was replaced (a new cluster, a restored backup): read again.
    Behind(i64),
    /// etcd was lost, for this reason.
    Lost(String),
}

/// An etcd client error in words: the gRPC status's message, or the
/// transport error, each with its causes (never their debug form).
pub fn reason(e: &etcd::Error) -> String {
    with_causes(e.to_string(), std::error::Error::source(e))
}

/// `text`, then each cause in turn after a colon, leaving out a cause
/// that says what the text says already.
fn with_causes(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says `text` and was caused by `source`.
    #[derive(Debug)]
    struct Caused(&'static str, Option<std::io::Error>);

    impl std::fmt::Display for Caused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Caused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_is_said_with_its_causes_each_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = Caused("transport error", Some(refused));
        let text = with_causes("tcp connect error".into(), Some(&outer));
        assert_eq!(text, "tcp connect error: transport error: refused");
        let repeated = Caused("tcp connect error", None);
        assert_eq!(
            with_causes("tcp connect error".into(), Some(&repeated)),
            "tcp connect error"
        );
    }

    #[test]
    fn the_backoff_doubles_from_100_ms_up_to_5_s_with_jitter() {
        for _ in 0..100 {
            let first = backoff(0);
            assert!((90..=110).contains(&first.as_millis()), "{first:?}");
            let third = backoff(2);
            assert!((360..=440).contains(&third.as_millis()), "{third:?}");
            let late = backoff(40);
            assert!((4500..=5500).contains(&late.as_millis()), "{late:?}");
        }
    }
}
