//! Where backends come from besides the config: DNS and etcd (SPEC 10).
//! [`fleet`] holds the etcd fleet (`[fleet]`, `docs/fleet.md`); the rest
//! of this file is DNS discovery.
//!
//! Backends found by DNS (`[listeners.discovery]`,
//! `docs/discovery.md`): one task per discovered listener resolves its name
//! (`dns.rs`), makes the answer the listener's backend set through
//! [`state::change::set_backends`](crate::state::change::set_backends), and
//! resolves again when the records' TTL runs out.
//!
//! - The next resolution is due after the records' TTL, held within
//!   `min_interval` and `max_interval` and jittered by up to 10% either
//!   way (within the same bounds), so a fleet of balancers does not ask in
//!   step.
//! - A set is applied only when it differs from the last one applied:
//!   backends that appear are added (slow start), those gone are drained
//!   and then removed, those that stay keep their health and counters.
//! - A failed or empty resolution keeps the last good set (DNS trouble
//!   never empties a listener), is tried again after `min_interval`, is
//!   counted (`balancer_discovery_resolutions_total`) and logged once per
//!   streak of failures, with a line when the name resolves again.
//! - A name that does not resolve at start leaves the listener without
//!   backends (clients get no backend) until it does.
//!
//! The task lives as long as its listener's discovery: `runtime` starts it
//! with the listener, and stops it when a reload removes the listener or
//! changes its discovery (then starts one with the new settings), and
//! when the drain starts.

mod dns;
pub mod fleet;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::{BackendSpec, Discovery};
use crate::state::discovery::{LastResolution, Resolution};
use crate::state::{ListenerSlot, Listeners, change};

/// Resolves `discovery`'s name for the listener in `slot` until `stop` is
/// cancelled, applying each new set of backends.
pub async fn run(
    listeners: Arc<Listeners>,
    slot: Arc<ListenerSlot>,
    discovery: Discovery,
    stop: CancellationToken,
) {
    let name = slot.name.clone();
    tracing::info!(listener = %name, dns = %discovery.dns, records = discovery.dns.records(), "discovery started");
    let mut resolver = None;
    let mut applied: Option<Vec<BackendSpec>> = None;
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = resolve(&mut resolver, &discovery) => outcome,
        };
        let (result, error, wait) = match outcome {
            Ok(answer) => {
                if failing {
                    tracing::info!(listener = %name, dns = %discovery.dns, backends = answer.backends.len(), "discovery resolves again");
                    failing = false;
                }
                if applied.as_ref() != Some(&answer.backends) {
                    if apply(&listeners, &name, &answer.backends).await.is_err() {
                        return;
                    }
                    applied = Some(answer.backends);
                }
                (Resolution::Ok, None, next_interval(answer.ttl, &discovery))
            }
            Err(failure) => {
                if !failing {
                    warn_failed(&slot, &discovery, &failure);
                    failing = true;
                }
                let wait = jittered(discovery.min_interval, &discovery);
                (failure.result, Some(failure.reason), wait)
            }
        };
        let at = SystemTime::now();
        slot.discovery.record(LastResolution {
            at,
            result,
            error,
            next: at + wait,
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The warning that starts a streak of failures: what failed, and what the
/// listener is left with (its backends, from an earlier answer or from
/// before a reload, or none).
fn warn_failed(slot: &ListenerSlot, discovery: &Discovery, failure: &dns::Failure) {
    let (listener, dns) = (&slot.name, &discovery.dns);
    let (result, error) = (failure.result.label(), &failure.reason);
    match slot.snapshot.load().backends.len() {
        0 => {
            tracing::warn!(listener = %listener, dns = %dns, result, error = %error, "discovery failed; no backends until the name resolves, retrying every min_interval")
        }
        kept => {
            tracing::warn!(listener = %listener, dns = %dns, result, error = %error, backends_kept = kept, "discovery failed; the last good backends stay, retrying every min_interval")
        }
    }
}

/// One resolution, building the resolver first if it is not built yet
/// (reading the system's config may fail, and is then tried again).
async fn resolve(
    resolver: &mut Option<hickory_resolver::TokioResolver>,
    discovery: &Discovery,
) -> Result<dns::Answer, dns::Failure> {
    let resolver = match resolver {
        Some(resolver) => resolver,
        None => resolver.insert(dns::resolver(discovery)?),
    };
    dns::resolve(resolver, &discovery.dns).await
}

/// Makes `backends` the set of listener `name`, logging what changed.
/// An error means the listener is gone or the runtime stops: the task
/// ends.
async fn apply(
    listeners: &Arc<Listeners>,
    name: &str,
    backends: &[BackendSpec],
) -> Result<(), change::ChangeError> {
    match change::set_backends(listeners, name, backends).await {
        Ok(done) => {
            for added in &done.added {
                tracing::info!(listener = %name, backend = %added, "backend added by discovery");
            }
            for removed in &done.removed {
                tracing::info!(listener = %name, backend = %removed, "backend gone from DNS; draining, removed once idle");
            }
            Ok(())
        }
        Err(e) => {
            tracing::debug!(listener = %name, error = %e, "discovery stops");
            Err(e)
        }
    }
}

/// When the next resolution is due after an answer whose records stay
/// valid for `ttl`: the TTL within the bounds, jittered.
fn next_interval(ttl: Duration, discovery: &Discovery) -> Duration {
    let within = ttl.clamp(discovery.min_interval, discovery.max_interval);
    jittered(within, discovery)
}

/// `interval` jittered by up to 10% either way, kept within
/// `min_interval` and `max_interval`.
fn jittered(interval: Duration, discovery: &Discovery) -> Duration {
    crate::health::jittered(interval).clamp(discovery.min_interval, discovery.max_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DnsName;

    fn discovery(min: u64, max: u64) -> Discovery {
        Discovery {
            dns: DnsName::Srv("_http._tcp.web.test".into()),
            resolvers: Vec::new(),
            min_interval: Duration::from_secs(min),
            max_interval: Duration::from_secs(max),
        }
    }

    #[test]
    fn the_next_resolution_follows_the_ttl_within_the_bounds_and_jitter() {
        let d = discovery(10, 100);
        for _ in 0..200 {
            let next = next_interval(Duration::from_secs(50), &d);
            assert!((45..=55).contains(&next.as_secs()), "{next:?}");
            let short = next_interval(Duration::from_secs(1), &d);
            assert!((10..=11).contains(&short.as_secs()), "{short:?}");
            let long = next_interval(Duration::from_secs(1000), &d);
            assert!((90..=100).contains(&long.as_secs()), "{long:?}");
        }
    }

    #[test]
    fn jitter_spreads_resolutions_out() {
        let d = discovery(1, 1000);
        let nexts: std::collections::HashSet<Duration> = (0..50)
            .map(|_| next_interval(Duration::from_secs(60), &d))
            .collect();
        assert!(nexts.len() > 10, "{nexts:?}");
    }
}
