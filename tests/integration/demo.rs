//! The demo (SPEC 6): `balancer backend` on its own, and `balancer demo`
//! end to end. The demo uses fixed ports, so its test holds
//! `fixed_ports()`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Balancer, DEADLINE, TlsClient, answered, block_on, fixed_ports, h2_client, http_get, loopback,
    peer_certificate, request,
};

#[test]
fn a_demo_backend_answers_health_and_paths_naming_itself() {
    let (backend, addr) = Balancer::start_demo_backend("b1", &[]);

    let health = http_get(addr, "/health").unwrap_or_else(|e| panic!("GET /health: {e}"));
    assert_eq!(health.status, 200);
    assert_eq!(health.header("X-Backend"), Some("b1"));

    let page = http_get(addr, "/anything").unwrap_or_else(|e| panic!("GET /anything: {e}"));
    assert_eq!(page.status, 200);
    assert_eq!(page.header("X-Backend"), Some("b1"));
    assert!(
        page.body.contains("b1"),
        "the body does not name the backend: {:?}",
        page.body
    );
    backend.stop();
}

#[test]
fn a_demo_backend_serves_files_from_its_dir() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("hello.txt"), "hello from a file\n").expect("write a file");
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let (backend, addr) = Balancer::start_demo_backend("b2", &["--dir", dir_arg.as_str()]);
    let file = http_get(addr, "/hello.txt").unwrap_or_else(|e| panic!("GET /hello.txt: {e}"));
    assert_eq!(file.status, 200);
    assert!(file.body.contains("hello from a file"), "{:?}", file.body);
    assert_eq!(file.header("X-Backend"), Some("b2"));
    backend.stop();
}

#[test]
fn a_demo_backend_answers_403_to_clients_outside_allow_from() {
    let (backend, addr) = Balancer::start_demo_backend("b3", &["--allow-from", "10.0.0.0/8"]);
    let answer = http_get(addr, "/").unwrap_or_else(|e| panic!("GET /: {e}"));
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("X-Backend"), Some("b3"));
    backend.stop();
}

#[test]
fn the_demo_serves_through_the_balancer_refuses_direct_clients_and_stops_on_sigint() {
    let _ports = fixed_ports();
    let ports = [
        24003, 24004, 24005, 24006, 24007, 8080, 8081, 8082, 8083, 8084,
    ];
    let addresses: Vec<SocketAddr> = ports.into_iter().map(loopback).collect();
    let mut demo = Balancer::spawn(["demo"], None);
    demo.wait_listening_on(&addresses);

    // Seven GETs, one connection each, through the 3,1,2,1 listener.
    let mut by_backend: HashMap<String, usize> = HashMap::new();
    for i in 0..7 {
        let answer =
            http_get(loopback(24003), "/").unwrap_or_else(|e| panic!("GET {i} via 24003: {e}"));
        assert_eq!(answer.status, 200, "GET {i}");
        let Some(backend) = answer.header("X-Backend") else {
            panic!("GET {i} has no X-Backend")
        };
        *by_backend.entry(backend.to_string()).or_default() += 1;
    }
    let mut shares: Vec<usize> = by_backend.values().copied().collect();
    shares.sort_unstable();
    assert_eq!(shares, [1, 1, 2, 3], "{by_backend:?}");

    let other = http_get(loopback(24004), "/").unwrap_or_else(|e| panic!("GET via 24004: {e}"));
    assert_eq!(other.status, 200);
    assert!(other.header("X-Backend").is_some());

    // http mode: seven requests on one keep-alive connection, each
    // balanced on its own.
    let mut client = std::net::TcpStream::connect(loopback(24005)).expect("connect to 24005");
    let mut by_backend: HashMap<String, usize> = HashMap::new();
    for i in 0..7 {
        let answer = keep_alive_get(&mut client, &format!("/{i}"));
        let backend = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-backend: "))
            .unwrap_or_else(|| panic!("request {i} has no x-backend: {answer:?}"));
        *by_backend.entry(backend.to_string()).or_default() += 1;
    }
    let mut shares: Vec<usize> = by_backend.values().copied().collect();
    shares.sort_unstable();
    assert_eq!(shares, [1, 1, 2, 3], "{by_backend:?}");
    assert!(
        demo.output().contains("24005/[1-7]"),
        "the demo does not print the http curl"
    );

    // TLS: a certificate made at start for localhost, the decrypted
    // request relayed to a backend, which answers through it.
    let (certificate, answer) = block_on(async {
        let mut stream = TlsClient::default()
            .connect(loopback(24006))
            .await
            .expect("a TLS handshake with 24006");
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("a request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("the answer");
        (peer_certificate(&stream), answer)
    });
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        answer.starts_with("http/1.0 200") && answer.contains("x-backend: b"),
        "{answer}"
    );
    assert!(!certificate.is_empty());
    assert!(
        demo.output().contains("curl -ik https://127.0.0.1:24006/"),
        "the demo does not print the TLS curl"
    );

    // http mode over TLS: seven HTTP/2 streams on one connection, spread
    // by weight.
    let backends = block_on(async {
        let (sender, _driven) = h2_client(loopback(24007)).await;
        let mut backends = Vec::new();
        for i in 0..7 {
            let get = request("GET", &format!("https://localhost/{i}"), &[], b"");
            let answer = answered(sender.clone().send_request(get).await.expect("an answer")).await;
            assert_eq!(answer.status, 200, "h2 request {i}");
            backends.push(answer.header("x-backend").unwrap_or("none").to_string());
        }
        backends
    });
    let mut by_backend: HashMap<String, usize> = HashMap::new();
    for backend in backends {
        *by_backend.entry(backend).or_default() += 1;
    }
    let mut shares: Vec<usize> = by_backend.values().copied().collect();
    shares.sort_unstable();
    assert_eq!(shares, [1, 1, 2, 3], "{by_backend:?}");
    assert!(
        demo.output()
            .contains("curl -sk --http2 https://127.0.0.1:24007/[1-7]"),
        "the demo does not print the h2 curl"
    );

    let direct =
        http_get(loopback(8080), "/").unwrap_or_else(|e| panic!("GET straight to 8080: {e}"));
    assert_eq!(direct.status, 403);

    assert!(
        demo.output().contains("curl"),
        "the demo does not print the commands to try"
    );

    let certificate_folder = std::env::temp_dir().join(format!("balancer-demo-{}", demo.pid()));
    assert!(certificate_folder.join("demo.pem").exists());
    demo.signal(Signal::INT);
    let status = demo.wait_exit(DEADLINE);
    assert!(status.success(), "exit {status}");
    assert!(
        !certificate_folder.exists(),
        "the demo left its certificate behind"
    );
    for addr in addresses {
        let freed = TcpListener::bind(addr);
        assert!(
            freed.is_ok(),
            "{addr} is still taken after the demo exited: {freed:?}"
        );
    }
}

#[test]
fn a_demo_backend_with_delay_answers_no_sooner_than_the_delay() {
    let (backend, addr) = Balancer::start_demo_backend("slow", &["--delay", "300"]);
    let asked = Instant::now();
    let answer = http_get(addr, "/").unwrap_or_else(|e| panic!("GET /: {e}"));
    let took = asked.elapsed();
    assert_eq!(answer.status, 200);
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}, before --delay 300"
    );
    backend.stop();
}

/// Sends `GET path` on a kept-alive `client` and reads its answer (head
/// lowercased, and a `content-length` body) within [`DEADLINE`].
fn keep_alive_get(client: &mut std::net::TcpStream, path: &str) -> String {
    use std::io::{Read, Write};
    client
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes())
        .expect("send a request");
    client.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = client.read(&mut byte).expect("read the head");
        assert_eq!(n, 1, "closed before the head ended: {raw:?}");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).expect("read the body");
    head
}
