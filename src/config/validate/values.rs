//! Small pure checks of one value, each a function from the text as typed
//! to the model's value or the [`Problem`] with it: durations, listener
//! names, names of algorithms, modes and check kinds, the admin token, a
//! check path.

use std::time::Duration;

use crate::config::error::Problem;
use crate::config::{AccessLogFormat, AccessLogTarget, Algorithm, CheckKind, Mode, ProxyProtocol};

use crate::config::limits::MAX_DURATION_DAYS;

/// A duration in the grammar of [`crate::config::duration`]; more than
/// zero, at most [`MAX_DURATION_DAYS`].
pub(super) fn duration(text: &str) -> Result<Duration, Problem> {
    let d = duration_or_zero(text)?;
    if d.is_zero() {
        return Err(Problem::ZeroDuration);
    }
    Ok(d)
}

/// A duration in the grammar of [`crate::config::duration`]; zero allowed,
/// at most [`MAX_DURATION_DAYS`].
pub(super) fn duration_or_zero(text: &str) -> Result<Duration, Problem> {
    let d = crate::config::duration::parse(text)?;
    if d > Duration::from_secs(MAX_DURATION_DAYS * 24 * 3600) {
        return Err(Problem::DurationTooLong {
            value: text.to_string(),
            max_days: MAX_DURATION_DAYS,
        });
    }
    Ok(d)
}

/// An admin token: sent as `Authorization: Bearer TOKEN`, so printable
/// ASCII without spaces, and not empty.
pub(super) fn token(text: &str) -> Result<String, Problem> {
    if text.is_empty() {
        return Err(Problem::EmptyToken);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::BadToken);
    }
    Ok(text.to_string())
}

/// A listener's name: not empty, not only spaces, and without control
/// characters (newline, tab, NUL, ...), since it is written into text log
/// lines, which one would split or garble.
pub(super) fn listener_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::EmptyName);
    }
    if name.chars().any(char::is_control) {
        return Err(Problem::NameNotPrintable(name.to_string()));
    }
    if name.trim().is_empty() {
        return Err(Problem::BlankName(name.to_string()));
    }
    Ok(())
}

/// An algorithm name of SPEC 2.
pub(super) fn algorithm(name: &str) -> Result<Algorithm, Problem> {
    match name {
        "round_robin" => Ok(Algorithm::RoundRobin),
        "random" => Ok(Algorithm::Random),
        "weighted_round_robin" => Ok(Algorithm::WeightedRoundRobin),
        "least_connections" => Ok(Algorithm::LeastConnections),
        "power_of_two" => Ok(Algorithm::PowerOfTwo),
        "source_hash" => Ok(Algorithm::SourceHash),
        _ => Err(Problem::UnknownAlgorithm(name.to_string())),
    }
}

pub(super) fn check_kind(name: &str) -> Result<CheckKind, Problem> {
    match name {
        "tcp" => Ok(CheckKind::Tcp),
        "http" => Ok(CheckKind::Http),
        _ => Err(Problem::UnknownCheckKind(name.to_string())),
    }
}

/// A path for an http check's request line: starts with `/`, and is
/// visible ASCII only (no space, control character or non-ASCII byte could
/// go into `GET path HTTP/1.1` unescaped).
pub(super) fn check_path(path: &str) -> Result<String, Problem> {
    if !path.starts_with('/') {
        return Err(Problem::CheckPathNotAbsolute(path.to_string()));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::CheckPathNotPrintable(path.to_string()));
    }
    Ok(path.to_string())
}

pub(super) fn mode(name: &str) -> Result<Mode, Problem> {
    match name {
        "tcp" => Ok(Mode::Tcp),
        "http" => Ok(Mode::Http),
        _ => Err(Problem::UnknownMode(name.to_string())),
    }
}

/// Only `off` is served; `v1` and `v2` are known but not built.
/// `[global] access_log`: `off` (none), `stderr`, `stdout`, or a file path
/// (anything else that is not empty and has no control character).
pub(super) fn access_log_target(value: &str) -> Result<Option<AccessLogTarget>, Problem> {
    match value {
        "off" => Ok(None),
        "stderr" => Ok(Some(AccessLogTarget::Stderr)),
        "stdout" => Ok(Some(AccessLogTarget::Stdout)),
        "" => Err(Problem::EmptyAccessLog),
        path if path.chars().any(char::is_control) => {
            Err(Problem::BadAccessLogPath(path.to_string()))
        }
        path => Ok(Some(AccessLogTarget::File(path.into()))),
    }
}

/// `[global] access_log_format`: `text` or `json`.
pub(super) fn access_log_format(value: &str) -> Result<AccessLogFormat, Problem> {
    match value {
        "text" => Ok(AccessLogFormat::Text),
        "json" => Ok(AccessLogFormat::Json),
        _ => Err(Problem::UnknownAccessLogFormat(value.to_string())),
    }
}

pub(super) fn proxy_protocol(value: &str) -> Result<Option<ProxyProtocol>, Problem> {
    match value {
        "off" => Ok(None),
        "v1" => Ok(Some(ProxyProtocol::V1)),
        "v2" => Ok(Some(ProxyProtocol::V2)),
        _ => Err(Problem::UnknownProxyProtocol(value.to_string())),
    }
}

/// `[listeners.discovery] dns`: a name starting with `_` and without a
/// port is an SRV name; `host:port` (a host name, port 1 to 65535) asks for
/// A/AAAA records; anything else is refused. A trailing dot (a fully
/// qualified name) is kept as written.
pub(super) fn dns_name(text: &str) -> Result<crate::config::DnsName, Problem> {
    use crate::config::DnsName;
    let bad = || Problem::BadDnsName(text.to_string());
    if text.starts_with('_') {
        if text.contains(':') {
            return Err(Problem::SrvWithPort(text.to_string()));
        }
        return if is_dns_name(text) {
            Ok(DnsName::Srv(text.to_string()))
        } else {
            Err(bad())
        };
    }
    let parsed = crate::net::addr::backend_address(text).map_err(|_| bad())?;
    // An IP literal has no records to look up: it belongs in `backends`.
    if parsed.host.ip.is_some() || !is_dns_name(parsed.host.text) {
        return Err(bad());
    }
    Ok(DnsName::Host {
        host: parsed.host.text.to_string(),
        port: parsed.port,
    })
}

/// Whether `name` is a DNS name: dot-separated labels of 1 to 63 letters,
/// digits, `-` and `_`, at most 253 characters, an optional trailing dot.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label)
}

/// A `[listeners.discovery] resolvers` entry: `ip:port`, `[ipv6]:port`, or
/// a bare IP address (port 53).
pub(super) fn resolver(text: &str) -> Result<std::net::SocketAddr, Problem> {
    use std::net::{IpAddr, SocketAddr};
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, crate::config::defaults::DNS_PORT))
        .map_err(|_| Problem::BadResolver(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DnsName;

    #[test]
    fn a_dns_name_is_srv_when_it_starts_with_an_underscore_and_host_and_port_otherwise() {
        assert_eq!(
            dns_name("_http._tcp.web.internal."),
            Ok(DnsName::Srv("_http._tcp.web.internal.".into()))
        );
        assert_eq!(
            dns_name("web-1.internal:8080"),
            Ok(DnsName::Host {
                host: "web-1.internal".into(),
                port: 8080
            })
        );
        let long_label = format!("_x.{}.test", "a".repeat(64));
        for bad in [
            "web.internal",
            "web.internal:0",
            "web..internal:80",
            "[::1]:80",
            "127.0.0.1:80",
            "_http._tcp..test",
            long_label.as_str(),
            "",
            "web internal:80",
        ] {
            assert!(
                matches!(dns_name(bad), Err(Problem::BadDnsName(_))),
                "{bad}: {:?}",
                dns_name(bad)
            );
        }
        assert_eq!(
            dns_name("_http._tcp.web:80"),
            Err(Problem::SrvWithPort("_http._tcp.web:80".into()))
        );
    }

    #[test]
    fn a_resolver_is_an_ip_with_an_optional_port() {
        assert_eq!(
            resolver("10.0.0.2").map(|r| r.to_string()),
            Ok("10.0.0.2:53".into())
        );
        assert_eq!(
            resolver("[::1]:5353").map(|r| r.to_string()),
            Ok("[::1]:5353".into())
        );
        assert_eq!(
            resolver("::1").map(|r| r.to_string()),
            Ok("[::1]:53".into())
        );
        assert!(resolver("dns.google:53").is_err());
    }
}
