//! Fault injection on an http listener (issue 14): backends killed or
//! reset mid-answer and mid-upload, closing or resetting at accept, never
//! answering, answering half; clients reset mid-answer and mid-upload.
//! Each case checks the status the client is told (docs/http.md's
//! table), the bytes that did arrive by digest, that the next request is
//! served, and that the balancer's descriptors come back to where they
//! were. (The 502 for a backend closing without an answer, the 504 of
//! `response_timeout`, the cut of an answer stalled mid-body and the
//! retry rules have their own tests in `http_errors`, `http_streams` and
//! `http_pool`; the cases here add what those do not check.)

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::faults_tcp::{assert_fds_back, idle_fds};
use crate::harness::{
    Balancer, DEADLINE, Digest, FaultBackend, Format, PROMPTLY, Script, eventually, pattern,
    read_digest, reset,
};
use crate::http::Client;

/// An http listener `web` over `backend`, with `extra` listener lines.
fn http_listener(backend: SocketAddr, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n{extra}\n\
         backends = [\"{backend}\"]\n[listeners.passive_check]\nenabled = false\n"
    )
}

/// 64 MiB: more than loopback's buffers hold.
const LONG: u64 = 64 << 20;

/// What a test lets through before the fault.
const FIRST: u64 = 1 << 20;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes()
}

fn post_head(len: u64) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: example.test\r\ncontent-length: {len}\r\n\r\n")
        .into_bytes()
}

/// Sends a GET and reads the answer's head and the first [`FIRST`] bytes
/// of its body, checked against stream `seed`; returns the raw socket to
/// read on.
#[track_caller]
fn get_first_bytes(web: SocketAddr, seed: u64) -> TcpStream {
    let mut client = Client::connect(web);
    client.send(&get("/long"));
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    let length = headers.iter().find(|(n, _)| n == "content-length");
    assert_eq!(length.map(|(_, v)| v.as_str()), Some(&*LONG.to_string()));
    // What came with the head, then the rest of the first MiB.
    let mut first = Digest::default();
    first.update(&client.take_buffer());
    let mut stream = client.try_clone_stream();
    let (rest, closed) =
        read_digest(&mut stream, FIRST - first.len, DEADLINE).expect("the first bytes came");
    assert_eq!(closed, None, "closed early");
    assert_eq!(
        first,
        Digest::of_pattern(seed, first.len),
        "the first bytes changed"
    );
    assert_eq!(
        rest,
        Digest::of_pattern_from(seed, first.len, rest.len),
        "the first MiB changed"
    );
    stream
}

/// Reads on after the first [`FIRST`] bytes until the balancer closes the
/// client: the answer is cut short (fewer bytes than its length said), and
/// what came is the stream's.
#[track_caller]
fn assert_cut_and_closed(stream: &mut TcpStream, seed: u64) {
    let (rest, closed) = read_digest(stream, u64::MAX, DEADLINE)
        .unwrap_or_else(|e| panic!("the client was not closed: {e}"));
    assert!(closed.is_some(), "read {} bytes, but no close", rest.len);
    assert!(FIRST + rest.len < LONG, "the whole answer came");
    assert_eq!(
        rest,
        Digest::of_pattern_from(seed, FIRST, rest.len),
        "bytes after the first MiB changed"
    );
}

/// Kills `backend`, starts an http echo backend on its address, and checks
/// that a new client's request is answered through `balancer`.
#[track_caller]
fn assert_next_request_served(balancer: &Balancer, backend: &mut FaultBackend) -> FaultBackend {
    let addr = backend.addr();
    backend.kill();
    let echo = FaultBackend::start_on(addr, Script::HttpEcho).expect("restart on the address");
    let body = pattern(9, 0, 10_000);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&post_head(body.len() as u64));
    client.send(&body);
    let answer = client.answer();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body == body, "the echoed body changed");
    echo
}

/// One case: an http listener `web` (with `extra` lines) over a backend
/// following `script`; `fault` runs the case against the listener's
/// address. Then a new client's request must be served, and the
/// balancer's descriptors must come back to their idle count.
fn case(script: Script, extra: &str, fault: impl FnOnce(SocketAddr, &mut FaultBackend)) {
    let mut backend = FaultBackend::start(script);
    let balancer = Balancer::start(&http_listener(backend.addr(), extra), Format::Toml);
    let baseline = idle_fds(&balancer);
    fault(balancer.addr("web"), &mut backend);
    let echo = assert_next_request_served(&balancer, &mut backend);
    // Its pooled connection closes with it.
    drop(echo);
    assert_fds_back(&balancer, baseline);
    balancer.stop();
}

/// Asserts `answer` is the balancer's own `status`.
#[track_caller]
fn assert_own(answer: &crate::http::Answer, status: u16) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "not the balancer's own answer: {answer:?}"
    );
}

#[test]
fn a_backend_killed_mid_answer_cuts_it_closes_the_client_and_the_next_request_is_served() {
    case(
        Script::HttpSend {
            len: LONG,
            seed: 11,
        },
        "",
        |web, backend| {
            let mut stream = get_first_bytes(web, 11);
            backend.kill();
            assert_cut_and_closed(&mut stream, 11);
            drop(stream);
        },
    );
}

#[test]
fn a_backend_that_resets_mid_answer_cuts_it_and_closes_the_client() {
    case(
        Script::HttpSend {
            len: LONG,
            seed: 12,
        },
        "",
        |web, backend| {
            let mut stream = get_first_bytes(web, 12);
            backend.reset();
            assert_cut_and_closed(&mut stream, 12);
            drop(stream);
        },
    );
}

#[test]
fn a_backend_killed_mid_upload_gets_the_client_a_502_and_got_intact_bytes() {
    case(Script::HttpSink, "", |web, backend| {
        let mut client = Client::connect(web);
        client.send(&post_head(LONG));
        let mut writer = client.try_clone_stream();
        writer
            .set_write_timeout(Some(PROMPTLY))
            .expect("a write timeout");
        writer
            .write_all(&pattern(13, 0, usize::try_from(FIRST).expect("fits")))
            .expect("the first MiB is taken");
        assert!(
            eventually(DEADLINE, || backend.read_bytes() >= FIRST),
            "the upload did not reach the backend"
        );
        backend.kill();
        // A POST that reached its backend is not sent again: 502, and the
        // connection closes (the rest of its body was never read).
        assert_own(&client.answer(), 502);
        assert!(
            client.closed_within(DEADLINE),
            "the client connection stayed open"
        );
        let received = backend.received();
        assert_eq!(received.len(), 1);
        assert!(received[0].len > 0, "no body byte reached the backend");
        assert_eq!(
            received[0],
            Digest::of_pattern(13, received[0].len),
            "the body that reached the backend changed"
        );
        drop(client);
    });
}

#[test]
fn a_backend_that_resets_at_accept_gets_a_502_not_retried_on_a_new_connection() {
    case(Script::ResetAtOnce, "", |web, backend| {
        let mut client = Client::connect(web);
        client.send(&get("/"));
        assert_own(&client.answer(), 502);
        // docs/http.md: only a request on a reused pooled connection is sent
        // again; this one failed on a new connection.
        assert_eq!(backend.accepts(), 1, "the request was sent again");
        drop(client);
    });
}

#[test]
fn a_backend_that_closes_at_accept_gets_a_502_and_the_connection_serves_on() {
    case(Script::CloseAtOnce, "", |web, backend| {
        let mut client = Client::connect(web);
        client.send(&get("/"));
        let answer = client.answer();
        assert_own(&answer, 502);
        assert_eq!(
            answer.text(),
            "bad gateway: the backend closed the connection without an answer\n"
        );
        assert_eq!(backend.accepts(), 1, "the request was sent again");
        // The same client connection serves on once the backend behaves.
        let addr = backend.addr();
        backend.kill();
        *backend = FaultBackend::start_on(addr, Script::HttpEcho).expect("restart");
        client.send(&get("/after"));
        assert_eq!(client.answer().status, 200);
    });
}

#[test]
fn a_backend_that_never_answers_gets_a_504_at_response_timeout_and_its_connection_closed() {
    case(
        Script::Silent,
        "response_timeout = \"1s\"",
        |web, backend| {
            let mut client = Client::connect(web);
            let started = Instant::now();
            client.send(&get("/"));
            assert_own(&client.answer(), 504);
            assert!(
                started.elapsed() >= Duration::from_millis(900),
                "504 after {:?}, before response_timeout",
                started.elapsed()
            );
            assert!(
                eventually(PROMPTLY, || backend.open() == 0),
                "the timed-out backend connection was kept"
            );
        },
    );
}

#[test]
fn a_backend_that_answers_half_then_stalls_is_cut_at_response_timeout_after_intact_bytes() {
    case(
        Script::HttpHalfThenStall {
            len: 2 * FIRST,
            seed: 14,
        },
        "response_timeout = \"1s\"",
        |web, backend| {
            let mut client = Client::connect(web);
            client.send(&get("/"));
            let (status, _) = client.head();
            assert_eq!(status, 200);
            let early = client.take_buffer();
            let mut stream = client.try_clone_stream();
            let (rest, closed) =
                read_digest(&mut stream, u64::MAX, DEADLINE).expect("closed in time");
            assert!(closed.is_some());
            let mut got = Digest::default();
            got.update(&early);
            assert_eq!(got, Digest::of_pattern(14, got.len));
            assert_eq!(rest, Digest::of_pattern_from(14, got.len, rest.len));
            assert_eq!(
                got.len + rest.len,
                FIRST,
                "not exactly the half that was sent"
            );
            assert!(
                eventually(PROMPTLY, || backend.open() == 0),
                "the stalled backend connection was kept"
            );
            drop((client, stream));
        },
    );
}

#[test]
fn a_client_that_resets_mid_answer_closes_its_backend_connection() {
    case(
        Script::HttpSend {
            len: LONG,
            seed: 15,
        },
        "",
        |web, backend| {
            let stream = get_first_bytes(web, 15);
            reset(stream);
            assert!(
                eventually(DEADLINE, || backend.open() == 0),
                "the backend connection of a reset client was kept"
            );
            assert!(backend.written_bytes() < LONG, "the backend sent it all");
        },
    );
}

#[test]
fn a_client_that_resets_mid_upload_closes_its_backend_connection_after_intact_bytes() {
    case(Script::HttpSink, "", |web, backend| {
        let mut client = Client::connect(web);
        client.send(&post_head(LONG));
        client.send(&pattern(16, 0, usize::try_from(FIRST).expect("fits")));
        assert!(
            eventually(DEADLINE, || backend.read_bytes() >= FIRST),
            "the upload did not reach the backend"
        );
        reset(client.try_clone_stream());
        drop(client);
        assert!(
            eventually(DEADLINE, || backend.open() == 0),
            "the backend connection of a reset client was kept"
        );
        let received = backend.received();
        assert_eq!(received, [Digest::of_pattern(16, FIRST)]);
    });
}

#[test]
fn a_backend_killed_while_its_connection_is_pooled_costs_no_request() {
    // docs/http.md: a request never written to a pooled connection the
    // backend had closed goes to another backend, whatever its method.
    let mut a = FaultBackend::start(Script::HttpEcho);
    let b = FaultBackend::start(Script::HttpEcho);
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         backends = [\"{}\", \"{}\"]\n[listeners.passive_check]\nenabled = false\n",
        a.addr(),
        b.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    // Both backends answer once, and keep their connection in the pool.
    for _ in 0..2 {
        client.send(&get("/warm"));
        assert_eq!(client.answer().status, 200);
    }
    assert_eq!((a.accepts(), b.accepts()), (1, 1));
    a.kill();
    for i in 0..6u64 {
        let body = pattern(20 + i, 0, 5000);
        client.send(&post_head(body.len() as u64));
        client.send(&body);
        let answer = client.answer();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
        assert!(answer.body == body, "request {i}: the echoed body changed");
    }
    balancer.stop();
}
