//! http mode's long exchanges (SPEC 4, issue 11): `Upgrade` (WebSocket)
//! relayed as bytes both ways after the `101` until either side closes,
//! bodies streamed both ways (never held whole), and slow clients not
//! holding up others.

use std::io::Write;
use std::thread;

use crate::harness::{Balancer, DEADLINE, Format, HttpBackend, eventually, http_get, sample};
use crate::http::{Client, http_config};

const WEBSOCKET: &str = "GET /chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n";

/// The WebSocket request with `extra` header lines, and its blank line.
fn websocket(extra: &str) -> Vec<u8> {
    format!("{WEBSOCKET}{extra}\r\n").into_bytes()
}

/// `n` bytes of a pattern that shows where a byte went missing.
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from(i % 251).expect("below 251"))
        .collect()
}

#[test]
fn a_websocket_upgrade_relays_bytes_both_ways_until_the_client_closes_and_counts_one_request() {
    let a = HttpBackend::start("a");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}",
        http_config(&[&a], "")
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let admin = balancer.wait_admin();
    let mut client = Client::connect(balancer.addr("web"));
    // The first frame goes in the same write as the request: it must wait
    // for the 101, then pass.
    let mut first = websocket("");
    first.extend_from_slice(b"early frame");
    client.send(&first);
    let answer = client.answer();
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("upgrade"), Some("websocket"));
    assert_eq!(
        answer.header("connection").map(str::to_ascii_lowercase),
        Some("upgrade".into())
    );
    let seen = a.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("upgrade"), Some("websocket"));
    assert_eq!(seen[0].header("connection"), Some("upgrade"));
    assert_eq!(
        seen[0].header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(client.read_exact(11), Ok(b"early frame".to_vec()));
    for message in [&b"ping"[..], b"\x81\x05hello", &[0u8; 1][..]] {
        client.send(message);
        assert_eq!(client.read_exact(message.len()), Ok(message.to_vec()));
    }
    // A MiB each way at once: written by a thread while this one reads.
    let big = pattern(1 << 20);
    let mut writer = client.try_clone_stream();
    let sent = big.clone();
    let writing = thread::spawn(move || writer.write_all(&sent).is_ok());
    let echoed = client.read_exact(big.len()).expect("the MiB came back");
    assert!(
        writing.join().expect("the writer ends"),
        "the MiB was not sent"
    );
    assert!(echoed == big, "the MiB came back changed");
    // The client closes its side: the backend sees EOF and closes, and
    // the client sees that.
    client.shutdown_write();
    assert_eq!(
        client.rest_until_closed(DEADLINE),
        Some(Vec::new()),
        "the upgraded connection was not closed after both sides were done"
    );
    // One request, counted when it ended.
    let labels = [
        ("listener", "web"),
        ("backend", &a.addr().to_string()),
        ("code", "1xx"),
    ];
    assert!(
        eventually(DEADLINE, || {
            http_get(admin, "/metrics")
                .is_ok_and(|m| sample(&m.body, "balancer_requests_total", &labels) == Some(1.0))
        }),
        "the upgraded exchange was not counted as one 1xx request"
    );
    let metrics = http_get(admin, "/metrics").expect("metrics").body;
    for code in ["2xx", "3xx", "4xx", "5xx"] {
        let labels = [
            ("listener", "web"),
            ("backend", &a.addr().to_string()),
            ("code", code),
        ];
        assert_eq!(
            sample(&metrics, "balancer_requests_total", &labels),
            Some(0.0),
            "{code}"
        );
    }
}

#[test]
fn an_upgraded_connection_closes_when_the_backend_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    // The backend echoes 5 bytes, then closes.
    client.send(&websocket("x-reply-echo-bytes: 5\r\n"));
    assert_eq!(client.answer().status, 101);
    client.send(b"12345");
    assert_eq!(client.read_exact(5), Ok(b"12345".to_vec()));
    assert_eq!(
        client.rest_until_closed(DEADLINE),
        Some(Vec::new()),
        "the client's side stayed open after the backend closed"
    );
}

#[test]
fn an_answer_streams_to_the_client_before_the_backend_sent_all_of_it() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let body = 2 << 20;
    let half = body / 2;
    let mut client = Client::connect(balancer.addr("web"));
    // The backend sends the head and the first MiB, then holds the rest
    // until released.
    client.send(
        format!(
            "GET /stream HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: {body}\r\n\
             x-reply-hold: 1\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("content-length".into(), body.to_string())),
        "{headers:?}"
    );
    // Everything the backend has sent arrives while it holds the rest.
    let first = client
        .read_exact(half)
        .unwrap_or_else(|got| panic!("{} of the first {half} bytes came", got.len()));
    assert!(first == pattern_of(0, half), "the first half changed");
    a.release();
    let rest = client
        .read_exact(body - half)
        .unwrap_or_else(|got| panic!("{} of the last {half} bytes came", got.len()));
    assert!(rest == pattern_of(half, body), "the second half changed");
    // The connection serves on.
    client.send(b"GET /next HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(client.answer().status, 200);
}

/// Bytes `from..to` of the backend's `x-reply-bytes` pattern.
fn pattern_of(from: usize, to: usize) -> Vec<u8> {
    b"0123456789"
        .iter()
        .copied()
        .cycle()
        .skip(from)
        .take(to - from)
        .collect()
}

#[test]
fn an_upload_streams_to_the_backend_before_the_client_sent_all_of_it() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let body = pattern(4 << 20);
    let (first, second) = body.split_at(body.len() / 2);
    for chunked in [false, true] {
        let before = a.received_bytes();
        let mut client = Client::connect(balancer.addr("web"));
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let frame = |part: &[u8]| {
            if chunked {
                let mut framed = format!("{:x}\r\n", part.len()).into_bytes();
                framed.extend_from_slice(part);
                framed.extend_from_slice(b"\r\n");
                framed
            } else {
                part.to_vec()
            }
        };
        let mut raw =
            format!("PUT /upload HTTP/1.1\r\nHost: example.test\r\n{framing}\r\n\r\n").into_bytes();
        raw.extend_from_slice(&frame(first));
        client.send(&raw);
        // The backend gets the first half while the client holds the rest.
        assert!(
            eventually(DEADLINE, || a.received_bytes() - before >= first.len()),
            "the backend got {} bytes of the first {} before the client sent the rest",
            a.received_bytes() - before,
            first.len()
        );
        let mut rest = frame(second);
        if chunked {
            rest.extend_from_slice(b"0\r\n\r\n");
        }
        client.send(&rest);
        let answer = client.answer();
        assert_eq!(answer.status, 200);
        assert!(answer.body == body, "the echoed upload differs");
    }
}

#[test]
fn clients_sending_their_heads_slowly_do_not_hold_up_others() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "request_header_timeout = \"20s\""),
        Format::Toml,
    );
    let addr = balancer.addr("web");
    let head = b"GET /slow HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let stall_at = 20;
    // Fifty clients send the start of their heads one byte per write, then
    // stall.
    let mut slow: Vec<Client> = (0..50).map(|_| Client::connect(addr)).collect();
    for client in &mut slow {
        for byte in &head[..stall_at] {
            client.send(&[*byte]);
        }
    }
    // Others are answered meanwhile, each on a new connection.
    for i in 0..20 {
        let mut client = Client::connect(addr);
        client.send(format!("GET /quick/{i} HTTP/1.1\r\nHost: example.test\r\n\r\n").as_bytes());
        let answer = client.answer();
        assert_eq!(answer.status, 200, "a quick client was not answered");
    }
    assert_eq!(a.seen().len(), 20);
    // The slow ones were waited for, not dropped: they finish and are
    // answered too.
    for client in &mut slow {
        client.send(&head[stall_at..]);
    }
    for client in &mut slow {
        assert_eq!(client.answer().status, 200, "a slow client was dropped");
    }
    assert_eq!(a.seen().len(), 70);
}

#[test]
fn an_answer_that_comes_before_the_upload_ends_reaches_the_client_whose_connection_then_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    // The head and the first 64 KiB of an 8 MiB upload; the backend
    // answers 413 on the head alone.
    let body = pattern(8 << 20);
    let mut raw = format!(
        "PUT /upload HTTP/1.1\r\nHost: example.test\r\nx-reply-early: 1\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body[..64 << 10]);
    client.send(&raw);
    let answer = client.answer();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.body, b"too large", "{answer:?}");
    // The rest of the upload was never read: the client's connection
    // closes after the answer rather than taking it for a request.
    assert!(
        client.rest_until_closed(DEADLINE).is_some(),
        "the client connection stayed open after an answer to an unread upload"
    );
    // The balancer serves on.
    let mut next = Client::connect(balancer.addr("web"));
    next.send(b"GET /next HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(next.answer().status, 200);
}

#[test]
fn a_backend_that_stalls_mid_answer_for_response_timeout_is_cut_off_and_the_client_closed() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(
        &http_config(&[&a], "response_timeout = \"1s\""),
        Format::Toml,
    );
    let body = 2 << 20;
    let half = body / 2;
    let mut client = Client::connect(balancer.addr("web"));
    // The backend sends the head and the first MiB, then holds the rest
    // (never released here).
    client.send(
        format!(
            "GET /stall HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: {body}\r\n\
             x-reply-hold: 1\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, _) = client.head();
    assert_eq!(status, 200);
    let first = client
        .read_exact(half)
        .unwrap_or_else(|got| panic!("{} of the first {half} bytes came", got.len()));
    assert!(first == pattern_of(0, half), "the first half changed");
    // Nothing more comes for response_timeout: the answer is cut and the
    // connection closed (the client can tell: fewer bytes than announced).
    assert_eq!(
        client.rest_until_closed(DEADLINE),
        Some(Vec::new()),
        "the client connection stayed open while the backend stalled"
    );
    // The balancer serves on.
    a.release();
    let mut next = Client::connect(balancer.addr("web"));
    next.send(b"GET /next HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(next.answer().status, 200);
}

#[test]
fn a_client_that_stops_reading_an_answer_is_closed_after_idle_timeout() {
    let a = HttpBackend::start("a");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}",
        // (response_timeout would follow idle_timeout: the test backend
        // takes a while to make a big answer)
        http_config(&[&a], "idle_timeout = \"1s\"\nresponse_timeout = \"30s\"")
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let admin = balancer.wait_admin();
    // 64 MiB asked for, none of it read: the socket buffers fill, the
    // balancer's writes wait, and after idle_timeout it gives up.
    let body = 64 << 20;
    let mut client = Client::connect(balancer.addr("web"));
    client.send(
        format!("GET /big HTTP/1.1\r\nHost: example.test\r\nx-reply-bytes: {body}\r\n\r\n")
            .as_bytes(),
    );
    let labels = [
        ("listener", "web"),
        ("backend", &a.addr().to_string()),
        ("code", "2xx"),
    ];
    assert!(
        eventually(DEADLINE, || {
            http_get(admin, "/metrics")
                .is_ok_and(|m| sample(&m.body, "balancer_requests_total", &labels) == Some(1.0))
        }),
        "the stalled answer never ended"
    );
    // What was sent before the stall is there, then the close: less than
    // the whole answer.
    let rest = client
        .rest_until_closed(DEADLINE)
        .expect("the client connection was not closed");
    assert!(
        !rest.is_empty() && rest.len() < body,
        "{} bytes of a {body}-byte answer",
        rest.len()
    );
}
