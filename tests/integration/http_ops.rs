//! http mode in operation (issue 11): one access log line per request with
//! its method, path, status and retries; the drain finishing the request
//! in flight and closing kept-alive connections; a reload turning a tcp
//! listener into an http one on the same socket.

use std::io::{Read, Write};
use std::net::TcpStream;

use rustix::process::Signal;

use crate::harness::{Balancer, DEADLINE, Format, HttpBackend, PROMPTLY, eventually, http_request};

fn http_listener(backend: &HttpBackend, extra: &str) -> String {
    format!(
        "{extra}[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         backends = [\"{}\"]\n",
        backend.addr()
    )
}

/// Sends `raw` on `stream` and reads one answer with a `content-length`
/// body; returns the head (lowercased) and the body.
fn exchange(stream: &mut TcpStream, raw: &[u8]) -> (String, Vec<u8>) {
    stream.write_all(raw).expect("send");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read"), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the body");
    (head, body)
}

#[test]
fn the_access_log_has_one_json_line_per_request_with_method_path_status_and_retries() {
    let backend = HttpBackend::start("a");
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("access.json");
    let global = format!(
        "[global]\naccess_log = \"{}\"\naccess_log_format = \"json\"\n\n",
        path.display()
    );
    let balancer = Balancer::start(&http_listener(&backend, &global), Format::Toml);
    let web = balancer.addr("web");
    let mut client = TcpStream::connect(web).expect("connect");
    let (_, body) = exchange(&mut client, b"GET /one?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(body, b"a GET /one?x=1\n");
    exchange(
        &mut client,
        b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Reply-Status: 201\r\n\r\nhello",
    );
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        eventually(DEADLINE, || read().lines().count() >= 2),
        "{}",
        read()
    );
    let records: Vec<serde_json::Value> = read()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let backend_name = backend.addr().to_string();
    for (record, (method, target, status, bytes_in)) in records
        .iter()
        .zip([("GET", "/one?x=1", 200, 0), ("POST", "/two", 201, 5)])
    {
        assert_eq!(record["listener"], "web");
        assert_eq!(record["backend"], backend_name.as_str());
        assert_eq!(record["method"], method);
        assert_eq!(record["path"], target);
        assert_eq!(record["status"], status);
        assert_eq!(record["retries"], 0);
        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["bytes_in"], bytes_in);
        assert_eq!(
            record["client"].as_str(),
            Some(client.local_addr().expect("address").to_string().as_str())
        );
    }
    // The POST was echoed: 5 bytes back.
    assert_eq!(records[1]["bytes_out"], 5);
}

#[test]
fn the_drain_finishes_the_request_in_flight_with_connection_close_and_exits_0() {
    let backend = HttpBackend::start("a");
    let mut balancer = Balancer::start(
        &http_listener(&backend, "[global]\ndrain_timeout = \"10s\"\n\n"),
        Format::Toml,
    );
    let web = balancer.addr("web");
    let mut busy = TcpStream::connect(web).expect("connect");
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Reply-Delay-Ms: 700\r\n\r\n")
        .expect("send");
    assert!(
        eventually(PROMPTLY, || !backend.seen().is_empty()),
        "the request never reached the backend"
    );
    balancer.signal(Signal::TERM);
    // The answer still comes, and says the connection closes.
    let mut raw = Vec::new();
    busy.set_read_timeout(Some(DEADLINE)).expect("timeout");
    busy.read_to_end(&mut raw).expect("read to the close");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("a get /slow\n"), "{text}");
    let status = balancer.wait_exit(DEADLINE);
    assert!(status.success(), "exit {status}");
}

#[test]
fn a_reload_turns_a_tcp_listener_into_an_http_one_on_the_same_socket() {
    let backend = HttpBackend::start("a");
    let tcp = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr()
    );
    let balancer = Balancer::start(&tcp, Format::Toml);
    let web = balancer.addr("web");
    // tcp mode: the backend sees the request as sent, no forwarding header.
    let answer = http_request(web, "GET", "/before", &[], None, PROMPTLY).expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(backend.seen()[0].header("x-forwarded-for"), None);

    // Same name and listen address as written: the same socket.
    let http = tcp.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmode = \"http\"",
    );
    balancer.rewrite_config(&http);
    balancer.signal(Signal::HUP);
    assert!(
        balancer.wait_for_log(DEADLINE, |l| l.contains("config reloaded")
            && l.contains("generation=2")),
        "{}",
        balancer.stderr()
    );
    let answer = http_request(web, "GET", "/after", &[], None, PROMPTLY).expect("an answer");
    assert_eq!(answer.status, 200);
    let seen = backend.seen();
    let after = seen.last().expect("a request");
    assert_eq!(after.target, "/after");
    assert_eq!(after.header("x-forwarded-for"), Some("127.0.0.1"));
}
