//! http mode's backend connections and retries (SPEC 4, issue 11): pooled
//! keep-alive connections reused across requests and clients, at most
//! `max_idle_per_backend` kept, closed after `backend_idle_timeout`; a
//! failed connect moves on, an idempotent request without a body is sent
//! again when a reused connection fails before any answer byte, and
//! nothing else is retried.

use crate::harness::{Balancer, DEADLINE, Format, HttpBackend, eventually, refused_address};
use crate::http::{Client, http_config};

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes()
}

fn request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    let length = if body.is_empty() && matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    format!("{method} {path} HTTP/1.1\r\nHost: example.test\r\n{headers}{length}\r\n{body}")
        .into_bytes()
}

#[test]
fn requests_from_many_clients_share_one_pooled_backend_connection() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    for client_number in 0..5 {
        let mut client = Client::connect(balancer.addr("web"));
        for i in 0..2 {
            client.send(&get(&format!("/{client_number}/{i}")));
            assert_eq!(client.answer().status, 200);
        }
    }
    assert_eq!(a.seen().len(), 10);
    assert_eq!(
        a.connections(),
        1,
        "10 requests one after the other took {} backend connections",
        a.connections()
    );
}

#[test]
fn max_idle_per_backend_0_opens_and_closes_a_connection_per_request() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "max_idle_per_backend = 0"),
        Format::Toml,
    );
    let mut client = Client::connect(balancer.addr("web"));
    for i in 0..4 {
        client.send(&get(&format!("/{i}")));
        assert_eq!(client.answer().status, 200);
    }
    assert_eq!(a.connections(), 4);
    let seen = a.seen();
    let connections: Vec<usize> = seen.iter().map(|s| s.connection).collect();
    assert_eq!(connections, [0, 1, 2, 3]);
    assert!(
        eventually(DEADLINE, || a.peer_closes() == 4),
        "the balancer closed {} of 4 unpooled connections",
        a.peer_closes()
    );
}

#[test]
fn at_most_max_idle_per_backend_connections_are_kept() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "max_idle_per_backend = 1"),
        Format::Toml,
    );
    // Two requests at once need two connections: the first is held
    // half-answered until the second has been answered.
    let mut held = Client::connect(balancer.addr("web"));
    held.send(&request(
        "GET",
        "/held",
        "x-reply-bytes: 10\r\nx-reply-hold: 1\r\n",
        "",
    ));
    assert!(
        eventually(DEADLINE, || a.seen().len() == 1),
        "the held request did not arrive"
    );
    let mut other = Client::connect(balancer.addr("web"));
    other.send(&get("/other"));
    assert_eq!(other.answer().status, 200);
    a.release();
    assert_eq!(held.answer().body, b"0123456789");
    assert_eq!(a.connections(), 2);
    // Only one of them goes back to the pool: the other is closed.
    assert!(
        eventually(DEADLINE, || a.peer_closes() == 1),
        "{} connections closed, expected 1",
        a.peer_closes()
    );
    for i in 0..3 {
        other.send(&get(&format!("/again/{i}")));
        assert_eq!(other.answer().status, 200);
    }
    assert_eq!(a.connections(), 2, "the kept connection was not reused");
}

#[test]
fn an_idle_pooled_connection_is_closed_after_backend_idle_timeout() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "backend_idle_timeout = \"300ms\""),
        Format::Toml,
    );
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/first"));
    assert_eq!(client.answer().status, 200);
    // The balancer closes it (checked every second): the backend sees EOF.
    assert!(
        eventually(DEADLINE, || a.peer_closes() == 1),
        "the idle pooled connection was never closed"
    );
    client.send(&get("/second"));
    assert_eq!(client.answer().status, 200);
    assert_eq!(
        a.connections(),
        2,
        "the second request had no new connection"
    );
}

#[test]
fn a_pooled_connection_the_backend_closed_is_not_used_for_a_post() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "retries = 0"), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    // Answered, then closed by the backend while idle in the pool.
    client.send(&request("GET", "/first", "x-reply-shutdown: 1\r\n", ""));
    assert_eq!(client.answer().status, 200);
    // The balancer has seen that close once it closed its side too.
    assert!(
        eventually(DEADLINE, || a.peer_closes() == 1),
        "the balancer never closed its side of a closed connection"
    );
    client.send(&request(
        "POST",
        "/post",
        "",
        "a body that cannot be sent twice",
    ));
    let answer = client.answer();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, b"a body that cannot be sent twice");
    assert_eq!(a.connections(), 2);
}

/// A listener over `a` and `b` balanced by `source_hash`: every request
/// of this test's client goes to the same backend first (which one is the
/// hash's choice), and a retry to the other.
struct Pair {
    a: HttpBackend,
    b: HttpBackend,
    balancer: Balancer,
}

impl Pair {
    fn start(extra: &str) -> Pair {
        let a = HttpBackend::start("a");
        let b = HttpBackend::start("b");
        let balancer = Balancer::start(
            &http_config(&[&a, &b], &format!("algorithm = \"source_hash\"\n{extra}")),
            Format::Toml,
        );
        Pair { a, b, balancer }
    }

    /// The backend the client's requests go to first, and the other, by
    /// name; learnt from one request.
    fn first_and_other(&self, client: &mut Client) -> (&HttpBackend, &HttpBackend, &'static str) {
        client.send(&get("/which"));
        let answer = client.answer();
        assert_eq!(answer.status, 200);
        match answer.header("x-backend") {
            Some("a") => (&self.a, &self.b, "a"),
            Some("b") => (&self.b, &self.a, "b"),
            other => panic!("answered by {other:?}"),
        }
    }
}

fn count(backend: &HttpBackend, target: &str) -> usize {
    backend.seen().iter().filter(|s| s.target == target).count()
}

#[test]
fn a_failed_connect_moves_on_to_the_next_backend() {
    let a = HttpBackend::start("a");
    let refused = refused_address();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         backends = [\"{refused}\", \"{}\"]\n",
        a.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    for i in 0..4 {
        // A POST too: a connect that failed sent nothing.
        client.send(&request("POST", &format!("/{i}"), "", "body"));
        let answer = client.answer();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("x-backend"), Some("a"));
    }
    assert_eq!(a.seen().len(), 4);
}

#[test]
fn an_idempotent_request_on_a_reused_connection_the_backend_closed_goes_to_another_backend() {
    let pair = Pair::start("");
    let mut client = Client::connect(pair.balancer.addr("web"));
    let (first, other, first_name) = pair.first_and_other(&mut client);
    for (method, body) in [
        ("GET", ""),
        ("HEAD", ""),
        ("OPTIONS", ""),
        ("DELETE", ""),
        ("PUT", ""),
    ] {
        // `first` has a pooled connection (from the request before); it
        // closes it on this request, before any answer byte.
        let target = format!("/retried/{method}");
        let drop = format!("x-reply-drop-reused: {first_name}\r\n");
        client.send(&request(method, &target, &drop, body));
        let answer = client.answer_to(method == "HEAD");
        assert_eq!(answer.status, 200, "{method}: {answer:?}");
        assert_ne!(answer.header("x-backend"), Some(first_name), "{method}");
        assert_eq!(
            count(first, &target),
            1,
            "{method}: not sent to the first backend"
        );
        assert_eq!(
            count(other, &target),
            1,
            "{method}: not sent again to the other"
        );
        // A pooled connection on `first` again for the next method.
        client.send(&get("/warm"));
        assert_eq!(client.answer().header("x-backend"), Some(first_name));
    }
}

#[test]
fn a_request_with_a_body_is_not_sent_again() {
    let pair = Pair::start("");
    let mut client = Client::connect(pair.balancer.addr("web"));
    let (first, other, first_name) = pair.first_and_other(&mut client);
    for method in ["POST", "PUT"] {
        let target = format!("/once/{method}");
        let drop = format!("x-reply-drop-reused: {first_name}\r\n");
        client.send(&request(method, &target, &drop, "a body"));
        let answer = client.answer();
        assert_eq!(answer.status, 502, "{method}: {answer:?}");
        assert_eq!(count(first, &target), 1, "{method}");
        assert_eq!(count(other, &target), 0, "{method} was sent again");
        client.send(&get("/warm"));
        assert_eq!(client.answer().header("x-backend"), Some(first_name));
    }
}

#[test]
fn a_failure_on_a_new_connection_is_not_retried() {
    // No pool: every request has a new connection.
    let pair = Pair::start("max_idle_per_backend = 0");
    let mut client = Client::connect(pair.balancer.addr("web"));
    let (first, other, _) = pair.first_and_other(&mut client);
    client.send(&request("GET", "/dropped", "x-reply-drop: 1\r\n", ""));
    assert_eq!(client.answer().status, 502);
    assert_eq!(count(first, "/dropped"), 1);
    assert_eq!(count(other, "/dropped"), 0, "sent again");
}

#[test]
fn an_answer_or_a_timeout_is_not_retried() {
    let pair = Pair::start("response_timeout = \"300ms\"");
    let mut client = Client::connect(pair.balancer.addr("web"));
    let (first, other, first_name) = pair.first_and_other(&mut client);
    // A 503 the backend sent is the answer.
    client.send(&request(
        "GET",
        "/unavailable",
        "x-reply-status: 503\r\n",
        "",
    ));
    let answer = client.answer();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("x-backend"), Some(first_name));
    // No answer head in time: 504, not a second try.
    client.send(&request("GET", "/slow", "x-reply-delay-ms: 2000\r\n", ""));
    assert_eq!(client.answer().status, 504);
    assert_eq!(count(first, "/unavailable") + count(first, "/slow"), 2);
    assert_eq!(
        count(other, "/unavailable") + count(other, "/slow"),
        0,
        "sent again"
    );
}

/// SPEC 4 retries an idempotent request when a reused connection "fails
/// before any byte of the answer arrived". A backend that answers garbage
/// sent bytes: 502, not a retry.
#[test]
fn a_garbage_answer_on_a_reused_connection_is_not_retried() {
    let pair = Pair::start("");
    let mut client = Client::connect(pair.balancer.addr("web"));
    let (first, other, _) = pair.first_and_other(&mut client);
    client.send(&request("GET", "/garbage", "x-reply-garbage: 1\r\n", ""));
    assert_eq!(client.answer().status, 502);
    assert_eq!(count(first, "/garbage"), 1);
    assert_eq!(
        count(other, "/garbage"),
        0,
        "sent again after answer bytes came"
    );
}
