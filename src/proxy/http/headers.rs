//! What http mode changes in the headers it passes on (SPEC 4): hop-by-hop
//! headers removed both ways (RFC 9110 7.6.1), and the client named to the
//! backend in `X-Forwarded-For`, `Forwarded` (RFC 7239) and
//! `X-Forwarded-Proto`. Everything else passes unchanged.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

/// The hop-by-hop headers every message loses, whatever its `Connection`
/// header lists. (`Upgrade` too, except on a request or answer that
/// switches protocols, whose caller puts it back.) `Trailer` is not one:
/// RFC 9110 6.6.2 made it end to end (it names the trailer fields that
/// follow the body, and hyper sends only the trailers it names).
static HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Whether a request's `TE` says the client takes trailers.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            coding
                .split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Removes the hop-by-hop headers of one message: those `Connection`
/// names, the fixed ones, and every `Proxy-*` header. One pass over the
/// names finds them; most messages have none, and then nothing else is
/// done.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let any = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-"));
    if !any {
        return;
    }
    // The names `Connection` lists, before it goes.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("proxy-"))
    {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Whether `headers` ask to switch protocols: an `Upgrade` header, and
/// `upgrade` among the tokens of `Connection`.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// How one client is named to backends: its address and scheme, kept
/// small (it lives as long as the client's connection; the header values
/// are written per request).
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    /// The client's IP (an IPv4-mapped address as IPv4).
    ip: IpAddr,
    /// The scheme the client used.
    proto: &'static str,
}

impl Forwarding {
    /// How `client` is named, the scheme it used being `proto`.
    pub fn new(client: IpAddr, proto: &'static str) -> Forwarding {
        Forwarding {
            ip: client.to_canonical(),
            proto,
        }
    }
}

/// Names the client to the backend: appended to `X-Forwarded-For` (one
/// header, the earlier hops first), a `Forwarded` element `for`, `proto`
/// and `host` (the request's `Host`) appended to any earlier ones, and
/// `X-Forwarded-Proto` set to the client's scheme.
pub fn add_forwarding(headers: &mut HeaderMap, client: &Forwarding) {
    use std::fmt::Write as _;
    let ip = client.ip.to_string();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let mut element = String::with_capacity(48 + host.map_or(0, str::len));
    // Writing to a String cannot fail.
    let _ = match client.ip {
        IpAddr::V4(_) => write!(element, "for={ip};proto={}", client.proto),
        IpAddr::V6(_) => write!(element, "for=\"[{ip}]\";proto={}", client.proto),
    };
    if let Some(host) = host {
        element.push_str(";host=");
        push_quoted(&mut element, host);
    }
    let forwarded_for = if headers.contains_key(&X_FORWARDED_FOR) {
        append(headers, &X_FORWARDED_FOR, &ip)
    } else {
        value(ip)
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    let forwarded = if headers.contains_key(header::FORWARDED) {
        append(headers, &header::FORWARDED, &element)
    } else {
        value(element)
    };
    headers.insert(header::FORWARDED, forwarded);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(client.proto),
    );
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `text` as a header value, without copying it; text made of visible
/// ASCII from other header values and our own, so it is always valid.
fn value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every value of `name` joined with `, `, then `more`: one header value.
fn append(headers: &HeaderMap, name: &HeaderName, more: &str) -> HeaderValue {
    let mut joined = String::new();
    for value in headers.get_all(name) {
        if let Ok(text) = value.to_str() {
            let text = text.trim();
            if !text.is_empty() {
                joined.push_str(text);
                joined.push_str(", ");
            }
        }
    }
    joined.push_str(more);
    value(joined)
}

/// Appends `text` as an RFC 7230 quoted-string (a host with a port holds a
/// `:`, which a token may not).
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hyper::HeaderMap;
    use hyper::header::HeaderValue;

    use super::{Forwarding, add_forwarding, remove_hop_by_hop, wants_upgrade};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go_the_rest_stays() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-connection", "keep-alive"),
            ("x-private", "secret"),
            ("host", "example.com"),
            ("content-length", "5"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut map);
        assert_eq!(names(&map), ["content-length", "host", "trailer", "x-kept"]);
    }

    #[test]
    fn an_upgrade_needs_both_the_header_and_the_connection_token() {
        assert!(wants_upgrade(&headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade")
        ])));
        assert!(!wants_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&headers(&[("connection", "upgrade")])));
    }

    #[test]
    fn the_client_is_appended_to_earlier_hops() {
        let mut map = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("host", "example.com:8080"),
        ]);
        add_forwarding(
            &mut map,
            &Forwarding::new("127.0.0.1".parse().unwrap(), "http"),
        );
        assert_eq!(
            map.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            ["203.0.113.7, 10.0.0.1, 127.0.0.1"]
        );
        assert_eq!(
            map["forwarded"],
            "for=203.0.113.7, for=127.0.0.1;proto=http;host=\"example.com:8080\""
        );
        assert_eq!(map["x-forwarded-proto"], "http");
    }

    #[test]
    fn an_ipv6_client_is_quoted_in_brackets_and_a_mapped_one_is_ipv4() {
        let mut map = HeaderMap::new();
        add_forwarding(
            &mut map,
            &Forwarding::new("2001:db8::1".parse().unwrap(), "http"),
        );
        assert_eq!(map["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(map["x-forwarded-for"], "2001:db8::1");
        let mut map = HeaderMap::new();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        add_forwarding(&mut map, &Forwarding::new(mapped, "http"));
        assert_eq!(map["x-forwarded-for"], "10.1.2.3");
    }
}
