//! A request body read from the client as it streams to the backend.
//!
//! The client connection's socket and its read buffer live in a [`Reader`]
//! in the connection's `Conn`, which the body reads while the request is
//! sent (hyper's backend connection polls the body on its own task) and
//! the connection reads once the exchange is over, for the next request;
//! the reader's request number tells a late poll of an earlier request's
//! body that it may not read any more. Only a std mutex guards it, held
//! for one poll at a time, never across an `.await`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::super::Conn;
use super::codec::{Chunk, ChunkedDecoder};
use super::socket::{Read, Socket};

/// How much is read from the socket at a time, at most.
const READ_CHUNK: usize = 16 * 1024;

/// The client connection's read side: its socket (shared with the writer,
/// which only writes) and the bytes read and not used yet.
#[derive(Debug, Default)]
pub struct Reader {
    /// `None` once the connection is over or upgraded.
    pub socket: Option<Arc<Socket>>,
    /// Bytes read and not used yet (a body's, or the next request's).
    pub buf: BytesMut,
    /// The current request's body was read to its end (or it had none):
    /// what follows in `buf` is the next request.
    pub body_done: bool,
    /// The request whose body may read now: the connection counts up when
    /// an exchange is over, and a body of an earlier request then fails.
    pub request: u64,
}

impl Reader {
    /// The read side of client `socket`, which sent `early` already.
    pub fn new(socket: Socket, early: &[u8]) -> Reader {
        Reader {
            socket: Some(Arc::new(socket)),
            buf: BytesMut::from(early),
            body_done: true,
            request: 0,
        }
    }
}

/// Locks `mutex` (a connection's reader, say), whatever a panic elsewhere
/// left.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client closed the connection before the body ended.
    #[error("the client closed the connection before the body ended")]
    Incomplete,
    /// The body's chunked framing is bad.
    #[error("bad chunked framing: {0}")]
    Framing(&'static str),
    /// Reading the socket failed.
    #[error("reading the request body failed: {0}")]
    Io(#[from] std::io::Error),
    /// The exchange this body belonged to is over.
    #[error("the request body is no longer readable")]
    Gone,
    /// The client's stream failed (a request read by hyper: an HTTP/2
    /// stream reset, a connection lost, bad framing).
    #[error("reading the request body failed: {0}")]
    Stream(hyper::Error),
}

/// What is left of a body being read, by how it is delimited: shared by
/// the request bodies read from clients and the answer bodies read from
/// backends (`client.rs`).
#[derive(Debug)]
pub enum Left {
    /// This many bytes (of a `Content-Length` body).
    Length(u64),
    /// A chunked body, decoded as it comes.
    Chunked(Box<ChunkedDecoder>),
    /// Until the peer closes (an answer without a length).
    Close,
    /// Read to its end.
    Done,
    /// Failed; every later poll fails too.
    Failed,
}

/// What a body's buffered bytes give next.
pub enum Piece {
    /// Data or trailers.
    Frame(Frame<Bytes>),
    /// The body's end (or it had ended).
    End,
    /// Nothing until more is read.
    More,
    /// Bad chunked framing (the body is now failed).
    Bad(&'static str),
}

impl Left {
    /// A body of `length` bytes.
    pub fn length(length: u64) -> Left {
        if length == 0 {
            Left::Done
        } else {
            Left::Length(length)
        }
    }

    /// The next piece of the body out of `buf`; `Done` once it ends.
    /// Not for a failed body (its caller says why it failed).
    pub fn take(&mut self, buf: &mut BytesMut) -> Piece {
        match self {
            Left::Length(remaining) => {
                if buf.is_empty() {
                    return Piece::More;
                }
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let data = buf.split_to(take).freeze();
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = Left::Done;
                }
                Piece::Frame(Frame::data(data))
            }
            Left::Chunked(decoder) => match decoder.decode(buf) {
                Ok(Some(Chunk::Data(data))) => Piece::Frame(Frame::data(data)),
                Ok(Some(Chunk::Trailers(trailers))) => Piece::Frame(Frame::trailers(trailers)),
                Ok(Some(Chunk::End)) => {
                    *self = Left::Done;
                    Piece::End
                }
                Ok(None) => Piece::More,
                Err(refusal) => {
                    *self = Left::Failed;
                    Piece::Bad(refusal.text)
                }
            },
            Left::Close if buf.is_empty() => Piece::More,
            Left::Close => Piece::Frame(Frame::data(buf.split().freeze())),
            Left::Done | Left::Failed => Piece::End,
        }
    }

    /// Marks the body failed, with `error` for the poll that found it.
    pub fn fail<E>(&mut self, error: E) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        *self = Left::Failed;
        Poll::Ready(Some(Err(error)))
    }

    /// The body was read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self, Left::Done)
    }

    /// What is known of the body's remaining size.
    pub fn size_hint(&self) -> SizeHint {
        match self {
            Left::Length(n) => SizeHint::with_exact(*n),
            Left::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// The body of a request from the client.
#[derive(Debug)]
pub struct ClientBody {
    /// The connection, whose reader the body reads; `None` for a request
    /// without a body.
    conn: Option<Arc<Conn>>,
    /// The request (the connection's number for it) this is the body of.
    request: u64,
    left: Left,
    /// Told once the body is first polled, when the client waits for
    /// `100 Continue` before sending it.
    wants_continue: Option<Arc<Notify>>,
}

impl ClientBody {
    /// A body of `length` bytes.
    pub fn length(
        conn: Arc<Conn>,
        request: u64,
        length: u64,
        wants_continue: Option<Arc<Notify>>,
    ) -> Self {
        ClientBody {
            conn: Some(conn),
            request,
            left: Left::length(length),
            wants_continue,
        }
    }

    /// A chunked body.
    pub fn chunked(
        conn: Arc<Conn>,
        request: u64,
        decoder: ChunkedDecoder,
        wants_continue: Option<Arc<Notify>>,
    ) -> Self {
        ClientBody {
            conn: Some(conn),
            request,
            left: Left::Chunked(Box::new(decoder)),
            wants_continue,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        ClientBody {
            conn: None,
            request: 0,
            left: Left::Done,
            wants_continue: None,
        }
    }
}

/// Reads more from `reader`'s socket into its buffer: `Ready(Ok(n))` with
/// the bytes read (0 at end of stream).
fn fill(reader: &mut Reader, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
    let Reader { socket, buf, .. } = reader;
    let Some(socket) = socket.as_deref() else {
        return Poll::Ready(Err(BodyError::Gone));
    };
    poll_fill(socket, buf, cx).map_err(BodyError::Io)
}

/// Reads more from `socket` (a client's, or a backend's) into `buf` (with
/// room for a body's read): `Ready(Ok(n))` with the bytes read, 0 at end
/// of stream.
pub fn poll_fill(
    socket: &impl Read,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    buf.reserve(READ_CHUNK);
    loop {
        std::task::ready!(socket.poll_read_ready(cx))?;
        match socket.read_some(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            read => return Poll::Ready(read),
        }
    }
}

/// Reads once what `socket` has into `buf`'s spare room, without waiting
/// (`WouldBlock` when nothing was there). A read that leaves room in `buf`
/// emptied the socket, so it also clears the socket's read readiness, as
/// tokio's own reads do: the next wait then sleeps at once instead of
/// first failing a read (one `recvfrom` per request less).
pub fn read_some(socket: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut got = 0;
    let read = socket.try_io(tokio::io::Interest::READABLE, || {
        got = socket.try_read_buf(buf)?;
        if got > 0 && got < spare {
            // Not an error: tells tokio to clear the readiness it saw.
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        read => read,
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(notify) = self.wants_continue.take() {
            notify.notify_one();
        }
        let this = &mut *self;
        let Some(conn) = this.conn.clone() else {
            return Poll::Ready(None);
        };
        let mut reader = lock(&conn.reader);
        if reader.request != this.request {
            drop(reader);
            return this.left.fail(BodyError::Gone);
        }
        loop {
            if let Left::Failed = this.left {
                return Poll::Ready(Some(Err(BodyError::Gone)));
            }
            match this.left.take(&mut reader.buf) {
                Piece::Frame(frame) => {
                    if this.left.is_done() {
                        reader.body_done = true;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Piece::End => {
                    reader.body_done = true;
                    return Poll::Ready(None);
                }
                Piece::Bad(text) => {
                    drop(reader);
                    return this.left.fail(BodyError::Framing(text));
                }
                Piece::More => {}
            }
            match fill(&mut reader, cx) {
                Poll::Ready(Ok(0)) => {
                    drop(reader);
                    return this.left.fail(BodyError::Incomplete);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    drop(reader);
                    return this.left.fail(e);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.left.size_hint()
    }
}
