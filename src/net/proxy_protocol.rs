//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`, versions 1 and
//! 2): the header a proxy puts before a relayed connection's first byte to
//! say whose connection it is. The balancer writes one to backends that
//! ask for it (`proxy_protocol = "v1" | "v2"`) and reads one from a proxy
//! in front of it (`accept_proxy_protocol`).
//!
//! - [`Header`] is what a header says: the client's and the destination's
//!   address of a TCP connection, or that the receiver must use the real
//!   connection's addresses ([`Header::Local`], [`Header::Unknown`]).
//! - [`encode_v1`] and [`encode_v2`] write one ([`Version::encode`] picks).
//! - [`parse`] reads one from the bytes received so far. It is pure and
//!   incremental: it says how many more bytes it needs, and refuses a
//!   sender that is not speaking the protocol on the first wrong byte,
//!   without waiting for more. It never panics, never reads past its
//!   input, and never needs more than [`MAX_HEADER_LEN`] bytes.
//! - [`read_header`] does that on a socket within a timeout, and hands
//!   back the bytes it read past the header.
//!
//! Left out on purpose (the balancer relays TCP and uses only addresses):
//! UDP and unix-socket addresses are read as [`Header::Unknown`], as the
//! specification lets a receiver do; v2 TLVs are skipped unread, so a
//! `PP2_TYPE_CRC32C` checksum is not verified (the specification asks a
//! receiver to verify it only when it supports checksums); nothing is ever
//! sent but addresses (no TLVs).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Quoted, io_reason};

/// The 12 bytes every v2 header starts with. Binary, with a NUL and CRLFs,
/// so that HTTP, TLS, SMTP and most other servers refuse it at once.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version and command, family
/// and transport, and the 2-byte length of what follows.
const V2_FIXED_LEN: usize = 16;

/// The v2 version nibble; the specification defines no other.
const V2_VERSION: u8 = 2;

/// v2 commands (low nibble of byte 13).
const V2_LOCAL: u8 = 0x0;
const V2_PROXY: u8 = 0x1;

/// v2 family and transport bytes (byte 14) that we write.
const V2_UNSPEC: u8 = 0x00;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// v2 address block lengths: two addresses and two ports for IPv4 and
/// IPv6, two 108-byte paths for unix sockets.
const V2_IPV4_BLOCK: u16 = 2 * 4 + 2 * 2;
const V2_IPV6_BLOCK: u16 = 2 * 16 + 2 * 2;
const V2_UNIX_BLOCK: u16 = 2 * 108;

/// What every v1 line starts with, its space included.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 line a receiver must take, CRLF included: `PROXY
/// UNKNOWN` followed by two full IPv6 addresses and two 5-digit ports.
const V1_MAX_LINE: usize = 107;

/// The shortest header of either version: `PROXY UNKNOWN\r\n`.
const MIN_HEADER_LEN: usize = 15;

/// The v1 protocol names.
const V1_PROTOCOLS: [&[u8]; 3] = [b"TCP4", b"TCP6", b"UNKNOWN"];

/// The longest header [`parse`] can ask for: a v2 header whose 2-byte
/// length is 65535. That is the format's own bound, and TLVs may use all
/// of it, so it is also what we accept; a reader needs at most this many
/// bytes (plus whatever arrived after them) for one header.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// What a PROXY protocol header says about the connection it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// A TCP connection relayed on behalf of a client: the client's
    /// address and the address it connected to, as the first proxy's
    /// `getpeername()` and `getsockname()` gave them. A parsed header has
    /// both of one family; for what is written, see [`encode_v1`].
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to.
        destination: SocketAddr,
    },
    /// The sender's own connection, not a relayed one (v2 `LOCAL`, used
    /// for health checks): the receiver uses the real connection's
    /// addresses. Version 1 cannot say this and writes `PROXY UNKNOWN`,
    /// which the specification notes some servers refuse: a v1 health
    /// check is better sent as [`Header::Proxied`] with the check
    /// connection's own addresses, as it recommends.
    Local,
    /// A relayed connection whose addresses the header does not give in a
    /// form we use (v1 `UNKNOWN`; v2 `PROXY` with an unspecified, UDP or
    /// unix family). The specification lets the receiver accept it (v1
    /// says it should) and use the real connection's addresses, as for
    /// [`Header::Local`]; that is what we do.
    Unknown,
}

impl Header {
    /// The client's and the destination's address, when the header gives
    /// them; `None` means: use the connection's own.
    pub fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        match *self {
            Header::Proxied {
                source,
                destination,
            } => Some((source, destination)),
            Header::Local | Header::Unknown => None,
        }
    }
}

/// Which version of the protocol to write to a backend (the listener's
/// `proxy_protocol = "v1" | "v2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// One line of text (`PROXY TCP4 ...\r\n`): readable by people, and
    /// taken by every v1 receiver and most v2 ones.
    V1,
    /// The binary format: shorter, and the only one that can say `LOCAL`.
    V2,
}

impl Version {
    /// The name the config uses: `v1`, `v2`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    /// The header in this version's format ([`encode_v1`], [`encode_v2`]).
    pub fn encode(self, header: &Header) -> Vec<u8> {
        match self {
            Version::V1 => encode_v1(header),
            Version::V2 => encode_v2(header),
        }
    }
}

/// What [`parse`] made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, which took the first `consumed` bytes; what follows
    /// them is the relayed stream's first bytes.
    Complete {
        /// What the header says.
        header: Header,
        /// The header's length in bytes, never more than the input's.
        consumed: usize,
    },
    /// So far so good, but the header is not all there yet.
    Incomplete {
        /// At least this many more bytes are needed (at least 1). Exact
        /// for v2 once its first 16 bytes are in (they hold the length);
        /// a lower bound before that and for v1, whose end is its CRLF.
        needed: usize,
    },
}

/// A field of a v1 `TCP4`/`TCP6` line, after the protocol, in line order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// The client's address.
    SourceAddress,
    /// The address the client connected to.
    DestinationAddress,
    /// The client's port.
    SourcePort,
    /// The port the client connected to.
    DestinationPort,
}

impl V1Field {
    /// Every field, in the order the line gives them.
    const ALL: [V1Field; 4] = [
        V1Field::SourceAddress,
        V1Field::DestinationAddress,
        V1Field::SourcePort,
        V1Field::DestinationPort,
    ];
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// Why bytes are not a PROXY protocol header the balancer accepts. Every
/// one of these means: close the connection (the specification's answer
/// to anything that does not match it exactly).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first bytes are neither the v2 signature nor `PROXY `: the
    /// sender is not speaking the protocol at all.
    #[error("not a PROXY protocol header")]
    NotProxyProtocol,
    /// No CRLF within the 107 bytes a v1 line may take.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1LineTooLong,
    /// A CR or LF on its own, where only CRLF may end the line.
    #[error("PROXY v1 line ends with a lone CR or LF instead of CRLF")]
    V1LoneCrOrLf,
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`; carries it as sent.
    #[error("PROXY v1 protocol {} is not TCP4, TCP6 or UNKNOWN", Quoted(.0))]
    V1UnknownProtocol(String),
    /// The line ends before one of its fields.
    #[error("PROXY v1 line ends before its {0}")]
    V1MissingField(V1Field),
    /// Something after the destination port.
    #[error("PROXY v1 line goes on after its destination port")]
    V1TooManyFields,
    /// An address field that is not an IP address; carries it as sent.
    #[error("PROXY v1 {field} {} is not an IP address", Quoted(.text))]
    V1BadAddress {
        /// Which address.
        field: V1Field,
        /// The field as sent.
        text: String,
    },
    /// An IPv6 address on a `TCP4` line, or an IPv4 one on a `TCP6` line.
    #[error(
        "PROXY v1 {} line with an {} {field} {address}",
        v1_protocol_without(address),
        family_name(address)
    )]
    V1WrongFamily {
        /// Which address.
        field: V1Field,
        /// The address, of the other family.
        address: IpAddr,
    },
    /// A port that is not a number from 0 to 65535 written without
    /// leading zeros; carries it as sent.
    #[error("PROXY v1 {field} {} is not a number from 0 to 65535 without leading zeros", Quoted(.text))]
    V1BadPort {
        /// Which port.
        field: V1Field,
        /// The field as sent.
        text: String,
    },
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header of unknown version {0}")]
    V2UnknownVersion(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with unknown command {0}")]
    V2UnknownCommand(u8),
    /// A v2 address family other than unspecified, IPv4, IPv6 and unix.
    #[error("PROXY v2 header with unknown address family {0}")]
    V2UnknownFamily(u8),
    /// A v2 transport other than unspecified, stream and datagram.
    #[error("PROXY v2 header with unknown transport protocol {0}")]
    V2UnknownTransport(u8),
    /// A v2 length too short for the addresses its family announces.
    #[error(
        "PROXY v2 header of length {length} is shorter than the {} bytes of {} addresses",
        v2_block_len(*.family).unwrap_or_default(),
        v2_family_name(*.family)
    )]
    V2AddressesTooShort {
        /// The family and transport byte (0x11 is TCP over IPv4).
        family: u8,
        /// The header's length field.
        length: u16,
    },
}

/// Why [`read_header`] got no header.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a header we accept.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The peer closed the connection before the header was complete.
    #[error("connection closed after {received} bytes, before a complete PROXY protocol header")]
    Closed {
        /// How many bytes had arrived.
        received: usize,
    },
    /// The header was not complete within the timeout.
    #[error("no complete PROXY protocol header within {}", super::format_duration(*.0))]
    Timeout(Duration),
    /// Reading failed (reset, ...).
    #[error("{} before a complete PROXY protocol header", io_reason(.0))]
    Io(io::Error),
}

// === encoding ===

/// The header as a v1 line: `PROXY TCP4 <source> <destination> <source
/// port> <destination port>\r\n`, `PROXY TCP6 ...`, or `PROXY
/// UNKNOWN\r\n` for [`Header::Local`] and [`Header::Unknown`] (v1 has no
/// `LOCAL`).
///
/// Two IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack
/// listener sees of an IPv4 client) are written as `TCP4`: the backend
/// then sees the client's IPv4 address, as if it had connected directly,
/// not an IPv6 form of it that its allow lists and logs would not match.
/// A mixed pair (which no one socket gives) is written as `TCP6`, its IPv4
/// address mapped. IPv6 flow labels and scope ids are not carried.
pub fn encode_v1(header: &Header) -> Vec<u8> {
    let line = match header.addresses().map(wire) {
        Some(Wire::V4(s, d)) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        Some(Wire::V6(s, d)) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            V6Text(*s.ip()),
            V6Text(*d.ip()),
            s.port(),
            d.port()
        ),
        None => "PROXY UNKNOWN\r\n".to_string(),
    };
    line.into_bytes()
}

/// The header in the v2 binary format: the signature, version 2 with the
/// `PROXY` (0x21) or `LOCAL` (0x20) command, the family and transport
/// (0x11 TCP over IPv4, 0x21 TCP over IPv6, 0x00 unspecified for
/// [`Header::Local`] and [`Header::Unknown`]), the big-endian length of
/// what follows, then the addresses and ports. Addresses are chosen as in
/// [`encode_v1`].
pub fn encode_v2(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN + usize::from(V2_IPV6_BLOCK));
    out.extend_from_slice(&V2_SIGNATURE);
    let command = match header {
        Header::Local => V2_LOCAL,
        Header::Proxied { .. } | Header::Unknown => V2_PROXY,
    };
    out.push(V2_VERSION << 4 | command);
    match header.addresses().map(wire) {
        Some(Wire::V4(s, d)) => {
            out.push(V2_TCP4);
            out.extend_from_slice(&V2_IPV4_BLOCK.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        Some(Wire::V6(s, d)) => {
            out.push(V2_TCP6);
            out.extend_from_slice(&V2_IPV6_BLOCK.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        None => out.extend_from_slice(&[V2_UNSPEC, 0, 0]),
    }
    out
}

/// A pair of addresses as they go on the wire: one family for both.
enum Wire {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

/// IPv4 when both addresses are IPv4 or IPv4-mapped, else IPv6 (see
/// [`encode_v1`] for why).
fn wire((source, destination): (SocketAddr, SocketAddr)) -> Wire {
    match (as_v4(source), as_v4(destination)) {
        (Some(s), Some(d)) => Wire::V4(s, d),
        _ => Wire::V6(as_v6(source), as_v6(destination)),
    }
}

/// The address as IPv4, when it is IPv4 or IPv4-mapped IPv6.
fn as_v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, v6.port())),
    }
}

/// The address as IPv6, IPv4 mapped.
fn as_v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
    }
}

/// An IPv6 address as v1 wants it: hexadecimal groups only. std writes an
/// IPv4-mapped address with a dotted tail (`::ffff:1.2.3.4`), which the
/// specification does not allow, so that one is written out by hand.
struct V6Text(Ipv6Addr);

impl fmt::Display for V6Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.segments() {
            [0, 0, 0, 0, 0, 0xffff, high, low] => write!(f, "::ffff:{high:x}:{low:x}"),
            _ => write!(f, "{}", self.0),
        }
    }
}

// === parsing ===

/// Reads a header from the start of `buf`, the bytes received so far.
///
/// The version is told by the first bytes (the v2 signature, or `PROXY `
/// for v1), and anything else is refused at once, as is any byte that no
/// valid header could have there: a client that is not speaking the
/// protocol is never waited for. A receiver must not guess whether a
/// header is present, so the caller closes the connection on any error.
pub fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    if buf.is_empty() {
        Ok(incomplete(MIN_HEADER_LEN, 0))
    } else if agrees_with(buf, &V2_SIGNATURE) {
        parse_v2(buf)
    } else if agrees_with(buf, V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(ParseError::NotProxyProtocol)
    }
}

/// Whether `buf` and `magic` agree on their common length.
fn agrees_with(buf: &[u8], magic: &[u8]) -> bool {
    buf.iter().zip(magic).all(|(a, b)| a == b)
}

/// Still incomplete: `total` bytes are known to be needed, `have` are in.
fn incomplete(total: usize, have: usize) -> Parsed {
    Parsed::Incomplete {
        needed: total.saturating_sub(have).max(1),
    }
}

// === v1 ===

/// Reads a v1 line. The receiver must not decode it before its CRLF, and
/// must refuse it when the CRLF is not within 107 bytes or a CR or LF
/// comes alone. Before the CRLF, what arrived is checked as far as it
/// goes, so that garbage is refused without waiting for 107 bytes.
fn parse_v1(buf: &[u8]) -> Result<Parsed, ParseError> {
    let window = buf.get(..V1_MAX_LINE).unwrap_or(buf);
    match line_end(window)? {
        Some(end) => {
            let line = window.get(..end).unwrap_or_default();
            let header = parse_v1_line(line)?;
            Ok(Parsed::Complete {
                header,
                consumed: end + 2,
            })
        }
        None if buf.len() >= V1_MAX_LINE => Err(ParseError::V1LineTooLong),
        None => {
            check_v1_start(window.strip_suffix(b"\r").unwrap_or(window))?;
            Ok(incomplete(MIN_HEADER_LEN, buf.len()))
        }
    }
}

/// Where the CRLF that ends the line starts, if it is in `window` (`None`
/// when a CR is the last byte: its LF may still come).
fn line_end(window: &[u8]) -> Result<Option<usize>, ParseError> {
    for (at, &byte) in window.iter().enumerate() {
        match byte {
            b'\r' => {
                return match window.get(at + 1) {
                    Some(b'\n') => Ok(Some(at)),
                    Some(_) => Err(ParseError::V1LoneCrOrLf),
                    None => Ok(None),
                };
            }
            b'\n' => return Err(ParseError::V1LoneCrOrLf),
            _ => {}
        }
    }
    Ok(None)
}

/// Decodes a whole v1 line, without its CRLF. Fields are separated by
/// exactly one space, so an empty field (two spaces) is a bad one.
fn parse_v1_line(line: &[u8]) -> Result<Header, ParseError> {
    let rest = line.strip_prefix(V1_PREFIX).unwrap_or(line);
    let mut fields = rest.split(|&b| b == b' ');
    let Some(family) = v1_protocol(fields.next().unwrap_or_default())? else {
        // The receiver must ignore whatever follows UNKNOWN.
        return Ok(Header::Unknown);
    };
    let mut field = |which| fields.next().ok_or(ParseError::V1MissingField(which));
    let source = v1_address(
        family,
        V1Field::SourceAddress,
        field(V1Field::SourceAddress)?,
    )?;
    let destination = v1_address(
        family,
        V1Field::DestinationAddress,
        field(V1Field::DestinationAddress)?,
    )?;
    let source_port = v1_port(V1Field::SourcePort, field(V1Field::SourcePort)?)?;
    let destination_port = v1_port(V1Field::DestinationPort, field(V1Field::DestinationPort)?)?;
    if fields.next().is_some() {
        return Err(ParseError::V1TooManyFields);
    }
    Ok(Header::Proxied {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    })
}

/// Checks the start of a v1 line whose CRLF has not arrived: fields
/// already followed by a space are checked as in a whole line, and the
/// last one, which may still grow, only by the characters it may hold.
fn check_v1_start(start: &[u8]) -> Result<(), ParseError> {
    let Some(rest) = start.strip_prefix(V1_PREFIX) else {
        return Ok(()); // still within "PROXY ", which `parse` checked
    };
    let (whole, last) = match rest.iter().rposition(|&b| b == b' ') {
        Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };
    let Some(whole) = whole else {
        if V1_PROTOCOLS.iter().any(|p| p.starts_with(last)) {
            return Ok(());
        }
        return Err(ParseError::V1UnknownProtocol(text_of(last)));
    };
    let mut fields = whole.split(|&b| b == b' ');
    let Some(family) = v1_protocol(fields.next().unwrap_or_default())? else {
        return Ok(()); // UNKNOWN: the rest of the line is ignored
    };
    let mut next = V1Field::ALL.iter();
    for text in fields {
        let field = *next.next().ok_or(ParseError::V1TooManyFields)?;
        check_v1_field(family, field, text)?;
    }
    let field = *next.next().ok_or(ParseError::V1TooManyFields)?;
    check_v1_field_start(family, field, last)
}

/// A whole field, checked as [`parse_v1_line`] does.
fn check_v1_field(family: Family, field: V1Field, text: &[u8]) -> Result<(), ParseError> {
    match field {
        V1Field::SourceAddress | V1Field::DestinationAddress => {
            v1_address(family, field, text).map(drop)
        }
        V1Field::SourcePort | V1Field::DestinationPort => v1_port(field, text).map(drop),
    }
}

/// The start of a field: only characters the field may hold, and no
/// leading zero on a port.
fn check_v1_field_start(family: Family, field: V1Field, text: &[u8]) -> Result<(), ParseError> {
    match field {
        V1Field::SourceAddress | V1Field::DestinationAddress => {
            let allowed = |b: &u8| match family {
                Family::Ipv4 => b.is_ascii_digit() || *b == b'.',
                Family::Ipv6 => b.is_ascii_hexdigit() || *b == b':' || *b == b'.',
            };
            if text.iter().all(allowed) {
                return Ok(());
            }
            Err(ParseError::V1BadAddress {
                field,
                text: text_of(text),
            })
        }
        V1Field::SourcePort | V1Field::DestinationPort => {
            let digits = text.iter().all(u8::is_ascii_digit);
            let leading_zero = text.len() > 1 && text.first() == Some(&b'0');
            if digits && !leading_zero && text.len() <= 5 {
                return Ok(());
            }
            Err(ParseError::V1BadPort {
                field,
                text: text_of(text),
            })
        }
    }
}

/// The address family of a v1 `TCP4` or `TCP6` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ipv4,
    Ipv6,
}

/// The family a v1 protocol announces; `None` for `UNKNOWN`.
fn v1_protocol(text: &[u8]) -> Result<Option<Family>, ParseError> {
    match text {
        b"TCP4" => Ok(Some(Family::Ipv4)),
        b"TCP6" => Ok(Some(Family::Ipv6)),
        b"UNKNOWN" => Ok(None),
        _ => Err(ParseError::V1UnknownProtocol(text_of(text))),
    }
}

/// An address field of the line's family. std's parsers refuse what the
/// specification refuses: leading zeros in IPv4 (octal confusion), more
/// or fewer than 128 bits in IPv6.
fn v1_address(family: Family, field: V1Field, text: &[u8]) -> Result<IpAddr, ParseError> {
    let address: IpAddr = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ParseError::V1BadAddress {
            field,
            text: text_of(text),
        })?;
    match (family, address) {
        (Family::Ipv4, IpAddr::V4(_)) | (Family::Ipv6, IpAddr::V6(_)) => Ok(address),
        _ => Err(ParseError::V1WrongFamily { field, address }),
    }
}

/// A port field: decimal digits, 0 to 65535, no leading zero.
fn v1_port(field: V1Field, text: &[u8]) -> Result<u16, ParseError> {
    let digits = !text.is_empty() && text.iter().all(u8::is_ascii_digit);
    let leading_zero = text.len() > 1 && text.first() == Some(&b'0');
    std::str::from_utf8(text)
        .ok()
        .filter(|_| digits && !leading_zero)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ParseError::V1BadPort {
            field,
            text: text_of(text),
        })
}

/// Bytes as sent, for an error message (escaped when shown).
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The v1 protocol of a line that should not carry `address`.
fn v1_protocol_without(address: &IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "TCP6",
        IpAddr::V6(_) => "TCP4",
    }
}

/// "IPv4" or "IPv6".
fn family_name(address: &IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

// === v2 ===

/// Reads a v2 header. Each fixed byte is checked as soon as it is in, and
/// the length against the family before the addresses arrive.
fn parse_v2(buf: &[u8]) -> Result<Parsed, ParseError> {
    check_v2_start(buf)?;
    let Some(&[version_command, family, high, low]) = buf.get(12..V2_FIXED_LEN) else {
        return Ok(incomplete(V2_FIXED_LEN, buf.len()));
    };
    let local = version_command & 0x0f == V2_LOCAL;
    let length = u16::from_be_bytes([high, low]);
    let total = V2_FIXED_LEN + usize::from(length);
    if !local && v2_block_len(family).is_some_and(|block| length < block) {
        return Err(ParseError::V2AddressesTooShort { family, length });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(incomplete(total, buf.len()));
    };
    // LOCAL: the family is ignored and the block skipped, whatever it holds.
    // PROXY: TCP addresses are read; any other family means "unknown".
    // Bytes past the addresses are TLVs, skipped.
    let header = match (local, family) {
        (true, _) => Header::Local,
        (false, V2_TCP4) => v2_addresses_v4(block),
        (false, V2_TCP6) => v2_addresses_v6(block),
        (false, _) => Header::Unknown,
    };
    Ok(Parsed::Complete {
        header,
        consumed: total,
    })
}

/// Checks the version and command (byte 13) and, for `PROXY`, the family
/// and transport (byte 14), when they have arrived.
fn check_v2_start(buf: &[u8]) -> Result<(), ParseError> {
    let Some(&version_command) = buf.get(12) else {
        return Ok(());
    };
    let version = version_command >> 4;
    if version != V2_VERSION {
        return Err(ParseError::V2UnknownVersion(version));
    }
    let command = version_command & 0x0f;
    match command {
        V2_LOCAL => return Ok(()), // the family is ignored for LOCAL
        V2_PROXY => {}
        _ => return Err(ParseError::V2UnknownCommand(command)),
    }
    let Some(&family) = buf.get(13) else {
        return Ok(());
    };
    if family >> 4 > 3 {
        return Err(ParseError::V2UnknownFamily(family >> 4));
    }
    if family & 0x0f > 2 {
        return Err(ParseError::V2UnknownTransport(family & 0x0f));
    }
    Ok(())
}

/// The address block a family and transport byte announces, when it
/// announces one (both family and transport specified).
fn v2_block_len(family: u8) -> Option<u16> {
    if !matches!(family & 0x0f, 1 | 2) {
        return None;
    }
    match family >> 4 {
        1 => Some(V2_IPV4_BLOCK),
        2 => Some(V2_IPV6_BLOCK),
        3 => Some(V2_UNIX_BLOCK),
        _ => None,
    }
}

/// A family and transport byte in words, for errors.
fn v2_family_name(family: u8) -> &'static str {
    match family {
        0x11 => "TCP over IPv4",
        0x12 => "UDP over IPv4",
        0x21 => "TCP over IPv6",
        0x22 => "UDP over IPv6",
        0x31 => "unix stream",
        0x32 => "unix datagram",
        _ => "unspecified",
    }
}

/// TCP over IPv4 addresses: 4-byte source, destination, 2-byte ports.
fn v2_addresses_v4(mut block: &[u8]) -> Header {
    let mut read = || {
        let source = Ipv4Addr::from(take::<4>(&mut block)?);
        let destination = Ipv4Addr::from(take::<4>(&mut block)?);
        let source_port = u16::from_be_bytes(take(&mut block)?);
        let destination_port = u16::from_be_bytes(take(&mut block)?);
        Some(Header::Proxied {
            source: SocketAddr::from((source, source_port)),
            destination: SocketAddr::from((destination, destination_port)),
        })
    };
    // The length was checked against the family; `Unknown` is unreachable.
    read().unwrap_or(Header::Unknown)
}

/// TCP over IPv6 addresses: 16-byte source, destination, 2-byte ports.
fn v2_addresses_v6(mut block: &[u8]) -> Header {
    let mut read = || {
        let source = Ipv6Addr::from(take::<16>(&mut block)?);
        let destination = Ipv6Addr::from(take::<16>(&mut block)?);
        let source_port = u16::from_be_bytes(take(&mut block)?);
        let destination_port = u16::from_be_bytes(take(&mut block)?);
        Some(Header::Proxied {
            source: SocketAddr::from((source, source_port)),
            destination: SocketAddr::from((destination, destination_port)),
        })
    };
    // The length was checked against the family; `Unknown` is unreachable.
    read().unwrap_or(Header::Unknown)
}

/// The first `N` bytes of `bytes`, which then starts after them.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

// === reading from a connection ===

/// What [`read_header`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The header.
    pub header: Header,
    /// The bytes read past the header: the start of the relayed stream,
    /// to be sent on before anything else is read from the connection.
    pub rest: Vec<u8>,
}

/// How much is asked of the socket per read: the 536 bytes of the smallest
/// TCP segment every host takes, which the specification sizes both
/// versions to fit in (without TLVs). What is read past the header comes
/// back in [`Received::rest`], so the size only bounds that.
const READ_CHUNK: usize = 536;

/// Reads a header from the start of `stream` within `timeout`: the header
/// and the bytes read past it, which the caller must send on first.
/// Refuses at once what [`parse`] refuses; a stream that ends first is an
/// error. Holds at most [`MAX_HEADER_LEN`] plus one read's bytes.
pub async fn read_header<R>(stream: &mut R, timeout: Duration) -> Result<Received, ReadError>
where
    R: AsyncRead + Unpin,
{
    tokio::time::timeout(timeout, read_until_parsed(stream))
        .await
        .unwrap_or(Err(ReadError::Timeout(timeout)))
}

/// Reads until [`parse`] has a header or an error.
async fn read_until_parsed<R>(stream: &mut R) -> Result<Received, ReadError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        let needed = match parse(&buf)? {
            Parsed::Complete { header, consumed } => {
                buf.drain(..consumed.min(buf.len()));
                return Ok(Received { header, rest: buf });
            }
            Parsed::Incomplete { needed } => needed,
        };
        let start = buf.len();
        // `parse` never asks for more than a header can hold; the cap keeps
        // that true here whatever it says.
        buf.resize(start + needed.clamp(READ_CHUNK, MAX_HEADER_LEN), 0);
        let count = match stream.read(buf.get_mut(start..).unwrap_or_default()).await {
            Ok(0) => return Err(ReadError::Closed { received: start }),
            Ok(count) => count,
            Err(e) => return Err(ReadError::Io(e)),
        };
        buf.truncate(start + count);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn proxied(source: &str, destination: &str) -> Header {
        Header::Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    /// A v2 header: the signature, the version/command and family bytes,
    /// the length of `body`, then `body`.
    fn v2(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[version_command, family]);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn complete(bytes: &[u8]) -> (Header, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, consumed }) => (header, consumed),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// The specification's v1 example and its maximum-length lines.
    const V1_TCP4_EXAMPLE: &str = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    const V1_TCP4_LONGEST: &str = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    const V1_TCP6_LONGEST: &str = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                                   ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const V1_UNKNOWN_LONGEST: &str = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                                      ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

    /// HAProxy's own v2 output for 172.19.0.1:42578 -> 172.19.0.3:80.
    const V2_IPV4_FROM_HAPROXY: [u8; 28] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
    ];

    fn v2_ipv6_example() -> Vec<u8> {
        let mut body = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]); // 56324, 443
        v2(0x21, 0x21, &body)
    }

    /// TCP over IPv4 followed by three TLVs: ALPN "h2", authority
    /// "example.com" and an empty NOOP.
    fn v2_with_tlvs() -> Vec<u8> {
        let mut body = vec![192, 0, 2, 1, 192, 0, 2, 2, 0x13, 0x88, 0x00, 0x50];
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        body.extend_from_slice(&[0x02, 0x00, 0x0b]);
        body.extend_from_slice(b"example.com");
        body.extend_from_slice(&[0x04, 0x00, 0x00]);
        v2(0x21, 0x11, &body)
    }

    /// Every valid header of the tests above, with what it says.
    fn valid_headers() -> Vec<(Vec<u8>, Header)> {
        let ipv4 = proxied("172.19.0.1:42578", "172.19.0.3:80");
        let ipv6 = proxied("[2001:db8::1]:56324", "[2001:db8::2]:443");
        vec![
            (
                V1_TCP4_EXAMPLE.into(),
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (V1_TCP6_LONGEST.into(), {
                let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
                proxied(all, all)
            }),
            (b"PROXY UNKNOWN\r\n".to_vec(), Header::Unknown),
            (V1_UNKNOWN_LONGEST.into(), Header::Unknown),
            (V2_IPV4_FROM_HAPROXY.to_vec(), ipv4),
            (v2_ipv6_example(), ipv6),
            (v2(0x20, 0x00, &[]), Header::Local),
            (v2(0x21, 0x00, &[]), Header::Unknown),
            (v2_with_tlvs(), proxied("192.0.2.1:5000", "192.0.2.2:80")),
            (v2(0x20, 0x11, &[7; 12]), Header::Local),
        ]
    }

    #[test]
    fn the_specification_v1_examples_are_written_and_read_byte_for_byte() {
        let cases = [
            (
                V1_TCP4_EXAMPLE,
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (
                V1_TCP4_LONGEST,
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (V1_TCP6_LONGEST, {
                let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
                proxied(all, all)
            }),
            (
                "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
                proxied("[2001:db8::1]:56324", "[2001:db8::2]:443"),
            ),
        ];
        for (line, header) in cases {
            assert_eq!(encode_v1(&header), line.as_bytes(), "{line}");
            assert_eq!(complete(line.as_bytes()), (header, line.len()), "{line}");
        }
        // The lengths the specification computes for its longest lines.
        assert_eq!(V1_TCP4_LONGEST.len(), 56);
        assert_eq!(V1_TCP6_LONGEST.len(), 104);
        assert_eq!(V1_UNKNOWN_LONGEST.len(), 107);
    }

    #[test]
    fn v1_unknown_is_written_for_local_and_unknown_and_its_rest_is_ignored() {
        assert_eq!(encode_v1(&Header::Local), b"PROXY UNKNOWN\r\n");
        assert_eq!(encode_v1(&Header::Unknown), b"PROXY UNKNOWN\r\n");
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (Header::Unknown, 15));
        let longest = V1_UNKNOWN_LONGEST.as_bytes();
        assert_eq!(complete(longest), (Header::Unknown, 107));
        let line = b"PROXY UNKNOWN \x01 not even text\r\n";
        let stream = [&line[..], b"rest"].concat();
        assert_eq!(complete(&stream), (Header::Unknown, line.len()));
    }

    #[test]
    fn v2_headers_for_ipv4_ipv6_and_local_are_written_and_read_byte_for_byte() {
        let ipv4 = proxied("172.19.0.1:42578", "172.19.0.3:80");
        assert_eq!(encode_v2(&ipv4), V2_IPV4_FROM_HAPROXY);
        assert_eq!(complete(&V2_IPV4_FROM_HAPROXY), (ipv4, 28));

        let ipv6 = proxied("[2001:db8::1]:56324", "[2001:db8::2]:443");
        assert_eq!(encode_v2(&ipv6), v2_ipv6_example());
        assert_eq!(complete(&v2_ipv6_example()), (ipv6, 52));

        let local = v2(0x20, 0x00, &[]);
        assert_eq!(encode_v2(&Header::Local), local);
        assert_eq!(complete(&local), (Header::Local, 16));

        let unknown = v2(0x21, 0x00, &[]);
        assert_eq!(encode_v2(&Header::Unknown), unknown);
        assert_eq!(complete(&unknown), (Header::Unknown, 16));
    }

    #[test]
    fn version_encode_picks_the_format() {
        let header = proxied("192.0.2.1:5000", "192.0.2.2:80");
        assert_eq!(Version::V1.encode(&header), encode_v1(&header));
        assert_eq!(Version::V2.encode(&header), encode_v2(&header));
    }

    #[test]
    fn v2_tlvs_after_the_addresses_are_skipped_and_what_follows_is_left() {
        let mut bytes = v2_with_tlvs();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            complete(&bytes),
            (proxied("192.0.2.1:5000", "192.0.2.2:80"), header_len)
        );
        assert_eq!(header_len, 16 + 12 + 5 + 14 + 3);
    }

    #[test]
    fn the_longest_v2_header_the_format_allows_is_accepted() {
        let mut body = vec![192, 0, 2, 1, 192, 0, 2, 2, 0x13, 0x88, 0x00, 0x50];
        body.resize(usize::from(u16::MAX), 0x04); // NOOP TLVs and padding
        let bytes = v2(0x21, 0x11, &body);
        assert_eq!(bytes.len(), MAX_HEADER_LEN);
        let header = proxied("192.0.2.1:5000", "192.0.2.2:80");
        assert_eq!(complete(&bytes), (header, MAX_HEADER_LEN));
    }

    #[test]
    fn v2_local_skips_whatever_address_block_it_carries_and_ignores_its_family() {
        assert_eq!(complete(&v2(0x20, 0x11, &[7; 12])), (Header::Local, 28));
        assert_eq!(complete(&v2(0x20, 0xff, &[1, 2])), (Header::Local, 18));
    }

    #[test]
    fn v2_proxy_with_unspec_udp_or_unix_addresses_is_unknown_and_skipped() {
        let cases = [
            (0x00, vec![]),
            (0x01, vec![]),
            (0x10, vec![9; 3]),
            (0x12, vec![9; 12]),
            (0x22, vec![9; 36]),
            (0x31, vec![0; 216]),
            (0x32, vec![0; 220]),
        ];
        for (family, body) in cases {
            let bytes = v2(0x21, family, &body);
            let expected = (Header::Unknown, bytes.len());
            assert_eq!(complete(&bytes), expected, "{family:#04x}");
        }
    }

    #[test]
    fn an_ipv4_mapped_pair_is_sent_as_tcp4_so_the_backend_sees_the_ipv4_client() {
        let mapped = proxied("[::ffff:192.0.2.1]:5000", "[::ffff:192.0.2.2]:80");
        let plain = proxied("192.0.2.1:5000", "192.0.2.2:80");
        assert_eq!(
            encode_v1(&mapped),
            b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n"
        );
        assert_eq!(encode_v2(&mapped), encode_v2(&plain));
        assert_eq!(complete(&encode_v2(&mapped)).0, plain);
    }

    #[test]
    fn a_mixed_pair_is_sent_as_tcp6_in_hexadecimal_groups() {
        let mixed = proxied("192.0.2.1:5000", "[2001:db8::2]:80");
        let line = encode_v1(&mixed);
        assert_eq!(line, b"PROXY TCP6 ::ffff:c000:201 2001:db8::2 5000 80\r\n");
        let as_v6 = proxied("[::ffff:192.0.2.1]:5000", "[2001:db8::2]:80");
        assert_eq!(complete(&line).0, as_v6);
        let binary = encode_v2(&mixed);
        assert_eq!(binary.get(13), Some(&V2_TCP6));
        assert_eq!(complete(&binary).0, as_v6);
    }

    #[test]
    fn anything_but_the_v2_signature_or_proxy_space_is_refused_on_its_first_byte() {
        let cases: [&[u8]; 8] = [
            b"G",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"PROXY\r\n",
            b"proxy tcp4",
            b"\r\n\r\n\0\r\nQUIT\r",
            b"\r\n\r\n\n",
        ];
        for bytes in cases {
            let got = parse(bytes);
            assert_eq!(got, Err(ParseError::NotProxyProtocol), "{bytes:?}");
        }
    }

    #[test]
    fn bad_v1_lines_are_refused_with_what_is_wrong() {
        use ParseError::*;
        use V1Field::*;
        let bad_address = |field, text: &str| V1BadAddress {
            field,
            text: text.into(),
        };
        let bad_port = |field, text: &str| V1BadPort {
            field,
            text: text.into(),
        };
        let too_long_unknown = format!("PROXY UNKNOWN {}\r\n", "a".repeat(93));
        let no_crlf = format!("PROXY UNKNOWN {}", "a".repeat(93));
        let cases: Vec<(&str, ParseError)> = vec![
            (&too_long_unknown, V1LineTooLong),
            (&no_crlf, V1LineTooLong),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", V1LoneCrOrLf),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", V1LoneCrOrLf),
            ("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", V1LoneCrOrLf),
            ("PROXY UNKNOWN\n", V1LoneCrOrLf),
            ("PROXY \r\n", V1UnknownProtocol(String::new())),
            (
                "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                V1UnknownProtocol("TCP5".into()),
            ),
            (
                "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
                V1UnknownProtocol("tcp4".into()),
            ),
            ("PROXY UNKNOWNX\r\n", V1UnknownProtocol("UNKNOWNX".into())),
            ("PROXY TCP4\r\n", V1MissingField(SourceAddress)),
            ("PROXY TCP4 1.2.3.4\r\n", V1MissingField(DestinationAddress)),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                V1MissingField(DestinationPort),
            ),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1TooManyFields),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1TooManyFields),
            (
                "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                bad_address(DestinationAddress, ""),
            ),
            (
                "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
                bad_address(SourceAddress, "1.2.3"),
            ),
            (
                "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
                bad_address(SourceAddress, "01.2.3.4"),
            ),
            (
                "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
                bad_address(SourceAddress, "256.2.3.4"),
            ),
            (
                "PROXY TCP6 ::1 ::g 1 2\r\n",
                bad_address(DestinationAddress, "::g"),
            ),
            (
                "PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n",
                bad_address(DestinationAddress, "fe80::1%eth0"),
            ),
            (
                "PROXY TCP4 ::1 ::2 1 2\r\n",
                V1WrongFamily {
                    field: SourceAddress,
                    address: "::1".parse().unwrap(),
                },
            ),
            (
                "PROXY TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2\r\n",
                V1WrongFamily {
                    field: DestinationAddress,
                    address: "::ffff:5.6.7.8".parse().unwrap(),
                },
            ),
            (
                "PROXY TCP6 1.2.3.4 ::2 1 2\r\n",
                V1WrongFamily {
                    field: SourceAddress,
                    address: "1.2.3.4".parse().unwrap(),
                },
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                bad_port(SourcePort, "65536"),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
                bad_port(SourcePort, "080"),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
                bad_port(SourcePort, "+1"),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
                bad_port(SourcePort, "-1"),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 http\r\n",
                bad_port(DestinationPort, "http"),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line.as_bytes()), Err(expected), "{line:?}");
        }
    }

    #[test]
    fn v1_port_zero_is_a_port() {
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n";
        assert_eq!(complete(line).0, proxied("1.2.3.4:0", "5.6.7.8:0"));
    }

    #[test]
    fn bad_v2_headers_are_refused_with_what_is_wrong() {
        use ParseError::*;
        let too_short = |family, length| V2AddressesTooShort { family, length };
        let cases = [
            (v2(0x11, 0x11, &[0; 12]), V2UnknownVersion(1)),
            (v2(0x31, 0x11, &[0; 12]), V2UnknownVersion(3)),
            (v2(0x01, 0x11, &[0; 12]), V2UnknownVersion(0)),
            (v2(0x22, 0x11, &[0; 12]), V2UnknownCommand(2)),
            (v2(0x2f, 0x11, &[0; 12]), V2UnknownCommand(15)),
            (v2(0x21, 0x41, &[0; 12]), V2UnknownFamily(4)),
            (v2(0x21, 0xf1, &[0; 12]), V2UnknownFamily(15)),
            (v2(0x21, 0x13, &[0; 12]), V2UnknownTransport(3)),
            (v2(0x21, 0x11, &[0; 8]), too_short(0x11, 8)),
            (v2(0x21, 0x11, &[]), too_short(0x11, 0)),
            (v2(0x21, 0x21, &[0; 12]), too_short(0x21, 12)),
            (v2(0x21, 0x22, &[0; 35]), too_short(0x22, 35)),
            (v2(0x21, 0x12, &[0; 11]), too_short(0x12, 11)),
            (v2(0x21, 0x31, &[0; 100]), too_short(0x31, 100)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(parse(&bytes), Err(expected), "{bytes:02x?}");
        }
    }

    #[test]
    fn errors_are_found_before_the_rest_of_the_header_arrives() {
        use ParseError::*;
        let v2_start = |bytes: &[u8]| [&V2_SIGNATURE[..], bytes].concat();
        let cases: [(Vec<u8>, ParseError); 9] = [
            (b"PROXY X".to_vec(), V1UnknownProtocol("X".into())),
            (
                b"PROXY TCP4 ::".to_vec(),
                V1BadAddress {
                    field: V1Field::SourceAddress,
                    text: "::".into(),
                },
            ),
            (
                b"PROXY TCP4 ::1 ".to_vec(),
                V1WrongFamily {
                    field: V1Field::SourceAddress,
                    address: "::1".parse().unwrap(),
                },
            ),
            (
                b"PROXY TCP6 ::1 ::2 01".to_vec(),
                V1BadPort {
                    field: V1Field::SourcePort,
                    text: "01".into(),
                },
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ".to_vec(), V1TooManyFields),
            (v2_start(&[0x31]), V2UnknownVersion(3)),
            (v2_start(&[0x23]), V2UnknownCommand(3)),
            (v2_start(&[0x21, 0x51]), V2UnknownFamily(5)),
            (
                v2_start(&[0x21, 0x11, 0x00, 0x04]),
                V2AddressesTooShort {
                    family: 0x11,
                    length: 4,
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(parse(&bytes), Err(expected), "{bytes:02x?}");
        }
    }

    #[test]
    fn every_split_point_of_a_valid_header_is_incomplete_never_an_error() {
        for (bytes, header) in valid_headers() {
            for end in 0..bytes.len() {
                let prefix = bytes.get(..end).unwrap();
                match parse(prefix) {
                    Ok(Parsed::Incomplete { needed }) => {
                        assert!(needed >= 1 && end + needed <= bytes.len(), "{prefix:02x?}")
                    }
                    other => panic!("{other:?} for {prefix:02x?}"),
                }
            }
            assert_eq!(complete(&bytes), (header, bytes.len()));
        }
    }

    #[test]
    fn v2_says_exactly_how_many_bytes_it_needs_once_its_length_is_in() {
        let bytes = v2_with_tlvs();
        let got = parse(bytes.get(..20).unwrap());
        let needed = bytes.len() - 20;
        assert_eq!(got, Ok(Parsed::Incomplete { needed }));
        assert_eq!(parse(&[]), Ok(Parsed::Incomplete { needed: 15 }));
    }

    #[test]
    fn errors_read_as_one_voice() {
        let cases = [
            (ParseError::NotProxyProtocol, "not a PROXY protocol header"),
            (
                ParseError::V1LineTooLong,
                "PROXY v1 line longer than 107 bytes",
            ),
            (
                ParseError::V1LoneCrOrLf,
                "PROXY v1 line ends with a lone CR or LF instead of CRLF",
            ),
            (
                ParseError::V1UnknownProtocol("T\u{1b}".into()),
                "PROXY v1 protocol \"T\\u{1b}\" is not TCP4, TCP6 or UNKNOWN",
            ),
            (
                ParseError::V1MissingField(V1Field::DestinationPort),
                "PROXY v1 line ends before its destination port",
            ),
            (
                ParseError::V1WrongFamily {
                    field: V1Field::SourceAddress,
                    address: "::1".parse().unwrap(),
                },
                "PROXY v1 TCP4 line with an IPv6 source address ::1",
            ),
            (
                ParseError::V1BadPort {
                    field: V1Field::SourcePort,
                    text: "080".into(),
                },
                "PROXY v1 source port \"080\" is not a number from 0 to 65535 without leading zeros",
            ),
            (
                ParseError::V2UnknownVersion(3),
                "PROXY v2 header of unknown version 3",
            ),
            (
                ParseError::V2AddressesTooShort {
                    family: 0x11,
                    length: 8,
                },
                "PROXY v2 header of length 8 is shorter than the 12 bytes of TCP over IPv4 addresses",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        assert_eq!(
            ReadError::Timeout(Duration::from_secs(3)).to_string(),
            "no complete PROXY protocol header within 3s"
        );
        assert_eq!(
            ReadError::Closed { received: 5 }.to_string(),
            "connection closed after 5 bytes, before a complete PROXY protocol header"
        );
    }

    // === properties ===

    fn any_ipv4() -> impl Strategy<Value = SocketAddr> {
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| (Ipv4Addr::from(ip), port).into())
    }

    /// IPv6 addresses with runs of zeros (so `::` is written), but not
    /// IPv4-mapped ones, which are sent as IPv4.
    fn any_ipv6() -> impl Strategy<Value = SocketAddr> {
        let segment = prop_oneof![Just(0u16), any::<u16>()];
        let ip = proptest::array::uniform8(segment)
            .prop_map(Ipv6Addr::from)
            .prop_filter("IPv4-mapped addresses are sent as IPv4", |ip| {
                ip.to_ipv4_mapped().is_none()
            });
        (ip, any::<u16>()).prop_map(|(ip, port)| (ip, port).into())
    }

    fn any_header() -> impl Strategy<Value = Header> {
        let pair = |(source, destination)| Header::Proxied {
            source,
            destination,
        };
        prop_oneof![
            (any_ipv4(), any_ipv4()).prop_map(pair),
            (any_ipv6(), any_ipv6()).prop_map(pair),
            Just(Header::Local),
            Just(Header::Unknown),
        ]
    }

    fn any_version() -> impl Strategy<Value = Version> {
        prop_oneof![Just(Version::V1), Just(Version::V2)]
    }

    /// Starts that get past the version check, so random bytes reach the
    /// v1 and v2 parsers and not only the first-byte refusal.
    fn any_start() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(b"PROXY ".to_vec()),
            Just(b"PROXY TCP4 ".to_vec()),
            Just(b"PROXY TCP6 ".to_vec()),
            Just(b"PROXY UNKNOWN".to_vec()),
            Just(V2_SIGNATURE.to_vec()),
            Just([&V2_SIGNATURE[..], &[0x21]].concat()),
            Just([&V2_SIGNATURE[..], &[0x21, 0x11]].concat()),
            Just([&V2_SIGNATURE[..], &[0x21, 0x21]].concat()),
            Just([&V2_SIGNATURE[..], &[0x20]].concat()),
        ]
    }

    proptest! {
        #[test]
        fn any_header_written_in_either_version_reads_back_the_same(
            header in any_header(),
            version in any_version(),
        ) {
            let bytes = version.encode(&header);
            // v1 cannot say LOCAL: it says UNKNOWN, and means the same to
            // the receiver (use the real connection's addresses).
            let expected = match (version, header) {
                (Version::V1, Header::Local) => Header::Unknown,
                _ => header,
            };
            prop_assert_eq!(
                parse(&bytes),
                Ok(Parsed::Complete { header: expected, consumed: bytes.len() })
            );
        }

        #[test]
        fn any_header_cut_anywhere_is_incomplete_and_whole_leaves_what_follows(
            header in any_header(),
            version in any_version(),
            after in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = version.encode(&header);
            for end in 0..bytes.len() {
                let got = parse(bytes.get(..end).unwrap());
                prop_assert!(matches!(got, Ok(Parsed::Incomplete { .. })), "{:?} at {}", got, end);
            }
            let stream = [&bytes[..], &after[..]].concat();
            let got = parse(&stream);
            prop_assert!(
                matches!(got, Ok(Parsed::Complete { consumed, .. }) if consumed == bytes.len()),
                "{:?}", got
            );
        }

        #[test]
        fn random_bytes_never_panic_and_never_consume_more_than_given(
            start in any_start(),
            random in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let bytes = [start, random].concat();
            if let Ok(Parsed::Complete { consumed, .. }) = parse(&bytes) {
                prop_assert!(consumed <= bytes.len());
            }
        }

        #[test]
        fn an_early_refusal_is_never_of_bytes_that_would_have_been_accepted(
            header in any_header(),
            version in any_version(),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            // One byte of a valid header changed: if some prefix is
            // refused, the whole is refused too.
            let mut bytes = version.encode(&header);
            let len = bytes.len();
            if let Some(slot) = bytes.get_mut(at % len) {
                *slot = byte;
            }
            let whole = parse(&bytes);
            if let Ok(Parsed::Complete { consumed, .. }) = whole {
                prop_assert!(consumed <= len);
            }
            for end in 0..len {
                if parse(bytes.get(..end).unwrap()).is_err() {
                    prop_assert!(whole.is_err(), "prefix of {} refused, whole {:?}", end, whole);
                }
            }
        }
    }

    // === reading from a connection ===

    /// A connected pair over loopback: (client, server side).
    async fn loopback() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// What the server side reads after the header: `rest`, then the
    /// stream to its end.
    async fn rest_of_stream(received: &Received, server: &mut TcpStream) -> Vec<u8> {
        let mut all = received.rest.clone();
        server.read_to_end(&mut all).await.unwrap();
        all
    }

    #[tokio::test]
    async fn the_reader_returns_the_header_and_the_bytes_that_followed_it() {
        let (mut client, mut server) = loopback().await;
        let header = proxied("192.0.2.1:5000", "192.0.2.2:80");
        let request = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
        let sent = [encode_v1(&header), request.to_vec()].concat();
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();

        let received = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(received.header, header);
        assert_eq!(rest_of_stream(&received, &mut server).await, request);
    }

    #[tokio::test]
    async fn the_reader_takes_a_v2_header_sent_one_byte_at_a_time() {
        let (mut client, mut server) = loopback().await;
        client.set_nodelay(true).unwrap();
        let header = proxied("[2001:db8::1]:5000", "[2001:db8::2]:443");
        let bytes = [encode_v2(&header), b"hello".to_vec()].concat();
        let writer = tokio::spawn(async move {
            for byte in bytes {
                client.write_all(&[byte]).await.unwrap();
                client.flush().await.unwrap();
            }
            client.shutdown().await.unwrap();
        });

        let received = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(received.header, header);
        assert_eq!(rest_of_stream(&received, &mut server).await, b"hello");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_not_speaking_the_protocol_is_refused_without_waiting() {
        let (mut client, mut server) = loopback().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // The client stays connected; the refusal must not wait for the
        // reader's own (long) timeout.
        let read = read_header(&mut server, Duration::from_secs(3600));
        let got = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("refused without waiting");
        assert!(
            matches!(got, Err(ReadError::Parse(ParseError::NotProxyProtocol))),
            "{got:?}"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_stream_closed_before_the_header_is_complete_is_an_error() {
        let (mut client, mut server) = loopback().await;
        client.write_all(b"PROXY TCP4 1.2").await.unwrap();
        client.shutdown().await.unwrap();
        let got = read_header(&mut server, Duration::from_secs(5)).await;
        assert!(
            matches!(got, Err(ReadError::Closed { received: 14 })),
            "{got:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_that_does_not_arrive_in_time_is_a_timeout() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PROXY TCP4 ").await.unwrap();
        let got = read_header(&mut server, Duration::from_secs(3)).await;
        assert!(
            matches!(got, Err(ReadError::Timeout(t)) if t == Duration::from_secs(3)),
            "{got:?}"
        );
        drop(client);
    }
}
