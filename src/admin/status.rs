//! What the admin API shows (`GET /api/status` and a backend's own
//! route): every listener and backend, read now from the same snapshots
//! and counters the data plane uses. SPEC 7's shape, extended, never
//! renamed: the dashboard and users' scripts read these field names.

use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use std::sync::atomic::AtomicU64;

use super::body::{Body, json_response};
use super::{Admin, AdminError};
use crate::backend::Backend;
use crate::backend::stats::{HistogramSnapshot, STATUS_CLASSES};
use crate::config::{Mode, ServerTls};
use crate::state::change::ChangeError;
use crate::state::discovery::Resolution;
use crate::state::{ListenerSlot, Rejection, Snapshot};
use crate::tls::Outcome as HandshakeOutcome;

/// `GET /api/status`: every listener and its backends (SPEC 7's shape,
/// extended, never renamed).
#[derive(Debug, Serialize)]
pub struct Status {
    /// The balancer's version.
    pub version: &'static str,
    /// Seconds since the admin server started.
    pub uptime_seconds: f64,
    /// `true` while serving, `false` once draining (as `/ready`).
    pub ready: bool,
    /// The config generation in force: 1 at start, one more per reload.
    pub generation: u64,
    /// The last reload, `null` before the first.
    pub last_reload: Option<LastReload>,
    /// With `[fleet]` only: the link to etcd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
    /// Every listener, in config order.
    pub listeners: Vec<ListenerStatus>,
}

/// The fleet's etcd in `/api/status` (`docs/fleet.md`).
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    /// The etcd endpoints, as configured.
    pub endpoints: Vec<String>,
    /// The key prefix.
    pub prefix: String,
    /// Whether etcd is reached and watched now; while it is not, the
    /// listeners keep their last backends and changes answer 503.
    pub connected: bool,
    /// The last etcd revision applied here; 0 before the first read.
    pub revision: i64,
    /// Why etcd was last lost or could not be reached; `null` if it never
    /// was.
    pub last_error: Option<String>,
    /// Since when `connected` has its value, RFC 3339 (UTC).
    pub since: String,
}

impl FleetStatus {
    fn of(link: &crate::state::fleet::FleetLink) -> FleetStatus {
        let status = link.status();
        FleetStatus {
            endpoints: link.settings.etcd.clone(),
            prefix: link.settings.prefix.clone(),
            connected: status.connected,
            revision: status.revision,
            last_error: status.last_error,
            since: humantime::format_rfc3339_seconds(status.since).to_string(),
        }
    }
}

/// How the last reload went, in `/api/status`.
#[derive(Debug, Serialize)]
pub struct LastReload {
    /// When it finished, RFC 3339 (UTC).
    pub time: String,
    /// `ok` or `error`.
    pub result: &'static str,
    /// Every problem of a failed reload, one per line; `null` when it
    /// succeeded.
    pub error: Option<String>,
}

/// One listener in `/api/status`.
#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    /// Its unique name.
    pub name: String,
    /// The address it listens on.
    pub listen: String,
    /// `tcp` (or `http`).
    pub mode: String,
    /// Its balancing algorithm, as the config names it.
    pub algorithm: String,
    /// `source_hash` only: the digest of its Maglev table over the live
    /// backends (16 hex digits), equal on every instance with the same
    /// backend set, so equal clients land on equal backends everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev_digest: Option<String>,
    /// Client connections open to its backends now.
    pub active_connections: u64,
    /// Client connections ever relayed to its backends.
    pub total_connections: u64,
    /// Clients turned away at accept, by reason (the `reason` label of
    /// `balancer_rejected_connections_total`).
    pub rejected_connections: Map<String, Value>,
    /// http listeners only: requests answered, by whom, and how fast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpListenerStatus>,
    /// Listeners with TLS only: handshakes and certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsListenerStatus>,
    /// Listeners with `[listeners.discovery]` only: where DNS finds their
    /// backends, and how the resolutions went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryStatus>,
    /// Its live backends, in order.
    pub backends: Vec<BackendStatus>,
}

/// An http listener's requests in `/api/status`, since it started.
#[derive(Debug, Serialize)]
pub struct HttpListenerStatus {
    /// Requests answered: by backends and by the balancer itself.
    pub requests_total: u64,
    /// Answers by status class (`1xx` to `5xx`), from backends and the
    /// balancer together.
    pub responses: Map<String, Value>,
    /// The balancer's own answers (400, 408, 431, 502, 503, 504) by class.
    pub local_responses: Map<String, Value>,
    /// Request durations over every backend, milliseconds: `p50`, `p90`,
    /// `p99` (estimated from the histogram's buckets, as Prometheus'
    /// `histogram_quantile` does); `null` before the first answer.
    pub latency_ms: Option<Percentiles>,
}

/// A listener's TLS in `/api/status`.
#[derive(Debug, Serialize)]
pub struct TlsListenerStatus {
    /// The oldest TLS version accepted: `1.2` or `1.3`.
    pub min_version: &'static str,
    /// Handshakes since it started, by how they ended (the `result` label
    /// of `balancer_tls_handshakes_total`: `ok`, `timeout`, `error`,
    /// `closed`).
    pub handshakes: Map<String, Value>,
    /// Its certificates, in config order (the first is the default).
    pub certificates: Vec<CertificateStatus>,
}

/// A discovered listener's DNS in `/api/status`.
#[derive(Debug, Serialize)]
pub struct DiscoveryStatus {
    /// The name, as configured: an SRV name or `host:port`.
    pub dns: String,
    /// `SRV` or `A/AAAA`.
    pub records: &'static str,
    /// How the last resolution ended (`ok`, `empty`, `timeout`, `error`);
    /// `null` before the first has ended.
    pub last_result: Option<&'static str>,
    /// Why it failed, in words; `null` when it succeeded.
    pub last_error: Option<String>,
    /// When it ended, RFC 3339 (UTC); `null` before the first.
    pub last_resolution: Option<String>,
    /// When the next is due, RFC 3339 (UTC); `null` before the first has
    /// ended.
    pub next_resolution: Option<String>,
    /// Resolutions so far, by result (the `result` label of
    /// `balancer_discovery_resolutions_total`).
    pub resolutions: Map<String, Value>,
}

impl DiscoveryStatus {
    fn of(slot: &ListenerSlot, discovery: &crate::config::Discovery) -> DiscoveryStatus {
        let time = |t| humantime::format_rfc3339_seconds(t).to_string();
        let last = slot.discovery.last();
        let resolutions = Resolution::ALL
            .iter()
            .map(|&r| (r.label().to_string(), Value::from(slot.discovery.count(r))))
            .collect();
        DiscoveryStatus {
            dns: discovery.dns.to_string(),
            records: discovery.dns.records(),
            last_result: last.as_ref().map(|l| l.result.label()),
            last_error: last.as_ref().and_then(|l| l.error.clone()),
            last_resolution: last.as_ref().map(|l| time(l.at)),
            next_resolution: last.as_ref().map(|l| time(l.next)),
            resolutions,
        }
    }
}

/// One certificate of a listener in `/api/status`.
#[derive(Debug, Serialize)]
pub struct CertificateStatus {
    /// How metrics name it: its first subject alternative name, else its
    /// common name, else its file.
    pub name: String,
    /// The names SNI matches it by.
    pub names: Vec<String>,
    /// When it expires (`notAfter`), RFC 3339 (UTC).
    pub not_after: String,
    /// Its certificate file, as opened.
    pub cert: String,
}

impl TlsListenerStatus {
    fn of(slot: &ListenerSlot, tls: &ServerTls) -> TlsListenerStatus {
        let handshakes = HandshakeOutcome::ALL
            .iter()
            .map(|&outcome| {
                let count = slot.stats.tls_handshakes.count(outcome);
                (outcome.label().to_string(), Value::from(count))
            })
            .collect();
        let settings = tls.settings();
        TlsListenerStatus {
            min_version: settings.min_version.name(),
            handshakes,
            certificates: settings
                .certificates
                .iter()
                .map(|c| CertificateStatus {
                    name: c.name(),
                    names: c.names.clone(),
                    not_after: humantime::format_rfc3339_seconds(c.not_after).to_string(),
                    cert: c.cert_path.display().to_string(),
                })
                .collect(),
        }
    }
}

/// A backend's requests in `/api/status` (http listeners only).
#[derive(Debug, Serialize)]
pub struct HttpBackendStatus {
    /// Requests it answered.
    pub requests_total: u64,
    /// Its answers by status class (`1xx` to `5xx`).
    pub responses: Map<String, Value>,
    /// Its request durations, milliseconds; `null` before the first.
    pub latency_ms: Option<Percentiles>,
}

/// Quantiles of request durations, milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    fn of(histogram: &HistogramSnapshot) -> Option<Percentiles> {
        let ms = |q| histogram.quantile(q).map(|s| (s * 1e6).round() / 1e3);
        Some(Percentiles {
            p50: ms(0.5)?,
            p90: ms(0.9)?,
            p99: ms(0.99)?,
        })
    }
}

/// Counts by status class as a JSON object, and their sum.
fn classes(counts: &[AtomicU64; 5]) -> (Map<String, Value>, u64) {
    let mut total = 0u64;
    let map = STATUS_CLASSES
        .iter()
        .zip(counts)
        .map(|(class, count)| {
            let n = count.load(std::sync::atomic::Ordering::Relaxed);
            total = total.saturating_add(n);
            (class.to_string(), Value::from(n))
        })
        .collect();
    (map, total)
}

/// One backend in `/api/status` and the answers of the backend calls.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Its address as written: its name everywhere.
    pub address: String,
    /// The address connected to.
    pub resolved: String,
    /// Its relative share of traffic.
    pub weight: u32,
    /// `up`, `down` or `draining`.
    pub state: &'static str,
    /// Whether a DELETE is draining it, to remove it once idle.
    pub removing: bool,
    /// Client connections open to it now.
    pub active_connections: u64,
    /// Client connections ever relayed to it.
    pub total_connections: u64,
    /// Connect attempts to it that failed or timed out.
    pub failures: u64,
    /// Bytes from clients to it.
    pub bytes_in: u64,
    /// Bytes from it to clients.
    pub bytes_out: u64,
    /// Connects to it in progress now.
    pub connecting: u64,
    /// The weight it competes with now: less than `weight` while its
    /// slow-start ramp runs.
    pub effective_weight: f64,
    /// Its connect latency (peak EWMA) in milliseconds; `null` before the
    /// first connect.
    pub latency_ms: Option<f64>,
    /// The result of its last active health check: `"ok"`, or the failure
    /// in words; `null` without active checks or before the first one.
    pub last_check: Option<String>,
    /// What its health is made of.
    pub health: HealthStatus,
    /// http listeners only: its requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpBackendStatus>,
}

/// The evidence behind a backend's state, in `/api/status`.
#[derive(Debug, Serialize)]
pub struct HealthStatus {
    /// What marked it down (`checks`, `connects`, `answers`, `operator`);
    /// `null` unless it is down.
    pub down_cause: Option<&'static str>,
    /// Active checks passed in a row.
    pub check_successes: u32,
    /// Active checks failed in a row.
    pub check_failures: u32,
    /// Real connects failed in a row.
    pub connect_failures: u32,
    /// The last failure of a check or connect, in words.
    pub last_error: Option<String>,
    /// The last change of state, if any.
    pub last_change: Option<StateChange>,
}

/// A change of a backend's state.
#[derive(Debug, Serialize)]
pub struct StateChange {
    /// How long ago, in seconds.
    pub seconds_ago: f64,
    /// Why, in words.
    pub reason: String,
}

/// The status of every listener, read now.
pub fn all(admin: &Admin) -> Status {
    let listeners = admin
        .listeners
        .all()
        .iter()
        .map(|slot| listener_status(admin, slot))
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: admin.started.elapsed().as_secs_f64(),
        ready: admin.process.is_ready(),
        generation: admin.process.generation(),
        last_reload: admin.process.last_reload().map(|record| LastReload {
            time: humantime::format_rfc3339_seconds(record.at).to_string(),
            result: if record.result.is_ok() { "ok" } else { "error" },
            error: record.result.err(),
        }),
        fleet: admin.process.fleet.load().as_deref().map(FleetStatus::of),
        listeners,
    }
}

fn listener_status(admin: &Admin, slot: &ListenerSlot) -> ListenerStatus {
    let state = slot.snapshot.load();
    let backends: Vec<BackendStatus> = state
        .backends
        .iter()
        .map(|b| backend_view(admin, &state, b))
        .collect();
    let rejected_connections = Rejection::ALL
        .iter()
        .map(|&why| {
            (
                why.label().to_string(),
                Value::from(slot.stats.rejected(why)),
            )
        })
        .collect();
    let http = (state.config.mode() == Mode::Http).then(|| {
        let (local_responses, local_total) = classes(&slot.stats.local_responses);
        let mut responses = local_responses.clone();
        let mut requests_total = local_total;
        let mut durations: Option<HistogramSnapshot> = None;
        for backend in &state.backends {
            let (by_class, total) = classes(&backend.stats.responses);
            requests_total = requests_total.saturating_add(total);
            for (class, n) in by_class {
                let sum = responses.get(&class).and_then(Value::as_u64).unwrap_or(0)
                    + n.as_u64().unwrap_or(0);
                responses.insert(class, Value::from(sum));
            }
            let h = backend.stats.request_duration.snapshot();
            match &mut durations {
                Some(all) => all.merge(&h),
                None => durations = Some(h),
            }
        }
        HttpListenerStatus {
            requests_total,
            responses,
            local_responses,
            latency_ms: durations.as_ref().and_then(Percentiles::of),
        }
    });
    ListenerStatus {
        name: slot.name.clone(),
        listen: slot.listen.to_string(),
        mode: state.config.mode().to_string(),
        algorithm: state.config.algorithm.to_string(),
        maglev_digest: state.balancer.table().map(|table| table.digest_hex()),
        active_connections: backends.iter().map(|b| b.active_connections).sum(),
        total_connections: backends.iter().map(|b| b.total_connections).sum(),
        rejected_connections,
        http,
        tls: state
            .config
            .tls
            .as_ref()
            .map(|tls| TlsListenerStatus::of(slot, tls)),
        discovery: state
            .config
            .discovery
            .as_ref()
            .map(|d| DiscoveryStatus::of(slot, d)),
        backends,
    }
}

/// A backend of the listener whose current state is `state`, read now.
fn backend_view(admin: &Admin, state: &Snapshot, backend: &Backend) -> BackendStatus {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &backend.stats;
    let listener = state.config.name.as_str();
    let removing = admin.listeners.is_removing(listener, &backend.address);
    let now = tokio::time::Instant::now();
    let health = backend.health.snapshot();
    let last_check = match (&state.config.health_check, &health) {
        (None, _) => None,
        (Some(_), h) if h.check_successes > 0 => Some("ok".to_string()),
        (Some(_), h) if h.check_failures > 0 => {
            Some(h.last_error.clone().unwrap_or_else(|| "failed".to_string()))
        }
        (Some(_), _) => None,
    };
    // Thousandths of a weight unit, shown: precision loss does not matter.
    let effective_weight = backend.effective_weight() as f64 / 1000.0;
    BackendStatus {
        address: backend.address.clone(),
        resolved: backend.resolved.to_string(),
        weight: backend.weight(),
        state: backend.state().name(),
        removing,
        active_connections: stats.active.load(Relaxed),
        total_connections: stats.total.load(Relaxed),
        failures: stats.connect_failures.load(Relaxed),
        bytes_in: stats.bytes_in.load(Relaxed),
        bytes_out: stats.bytes_out.load(Relaxed),
        connecting: stats.connecting.load(Relaxed),
        effective_weight,
        latency_ms: backend
            .latency
            .get_at(now)
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        last_check,
        http: (state.config.mode() == Mode::Http).then(|| {
            let (responses, requests_total) = classes(&stats.responses);
            HttpBackendStatus {
                requests_total,
                responses,
                latency_ms: Percentiles::of(&stats.request_duration.snapshot()),
            }
        }),
        health: HealthStatus {
            down_cause: health.down_cause.map(|c| c.name()),
            check_successes: health.check_successes,
            check_failures: health.check_failures,
            connect_failures: health.connect_failures,
            last_error: health.last_error,
            last_change: health.last_change.map(|(at, reason)| StateChange {
                seconds_ago: now.saturating_duration_since(at).as_secs_f64(),
                reason,
            }),
        },
    }
}

/// `GET /api/listeners/{name}/backends/{address}`: the backend as
/// `/api/status` shows it.
pub fn backend(admin: &Admin, listener: &str, address: &str) -> Result<BackendStatus, AdminError> {
    let unknown_listener = || ChangeError::UnknownListener(listener.to_string());
    let slot = admin
        .listeners
        .find(listener)
        .ok_or_else(unknown_listener)?;
    let snapshot = slot.snapshot.load();
    let backend = snapshot
        .backend(address)
        .ok_or_else(|| ChangeError::UnknownBackend {
            listener: listener.to_string(),
            address: address.to_string(),
        })?;
    Ok(backend_view(admin, &snapshot, backend))
}

/// The answer of a change: `status` and the backend as `/api/status` shows
/// it in its listener's current snapshot (`null` if the listener is gone).
pub fn backend_answer(
    admin: &Admin,
    status: StatusCode,
    listener: &str,
    backend: &Backend,
) -> Response<Body> {
    let view = admin
        .listeners
        .find(listener)
        .map(|slot| backend_view(admin, &slot.snapshot.load(), backend));
    json_response(status, &view)
}
