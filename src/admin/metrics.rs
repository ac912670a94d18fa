//! `/metrics`: every metric name in one place ([`names`], a contract like
//! SPEC 7 says), and a `prometheus-client` registry whose collectors read
//! the live counters at scrape time.
//!
//! Nothing here runs on the data plane: connections only bump the atomics
//! of their backend (`backend::stats`) and listener (`state::stats`), and
//! a scrape walks the current snapshots and reads them. So counting
//! costs one `Relaxed` add per event, with no lock and no label lookup.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::backend::stats::STATUS_CLASSES;
use crate::backend::{Backend, BackendState};
use crate::config::{Mode, ServerTls};
use crate::state::discovery::Resolution;
use crate::state::stats::Rejection;
use crate::state::{ListenerSlot, Listeners, Process, Snapshot};
use crate::tls::Outcome as HandshakeOutcome;

/// Every metric name, as exported. Used where metrics are emitted, in the
/// tests that parse `/metrics`, and listed in `docs/admin.md`.
pub mod names {
    /// Counter `{listener,backend}`: client connections relayed to a backend.
    pub const CONNECTIONS_TOTAL: &str = "balancer_connections_total";
    /// Gauge `{listener,backend}`: client connections open to a backend now.
    pub const ACTIVE_CONNECTIONS: &str = "balancer_active_connections";
    /// Counter `{listener,backend,direction}`: bytes relayed; direction
    /// `in` (client to backend) or `out` (backend to client).
    pub const BYTES_TOTAL: &str = "balancer_bytes_total";
    /// Counter `{listener,backend}`: connect attempts that failed or timed out.
    pub const CONNECT_FAILURES_TOTAL: &str = "balancer_connect_failures_total";
    /// Gauge `{listener,backend}`: 1 unless the backend is down.
    pub const BACKEND_UP: &str = "balancer_backend_up";
    /// Gauge `{listener,backend,state}`: 1 for the backend's current state
    /// (`up`, `down`, `draining`), 0 for the others.
    pub const BACKEND_STATE: &str = "balancer_backend_state";
    /// Gauge `{listener,backend}`: the backend's current weight.
    pub const BACKEND_WEIGHT: &str = "balancer_backend_weight";
    /// Gauge `{listener,backend}`: connect latency (peak EWMA), seconds;
    /// absent before the backend's first connect.
    pub const BACKEND_LATENCY_SECONDS: &str = "balancer_backend_latency_seconds";
    /// Counter `{listener,backend,code}`: HTTP answers (http mode) by
    /// status class (`2xx`, ...); the balancer's own answers (no backend
    /// answered) have an empty `backend`.
    pub const REQUESTS_TOTAL: &str = "balancer_requests_total";
    /// Histogram `{listener,backend}`: how long http requests took, from
    /// the request head to the answer's last byte, seconds.
    pub const REQUEST_DURATION_SECONDS: &str = "balancer_request_duration_seconds";
    /// Histogram `{listener}`: how long client connections lasted, seconds.
    pub const CONNECTION_DURATION_SECONDS: &str = "balancer_connection_duration_seconds";
    /// Counter `{listener,reason}`: clients turned away at accept.
    pub const REJECTED_CONNECTIONS_TOTAL: &str = "balancer_rejected_connections_total";
    /// Counter `{listener,result}`: TLS handshakes of listeners with TLS,
    /// by how they ended: `ok`, `timeout`, `error` (TLS refused what the
    /// client sent), `closed` (the client left before the end).
    pub const TLS_HANDSHAKES_TOTAL: &str = "balancer_tls_handshakes_total";
    /// Gauge `{listener,name}`: when each certificate of a listener with
    /// TLS expires (its `notAfter`), seconds since the Unix epoch; `name`
    /// is its first subject alternative name (else its common name, else
    /// its file).
    pub const TLS_CERTIFICATE_EXPIRY: &str = "balancer_tls_certificate_expiry_timestamp_seconds";
    /// Counter `{listener,result}`: DNS resolutions of listeners with
    /// `[listeners.discovery]`, by how they ended: `ok`, `empty` (no
    /// usable records), `timeout`, `error`; all but `ok` keep the last
    /// good backend set.
    pub const DISCOVERY_RESOLUTIONS_TOTAL: &str = "balancer_discovery_resolutions_total";
    /// Gauge: with `[fleet]`, 1 while the fleet task has etcd (its read
    /// and watch are up), 0 while it does not (the listeners keep their
    /// last backends, admin changes answer 503); absent without `[fleet]`.
    pub const FLEET_CONNECTED: &str = "balancer_fleet_connected";
    /// Gauge: the config generation in force (1 at start, one more per
    /// reload).
    pub const CONFIG_GENERATION: &str = "balancer_config_generation";
    /// Counter `{result}`: config reloads, `ok` or `error`.
    pub const CONFIG_RELOADS_TOTAL: &str = "balancer_config_reloads_total";
    /// Counter: access log lines dropped (its queue was full, or its file
    /// could not be written).
    pub const ACCESS_LOG_DROPPED_TOTAL: &str = "balancer_access_log_dropped_total";
    /// Counter: application log lines dropped because stderr did not keep
    /// up (the log never blocks the balancer).
    pub const LOG_LINES_DROPPED_TOTAL: &str = "balancer_log_lines_dropped_total";
    /// Gauge `{version}`: always 1; the running version as a label.
    pub const BUILD_INFO: &str = "balancer_build_info";
    /// Gauge: file descriptors the process has open.
    pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
    /// Gauge: the most file descriptors the process may open.
    pub const PROCESS_MAX_FDS: &str = "process_max_fds";
    /// Gauge: resident memory, bytes.
    pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
    /// Gauge: virtual memory, bytes.
    pub const PROCESS_VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
    /// Gauge: when the process started, seconds since the Unix epoch.
    pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";
    /// Counter: CPU time the process used (user and system), seconds.
    pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";

    /// Every name above, in the order `/metrics` lists them.
    pub const ALL: [&str; 27] = [
        CONNECTIONS_TOTAL,
        ACTIVE_CONNECTIONS,
        BYTES_TOTAL,
        CONNECT_FAILURES_TOTAL,
        BACKEND_UP,
        BACKEND_STATE,
        BACKEND_WEIGHT,
        BACKEND_LATENCY_SECONDS,
        REQUESTS_TOTAL,
        REQUEST_DURATION_SECONDS,
        CONNECTION_DURATION_SECONDS,
        REJECTED_CONNECTIONS_TOTAL,
        TLS_HANDSHAKES_TOTAL,
        TLS_CERTIFICATE_EXPIRY,
        DISCOVERY_RESOLUTIONS_TOTAL,
        FLEET_CONNECTED,
        CONFIG_GENERATION,
        CONFIG_RELOADS_TOTAL,
        ACCESS_LOG_DROPPED_TOTAL,
        LOG_LINES_DROPPED_TOTAL,
        BUILD_INFO,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_RESIDENT_MEMORY_BYTES,
        PROCESS_VIRTUAL_MEMORY_BYTES,
        PROCESS_START_TIME_SECONDS,
        PROCESS_CPU_SECONDS_TOTAL,
    ];
}

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metrics registry: collectors over the live state, rendered on each
/// scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
}

impl Metrics {
    /// Metrics over every listener of `listeners` and the `process`, plus
    /// the process's own figures (CPU, memory, files).
    pub fn new(listeners: Arc<Listeners>, process: Arc<Process>) -> Metrics {
        let mut metrics = prometheus_client::registry::Registry::default();
        metrics.register_collector(Box::new(BalancerCollector { listeners, process }));
        metrics.register_collector(Box::new(ProcessCollector));
        Metrics { registry: metrics }
    }

    /// Renders every metric, read now.
    pub fn render(&self, format: Format) -> Result<String, fmt::Error> {
        let mut out = String::new();
        match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }
}

/// The name `prometheus-client` wants for a counter: it appends `_total`
/// itself.
fn base_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// Writes one metric family: its `HELP`/`TYPE` lines, then what `samples`
/// writes.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    let name = if kind == MetricType::Counter {
        base_name(name)
    } else {
        name
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    samples(&mut metric)
}

fn counter(metric: &mut MetricEncoder, labels: &[(&str, &str)], value: u64) -> fmt::Result {
    metric
        .encode_family(&labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(metric: &mut MetricEncoder, labels: &[(&str, &str)], value: i64) -> fmt::Result {
    metric.encode_family(&labels)?.encode_gauge(&value)
}

// === impl BalancerCollector ===

/// Reads every backend's and listener's counters at scrape time.
#[derive(Debug)]
struct BalancerCollector {
    listeners: Arc<Listeners>,
    process: Arc<Process>,
}

/// One listener as read for a scrape: its slot and its snapshot now.
type Listener = (Arc<ListenerSlot>, Arc<Snapshot>);

impl BalancerCollector {
    fn listeners(&self) -> Vec<Listener> {
        self.listeners
            .all()
            .iter()
            .map(|slot| (Arc::clone(slot), slot.snapshot.load_full()))
            .collect()
    }
}

/// Calls `each` with the `listener` and `backend` labels of every backend.
fn each_backend(
    listeners: &[Listener],
    mut each: impl FnMut(&[(&str, &str); 2], &Backend) -> fmt::Result,
) -> fmt::Result {
    for (slot, state) in listeners {
        for backend in &state.backends {
            each(
                &[("listener", &slot.name), ("backend", &backend.address)],
                backend,
            )?;
        }
    }
    Ok(())
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for BalancerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let listeners = self.listeners();
        let e = &mut encoder;
        family(
            e,
            names::CONNECTIONS_TOTAL,
            "Client connections relayed to a backend.",
            MetricType::Counter,
            |m| {
                each_backend(&listeners, |l, b| {
                    counter(m, l, b.stats.total.load(Relaxed))
                })
            },
        )?;
        family(
            e,
            names::ACTIVE_CONNECTIONS,
            "Client connections open to a backend now.",
            MetricType::Gauge,
            |m| {
                each_backend(&listeners, |l, b| {
                    gauge(m, l, as_gauge(b.stats.active.load(Relaxed)))
                })
            },
        )?;
        family(
            e,
            names::BYTES_TOTAL,
            "Bytes relayed; direction in is client to backend, out is backend to client.",
            MetricType::Counter,
            |m| {
                each_backend(&listeners, |[listener, backend], b| {
                    counter(
                        m,
                        &[*listener, *backend, ("direction", "in")],
                        b.stats.bytes_in.load(Relaxed),
                    )?;
                    counter(
                        m,
                        &[*listener, *backend, ("direction", "out")],
                        b.stats.bytes_out.load(Relaxed),
                    )
                })
            },
        )?;
        family(
            e,
            names::CONNECT_FAILURES_TOTAL,
            "Connect attempts to a backend that failed or timed out.",
            MetricType::Counter,
            |m| {
                each_backend(&listeners, |l, b| {
                    counter(m, l, b.stats.connect_failures.load(Relaxed))
                })
            },
        )?;
        family(
            e,
            names::BACKEND_UP,
            "1 unless the backend is down (draining counts as up).",
            MetricType::Gauge,
            |m| {
                each_backend(&listeners, |l, b| {
                    gauge(m, l, i64::from(b.state() != BackendState::Down))
                })
            },
        )?;
        family(
            e,
            names::BACKEND_STATE,
            "1 for the backend's current state (up, down, draining), 0 for the others.",
            MetricType::Gauge,
            |m| {
                each_backend(&listeners, |[listener, backend], b| {
                    let current = b.state();
                    for state in [BackendState::Up, BackendState::Down, BackendState::Draining] {
                        let labels = [*listener, *backend, ("state", state.name())];
                        gauge(m, &labels, i64::from(current == state))?;
                    }
                    Ok(())
                })
            },
        )?;
        family(
            e,
            names::BACKEND_WEIGHT,
            "The backend's current weight.",
            MetricType::Gauge,
            |m| each_backend(&listeners, |l, b| gauge(m, l, i64::from(b.weight()))),
        )?;
        let now = tokio::time::Instant::now();
        family(
            e,
            names::BACKEND_LATENCY_SECONDS,
            "Connect latency to the backend (peak EWMA), seconds.",
            MetricType::Gauge,
            |m| {
                each_backend(&listeners, |l, b| match b.latency.get_at(now) {
                    Some(latency) => m.encode_family(l)?.encode_gauge(&latency.as_secs_f64()),
                    None => Ok(()),
                })
            },
        )?;
        let http: Vec<&Listener> = listeners
            .iter()
            .filter(|(_, state)| state.config.mode() == Mode::Http)
            .collect();
        family(
            e,
            names::REQUESTS_TOTAL,
            "HTTP answers by status class (http mode); an empty backend: the balancer's own.",
            MetricType::Counter,
            |m| {
                for (slot, state) in http.iter().copied() {
                    let listener = ("listener", slot.name.as_str());
                    for backend in &state.backends {
                        let answered = backend.stats.responses.iter();
                        for (class, count) in STATUS_CLASSES.iter().zip(answered) {
                            let labels = [listener, ("backend", &backend.address), ("code", class)];
                            counter(m, &labels, count.load(Relaxed))?;
                        }
                    }
                    let own = slot.stats.local_responses.iter();
                    for (class, count) in STATUS_CLASSES.iter().zip(own) {
                        let labels = [listener, ("backend", ""), ("code", class)];
                        counter(m, &labels, count.load(Relaxed))?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            e,
            names::REQUEST_DURATION_SECONDS,
            "How long http requests took, from the request head to the answer's last byte.",
            MetricType::Histogram,
            |m| {
                for (slot, state) in http.iter().copied() {
                    for backend in &state.backends {
                        let h = backend.stats.request_duration.snapshot();
                        let labels = [
                            ("listener", slot.name.as_str()),
                            ("backend", backend.address.as_str()),
                        ];
                        m.encode_family(&labels)?
                            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            e,
            names::CONNECTION_DURATION_SECONDS,
            "How long client connections lasted, from accept to close.",
            MetricType::Histogram,
            |m| {
                for (slot, _) in &listeners {
                    let h = slot.stats.connection_duration.snapshot();
                    m.encode_family(&[("listener", slot.name.as_str())])?
                        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
                }
                Ok(())
            },
        )?;
        family(
            e,
            names::REJECTED_CONNECTIONS_TOTAL,
            "Clients turned away at accept: not_allowed, listener_max_connections, global_max_connections.",
            MetricType::Counter,
            |m| {
                for (slot, _) in &listeners {
                    for why in Rejection::ALL {
                        let labels = [("listener", slot.name.as_str()), ("reason", why.label())];
                        counter(m, &labels, slot.stats.rejected(why))?;
                    }
                }
                Ok(())
            },
        )?;
        tls_families(e, &listeners)?;
        discovery_family(e, &listeners)?;
        family(
            e,
            names::FLEET_CONNECTED,
            "With [fleet]: 1 while etcd is reached and watched, 0 while it is not (the last backends stay).",
            MetricType::Gauge,
            |m| match self.process.fleet.load().as_ref() {
                Some(link) => m.encode_gauge(&i64::from(link.is_connected())),
                None => Ok(()),
            },
        )?;
        family(
            e,
            names::CONFIG_GENERATION,
            "The config generation in force: 1 at start, one more per reload.",
            MetricType::Gauge,
            |m| {
                let generation = i64::try_from(self.process.generation()).unwrap_or(i64::MAX);
                m.encode_gauge(&generation)
            },
        )?;
        family(
            e,
            names::CONFIG_RELOADS_TOTAL,
            "Config reloads: ok (applied) or error (nothing changed).",
            MetricType::Counter,
            |m| {
                let (ok, failed) = self.process.reloads();
                counter(m, &[("result", "ok")], ok)?;
                counter(m, &[("result", "error")], failed)
            },
        )?;
        family(
            e,
            names::ACCESS_LOG_DROPPED_TOTAL,
            "Access log lines dropped: its queue was full, or its file could not be written.",
            MetricType::Counter,
            |m| m.encode_counter::<NoLabelSet, _, f64>(&self.process.access_log_dropped(), None),
        )?;
        family(
            e,
            names::LOG_LINES_DROPPED_TOTAL,
            "Application log lines dropped because stderr did not keep up.",
            MetricType::Counter,
            |m| m.encode_counter::<NoLabelSet, _, f64>(&crate::logging::dropped_lines(), None),
        )?;
        family(
            e,
            names::BUILD_INFO,
            "Always 1; the running version as a label.",
            MetricType::Gauge,
            |m| gauge(m, &[("version", env!("CARGO_PKG_VERSION"))], 1),
        )
    }
}

/// The TLS families: handshakes by outcome and certificate expiry, for
/// the listeners with TLS.
fn tls_families(e: &mut DescriptorEncoder, listeners: &[Listener]) -> fmt::Result {
    let with_tls: Vec<(&ListenerSlot, &ServerTls)> = listeners
        .iter()
        .filter_map(|(slot, state)| Some((slot.as_ref(), state.config.tls.as_ref()?)))
        .collect();
    family(
        e,
        names::TLS_HANDSHAKES_TOTAL,
        "TLS handshakes by how they ended: ok, timeout, error (TLS refused what the client sent), closed (the client left).",
        MetricType::Counter,
        |m| {
            for (slot, _) in &with_tls {
                let handshakes = &slot.stats.tls_handshakes;
                for outcome in HandshakeOutcome::ALL {
                    let labels = [
                        ("listener", slot.name.as_str()),
                        ("result", outcome.label()),
                    ];
                    counter(m, &labels, handshakes.count(outcome))?;
                }
            }
            Ok(())
        },
    )?;
    family(
        e,
        names::TLS_CERTIFICATE_EXPIRY,
        "When each certificate expires (notAfter), seconds since the Unix epoch.",
        MetricType::Gauge,
        |m| {
            for (slot, tls) in &with_tls {
                for certificate in &tls.settings().certificates {
                    let name = certificate.name();
                    let labels = [("listener", slot.name.as_str()), ("name", name.as_str())];
                    let expiry = certificate.not_after.duration_since(UNIX_EPOCH);
                    let seconds = expiry.map_or(0, |d| as_gauge(d.as_secs()));
                    gauge(m, &labels, seconds)?;
                }
            }
            Ok(())
        },
    )
}

/// DNS resolutions by result, for the listeners with discovery.
fn discovery_family(e: &mut DescriptorEncoder, listeners: &[Listener]) -> fmt::Result {
    family(
        e,
        names::DISCOVERY_RESOLUTIONS_TOTAL,
        "DNS discovery resolutions by result: ok, empty, timeout, error (all but ok keep the last good backends).",
        MetricType::Counter,
        |m| {
            for (slot, state) in listeners {
                if state.config.discovery.is_none() {
                    continue;
                }
                for result in Resolution::ALL {
                    let labels = [("listener", slot.name.as_str()), ("result", result.label())];
                    counter(m, &labels, slot.discovery.count(result))?;
                }
            }
            Ok(())
        },
    )
}

// === impl ProcessCollector ===

/// The process metrics users expect of any exporter (the names of the
/// official clients), read from `/proc/self` at scrape time. Elsewhere than
/// Linux, and for any value that cannot be read, the metric is left out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let process = process::read();
        let gauges = [
            (
                names::PROCESS_OPEN_FDS,
                "File descriptors the process has open.",
                process.open_fds.map(|v| v as f64),
            ),
            (
                names::PROCESS_MAX_FDS,
                "The most file descriptors the process may open.",
                process.max_fds.map(|v| v as f64),
            ),
            (
                names::PROCESS_RESIDENT_MEMORY_BYTES,
                "Resident memory, bytes.",
                process.resident_bytes.map(|v| v as f64),
            ),
            (
                names::PROCESS_VIRTUAL_MEMORY_BYTES,
                "Virtual memory, bytes.",
                process.virtual_bytes.map(|v| v as f64),
            ),
            (
                names::PROCESS_START_TIME_SECONDS,
                "When the process started, seconds since the Unix epoch.",
                process.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        if let Some(cpu) = process.cpu_seconds {
            family(
                &mut encoder,
                names::PROCESS_CPU_SECONDS_TOTAL,
                "CPU time the process used (user and system), seconds.",
                MetricType::Counter,
                |m| m.encode_counter::<NoLabelSet, _, f64>(&cpu, None),
            )?;
        }
        Ok(())
    }
}

/// Reading the process's own figures.
mod process {
    /// What could be read; `None` for what could not.
    #[derive(Debug, Default)]
    pub(super) struct Process {
        pub open_fds: Option<u64>,
        pub max_fds: Option<u64>,
        pub resident_bytes: Option<u64>,
        pub virtual_bytes: Option<u64>,
        pub start_time_seconds: Option<f64>,
        pub cpu_seconds: Option<f64>,
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn read() -> Process {
        Process::default()
    }

    /// Reads `/proc/self`: `fd/` (open fds), `limits` (max fds), `status`
    /// (memory), `stat` with `/proc/stat`'s boot time (start and CPU time).
    #[cfg(target_os = "linux")]
    pub(super) fn read() -> Process {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // `man 5 proc`: utime is field 14, stime 15, starttime 22; `fields`
        // starts at field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds = field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) as f64 / ticks);
        let start_time_seconds = field(22)
            .zip(boot_time())
            .map(|(start, boot)| boot as f64 + start as f64 / ticks);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Process {
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: max_open_files(),
            resident_bytes: kib_field(&status, "VmRSS:"),
            virtual_bytes: kib_field(&status, "VmSize:"),
            start_time_seconds,
            cpu_seconds,
        }
    }

    /// `KEY:   N kB` of `/proc/self/status`, in bytes.
    #[cfg(target_os = "linux")]
    fn kib_field(status: &str, key: &str) -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line
            .get(key.len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        kib.checked_mul(1024)
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    #[cfg(target_os = "linux")]
    fn max_open_files() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.get("Max open files".len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The boot time, seconds since the Unix epoch (`btime` of `/proc/stat`).
    #[cfg(target_os = "linux")]
    fn boot_time() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }
}
