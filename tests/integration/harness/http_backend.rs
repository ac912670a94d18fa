//! An in-process HTTP/1.1 backend for http mode tests ([`HttpBackend`]):
//! it records every request exactly as it arrived (the raw head, the body
//! bytes as framed, the body decoded) with the connection it came on, and
//! answers as the request's `x-reply-*` headers ask, so one backend serves
//! every case:
//!
//! - default: `200`, `x-backend: NAME`, body `NAME METHOD TARGET\n`;
//! - a request with a body: the body echoed back (`content-length`);
//! - `x-reply-status: N`: that status (body `NAME N\n`; none for 1xx, 204,
//!   304 and HEAD);
//! - `x-reply-bytes: N`: a body of N bytes (`0123456789` repeated);
//! - `x-reply-chunked: 1`: the body in chunks, with a trailer
//!   `x-trailer: done` when the request says `te: trailers`;
//! - `x-reply-close: 1`: `connection: close`, then closes;
//! - `x-reply-delay-ms: N`: waits that long before the head;
//! - `x-reply-pause-ms: N` with `x-reply-bytes`: sends the first half of
//!   the body, waits, then the rest;
//! - `x-reply-hold: 1` with `x-reply-bytes`: sends the first half of the
//!   body, then waits until the test calls [`HttpBackend::release`];
//! - `x-reply-header: NAME: VALUE` (any number of them): that header line
//!   added to the answer, as written;
//! - `x-reply-garbage: 1`: answers bytes that are not HTTP, then closes;
//! - `x-reply-drop: 1`: closes without answering;
//! - `x-reply-early: 1`: answers `413` with `connection: close` before
//!   reading the body, then reads and drops the rest until the peer closes;
//! - `x-reply-drop-reused: NAME`: the backend named NAME closes without
//!   answering when the request is not the first on its connection (a
//!   kept-alive connection the backend closed just as it was reused);
//!   others answer as usual;
//! - `x-reply-shutdown: 1`: answers (the connection looks kept alive),
//!   then shuts its write side and waits for the peer to close: the
//!   backend closed an idle connection ([`HttpBackend::peer_closes`]
//!   counts the peer's close);
//! - `upgrade: ...` with `connection: upgrade`: `101`, then echoes bytes
//!   until EOF, or only `x-reply-echo-bytes: N` bytes, then closes.
//!
//! A head or framing it cannot read is recorded with `bad: true` and the
//! connection closed. [`HttpBackend::received_bytes`] counts every byte
//! read, so a test sees a body arrive while it is still being sent, and
//! [`HttpBackend::peer_closes`] the connections the peer closed between
//! requests. Stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::backends::runtime;

/// Largest request head the backend reads.
const MAX_HEAD: usize = 1 << 20;

/// One request as the backend received it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Which accepted connection it came on (0-based, in accept order).
    pub connection: usize,
    /// The head as it arrived: request line and header lines with their
    /// CRLFs, and the blank line.
    pub head: String,
    /// The request line's method.
    pub method: String,
    /// The request line's target.
    pub target: String,
    /// Headers, names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body's bytes as framed on the wire (chunk sizes included).
    pub raw_body: Vec<u8>,
    /// The body decoded.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The head or the framing could not be read.
    pub bad: bool,
}

impl Seen {
    /// The value of header `name` (lowercase), first occurrence.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An in-process HTTP/1.1 backend on `127.0.0.1:0`.
pub struct HttpBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the backend's connections share with the test.
struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    received: AtomicUsize,
    peer_closes: AtomicUsize,
    /// Permits for held answers (`x-reply-hold`).
    gate: Semaphore,
}

impl HttpBackend {
    /// A backend named `name` (its `x-backend` header and answers).
    pub fn start(name: &str) -> HttpBackend {
        let listener = runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind an http backend");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            peer_closes: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let task = runtime().spawn(serve(listener, Arc::clone(&shared)));
        HttpBackend { addr, shared, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("not poisoned").clone()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many bytes it read, on every connection, so far.
    pub fn received_bytes(&self) -> usize {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// How many connections the peer closed while the backend waited for
    /// a request on them (an EOF with nothing of a next request read).
    pub fn peer_closes(&self) -> usize {
        self.shared.peer_closes.load(Ordering::SeqCst)
    }

    /// Lets one answer held by `x-reply-hold` send the rest of its body.
    pub fn release(&self) {
        self.shared.gate.add_permits(1);
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut open = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let index = shared.connections.fetch_add(1, Ordering::SeqCst);
        open.spawn(connection(stream, index, Arc::clone(&shared)));
    }
}

/// Serves one connection's requests in order until it closes.
async fn connection(mut stream: TcpStream, index: usize, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf, &shared).await else {
            if buf.is_empty() {
                shared.peer_closes.fetch_add(1, Ordering::SeqCst);
            } else {
                record(&shared, bad(index, &buf));
            }
            return;
        };
        let head_bytes: Vec<u8> = buf.drain(..head_end).collect();
        let mut request = parse_head(index, &head_bytes);
        if request.bad {
            record(&shared, request);
            return;
        }
        if request.header("x-reply-early").is_some() {
            // Answers before reading the body, as a backend refusing an
            // upload does, then reads (and drops) what comes until the
            // peer closes.
            let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large";
            record(&shared, request);
            let _ = stream.write_all(answer).await;
            let mut sink = [0u8; 16384];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
                shared.received.fetch_add(n, Ordering::SeqCst);
            }
            return;
        }
        if !read_body(&mut stream, &mut buf, &mut request, &shared).await {
            request.bad = true;
            record(&shared, request);
            return;
        }
        record(&shared, request.clone());
        match answer(&mut stream, &shared, &request, first).await {
            After::KeepAlive => first = false,
            After::Close => return,
            After::AwaitClose => {
                // Shut our side; the peer's close is counted as above.
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                if stream.read_to_end(&mut rest).await.is_ok() && rest.is_empty() {
                    shared.peer_closes.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
        }
    }
}

fn record(shared: &Shared, request: Seen) {
    shared.seen.lock().expect("not poisoned").push(request);
}

fn bad(connection: usize, bytes: &[u8]) -> Seen {
    Seen {
        connection,
        head: String::from_utf8_lossy(bytes).into_owned(),
        bad: true,
        ..Seen::default()
    }
}

/// Reads until `buf` holds a whole head; its length with the blank line.
/// `None` at EOF or past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf, shared).await {
            return None;
        }
    }
}

/// Reads more into `buf`; false at EOF or on an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> bool {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            shared.received.fetch_add(n, Ordering::SeqCst);
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn parse_head(connection: usize, bytes: &[u8]) -> Seen {
    let head = String::from_utf8_lossy(bytes).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return bad(connection, bytes);
    };
    if !version.starts_with("HTTP/1.") {
        return bad(connection, bytes);
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return bad(connection, bytes);
        };
        if name.is_empty() || name.contains(' ') {
            return bad(connection, bytes);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let (method, target) = (method.to_string(), target.to_string());
    Seen {
        connection,
        head,
        method,
        target,
        headers,
        ..Seen::default()
    }
}

/// Reads the body `request`'s head announces; false when its framing is
/// bad or the connection ends first.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &mut Seen,
    shared: &Shared,
) -> bool {
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(stream, buf, request, shared).await;
    }
    let Some(length) = request.header("content-length") else {
        return true;
    };
    let Ok(length) = length.parse::<usize>() else {
        return false;
    };
    while buf.len() < length {
        if !fill(stream, buf, shared).await {
            return false;
        }
    }
    request.raw_body = buf.drain(..length).collect();
    request.body = request.raw_body.clone();
    true
}

async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &mut Seen,
    shared: &Shared,
) -> bool {
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            if buf.len() > MAX_HEAD || !fill(stream, buf, shared).await {
                return false;
            }
        };
        let line: Vec<u8> = buf.drain(..line_end + 2).collect();
        request.raw_body.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line[..line_end]).into_owned();
        let size_text = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return false;
        };
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let end = loop {
                    if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    if !fill(stream, buf, shared).await {
                        return false;
                    }
                };
                let line: Vec<u8> = buf.drain(..end + 2).collect();
                request.raw_body.extend_from_slice(&line);
                if end == 0 {
                    return true;
                }
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                if let Some((name, value)) = text.split_once(':') {
                    request
                        .trailers
                        .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
        }
        while buf.len() < size + 2 {
            if !fill(stream, buf, shared).await {
                return false;
            }
        }
        let data: Vec<u8> = buf.drain(..size + 2).collect();
        request.raw_body.extend_from_slice(&data);
        if &data[size..] != b"\r\n" {
            return false;
        }
        request.body.extend_from_slice(&data[..size]);
    }
}

fn pattern(n: usize) -> Vec<u8> {
    b"0123456789".iter().copied().cycle().take(n).collect()
}

/// What the connection does after an answer.
enum After {
    /// Reads the next request.
    KeepAlive,
    /// Closes at once.
    Close,
    /// Shuts its write side and waits for the peer's close.
    AwaitClose,
}

/// Answers `request` (`first` on its connection).
async fn answer(stream: &mut TcpStream, shared: &Shared, request: &Seen, first: bool) -> After {
    let name = shared.name.as_str();
    let ask: HashMap<&str, &str> = request
        .headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("x-reply-").map(|k| (k, v.as_str())))
        .collect();
    let number = |key: &str| ask.get(key).and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = number("delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if ask.contains_key("drop") || (!first && ask.get("drop-reused") == Some(&name)) {
        return After::Close;
    }
    if ask.contains_key("garbage") {
        let _ = stream.write_all(b"this is not http\r\n\r\n").await;
        return After::Close;
    }
    let upgrade = request.header("upgrade").is_some()
        && request
            .header("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"));
    if upgrade {
        let protocol = request.header("upgrade").unwrap_or_default().to_string();
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: {protocol}\r\nconnection: upgrade\r\nx-backend: {name}\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            return After::Close;
        }
        let (mut reader, mut writer) = stream.split();
        match number("echo-bytes") {
            Some(n) => {
                let _ = tokio::io::copy(&mut (&mut reader).take(n), &mut writer).await;
            }
            None => {
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        }
        return After::Close;
    }
    let status = number("status").unwrap_or(200);
    let bodiless = request.method == "HEAD" || status < 200 || status == 204 || status == 304;
    let body = if let Some(n) = number("bytes") {
        pattern(usize::try_from(n).unwrap_or(0))
    } else if !request.body.is_empty() {
        request.body.clone()
    } else if status == 200 {
        format!("{name} {} {}\n", request.method, request.target).into_bytes()
    } else {
        format!("{name} {status}\n").into_bytes()
    };
    let close = ask.contains_key("close");
    let chunked = ask.contains_key("chunked");
    let mut head = format!("HTTP/1.1 {status} X\r\nx-backend: {name}\r\n");
    for line in request.headers_named("x-reply-header") {
        head.push_str(line);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else if status != 204 && status >= 200 {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return After::Close;
    }
    if !bodiless && !send_body(stream, shared, request, &body, chunked).await {
        return After::Close;
    }
    if close {
        After::Close
    } else if ask.contains_key("shutdown") {
        After::AwaitClose
    } else {
        After::KeepAlive
    }
}

/// Sends `body` in two halves (chunked or as is), pausing or holding
/// between them as the request asks, then the trailers of a chunked body
/// when the request accepts them; false when the connection failed.
async fn send_body(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Seen,
    body: &[u8],
    chunked: bool,
) -> bool {
    let frame = |part: &[u8]| {
        if chunked && !part.is_empty() {
            let mut framed = format!("{:x}\r\n", part.len()).into_bytes();
            framed.extend_from_slice(part);
            framed.extend_from_slice(b"\r\n");
            framed
        } else if chunked {
            Vec::new()
        } else {
            part.to_vec()
        }
    };
    let (first, rest) = body.split_at(body.len() / 2);
    if stream.write_all(&frame(first)).await.is_err() {
        return false;
    }
    let _ = stream.flush().await;
    if let Some(ms) = request
        .header("x-reply-pause-ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if request.header("x-reply-hold").is_some() {
        match shared.gate.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
    }
    if stream.write_all(&frame(rest)).await.is_err() {
        return false;
    }
    if chunked {
        let trailers = request
            .header("te")
            .is_some_and(|te| te.contains("trailers"));
        let end: &[u8] = if trailers {
            b"0\r\nx-trailer: done\r\n\r\n"
        } else {
            b"0\r\n\r\n"
        };
        if stream.write_all(end).await.is_err() {
            return false;
        }
    }
    true
}
