//! A request body read from the client as it streams to the backend.
//!
//! The client connection's read half and its buffer live in a [`Reader`]
//! that the body borrows while the request is sent (hyper's backend
//! connection polls the body on its own task) and that the connection
//! takes back once the exchange is over, to read the next request. Only a
//! std mutex guards it, held for one poll at a time, never across an
//! `.await`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;

use super::codec::{Chunk, ChunkedDecoder};

/// How much is read from the socket at a time, at most.
const READ_CHUNK: usize = 16 * 1024;

/// The client connection's read side: its socket half and the bytes read
/// and not used yet.
#[derive(Debug, Default)]
pub struct Reader {
    /// `None` once taken back by the connection (a late poll of the body
    /// then fails).
    pub half: Option<OwnedReadHalf>,
    /// Bytes read and not used yet (a body's, or the next request's).
    pub buf: BytesMut,
    /// The current request's body was read to its end (or it had none):
    /// what follows in `buf` is the next request.
    pub body_done: bool,
}

/// A reader shared between the connection and the body of the request it
/// is answering.
pub type SharedReader = Arc<Mutex<Reader>>;

/// Locks `reader`, whatever a panic elsewhere left.
pub fn lock(reader: &Mutex<Reader>) -> MutexGuard<'_, Reader> {
    reader.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// The connection took its reader back.
    #[error("the request body is no longer readable")]
    Gone,
}

#[derive(Debug)]
enum Left {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body, decoded as it comes.
    Chunked(Box<ChunkedDecoder>),
    /// Read to its end.
    Done,
    /// Failed; every later poll fails too.
    Failed,
}

/// The body of a request from the client.
#[derive(Debug)]
pub struct ClientBody {
    /// `None` for a request without a body.
    reader: Option<SharedReader>,
    left: Left,
    /// Told once the body is first polled, when the client waits for
    /// `100 Continue` before sending it.
    wants_continue: Option<Arc<Notify>>,
}

impl ClientBody {
    /// A body of `length` bytes.
    pub fn length(reader: SharedReader, length: u64, wants_continue: Option<Arc<Notify>>) -> Self {
        let left = if length == 0 {
            Left::Done
        } else {
            Left::Length(length)
        };
        ClientBody {
            reader: Some(reader),
            left,
            wants_continue,
        }
    }

    /// A chunked body.
    pub fn chunked(
        reader: SharedReader,
        decoder: ChunkedDecoder,
        wants_continue: Option<Arc<Notify>>,
    ) -> Self {
        ClientBody {
            reader: Some(reader),
            left: Left::Chunked(Box::new(decoder)),
            wants_continue,
        }
    }

    /// No body.
    pub fn empty() -> Self {
        ClientBody {
            reader: None,
            left: Left::Done,
            wants_continue: None,
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.left = Left::Failed;
        Poll::Ready(Some(Err(error)))
    }
}

/// Reads more from `reader`'s socket into its buffer: `Ready(Ok(n))` with
/// the bytes read (0 at end of stream).
fn fill(reader: &mut Reader, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
    let Reader { half, buf, .. } = reader;
    let Some(half) = half.as_mut() else {
        return Poll::Ready(Err(BodyError::Gone));
    };
    buf.reserve(READ_CHUNK);
    tokio_util::io::poll_read_buf(Pin::new(half), cx, buf).map_err(BodyError::Io)
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
        let Some(shared) = this.reader.clone() else {
            return Poll::Ready(None);
        };
        let mut reader = lock(&shared);
        loop {
            match &mut this.left {
                Left::Done => return Poll::Ready(None),
                Left::Failed => return Poll::Ready(Some(Err(BodyError::Gone))),
                Left::Length(remaining) => {
                    if !reader.buf.is_empty() {
                        let take = usize::try_from(*remaining)
                            .unwrap_or(usize::MAX)
                            .min(reader.buf.len());
                        let data = reader.buf.split_to(take).freeze();
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            this.left = Left::Done;
                            reader.body_done = true;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Left::Chunked(decoder) => match decoder.decode(&mut reader.buf) {
                    Ok(Some(Chunk::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Chunk::Trailers(trailers))) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Some(Chunk::End)) => {
                        this.left = Left::Done;
                        reader.body_done = true;
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(refusal) => {
                        drop(reader);
                        return this.fail(BodyError::Framing(refusal.text));
                    }
                },
            }
            match fill(&mut reader, cx) {
                Poll::Ready(Ok(0)) => {
                    drop(reader);
                    return this.fail(BodyError::Incomplete);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    drop(reader);
                    return this.fail(e);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Length(n) => SizeHint::with_exact(n),
            Left::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
