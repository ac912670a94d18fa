//! Request smuggling and bad input in http mode (SPEC 4, issue 11): a
//! table of raw requests, each sent on its own connection to the real
//! binary in front of a recording [`HttpBackend`], with what must happen:
//! the client's answers, whether its connection is closed, and exactly
//! which requests reach the backend (target and body, whole or cut
//! short). Every row's bytes end with a `GET /smuggled` that no proxy
//! reading the row as meant ever reads: the rows that pass a request on
//! ask `Connection: close`, except those with both Content-Length and
//! Transfer-Encoding, where the proxy must close by itself (RFC 9112 6.3)
//! and the smuggled request sits inside the Content-Length's body. No row
//! may make it reach the backend, nor any request with two framings.
//! After each row a normal request proves the balancer is still up.
//!
//! Every row expects what SPEC 4 and RFC 9112 ask of the balancer.
//!
//! The same table runs through HAProxy in `http_differential`.

use std::net::SocketAddr;

use crate::harness::{Balancer, Format, HttpBackend, Seen};
use crate::http::{Client, http_config};

/// `max_header_bytes` of the listener the table runs against.
pub const MAX_HEADER_BYTES: usize = 4096;

/// What a row's exchange must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The status of each answer the client gets, in order.
    pub answers: Vec<u16>,
    /// The client's connection is closed after them.
    pub closed: bool,
    /// The requests that reach the backend whole: target and body.
    pub reached: Vec<(String, Vec<u8>)>,
    /// One more request reaches the backend cut short (its head, part of
    /// its body), as a stream is when its client's bytes turn bad midway.
    pub cut: bool,
}

impl Expect {
    /// Refused with `status` and closed; nothing reaches the backend.
    pub fn refused(status: u16) -> Expect {
        Expect {
            answers: vec![status],
            closed: true,
            reached: Vec::new(),
            cut: false,
        }
    }

    /// Passed on as one request to `target` with `body`, answered 200,
    /// and the connection closed (the rows that pass ask to close).
    pub fn one(target: &str, body: &[u8]) -> Expect {
        Expect {
            answers: vec![200],
            closed: true,
            reached: vec![(target.to_string(), body.to_vec())],
            cut: false,
        }
    }

    /// Answered `status` and closed, with a request cut short at the
    /// backend.
    pub fn cut(status: u16) -> Expect {
        Expect {
            answers: vec![status],
            closed: true,
            reached: Vec::new(),
            cut: true,
        }
    }

    /// Answered `status` and closed, with nothing at the backend or one
    /// request cut short there (a stream of bytes and a timer decide).
    pub fn refused_or_cut(status: u16) -> Vec<Expect> {
        vec![Expect::refused(status), Expect::cut(status)]
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub raw: Vec<u8>,
    /// What SPEC 4 and RFC 9112 ask for (any of these).
    pub want: Vec<Expect>,
    /// What HAProxy does instead of `want`, and why the RFC allows it
    /// (for `http_differential`).
    pub haproxy: Option<(Vec<Expect>, &'static str)>,
}

impl Row {
    fn new(name: &'static str, raw: impl AsRef<[u8]>, want: Expect) -> Row {
        Row {
            name,
            raw: raw.as_ref().to_vec(),
            want: vec![want],
            haproxy: None,
        }
    }

    fn want_any(mut self, want: Vec<Expect>) -> Row {
        self.want = want;
        self
    }

    fn haproxy(mut self, haproxy: Vec<Expect>, why: &'static str) -> Row {
        self.haproxy = Some((haproxy, why));
        self
    }

    /// What the balancer must do.
    pub fn balancer_expects(&self) -> &[Expect] {
        &self.want
    }

    /// What HAProxy is expected to do.
    pub fn haproxy_expects(&self) -> &[Expect] {
        self.haproxy.as_ref().map_or(&self.want, |(h, _)| h)
    }
}

/// What a smuggled second request would look like at the backend.
pub const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// A POST with `headers` (lines with CRLF) and `body` that asks to close
/// the connection after it: any request after it in the same bytes (the
/// smuggled one) is never read by a proxy that took the framing as the
/// row means it.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /row HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n{body}{SMUGGLED}")
        .into_bytes()
}

/// A POST with `headers` and `body` on a connection kept alive: for the
/// rows where the proxy must close by itself (RFC 9112 6.3), so the
/// smuggled request after the body reaches the backend if it does not.
fn post_kept_alive(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /row HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}{SMUGGLED}").into_bytes()
}

/// A GET with `line` as its request line and `headers`, asking to close,
/// and the smuggled request after it.
fn get(line: &[u8], headers: &[u8]) -> Vec<u8> {
    [
        line,
        b"\r\nHost: x\r\nConnection: close\r\n",
        headers,
        b"\r\n",
        SMUGGLED.as_bytes(),
    ]
    .concat()
}

/// The table.
pub fn table() -> Vec<Row> {
    let bad_chunk = |name: &'static str, body: &str| {
        Row::new(
            name,
            post("Transfer-Encoding: chunked\r\n", body),
            Expect::refused(400),
        )
        .want_any(Expect::refused_or_cut(400))
        .haproxy(
            Expect::refused_or_cut(400),
            "HAProxy holds a small body before it forwards it, so a bad chunk after a \
             good one reaches no backend; the balancer streams bodies, so the backend gets \
             the good chunk and then the connection closes: a cut request, never a whole \
             or a second one",
        )
    };
    let over = |size: usize| format!("X-Big: {}\r\n", "b".repeat(size));
    vec![
        // --- Content-Length and Transfer-Encoding together (RFC 9112 6.3
        // item 3: Transfer-Encoding overrides; a server MAY reject with
        // 400, and MUST close the connection after answering if it reads
        // the body as chunked). The smuggled request after the chunked
        // body is inside the Content-Length's body.
        Row::new(
            "Content-Length then Transfer-Encoding: chunked",
            post_kept_alive(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    5 + SMUGGLED.len()
                ),
                "0\r\n\r\n",
            ),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"")],
            "HAProxy drops the Content-Length, reads the body as chunked and closes after the answer (RFC 9112 6.3 allows it); the balancer refuses with 400 (SPEC 4)",
        ),
        Row::new(
            "Transfer-Encoding: chunked then Content-Length",
            post_kept_alive(
                &format!(
                    "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    5 + SMUGGLED.len()
                ),
                "0\r\n\r\n",
            ),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"")],
            "HAProxy drops the Content-Length, reads the body as chunked and closes after the answer (RFC 9112 6.3 allows it); the balancer refuses with 400 (SPEC 4)",
        ),
        Row::new(
            "a short Content-Length and a chunked body of data",
            post_kept_alive(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"abc")],
            "HAProxy drops the Content-Length, reads the body as chunked and closes after the answer (RFC 9112 6.3 allows it); the balancer refuses with 400 (SPEC 4)",
        ),
        // --- Content-Length that is not one decimal number (RFC 9112 6.3
        // item 5: a server MUST answer 400 and close).
        Row::new(
            "two different Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            Expect::refused(400),
        ),
        Row::new(
            "a Content-Length list of different values",
            post("Content-Length: 5, 6\r\n", "hello!"),
            Expect::refused(400),
        ),
        Row::new(
            "a Content-Length with a sign",
            post("Content-Length: +5\r\n", "hello"),
            Expect::refused(400),
        ),
        Row::new(
            "a Content-Length in hex",
            post("Content-Length: 0x5\r\n", "hello"),
            Expect::refused(400),
        ),
        Row::new(
            "a Content-Length past 64 bits",
            post("Content-Length: 99999999999999999999999\r\n", "hello"),
            Expect::refused(400),
        ),
        // --- Transfer-Encoding that is not exactly chunked (RFC 9112 6.3
        // item 4: chunked not last in a request is 400; 6.1: a coding the
        // server does not apply SHOULD get 501).
        Row::new(
            "Transfer-Encoding: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: xchunked",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: chunked-false",
            post("Transfer-Encoding: chunked-false\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: identity with a Content-Length",
            post(
                "Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
                "hello",
            ),
            Expect::refused(400),
        ),
        Row::new(
            "two Transfer-Encoding lines, the last not chunked",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                "0\r\n\r\n",
            ),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: chunked, chunked (a body chunked twice)",
            post(
                "Transfer-Encoding: chunked, chunked\r\n",
                "d\r\n3\r\nabc\r\n0\r\n\r\n\r\n0\r\n\r\n",
            ),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: gzip, chunked (a coding the balancer does not undo)",
            post(
                "Transfer-Encoding: gzip, chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            Expect::refused(400),
        )
        .want_any(vec![Expect::refused(400), Expect::refused(501)])
        .haproxy(
            vec![Expect::refused(422)],
            "HAProxy 2.6 refuses a transfer coding other than chunked with 422",
        ),
        Row::new(
            "Transfer-Encoding: chunked and a trailing space",
            post("Transfer-Encoding: chunked \r\n", "3\r\nabc\r\n0\r\n\r\n"),
            Expect::one("/row", b"abc"),
        ),
        Row::new(
            "Transfer-Encoding: chunked and a trailing tab",
            post("Transfer-Encoding: chunked\t\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            Expect::one("/row", b"abc"),
        ),
        Row::new(
            "Transfer-Encoding: CHUNKED in capitals",
            post("Transfer-Encoding: CHUNKED\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            Expect::one("/row", b"abc"),
        ),
        Row::new(
            "Transfer-Encoding: a vertical tab before chunked",
            post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding: chunked and a NUL",
            post("Transfer-Encoding: chunked\x00\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding folded onto a second line (obs-fold)",
            post(
                "Transfer-Encoding:\r\n chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"abc")],
            "HAProxy unfolds obs-fold into a space (RFC 9112 5.2: a server MAY replace \
             obs-fold with SP instead of answering 400) and reads the body as chunked",
        ),
        Row::new(
            "a line folded after Transfer-Encoding (obs-fold)",
            post("Transfer-Encoding: chunked\r\n , identity\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "a space before the colon",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "a tab before the colon",
            post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "a header line starting with a space right after the request line",
            [
                &b"POST /row HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: x\r\n"[..],
                b"Connection: close\r\n\r\n0\r\n\r\n",
                SMUGGLED.as_bytes(),
            ]
            .concat(),
            Expect::refused(400),
        ),
        Row::new(
            "Transfer-Encoding in an HTTP/1.0 request",
            format!(
                "POST /row HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"abc")],
            "HAProxy reads the body as chunked and closes after the answer (RFC 9112 6.1: an \
             HTTP/1.0 message with Transfer-Encoding is treated as faulty framing and the \
             connection closed after it)",
        ),
        // --- Line ends (RFC 9112 2.2: a recipient MAY take a bare LF as a
        // line end; a bare CR MUST be refused or replaced by SP).
        Row::new(
            "bare LF line ends in the head",
            format!("GET /row HTTP/1.1\nHost: x\nConnection: close\n\n{SMUGGLED}"),
            Expect::one("/row", b""),
        ),
        Row::new(
            "a bare LF ending one header line",
            format!(
                "GET /row HTTP/1.1\r\nHost: x\nX-Mixed: 1\r\nConnection: close\r\n\r\n{SMUGGLED}"
            ),
            Expect::one("/row", b""),
        ),
        Row::new(
            "a bare CR in the head",
            get(b"GET /row HTTP/1.1", b"X-Before: 1\rX-Smuggle: 1\r\n"),
            Expect::refused(400),
        ),
        bad_chunk("bare LF line ends in a chunked body", "3\nabc\n0\n\n").haproxy(
            vec![Expect::one("/row", b"abc")],
            "HAProxy takes a bare LF as the end of a chunk line (RFC 9112 2.2 lets a \
             recipient take a bare LF as a line end)",
        ),
        // --- Chunk sizes (RFC 9112 7.1: hex digits, then optional
        // extensions, CRLF).
        bad_chunk("a chunk size that is not hex", "zz\r\nabc\r\n0\r\n\r\n"),
        bad_chunk("a negative chunk size", "-3\r\nabc\r\n0\r\n\r\n"),
        bad_chunk("a chunk size with 0x", "0x3\r\nabc\r\n0\r\n\r\n"),
        bad_chunk(
            "a chunk size past 64 bits",
            "10000000000000003\r\nabc\r\n0\r\n\r\n",
        ),
        bad_chunk("a chunk longer than its size", "3\r\nabcdef\r\n0\r\n\r\n"),
        bad_chunk(
            "a bad chunk size after a good chunk",
            "3\r\nabc\r\nzz\r\ndef\r\n0\r\n\r\n",
        ),
        // --- The request line (RFC 9112 3: method SP target SP version;
        // the target has no whitespace or controls).
        Row::new(
            "a space in the target",
            get(b"GET /a b HTTP/1.1", b""),
            Expect::refused(400),
        ),
        Row::new(
            "a tab in the target",
            get(b"GET /a\tb HTTP/1.1", b""),
            Expect::refused(400),
        ),
        Row::new(
            "a NUL in the target",
            get(b"GET /a\x00b HTTP/1.1", b""),
            Expect::refused(400),
        ),
        Row::new(
            "an escape character in the target",
            get(b"GET /a\x1bb HTTP/1.1", b""),
            Expect::refused(400),
        ),
        Row::new(
            "a DEL in the target",
            get(b"GET /a\x7fb HTTP/1.1", b""),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/a\x7fb", b"")],
            "HAProxy passes a DEL in the target on (more lenient than RFC 3986 allows: \
                 the balancer's 400 is the RFC's SHOULD)",
        ),
        Row::new(
            "two spaces after the method",
            get(b"GET  /row HTTP/1.1", b""),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"")],
            "HAProxy reads the request line on whitespace boundaries (RFC 9112 3 allows it)",
        ),
        Row::new(
            "a request line with the version twice",
            get(b"GET /row HTTP/1.1 HTTP/1.1", b""),
            Expect::refused(400),
        ),
        // --- Header fields (RFC 9110 5, RFC 9112 3.2 and 5).
        Row::new(
            "a NUL in a header value",
            get(b"GET /row HTTP/1.1", b"X-Bad: a\x00b\r\n"),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"")],
            "HAProxy 2.6 passes a NUL in a header value on unchanged, where RFC 9110 5.5 says \
             to refuse the message or replace it with SP: the balancer's 400 is the RFC's",
        ),
        Row::new(
            "a header name that is not a token",
            get(b"GET /row HTTP/1.1", b"X@Bad: 1\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "two Host headers",
            get(b"GET /row HTTP/1.1", b"Host: y\r\n"),
            Expect::refused(400),
        ),
        Row::new(
            "a Host that is not a host",
            [
                &b"GET /row HTTP/1.1\r\nHost: x y\r\nConnection: close\r\n\r\n"[..],
                SMUGGLED.as_bytes(),
            ]
            .concat(),
            Expect::refused(400),
        )
        .haproxy(
            vec![Expect::one("/row", b"")],
            "HAProxy passes `Host: x y` on too (lenient where RFC 9112 3.2 says 400)",
        ),
        Row::new(
            "an absolute-form target whose authority is not the Host",
            [
                &b"GET http://a.test/row HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n"[..],
                SMUGGLED.as_bytes(),
            ]
            .concat(),
            Expect::refused(400),
        )
        // RFC 9112 3.2.2 lets a server take the target's authority as the
        // Host instead of refusing; which Host the backend gets is
        // checked in http_exchange (the authority's).
        .want_any(vec![Expect::refused(400), Expect::one("/row", b"")])
        .haproxy(
            vec![Expect::refused(400)],
            "HAProxy refuses a Host that differs from the target's authority; the balancer \
             passes the request on (RFC 9112 3.2.2 allows either if the authority becomes \
             the Host)",
        ),
        Row::new(
            "a head just over max_header_bytes",
            get(b"GET /row HTTP/1.1", over(MAX_HEADER_BYTES).as_bytes()),
            Expect::refused(431),
        )
        .haproxy(
            vec![Expect::refused(400)],
            "HAProxy 2.6 answers a head larger than its buffer with 400, not 431 (RFC 6585 \
             makes 431 a MAY)",
        ),
        Row::new(
            "a head far over max_header_bytes",
            get(b"GET /row HTTP/1.1", over(MAX_HEADER_BYTES * 8).as_bytes()),
            Expect::refused(431),
        )
        .haproxy(
            vec![Expect::refused(400)],
            "HAProxy 2.6 answers a head larger than its buffer with 400, not 431 (RFC 6585 \
             makes 431 a MAY)",
        ),
        // --- A valid chunked request: the runner sees one pass.
        Row::new(
            "a valid chunked request",
            post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            Expect::one("/row", b"abc"),
        ),
    ]
}

/// What one row did.
#[derive(Debug)]
pub struct Outcome {
    pub answers: Vec<u16>,
    pub closed: bool,
    /// What reached the backend during the row.
    pub reached: Vec<Seen>,
}

impl Outcome {
    /// Whether this outcome is `expect`.
    pub fn matches(&self, expect: &Expect) -> bool {
        let whole: Vec<(String, Vec<u8>)> = self
            .reached
            .iter()
            .filter(|s| !s.bad)
            .map(|s| (s.target.clone(), s.body.clone()))
            .collect();
        let cut = self.reached.iter().filter(|s| s.bad).count();
        self.answers == expect.answers
            && self.closed == expect.closed
            && whole == expect.reached
            && cut == usize::from(expect.cut)
    }

    /// The outcome in a few words, for messages.
    pub fn describe(&self) -> String {
        let reached: Vec<String> = self
            .reached
            .iter()
            .map(|s| {
                format!(
                    "{}{} {} body {:?}",
                    if s.bad { "CUT " } else { "" },
                    s.method,
                    s.target,
                    String::from_utf8_lossy(&s.body)
                )
            })
            .collect();
        format!(
            "answers {:?}, {}, backend got {reached:?}",
            self.answers,
            if self.closed { "closed" } else { "kept open" }
        )
    }
}

/// The statuses of the answers in `raw`, in order (bodies skipped by
/// their Content-Length; without one, the rest is the body).
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let Some(status) = head
            .split("\r\n")
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        found.push(status);
        let length = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        let body = match (status, length) {
            (100..=199 | 204 | 304, _) => 0,
            (_, Some(length)) => length,
            (_, None) => rest.len() - end - 4,
        };
        rest = &rest[(end + 4 + body).min(rest.len())..];
    }
    found
}

/// Sends `row` to `addr` (a proxy in front of `backend`) on a new
/// connection, reads until the proxy closes it (at most `within`), then
/// sends a normal request on another connection to prove the proxy is up
/// and to mark where the row's requests end at the backend.
pub fn run_row(
    row: &Row,
    addr: SocketAddr,
    backend: &HttpBackend,
    within: std::time::Duration,
    number: usize,
) -> Outcome {
    let before = backend.seen().len();
    let mut client = Client::connect(addr);
    // The proxy may refuse and close before it read everything.
    let _ = client.try_send(&row.raw);
    let (raw, closed) = match client.rest_until_closed(within) {
        Some(raw) => (raw, true),
        None => (client.take_buffer(), false),
    };
    let answers = statuses(&raw);
    // The proxy is still up, and the backend got everything of the row
    // before this request.
    let after = format!("/after/{number}");
    let mut check = Client::connect(addr);
    check.send(format!("GET {after} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let answer = check.answer();
    assert_eq!(
        answer.status, 200,
        "{}: the proxy does not serve after it",
        row.name
    );
    let seen = backend.seen();
    let end = seen
        .iter()
        .rposition(|s| s.target == after)
        .expect("the check request reached the backend");
    Outcome {
        answers,
        closed,
        reached: seen[before..end].to_vec(),
    }
}

/// The balancer over `backend` as the table runs against it.
pub fn balancer_for(backend: &HttpBackend) -> Balancer {
    Balancer::start(
        &http_config(
            &[backend],
            &format!(
                "retries = 0\nrequest_header_timeout = \"1s\"\nmax_header_bytes = {MAX_HEADER_BYTES}"
            ),
        ),
        Format::Toml,
    )
}

/// How long a row may take to be answered and closed.
pub const ROW_WITHIN: std::time::Duration = std::time::Duration::from_secs(4);

/// Why `outcome` of `row` is not `expected`, if it is not.
fn check_row(row: &Row, outcome: &Outcome, expected: &[Expect]) -> Option<String> {
    if !expected.iter().any(|e| outcome.matches(e)) {
        return Some(format!(
            "{}: {}; expected one of {expected:?}",
            row.name,
            outcome.describe()
        ));
    }
    smuggled_or_ambiguous(row, &outcome.reached)
}

/// Why what reached the backend during `row` is unsafe, if it is: the
/// smuggled request, or a request with two framings (whatever came in,
/// what goes out has one).
pub fn smuggled_or_ambiguous(row: &Row, reached: &[Seen]) -> Option<String> {
    for seen in reached {
        if seen.target.contains("smuggled") {
            return Some(format!(
                "{}: the smuggled request reached the backend",
                row.name
            ));
        }
        let lengths = seen.headers_named("content-length").len();
        let chunked = seen.header("transfer-encoding").is_some();
        if lengths > 1 || (lengths == 1 && chunked) {
            return Some(format!(
                "{}: the backend got ambiguous framing: {:?}",
                row.name, seen.head
            ));
        }
    }
    None
}

#[test]
fn each_bad_request_is_refused_or_passed_as_one_and_nothing_is_smuggled() {
    let backend = HttpBackend::start("a");
    let balancer = balancer_for(&backend);
    let failures: Vec<String> = table()
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let outcome = run_row(row, balancer.addr("web"), &backend, ROW_WITHIN, i);
            check_row(row, &outcome, row.balancer_expects())
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
