//! What http mode changes in the headers it passes on (SPEC 4): hop-by-hop
//! headers removed both ways (RFC 9110 7.6.1), and the client named to the
//! backend in `X-Forwarded-For`, `Forwarded` (RFC 7239) and
//! `X-Forwarded-Proto`. Everything else passes unchanged.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

/// The header fields the codec and the forwarding look at, each told
/// from the others by one look at its name (its length first, then one
/// case-insensitive comparison), so a head's fields are classified in one
/// pass instead of being searched once per name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Field {
    Other,
    Connection,
    KeepAlive,
    Te,
    TransferEncoding,
    Upgrade,
    /// `Proxy-*` (`Proxy-Connection`, `Proxy-Authorization`, ...).
    Proxy,
    ContentLength,
    Date,
    Host,
    Expect,
    XForwardedFor,
    XForwardedProto,
    Forwarded,
}

impl Field {
    /// The field named `name` (a token, any case).
    pub fn of(name: &[u8]) -> Field {
        let is = |known: &[u8]| is_named(name, known);
        let Some(&first) = name.first() else {
            return Field::Other;
        };
        // The length and first letter rule out almost every other name
        // before any comparison.
        match (name.len(), first | 0x20) {
            (2, b't') if is(b"te") => Field::Te,
            (4, b'h') if is(b"host") => Field::Host,
            (4, b'd') if is(b"date") => Field::Date,
            (6, b'e') if is(b"expect") => Field::Expect,
            (7, b'u') if is(b"upgrade") => Field::Upgrade,
            (9, b'f') if is(b"forwarded") => Field::Forwarded,
            (10, b'c') if is(b"connection") => Field::Connection,
            (10, b'k') if is(b"keep-alive") => Field::KeepAlive,
            (14, b'c') if is(b"content-length") => Field::ContentLength,
            (15, b'x') if is(b"x-forwarded-for") => Field::XForwardedFor,
            (17, b't') if is(b"transfer-encoding") => Field::TransferEncoding,
            (17, b'x') if is(b"x-forwarded-proto") => Field::XForwardedProto,
            (6.., b'p') if is_named(&name[..6], b"proxy-") => Field::Proxy,
            _ => Field::Other,
        }
    }

    /// A field that concerns one connection only (RFC 9110 7.6.1), never
    /// passed on: besides these, the fields `Connection` names. (`Upgrade`
    /// too, except on a request or answer that switches protocols, whose
    /// caller puts it back.) `Trailer` is not one: RFC 9110 6.6.2 made it
    /// end to end (it names the trailer fields that follow the body).
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::Connection
                | Field::KeepAlive
                | Field::Te
                | Field::TransferEncoding
                | Field::Upgrade
                | Field::Proxy
        )
    }
}

/// Whether `name`, a token (httparse checked it), is `known` (lowercase
/// letters and `-`) in any case. A token byte `b` matches such a byte `k`
/// exactly when `b | 0x20 == k` (an upper-case letter becomes its lower
/// case; `-` has that bit already, and the one other byte that would
/// become `-`, CR, is no token byte), so eight bytes are compared at once.
fn is_named(name: &[u8], known: &[u8]) -> bool {
    const LOWER: u64 = 0x2020_2020_2020_2020;
    if name.len() != known.len() {
        return false;
    }
    let (mut names, mut knowns) = (name.chunks_exact(8), known.chunks_exact(8));
    for (n, k) in (&mut names).zip(&mut knowns) {
        if word(n) | LOWER != word(k) {
            return false;
        }
    }
    names
        .remainder()
        .iter()
        .zip(knowns.remainder())
        .all(|(&n, &k)| n | 0x20 == k)
}

/// Eight bytes as one word.
fn word(eight: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(eight);
    u64::from_ne_bytes(word)
}

/// Which of the known [`Field`]s a head has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    /// Any field may be present: each is looked up in the header map when
    /// it matters (a request that did not come through our own parser,
    /// such as an HTTP/2 one).
    pub const ANY: FieldSet = FieldSet(u16::MAX);

    /// No field.
    pub const NONE: FieldSet = FieldSet(0);

    /// Notes that the head has a `kind` field.
    pub fn insert(&mut self, kind: Field) {
        self.0 |= 1 << kind as u8;
    }

    /// Whether the head has (or may have) a `kind` field.
    pub fn has(self, kind: Field) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

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
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut gone = listed_by_connection(headers);
    gone.extend(headers.keys().filter(|name| is_hop_by_hop(name)).cloned());
    for name in gone {
        headers.remove(name);
    }
}

/// The names `Connection` lists: none (and nothing allocated) without
/// one.
fn listed_by_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    if !headers.contains_key(header::CONNECTION) {
        return Vec::new();
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
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

/// What a request gains on its way to a backend, besides the headers that
/// name its client.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// The client, named in the forwarding headers.
    pub client: &'a Forwarding,
    /// The `Host` the client sent, named in `Forwarded` (RFC 7239 5.3):
    /// not one given to a request that came without.
    pub host: Option<&'a HeaderValue>,
    /// The request may have a `Connection` header (whose names go too).
    pub connection: bool,
    /// `TE: trailers`: the client takes trailers, so may the backend send
    /// them.
    pub trailers: bool,
    /// `Upgrade: <this>` and `Connection: upgrade`: the client asks to
    /// switch protocols.
    pub upgrade: Option<&'a HeaderValue>,
}

/// Writes a request's header lines for its backend, `name: value\r\n`
/// each, as they are to be sent: the client's end-to-end headers in their
/// order (the hop-by-hop ones of [`remove_hop_by_hop`] left out), then
/// the client named: appended to `X-Forwarded-For` (one header, the
/// earlier hops first), a `Forwarded` element `for`, `proto` and `host`
/// (the client's `Host`) appended to any earlier ones, `X-Forwarded-Proto`
/// set to the client's scheme; then what `outbound` adds. A
/// `Content-Length` is left out when `framed` (the framing writes its
/// own). Written straight into the request head: no header map is
/// changed, no value built apart.
pub fn write_request_fields(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    outbound: &Outbound<'_>,
    framed: bool,
) {
    let listed = if outbound.connection {
        listed_by_connection(headers)
    } else {
        Vec::new()
    };
    let (mut earlier_for, mut earlier_forwarded) = (false, false);
    for (name, value) in headers {
        if *name == X_FORWARDED_FOR {
            earlier_for = true;
        } else if *name == header::FORWARDED {
            earlier_forwarded = true;
        } else if !(*name == X_FORWARDED_PROTO
            || (framed && *name == header::CONTENT_LENGTH)
            || is_hop_by_hop(name)
            || listed.contains(name))
        {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let client = outbound.client;
    out.extend_from_slice(b"x-forwarded-for: ");
    if earlier_for {
        push_joined(out, headers, &X_FORWARDED_FOR);
    }
    push_ip(out, client.ip);
    out.extend_from_slice(b"\r\nforwarded: ");
    if earlier_forwarded {
        push_joined(out, headers, &header::FORWARDED);
    }
    if client.ip.is_ipv4() {
        out.extend_from_slice(b"for=");
        push_ip(out, client.ip);
    } else {
        out.extend_from_slice(b"for=\"[");
        push_ip(out, client.ip);
        out.extend_from_slice(b"]\"");
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(client.proto.as_bytes());
    if let Some(host) = outbound.host {
        out.extend_from_slice(b";host=");
        push_quoted(out, host.as_bytes());
    }
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(client.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    if outbound.trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if let Some(protocol) = outbound.upgrade {
        push_field(out, b"upgrade", protocol.as_bytes());
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether `name` is hop-by-hop whatever `Connection` lists (see
/// [`Field::is_hop_by_hop`]).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    Field::of(name.as_str().as_bytes()).is_hop_by_hop()
}

/// Appends `name: value\r\n`.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends every non-empty value of `name`, trimmed, each followed by
/// `, ` (what the client's hop is appended to).
fn push_joined(out: &mut Vec<u8>, headers: &HeaderMap, name: &HeaderName) {
    for value in headers.get_all(name) {
        let text = value.as_bytes().trim_ascii();
        if !text.is_empty() {
            out.extend_from_slice(text);
            out.extend_from_slice(b", ");
        }
    }
}

/// Appends `ip` as text: an IPv4 address octet by octet (the formatting
/// machinery costs more than the rest of the forwarding headers), an IPv6
/// one as the standard library writes it.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `text` as an RFC 7230 quoted-string (a host with a port holds a
/// `:`, which a token may not).
fn push_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &b in text {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {

    use hyper::HeaderMap;
    use hyper::header::HeaderValue;

    use super::{Forwarding, Outbound, remove_hop_by_hop, wants_upgrade, write_request_fields};

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

    /// What `Outbound` adds besides the client: `TE: trailers`, an
    /// upgrade, a length of our own.
    type Extra<'a> = (bool, Option<&'a HeaderValue>, bool);

    const PLAIN: Extra<'static> = (false, None, false);

    /// The lines `write_request_fields` writes for `map` from `client`.
    fn written(
        map: &HeaderMap,
        client: &str,
        (trailers, upgrade, framed): Extra<'_>,
    ) -> Vec<String> {
        let client = Forwarding::new(client.parse().unwrap(), "http");
        let outbound = Outbound {
            client: &client,
            host: map.get("host"),
            connection: true,
            trailers,
            upgrade,
        };
        let mut out = Vec::new();
        write_request_fields(&mut out, map, &outbound, framed);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n"), "{text:?}");
        text.split_terminator("\r\n").map(str::to_string).collect()
    }

    #[test]
    fn the_client_is_appended_to_earlier_hops() {
        let map = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", " 10.0.0.1 "),
            ("forwarded", "for=203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("host", "example.com:8080"),
        ]);
        assert_eq!(
            written(&map, "127.0.0.1", PLAIN),
            [
                "host: example.com:8080",
                "x-forwarded-for: 203.0.113.7, 10.0.0.1, 127.0.0.1",
                "forwarded: for=203.0.113.7, for=127.0.0.1;proto=http;host=\"example.com:8080\"",
                "x-forwarded-proto: http",
            ]
        );
    }

    #[test]
    fn the_request_keeps_its_end_to_end_fields_in_order_and_loses_the_hop_by_hop_ones() {
        let map = headers(&[
            ("user-agent", "t"),
            ("connection", "keep-alive, x-private"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic xyz"),
            ("x-private", "secret"),
            ("content-length", "5"),
            ("accept", "*/*"),
            ("upgrade", "websocket"),
        ]);
        let protocol = HeaderValue::from_static("websocket");
        let lines = written(&map, "10.0.0.9", (true, Some(&protocol), true));
        assert_eq!(
            lines,
            [
                "user-agent: t",
                "accept: */*",
                "x-forwarded-for: 10.0.0.9",
                "forwarded: for=10.0.0.9;proto=http",
                "x-forwarded-proto: http",
                "te: trailers",
                "upgrade: websocket",
                "connection: upgrade",
            ]
        );
        // Unframed by us, the client's own length stays.
        assert!(written(&map, "10.0.0.9", PLAIN).contains(&"content-length: 5".to_string()));
    }

    #[test]
    fn an_ipv6_client_is_quoted_in_brackets_and_a_mapped_one_is_ipv4() {
        let lines = written(&HeaderMap::new(), "2001:db8::1", PLAIN);
        assert_eq!(lines[0], "x-forwarded-for: 2001:db8::1");
        assert_eq!(lines[1], "forwarded: for=\"[2001:db8::1]\";proto=http");
        let lines = written(&HeaderMap::new(), "::ffff:10.1.2.3", PLAIN);
        assert_eq!(lines[0], "x-forwarded-for: 10.1.2.3");
    }

    #[test]
    fn every_ipv4_octet_is_written_in_decimal() {
        for ip in ["0.0.0.0", "9.10.99.100", "255.254.200.1", "127.0.0.1"] {
            let lines = written(&HeaderMap::new(), ip, PLAIN);
            assert_eq!(lines[0], format!("x-forwarded-for: {ip}"));
        }
    }
}
