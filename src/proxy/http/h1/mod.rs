//! Our own HTTP/1.1 server side for http mode (the client-facing half):
//! a request head parsed with httparse into `http` types, its body
//! framing decided by RFC 9112's rules and SPEC 4's (both Content-Length
//! and Transfer-Encoding is a 400), bodies decoded as they stream, answers
//! encoded, and no buffer held while a kept-alive connection is idle.
//! hyper stays for the backend side.
//!
//! [`serve`] is one client connection, one request at a time (pipelined
//! requests wait in the read buffer and are answered in order):
//!
//! 1. wait for the client, holding no buffer; a kept-alive connection that
//!    sends nothing for `request_header_timeout` is closed, as is an idle
//!    one when the listener stops (the drain);
//! 2. read the head within `request_header_timeout` (408 when it is cut
//!    short, 400/431/501/505 when the codec refuses it);
//! 3. hand the request to [`super::answer`], its body reading the socket
//!    as the backend takes it ([`body`]), `100 Continue` sent when the body
//!    is first wanted;
//! 4. write the answer: its head, its body in chunks as they come
//!    (`content-length` kept, else chunked for HTTP/1.1, else to the
//!    close), trailers when the client takes them;
//! 5. go on with the next request if the connection is kept alive and the
//!    request's body was read to its end; else close.

pub mod body;
pub mod client;
pub mod codec;
pub mod socket;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::body::{RequestBody, ResponseBody};
use super::headers::{self, Field};
use super::upgrade::{PendingUpgrade, UpgradeTo};
use super::{Conn, answer};
use body::{ClientBody, lock};
use codec::{BodyFraming, ChunkedDecoder, Connection, HeadLimits, ResponseFraming};
use socket::{Read, Socket, Write};

/// How many header fields a request head may have (HAProxy's default is
/// 101, hyper's 100).
pub(crate) const MAX_HEADERS: usize = 100;

/// The longest chunk-size line of a chunked body (with its extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// The room a head is first read into: enough for most heads, and small
/// enough for the allocator's fast path (a larger head grows the buffer).
const HEAD_READ: usize = 4 * 1024;

/// Answer bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// How a wait for the next request ended.
enum Next {
    /// A whole head (boxed: the other variants are small).
    Head(Box<codec::RequestHead>),
    /// The connection is over (closed, idle too long, drained): nothing to
    /// send.
    Close,
    /// The head was refused or cut short: this answer, then close.
    Refuse(StatusCode, &'static str),
}

/// Serves one client connection in http mode (see the module doc); its
/// socket is in `conn`'s reader (with what was read with a PROXY protocol
/// header: the start of the first request).
#[allow(clippy::manual_async_fn)] // on purpose: an `async fn` stores its arguments twice
pub fn serve(conn: Arc<Conn>) -> impl Future<Output = ()> + Send {
    async move {
        // One socket, read through the reader (by the body while a request
        // streams) and written here; not split, so the idle wait can wait
        // on its readiness without a future of its own.
        let Some(socket) = lock(&conn.reader).socket.clone() else {
            return;
        };
        // One timer for the connection's life, moved for each wait (a
        // head, an answer): moving a deadline later touches no shared
        // timer state, where a new timer per wait would.
        let deadline = tokio::time::sleep(conn.settings.request_header_timeout);
        tokio::pin!(deadline);
        loop {
            let next = next_head(&conn, &socket, deadline.as_mut()).await;
            // Boxed: an idle connection's task then holds only the idle
            // wait's state, and the largest state of an exchange (hyper's
            // client futures) is allocated only while a request is in
            // flight.
            match Box::pin(step(next, &conn, &socket, deadline.as_mut())).await {
                Step::Next => {}
                Step::Close => {
                    // The socket closes now, even if a late request body
                    // still holds the connection (over TLS, cleanly).
                    socket.close();
                    lock(&conn.reader).socket = None;
                    break;
                }
                Step::Upgraded(upgrade) => {
                    if let Some(relay) = relay(&conn, socket, *upgrade) {
                        relay.await;
                    }
                    break;
                }
            }
        }
        let duration = conn.accepted.elapsed();
        conn.slot.stats.connection_duration.observe(duration);
    }
}

/// What a connection does after one [`step`].
enum Step {
    /// Reads the next request.
    Next,
    /// Closes.
    Close,
    /// Switched protocols: the relay takes the socket (boxed: the
    /// connection's task would keep room for it otherwise).
    Upgraded(Box<UpgradeTo>),
}

/// The relay of an upgraded connection, boxed, from the socket the
/// connection (`socket`) and its reader hold, with the bytes the client
/// sent past its request first.
fn relay(
    conn: &Conn,
    socket: Arc<Socket>,
    upgrade: UpgradeTo,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let (early, held) = {
        let mut reader = lock(&conn.reader);
        (
            std::mem::take(&mut reader.buf).to_vec(),
            reader.socket.take(),
        )
    };
    drop(held);
    let close = conn.close.clone();
    Some(match Arc::try_unwrap(socket).ok()? {
        Socket::Plain(tcp) => Box::pin(upgrade.relay(tcp, early, close)),
        Socket::Tls(tls) => Box::pin(upgrade.relay(*tls, early, close)),
    })
}

/// Answers what [`next_head`] found.
async fn step(next: Next, conn: &Arc<Conn>, socket: &Socket, deadline: Pin<&mut Sleep>) -> Step {
    let head = match next {
        Next::Head(head) => head,
        Next::Close => return Step::Close,
        Next::Refuse(status, text) => {
            conn.slot.stats.record_response(status.as_u16());
            let _ = write_local(socket, status, text).await;
            return Step::Close;
        }
    };
    exchange(*head, socket, conn, deadline).await
}

/// Waits for the next request head (see the module doc, steps 1 and 2).
/// While idle, the wait holds a timer and a cancellation and waits on the
/// socket's readiness directly: a kept-alive connection costs little more
/// than its task.
async fn next_head(conn: &Conn, socket: &Socket, mut deadline: Pin<&mut Sleep>) -> Next {
    let (stop, close) = (&conn.slot.stop_accepting, &conn.close);
    deadline
        .as_mut()
        .reset(Instant::now() + conn.settings.request_header_timeout);
    loop {
        let waiting = {
            let mut reader = lock(&conn.reader);
            if !reader.buf.is_empty() {
                let limits = HeadLimits {
                    max_bytes: conn.settings.max_header_bytes,
                    max_headers: MAX_HEADERS,
                };
                match codec::parse_request(&mut reader.buf, &limits) {
                    Ok(Some(head)) => return Next::Head(Box::new(head)),
                    Ok(None) => {}
                    Err(refusal) => return Next::Refuse(refusal.status, refusal.text),
                }
            } else if reader.buf.capacity() > 0 {
                // Idle: hold no buffer while waiting.
                reader.buf = BytesMut::new();
            }
            reader.buf.is_empty()
        };
        // Between requests, a stopping listener closes the connection at
        // once; inside a head, only the drain timeout does (`close`).
        let cancelled = if waiting { stop } else { close }.cancelled();
        tokio::pin!(cancelled);
        let ready = std::future::poll_fn(|cx| {
            if let Poll::Ready(ready) = socket.poll_read_ready(cx) {
                return Poll::Ready(Some(ready.is_ok()));
            }
            if deadline.as_mut().poll(cx).is_ready() || cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match ready {
            Some(true) => {}
            Some(false) => return Next::Close,
            None if waiting || close.is_cancelled() => return Next::Close,
            None => {
                return Next::Refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "request timeout: the request head did not arrive in time\n",
                );
            }
        }
        let mut reader = lock(&conn.reader);
        reader.buf.reserve(HEAD_READ);
        match socket.read_some(&mut reader.buf) {
            Ok(0) => {
                return if reader.buf.is_empty() {
                    Next::Close
                } else {
                    Next::Refuse(
                        StatusCode::BAD_REQUEST,
                        "bad request: the connection closed inside a request head\n",
                    )
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Next::Close,
        }
    }
}

/// One request and its answer (steps 3 to 5). `None`: close the
/// connection.
async fn exchange(
    head: codec::RequestHead,
    write: &Socket,
    conn: &Arc<Conn>,
    mut deadline: Pin<&mut Sleep>,
) -> Step {
    let (stop, close) = (&conn.slot.stop_accepting, &conn.close);
    let method_head = head.method == Method::HEAD;
    let version = head.version;
    let fields = head.fields;
    let trailers_ok = fields.has(Field::Te) && headers::accepts_trailers(&head.headers);
    let continue_wanted = (head.expect_continue && head.framing != BodyFraming::None)
        .then(|| Arc::new(Notify::new()));
    // A body reads the connection's reader while it streams.
    let number = {
        let mut reader = lock(&conn.reader);
        reader.body_done = head.framing == BodyFraming::None;
        reader.request
    };
    let body = match head.framing {
        BodyFraming::Length(n) => {
            ClientBody::length(Arc::clone(conn), number, n, continue_wanted.clone())
        }
        BodyFraming::Chunked => ClientBody::chunked(
            Arc::clone(conn),
            number,
            ChunkedDecoder::new(MAX_CHUNK_LINE, conn.settings.max_header_bytes),
            continue_wanted.clone(),
        ),
        BodyFraming::None => ClientBody::empty(),
    };
    let mut request = Request::new(RequestBody::Own(body));
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = version;
    *request.headers_mut() = head.headers;
    if !head.upgrade && fields.has(Field::Upgrade) {
        // `Upgrade` counts only on an HTTP/1.1 request whose `Connection`
        // names it; otherwise it is one more hop-by-hop header.
        request.headers_mut().remove(header::UPGRADE);
    }

    let mut response = {
        let answering = answer(Arc::clone(conn), request, fields, deadline.as_mut());
        tokio::pin!(answering);
        loop {
            tokio::select! {
                response = &mut answering => break response,
                () = wait_for(continue_wanted.as_deref()) => {
                    // Sent once: the notify is taken by the body's first poll.
                    if write_all(write, codec::CONTINUE).await.is_err() {
                        return Step::Close;
                    }
                }
                () = close.cancelled() => return Step::Close,
            }
        }
    };
    // The connection stays open after this answer when the client and the
    // answer allow it, the listener is not stopping, and the request's
    // body is read (else its rest would be taken for the next request).
    let closing = response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut keep_alive = head.keep_alive && !closing && !stop.is_cancelled();

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let pending = response.extensions_mut().remove::<PendingUpgrade>();
        if let Some(upgrade) = pending.as_ref().and_then(PendingUpgrade::take) {
            let mut out = Vec::with_capacity(256);
            codec::encode_response_head(
                &mut out,
                response.status(),
                response.headers(),
                None,
                ResponseFraming::None,
                Connection::Upgrade,
            );
            if write_all(write, &out).await.is_err() {
                return Step::Close;
            }
            lock(&conn.reader).request += 1;
            return Step::Upgraded(Box::new(upgrade));
        }
    }

    let status = response.status();
    let bodiless = method_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        ResponseFraming::None
    } else if let Some(length) = response.body().size_hint().exact() {
        // A backend's answer with a length, or one of our own.
        ResponseFraming::Length(length)
    } else if version == Version::HTTP_11 {
        ResponseFraming::Chunked
    } else {
        keep_alive = false;
        ResponseFraming::Close
    };
    let connection = match (keep_alive, version) {
        (false, _) => Connection::Close,
        (true, Version::HTTP_10) => Connection::KeepAlive,
        (true, _) => Connection::None,
    };
    let written = tokio::select! {
        written = write_answer(
            (write, conn),
            &mut response,
            (framing, connection, trailers_ok),
            (deadline, conn.settings.response_timeout),
        ) => written,
        () = close.cancelled() => false,
    };
    drop(response);
    let mut reader = lock(&conn.reader);
    reader.request += 1;
    if written && keep_alive && reader.body_done {
        Step::Next
    } else {
        Step::Close
    }
}

/// Resolves when `notify` is told; never without one.
async fn wait_for(notify: Option<&Notify>) {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Writes the answer's head and body; false when the client went away or
/// took nothing for the listener's `idle_timeout` (as HAProxy's `timeout
/// client`), or the backend sent nothing more for `inactivity` in the
/// middle of the body (as HAProxy's `timeout server` and nginx's
/// `proxy_read_timeout`): the answer is cut there, and the connection
/// closed.
async fn write_answer(
    (write, conn): (&Socket, &Conn),
    response: &mut Response<ResponseBody>,
    (framing, connection, trailers_ok): (ResponseFraming, Connection, bool),
    (mut deadline, inactivity): (Pin<&mut Sleep>, std::time::Duration),
) -> bool {
    let mut out = Vec::with_capacity(512);
    // A backend's answer brings its header lines as they came.
    let raw = match response.body() {
        http_body_util::Either::Left(relayed) => Some(relayed.raw()),
        http_body_util::Either::Right(_) => None,
    };
    codec::encode_response_head(
        &mut out,
        response.status(),
        response.headers(),
        raw,
        framing,
        connection,
    );
    if framing == ResponseFraming::None {
        return write_within(write, &out, deadline.as_mut(), conn).await;
    }
    let chunked = framing == ResponseFraming::Chunked;
    let body = response.body_mut();
    loop {
        // What is ready goes out with what is gathered: a small answer is
        // one write, head and body together.
        let frame = match std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *body).poll_frame(cx))
        })
        .await
        {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => {
                if !out.is_empty() {
                    if !write_within(write, &out, deadline.as_mut(), conn).await {
                        return false;
                    }
                    out.clear();
                }
                deadline.as_mut().reset(Instant::now() + inactivity);
                let waited = std::future::poll_fn(|cx| {
                    if let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) {
                        return Poll::Ready(Some(frame));
                    }
                    deadline.as_mut().poll(cx).map(|()| None)
                })
                .await;
                let Some(frame) = waited else {
                    return false;
                };
                frame
            }
        };
        match frame {
            None => {
                if chunked {
                    codec::encode_last_chunk(&mut out, None);
                }
                break;
            }
            Some(Err(_)) => {
                // The backend failed mid-answer: the client cannot be told
                // but by the connection closing before the answer's end.
                let _ = write_within(write, &out, deadline.as_mut(), conn).await;
                return false;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => push_data(&mut out, &data, chunked),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if chunked {
                            let trailers = trailers_ok.then_some(&trailers);
                            codec::encode_last_chunk(&mut out, trailers);
                            if !write_within(write, &out, deadline.as_mut(), conn).await {
                                return false;
                            }
                            return true;
                        }
                    }
                }
            },
        }
        if out.len() >= WRITE_BATCH {
            if !write_within(write, &out, deadline.as_mut(), conn).await {
                return false;
            }
            out.clear();
        }
    }
    write_within(write, &out, deadline.as_mut(), conn).await
}

/// Appends body `data`, in a chunk when `chunked`.
fn push_data(out: &mut Vec<u8>, data: &Bytes, chunked: bool) {
    if chunked {
        codec::encode_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}

/// Writes an answer of our own (a refused head) and closes.
async fn write_local(write: &Socket, status: StatusCode, text: &str) -> bool {
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut out = Vec::with_capacity(256 + text.len());
    codec::encode_response_head(
        &mut out,
        status,
        &headers,
        None,
        ResponseFraming::Length(text.len() as u64),
        Connection::Close,
    );
    out.extend_from_slice(text.as_bytes());
    let written = write_all(write, &out).await.is_ok();
    write.shutdown_write();
    written
}

/// Writes all of `bytes` to the client `socket` (and sends all TLS holds
/// of them); false when that failed, or the client took nothing for its
/// listener's `idle_timeout` (its read side stalled). The timer is set
/// only when a write has to wait.
async fn write_within(
    socket: &Socket,
    mut bytes: &[u8],
    mut deadline: Pin<&mut Sleep>,
    conn: &Conn,
) -> bool {
    loop {
        match write_now(socket, &mut bytes) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_) => return false,
        }
        let idle = conn.slot.snapshot.load().config.idle_timeout;
        deadline.as_mut().reset(Instant::now() + idle);
        let writable = std::future::poll_fn(|cx| {
            if let Poll::Ready(ready) = socket.poll_write_ready(cx) {
                return Poll::Ready(ready.is_ok());
            }
            deadline.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if !writable {
            return false;
        }
    }
}

/// Writes all of `bytes` to `socket` (a client's, or a backend's), and
/// sends all TLS holds of them.
async fn write_all(socket: &impl Write, mut bytes: &[u8]) -> std::io::Result<()> {
    loop {
        if write_now(socket, &mut bytes)? {
            return Ok(());
        }
        std::future::poll_fn(|cx| socket.poll_write_ready(cx)).await?;
    }
}

/// Writes what `socket` takes of `bytes` now (advancing it), then sends
/// what TLS holds: `Ok(true)` once all is sent, `Ok(false)` when the
/// socket is full (its readiness is spent: a wait on it sleeps).
fn write_now(socket: &impl Write, bytes: &mut &[u8]) -> std::io::Result<bool> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => *bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    match socket.try_flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
