//! Parsing request heads, decoding chunked bodies and encoding answer
//! heads and chunks (see the module of `h1`): pure functions over byte
//! buffers, with no I/O, that the connection loop calls.
//!
//! # What a request head may be
//!
//! [`parse_request`] refuses, each with its own [`Refusal`] (a status and a
//! one-line text), and the connection loop answers and closes:
//!
//! - whatever httparse refuses (400): a bad request line, a header name
//!   with a space before its colon (RFC 9112 5.1), obs-fold (RFC 9112 5.2:
//!   a server may reject it, and we do), control characters. Bare LF line
//!   ends are accepted as httparse accepts them (RFC 9112 2.2 allows it),
//!   and so are empty lines before the request line (RFC 9112 2.2);
//! - a head larger than `max_bytes`, or with more than `max_headers`
//!   header fields (431, RFC 6585 5), and a target over the 65,534 bytes
//!   `http::Uri` holds (414);
//! - a version other than HTTP/1.0 and HTTP/1.1 (505, RFC 9110 15.6.6),
//!   and a version that is not `HTTP/` digit `.` digit (400);
//! - a method or target `http` does not take (400); a `*` target but with
//!   `OPTIONS` and an authority-form target (RFC 9112 3.2.3, 3.2.4: 400);
//! - `CONNECT` (501): a balancer does not tunnel. 501 rather than 405,
//!   because 405 says the target resource does not allow the method and
//!   must list the ones it does in `Allow` (RFC 9110 15.5.6), which only an
//!   origin can say; 501 says this server supports the method for no
//!   resource at all (RFC 9110 15.6.2), which is the case;
//! - body framing that could be read two ways (request smuggling, RFC
//!   9112 6.3, 11.2), 400: both `Transfer-Encoding` and `Content-Length`
//!   (SPEC 4), `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 6.1:
//!   an HTTP/1.0 recipient could not have read it), `chunked` applied twice
//!   (RFC 9112 6.1), a last coding that is not `chunked` (RFC 9112 6.3:
//!   the length cannot be determined), a `Content-Length` value that is not
//!   1 to 19 ASCII digits, or two different values (RFC 9110 8.6);
//! - another transfer coding before `chunked` (`gzip, chunked`), 501: we do
//!   not undo it, and passing the body on still encoded would be wrong
//!   (RFC 9112 6.1).
//!
//! # What a chunked body may be
//!
//! [`ChunkedDecoder`] is strict (RFC 9112 7.1), every fault a 400: the
//! size is 1 to 16 hex digits and nothing else (no `0x`, no sign, no space
//! before it); whitespace may follow it only before an extension or the
//! line end; extensions are skipped but may hold no control characters;
//! every line ends with CRLF, never a bare LF; chunk data is followed by
//! exactly CRLF; the size line and the trailer section have limits. The
//! trailer fields are parsed with httparse (obs-fold refused), and those
//! RFC 9110 6.5.1 says may not be trailers (framing, routing, connection
//! control, authentication, content metadata) are dropped, so a trailer
//! never changes how a message is framed or routed.
//!
//! # Answers
//!
//! [`encode_response_head`] writes an HTTP/1.1 status line, the headers it
//! is given less the framing and connection ones, which it writes itself
//! from [`ResponseFraming`] and [`Connection`], and a `Date` when there is
//! none. [`encode_chunk`] and [`encode_last_chunk`] frame a chunked body.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::proxy::http::headers::{self, Field, FieldSet, Outbound, push_field};

/// Limits for one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The largest head (request line, header lines and the blank line,
    /// with any empty lines before it), in bytes; a larger one is a 431.
    pub max_bytes: usize,
    /// The most header fields a head may have; more is a 431.
    pub max_headers: usize,
}

/// Why a request is refused: the status to answer with and a short
/// plain-text body (one lowercase line ending in `\n`). The connection is
/// closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status of the answer.
    pub status: StatusCode,
    /// The answer's body.
    pub text: &'static str,
}

/// How a request's body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Transfer-Encoding` nor `Content-Length`, or a
    /// `Content-Length` of 0.
    None,
    /// A body of this many bytes (never 0).
    Length(u64),
    /// A chunked body, read with [`ChunkedDecoder`].
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target, as sent (origin-form, absolute-form, or `*`
    /// for `OPTIONS`).
    pub uri: Uri,
    /// `HTTP_10` or `HTTP_11`, nothing else.
    pub version: Version,
    /// Every header field as received, in order (appended), names
    /// lowercased; `Content-Length` and `Transfer-Encoding` included.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the client keeps the connection open after this exchange:
    /// on HTTP/1.1 unless `Connection` has `close`, on HTTP/1.0 only when
    /// `Connection` has `keep-alive` (and not `close`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (an HTTP/1.0 one's is
    /// ignored, RFC 9110 10.1.1).
    pub expect_continue: bool,
    /// An HTTP/1.1 request with an `Upgrade` header and `upgrade` among
    /// the tokens of `Connection`.
    pub upgrade: bool,
    /// Which known fields the head has (so those it lacks are not looked
    /// up in `headers`).
    pub fields: FieldSet,
}

/// Parses the request head at the start of `buf`.
///
/// - `Ok(None)`: the head is incomplete; read more and call again (the
///   head is parsed again from its start). When `buf` already holds
///   `limits.max_bytes` bytes, an incomplete head is `Err` 431 instead.
/// - `Ok(Some(head))`: the head's bytes (with its blank line, and any
///   empty lines before it) are split off the front of `buf`, which keeps
///   what follows: a body, or a pipelined request. The target and the
///   header values share those bytes, uncopied.
/// - `Err(refusal)`: answer it and close; what `buf` holds then is
///   unspecified.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, Refusal> {
    let window = buf.get(..limits.max_bytes).unwrap_or(buf.as_ref());
    let Some(layout) = scan_head(window, limits.max_headers)? else {
        if buf.len() >= limits.max_bytes {
            return Err(HEAD_TOO_LARGE);
        }
        return Ok(None);
    };
    let head = buf.split_to(layout.len).freeze();
    build_head(&head, layout).map(Some)
}

/// A complete head as scanned in `buf`, before it is split off: what
/// needs only the bytes is decided, and where the target and the values
/// are is noted, to be shared out of the split-off head.
struct Layout {
    len: usize,
    method: Method,
    version: Version,
    target: Range<usize>,
    fields: Vec<(HeaderName, Range<usize>)>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    fields_seen: FieldSet,
}

/// Header fields a request gains on its way to a backend
/// (`X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto`, `TE`).
const FORWARDING_ROOM: usize = 4;

/// How many header slots live on the stack; more come from the heap.
const STACK_HEADERS: usize = 128;

/// Parses `window` with httparse and checks everything but the target's
/// and values' syntax (which `http` checks while building the head).
/// `Ok(None)`: incomplete.
fn scan_head(window: &[u8], max_headers: usize) -> Result<Option<Layout>, Refusal> {
    // A header line takes at least 3 bytes (`a:` and LF), so more slots
    // than that could never be filled: a huge `max_headers` costs nothing.
    let slots = max_headers.min(window.len() / 3 + 1);
    // Uninitialized slots: httparse writes those it fills, and a head
    // then costs no clearing of all of them first.
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let fields = match stack.get_mut(..slots) {
        Some(fields) => fields,
        None => {
            heap.resize_with(slots, MaybeUninit::uninit);
            heap.as_mut_slice()
        }
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(window, fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return version_refusal(window).map_or(Ok(None), Err),
        Err(error) => return Err(parse_refusal(error)),
    };
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(VERSION_NOT_SUPPORTED),
    };
    let method = req.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| BAD_METHOD)?;
    if method == Method::CONNECT {
        return Err(CONNECT);
    }
    let target = req.path.unwrap_or_default();
    check_target(&method, target.as_bytes())?;
    let survey = Survey::of(req.headers);
    let framing = body_framing(version, req.headers, &survey)?;
    let connection = &survey.connection;
    let is_11 = version == Version::HTTP_11;
    let fields = req
        .headers
        .iter()
        .map(|field| {
            let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| BAD_NAME)?;
            Ok((name, range_in(window, field.value)))
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    Ok(Some(Layout {
        len,
        method,
        version,
        target: range_in(window, target.as_bytes()),
        framing,
        keep_alive: if is_11 {
            !connection.close
        } else {
            connection.keep_alive && !connection.close
        },
        expect_continue: is_11 && survey.has(Field::Expect) && expect_continue(req.headers),
        upgrade: is_11 && connection.upgrade && survey.has(Field::Upgrade),
        fields,
        fields_seen: survey.seen,
    }))
}

/// Builds the head out of its split-off bytes, sharing them.
fn build_head(head: &Bytes, layout: Layout) -> Result<RequestHead, Refusal> {
    let target = share(head, layout.target).ok_or(BAD_TARGET)?;
    let uri = Uri::from_maybe_shared(target).map_err(|_| BAD_TARGET)?;
    // Room for the forwarding headers the request gets on its way, so
    // adding them does not grow the map.
    let room = layout.fields.len() + FORWARDING_ROOM;
    let mut headers = HeaderMap::try_with_capacity(room).map_err(|_| TOO_MANY_HEADERS)?;
    for (name, range) in layout.fields {
        let value = share(head, range).ok_or(BAD_VALUE)?;
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| BAD_VALUE)?;
        headers
            .try_append(name, value)
            .map_err(|_| TOO_MANY_HEADERS)?;
    }
    Ok(RequestHead {
        method: layout.method,
        uri,
        version: layout.version,
        headers,
        framing: layout.framing,
        keep_alive: layout.keep_alive,
        expect_continue: layout.expect_continue,
        upgrade: layout.upgrade,
        fields: layout.fields_seen,
    })
}

/// Where `part`, a slice of `base` (or empty), lies in it.
fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let start = part.as_ptr().addr().wrapping_sub(base.as_ptr().addr());
    start..start.wrapping_add(part.len())
}

/// The bytes of `head` in `range`, or `None` if it does not lie in it
/// (which cannot happen: the ranges come from parsing these bytes).
fn share(head: &Bytes, range: Range<usize>) -> Option<Bytes> {
    (range.start <= range.end && range.end <= head.len()).then(|| head.slice(range))
}

/// The refusal for an httparse error other than the version's.
fn parse_refusal(error: httparse::Error) -> Refusal {
    match error {
        httparse::Error::HeaderName => BAD_NAME,
        httparse::Error::HeaderValue => BAD_VALUE,
        httparse::Error::NewLine => BAD_LINE_END,
        httparse::Error::TooManyHeaders => TOO_MANY_HEADERS,
        httparse::Error::Version => BAD_VERSION,
        httparse::Error::Token | httparse::Error::Status => BAD_REQUEST_LINE,
    }
}

/// What httparse's version error means: 505 for a well-formed version
/// other than 1.0 and 1.1 (`HTTP/2.0`, `HTTP/0.9`), 400 for one that is not
/// `HTTP/` digit `.` digit (RFC 9112 2.3), `None` while the request line is
/// incomplete and could still be either.
fn version_refusal(window: &[u8]) -> Option<Refusal> {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let rest = window.get(start..).unwrap_or_default();
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = rest.get(..end).unwrap_or_default();
            (line.strip_suffix(b"\r").unwrap_or(line), true)
        }
        // A CR may be the start of the line's end.
        None => (rest.strip_suffix(b"\r").unwrap_or(rest), false),
    };
    // httparse took the method and the target, each followed by one space.
    let Some(version) = line.splitn(3, |&b| b == b' ').nth(2) else {
        return Some(BAD_VERSION);
    };
    const SHAPE: &[u8; 8] = b"HTTP/0.0";
    let fits = version.len() <= SHAPE.len()
        && version.iter().zip(SHAPE).all(|(&b, &shape)| {
            if shape == b'0' {
                b.is_ascii_digit()
            } else {
                b == shape
            }
        });
    match (fits, complete) {
        (true, true) if version.len() == SHAPE.len() => Some(VERSION_NOT_SUPPORTED),
        (true, false) => None,
        _ => Some(BAD_VERSION),
    }
}

/// The target's rules that need only its bytes: the length `http::Uri`
/// holds, `*` only for `OPTIONS` (RFC 9112 3.2.4), and no authority-form,
/// which is only for `CONNECT` (RFC 9112 3.2.3): a target is `*`, starts
/// with `/` (origin-form) or has a scheme (absolute-form, checked by
/// `http` when the `Uri` is built).
fn check_target(method: &Method, target: &[u8]) -> Result<(), Refusal> {
    if target.len() > MAX_TARGET {
        return Err(TARGET_TOO_LONG);
    }
    if target == b"*" {
        return if method == Method::OPTIONS {
            Ok(())
        } else {
            Err(STAR_NOT_OPTIONS)
        };
    }
    if target.starts_with(b"/") || has_scheme(target) {
        Ok(())
    } else {
        Err(AUTHORITY_FORM)
    }
}

/// The longest target `http::Uri` takes.
const MAX_TARGET: usize = (u16::MAX - 1) as usize;

/// Whether `target` starts with a scheme and `://` (RFC 3986 3.1: a letter,
/// then letters, digits, `+`, `-`, `.`).
fn has_scheme(target: &[u8]) -> bool {
    let Some(colon) = target.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let scheme = target.get(..colon).unwrap_or_default();
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// What one pass over a head's fields finds: which known fields are there,
/// the tokens of `Connection` and the length `Content-Length` gives.
struct Survey {
    seen: FieldSet,
    connection: ConnectionTokens,
    /// What every `Content-Length` element gives (see [`content_length`]).
    content_length: Result<Option<u64>, Refusal>,
}

impl Survey {
    fn of(fields: &[httparse::Header<'_>]) -> Survey {
        let mut survey = Survey {
            seen: FieldSet::NONE,
            connection: ConnectionTokens::default(),
            content_length: Ok(None),
        };
        for field in fields {
            let kind = Field::of(field.name.as_bytes());
            survey.seen.insert(kind);
            match kind {
                Field::Connection => survey.connection.add(field.value),
                Field::ContentLength => {
                    if let Ok(length) = survey.content_length {
                        survey.content_length = content_length(length, field.value);
                    }
                }
                _ => {}
            }
        }
        survey
    }

    fn has(&self, kind: Field) -> bool {
        self.seen.has(kind)
    }
}

/// The values of the `kind` fields, in order.
fn field_values<'a>(
    fields: &'a [httparse::Header<'a>],
    kind: Field,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |field| Field::of(field.name.as_bytes()) == kind)
        .map(|field| field.value)
}

/// The elements of a comma-separated list value, trimmed of whitespace
/// (empty ones included: the caller decides).
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// How the body is delimited (RFC 9112 6.3, SPEC 4).
fn body_framing(
    version: Version,
    fields: &[httparse::Header<'_>],
    survey: &Survey,
) -> Result<BodyFraming, Refusal> {
    let has_te = survey.has(Field::TransferEncoding);
    let has_cl = survey.has(Field::ContentLength);
    if has_te && version == Version::HTTP_10 {
        return Err(TE_IN_HTTP_10);
    }
    if has_te && has_cl {
        return Err(TE_AND_CL);
    }
    if has_te {
        check_transfer_codings(field_values(fields, Field::TransferEncoding))?;
        return Ok(BodyFraming::Chunked);
    }
    if !has_cl {
        return Ok(BodyFraming::None);
    }
    match survey.content_length.clone()? {
        None | Some(0) => Ok(BodyFraming::None),
        Some(length) => Ok(BodyFraming::Length(length)),
    }
}

/// Checks that the codings of every `Transfer-Encoding` line, in order,
/// are exactly one `chunked` (RFC 9112 6.1, 6.3).
fn check_transfer_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), Refusal> {
    let (mut count, mut chunked, mut last_chunked) = (0usize, 0usize, false);
    for coding in values.flat_map(elements).filter(|c| !c.is_empty()) {
        last_chunked = coding.eq_ignore_ascii_case(b"chunked");
        count += 1;
        chunked += usize::from(last_chunked);
    }
    if count == 0 {
        Err(TE_EMPTY)
    } else if chunked > 1 {
        Err(CHUNKED_TWICE)
    } else if !last_chunked {
        Err(TE_NOT_CHUNKED_LAST)
    } else if count > 1 {
        Err(TE_OTHER_CODING)
    } else {
        Ok(())
    }
}

/// The length that `length` (what earlier `Content-Length` fields gave,
/// `None` before the first) and every element of `value` give together
/// (RFC 9110 8.6: a list of one value repeated is that value).
fn content_length(mut length: Option<u64>, value: &[u8]) -> Result<Option<u64>, Refusal> {
    for element in elements(value) {
        let n = decimal(element)?;
        if length.is_some_and(|seen| seen != n) {
            return Err(CL_DIFFERENT);
        }
        length = Some(n);
    }
    Ok(length)
}

/// 1 to 19 ASCII digits as a number.
fn decimal(digits: &[u8]) -> Result<u64, Refusal> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CL_NOT_A_NUMBER);
    }
    if digits.len() > 19 {
        return Err(CL_TOO_LARGE);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(CL_TOO_LARGE)
    })
}

/// The tokens of `Connection` that matter here.
#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// A token may name a field that is not hop-by-hop by itself.
    names_fields: bool,
}

impl ConnectionTokens {
    /// Notes the tokens of one `Connection` value.
    fn add(&mut self, value: &[u8]) {
        for token in elements(value) {
            let close = token.eq_ignore_ascii_case(b"close");
            let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
            let upgrade = token.eq_ignore_ascii_case(b"upgrade");
            self.close |= close;
            self.keep_alive |= keep_alive;
            self.upgrade |= upgrade;
            // `keep-alive` and `upgrade` name fields that go anyway.
            self.names_fields |= !(keep_alive || upgrade || token.is_empty());
        }
    }
}

/// Whether an `Expect` element is `100-continue`.
fn expect_continue(fields: &[httparse::Header<'_>]) -> bool {
    field_values(fields, Field::Expect)
        .flat_map(elements)
        .any(|e| e.eq_ignore_ascii_case(b"100-continue"))
}

/// A piece of a decoded chunked body.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Chunk data (never empty), shared out of the buffer.
    Data(Bytes),
    /// The trailer fields, less those that may not be trailers; given
    /// once, before `End`, and only when some are left.
    Trailers(HeaderMap),
    /// The end of the body.
    End,
}

/// Decodes a chunked body as it arrives (RFC 9112 7.1), strictly: see the
/// module's documentation.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkedState,
    max_line: usize,
    max_trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    /// At a chunk-size line.
    Size,
    /// In chunk data, this many bytes left (never 0).
    Data(u64),
    /// At the CRLF after chunk data.
    DataEnd,
    /// After the last chunk's size line: the trailer section.
    Trailers,
    /// Trailers given, `End` next.
    End,
    /// `End` given.
    Done,
}

/// The most trailer fields a chunked body may have.
const MAX_TRAILER_FIELDS: usize = 100;

impl ChunkedDecoder {
    /// A decoder at the start of a body, whose chunk-size lines (with
    /// their extensions and CRLF) may be `max_line` bytes long and whose
    /// trailer section (with its blank line) `max_trailer_bytes` long,
    /// with at most 100 fields.
    pub fn new(max_line: usize, max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: ChunkedState::Size,
            max_line,
            max_trailer_bytes,
        }
    }

    /// Whether `End` has been given.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Decodes from the front of `buf`, consuming what it decodes.
    ///
    /// - `Ok(None)`: more bytes are needed.
    /// - `Ok(Some(Chunk::Data(data)))`: as much of the current chunk's data
    ///   as `buf` holds (never empty).
    /// - `Ok(Some(Chunk::Trailers(fields)))`: once, if the last chunk had
    ///   trailer fields (less those dropped).
    /// - `Ok(Some(Chunk::End))`: the end of the body; `buf` then holds what
    ///   follows it. Called again after that, `decode` gives `End` again
    ///   and consumes nothing.
    /// - `Err(refusal)`: bad framing (400).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, Refusal> {
        loop {
            match self.state {
                ChunkedState::Size => {
                    let Some((size, len)) = size_line(buf, self.max_line)? else {
                        return Ok(None);
                    };
                    buf.advance(len);
                    self.state = if size == 0 {
                        ChunkedState::Trailers
                    } else {
                        ChunkedState::Data(size)
                    };
                }
                ChunkedState::Data(left) => return Ok(self.data(buf, left)),
                ChunkedState::DataEnd => {
                    if !data_end(buf)? {
                        return Ok(None);
                    }
                    buf.advance(2);
                    self.state = ChunkedState::Size;
                }
                ChunkedState::Trailers => return self.trailers(buf),
                ChunkedState::End | ChunkedState::Done => {
                    self.state = ChunkedState::Done;
                    return Ok(Some(Chunk::End));
                }
            }
        }
    }

    /// As much of the current chunk's data as `buf` holds.
    fn data(&mut self, buf: &mut BytesMut, left: u64) -> Option<Chunk> {
        if buf.is_empty() {
            return None;
        }
        let take = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let data = buf.split_to(take).freeze();
        let left = left.saturating_sub(data.len() as u64);
        self.state = if left == 0 {
            ChunkedState::DataEnd
        } else {
            ChunkedState::Data(left)
        };
        Some(Chunk::Data(data))
    }

    /// The trailer section, consumed whole once it has all arrived.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, Refusal> {
        // The usual case first: no trailer fields.
        match buf.first() {
            None => return Ok(None),
            Some(b'\n') => return Err(CHUNK_BARE_LF),
            Some(b'\r') => match buf.get(1) {
                None => return Ok(None),
                Some(b'\n') => {
                    buf.advance(2);
                    self.state = ChunkedState::Done;
                    return Ok(Some(Chunk::End));
                }
                Some(_) => return Err(CHUNK_CR_WITHOUT_LF),
            },
            Some(_) => {}
        }
        let Some((len, fields)) = trailer_section(buf, self.max_trailer_bytes)? else {
            return Ok(None);
        };
        buf.advance(len);
        if fields.is_empty() {
            self.state = ChunkedState::Done;
            return Ok(Some(Chunk::End));
        }
        self.state = ChunkedState::End;
        Ok(Some(Chunk::Trailers(fields)))
    }
}

/// A chunk-size line at the start of `buf`: `Ok(Some((size, length of the
/// line with its CRLF)))`, or `Ok(None)` while it is incomplete. Scanned
/// from its start each time (it is short), so a fault is found as soon as
/// its byte arrives.
fn size_line(buf: &[u8], max_line: usize) -> Result<Option<(u64, usize)>, Refusal> {
    #[derive(Clone, Copy)]
    enum At {
        Digits,
        Space,
        Extension,
        Lf,
    }
    let (mut size, mut digits, mut at) = (0u64, 0usize, At::Digits);
    for (i, &b) in buf.iter().enumerate() {
        if i >= max_line {
            return Err(CHUNK_LINE_TOO_LONG);
        }
        at = match (at, b) {
            (At::Digits, _) if b.is_ascii_hexdigit() => {
                if digits == 16 {
                    return Err(CHUNK_SIZE_TOO_LONG);
                }
                digits += 1;
                size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(hex_value(b)))
                    .ok_or(CHUNK_SIZE_TOO_LONG)?;
                At::Digits
            }
            (At::Digits, _) if digits == 0 => return Err(CHUNK_SIZE_NOT_HEX),
            (At::Digits | At::Space, b' ' | b'\t') => At::Space,
            (At::Digits | At::Space, b';') => At::Extension,
            (At::Digits | At::Space | At::Extension, b'\r') => At::Lf,
            (_, b'\n') if !matches!(at, At::Lf) => return Err(CHUNK_BARE_LF),
            (At::Digits, _) => return Err(CHUNK_SIZE_NOT_HEX),
            (At::Space, _) => return Err(CHUNK_BAD_EXTENSION),
            (At::Extension, _) if b != b'\t' && b.is_ascii_control() => {
                return Err(CHUNK_EXTENSION_CONTROL);
            }
            (At::Extension, _) => At::Extension,
            (At::Lf, b'\n') => return Ok(Some((size, i + 1))),
            (At::Lf, _) => return Err(CHUNK_CR_WITHOUT_LF),
        };
    }
    if buf.len() >= max_line {
        return Err(CHUNK_LINE_TOO_LONG);
    }
    Ok(None)
}

/// The value of a hex digit.
fn hex_value(b: u8) -> u64 {
    u64::from(match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    })
}

/// Whether `buf` starts with the CRLF after chunk data (`false`: not
/// arrived yet).
fn data_end(buf: &[u8]) -> Result<bool, Refusal> {
    match (buf.first(), buf.get(1)) {
        (None, _) | (Some(b'\r'), None) => Ok(false),
        (Some(b'\r'), Some(b'\n')) => Ok(true),
        _ => Err(CHUNK_DATA_NOT_ENDED),
    }
}

/// The trailer section at the start of `buf` (at least one field line):
/// its length and the fields kept, or `None` while incomplete.
fn trailer_section(buf: &[u8], max_bytes: usize) -> Result<Option<(usize, HeaderMap)>, Refusal> {
    let window = buf.get(..max_bytes).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let (len, fields) = match httparse::parse_headers(window, &mut slots) {
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(TRAILERS_TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_TRAILERS),
        Err(_) => return Err(BAD_TRAILER),
    };
    let section = window.get(..len).unwrap_or_default();
    if has_bare_lf(section) {
        return Err(CHUNK_BARE_LF);
    }
    let mut kept = HeaderMap::new();
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| BAD_TRAILER)?;
        if !allowed_in_trailers(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(field.value).map_err(|_| BAD_TRAILER)?;
        kept.try_append(name, value)
            .map_err(|_| TOO_MANY_TRAILERS)?;
    }
    Ok(Some((len, kept)))
}

/// Whether an LF in `bytes` is not preceded by a CR.
fn has_bare_lf(bytes: &[u8]) -> bool {
    let before = std::iter::once(&0).chain(bytes);
    before
        .zip(bytes)
        .any(|(&prev, &b)| b == b'\n' && prev != b'\r')
}

/// Whether a field may be a trailer: not one RFC 9110 6.5.1 says a
/// sender may not put in trailers, as a recipient merging trailers into
/// the header section would let it frame, route or control the message:
/// framing (`Content-Length`, `Transfer-Encoding`, `Trailer`), routing
/// (`Host`), the connection's own (`Connection`, `Keep-Alive`, `TE`,
/// `Upgrade`, `Proxy-*`), request modifiers (controls and conditionals,
/// RFC 9110 13, and `Range`), authentication (`Authorization`,
/// `Proxy-Authorization`) and how to process the content
/// (`Content-Encoding`, `Content-Type`, `Content-Range`).
fn allowed_in_trailers(name: &HeaderName) -> bool {
    const FORBIDDEN: [HeaderName; 22] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::HOST,
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::UPGRADE,
        header::CACHE_CONTROL,
        header::EXPECT,
        header::MAX_FORWARDS,
        header::PRAGMA,
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::AUTHORIZATION,
        header::CONTENT_ENCODING,
        header::CONTENT_TYPE,
        header::CONTENT_RANGE,
    ];
    !FORBIDDEN.contains(name) && !name.as_str().starts_with("proxy-")
}

/// How the connection header of an answer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// No `Connection` header (HTTP/1.1's default: kept alive).
    None,
    /// `connection: close`.
    Close,
    /// `connection: keep-alive` (for an HTTP/1.0 client that asked).
    KeepAlive,
    /// `connection: upgrade`, for a `101 Switching Protocols` (its
    /// `Upgrade` header comes with the others).
    Upgrade,
}

/// How an answer's body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body follows: a `HEAD` answer, 1xx, 204, 304. A `Content-Length`
    /// among the headers is kept (the length a `GET` would have had), but
    /// for 1xx and 204, which may not have one (RFC 9110 8.6).
    None,
    /// A body of this many bytes: `content-length` is written from it.
    Length(u64),
    /// A chunked body: `transfer-encoding: chunked`.
    Chunked,
    /// A body that ends when the connection closes (for an HTTP/1.0
    /// client): neither header, and `connection: close` whatever
    /// [`Connection`] says.
    Close,
}

/// `100 Continue`, sent before reading the body of a request that has
/// `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends an answer head to `out`: `HTTP/1.1 {code} {reason}` (the
/// canonical reason, or none), every header of `headers` but
/// `Transfer-Encoding` and `Connection` (and `Content-Length` unless
/// `framing` is `None` and the status may have one), then the framing's
/// header, the connection header, `date` when `headers` has none, and the
/// blank line. Names go as `http` holds them (lowercase).
///
/// `Length(n)` writes its own `content-length: n` in place of any in
/// `headers`, so the header always says what the body will be.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawFields>,
    framing: ResponseFraming,
    connection: Connection,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_length = framing == ResponseFraming::None
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT;
    for (name, value) in headers {
        let skip = *name == header::TRANSFER_ENCODING
            || *name == header::CONNECTION
            || (*name == header::CONTENT_LENGTH && !keep_length);
        if !skip {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(raw) = raw {
        out.extend_from_slice(&raw.lines);
        if let (true, Some(length)) = (keep_length, raw.content_length) {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
    }
    match framing {
        ResponseFraming::None | ResponseFraming::Close => {}
        ResponseFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    let connection = if framing == ResponseFraming::Close {
        Connection::Close
    } else {
        connection
    };
    match connection {
        Connection::None => {}
        Connection::Close => out.extend_from_slice(b"connection: close\r\n"),
        Connection::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Connection::Upgrade => out.extend_from_slice(b"connection: upgrade\r\n"),
    }
    if !headers.contains_key(header::DATE) && !raw.is_some_and(|raw| raw.has_date) {
        write_date(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// How a request goes to a backend: its body's framing there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body: framing headers as they are (a `Content-Length: 0` kept).
    None,
    /// A body of this many bytes.
    Length(u64),
    /// A chunked body.
    Chunked,
}

/// Appends a request head for a backend: `method target HTTP/1.1`, the
/// header fields as [`headers::write_request_fields`] writes them for
/// `outbound` (a `Content-Length` left out when `framing` writes its own),
/// the framing, the blank line.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
    outbound: &Outbound<'_>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    headers::write_request_fields(out, headers, outbound, framing != RequestFraming::None);
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a backend's answer body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFraming {
    /// No body (a `HEAD` request, 1xx, 204, 304, or a length of 0).
    None,
    /// This many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// An answer's end-to-end header lines as they came, passed on as they are
/// (no header map built, filtered and encoded again per answer).
#[derive(Debug, Default)]
pub struct RawFields {
    /// `name: value\r\n` lines: all but the hop-by-hop fields (those
    /// `Connection` names, `Connection`, `Keep-Alive`, `TE`,
    /// `Transfer-Encoding`, `Upgrade`, `Proxy-*`) and `Content-Length`,
    /// which the framing writes again.
    pub lines: Vec<u8>,
    /// The answer's `Content-Length`, for an answer without a body that
    /// keeps it (to a `HEAD`, a `304`).
    pub content_length: Option<u64>,
    /// The answer has a `Date`.
    pub has_date: bool,
}

impl RawFields {
    /// Appends the fields to `headers`, for a server that writes heads of
    /// its own (hyper's, over TLS), with the `Content-Length` of an answer
    /// with `status` and no body that keeps it (to a `HEAD`, a `304`). The
    /// lines are httparse's checked fields, so each makes a valid header;
    /// one that would not is left out.
    pub fn append_to(&self, headers: &mut HeaderMap, status: StatusCode) {
        for line in self.lines.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        let keeps_length = !status.is_informational() && status != StatusCode::NO_CONTENT;
        if let (true, Some(length)) = (keeps_length, self.content_length) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
}

/// A backend's answer head.
#[derive(Debug)]
pub struct AnswerHead {
    pub status: StatusCode,
    /// The header fields of a `1xx` answer (which its caller may change);
    /// empty for the others, whose fields are in `raw`.
    pub headers: HeaderMap,
    /// The header fields of an answer other than `1xx`.
    pub raw: RawFields,
    pub framing: AnswerFraming,
    /// The backend keeps the connection open after this answer.
    pub keep_alive: bool,
}

/// Why a backend's answer head is refused (a 502 for the client).
pub type AnswerRefusal = &'static str;

/// Parses a backend's answer head at the start of `buf`, removing it from
/// `buf` when complete (`Ok(None)`: incomplete). `head_request`: the
/// request was a `HEAD`, so the answer has no body whatever it says.
pub fn parse_answer(
    buf: &mut BytesMut,
    max_bytes: usize,
    head_request: bool,
) -> Result<Option<AnswerHead>, AnswerRefusal> {
    let window = buf.get(..max_bytes).unwrap_or(buf.as_ref());
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut answer = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut answer,
        window,
        &mut stack,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err("the answer head is too large");
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("the answer is not HTTP/1.x"),
    };
    let version = match answer.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = StatusCode::from_u16(answer.code.unwrap_or(0))
        .map_err(|_| "the answer's status is not valid")?;
    let fields = &*answer.headers;
    let survey = Survey::of(fields);
    let connection = &survey.connection;
    let keep_alive = if version == Version::HTTP_11 {
        !connection.close
    } else {
        connection.keep_alive && !connection.close
    };
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        AnswerFraming::None
    } else if survey.has(Field::TransferEncoding) {
        let chunked_last = field_values(fields, Field::TransferEncoding)
            .flat_map(elements)
            .filter(|c| !c.is_empty())
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        if chunked_last {
            AnswerFraming::Chunked
        } else {
            AnswerFraming::Close
        }
    } else {
        match survey.content_length {
            Ok(Some(0)) => AnswerFraming::None,
            Ok(Some(length)) => AnswerFraming::Length(length),
            Ok(None) => AnswerFraming::Close,
            Err(_) => return Err("the answer's Content-Length is not valid"),
        }
    };
    if !status.is_informational() {
        let raw = raw_fields(fields, &survey, bodiless);
        buf.advance(len);
        return Ok(Some(AnswerHead {
            status,
            headers: HeaderMap::new(),
            raw,
            framing,
            keep_alive: keep_alive && framing != AnswerFraming::Close,
        }));
    }
    let ranges = fields
        .iter()
        .map(|field| {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| "a header name of the answer is not valid")?;
            Ok((name, range_in(window, field.value)))
        })
        .collect::<Result<Vec<_>, AnswerRefusal>>()?;
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(ranges.len());
    for (name, range) in ranges {
        let value = share(&head, range)
            .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
            .ok_or("a header value of the answer is not valid")?;
        headers.append(name, value);
    }
    Ok(Some(AnswerHead {
        status,
        headers,
        raw: RawFields::default(),
        framing,
        keep_alive: keep_alive && framing != AnswerFraming::Close,
    }))
}

/// The end-to-end lines of an answer's `fields` (httparse checked their
/// names are tokens and their values free of control characters).
fn raw_fields(fields: &[httparse::Header<'_>], survey: &Survey, bodiless: bool) -> RawFields {
    let listed: Vec<&[u8]> = if survey.connection.names_fields {
        field_values(fields, Field::Connection)
            .flat_map(elements)
            .filter(|name| !name.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let mut raw = RawFields {
        lines: Vec::with_capacity(
            fields
                .iter()
                .map(|f| f.name.len() + f.value.len() + 4)
                .sum(),
        ),
        ..RawFields::default()
    };
    for field in fields {
        let name = field.name.as_bytes();
        let kind = Field::of(name);
        let hop_by_hop =
            kind.is_hop_by_hop() || listed.iter().any(|l| l.eq_ignore_ascii_case(name));
        if hop_by_hop || kind == Field::ContentLength {
            continue;
        }
        raw.has_date |= kind == Field::Date;
        raw.lines.extend_from_slice(name);
        raw.lines.extend_from_slice(b": ");
        raw.lines.extend_from_slice(field.value);
        raw.lines.extend_from_slice(b"\r\n");
    }
    if bodiless {
        raw.content_length = survey.content_length.clone().ok().flatten();
    }
    raw
}

/// Appends one chunk: `{size:x}\r\n{data}\r\n`; nothing for empty data
/// (an empty chunk would end the body).
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(out, data.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a chunked body: `0\r\n`, the trailer fields if any,
/// and the blank line.
pub fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(slot) = digits.get_mut(at) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// Appends `n` in lowercase hex.
fn push_hex(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n as u64;
    loop {
        at -= 1;
        if let (Some(slot), Some(&digit)) = (digits.get_mut(at), HEX.get((n % 16) as usize)) {
            *slot = digit;
        }
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// The first second `httpdate` cannot write (year 10000).
const DATE_END: u64 = 253_402_300_800;

/// Appends `date: {IMF-fixdate}\r\n` for now, formatted once a second per
/// thread. Nothing when the clock is before 1970 or after 9999, which
/// `httpdate` cannot write (RFC 9110 6.6.1: a server without a usable
/// clock sends none).
fn write_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        return;
    };
    let second = since.as_secs();
    if second >= DATE_END {
        return;
    }
    DATE.with(|cached| {
        let (at, mut date) = cached.get();
        if at != second {
            let text = httpdate::fmt_http_date(now);
            let Ok(fresh) = <[u8; 29]>::try_from(text.as_bytes()) else {
                push_field(out, b"date", text.as_bytes());
                return;
            };
            date = fresh;
            cached.set((second, date));
        }
        push_field(out, b"date", &date);
    });
}

const fn refusal(status: StatusCode, text: &'static str) -> Refusal {
    Refusal { status, text }
}

const fn bad(text: &'static str) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, text)
}

const HEAD_TOO_LARGE: Refusal = refusal(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "request header fields too large: the request head is too large\n",
);
const TOO_MANY_HEADERS: Refusal = refusal(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "request header fields too large: too many header fields\n",
);
const TARGET_TOO_LONG: Refusal = refusal(
    StatusCode::URI_TOO_LONG,
    "uri too long: the request target is over 65534 bytes\n",
);
const VERSION_NOT_SUPPORTED: Refusal = refusal(
    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    "http version not supported: only HTTP/1.0 and HTTP/1.1\n",
);
const CONNECT: Refusal = refusal(
    StatusCode::NOT_IMPLEMENTED,
    "not implemented: CONNECT (the balancer does not tunnel)\n",
);
const TE_OTHER_CODING: Refusal = refusal(
    StatusCode::NOT_IMPLEMENTED,
    "not implemented: only the chunked transfer coding is supported\n",
);
const BAD_REQUEST_LINE: Refusal = bad("bad request: malformed request line\n");
const BAD_VERSION: Refusal = bad("bad request: malformed HTTP version\n");
const BAD_NAME: Refusal = bad("bad request: malformed header field name\n");
const BAD_VALUE: Refusal = bad("bad request: malformed header field value\n");
const BAD_LINE_END: Refusal = bad("bad request: malformed line end\n");
const BAD_METHOD: Refusal = bad("bad request: malformed method\n");
const BAD_TARGET: Refusal = bad("bad request: malformed request target\n");
const STAR_NOT_OPTIONS: Refusal = bad("bad request: a * target is only for OPTIONS\n");
const AUTHORITY_FORM: Refusal =
    bad("bad request: the request target is not origin-form or absolute-form\n");
const TE_IN_HTTP_10: Refusal = bad("bad request: Transfer-Encoding in an HTTP/1.0 request\n");
const TE_AND_CL: Refusal = bad("bad request: both Transfer-Encoding and Content-Length\n");
const TE_EMPTY: Refusal = bad("bad request: an empty Transfer-Encoding\n");
const CHUNKED_TWICE: Refusal = bad("bad request: chunked applied more than once\n");
const TE_NOT_CHUNKED_LAST: Refusal = bad("bad request: the last transfer coding is not chunked\n");
const CL_NOT_A_NUMBER: Refusal = bad("bad request: a Content-Length value is not a number\n");
const CL_TOO_LARGE: Refusal = bad("bad request: a Content-Length value is too large\n");
const CL_DIFFERENT: Refusal = bad("bad request: two different Content-Length values\n");
const CHUNK_SIZE_NOT_HEX: Refusal = bad("bad request: a chunk size is not hexadecimal\n");
const CHUNK_SIZE_TOO_LONG: Refusal = bad("bad request: a chunk size over 16 hex digits\n");
const CHUNK_LINE_TOO_LONG: Refusal = bad("bad request: a chunk size line is too long\n");
const CHUNK_BAD_EXTENSION: Refusal = bad("bad request: a malformed chunk extension\n");
const CHUNK_EXTENSION_CONTROL: Refusal =
    bad("bad request: a control character in a chunk extension\n");
const CHUNK_BARE_LF: Refusal = bad("bad request: a bare LF in chunked framing\n");
const CHUNK_CR_WITHOUT_LF: Refusal = bad("bad request: a CR without LF in chunked framing\n");
const CHUNK_DATA_NOT_ENDED: Refusal = bad("bad request: chunk data not followed by CRLF\n");
const BAD_TRAILER: Refusal = bad("bad request: a malformed trailer field\n");
const TRAILERS_TOO_LARGE: Refusal = bad("bad request: the trailer section is too large\n");
const TOO_MANY_TRAILERS: Refusal = bad("bad request: too many trailer fields\n");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_known_field_is_told_by_its_name_in_any_case_and_nothing_else_is() {
        let known = [
            ("te", Field::Te),
            ("host", Field::Host),
            ("date", Field::Date),
            ("expect", Field::Expect),
            ("upgrade", Field::Upgrade),
            ("forwarded", Field::Forwarded),
            ("connection", Field::Connection),
            ("keep-alive", Field::KeepAlive),
            ("content-length", Field::ContentLength),
            ("x-forwarded-for", Field::XForwardedFor),
            ("transfer-encoding", Field::TransferEncoding),
            ("x-forwarded-proto", Field::XForwardedProto),
            ("proxy-connection", Field::Proxy),
            ("Proxy-Authorization", Field::Proxy),
        ];
        for (name, field) in known {
            assert_eq!(Field::of(name.as_bytes()), field, "{name}");
            assert_eq!(Field::of(name.to_uppercase().as_bytes()), field, "{name}");
            // Any one byte changed (to another token byte) is another field.
            for at in 0..name.len() {
                for other in [b'_', b'~', b'^', b'0', b'a', b'z', b'-', b'.'] {
                    let mut changed = name.as_bytes().to_vec();
                    if changed[at].eq_ignore_ascii_case(&other) {
                        continue;
                    }
                    changed[at] = other;
                    let kind = Field::of(&changed);
                    let still_proxy = field == Field::Proxy && at >= 6;
                    assert!(
                        kind == Field::Other || still_proxy,
                        "{:?} taken for {kind:?}",
                        String::from_utf8_lossy(&changed)
                    );
                }
            }
        }
        for other in [
            "",
            "t",
            "hosts",
            "content-type",
            "proxy",
            "x-forwarded-host",
            "Accept",
        ] {
            assert_eq!(Field::of(other.as_bytes()), Field::Other, "{other}");
        }
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 8192,
        max_headers: 16,
    };

    fn parse(text: &[u8]) -> Result<Option<RequestHead>, Refusal> {
        parse_request(&mut BytesMut::from(text), &LIMITS)
    }

    fn parse_complete(text: &[u8]) -> RequestHead {
        match parse(text) {
            Ok(Some(head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    /// What a head comes to: method, target, version, framing,
    /// keep-alive, expect-continue, upgrade.
    type Expected = (
        &'static str,
        &'static str,
        Version,
        BodyFraming,
        bool,
        bool,
        bool,
    );

    fn summary(head: &RequestHead) -> (String, String, Version, BodyFraming, bool, bool, bool) {
        (
            head.method.to_string(),
            head.uri.to_string(),
            head.version,
            head.framing,
            head.keep_alive,
            head.expect_continue,
            head.upgrade,
        )
    }

    const V10: Version = Version::HTTP_10;
    const V11: Version = Version::HTTP_11;
    use BodyFraming::{Chunked, Length, None as NoBody};

    /// Heads that are accepted, and what they come to.
    fn accepted() -> Vec<(&'static [u8], Expected)> {
        vec![
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                ("GET", "/", V11, NoBody, true, false, false),
            ),
            (
                b"GET /p?q=1 HTTP/1.0\r\n\r\n",
                ("GET", "/p?q=1", V10, NoBody, false, false, false),
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                ("GET", "/", V10, NoBody, true, false, false),
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                ("GET", "/", V10, NoBody, false, false, false),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n",
                ("GET", "/", V11, NoBody, false, false, false),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x, close\r\n\r\n",
                ("GET", "/", V11, NoBody, false, false, false),
            ),
            (
                b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                ("GET", "http://example.com/x", V11, NoBody, true, false, false),
            ),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                ("OPTIONS", "*", V11, NoBody, true, false, false),
            ),
            (
                b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n",
                ("PURGE", "/x", V11, NoBody, true, false, false),
            ),
            (
                b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                ("GET", "/", V11, NoBody, true, false, false),
            ),
            (
                b"GET / HTTP/1.1\nHost: a\n\n",
                ("GET", "/", V11, NoBody, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                ("POST", "/", V11, Length(5), true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                ("POST", "/", V11, NoBody, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                ("POST", "/", V11, Length(5), true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\n",
                ("POST", "/", V11, Length(5), true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n",
                ("POST", "/", V11, Length(9_999_999_999_999_999_999), true, false, false),
            ),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
                ("POST", "/", V10, Length(3), false, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                ("POST", "/", V11, Chunked, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                ("POST", "/", V11, Chunked, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked \r\n\r\n",
                ("POST", "/", V11, Chunked, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n",
                ("POST", "/", V11, Chunked, true, false, false),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n",
                ("POST", "/", V11, Length(5), true, true, false),
            ),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
                ("POST", "/", V10, Length(5), false, false, false),
            ),
            (
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
                ("GET", "/ws", V11, NoBody, true, false, true),
            ),
            (
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
                ("GET", "/ws", V11, NoBody, true, false, false),
            ),
            (
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",
                ("GET", "/ws", V11, NoBody, true, false, false),
            ),
            (
                b"GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                ("GET", "/ws", V10, NoBody, false, false, false),
            ),
        ]
    }

    /// Heads that are refused, and why.
    fn refused() -> Vec<(&'static [u8], Refusal)> {
        vec![
            // httparse's refusals.
            (b"GET  / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", BAD_NAME),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", BAD_NAME),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n", BAD_NAME),
            (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", BAD_VALUE),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", BAD_VALUE),
            (b"GET / HTTP/1.1\rX\r\n\r\n", BAD_LINE_END),
            (b"G\x01T / HTTP/1.1\r\n\r\n", BAD_REQUEST_LINE),
            (b"GET /\r\n\r\n", BAD_REQUEST_LINE),
            // Versions.
            (b"GET / HTTP/2.0\r\n\r\n", VERSION_NOT_SUPPORTED),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", VERSION_NOT_SUPPORTED),
            (b"GET / HTTP/0.9\r\n\r\n", VERSION_NOT_SUPPORTED),
            (b"GET / HTTP/1.2\r\n\r\n", VERSION_NOT_SUPPORTED),
            (b"GET / HTTP/2\r\n\r\n", BAD_VERSION),
            (b"GET / http/1.1\r\n\r\n", BAD_VERSION),
            (b"GET / HTTP/1.1 \r\n\r\n", BAD_LINE_END),
            // Methods and targets.
            (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", CONNECT),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", STAR_NOT_OPTIONS),
            (b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", AUTHORITY_FORM),
            (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", AUTHORITY_FORM),
            (b"GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", BAD_TARGET),
            (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", BAD_TARGET),
            (b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n", BAD_TARGET),
            // Transfer-Encoding and Content-Length together, both orders.
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                TE_AND_CL,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                TE_AND_CL,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
                TE_AND_CL,
            ),
            // Transfer-Encoding.
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TE_IN_HTTP_10),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                CHUNKED_TWICE,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                CHUNKED_TWICE,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                TE_OTHER_CODING,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                TE_OTHER_CODING,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                TE_NOT_CHUNKED_LAST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
                TE_NOT_CHUNKED_LAST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                TE_NOT_CHUNKED_LAST,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
                TE_NOT_CHUNKED_LAST,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", TE_EMPTY),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", TE_EMPTY),
            // Content-Length.
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", CL_DIFFERENT),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                CL_DIFFERENT,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", CL_NOT_A_NUMBER),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", CL_NOT_A_NUMBER),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa5\r\n\r\n",
                CL_NOT_A_NUMBER,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
                CL_TOO_LARGE,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n\r\n",
                CL_TOO_LARGE,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                CL_TOO_LARGE,
            ),
        ]
    }

    #[test]
    fn accepted_heads() {
        for (text, expected) in accepted() {
            let head = parse_complete(text);
            let (method, target, version, framing, keep_alive, expect, upgrade) = expected;
            assert_eq!(
                summary(&head),
                (
                    method.to_owned(),
                    target.to_owned(),
                    version,
                    framing,
                    keep_alive,
                    expect,
                    upgrade
                ),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn refused_heads() {
        for (text, expected) in refused() {
            let got = parse(text);
            assert_eq!(
                got.as_ref().err(),
                Some(&expected),
                "{:?}: {got:?}",
                String::from_utf8_lossy(text)
            );
            assert!(expected.text.ends_with('\n') && expected.text.lines().count() == 1);
        }
    }

    /// Every prefix of a valid head is incomplete, and the head comes out
    /// the same whichever one it grew from; a refused head's prefixes are
    /// incomplete or refused the same way.
    #[test]
    fn every_split_point() {
        for (text, expected) in accepted() {
            for end in 0..text.len() {
                let prefix = text.get(..end).unwrap();
                assert!(
                    matches!(parse(prefix), Ok(None)),
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
            let mut buf = BytesMut::new();
            let mut got = None;
            for &byte in text {
                assert!(got.is_none());
                buf.extend_from_slice(&[byte]);
                got = parse_request(&mut buf, &LIMITS).unwrap();
            }
            let head = got.unwrap();
            assert_eq!(summary(&head).3, expected.3);
            assert_eq!(summary(&head), summary(&parse_complete(text)));
            assert!(buf.is_empty());
        }
        for (text, expected) in refused() {
            for end in 0..text.len() {
                let prefix = text.get(..end).unwrap();
                match parse(prefix) {
                    Ok(None) => {}
                    Err(refusal) if refusal == expected => {}
                    other => panic!("{:?}: {other:?}", String::from_utf8_lossy(prefix)),
                }
            }
        }
    }

    #[test]
    fn headers_as_received_and_shared() {
        let text: &[u8] =
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-Twice: 1\r\nAccept: */*\r\nx-twice: 2\r\nEmpty:\r\n\r\nBODY";
        let mut buf = BytesMut::from(text);
        let start = buf.as_ptr().addr();
        let memory = start..start + buf.len();
        let head = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(&buf[..], b"BODY");
        let fields: Vec<(&str, &[u8])> = head
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        assert_eq!(
            fields,
            [
                ("host", &b"a"[..]),
                ("x-twice", b"1"),
                ("x-twice", b"2"),
                ("accept", b"*/*"),
                ("empty", b""),
            ]
        );
        for value in head.headers.values().filter(|v| !v.is_empty()) {
            assert!(
                memory.contains(&value.as_bytes().as_ptr().addr()),
                "{value:?} was copied"
            );
        }
    }

    #[test]
    fn pipelined_heads_one_at_a_time() {
        let first: &[u8] = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let second: &[u8] = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        let mut buf = BytesMut::from(first);
        buf.extend_from_slice(second);
        let head = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(head.uri, "/1");
        assert_eq!(&buf[..], second);
        let head = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!((head.uri.path(), head.framing), ("/2", Length(2)));
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn head_size_limit() {
        let head: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX: 123456789\r\n\r\n";
        let exact = HeadLimits {
            max_bytes: head.len(),
            max_headers: 16,
        };
        let mut buf = BytesMut::from(head);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert!(parse_request(&mut buf, &exact).unwrap().is_some());
        let smaller = HeadLimits {
            max_bytes: head.len() - 1,
            max_headers: 16,
        };
        assert_eq!(
            parse_request(&mut BytesMut::from(head), &smaller).unwrap_err(),
            HEAD_TOO_LARGE
        );
        // Incomplete: read more until the limit, then 431.
        let partial = head.get(..head.len() - 2).unwrap();
        assert!(
            parse_request(&mut BytesMut::from(partial), &exact)
                .unwrap()
                .is_none()
        );
        let at_limit = head.get(..head.len() - 1).unwrap();
        assert_eq!(
            parse_request(&mut BytesMut::from(at_limit), &smaller).unwrap_err(),
            HEAD_TOO_LARGE
        );
        // Endless empty lines before a request line count.
        let blank = [b'\n'; 100];
        let small = HeadLimits {
            max_bytes: 100,
            max_headers: 16,
        };
        assert_eq!(
            parse_request(&mut BytesMut::from(&blank[..]), &small).unwrap_err(),
            HEAD_TOO_LARGE
        );
    }

    #[test]
    fn header_count_limit() {
        let three: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n";
        let limits = |max_headers| HeadLimits {
            max_bytes: 8192,
            max_headers,
        };
        assert!(
            parse_request(&mut BytesMut::from(three), &limits(3))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_request(&mut BytesMut::from(three), &limits(2)).unwrap_err(),
            TOO_MANY_HEADERS
        );
        assert_eq!(
            parse_request(&mut BytesMut::from(three), &limits(0)).unwrap_err(),
            TOO_MANY_HEADERS
        );
        // Already too many in an incomplete head.
        let partial = three.get(..three.len() - 2).unwrap();
        assert_eq!(
            parse_request(&mut BytesMut::from(partial), &limits(2)).unwrap_err(),
            TOO_MANY_HEADERS
        );
        // More slots than a head could fill, from the heap.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..300 {
            many.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let head = parse_request(&mut BytesMut::from(&many[..]), &limits(usize::MAX))
            .unwrap()
            .unwrap();
        assert_eq!(head.headers.len(), 300);
        assert_eq!(
            parse_request(&mut BytesMut::from(&many[..]), &limits(299)).unwrap_err(),
            TOO_MANY_HEADERS
        );
    }

    #[test]
    fn target_length_limit() {
        let limits = HeadLimits {
            max_bytes: 1 << 20,
            max_headers: 16,
        };
        let head = |len: usize| {
            let mut text = b"GET /".to_vec();
            text.resize(len + 4, b'a');
            text.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            parse_request(&mut BytesMut::from(&text[..]), &limits)
        };
        assert_eq!(head(65_534).unwrap().unwrap().uri.path().len(), 65_534);
        assert_eq!(head(65_535).unwrap_err(), TARGET_TOO_LONG);
    }

    // Chunked bodies.

    /// Feeds `pieces` one after the other, decoding all it can after each:
    /// the data, the trailers, how many `End`s, and what `buf` holds after
    /// the end (the pieces after it appended).
    fn decode_pieces(
        decoder: &mut ChunkedDecoder,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize, BytesMut), Refusal> {
        let (mut data, mut trailers, mut ends) = (Vec::new(), None, 0);
        let mut buf = BytesMut::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while ends == 0 {
                match decoder.decode(&mut buf)? {
                    None => break,
                    Some(Chunk::Data(bytes)) => {
                        assert!(!bytes.is_empty());
                        data.extend_from_slice(&bytes);
                    }
                    Some(Chunk::Trailers(fields)) => {
                        assert!(trailers.is_none() && !fields.is_empty());
                        trailers = Some(fields);
                    }
                    Some(Chunk::End) => ends += 1,
                }
            }
        }
        Ok((data, trailers, ends, buf))
    }

    fn decoder() -> ChunkedDecoder {
        ChunkedDecoder::new(64, 1024)
    }

    fn decode_whole(body: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, usize, BytesMut), Refusal> {
        decode_pieces(&mut decoder(), &[body])
    }

    #[test]
    fn chunked_with_extensions_and_trailers_at_every_split() {
        let body: &[u8] = b"5;name=value\r\nhello\r\n6 ; a=\"b c\";x\t\r\n world\r\n\
            A\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nX-Sum: 2\r\nContent-Length: 9\r\n\r\nNEXT";
        let (data, trailers, ends, rest) = decode_whole(body).unwrap();
        assert_eq!(data, b"hello world0123456789");
        let trailers = trailers.unwrap();
        let sums: Vec<_> = trailers.get_all("x-sum").iter().collect();
        assert_eq!(sums, ["1", "2"]);
        assert!(!trailers.contains_key(header::CONTENT_LENGTH));
        assert_eq!((ends, &rest[..]), (1, &b"NEXT"[..]));
        for cut in 0..=body.len() {
            let (a, b) = body.split_at(cut);
            let (d, t, e, r) = decode_pieces(&mut decoder(), &[a, b]).unwrap();
            assert_eq!(
                (d, t.as_ref(), e, &r[..]),
                (data.clone(), Some(&trailers), 1, &b"NEXT"[..])
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let (d, t, e, r) = decode_pieces(&mut decoder(), &bytes).unwrap();
        assert_eq!(
            (d, t.as_ref(), e, &r[..]),
            (data, Some(&trailers), 1, &b"NEXT"[..])
        );
    }

    #[test]
    fn chunked_without_trailers_and_end_again() {
        let mut decoder = decoder();
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nGET"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"abc")))
        );
        assert!(!decoder.is_done());
        // Nothing more until the bytes come.
        let mut empty = BytesMut::new();
        assert_eq!(decoder.decode(&mut empty).unwrap(), None);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&b"\r"[..])).unwrap(),
            None
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Chunk::End));
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"GET");
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Chunk::End));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunk_data_shared_out_of_the_buffer() {
        let mut buf = BytesMut::from(&b"4\r\ndata\r\n"[..]);
        let start = buf.as_ptr().addr();
        let Some(Chunk::Data(data)) = decoder().decode(&mut buf).unwrap() else {
            panic!("no data");
        };
        assert_eq!(data.as_ptr().addr(), start + 3);
    }

    #[test]
    fn trailers_that_may_not_be_trailers_are_dropped() {
        let body: &[u8] = b"0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nHost: b\r\n\
            Connection: close\r\nProxy-Authorization: x\r\nAuthorization: y\r\nContent-Type: a/b\r\n\r\n";
        let (data, trailers, ends, rest) = decode_whole(body).unwrap();
        assert!(data.is_empty() && trailers.is_none() && rest.is_empty());
        assert_eq!(ends, 1);
        let body: &[u8] = b"0\r\nHost: b\r\nServer-Timing: db;dur=5\r\n\r\n";
        let trailers = decode_whole(body).unwrap().1.unwrap();
        let names: Vec<_> = trailers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["server-timing"]);
    }

    #[test]
    fn bad_chunked_framing() {
        let long_extension = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(64));
        let big_trailer = format!("0\r\nX: {}\r\n\r\n", "y".repeat(1024));
        let many_trailers = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(MAX_TRAILER_FIELDS + 1));
        let cases: Vec<(&[u8], Refusal)> = vec![
            (b"g\r\n", CHUNK_SIZE_NOT_HEX),
            (b"\r\n", CHUNK_SIZE_NOT_HEX),
            (b"0x5\r\nhello\r\n0\r\n\r\n", CHUNK_SIZE_NOT_HEX),
            (b"-5\r\n", CHUNK_SIZE_NOT_HEX),
            (b"+5\r\n", CHUNK_SIZE_NOT_HEX),
            (b" 5\r\n", CHUNK_SIZE_NOT_HEX),
            (b";x\r\n", CHUNK_SIZE_NOT_HEX),
            (b"5x\r\n", CHUNK_SIZE_NOT_HEX),
            (b"00000000000000001\r\n", CHUNK_SIZE_TOO_LONG),
            (b"10000000000000000\r\n", CHUNK_SIZE_TOO_LONG),
            (long_extension.as_bytes(), CHUNK_LINE_TOO_LONG),
            (b"5 x\r\n", CHUNK_BAD_EXTENSION),
            (b"5;a\x00b\r\n", CHUNK_EXTENSION_CONTROL),
            (b"5;a\x7fb\r\n", CHUNK_EXTENSION_CONTROL),
            (b"5;a\rb\r\n", CHUNK_CR_WITHOUT_LF),
            (b"5\nhello\r\n", CHUNK_BARE_LF),
            (b"5;a\nhello\r\n", CHUNK_BARE_LF),
            (b"5\r\rhello\r\n", CHUNK_CR_WITHOUT_LF),
            (b"5\r\nhelloo\r\n0\r\n\r\n", CHUNK_DATA_NOT_ENDED),
            (b"5\r\nhello\n0\r\n\r\n", CHUNK_DATA_NOT_ENDED),
            (b"5\r\nhello\r0\r\n\r\n", CHUNK_DATA_NOT_ENDED),
            (b"0\r\n\n", CHUNK_BARE_LF),
            (b"0\n\r\n", CHUNK_BARE_LF),
            (b"0\r\n\rX", CHUNK_CR_WITHOUT_LF),
            (b"0\r\nX: 1\n\r\n", CHUNK_BARE_LF),
            (b"0\r\nX: 1\r\n\n", CHUNK_BARE_LF),
            (b"0\r\nX: 1\r\n folded\r\n\r\n", BAD_TRAILER),
            (b"0\r\nX : 1\r\n\r\n", BAD_TRAILER),
            (b"0\r\nX: \x01\r\n\r\n", BAD_TRAILER),
            (big_trailer.as_bytes(), TRAILERS_TOO_LARGE),
            (many_trailers.as_bytes(), TOO_MANY_TRAILERS),
        ];
        for (body, expected) in cases {
            let got = decode_whole(body);
            let shown = String::from_utf8_lossy(body);
            assert_eq!(got.as_ref().err(), Some(&expected), "{shown:?}: {got:?}");
            assert_eq!(expected.status, StatusCode::BAD_REQUEST);
            // Byte by byte, the same refusal.
            let bytes: Vec<&[u8]> = body.chunks(1).collect();
            let got = decode_pieces(&mut decoder(), &bytes);
            assert_eq!(
                got.as_ref().err(),
                Some(&expected),
                "{shown:?} byte by byte: {got:?}"
            );
        }
    }

    #[test]
    fn size_line_limit_is_the_whole_line() {
        // `5;e` and CRLF is 5 bytes.
        let body: &[u8] = b"5;e\r\nhello\r\n0\r\n\r\n";
        assert!(decode_pieces(&mut ChunkedDecoder::new(5, 16), &[body]).is_ok());
        assert_eq!(
            decode_pieces(&mut ChunkedDecoder::new(4, 16), &[body]).unwrap_err(),
            CHUNK_LINE_TOO_LONG
        );
        assert_eq!(
            decode_pieces(&mut ChunkedDecoder::new(4, 16), &[b"5;e\r"]).unwrap_err(),
            CHUNK_LINE_TOO_LONG
        );
        // Sixteen hex digits is the most, and does not overflow.
        let max: &[u8] = b"ffffffffffffffff\r\nab";
        let mut decoder = decoder();
        let mut buf = BytesMut::from(max);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(decoder.state, ChunkedState::Data(u64::MAX - 2));
    }

    /// Request heads the head fuzzing starts from.
    const HEAD_SEEDS: &[&[u8]] = &[
        b"GET /a?b=c HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET http://example.test/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ];

    /// What a parse decided, comparable: the head's meaning, or the
    /// refusal's status and text, or `None` (read more).
    type Decision =
        Result<Option<(String, String, Version, BodyFraming, bool, usize)>, (u16, &'static str)>;

    fn decide(bytes: &[u8], limits: &HeadLimits) -> (Decision, usize) {
        let mut buf = BytesMut::from(bytes);
        let decision = match parse_request(&mut buf, limits) {
            Ok(Some(head)) => Ok(Some((
                head.method.to_string(),
                head.uri.to_string(),
                head.version,
                head.framing,
                head.keep_alive,
                head.headers.len(),
            ))),
            Ok(None) => Ok(None),
            Err(refusal) => Err((refusal.status.as_u16(), refusal.text)),
        };
        (decision, buf.len())
    }

    proptest! {
        /// A request head with random byte edits, followed by a second
        /// request: whatever the parser decides (a head, a refusal) it
        /// decides the same on the whole buffer as on the bytes arriving
        /// one at a time (how TCP cuts a request never changes what it
        /// means), never panics, and a head it reads ends at the end of a
        /// head: the second request is never taken into the first.
        #[test]
        fn a_mutated_head_is_read_the_same_whole_or_byte_by_byte(
            seed in 0..HEAD_SEEDS.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
        ) {
            let mut bytes = HEAD_SEEDS[seed].to_vec();
            for (at, byte, op) in edits {
                let i = at % (bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            let first_len = bytes.len();
            bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n");
            let limits = HeadLimits { max_bytes: 4096, max_headers: 64 };
            let (whole, rest) = decide(&bytes, &limits);
            let mut piecewise = None;
            for end in 0..=bytes.len() {
                let (decision, left) = decide(&bytes[..end], &limits);
                if decision != Ok(None) {
                    piecewise = Some((decision, left + (bytes.len() - end)));
                    break;
                }
            }
            prop_assert_eq!(piecewise, Some((whole.clone(), rest)), "{:?}", String::from_utf8_lossy(&bytes));
            if let Ok(Some(_)) = whole {
                let taken = &bytes[..bytes.len() - rest];
                prop_assert!(taken.ends_with(b"\n\n") || taken.ends_with(b"\n\r\n"), "{:?}", String::from_utf8_lossy(taken));
                prop_assert!(taken.len() <= first_len + 34, "took more than two heads");
            }
        }

        /// Random data in random chunks, with or without trailers and
        /// something after the body, cut anywhere and fed piece by piece,
        /// decodes to the same data, one `End`, and leaves exactly what
        /// followed the body.
        #[test]
        fn chunked_round_trip(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 1..10),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            with_trailers in any::<bool>(),
            after in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut stream = Vec::new();
            let mut rest = &data[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                encode_chunk(&mut stream, chunk);
                rest = tail;
            }
            let mut fields = HeaderMap::new();
            fields.append("x-checksum", HeaderValue::from_static("abc"));
            fields.append("x-checksum", HeaderValue::from_static("def"));
            encode_last_chunk(&mut stream, with_trailers.then_some(&fields));
            stream.extend_from_slice(&after);

            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for point in points {
                pieces.push(&stream[from..point]);
                from = point;
            }
            pieces.push(&stream[from..]);

            let (decoded, trailers, ends, left) =
                decode_pieces(&mut ChunkedDecoder::new(32, 1024), &pieces).unwrap();
            prop_assert_eq!(decoded, data);
            prop_assert_eq!(trailers, with_trailers.then_some(fields));
            prop_assert_eq!(ends, 1);
            prop_assert_eq!(&left[..], &after[..]);
        }
    }

    // Answers.

    fn date_fixed() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        headers
    }

    fn encoded(
        status: u16,
        headers: &HeaderMap,
        framing: ResponseFraming,
        connection: Connection,
    ) -> String {
        let mut out = Vec::new();
        encode_response_head(
            &mut out,
            StatusCode::from_u16(status).unwrap(),
            headers,
            None,
            framing,
            connection,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn answer_with_a_length() {
        let mut headers = date_fixed();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(
            encoded(200, &headers, ResponseFraming::Length(12), Connection::None),
            "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nx-a: 1\r\nx-a: 2\r\n\
             content-length: 12\r\n\r\n"
        );
        assert_eq!(
            encoded(
                200,
                &date_fixed(),
                ResponseFraming::Length(0),
                Connection::KeepAlive
            ),
            "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 0\r\n\
             connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn answer_chunked_and_to_the_close() {
        let mut headers = date_fixed();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            encoded(404, &headers, ResponseFraming::Chunked, Connection::Close),
            "HTTP/1.1 404 Not Found\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             content-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        // To the close: `connection: close` whatever was asked.
        assert_eq!(
            encoded(200, &headers, ResponseFraming::Close, Connection::KeepAlive),
            "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             content-type: text/plain\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn answer_without_a_body() {
        let mut headers = date_fixed();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        // HEAD and 304: the length a GET would have had is kept.
        let kept = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(
            encoded(200, &headers, ResponseFraming::None, Connection::None),
            format!("HTTP/1.1 200 OK\r\n{kept}")
        );
        assert_eq!(
            encoded(304, &headers, ResponseFraming::None, Connection::None),
            format!("HTTP/1.1 304 Not Modified\r\n{kept}")
        );
        // 204 and 1xx may not have one.
        assert_eq!(
            encoded(204, &headers, ResponseFraming::None, Connection::None),
            "HTTP/1.1 204 No Content\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        let mut upgrade = date_fixed();
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert_eq!(
            encoded(101, &upgrade, ResponseFraming::None, Connection::Upgrade),
            "HTTP/1.1 101 Switching Protocols\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             upgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        // A status without a canonical reason keeps the space.
        assert_eq!(
            encoded(599, &date_fixed(), ResponseFraming::None, Connection::None),
            "HTTP/1.1 599 \r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
    }

    #[test]
    fn date_added_only_when_absent() {
        let text = encoded(
            200,
            &HeaderMap::new(),
            ResponseFraming::Length(0),
            Connection::None,
        );
        let date = text
            .strip_prefix("HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: ")
            .and_then(|rest| rest.strip_suffix("\r\n\r\n"))
            .unwrap();
        assert_eq!(date.len(), 29);
        let when = httpdate::parse_http_date(date).unwrap();
        let off = SystemTime::now().duration_since(when).unwrap();
        assert!(off.as_secs() < 5, "{date}");
        // The cached date is the same within the second (or the next one).
        let again = encoded(
            200,
            &HeaderMap::new(),
            ResponseFraming::Length(0),
            Connection::None,
        );
        assert_eq!(again.len(), text.len());
        assert_eq!(
            encoded(200, &date_fixed(), ResponseFraming::None, Connection::None)
                .matches("date:")
                .count(),
            1
        );
    }

    #[test]
    fn chunks_and_last_chunk() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"");
        assert!(out.is_empty());
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, &[b'x'; 0x1a]);
        encode_last_chunk(&mut out, None);
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 0x1a]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("7"));
        let mut out = Vec::new();
        encode_last_chunk(&mut out, Some(&trailers));
        assert_eq!(out, b"0\r\nx-sum: 7\r\n\r\n");
        let mut out = Vec::new();
        encode_last_chunk(&mut out, Some(&HeaderMap::new()));
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn decimal_and_hex_writers() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for n in [0usize, 9, 15, 16, 0xabc, usize::MAX] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    /// `raw` parsed as a backend's answer: its status, framing and
    /// keep-alive, or the refusal; and what `buf` holds after it.
    fn answer(
        raw: &[u8],
        head_request: bool,
    ) -> Result<(u16, AnswerFraming, bool, Vec<u8>), &'static str> {
        let mut buf = BytesMut::from(raw);
        let head = parse_answer(&mut buf, 1024, head_request)?.ok_or("incomplete")?;
        Ok((
            head.status.as_u16(),
            head.framing,
            head.keep_alive,
            buf.to_vec(),
        ))
    }

    #[test]
    fn answer_framing_follows_rfc_9112_6_3() {
        use AnswerFraming::{Chunked, Close, Length, None as NoBody};
        let cases: [(&[u8], bool, u16, AnswerFraming, bool); 10] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                false,
                200,
                Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                200,
                NoBody,
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
                204,
                NoBody,
                true,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\n\r\n",
                false,
                304,
                NoBody,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
                false,
                200,
                Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                200,
                Close,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, 200, Close, false),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                false,
                200,
                NoBody,
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                200,
                Length(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
                false,
                200,
                Length(1),
                true,
            ),
        ];
        for (raw, head_request, status, framing, keep_alive) in cases {
            let parsed = answer(raw, head_request).expect("parsed");
            assert_eq!(
                (parsed.0, parsed.1, parsed.2),
                (status, framing, keep_alive),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // The head is taken out of the buffer; the body stays.
        let (.., rest) =
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!(rest, b"hello");
    }

    #[test]
    fn answers_that_are_not_http_or_too_large_are_refused_and_partial_ones_wait() {
        for raw in [
            &b"this is not http\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            b"HTTP/1.1 99 Odd\r\n\r\n",
        ] {
            assert!(
                answer(raw, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut large = b"HTTP/1.1 200 OK\r\n".to_vec();
        large.extend_from_slice(format!("x-big: {}\r\n", "a".repeat(2000)).as_bytes());
        assert_eq!(
            answer(&large, false).err(),
            Some("the answer head is too large")
        );
        assert_eq!(
            answer(b"HTTP/1.1 200 OK\r\nContent-Le", false).err(),
            Some("incomplete")
        );
    }

    #[test]
    fn an_answers_end_to_end_lines_pass_as_they_came_and_hop_by_hop_ones_do_not() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive, X-Hop\r\n\
            X-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Thing: 2\r\nContent-Length: 3\r\n\
            Set-Cookie: a=1\r\nset-cookie: b=2\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\nabc";
        let mut buf = BytesMut::from(&raw[..]);
        let head = parse_answer(&mut buf, 4096, false).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(head.raw.lines.clone()).unwrap(),
            "Server: x\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n"
        );
        assert!(head.raw.has_date);
        assert_eq!(head.raw.content_length, None);
        assert_eq!(head.framing, AnswerFraming::Length(3));
        assert_eq!(&buf[..], b"abc");
        // The same lines as a header map, for hyper's servers.
        let mut map = HeaderMap::new();
        head.raw.append_to(&mut map, head.status);
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(map.get("server").unwrap(), "x");
        assert_eq!(map.len(), 4);
        // To a HEAD, the Content-Length is kept to be written again.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"[..]);
        let head = parse_answer(&mut buf, 4096, true).unwrap().unwrap();
        assert_eq!(head.raw.content_length, Some(7));
        assert!(!head.raw.has_date);
        let mut map = HeaderMap::new();
        head.raw.append_to(&mut map, head.status);
        assert_eq!(map.get("content-length").unwrap(), "7");
        let mut out = Vec::new();
        encode_response_head(
            &mut out,
            head.status,
            &head.headers,
            Some(&head.raw),
            ResponseFraming::None,
            Connection::None,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 7\r\n"), "{text}");
        assert!(text.contains("date: "), "{text}");
    }
}
