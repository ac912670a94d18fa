//! http mode over TLS (SPEC 9, docs/tls.md): one client connection of an
//! http listener with `[listeners.tls]`, from the handshake to its close.
//!
//! The PROXY protocol header (when the listener takes one) comes first,
//! in cleartext, then the handshake; the ALPN protocol it settled on picks
//! the server: `h2` is HTTP/2, served by hyper (many requests at once on
//! one connection, each a stream); anything else (`http/1.1`, or a client
//! that offered no ALPN) is HTTP/1.1, served by our own server ([`h1`])
//! exactly as over cleartext, its socket a [`TlsSocket`]: the same strict
//! parsing, timeouts (408 on a slow head), pipelining, `100 Continue` and
//! protocol upgrades (WebSocket over TLS). Every request is then answered
//! by the same [`answer`]: routing, the forwarding headers (with
//! `proto=https`), the pooled HTTP/1.1 connections to backends, retries,
//! metrics and the access log.
//!
//! What HTTP/2 does differently from HTTP/1.1 (docs/tls.md):
//!
//! - Extended `CONNECT` (WebSocket over HTTP/2) is not offered and
//!   `CONNECT` is answered 501, as our own server answers `CONNECT`.
//! - An HTTP/2 connection with no request in flight for
//!   `request_header_timeout` is closed gracefully (GOAWAY), as our own
//!   server closes an idle keep-alive connection.
//! - A client that takes nothing of what is written to it for the
//!   listener's `idle_timeout` is closed ([`WriteTimeout`]), as our own
//!   server cuts such an answer. A stream given no flow-control credit
//!   for `idle_timeout` (or whose backend sends nothing for
//!   `response_timeout`) is given up alone, its backend connection closed
//!   ([`Sending`]).
//!
//! [`h1`]: super::h1
//! [`TlsSocket`]: crate::tls::TlsSocket

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{RequestBody, ResponseBody};
use super::h1::body::{Reader, lock};
use super::h1::socket::Socket;
use super::headers::FieldSet;
use super::{Conn, Permits, answer};
use crate::config::HttpSettings;
use crate::state::{ListenerSlot, Snapshot};
use crate::tls::TlsSocket;

/// The ALPN protocol name of HTTP/2 (RFC 9113 3.2).
const H2: &[u8] = b"h2";

/// Serves client `stream` from `peer` of an http listener with TLS (see
/// the module doc) until the client closes it, it idles out, the listener
/// stops (the drain: requests in flight finish; an HTTP/2 client is sent
/// a GOAWAY), or `close` is cancelled (drain timeout). A failed handshake
/// is counted (in the listener's stats) and logged at debug. `permits`
/// are held as long as the connection is.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<ListenerSlot>,
    state: Arc<Snapshot>,
    close: CancellationToken,
    settings: HttpSettings,
    permits: Permits,
) {
    let accepted = std::time::Instant::now();
    let admitted = (state, close, settings, permits);
    // Each step boxed: the connection's task then keeps room for none of
    // them (the handshake's state is as large as a TLS session), and an
    // idle HTTP/1.1 connection holds only its idle wait, as over cleartext.
    let opened = Box::pin(open(stream, peer, &slot, admitted, accepted)).await;
    if let Some((conn, tls)) = opened {
        if tls.get_ref().1.alpn_protocol() == Some(H2) {
            Box::pin(serve_h2(conn, tls)).await;
        } else {
            let socket = Socket::Tls(Box::new(TlsSocket::new(tls)));
            *lock(&conn.reader) = Reader::new(socket, &[]);
            Box::pin(super::h1::serve(conn)).await;
        }
    }
    slot.stats.connection_duration.observe(accepted.elapsed());
}

/// A client's stream over TLS.
type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// A connection over TLS, its handshake done: what its requests share, and
/// the stream.
type Opened = (Arc<Conn>, Tls);

/// What an admitted connection comes with: the listener's snapshot, the
/// drain timeout's token, its http settings and its permits.
type Admitted = (Arc<Snapshot>, CancellationToken, HttpSettings, Permits);

/// The PROXY protocol header (when the listener takes one), then the
/// handshake, for a connection `accepted` then; `None` when the client was
/// turned away, the handshake failed, or the connection was closed
/// meanwhile.
async fn open(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: &Arc<ListenerSlot>,
    (state, close, settings, permits): Admitted,
    accepted: std::time::Instant,
) -> Option<Opened> {
    let tls = state.config.tls.clone()?;
    let _ = stream.set_nodelay(true);
    let arrival = crate::proxy::arrive(&mut stream, peer, slot, &state)
        .await
        .ok()?;
    drop(state);
    let handshake = crate::tls::accept(&tls, stream, &arrival.early, &slot.stats.tls_handshakes);
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(stream) => stream,
            Err(e) => {
                let result = e.outcome.label();
                tracing::debug!(listener = %slot.name, client = %arrival.client, result, error = %e, "TLS handshake failed");
                return None;
            }
        },
        () = close.cancelled() => return None,
    };
    let conn = Arc::new(Conn {
        slot: Arc::clone(slot),
        client: arrival.client,
        scheme: "https",
        settings,
        close,
        // Given the socket once HTTP/1.1 is chosen (over HTTP/2, hyper
        // reads the connection and this stays empty).
        reader: std::sync::Mutex::new(Reader::default()),
        accepted,
        _permits: permits,
    });
    Some((conn, stream))
}

/// Serves HTTP/2 on `tls` (each stream a request, answered on a task of
/// its own), with `max_header_bytes` as its `SETTINGS_MAX_HEADER_LIST_SIZE`
/// (a larger header list is answered 431, or refused when it runs on far
/// past it), closed gracefully when no
/// request was in flight for `request_header_timeout`.
async fn serve_h2(conn: Arc<Conn>, tls: Tls) {
    let in_flight = Arc::new(InFlight::default());
    let service = {
        let (conn, in_flight) = (Arc::clone(&conn), Arc::clone(&in_flight));
        service_fn(move |req| respond(Arc::clone(&conn), req, in_flight.start()))
    };
    let header_list = u32::try_from(conn.settings.max_header_bytes).unwrap_or(u32::MAX);
    let connection = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(header_list)
        .serve_connection(TokioIo::new(WriteTimeout::new(tls, &conn)), service);
    let idle = in_flight.idle_for(conn.settings.request_header_timeout);
    let idle_timeout = conn.slot.snapshot.load().config.idle_timeout;
    let stalls = in_flight.watch_stalls(idle_timeout, conn.settings.response_timeout);
    let idle = async move {
        tokio::select! {
            () = idle => {}
            () = stalls => {}
        }
    };
    run(
        connection,
        http2::Connection::graceful_shutdown,
        &conn,
        idle,
    )
    .await;
}

/// Drives hyper's `connection` to its end. When the listener stops (the
/// drain) or `idle` resolves, it is shut down gracefully (`graceful`:
/// requests in flight finish, no new one is taken); when the connection's
/// `close` is cancelled (drain timeout), it is dropped at once.
async fn run<C>(
    connection: C,
    graceful: fn(Pin<&mut C>),
    conn: &Conn,
    idle: impl Future<Output = ()>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let (stop, close) = (&conn.slot.stop_accepting, &conn.close);
    tokio::pin!(connection);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(listener = %conn.slot.name, client = %conn.client, error = %e, "connection over TLS ended");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                graceful(connection.as_mut());
                closing = true;
            }
            () = &mut idle, if !closing => {
                graceful(connection.as_mut());
                closing = true;
            }
            () = close.cancelled() => return,
        }
    }
}

/// Answers one request read by hyper (`active` counts it in flight until
/// its answer's body is done): as over cleartext, through [`answer`],
/// except what this path does not serve (see the module doc).
async fn respond(
    conn: Arc<Conn>,
    req: Request<Incoming>,
    active: Active,
) -> Result<Response<Counted>, Infallible> {
    let response = match unsupported(&req) {
        Some(text) => {
            let logged = conn.slot.access_log.load().is_some().then(|| {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                (req.method().to_string(), target.to_string())
            });
            conn.answer(
                StatusCode::NOT_IMPLEMENTED,
                text,
                false,
                Instant::now(),
                logged,
            )
        }
        None => {
            let deadline = tokio::time::sleep(conn.settings.response_timeout);
            tokio::pin!(deadline);
            let req = req.map(|body| RequestBody::Hyper(Box::new(body)));
            answer(conn, req, FieldSet::ANY, deadline.as_mut()).await
        }
    };
    let (mut parts, body) = response.into_parts();
    if let Either::Left(relayed) = &body {
        // A backend's answer keeps its fields as the lines that came, for
        // our own HTTP/1.1 server to write as they are: hyper needs them
        // in the map.
        relayed.raw().append_to(&mut parts.headers, parts.status);
    }
    // No connection-specific field in HTTP/2 (RFC 9113 8.2.2): our own
    // answers' `connection: close` does not apply to a stream.
    parts.headers.remove(header::CONNECTION);
    let in_flight = Arc::clone(&active.0);
    let body = Counted {
        sending: in_flight.sending(body),
        in_flight,
        _active: active,
    };
    Ok(Response::from_parts(parts, body))
}

/// Why a request is answered 501 on this path, if it is: `CONNECT` (a
/// balancer does not tunnel; extended `CONNECT` is not offered, so
/// WebSocket over HTTP/2 never starts). An HTTP/1.1 `Upgrade` cannot come
/// this way: HTTP/2 refuses the field (RFC 9113 8.2.2).
fn unsupported(req: &Request<Incoming>) -> Option<&'static str> {
    (req.method() == Method::CONNECT)
        .then_some("not implemented: CONNECT (the balancer does not tunnel)\n")
}

// === requests in flight ===

/// The requests of one HTTP/2 connection in flight, and a wake-up when
/// their number changes: what tells an idle connection from a busy one;
/// and the answers being sent, which [`InFlight::watch_stalls`] watches.
#[derive(Debug)]
struct InFlight {
    count: AtomicUsize,
    changed: Notify,
    /// The answers being sent (those sent are swept out by the watch, and
    /// before the list grows).
    answers: Mutex<Vec<Weak<Sending>>>,
    /// What [`Sending::progress`] counts from.
    epoch: Instant,
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            count: AtomicUsize::new(0),
            changed: Notify::new(),
            answers: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }
}

impl InFlight {
    /// Counts one more request, until the [`Active`] is dropped.
    fn start(self: &Arc<Self>) -> Active {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        Active(Arc::clone(self))
    }

    /// Resolves once no request was in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the count is read: a change after it wakes.
            changed.as_mut().enable();
            if self.count.load(Ordering::Acquire) > 0 {
                changed.await;
            } else if tokio::time::timeout(timeout, changed).await.is_err() {
                return;
            }
        }
    }

    /// Milliseconds since the connection's start.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `body`, sent through the [`Sending`] this watch knows of.
    fn sending(&self, body: ResponseBody) -> Arc<Sending> {
        let sending = Arc::new(Sending {
            body: Mutex::new(Some(body)),
            progress: AtomicU64::new(self.now()),
            waits_on_backend: AtomicBool::new(false),
        });
        let mut answers = lock(&self.answers);
        if answers.len() == answers.capacity() {
            // Before the list grows, the answers already sent go (the
            // watch sweeps only while it ticks): the list stays within
            // about twice the most answers ever in flight at once.
            answers.retain(|weak| weak.strong_count() > 0);
        }
        answers.push(Arc::downgrade(&sending));
        drop(answers);
        sending
    }

    /// Never resolves: every second while answers are being sent, drops
    /// the backend side of each one that stalled (see [`Sending`]), so
    /// that a stalled stream holds no backend connection; hyper then
    /// resets the stream at its next poll.
    async fn watch_stalls(&self, idle: Duration, response: Duration) {
        let mut ticks = tokio::time::interval(STALL_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.count.load(Ordering::Acquire) == 0 {
                // Nothing in flight: wait for a request instead of ticking.
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.count.load(Ordering::Acquire) == 0 {
                    changed.await;
                }
                continue;
            }
            ticks.tick().await;
            let now = self.now();
            let stalled: Vec<Arc<Sending>> = {
                let mut answers = lock(&self.answers);
                answers.retain(|weak| weak.strong_count() > 0);
                answers
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|sending| sending.stalled(now, idle, response))
                    .collect()
            };
            for sending in stalled {
                // Dropped outside the list's lock: closing a backend
                // connection is not done under it.
                drop(lock(&sending.body).take());
            }
        }
    }
}

/// How often [`InFlight::watch_stalls`] looks at the answers being sent.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// One request counted in flight until dropped (with its answer's body).
#[derive(Debug)]
struct Active(Arc<InFlight>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// An answer's body being sent on a stream, shared with the connection's
/// stall watch. An answer stalls when no frame of it went out for the
/// listener's `idle_timeout` while hyper did not ask for more (the client
/// gives the stream no flow-control credit: as HAProxy's `timeout client`
/// and nginx's `send_timeout`), or for `response_timeout` while its
/// backend sent nothing (as over HTTP/1.1): the watch then drops the body,
/// and with it the backend connection, which a stalled stream would
/// otherwise hold.
#[derive(Debug)]
struct Sending {
    /// `None` once the watch dropped it.
    body: Mutex<Option<ResponseBody>>,
    /// When a frame last went out, or the answer began (milliseconds of
    /// [`InFlight::now`]).
    progress: AtomicU64,
    /// Whether the last poll waited for the backend.
    waits_on_backend: AtomicBool,
}

impl Sending {
    /// Whether the answer made no progress for its bound, at `now`.
    fn stalled(&self, now: u64, idle: Duration, response: Duration) -> bool {
        let bound = if self.waits_on_backend.load(Ordering::Relaxed) {
            response
        } else {
            idle
        };
        let since = now.saturating_sub(self.progress.load(Ordering::Relaxed));
        u128::from(since) >= bound.as_millis()
    }
}

/// An answer's body, its request counted in flight until it is dropped
/// (sent, or its stream reset).
#[derive(Debug)]
struct Counted {
    sending: Arc<Sending>,
    in_flight: Arc<InFlight>,
    _active: Active,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let mut body = lock(&this.sending.body);
        let Some(inner) = body.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the answer stalled: the stream was given no flow-control credit for the \
                 listener's idle_timeout, or its backend sent nothing for response_timeout",
            )))));
        };
        let polled = Pin::new(inner).poll_frame(cx);
        let waiting = polled.is_pending();
        this.sending
            .waits_on_backend
            .store(waiting, Ordering::Relaxed);
        if !waiting {
            this.sending
                .progress
                .store(this.in_flight.now(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.sending.body)
            .as_ref()
            .is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.sending.body)
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

// === writes that stall ===

/// The client's stream, its writes given up once none made progress for
/// the listener's `idle_timeout` (the client stopped reading): the write
/// fails, and hyper closes the connection, as our own server cuts such an
/// answer. The timer is made only when a write has to wait.
struct WriteTimeout<S> {
    inner: S,
    idle: Duration,
    /// Since when writes wait (`None` while they go through).
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    /// `inner`, with `conn`'s listener's `idle_timeout`.
    fn new(inner: S, conn: &Conn) -> WriteTimeout<S> {
        WriteTimeout {
            inner,
            idle: conn.slot.snapshot.load().config.idle_timeout,
            stalled: None,
        }
    }

    /// What a write that made progress (`Ready`) or had to wait
    /// (`Pending`) gives: a wait past `idle` is an error.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let idle = self.idle;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of its answer for the listener's idle_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
