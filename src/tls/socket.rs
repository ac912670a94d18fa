//! A client's TLS connection, its handshake done, that two tasks may read
//! and write at once: the http listener's own HTTP/1.1 server reads a
//! request's body on the backend connection's task while the client's
//! task writes (`100 Continue`, an answer), as it does with a plain socket.
//!
//! [`TlsSocket`] keeps the TCP socket and the rustls session side by side,
//! the session behind a std mutex held for one call at a time, never
//! across an `.await`. Its calls never wait: like a non-blocking socket's,
//! they answer `WouldBlock` when the TCP socket has nothing to give or no
//! room to take, and the caller then waits on the socket's readiness
//! (`poll_read_ready`, `poll_write_ready`). Every TCP read and write is
//! tokio's `try_read`/`try_write`, which clear the readiness they find
//! spent, so such a wait sleeps until the socket has moved.
//!
//! What rustls keeps between calls decides the waits:
//! - decrypted bytes not read yet (several records may come in one TCP
//!   read): [`TlsSocket::poll_read_ready`] is ready while there are any,
//!   whatever the socket says;
//! - records written but not sent yet (rustls takes up to 64 KiB ahead of
//!   the socket): a write that rustls took is done only once
//!   [`TlsSocket::try_flush`] has sent them; an answer's writer flushes
//!   after its last bytes.
//!
//! It also serves as a relay's client stream ([`AsyncRead`],
//! [`AsyncWrite`]) once a request upgraded its connection (WebSocket).

use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A server TLS connection shared by a reader and a writer (see the
/// module doc).
pub struct TlsSocket {
    tcp: TcpStream,
    session: Mutex<ServerConnection>,
    /// `close_notify` was queued: sent once only.
    closing: AtomicBool,
}

impl std::fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// The TCP socket as rustls reads and writes it: without waiting.
struct Io<'a>(&'a TcpStream);

impl io::Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSocket {
    /// The connection `stream`'s handshake made.
    pub fn new(stream: TlsStream<TcpStream>) -> TlsSocket {
        let (tcp, session) = stream.into_inner();
        TlsSocket {
            tcp,
            session: Mutex::new(session),
            closing: AtomicBool::new(false),
        }
    }

    /// The session, whatever a panic elsewhere left.
    fn session(&self) -> MutexGuard<'_, ServerConnection> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ready when a read may find bytes or the end: at once while rustls
    /// holds decrypted bytes (or the client's `close_notify`, or an
    /// error), else when the socket is readable.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let buffered = match self.session().process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        };
        if buffered {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Reads decrypted bytes without waiting, giving each piece to `take`,
    /// which keeps what it can and says how much: `Ok(n)` with the bytes
    /// taken (0: the client sent `close_notify`, or `take` had no room),
    /// `WouldBlock` when the socket has no more for now,
    /// `UnexpectedEof` when the client closed without `close_notify`,
    /// `InvalidData` when it sent what TLS refuses (the alert is sent).
    pub fn read_with(&self, mut take: impl FnMut(&[u8]) -> usize) -> io::Result<usize> {
        let mut session = self.session();
        let mut taken = 0;
        loop {
            let mut reader = session.reader();
            match reader.fill_buf() {
                Ok(chunk) if !chunk.is_empty() => {
                    let len = chunk.len();
                    let n = take(chunk).min(len);
                    reader.consume(n);
                    taken += n;
                    if n < len {
                        // `take` is full.
                        return Ok(taken);
                    }
                    continue;
                }
                Ok(_) => return Ok(taken),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => return Ok(taken),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if taken > 0 { Ok(taken) } else { Err(e) },
            }
            // Nothing decrypted left: read what the socket has.
            if session.read_tls(&mut Io(&self.tcp))? > 0 {
                if let Err(e) = session.process_new_packets() {
                    // rustls queued the alert that says why.
                    let _ = flush_queued(&mut session, &self.tcp);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // An answer rustls owes (a key update's) goes out now,
                // as far as the socket takes it; a writer sends the rest.
                if session.wants_write() {
                    let _ = flush_queued(&mut session, &self.tcp);
                }
            }
        }
    }

    /// Ready when the socket may take more.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Writes what it can of `bytes` without waiting: `Ok(n)` with the
    /// bytes rustls took (some may still wait to be sent: see
    /// [`TlsSocket::try_flush`]), `WouldBlock` when it took none because
    /// the socket is full.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut session = self.session();
        // Twice at most: a second try only after the first found rustls'
        // buffer full and then sent all of it.
        for _ in 0..2 {
            let took = session.writer().write(bytes)?;
            match flush_queued(&mut session, &self.tcp) {
                Ok(()) if took == 0 && !bytes.is_empty() => {}
                Ok(()) => return Ok(took),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && took > 0 => return Ok(took),
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::WriteZero.into())
    }

    /// Sends the records rustls holds without waiting: `Ok` once none is
    /// left, `WouldBlock` while some are.
    pub fn try_flush(&self) -> io::Result<()> {
        flush_queued(&mut self.session(), &self.tcp)
    }

    /// Queues `close_notify` (once) and sends what the socket takes at
    /// once: the clean end of a TLS connection, which tells a client
    /// reading an answer to the close that it has all of it.
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut session = self.session();
        session.send_close_notify();
        let _ = flush_queued(&mut session, &self.tcp);
    }

    /// [`TlsSocket::close`], then the TCP socket's write side shut.
    pub fn shutdown_write(&self) {
        self.close();
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
    }
}

/// Writes the records `session` holds to `tcp` until none is left (`Ok`)
/// or the socket is full (`WouldBlock`).
fn flush_queued(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut Io(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let read = self.read_with(|chunk| {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                n
            });
            match read {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                flushed => return Poll::Ready(flushed),
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.session().send_close_notify();
        }
        ready!(self.as_mut().poll_flush(cx))?;
        socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write)?;
        Poll::Ready(Ok(()))
    }
}
