//! One HTTP/1.1 request over a fresh loopback connection and its answer
//! ([`HttpResponse`]): for the demo backends, the admin API and WebDriver.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::PROMPTLY;
use super::clients::read_until_closed;

/// An HTTP/1.1 answer as a test reads it.
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` with `Connection: close` to `addr` and reads the
/// answer to EOF.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let (raw, _) = read_until_closed(&mut stream, PROMPTLY)?;
    parse_http_response(&String::from_utf8_lossy(&raw))
}

fn parse_http_response(raw: &str) -> Result<HttpResponse, String> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Sends one HTTP/1.1 request with any method, headers and body to `addr`
/// (`Connection: close`) and reads the answer: its `Content-Length` bytes
/// of body, or to EOF without one; everything within `within`. For the
/// admin API and for WebDriver.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    within: Duration,
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
    } else {
        request.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&request)
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let deadline = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let answer = parse_http_response(&String::from_utf8_lossy(&raw[..end + 4]))?;
            let length = answer
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]);
                    return Ok(HttpResponse {
                        body: body.into_owned(),
                        ..answer
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no whole answer from {addr} within {within:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set a read timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => return parse_http_response(&String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (a refused body left unread) still
            // leaves what was read.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => {
                return parse_http_response(&String::from_utf8_lossy(&raw));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
}
