//! The client connection our HTTP/1.1 server reads and writes: a plain TCP
//! socket, or one carrying TLS ([`TlsSocket`]). Both are used the same
//! way, without waiting: a read or write that cannot go on answers
//! `WouldBlock`, and the caller waits on the readiness. Over TLS, a write
//! may leave records in rustls' buffer: a writer calls
//! [`Socket::try_flush`] until it succeeds before its bytes count as sent.

use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::body::read_some;
use crate::tls::TlsSocket;

/// A client connection of an http listener.
#[derive(Debug)]
pub enum Socket {
    /// Cleartext.
    Plain(TcpStream),
    /// Over TLS (boxed: a cleartext connection keeps only its socket).
    Tls(Box<TlsSocket>),
}

impl Socket {
    /// Ends the connection cleanly before it is dropped: over TLS, its
    /// `close_notify`, sent as far as the socket takes it at once (a
    /// plain socket's FIN comes with the drop).
    pub fn close(&self) {
        if let Socket::Tls(tls) = self {
            tls.close();
        }
    }

    /// Shuts the write side: no more bytes follow (over TLS, after its
    /// `close_notify`).
    pub fn shutdown_write(&self) {
        match self {
            Socket::Plain(tcp) => {
                let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
            }
            Socket::Tls(tls) => tls.shutdown_write(),
        }
    }
}

/// What a reader needs of a connection, whose reads never wait: a
/// client's [`Socket`], or a backend's plain socket.
pub trait Read {
    /// Ready when a read may find bytes or the end.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads once what the connection has into `buf`'s spare room (at
    /// least one byte's room is the caller's to make), without waiting:
    /// `Ok(0)` at its end, `WouldBlock` when nothing was there.
    fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize>;
}

impl Read for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        read_some(self, buf)
    }
}

impl Read for Socket {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Plain(tcp) => tcp.poll_read_ready(cx),
            Socket::Tls(tls) => tls.poll_read_ready(cx),
        }
    }

    fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => read_some(tcp, buf),
            Socket::Tls(tls) => {
                // At most the spare room, as a plain read (and at least a
                // byte, so that 0 means the end).
                let mut room = (buf.capacity() - buf.len()).max(1);
                tls.read_with(|chunk| {
                    let n = chunk.len().min(room);
                    buf.extend_from_slice(&chunk[..n]);
                    room -= n;
                    n
                })
            }
        }
    }
}

/// What a writer needs of a connection, whose writes never wait: a
/// client's [`Socket`], or a backend's plain socket.
pub trait Write {
    /// Ready when a write may go on.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Writes what it can of `bytes` without waiting: `Ok(n)` with the
    /// bytes taken, `WouldBlock` when none.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;

    /// Sends what the connection still holds of the bytes written (TLS
    /// records), without waiting: `Ok` once all is sent, `WouldBlock`
    /// while some waits.
    fn try_flush(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for TcpStream {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, bytes)
    }
}

impl Write for Socket {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Plain(tcp) => tcp.poll_write_ready(cx),
            Socket::Tls(tls) => tls.poll_write_ready(cx),
        }
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write(bytes),
            Socket::Tls(tls) => tls.try_write(bytes),
        }
    }

    fn try_flush(&self) -> io::Result<()> {
        match self {
            Socket::Plain(_) => Ok(()),
            Socket::Tls(tls) => tls.try_flush(),
        }
    }
}
