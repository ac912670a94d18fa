//! One HTTP/1.1 request over a fresh loopback connection and its answer
//! ([`HttpResponse`]): for the demo backends, the admin API and WebDriver.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::PROMPTLY;
use super::clients::read_until;

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

/// Sends `GET path` to `addr` and reads the answer, as [`http_request`]
/// does, within [`PROMPTLY`].
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    http_request(addr, "GET", path, &[], None, PROMPTLY)
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

/// One admin API call on `admin`: `method` on `path` with a JSON `body`
/// (or none), answered within the deadline; panics naming the call when
/// it gets no answer.
pub fn admin_call(admin: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let headers = [("Content-Type", "application/json")];
    let body = body.map(str::as_bytes);
    http_request(admin, method, path, &headers, body, super::DEADLINE)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Sends one HTTP/1.1 request with any method, headers and body to `addr`
/// (`Connection: close`) and reads the answer: its `Content-Length` bytes
/// of body, or to EOF without one; everything within `within`. For the
/// demo backends, the admin API and WebDriver.
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
    let (raw, _) = read_until(&mut stream, within, |raw| answer_end(raw).is_some())
        .map_err(|e| format!("no whole answer from {addr}: {e}"))?;
    // Without a Content-Length, or when the server closed (or reset the
    // connection over a refused body left unread) first, the answer is
    // what was read.
    let end = answer_end(&raw).unwrap_or(raw.len());
    parse_http_response(&String::from_utf8_lossy(&raw[..end]))
}

/// Where the answer in `raw` ends, once its head and as many body bytes
/// as its `Content-Length` says have arrived.
fn answer_end(raw: &[u8]) -> Option<usize> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = parse_http_response(&String::from_utf8_lossy(&raw[..head_end])).ok()?;
    let length: usize = head.header("content-length")?.parse().ok()?;
    (raw.len() >= head_end + length).then_some(head_end + length)
}
