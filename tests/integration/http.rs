//! http mode (issue 11): the real binary in front of recording HTTP
//! backends, driven by a raw keep-alive client, so every byte each side
//! sees is the test's to check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{Balancer, Format, HttpBackend, PROMPTLY};

/// A listener `web` in http mode over `backends`, with `extra` lines.
pub fn http_config(backends: &[&HttpBackend], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n{extra}\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// One answer as the client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body decoded (chunks joined).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How long a client waits for an answer or its next bytes.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(12);

/// A keep-alive client connection with a read buffer.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, PROMPTLY).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write a request");
    }

    /// Writes `raw`; false when the connection no longer takes bytes.
    pub fn try_send(&mut self, raw: &[u8]) -> bool {
        self.stream.write_all(raw).is_ok()
    }

    /// The connection's socket, for a thread that writes beside the
    /// reader.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the client socket")
    }

    /// Shuts the write side (FIN).
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shut the write side");
    }

    /// Reads one answer (to a request that was not HEAD) within
    /// [`ANSWER_WITHIN`].
    pub fn answer(&mut self) -> Answer {
        self.answer_to(false)
    }

    /// Reads more into the buffer; false at EOF, on an error, or once
    /// `deadline` passed.
    fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Exactly `n` bytes as they come (past any answer already parsed),
    /// within [`ANSWER_WITHIN`]; `Err` with what came if fewer did.
    pub fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        while self.buf.len() < n {
            if !self.fill(deadline) {
                return Err(std::mem::take(&mut self.buf));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads a line ending in CRLF from the buffer (without the CRLF).
    fn line(&mut self, deadline: Instant, what: &str) -> String {
        let end = loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            assert!(
                self.fill(deadline),
                "{what} cut short: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 2);
        line
    }

    /// The next answer head: status and headers.
    pub fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let deadline = Instant::now() + ANSWER_WITHIN;
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill(deadline),
                "no whole answer head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers)
    }

    /// Reads one answer; `head_request` when it answers a HEAD (no body
    /// whatever its headers say). A 1xx is an answer of its own.
    pub fn answer_to(&mut self, head_request: bool) -> Answer {
        let deadline = Instant::now() + ANSWER_WITHIN;
        let (status, headers) = self.head();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        if !head_request && status >= 200 && status != 204 && status != 304 {
            if find("transfer-encoding").is_some() {
                loop {
                    let size_line = self.line(deadline, "a chunk size");
                    let size =
                        usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                            .expect("a chunk size");
                    if size == 0 {
                        loop {
                            let line = self.line(deadline, "the trailers");
                            if line.is_empty() {
                                break;
                            }
                            if let Some((n, v)) = line.split_once(':') {
                                trailers
                                    .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                        }
                        break;
                    }
                    while self.buf.len() < size + 2 {
                        assert!(self.fill(deadline), "chunk cut short");
                    }
                    body.extend(self.buf.drain(..size));
                    self.buf.drain(..2);
                }
            } else if let Some(length) = find("content-length") {
                let length: usize = length.parse().expect("a length");
                while self.buf.len() < length {
                    assert!(self.fill(deadline), "body cut short");
                }
                body = self.buf.drain(..length).collect();
            } else {
                while self.fill(deadline) {}
                body = std::mem::take(&mut self.buf);
            }
        }
        Answer {
            status,
            headers,
            body,
            trailers,
        }
    }

    /// Whether the peer closed the connection (EOF or reset) within
    /// [`PROMPTLY`], whatever it sent before.
    pub fn closed(&mut self) -> bool {
        self.closed_within(PROMPTLY)
    }

    /// Whether the peer closed the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.fill(deadline) {}
        Instant::now() < deadline
    }

    /// What was read and not parsed yet.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads until the peer closes, within `within`: what came, or `None`
    /// if the connection stayed open.
    pub fn rest_until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        self.closed_within(within)
            .then(|| std::mem::take(&mut self.buf))
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes()
}

#[test]
fn one_keep_alive_connection_has_its_requests_spread_over_the_backends() {
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let balancer = Balancer::start(&http_config(&[&a, &b], ""), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    let mut names = Vec::new();
    for i in 0..6 {
        client.send(&get(&format!("/item/{i}?q=1")));
        let answer = client.answer();
        assert_eq!(answer.status, 200);
        names.push(answer.header("x-backend").expect("x-backend").to_string());
        let expected = format!("{} GET /item/{i}?q=1\n", names[i]);
        assert_eq!(String::from_utf8_lossy(&answer.body), expected);
    }
    assert_eq!(names, ["a", "b", "a", "b", "a", "b"]);
    // Connections to the backends were reused: one each.
    assert_eq!((a.connections(), b.connections()), (1, 1));
    assert!(a.seen().iter().all(|s| s.connection == 0));
}

#[test]
fn the_backend_gets_the_request_with_forwarding_headers_and_without_hop_by_hop_ones() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    client.send(
        b"GET /p HTTP/1.1\r\nHost: example.test:8080\r\nConnection: keep-alive, x-secret\r\n\
          X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
          X-Forwarded-For: 203.0.113.9\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(client.answer().status, 200);
    let seen = a.seen();
    let request = seen.last().expect("a request");
    assert!(
        request.head.starts_with("GET /p HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    assert_eq!(request.headers_named("x-forwarded-for").len(), 1);
    assert_eq!(request.header("host"), Some("example.test:8080"));
    assert_eq!(request.header("user-agent"), Some("test"));
    assert_eq!(request.header("accept"), Some("*/*"));
    assert_eq!(
        request.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        request.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"example.test:8080\"")
    );
    assert_eq!(request.header("x-forwarded-proto"), Some("http"));
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authorization",
    ] {
        assert_eq!(request.header(gone), None, "{gone} reached the backend");
    }
}

#[test]
fn five_mib_bodies_pass_both_ways_unchanged_with_a_length_and_chunked() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], ""), Format::Toml);
    let body: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut client = Client::connect(balancer.addr("web"));
    let mut request = format!(
        "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    client.send(&request);
    let answer = client.answer();
    assert_eq!(answer.status, 200);
    assert!(answer.body == body, "the echoed body differs");
    // Chunked up, chunked back.
    let mut request =
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Reply-Chunked: 1\r\n\r\n"
            .to_vec();
    for part in body.chunks(300_000) {
        request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    client.send(&request);
    let answer = client.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert!(answer.body == body, "the chunked echo differs");
    let seen = a.seen();
    assert!(
        seen.iter().all(|s| s.body == body),
        "a backend got another body"
    );
}

#[test]
fn an_unreachable_backend_is_502_and_the_connection_stays_open() {
    let refused = crate::harness::refused_address();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\nretries = 0\n\
         backends = [\"{refused}\"]\n"
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    for _ in 0..2 {
        client.send(&get("/"));
        let answer = client.answer();
        assert_eq!(answer.status, 502);
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            String::from_utf8_lossy(&answer.body),
            "bad gateway: no backend could be reached\n"
        );
    }
}

#[test]
fn no_backend_up_is_503() {
    let refused = crate::harness::refused_address();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         backends = [\"{refused}\"]\n[listeners.health_check]\ninterval = \"100ms\"\n\
         timeout = \"100ms\"\nfall = 1\n"
    );
    let balancer = Balancer::start(&config, Format::Toml);
    assert!(
        balancer.wait_for_log(crate::harness::DEADLINE, |line| line.contains("is down")),
        "the backend was never marked down"
    );
    let mut client = Client::connect(balancer.addr("web"));
    client.send(&get("/"));
    let answer = client.answer();
    assert_eq!(answer.status, 503);
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        "service unavailable: no backend is up\n"
    );
}

#[test]
fn a_request_head_over_max_header_bytes_gets_431_and_the_connection_closes() {
    let a = HttpBackend::start("a");
    let balancer = Balancer::start(&http_config(&[&a], "max_header_bytes = 2048"), Format::Toml);
    let mut client = Client::connect(balancer.addr("web"));
    let filler = "v".repeat(3000);
    client.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n").as_bytes());
    let answer = client.answer();
    assert_eq!(answer.status, 431);
    assert!(client.closed(), "the connection stayed open after a 431");
    assert!(a.seen().is_empty(), "the request reached the backend");
}
