//! http mode as the operator sees it (issue 11): requests by status class
//! and duration in `/metrics` and `/api/status`, and passive detection on
//! answers (5 bad answers in a row mark a backend down, never more than
//! half of a listener's backends).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::harness::{
    Balancer, DEADLINE, Format, HttpBackend, PROMPTLY, http_get, http_request, sample,
};

/// A backend that answers every request with `status` and an empty body,
/// keeping the connection open; stops when dropped.
struct Failing {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Failing {
    fn start(status: u16) -> Failing {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    thread::spawn(move || answer_all(stream, status));
                }
            }
        });
        Failing { addr, stop }
    }
}

impl Drop for Failing {
    fn drop(&mut self) {
        // The accept loop sees the flag with its next connection.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, PROMPTLY);
    }
}

/// Answers each bodiless request on `stream` with `status` until EOF.
fn answer_all(mut stream: TcpStream, status: u16) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let answer = format!("HTTP/1.1 {status} Failing\r\ncontent-length: 0\r\n\r\n");
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\n\
         listen = \"127.0.0.1:0\"\nmode = \"http\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn requests_are_counted_by_status_class_in_metrics_and_status() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&config(&[a.addr()]), Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    for _ in 0..3 {
        assert_eq!(http_get(web, "/").expect("an answer").status, 200);
    }
    let not_found = http_request(
        web,
        "GET",
        "/x",
        &[("x-reply-status", "404")],
        None,
        PROMPTLY,
    )
    .expect("an answer");
    assert_eq!(not_found.status, 404);

    let metrics = http_get(admin, "/metrics").expect("metrics").body;
    let backend = a.addr().to_string();
    let count = |code: &str| {
        sample(
            &metrics,
            "balancer_requests_total",
            &[("listener", "web"), ("backend", &backend), ("code", code)],
        )
    };
    assert_eq!(count("2xx"), Some(3.0));
    assert_eq!(count("4xx"), Some(1.0));
    assert_eq!(count("5xx"), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            "balancer_request_duration_seconds_count",
            &[("listener", "web"), ("backend", &backend)],
        ),
        Some(4.0)
    );

    let status = http_get(admin, "/api/status").expect("status").body;
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let listener = &status["listeners"][0];
    assert_eq!(listener["mode"], "http");
    assert_eq!(listener["http"]["requests_total"], 4);
    assert_eq!(listener["http"]["responses"]["2xx"], 3);
    assert_eq!(listener["http"]["responses"]["4xx"], 1);
    let p99 = listener["http"]["latency_ms"]["p99"]
        .as_f64()
        .expect("a p99");
    assert!(p99 > 0.0, "{p99}");
    assert_eq!(listener["backends"][0]["http"]["requests_total"], 4);
}

#[test]
fn five_bad_answers_in_a_row_take_a_backend_out_and_others_serve() {
    let good = HttpBackend::start("good");
    let bad = Failing::start(503);
    let balancer = Balancer::start(&config(&[bad.addr, good.addr()]), Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(http_get(web, "/").expect("an answer").status);
    }
    // Round robin: the bad backend answered 503 five times, then was down.
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        5,
        "{statuses:?}"
    );
    assert!(balancer.wait_for_log(PROMPTLY, |line| {
        line.contains("is down") && line.contains("5 answers 502, 503 or 504 in a row")
    }));
    let status = http_get(admin, "/api/status").expect("status").body;
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let backend = &status["listeners"][0]["backends"][0];
    assert_eq!(backend["state"], "down");
    assert_eq!(backend["health"]["down_cause"], "answers");
}

#[test]
fn bad_answers_never_take_down_more_than_half_of_the_backends() {
    let failing: Vec<Failing> = (0..3).map(|_| Failing::start(502)).collect();
    let addrs: Vec<SocketAddr> = failing.iter().map(|f| f.addr).collect();
    let balancer = Balancer::start(&config(&addrs), Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    for _ in 0..30 {
        assert_eq!(http_get(web, "/").expect("an answer").status, 502);
    }
    let status = http_get(admin, "/api/status").expect("status").body;
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let down = status["listeners"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["state"] == "down")
        .count();
    assert_eq!(down, 1, "3 backends: at most 1 down by answers");
}
