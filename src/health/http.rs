//! The http probe: `GET path HTTP/1.1` to the backend; the check passes
//! when the answer's status is the expected one, all within the timeout.
//!
//! Only the status line is read (at most [`MAX_STATUS_LINE`] bytes), then
//! the connection is closed: a check needs no body, and a backend that
//! sends a large or endless one cannot hold it. The request asks for
//! `Connection: close` and names the backend by its address as written in
//! `Host`, as a client of the balancer would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ProbeError;

/// The longest status line read; a longer one is malformed.
pub const MAX_STATUS_LINE: usize = 1024;

/// What one http check asks and expects.
#[derive(Debug, Clone, Copy)]
pub struct HttpCheck<'a> {
    /// The backend's address as written, sent as `Host`.
    pub host: &'a str,
    /// The request path; validated to start with `/` and be visible ASCII.
    pub path: &'a str,
    /// The status that passes.
    pub expect_status: u16,
}

/// Asks `addr` (from `source` when set) for `check.path` within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    preamble: &[u8],
    check: HttpCheck<'_>,
) -> Result<(), ProbeError> {
    let exchange = async {
        let mut stream = crate::net::connect::connect(addr, source, timeout).await?;
        if !preamble.is_empty() {
            stream.write_all(preamble).await.map_err(ProbeError::Io)?;
        }
        let status = ask(&mut stream, check).await?;
        if status == check.expect_status {
            Ok(())
        } else {
            Err(ProbeError::Status {
                got: status,
                expected: check.expect_status,
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

/// Sends the request and reads the status code of the answer.
async fn ask(stream: &mut TcpStream, check: HttpCheck<'_>) -> Result<u16, ProbeError> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: balancer-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        check.path, check.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let line = read_status_line(stream).await?;
    status_of(&line)
}

/// Reads up to the first CRLF, at most [`MAX_STATUS_LINE`] bytes.
async fn read_status_line(stream: &mut TcpStream) -> Result<Vec<u8>, ProbeError> {
    let mut line = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
        let Some(read) = chunk.get(..n) else {
            return Err(ProbeError::Malformed("read past the buffer"));
        };
        if n == 0 {
            return Err(ProbeError::Malformed(
                "connection closed before a status line",
            ));
        }
        line.extend_from_slice(read);
        if let Some(end) = line.windows(2).position(|w| w == b"\r\n") {
            line.truncate(end);
            return Ok(line);
        }
        if line.len() > MAX_STATUS_LINE {
            return Err(ProbeError::Malformed("status line too long"));
        }
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn status_of(line: &[u8]) -> Result<u16, ProbeError> {
    let malformed = || ProbeError::Malformed("not an HTTP/1 status line");
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(malformed)?;
    let code = match rest {
        [b'0' | b'1', b' ', a, b, c, ..] => [*a, *b, *c],
        _ => return Err(malformed()),
    };
    if rest.get(5).is_some_and(|&b| b != b' ') {
        return Err(malformed());
    }
    let text = std::str::from_utf8(&code).map_err(|_| malformed())?;
    match text.parse::<u16>() {
        Ok(status) if (100..=599).contains(&status) && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(status)
        }
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{HttpCheck, probe, status_of};

    const CHECK: HttpCheck<'static> = HttpCheck {
        host: "app:8080",
        path: "/health",
        expect_status: 200,
    };

    /// A server that answers one request with `answer` and hands back what
    /// it was sent.
    async fn answering(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[tokio::test]
    async fn a_200_answer_passes_and_the_request_names_path_and_host() {
        let (addr, server) = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        probe(addr, None, Duration::from_secs(5), &[], CHECK)
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nHost: app:8080\r\n"), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_wrong_status_fails_naming_both() {
        let (addr, _server) = answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = probe(addr, None, Duration::from_secs(5), &[], CHECK)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "status 503, expected 200");
    }

    #[tokio::test]
    async fn a_status_line_split_over_reads_is_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await.unwrap();
            for part in [&b"HTTP/1."[..], b"0 20", b"4 No Content\r", b"\n\r\n"] {
                stream.write_all(part).await.unwrap();
                stream.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let check = HttpCheck {
            expect_status: 204,
            ..CHECK
        };
        probe(addr, None, Duration::from_secs(5), &[], check)
            .await
            .unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_backend_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = probe(addr, None, Duration::from_millis(200), &[], CHECK)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 200ms");
        drop(listener);
    }

    #[tokio::test]
    async fn a_close_without_an_answer_fails() {
        let (addr, _server) = answering(b"").await;
        let err = probe(addr, None, Duration::from_secs(5), &[], CHECK)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed answer: connection closed before a status line"
        );
    }

    #[tokio::test]
    async fn the_demo_backends_health_path_passes() {
        use crate::demo::backend::{BackendOptions, serve};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let options = BackendOptions {
            name: "b1".into(),
            ..BackendOptions::default()
        };
        let server = tokio::spawn(serve(listener, std::sync::Arc::new(options), stop.clone()));
        probe(addr, None, Duration::from_secs(5), &[], CHECK)
            .await
            .unwrap();
        let missing = HttpCheck {
            path: "/health",
            expect_status: 204,
            ..CHECK
        };
        let err = probe(addr, None, Duration::from_secs(5), &[], missing)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "status 200, expected 204");
        stop.cancel();
        let _ = server.await;
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK").ok(), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 404").ok(), Some(404));
        assert_eq!(status_of(b"HTTP/1.1 599 x").ok(), Some(599));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 099 x",
            b"HTTP/1.1 +20 x",
            b"SSH-2.0-OpenSSH",
            b"",
        ] {
            assert!(status_of(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
