//! Our own HTTP/1.1 client side: one request written to a backend
//! connection ([`send`]), its answer's head read, and its body streamed
//! ([`BackendBody`]) until its end, when the connection can go back to the
//! pool. All of it runs on the client connection's task, with no task per
//! backend connection; only a request body is written by a task of its own
//! ([`pump`]), so that an answer that comes before the body's end (a 413,
//! say) is read as it comes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::super::body::RequestBody;
use super::body::{Left, Piece, poll_fill, read_some};
use super::codec::{self, AnswerFraming, AnswerHead, ChunkedDecoder};
use super::{HEAD_READ, MAX_CHUNK_LINE, write_all};
use crate::net::pool::BackendConn;

/// The largest answer head taken from a backend (as hyper's client: more is
/// a 502).
const MAX_ANSWER_HEAD: usize = 64 * 1024;

/// The largest trailer section taken from a backend.
const MAX_ANSWER_TRAILERS: usize = 64 * 1024;

/// What passed through a client's request body on its way to a backend.
#[derive(Debug, Default)]
pub struct Tally {
    /// Data bytes read from the client so far.
    pub bytes: AtomicU64,
    /// Reading the client's body failed (its framing was bad, or it left):
    /// the request failed because of the client, not of the backend.
    pub failed: AtomicBool,
    /// The whole body reached the backend's socket.
    pub sent: AtomicBool,
}

/// A request body on its way: the client's body, whether it goes chunked,
/// and its tally.
pub struct Outgoing {
    pub body: RequestBody,
    pub chunked: bool,
    pub tally: Arc<Tally>,
}

/// Why an exchange with a backend failed.
pub enum Failure {
    /// The request head could not be written: nothing reached the backend,
    /// and the body (if any) comes back untouched.
    NotSent(Option<Outgoing>),
    /// The connection closed or failed before any byte of an answer.
    NoAnswer,
    /// What came is not an HTTP/1.x answer head (or was cut inside one).
    BadAnswer(&'static str),
    /// Reading the client's body failed.
    ClientBody,
}

/// An answer head and its body, or the backend's connection after a `101`.
pub struct Answer {
    pub head: AnswerHead,
    pub body: BackendBody,
}

/// Sends request `head` (encoded) and `outgoing`'s body on `conn`, and
/// reads the answer's head; `head_request`: the request is a `HEAD`. `1xx`
/// answers other than `101` are read and dropped.
pub async fn send(
    mut conn: BackendConn,
    head: &[u8],
    outgoing: Option<Outgoing>,
    head_request: bool,
) -> Result<Answer, Failure> {
    if write_all(&*conn.socket, head).await.is_err() {
        return Err(Failure::NotSent(outgoing));
    }
    let (tally, mut pump) = match outgoing {
        Some(outgoing) => {
            let tally = Arc::clone(&outgoing.tally);
            let task = tokio::spawn(pump(Arc::clone(&conn.socket), outgoing));
            (Some(tally), Some(Pump(task)))
        }
        None => (None, None),
    };
    let mut pumping = pump.is_some();
    let mut got_any = false;
    let head = loop {
        if !conn.buf.is_empty() {
            got_any = true;
            match codec::parse_answer(&mut conn.buf, MAX_ANSWER_HEAD, head_request) {
                Ok(Some(answer))
                    if answer.status.is_informational()
                        && answer.status != hyper::StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue;
                }
                Ok(Some(answer)) => break answer,
                Ok(None) => {}
                Err(refusal) => return Err(Failure::BadAnswer(refusal)),
            }
        }
        let socket = &*conn.socket;
        let ready = std::future::poll_fn(|cx| {
            if let (Some(task), true) = (pump.as_mut(), pumping) {
                if Pin::new(&mut task.0).poll(cx).is_ready() {
                    return Poll::Ready(Err(()));
                }
            }
            socket.poll_read_ready(cx).map(Ok)
        })
        .await;
        match ready {
            Err(()) => {
                // The body is written (or failed): nothing more to watch.
                pumping = false;
                if tally
                    .as_ref()
                    .is_some_and(|t| t.failed.load(Ordering::Relaxed))
                {
                    return Err(Failure::ClientBody);
                }
                continue;
            }
            Ok(Err(_)) => return Err(Failure::NoAnswer),
            Ok(Ok(())) => {}
        }
        conn.buf.reserve(HEAD_READ);
        match read_some(socket, &mut conn.buf) {
            Ok(0) if got_any => return Err(Failure::BadAnswer("the answer head was cut short")),
            Ok(0) => return Err(Failure::NoAnswer),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) if got_any => return Err(Failure::BadAnswer("the answer head was cut short")),
            Err(_) => return Err(Failure::NoAnswer),
        }
    };
    let left = match head.framing {
        AnswerFraming::None => Left::Done,
        AnswerFraming::Length(n) => Left::Length(n),
        AnswerFraming::Chunked => Left::Chunked(Box::new(ChunkedDecoder::new(
            MAX_CHUNK_LINE,
            MAX_ANSWER_TRAILERS,
        ))),
        AnswerFraming::Close => Left::Close,
    };
    let body = BackendBody {
        reusable: head.keep_alive,
        conn: Some(conn),
        left,
        pump,
        tally,
    };
    Ok(Answer { head, body })
}

/// The task writing a request body, stopped when dropped (the answer was
/// abandoned, or came before the body's end).
#[derive(Debug)]
struct Pump(JoinHandle<()>);

impl Drop for Pump {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes `outgoing`'s body to `socket` (chunk-encoded when it goes
/// chunked, with the client's trailers), counting it in its tally.
async fn pump(socket: Arc<TcpStream>, outgoing: Outgoing) {
    let Outgoing {
        mut body,
        chunked,
        tally,
    } = outgoing;
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => {
                if chunked {
                    codec::encode_last_chunk(&mut out, None);
                }
                break;
            }
            Some(Err(_)) => {
                tally.failed.store(true, Ordering::Relaxed);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    tally.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if chunked {
                        codec::encode_chunk(&mut out, &data);
                    } else if write_all(&*socket, &data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                        codec::encode_last_chunk(&mut out, Some(&trailers));
                        break;
                    }
                }
            },
        }
        if !out.is_empty() {
            if write_all(&*socket, &out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    if write_all(&*socket, &out).await.is_ok() {
        tally.sent.store(true, Ordering::Relaxed);
    }
}

/// Why a backend's answer body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The backend closed the connection before the body's end.
    #[error("the backend closed the connection before the answer's end")]
    Incomplete,
    /// The body's chunked framing is bad.
    #[error("bad chunked framing in the answer: {0}")]
    Framing(&'static str),
    /// Reading the socket failed.
    #[error("reading the answer failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A backend's answer body, read from its connection as the client takes
/// it.
#[derive(Debug)]
pub struct BackendBody {
    /// `None` once taken back for the pool.
    conn: Option<BackendConn>,
    left: Left,
    /// The backend keeps the connection open after the answer.
    reusable: bool,
    /// The task writing the request body.
    pump: Option<Pump>,
    tally: Option<Arc<Tally>>,
}

impl BackendBody {
    /// The connection, when the exchange is over on both sides and the
    /// backend keeps it open: for the pool.
    pub fn reusable(&mut self) -> Option<BackendConn> {
        if !(self.left.is_done() && self.reusable && self.body_sent()) {
            return None;
        }
        self.conn.take().filter(|conn| conn.buf.is_empty())
    }

    /// The backend's connection after a `101`, with the bytes it sent past
    /// the head; `None` while a request body is still being written.
    pub fn upgraded(mut self) -> Option<(TcpStream, Vec<u8>)> {
        if !self.body_sent() {
            return None;
        }
        self.pump = None;
        let conn = self.conn.take()?;
        let early = conn.buf.to_vec();
        let stream = Arc::try_unwrap(conn.socket).ok()?;
        Some((stream, early))
    }

    /// The request's body, if any, reached the backend whole.
    fn body_sent(&self) -> bool {
        self.tally
            .as_ref()
            .is_none_or(|t| t.sent.load(Ordering::Relaxed))
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            if let Left::Failed = this.left {
                return Poll::Ready(Some(Err(BodyError::Incomplete)));
            }
            match this.left.take(&mut conn.buf) {
                Piece::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Piece::End => return Poll::Ready(None),
                Piece::Bad(text) => return this.left.fail(BodyError::Framing(text)),
                Piece::More => {}
            }
            match std::task::ready!(poll_fill(&*conn.socket, &mut conn.buf, cx)) {
                Ok(0) if matches!(this.left, Left::Close) => {
                    this.left = Left::Done;
                    this.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.left.fail(BodyError::Incomplete),
                Ok(_) => {}
                Err(e) => return this.left.fail(BodyError::Io(e)),
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
