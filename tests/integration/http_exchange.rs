//! http mode's request/response table (issue 11), in the spirit of
//! hyper's `tests/support`: each case is sent once straight to a
//! recording [`HttpBackend`] and once through the balancer in front of
//! it. The backend must see the same requests (method, target, headers,
//! body, in order) apart from the forwarding headers, which must be
//! right, and the hop-by-hop headers, which must be gone; the client must
//! get the same answers (status, end-to-end headers, body).
//!
//! What the balancer may change beyond that is stated per case
//! ([`Changes`]): an absolute-form target becomes origin-form, an
//! HTTP/1.0 request without `Host` gets one. Answers through the balancer
//! also carry hyper's `Date` (RFC 9110 6.6.1: a proxy forwarding a
//! response without `Date` adds one), so `date` is left out of the
//! comparison.

use std::collections::BTreeMap;

use crate::harness::{Balancer, Format, HttpBackend, Seen};
use crate::http::{Answer, Client, http_config};

/// Header names that are hop-by-hop whatever `Connection` says (SPEC 4:
/// `Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`
/// outside an upgrade, `Proxy-*`). Not `Trailer`: RFC 9110 6.6.2 made it
/// end to end (it names the trailer fields after the body), so it passes
/// with its trailers (docs/http.md).
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The headers the balancer adds to name the client.
const FORWARDING: [&str; 3] = ["x-forwarded-for", "forwarded", "x-forwarded-proto"];

/// Whether `name` is hop-by-hop in a message with these `headers`: a fixed
/// one, a `Proxy-*` one, or one its `Connection` names.
fn hop_by_hop(name: &str, headers: &[(String, String)]) -> bool {
    HOP_BY_HOP.contains(&name)
        || name.starts_with("proxy-")
        || headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|listed| listed.trim().eq_ignore_ascii_case(name))
}

/// The end-to-end headers of a message, each name's values in order,
/// without `leave_out` (names lowercase).
fn end_to_end(headers: &[(String, String)], leave_out: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if !hop_by_hop(name, headers) && !leave_out.contains(&name.as_str()) {
            map.entry(name.clone()).or_default().push(value.clone());
        }
    }
    map
}

/// What the balancer is expected to change in a case's requests besides
/// the forwarding and hop-by-hop headers.
#[derive(Debug, Clone, Copy, Default)]
struct Changes {
    /// The target the backend gets instead of the client's.
    target: Option<&'static str>,
    /// The request had no `Host` (HTTP/1.0): the backend gets one, the
    /// backend's address.
    host_added: bool,
    /// The `Host` the backend gets instead of the client's.
    host: Option<&'static str>,
}

/// One case of the table.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    /// What the client sends, whole (pipelined requests one after the
    /// other).
    raw: Vec<u8>,
    /// How many requests `raw` holds, so how many answers come back.
    requests: usize,
    /// Which of them are HEAD requests (their answers have no body
    /// whatever their headers say).
    heads: Vec<usize>,
    /// `Expect: 100-continue` with a body: through the balancer the
    /// client sends the head, waits for `100 Continue`, then sends the
    /// rest (`raw[split..]`). Straight to the backend (which sends no
    /// 100) it sends everything at once.
    expect_continue: Option<usize>,
    changes: Changes,
    /// Answer headers the balancer may drop, and why (what RFC 9110
    /// allows).
    answer_may_drop: &'static [&'static str],
}

impl Case {
    fn new(name: &'static str, raw: impl AsRef<[u8]>) -> Case {
        Case {
            name,
            raw: raw.as_ref().to_vec(),
            requests: 1,
            heads: if raw.as_ref().starts_with(b"HEAD ") {
                vec![0]
            } else {
                Vec::new()
            },
            expect_continue: None,
            changes: Changes::default(),
            answer_may_drop: &[],
        }
    }

    fn answer_may_drop(mut self, headers: &'static [&'static str]) -> Case {
        self.answer_may_drop = headers;
        self
    }

    fn requests(mut self, n: usize) -> Case {
        self.requests = n;
        self
    }

    fn heads(mut self, heads: &[usize]) -> Case {
        self.heads = heads.to_vec();
        self
    }

    fn changes(mut self, changes: Changes) -> Case {
        self.changes = changes;
        self
    }

    fn expect_continue(mut self) -> Case {
        let head_end = self
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        self.expect_continue = Some(head_end);
        self
    }
}

/// `raw` chunked in pieces of `size` bytes, with the last chunk and
/// `trailers` (lines with their CRLF).
fn chunked(raw: &[u8], size: usize, trailers: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in raw.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn with_body(head: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = head.as_bytes().to_vec();
    raw.extend_from_slice(body);
    raw
}

/// The table: requests of every framing and shape, and answers of every
/// framing and shape (asked of the backend with `x-reply-*`).
fn table() -> Vec<Case> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let long_value = "v".repeat(4000);
    vec![
        Case::new(
            "GET without a body",
            "GET /plain HTTP/1.1\r\nHost: example.test\r\nUser-Agent: table/1\r\nAccept: */*\r\n\r\n",
        ),
        Case::new(
            "headers: repeated, mixed case, empty, inner spaces, obs-text, long",
            format!(
                "GET /headers HTTP/1.1\r\nHost: example.test\r\nAccept-Language: en\r\n\
                 X-Mixed-Case: Value\r\nAccept-Language: fr;q=0.5\r\nX-Empty:\r\n\
                 X-Spaces: a  b\tc\r\nX-Long: {long_value}\r\nCookie: a=1; b=2\r\n\r\n"
            )
            .into_bytes(),
        ),
        Case::new(
            "obs-text in a value",
            b"GET /latin HTTP/1.1\r\nHost: example.test\r\nX-Latin: caf\xe9\r\n\r\n",
        ),
        Case::new(
            "POST with Content-Length",
            "POST /form HTTP/1.1\r\nHost: example.test\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\na=1&b=2&c=3",
        ),
        Case::new(
            "POST with Content-Length: 0",
            "POST /empty HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n",
        ),
        Case::new(
            "PUT with a large Content-Length body",
            with_body(
                &format!(
                    "PUT /big HTTP/1.1\r\nHost: example.test\r\nContent-Length: {}\r\n\r\n",
                    big.len()
                ),
                &big,
            ),
        ),
        Case::new(
            "PUT chunked, without trailers, with a chunk extension",
            "PUT /chunked HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        Case::new(
            "POST chunked in many chunks",
            with_body(
                "POST /many HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n",
                &chunked(&big, 7000, ""),
            ),
        ),
        Case::new(
            "HEAD",
            "HEAD /head HTTP/1.1\r\nHost: example.test\r\n\r\n",
        ),
        Case::new(
            "204 No Content",
            "DELETE /item/7 HTTP/1.1\r\nHost: example.test\r\nx-reply-status: 204\r\n\r\n",
        ),
        Case::new(
            "304 Not Modified",
            "GET /cached HTTP/1.1\r\nHost: example.test\r\nIf-None-Match: \"v1\"\r\nx-reply-status: 304\r\n\r\n",
        )
        // hyper's server never sends Content-Length on a 304; RFC 9110
        // 8.6 lets a server leave it out ("MAY send").
        .answer_may_drop(&["content-length"]),
        Case::new(
            "404 and 500 from the backend pass as they are",
            "GET /missing HTTP/1.1\r\nHost: example.test\r\nx-reply-status: 404\r\n\r\n\
             GET /broken HTTP/1.1\r\nHost: example.test\r\nx-reply-status: 500\r\n\r\n",
        )
        .requests(2),
        Case::new(
            "Expect: 100-continue",
            "PUT /expect HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\n\
             Content-Length: 13\r\n\r\nafter the 100",
        )
        .expect_continue(),
        Case::new(
            "HTTP/1.0 with Host",
            "GET /old HTTP/1.0\r\nHost: example.test\r\nUser-Agent: old/1\r\n\r\n",
        ),
        Case::new(
            "HTTP/1.0 without Host",
            "GET /older HTTP/1.0\r\nUser-Agent: old/1\r\n\r\n",
        )
        .changes(Changes {
            host_added: true,
            ..Changes::default()
        }),
        Case::new(
            "absolute-form target",
            "GET http://example.test/abs/path?x=1 HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: 10\r\n\r\n",
        )
        .changes(Changes {
            target: Some("/abs/path?x=1"),
            ..Changes::default()
        }),
        Case::new(
            "pipelined requests answered in order",
            "GET /first HTTP/1.1\r\nHost: example.test\r\n\r\n\
             POST /second HTTP/1.1\r\nHost: example.test\r\nContent-Length: 6\r\n\r\nsecond\
             HEAD /third HTTP/1.1\r\nHost: example.test\r\n\r\n\
             GET /fourth HTTP/1.1\r\nHost: example.test\r\nx-reply-chunked: 1\r\n\r\n",
        )
        .requests(4)
        .heads(&[2]),
        Case::new(
            "a query with odd but valid characters",
            "GET /p/a;b,c/~user/x.y/%7E?q=a%20b&k=v=w&e=&s=!$'()*+,;:@/?~-._&%FF HTTP/1.1\r\n\
             Host: example.test\r\n\r\n",
        ),
        Case::new(
            "a long target",
            format!(
                "GET /long/{} HTTP/1.1\r\nHost: example.test\r\n\r\n",
                "segment/".repeat(1000)
            ),
        ),
        Case::new(
            "other methods",
            "OPTIONS /opts HTTP/1.1\r\nHost: example.test\r\n\r\n\
             PATCH /patch HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc\
             PURGE /custom HTTP/1.1\r\nHost: example.test\r\n\r\n",
        )
        .requests(3),
        Case::new(
            "hop-by-hop request headers, and forwarding headers from an earlier hop",
            "GET /hops HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Hop\r\n\
             X-Hop: private\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nProxy-Authorization: Basic eA==\r\n\
             Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Forwarded-For: 203.0.113.9\r\n\
             Forwarded: for=203.0.113.9;proto=https\r\nX-Forwarded-Proto: https\r\nX-Kept: 1\r\n\r\n",
        ),
        Case::new(
            "an answer with a large Content-Length body",
            "GET /large HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: 1048576\r\n\r\n",
        ),
        Case::new(
            "a chunked answer",
            "GET /chunks HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: 100000\r\nx-reply-chunked: 1\r\n\r\n",
        ),
        Case::new(
            "answer headers: repeated, and hop-by-hop ones that must go",
            "GET /answer-headers HTTP/1.1\r\nHost: example.test\r\n\
             x-reply-header: Set-Cookie: a=1; Path=/\r\nx-reply-header: Cache-Control: no-store\r\n\
             x-reply-header: Set-Cookie: b=2\r\nx-reply-header: Keep-Alive: timeout=9\r\n\
             x-reply-header: Connection: X-Answer-Hop\r\nx-reply-header: X-Answer-Hop: private\r\n\
             x-reply-header: Upgrade: h2c\r\nx-reply-header: Proxy-Authenticate: Basic\r\n\r\n",
        ),
    ]
}

/// A chunked request with trailers (see [`request_trailers_reach_the_backend`]).
fn request_with_trailers() -> Case {
    Case::new(
        "POST chunked with trailers",
        "POST /trailers HTTP/1.1\r\nHost: example.test\r\nTrailer: x-sum\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
    )
}

/// A chunked answer with trailers, which the backend sends to a request
/// with `TE: trailers` (see [`answer_trailers_reach_the_client`]).
fn answer_with_trailers() -> Case {
    Case::new(
        "a chunked answer with trailers",
        "GET /answer-trailers HTTP/1.1\r\nHost: example.test\r\nTE: trailers\r\n\
         x-reply-chunked: 1\r\nx-reply-header: Trailer: x-trailer\r\n\r\n",
    )
}

/// An absolute-form target whose authority is not the `Host`: RFC 9112
/// 3.2.2 says the authority wins (a server MUST ignore `Host`, a proxy
/// MUST replace it), so the backend must get `Host: a.test` (see
/// [`an_absolute_form_targets_authority_is_the_host`]).
fn absolute_form_with_another_host() -> Case {
    Case::new(
        "absolute-form target and another Host",
        "GET http://a.test/p HTTP/1.1\r\nHost: b.test\r\nx-reply-bytes: 10\r\n\r\n",
    )
    .changes(Changes {
        target: Some("/p"),
        host: Some("a.test"),
        ..Changes::default()
    })
}

/// What one way of sending a case produced.
struct Run {
    seen: Vec<Seen>,
    answers: Vec<Answer>,
}

/// Sends `case` to `addr` on a new connection and reads its answers
/// (`through` the balancer, a `100 Continue` must come before the body of
/// an `Expect: 100-continue` case is sent). Returns what the backend saw
/// meanwhile.
fn send(case: &Case, addr: std::net::SocketAddr, backend: &HttpBackend, through: bool) -> Run {
    let before = backend.seen().len();
    let mut client = Client::connect(addr);
    match (case.expect_continue, through) {
        (Some(split), true) => {
            client.send(&case.raw[..split]);
            let interim = client.answer();
            assert_eq!(
                interim.status, 100,
                "{}: no 100 Continue before the body was sent",
                case.name
            );
            client.send(&case.raw[split..]);
        }
        _ => client.send(&case.raw),
    }
    let answers = (0..case.requests)
        .map(|i| client.answer_to(case.heads.contains(&i)))
        .collect();
    // Every request was answered, so the backend has recorded them all.
    let seen = backend.seen()[before..].to_vec();
    Run { seen, answers }
}

/// Checks one request as the backend saw it through the balancer
/// (`through`) against the same request sent straight (`direct`).
fn compare_request(
    case: &Case,
    index: usize,
    direct: &Seen,
    through: &Seen,
    backend: &HttpBackend,
) {
    let name = format!("{} (request {index})", case.name);
    assert!(
        !through.bad,
        "{name}: the backend could not read {:?}",
        through.head
    );
    assert!(
        through.head.contains(" HTTP/1.1\r\n"),
        "{name}: the backend got another version: {:?}",
        through.head
    );
    assert_eq!(through.method, direct.method, "{name}: method");
    assert_eq!(
        through.target,
        case.changes.target.unwrap_or(&direct.target),
        "{name}: target"
    );
    assert!(through.body == direct.body, "{name}: the body differs");
    assert_eq!(through.trailers, direct.trailers, "{name}: trailers");

    // Forwarding headers: the client appended, the proto set.
    let earlier = |header: &str| {
        direct
            .headers_named(header)
            .iter()
            .map(|v| format!("{v}, "))
            .collect::<String>()
    };
    assert_eq!(
        through.headers_named("x-forwarded-for"),
        [format!("{}127.0.0.1", earlier("x-forwarded-for"))],
        "{name}: X-Forwarded-For"
    );
    let host = match (direct.header("host"), case.changes.host_added) {
        (Some(host), false) => case.changes.host.unwrap_or(host).to_string(),
        (None, true) => backend.addr().to_string(),
        other => panic!("{name}: the case's Host is {other:?}"),
    };
    // `host=` is the Host the client sent (RFC 7239 5.3): none without one.
    let forwarded_host = if case.changes.host_added {
        String::new()
    } else {
        format!(";host=\"{host}\"")
    };
    assert_eq!(
        through.headers_named("forwarded"),
        [format!(
            "{}for=127.0.0.1;proto=http{forwarded_host}",
            earlier("forwarded")
        )],
        "{name}: Forwarded"
    );
    assert_eq!(
        through.headers_named("x-forwarded-proto"),
        ["http"],
        "{name}: X-Forwarded-Proto"
    );

    // Hop-by-hop headers: none of the client's reach the backend. The
    // only framing is the balancer's own: chunked exactly when the body
    // came chunked.
    // And `TE: trailers` when the client takes trailers: the balancer
    // takes them too.
    for (header, value) in &through.headers {
        let own_framing = header == "transfer-encoding" && value == "chunked";
        let own_te = header == "te"
            && value == "trailers"
            && direct
                .headers_named("te")
                .iter()
                .any(|te| te.contains("trailers"));
        assert!(
            own_framing || own_te || !hop_by_hop(header, &direct.headers),
            "{name}: hop-by-hop {header}: {value} reached the backend"
        );
    }

    // Everything else is the same.
    let mut expected = end_to_end(&direct.headers, &FORWARDING);
    if case.changes.host_added || case.changes.host.is_some() {
        expected.insert("host".into(), vec![host]);
    }
    assert_eq!(
        end_to_end(&through.headers, &FORWARDING),
        expected,
        "{name}: the headers differ"
    );
}

/// Checks one answer through the balancer against the same answer
/// straight from the backend.
fn compare_answer(case: &Case, index: usize, direct: &Answer, through: &Answer) {
    let name = format!("{} (answer {index})", case.name);
    assert_eq!(through.status, direct.status, "{name}: status");
    assert!(
        through.body == direct.body,
        "{name}: the body differs: {} bytes, {} straight",
        through.body.len(),
        direct.body.len()
    );
    assert_eq!(through.trailers, direct.trailers, "{name}: trailers");
    for (header, value) in &through.headers {
        // hyper's own `connection: close` / `keep-alive` for the client's
        // connection, and its framing, are the balancer's to send.
        let own = matches!(header.as_str(), "connection" | "transfer-encoding");
        assert!(
            own || !hop_by_hop(header, &direct.headers),
            "{name}: hop-by-hop {header}: {value} reached the client"
        );
    }
    let leave_out: Vec<&str> = ["date"]
        .into_iter()
        .chain(case.answer_may_drop.iter().copied())
        .collect();
    assert_eq!(
        end_to_end(&through.headers, &leave_out),
        end_to_end(&direct.headers, &leave_out),
        "{name}: the end-to-end headers differ"
    );
}

fn run_table(cases: &[Case]) {
    let backend = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&backend], "request_header_timeout = \"5s\""),
        Format::Toml,
    );
    for case in cases {
        eprintln!("case: {}", case.name);
        let direct = send(case, backend.addr(), &backend, false);
        let through = send(case, balancer.addr("web"), &backend, true);
        assert_eq!(
            direct.seen.len(),
            case.requests,
            "{}: the backend saw {} requests sent straight",
            case.name,
            direct.seen.len()
        );
        assert_eq!(
            through.seen.len(),
            case.requests,
            "{}: the backend saw {} requests through the balancer: {:?}",
            case.name,
            through.seen.len(),
            through.seen.iter().map(|s| &s.head).collect::<Vec<_>>()
        );
        for (i, (d, t)) in direct.seen.iter().zip(&through.seen).enumerate() {
            compare_request(case, i, d, t, &backend);
        }
        for (i, (d, t)) in direct.answers.iter().zip(&through.answers).enumerate() {
            compare_answer(case, i, d, t);
        }
    }
    drop(balancer);
}

#[test]
fn each_request_and_answer_passes_as_it_does_straight_to_the_backend() {
    run_table(&table());
}

/// Request trailers pass: hyper's encoder sends only the trailer fields a
/// `Trailer` header declares (hyper `proto/h1/encode.rs`,
/// `encode_trailers`), so `Trailer` is kept (RFC 9110 6.6.2: end to end).
#[test]
fn request_trailers_reach_the_backend() {
    run_table(&[request_with_trailers()]);
}

/// Answer trailers pass: a client's `TE: trailers` makes the balancer
/// send its own to the backend, and the answer's `Trailer` is kept, which
/// hyper's server needs to send them.
#[test]
fn answer_trailers_reach_the_client() {
    run_table(&[answer_with_trailers()]);
}

/// A request for `http://a.test/p` with `Host: b.test` reaches the
/// backend as `/p` for `a.test`: RFC 9112 3.2.2, the authority replaces
/// `Host` (HAProxy answers 400 instead: `http_smuggling`'s row), so what a
/// cache or filter in front keyed on the target and what the backend
/// serve agree.
#[test]
fn an_absolute_form_targets_authority_is_the_host() {
    run_table(&[absolute_form_with_another_host()]);
}
