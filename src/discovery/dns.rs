//! One resolution of a discovered listener's name through hickory-resolver:
//! SRV records (each target resolved through the same servers) or the
//! A/AAAA records of `host:port`, turned into the backend set and the time
//! its records stay valid.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::config::{BackendSpec, Discovery, DnsName};
use crate::state::discovery::Resolution;

/// How long one query may wait for a server's answer before the next
/// attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Attempts per query (each server in turn).
const QUERY_ATTEMPTS: usize = 2;

/// A resolution that brought a backend set.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The backends, sorted by address: two answers with the same records
    /// compare equal whatever order the server gave them in.
    pub backends: Vec<BackendSpec>,
    /// How long the records stay valid: the smallest TTL among them.
    pub ttl: Duration,
}

/// A resolution that brought no backend set: how it is counted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `empty`, `timeout` or `error`.
    pub result: Resolution,
    /// What happened, in words.
    pub reason: String,
}

/// The resolver of one discovered listener: its servers, no cache (the
/// name is asked again only when its TTL ran out, and then the servers'
/// answer is wanted), no hosts file.
pub fn resolver(discovery: &Discovery) -> Result<TokioResolver, Failure> {
    let mut builder = if discovery.resolvers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| Failure {
            result: Resolution::Error,
            reason: format!("cannot read the system's resolver config: {e}"),
        })?
    } else {
        let mut config = ResolverConfig::new();
        for &server in &discovery.resolvers {
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_ATTEMPTS;
    Ok(builder.build())
}

/// Resolves `name` once through `resolver`.
pub async fn resolve(resolver: &TokioResolver, name: &DnsName) -> Result<Answer, Failure> {
    let (mut backends, valid_until) = match name {
        DnsName::Srv(srv) => srv_backends(resolver, srv).await?,
        DnsName::Host { host, port } => {
            let lookup = resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| failure(&e, name))?;
            let backends = lookup
                .iter()
                .map(|ip| backend(SocketAddr::new(ip, *port).to_string(), ip, *port, 1))
                .collect();
            (backends, lookup.valid_until())
        }
    };
    backends.sort_by(|a, b| a.address.cmp(&b.address));
    backends.dedup_by(|a, b| a.address == b.address);
    if backends.is_empty() {
        return Err(Failure {
            result: Resolution::Empty,
            reason: format!("{name} has no usable records"),
        });
    }
    let ttl = valid_until.saturating_duration_since(Instant::now());
    Ok(Answer { backends, ttl })
}

/// The backends of SRV name `srv`: the records of the lowest priority
/// (RFC 2782: the others are fallbacks), each `target:port` at the
/// record's weight (0 counts as 1, above the largest weight counts as
/// that), its target resolved to its lowest address. The targets are
/// resolved together (a slow one does not hold the others up); one that
/// does not resolve is left out (logged at debug level). The validity is
/// the shortest of every lookup's.
async fn srv_backends(
    resolver: &TokioResolver,
    srv: &str,
) -> Result<(Vec<BackendSpec>, Instant), Failure> {
    let lookup = resolver
        .srv_lookup(srv)
        .await
        .map_err(|e| failure(&e, &DnsName::Srv(srv.to_string())))?;
    let mut valid_until = lookup.as_lookup().valid_until();
    let Some(priority) = lookup.iter().map(|r| r.priority()).min() else {
        return Ok((Vec::new(), valid_until));
    };
    // Owned here: dropped (and its lookups aborted) if this resolution is.
    let mut targets = tokio::task::JoinSet::new();
    for record in lookup.iter().filter(|r| r.priority() == priority) {
        let host = record.target().to_utf8().trim_end_matches('.').to_string();
        let (port, weight) = (record.port(), u32::from(record.weight()).max(1));
        let resolver = resolver.clone();
        targets.spawn(async move {
            let answer = resolver.lookup_ip(host.as_str()).await;
            (host, port, weight, answer)
        });
    }
    let mut backends = Vec::new();
    while let Some(done) = targets.join_next().await {
        let Ok((host, port, weight, answer)) = done else {
            continue;
        };
        let name = format!("{host}:{port}");
        match answer {
            Ok(ips) => {
                valid_until = valid_until.min(ips.valid_until());
                // The lowest address, so that a target with several
                // keeps one backend whatever order they come in.
                if let Some(ip) = ips.iter().min() {
                    backends.push(backend(name, ip, port, weight));
                }
            }
            Err(e) => {
                let target = DnsName::Host { host, port };
                let reason = failure(&e, &target).reason;
                tracing::debug!(srv, backend = %name, error = %reason, "SRV target does not resolve; left out");
            }
        }
    }
    Ok((backends, valid_until))
}

/// A discovered backend named `address`, connected to at `ip:port`.
fn backend(address: String, ip: IpAddr, port: u16, weight: u32) -> BackendSpec {
    BackendSpec {
        address,
        resolved: SocketAddr::new(ip, port),
        weight: weight.min(crate::config::limits::MAX_WEIGHT),
    }
}

/// A lookup error of `name` as a counted failure, in words (hickory's
/// own messages can carry Rust debug formatting of the query).
fn failure(e: &ResolveError, name: &DnsName) -> Failure {
    let records = name.records();
    if e.is_no_records_found() {
        let reason = if e.is_nx_domain() {
            format!("{name}: no such name")
        } else {
            format!("{name}: no {records} records")
        };
        return Failure {
            result: Resolution::Empty,
            reason,
        };
    }
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::Timeout) => Failure {
            result: Resolution::Timeout,
            reason: format!(
                "{name}: no DNS server answered within {}",
                crate::net::format_duration(QUERY_TIMEOUT)
            ),
        },
        Some(ProtoErrorKind::Io(io)) => Failure {
            result: Resolution::Error,
            reason: format!("{name}: {}", crate::net::io_reason(io)),
        },
        _ => Failure {
            result: Resolution::Error,
            reason: format!(
                "{name}: {}",
                e.to_string().trim_start_matches("proto error: ")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use hickory_resolver::proto::ProtoError;

    use super::*;

    fn lookup_error(kind: ProtoErrorKind) -> ResolveError {
        ResolveError::from(ProtoError::from(kind))
    }

    #[test]
    fn failures_are_counted_by_kind_and_said_in_words() {
        let name = DnsName::Host {
            host: "web.test".into(),
            port: 80,
        };
        let timeout = failure(&lookup_error(ProtoErrorKind::Timeout), &name);
        assert_eq!(timeout.result, Resolution::Timeout);
        assert_eq!(
            timeout.reason,
            "web.test:80: no DNS server answered within 1s"
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let refused = failure(&lookup_error(ProtoErrorKind::Io(Arc::new(refused))), &name);
        assert_eq!(refused.result, Resolution::Error);
        assert!(
            refused.reason.starts_with("web.test:80: "),
            "{}",
            refused.reason
        );
        assert!(!refused.reason.contains("Kind("), "{}", refused.reason);
    }

    #[test]
    fn a_discovered_weight_stays_within_the_largest_weight() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(backend("a:1".into(), ip, 1, 65_535).weight, 10_000);
        assert_eq!(
            backend("a:1".into(), ip, 1, 3).resolved.to_string(),
            "127.0.0.1:1"
        );
    }
}
