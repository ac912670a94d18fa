//! http mode's own answers (SPEC 4, issue 11): every error code with its
//! short plain-text body, and what happens to the client's connection
//! after it: closed after 400, 408 and 431, kept after 502, 503 and 504.

use std::time::Duration;

use crate::harness::{Balancer, DEADLINE, Format, HttpBackend, refused_address};
use crate::http::{Answer, Client, http_config};

/// The content type of every answer of the balancer's own.
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes()
}

fn get_with(path: &str, header: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n{header}\r\n\r\n").into_bytes()
}

/// Asserts `answer` is the balancer's own `status` with body `text`.
fn assert_own(answer: &Answer, status: u16, text: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some(PLAIN_TEXT),
        "{answer:?}"
    );
    assert_eq!(answer.text(), text);
    assert_eq!(
        answer.header("x-backend"),
        None,
        "a backend's answer: {answer:?}"
    );
}

/// Asserts the connection still serves: a normal request on it is
/// answered by `backend`.
fn assert_kept(client: &mut Client, backend: &str) {
    client.send(&get("/after"));
    let answer = client.answer();
    assert_eq!(
        answer.status, 200,
        "the connection did not serve on: {answer:?}"
    );
    assert_eq!(answer.header("x-backend"), Some(backend));
}

#[test]
fn an_http_11_request_without_host_gets_400_and_the_connection_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(b"GET / HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n");
    assert_own(
        &client.answer(),
        400,
        "bad request: an HTTP/1.1 request needs a Host header\n",
    );
    assert!(client.closed(), "the connection stayed open after a 400");
    assert!(a.seen().is_empty(), "the request reached the backend");
}

/// Requests the parser refuses: 400 (the balancer's smuggling table in
/// `http_smuggling` has many more), and the connection closed.
#[test]
fn a_malformed_request_gets_400_and_the_connection_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n",
    ] {
        let mut client = Client::connect(balancer.addr("web"));
        client.send(raw);
        let answer = client.answer();
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(client.closed(), "the connection stayed open after a 400");
    }
    // A version this server does not speak: 505 (RFC 9110 15.6.6).
    let mut client = Client::connect(balancer.addr("web"));
    client.send(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n");
    assert_eq!(client.answer().status, 505);
    assert!(client.closed(), "the connection stayed open after a 505");
    assert!(
        a.seen().is_empty(),
        "a malformed request reached the backend"
    );
}

/// SPEC 4: "Errors are a short plain-text body", the parser's refusals
/// (400, 431) included.
#[test]
fn the_parsers_own_400_and_431_are_plain_text_too() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "max_header_bytes = 2048"), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(b"GARBAGE\r\n\r\n");
    let answer = client.answer();
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.header("content-type"),
        Some(PLAIN_TEXT),
        "{answer:?}"
    );
    assert!(!answer.body.is_empty(), "{answer:?}");
    let mut client = Client::connect(balancer.addr("web"));
    let filler = "v".repeat(20_000);
    client.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n").as_bytes());
    let answer = client.answer();
    assert_eq!(answer.status, 431);
    assert_eq!(
        answer.header("content-type"),
        Some(PLAIN_TEXT),
        "{answer:?}"
    );
    assert!(!answer.body.is_empty(), "{answer:?}");
}

#[test]
fn a_head_over_max_header_bytes_gets_431_and_the_connection_closes_whatever_its_size() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "max_header_bytes = 2048"), Format::Toml);
    // Just over the limit, and far over it: the same plain-text answer.
    for size in [2100, 20_000] {
        let mut client = Client::connect(balancer.addr("web"));
        let filler = "v".repeat(size);
        client.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n").as_bytes());
        let answer = client.answer();
        assert_eq!(answer.status, 431, "a {size}-byte header");
        assert_own(
            &answer,
            431,
            "request header fields too large: the request head is too large\n",
        );
        assert!(client.closed(), "the connection stayed open after a 431");
    }
    // Many small headers add up the same way.
    let mut client = Client::connect(balancer.addr("web"));
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        raw.push_str(&format!("X-H{i}: {}\r\n", "w".repeat(30)));
    }
    raw.push_str("\r\n");
    client.send(raw.as_bytes());
    assert_eq!(client.answer().status, 431);
    assert!(client.closed(), "the connection stayed open after a 431");
    // Just under the limit is served.
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get_with("/", &format!("X-Fits: {}", "v".repeat(1800))));
    assert_eq!(client.answer().status, 200);
    assert_eq!(
        a.seen().len(),
        1,
        "only the head that fits reached the backend"
    );
}

#[test]
fn a_head_cut_short_gets_408_after_request_header_timeout_and_the_connection_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "request_header_timeout = \"300ms\""),
        Format::Toml,
    );
    let mut client = Client::connect(balancer.addr("web"));
    client.send(b"GET /half HTTP/1.1\r\nHost: exam");
    // Nothing more is sent: the answer comes by the balancer's timer.
    assert_own(
        &client.answer(),
        408,
        "request timeout: the request head did not arrive in time\n",
    );
    assert!(client.closed(), "the connection stayed open after a 408");
    // The same on a kept-alive connection, after a first request.
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/first"));
    assert_eq!(client.answer().status, 200);
    client.send(b"GET /second HTTP/1.1\r\n");
    assert_eq!(client.answer().status, 408);
    assert!(client.closed(), "the connection stayed open after a 408");
    assert_eq!(a.seen().len(), 1, "half a head reached the backend");
}

#[test]
fn a_head_sent_one_byte_at_a_time_still_gets_408_at_the_timeout() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "request_header_timeout = \"300ms\""),
        Format::Toml,
    );
    let addr = balancer.addr("web");
    let mut client = Client::connect(addr);
    // A trickle of one byte each 50 ms (pacing the client, not waiting
    // on the balancer) would take 5 s to finish its head; each byte must
    // not restart the timeout.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(60)
    );
    let trickle = client.try_clone_stream();
    let writer = std::thread::spawn(move || {
        let mut trickle = trickle;
        for byte in head.as_bytes() {
            if std::io::Write::write_all(&mut trickle, &[*byte]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    });
    let answer = client.answer();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(client.closed(), "the connection stayed open after a 408");
    assert!(
        !writer.join().expect("the trickle ends"),
        "the whole head could be sent: the timeout did not close the connection"
    );
    assert!(a.seen().is_empty(), "the trickled head reached the backend");
}

#[test]
fn an_idle_connection_is_closed_after_request_header_timeout_without_an_answer() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "request_header_timeout = \"300ms\""),
        Format::Toml,
    );
    // A kept-alive connection that sends nothing more.
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/only"));
    assert_eq!(client.answer().status, 200);
    assert_eq!(
        client.rest_until_closed(DEADLINE),
        Some(Vec::new()),
        "an idle kept-alive connection got bytes (a 408?) or stayed open"
    );
    // A new connection that never sends a byte.
    let mut client = Client::connect(balancer.addr("web"));
    assert_eq!(
        client.rest_until_closed(DEADLINE),
        Some(Vec::new()),
        "a silent connection got bytes (a 408?) or stayed open"
    );
}

#[test]
fn a_refused_connect_gets_502_and_the_connection_stays_open() {
    let a = HttpBackend::start("a");
    let refused = refused_address();
    // Round robin: the first request goes to the refused address, with no
    // retry left; the second to `a`.
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\nretries = 0\n\
         backends = [\"{refused}\", \"{}\"]\n",
        a.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/"));
    assert_own(
        &client.answer(),
        502,
        "bad gateway: no backend could be reached\n",
    );
    assert_kept(&mut client, "a");
}

#[test]
fn a_backend_answering_garbage_gets_502_and_the_connection_stays_open() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "retries = 0"), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get_with("/garbage", "x-reply-garbage: 1"));
    let answer = client.answer();
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some(PLAIN_TEXT));
    assert!(answer.text().starts_with("bad gateway"), "{answer:?}");
    assert!(
        !answer.text().contains("this is not http"),
        "the garbage reached the client"
    );
    assert_kept(&mut client, "a");
}

#[test]
fn a_backend_closing_without_an_answer_gets_502_and_the_connection_stays_open() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "retries = 0"), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get_with("/drop", "x-reply-drop: 1"));
    assert_own(
        &client.answer(),
        502,
        "bad gateway: the backend closed the connection without an answer\n",
    );
    assert_kept(&mut client, "a");
    assert_eq!(a.seen().len(), 2, "the dropped request was sent again");
}

#[test]
fn no_backend_up_gets_503_and_the_connection_stays_open() {
    let refused = refused_address();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         backends = [\"{refused}\"]\n[listeners.health_check]\ninterval = \"100ms\"\n\
         timeout = \"100ms\"\nfall = 1\n"
    );
    let balancer = Balancer::start(&config, Format::Toml);
    assert!(
        balancer.wait_for_log(DEADLINE, |line| line.contains("is down")),
        "the backend was never marked down"
    );
    let mut client = Client::connect(balancer.addr("web"));
    for _ in 0..2 {
        client.send(&get("/"));
        assert_own(
            &client.answer(),
            503,
            "service unavailable: no backend is up\n",
        );
    }
}

#[test]
fn no_answer_head_within_response_timeout_gets_504_and_the_connection_stays_open() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "response_timeout = \"300ms\""),
        Format::Toml,
    );
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get_with("/slow", "x-reply-delay-ms: 3000"));
    assert_own(
        &client.answer(),
        504,
        "gateway timeout: the backend did not answer in time\n",
    );
    assert_kept(&mut client, "a");
    assert_eq!(
        a.seen().iter().filter(|s| s.target == "/slow").count(),
        1,
        "the timed-out request was sent again"
    );
}

/// A listener on loopback whose accept queue is full, so a connect to it
/// gets no answer (its SYN is dropped) until the guard drops.
struct Unanswered {
    addr: std::net::SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
}

impl Unanswered {
    fn start() -> Unanswered {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        listener
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("its address")
            .as_socket()
            .expect("an inet address");
        // Fill the queue: connects that complete until one does not.
        let mut queued = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(_) => break,
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        Unanswered {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}

#[test]
fn a_connect_that_times_out_gets_504_and_the_connection_stays_open() {
    let a = HttpBackend::start("a");
    let silent = Unanswered::start();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\nretries = 0\n\
         connect_timeout = \"300ms\"\nbackends = [\"{}\", \"{}\"]\n",
        silent.addr,
        a.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/"));
    assert_own(
        &client.answer(),
        504,
        "gateway timeout: connecting to the backend timed out\n",
    );
    assert_kept(&mut client, "a");
}
