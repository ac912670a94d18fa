//! The client's connection as hyper's server sees it: the socket (with the
//! bytes that came after a PROXY protocol header first), and one rewrite.
//!
//! hyper answers the requests its parser refuses (400, 414, 431, 505) by
//! itself, with an empty body, before any of our code sees them, and has no
//! switch to turn that off. SPEC 4 wants every error the balancer sends to
//! carry a short plain-text body. So the one write that is exactly such an
//! answer (`HTTP/1.1 NNN Reason`, then `connection: close`,
//! `content-length: 0`, `date: ...` and nothing else: what
//! `Conn::on_parse_error` writes) is replaced by the same answer with a
//! `content-type` and a body. An answer relayed from a backend is never
//! this shape (a backend's answer keeps its own headers, and hyper writes
//! its date only when the backend sent none); the worst a backend could
//! get from an answer made exactly so is the same status with our words
//! as its body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::net::prefixed::Prefixed;

/// The client's stream under hyper.
#[derive(Debug)]
pub struct ClientIo {
    inner: Prefixed<TcpStream>,
    /// The rest of a replacement answer the socket has not taken yet.
    pending: Vec<u8>,
}

impl ClientIo {
    /// `inner`, with hyper's own error answers rewritten.
    pub fn new(inner: Prefixed<TcpStream>) -> ClientIo {
        ClientIo {
            inner,
            pending: Vec::new(),
        }
    }

    /// The stream (a replacement answer not written yet is dropped).
    pub fn into_inner(self) -> Prefixed<TcpStream> {
        self.inner
    }

    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n.min(self.pending.len()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The body of our version of hyper's answer with `status`.
fn text_of(status: &[u8]) -> Option<&'static str> {
    Some(match status {
        b"400" => "bad request: the request is not valid HTTP/1.1\n",
        b"414" => "uri too long\n",
        b"431" => "request header fields too large\n",
        b"505" => "http version not supported\n",
        _ => return None,
    })
}

/// Our answer in place of `written`, when `written` is one of hyper's own
/// error answers (see the module doc).
fn replacement(written: &[u8]) -> Option<Vec<u8>> {
    let rest = written.strip_prefix(b"HTTP/1.1 ")?;
    let status = rest.get(..3)?;
    let text = text_of(status)?;
    let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
    let (status_line, headers) = rest.split_at(line_end);
    let headers = headers.strip_prefix(b"\r\nconnection: close\r\ncontent-length: 0\r\n")?;
    let date = headers.strip_prefix(b"date: ")?.strip_suffix(b"\r\n\r\n")?;
    if date.len() != 29 || date.contains(&b'\r') {
        return None;
    }
    let mut out = Vec::with_capacity(written.len() + 64 + text.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line);
    out.extend_from_slice(
        b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: ",
    );
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(text.as_bytes());
    Some(out)
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(ours) = replacement(buf) {
            this.pending = ours;
            // hyper's bytes count as written: ours go out in their place
            // (now, or on the next write, flush or shutdown).
            let _ = this.poll_pending(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // An answer of hyper's own is one buffer (a head, no body).
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if replacement(only).is_some() {
                return self.poll_write(cx, only);
            }
        }
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn hypers_own_error_answers_get_a_text_body_and_nothing_else_is_touched() {
        let hypers = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
            content-length: 0\r\ndate: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\n";
        let ours = replacement(hypers).expect("rewritten");
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n\
             content-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
             content-length: 32\r\ndate: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\n\
             request header fields too large\n"
        );
        let bad = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
            date: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\n";
        assert!(replacement(bad).is_some());
        // A backend's answer relayed: its own headers, or a body, or
        // another status: untouched.
        for relayed in [
            &b"HTTP/1.1 400 Bad Request\r\nserver: x\r\nconnection: close\r\ncontent-length: 0\r\n\
               date: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 3\r\n\
               date: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\nabc",
            b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\
               date: Mon, 30 Nov 2026 12:36:09 GMT\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ] {
            assert!(
                replacement(relayed).is_none(),
                "{}",
                String::from_utf8_lossy(relayed)
            );
        }
    }
}
