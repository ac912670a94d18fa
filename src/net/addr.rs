//! One address grammar and one resolver, for every place an address is
//! read: config files (listen and backend addresses, `allow` lists), the
//! admin API (a POSTed backend) and, later, discovery.
//!
//! - A backend address is `host:port` or `[ipv6]:port`, port 1 to 65535;
//!   the host is an IP literal or a host name (letters, digits, `-`, `.`,
//!   `_`), resolved by [`resolve_blocking`] (config load) or [`resolve`]
//!   (at run time, bounded by a timeout). The first address a name
//!   resolves to is the one connected to.
//! - A listen address is an IP literal and a port, 0 meaning any free port,
//!   never an IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:80`): listen
//!   sockets for IPv6 are IPv6-only, so it could never be bound. A source
//!   address ([`source_ip`]) refuses it too.
//! - A CIDR network is `ip/prefix` or a bare IP (one host); host bits are
//!   cleared, so `10.1.2.3/8` is `10.0.0.0/8`.
//!
//! Errors are [`AddrError`]s with one wording, which the config module and
//! the admin API both show as they are.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ipnet::IpNet;

use super::{Quoted, io_reason};

/// Why an address, network or host name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// An address without `:port`.
    #[error("missing port (expected host:port)")]
    MissingPort,
    /// An address with nothing before `:port`.
    #[error("missing host (expected host:port)")]
    MissingHost,
    /// The port part is not made of digits.
    #[error("port is not a number")]
    PortNotNumber,
    /// The port is a number but not a usable one.
    #[error("port {port} is out of range (expected {min} to 65535)")]
    PortOutOfRange {
        /// The port as written.
        port: String,
        /// 0 for listen addresses (any free port), 1 for backends.
        min: u16,
    },
    /// An IPv6 address written without brackets (`::1:8080`).
    #[error("IPv6 addresses must be in brackets, as in [::1]:8080")]
    UnbracketedIpv6,
    /// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) where an address
    /// of this machine is bound (a listen or source address): no socket of
    /// balancer can use it, and the IPv4 address says what was meant.
    #[error(
        "{} is an IPv4-mapped IPv6 address (write the IPv4 address {ipv4})",
        Quoted(.written)
    )]
    Ipv4Mapped {
        /// The address as written, brackets removed.
        written: String,
        /// The IPv4 address it maps.
        ipv4: Ipv4Addr,
    },
    /// A value that must be an IP address is not.
    #[error("{} is not an IP address", Quoted(.0))]
    BadIp(String),
    /// A host that is neither an IP literal nor a valid host name.
    #[error("host {} is not a valid host name (letters, digits, \"-\", \".\" and \"_\")", Quoted(.0))]
    BadHostName(String),
    /// A listen address whose host is a name, not an IP address.
    #[error("listen host {} is not an IP address", Quoted(.0))]
    ListenHostNotIp(String),
    /// Neither a CIDR network nor an IP address.
    #[error("{} is not a CIDR network or IP address", Quoted(.0))]
    BadCidr(String),
}

/// Why a host name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host {} does not resolve ({reason})", Quoted(.host))]
pub struct ResolveError {
    /// The host as written.
    pub host: String,
    /// Why, in words: the resolver's reason, "no addresses", or a timeout.
    pub reason: String,
}

/// The host part of an address: its text (without brackets), and the IP
/// it is when it is a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    /// The host as written, brackets removed.
    pub text: &'a str,
    /// The IP address, when the host is a literal.
    pub ip: Option<IpAddr>,
}

/// A backend address, parsed: a host (literal or name) and a port >= 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// The host.
    pub host: Host<'a>,
    /// The port, 1 to 65535.
    pub port: u16,
}

impl HostPort<'_> {
    /// The socket address, when the host is an IP literal (no lookup needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host.ip.map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            _ => f.write_str(self.text),
        }
    }
}

/// Splits `host:port` or `[ipv6]:port`, without judging the port.
pub fn split_host_port(address: &str) -> Result<(Host<'_>, &str), AddrError> {
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(AddrError::MissingPort)?;
        let port = after.strip_prefix(':').ok_or(AddrError::MissingPort)?;
        let ip = inside
            .parse::<Ipv6Addr>()
            .map_err(|_| AddrError::BadIp(inside.to_string()))?;
        let host = Host {
            text: inside,
            ip: Some(IpAddr::V6(ip)),
        };
        return Ok((host, port));
    }
    let (host, port) = address.rsplit_once(':').ok_or(AddrError::MissingPort)?;
    if host.contains(':') {
        return Err(AddrError::UnbracketedIpv6);
    }
    if host.is_empty() {
        return Err(AddrError::MissingHost);
    }
    let ip = host.parse::<IpAddr>().ok();
    Ok((Host { text: host, ip }, port))
}

/// A port number in `min..=65535`.
pub fn port_number(text: &str, min: u16) -> Result<u16, AddrError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::PortNotNumber);
    }
    match text.parse::<u16>() {
        Ok(port) if port >= min => Ok(port),
        _ => Err(AddrError::PortOutOfRange {
            port: text.to_string(),
            min,
        }),
    }
}

/// A backend address: `host:port` or `[ipv6]:port`, port 1 to 65535, the
/// host an IP literal or a valid host name.
pub fn backend_address(address: &str) -> Result<HostPort<'_>, AddrError> {
    let (host, port) = split_host_port(address)?;
    let port = port_number(port, 1)?;
    if host.ip.is_none() && !is_host_name(host.text) {
        return Err(AddrError::BadHostName(host.text.to_string()));
    }
    Ok(HostPort { host, port })
}

/// A listen address: an IP literal, not IPv4-mapped, and a port (0 = any
/// free port).
pub fn listen_address(text: &str) -> Result<SocketAddr, AddrError> {
    let (host, port) = split_host_port(text)?;
    let port = port_number(port, 0)?;
    let ip = host
        .ip
        .ok_or_else(|| AddrError::ListenHostNotIp(host.text.to_string()))?;
    Ok(SocketAddr::new(not_ipv4_mapped(ip, host.text)?, port))
}

/// An IP address (surrounding spaces ignored).
pub fn ip(text: &str) -> Result<IpAddr, AddrError> {
    text.trim()
        .parse()
        .map_err(|_| AddrError::BadIp(text.to_string()))
}

/// A source address outgoing connections bind to: an IP address, not
/// IPv4-mapped (surrounding spaces ignored). Whether this machine has it is
/// the caller's to find out.
pub fn source_ip(text: &str) -> Result<IpAddr, AddrError> {
    not_ipv4_mapped(ip(text)?, text.trim())
}

/// `ip`, or the error naming the IPv4 address to write when it is an
/// IPv4-mapped IPv6 address (`written` is how the user wrote it).
fn not_ipv4_mapped(ip: IpAddr, written: &str) -> Result<IpAddr, AddrError> {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(ipv4) => Err(AddrError::Ipv4Mapped {
                written: written.to_string(),
                ipv4,
            }),
            None => Ok(ip),
        },
        IpAddr::V4(_) => Ok(ip),
    }
}

/// A CIDR network, or a bare IP address as /32 or /128. Host bits are
/// cleared, so `10.1.2.3/8` is `10.0.0.0/8`.
pub fn cidr(text: &str) -> Result<IpNet, AddrError> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| AddrError::BadCidr(text.to_string()))
}

/// A host name, as written: letters, digits, `-`, `.` and `_` only.
pub fn host_name(text: &str) -> Result<&str, AddrError> {
    let host = text.trim();
    if is_host_name(host) {
        Ok(host)
    } else {
        Err(AddrError::BadHostName(text.to_string()))
    }
}

/// Whether `host` may be looked up as a name: letters, digits, `-`, `.`
/// and `_` (SRV-style labels), nothing else.
fn is_host_name(host: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    !host.is_empty() && host.chars().all(valid)
}

/// Resolves a host name with the system resolver, blocking (for config
/// load, before any runtime runs): its first address, or why not.
pub fn resolve_blocking(host: &str) -> Result<IpAddr, ResolveError> {
    let answer = (host, 0).to_socket_addrs();
    first_address(host, answer.map(|addrs| addrs.map(|a| a.ip())))
}

/// Resolves `address` (a parsed backend address) to the socket address
/// connected to: an IP literal as it is, a host name through the system
/// resolver, within `timeout`.
pub async fn resolve(address: HostPort<'_>, timeout: Duration) -> Result<SocketAddr, ResolveError> {
    if let Some(addr) = address.literal() {
        return Ok(addr);
    }
    let host = address.host.text;
    let lookup = tokio::net::lookup_host((host, address.port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(answer) => first_address(host, answer),
        Err(_) => Err(ResolveError {
            host: host.to_string(),
            reason: format!("no answer within {}", super::format_duration(timeout)),
        }),
    }
}

/// The first of a resolver's answers, or why there is none.
fn first_address<T>(
    host: &str,
    answer: io::Result<impl Iterator<Item = T>>,
) -> Result<T, ResolveError> {
    let failed = |reason: String| ResolveError {
        host: host.to_string(),
        reason,
    };
    match answer {
        Ok(mut addrs) => addrs.next().ok_or_else(|| failed("no addresses".into())),
        Err(e) => Err(failed(resolver_reason(&e))),
    }
}

/// The resolver's reason without its prefix: std renders "failed to lookup
/// address information: Name or service not known".
fn resolver_reason(err: &io::Error) -> String {
    let text = io_reason(err);
    let reason = text
        .rsplit(": ")
        .next()
        .unwrap_or(&text)
        .trim_end_matches('.');
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown reason".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_take_literals_and_host_names() {
        let parsed = backend_address("127.0.0.1:8080").unwrap();
        assert_eq!(parsed.literal(), Some("127.0.0.1:8080".parse().unwrap()));
        let parsed = backend_address("[::1]:80").unwrap();
        assert_eq!(parsed.literal(), Some("[::1]:80".parse().unwrap()));
        let parsed = backend_address("web-1.internal:80").unwrap();
        assert_eq!((parsed.host.text, parsed.port), ("web-1.internal", 80));
        assert_eq!(parsed.literal(), None);
    }

    #[test]
    fn bad_backend_addresses_say_what_is_wrong() {
        let cases = [
            ("localhost", AddrError::MissingPort),
            (":80", AddrError::MissingHost),
            ("localhost:http", AddrError::PortNotNumber),
            ("::1:80", AddrError::UnbracketedIpv6),
            ("[::1]", AddrError::MissingPort),
            ("[zz]:80", AddrError::BadIp("zz".into())),
            ("bad host:80", AddrError::BadHostName("bad host".into())),
            (
                "localhost:0",
                AddrError::PortOutOfRange {
                    port: "0".into(),
                    min: 1,
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(backend_address(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn listen_addresses_need_an_ip_and_take_port_0() {
        assert_eq!(
            listen_address("0.0.0.0:0"),
            Ok("0.0.0.0:0".parse().unwrap())
        );
        assert_eq!(
            listen_address("localhost:80"),
            Err(AddrError::ListenHostNotIp("localhost".into()))
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_refused_where_they_would_be_bound_issue_16() {
        let mapped = |written: &str| AddrError::Ipv4Mapped {
            written: written.into(),
            ipv4: Ipv4Addr::new(127, 0, 0, 1),
        };
        assert_eq!(
            listen_address("[::ffff:127.0.0.1]:80"),
            Err(mapped("::ffff:127.0.0.1"))
        );
        assert_eq!(source_ip(" ::ffff:7f00:1 "), Err(mapped("::ffff:7f00:1")));
        assert_eq!(
            mapped("::ffff:127.0.0.1").to_string(),
            "\"::ffff:127.0.0.1\" is an IPv4-mapped IPv6 address \
             (write the IPv4 address 127.0.0.1)"
        );
        // Other IPv6 addresses, the IPv4-compatible form included, pass.
        assert_eq!(listen_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(source_ip("::127.0.0.1"), Ok("::127.0.0.1".parse().unwrap()));
        assert_eq!(source_ip("127.0.0.2"), Ok("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn cidrs_clear_host_bits_and_take_bare_addresses() {
        assert_eq!(cidr("10.1.2.3/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(cidr(" 127.0.0.2 "), Ok("127.0.0.2/32".parse().unwrap()));
        assert_eq!(cidr("::1"), Ok("::1/128".parse().unwrap()));
        assert_eq!(cidr("ten/8"), Err(AddrError::BadCidr("ten/8".into())));
    }

    #[test]
    fn errors_read_as_one_voice() {
        assert_eq!(
            AddrError::PortOutOfRange {
                port: "70000".into(),
                min: 1
            }
            .to_string(),
            "port 70000 is out of range (expected 1 to 65535)"
        );
        let unresolved = ResolveError {
            host: "nowhere.invalid".into(),
            reason: "name or service not known".into(),
        };
        assert_eq!(
            unresolved.to_string(),
            "host \"nowhere.invalid\" does not resolve (name or service not known)"
        );
    }

    #[tokio::test]
    async fn literals_resolve_without_a_lookup_and_localhost_resolves() {
        let literal = backend_address("127.0.0.1:9").unwrap();
        let addr = resolve(literal, Duration::from_secs(3)).await.unwrap();
        assert_eq!(addr, "127.0.0.1:9".parse().unwrap());
        let name = backend_address("localhost:9").unwrap();
        let addr = resolve(name, Duration::from_secs(3)).await.unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 9);
    }

    #[test]
    fn resolver_reasons_are_words() {
        let err =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(resolver_reason(&err), "name or service not known");
    }

    #[test]
    fn a_name_that_cannot_resolve_gives_the_reason_in_words() {
        let err = resolve_blocking("nowhere.invalid").unwrap_err();
        assert_eq!(err.host, "nowhere.invalid");
        assert!(!err.reason.contains("os error"), "{}", err.reason);
    }
}
