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
//! - `x-reply-garbage: 1`: answers bytes that are not HTTP, then closes;
//! - `x-reply-drop: 1`: closes without answering;
//! - `upgrade: ...` with `connection: upgrade`: `101`, then echoes bytes.
//!
//! A head or framing it cannot read is recorded with `bad: true` and the
//! connection closed. Stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    /// A backend named `name` (its `x-backend` header and answers).
    pub fn start(name: &str) -> HttpBackend {
        let listener = runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind an http backend");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = runtime().spawn(serve(
            listener,
            name.to_string(),
            Arc::clone(&seen),
            Arc::clone(&connections),
        ));
        HttpBackend {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
) {
    let mut open = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let index = connections.fetch_add(1, Ordering::SeqCst);
        open.spawn(connection(stream, index, name.clone(), Arc::clone(&seen)));
    }
}

/// Serves one connection's requests in order until it closes.
async fn connection(
    mut stream: TcpStream,
    index: usize,
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            if !buf.is_empty() {
                record(&seen, bad(index, &buf));
            }
            return;
        };
        let head_bytes: Vec<u8> = buf.drain(..head_end).collect();
        let mut request = parse_head(index, &head_bytes);
        if request.bad {
            record(&seen, request);
            return;
        }
        if !read_body(&mut stream, &mut buf, &mut request).await {
            request.bad = true;
            record(&seen, request);
            return;
        }
        record(&seen, request.clone());
        if !answer(&mut stream, &name, &request).await {
            return;
        }
    }
}

fn record(seen: &Mutex<Vec<Seen>>, request: Seen) {
    seen.lock().expect("not poisoned").push(request);
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
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf).await {
            return None;
        }
    }
}

/// Reads more into `buf`; false at EOF or on an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
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
async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, request: &mut Seen) -> bool {
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(stream, buf, request).await;
    }
    let Some(length) = request.header("content-length") else {
        return true;
    };
    let Ok(length) = length.parse::<usize>() else {
        return false;
    };
    while buf.len() < length {
        if !fill(stream, buf).await {
            return false;
        }
    }
    request.raw_body = buf.drain(..length).collect();
    request.body = request.raw_body.clone();
    true
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, request: &mut Seen) -> bool {
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            if buf.len() > MAX_HEAD || !fill(stream, buf).await {
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
                    if !fill(stream, buf).await {
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
            if !fill(stream, buf).await {
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

/// Answers `request`; false when the connection must end.
async fn answer(stream: &mut TcpStream, name: &str, request: &Seen) -> bool {
    let ask: HashMap<&str, &str> = request
        .headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("x-reply-").map(|k| (k, v.as_str())))
        .collect();
    let number = |key: &str| ask.get(key).and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = number("delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if ask.contains_key("drop") {
        return false;
    }
    if ask.contains_key("garbage") {
        let _ = stream.write_all(b"this is not http\r\n\r\n").await;
        return false;
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
            return false;
        }
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
        return false;
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
        return false;
    }
    if !bodiless {
        let (first, rest) = body.split_at(body.len() / 2);
        let write = |part: &[u8]| {
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
        if stream.write_all(&write(first)).await.is_err() {
            return false;
        }
        if let Some(ms) = number("pause-ms") {
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if stream.write_all(&write(rest)).await.is_err() {
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
    }
    !close
}
