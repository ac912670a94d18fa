//! The relay: bytes copied unchanged both ways, each direction tracking its
//! own end, so a half-close (one side shuts its write side) is passed on
//! while the other direction keeps flowing until it ends too. A connection
//! with no bytes either way for `idle_timeout` is closed, and so is every
//! connection when drain runs out of time.
//!
//! The relay is one hand-written state machine, `Relay`, rather than nested
//! `async` blocks: an idle connection is mostly its task's future, and a
//! state machine written out by hand keeps only what each state needs (two
//! sockets, two small `Step`s, the last activity time, the idle timer and
//! the drain waiter), less than half of what the compiler built from
//! `select!` over `try_join!` of two `async` pumps.
//! Each direction holds a copy buffer (or a pipe) only while a chunk is in
//! flight, so an idle connection holds neither.
//!
//! The client's side is any [`Stream`]: a plain TCP socket, or TLS over
//! one (a tcp listener with `[listeners.tls]`). The relay is generic over
//! it, so the cleartext path compiles to what it was: splice applies only
//! between two sockets, and a TLS client's bytes take the copy path.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[cfg(target_os = "linux")]
use super::splice::{BULK_MIN, PipeLease};
use crate::backend::Stats;

/// How a relay behaves.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Bytes buffered per direction.
    pub buffer_size: usize,
    /// Close after this long without a byte either way.
    pub idle_timeout: Duration,
    /// Tests only: `false` keeps bulk data on the copy path (the path a
    /// chunk takes in production when no pipe can be had), so tests drive
    /// both paths with any data. Outside tests bulk data always splices.
    #[cfg(test)]
    splice: bool,
}

impl RelayOptions {
    /// Relays copying through `buffer_size` buffers and splicing bulk data
    /// (Linux), closing after `idle_timeout` without a byte either way.
    pub fn new(buffer_size: usize, idle_timeout: Duration) -> RelayOptions {
        RelayOptions {
            buffer_size,
            idle_timeout,
            #[cfg(test)]
            splice: true,
        }
    }

    /// Whether bulk data moves with `splice(2)` through pipes instead of
    /// being copied through user-space buffers.
    #[cfg(target_os = "linux")]
    fn splices(&self) -> bool {
        #[cfg(test)]
        return self.splice;
        #[cfg(not(test))]
        true
    }
}

/// Bytes one relay moved, payload only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// From the client to the backend.
    pub bytes_in: u64,
    /// From the backend to the client.
    pub bytes_out: u64,
}

/// How a relay ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both directions reached end of stream.
    Done,
    /// No bytes moved for `idle_timeout`.
    IdleTimeout,
    /// Closed by the drain deadline.
    Closed,
    /// A read or write failed (reset, broken pipe, ...).
    Failed(io::Error),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("done"),
            Outcome::IdleTimeout => f.write_str("idle timeout"),
            Outcome::Closed => f.write_str("closed by drain timeout"),
            Outcome::Failed(e) => write!(f, "failed: {}", crate::net::io_reason(e)),
        }
    }
}

/// One side of a relay: how it is waited on, and whether bytes may be
/// spliced straight out of and into it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Ready when a read may find bytes or end of stream. Waiting here
    /// holds no buffer: a direction leases one only once this is ready.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The socket itself, when bytes may move between it and a pipe with
    /// `splice(2)`: a plain TCP socket, not one carrying TLS.
    fn socket(&self) -> Option<&TcpStream>;

    /// Whether dropping the stream ends it as a shutdown would (a plain
    /// socket's FIN); TLS needs its shutdown to send `close_notify`.
    const CLOSES_BY_DROP: bool;

    /// Whether a read error `err` means the peer ended its stream; for a
    /// plain socket none does.
    fn is_end(_err: &io::Error) -> bool {
        false
    }
}

impl Stream for TcpStream {
    const CLOSES_BY_DROP: bool = true;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

/// A TLS client: bytes are decrypted into user space, so they are copied.
impl Stream for TlsStream<TcpStream> {
    const CLOSES_BY_DROP: bool = false;

    /// Always ready: TLS may hold decrypted bytes the socket no longer
    /// signals. A read that finds nothing registers for the socket and
    /// gives its buffer back at once (see `read_chunk`).
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn socket(&self) -> Option<&TcpStream> {
        None
    }

    /// A client that closes its socket without a TLS `close_notify`
    /// ended its stream (as nginx takes it): in tcp mode the backend sees
    /// the same FIN either way.
    fn is_end(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::UnexpectedEof
    }
}

/// A client over TLS whose connection our HTTP/1.1 server read first (an
/// upgraded request's): as [`TlsStream`].
impl Stream for crate::tls::TlsSocket {
    const CLOSES_BY_DROP: bool = false;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        crate::tls::TlsSocket::poll_read_ready(self, cx)
    }

    fn socket(&self) -> Option<&TcpStream> {
        None
    }

    fn is_end(err: &io::Error) -> bool {
        <TlsStream<TcpStream> as Stream>::is_end(err)
    }
}

/// Relays between `client` and `backend` until both directions are done,
/// counting bytes into `stats` as they move (`bytes_in`: client to backend)
/// and into the connection's own total, which starts at `already` (bytes
/// the connection sent on before the relay, such as those that came with
/// a PROXY protocol header).
///
/// The returned future is a thin shell around `Relay`: it pins the idle
/// timer and the drain waiter (both `!Unpin`) in the task's own memory, as
/// the crate has no `unsafe` to project pins into `Relay` and boxing them
/// would cost two allocations per connection.
pub fn relay<'a, C: Stream + 'a>(
    client: C,
    backend: TcpStream,
    options: &'a RelayOptions,
    stats: &'a Stats,
    close: &'a CancellationToken,
    already: Moved,
) -> impl Future<Output = (Outcome, Moved)> + 'a {
    // Built here, not in the block: arguments used inside an `async` block
    // keep their own slots in its future, so moving the sockets into
    // `Relay` there would store them twice.
    let mut relay = Relay::new(client, backend, options, stats);
    relay.moved = already;
    async move {
        let mut idle = pin!(tokio::time::sleep_until(relay.idle_deadline()));
        let mut closed = pin!(close.cancelled());
        let outcome = {
            let relay = &mut relay;
            std::future::poll_fn(move |cx| relay.poll(cx, idle.as_mut(), closed.as_mut())).await
        };
        (outcome, relay.moved)
    }
}

/// Far enough to never fire: an idle timeout too long for the clock.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Both directions of one connection and what they share.
struct Relay<'a, C> {
    client: C,
    backend: TcpStream,
    /// Client to backend.
    up: Step,
    /// Backend to client.
    down: Step,
    options: &'a RelayOptions,
    stats: &'a Stats,
    /// Bytes relayed so far: client to backend, backend to client.
    moved: Moved,
    /// When a byte last moved either way. Set once per poll that moved
    /// bytes (one clock read, however many chunks); the idle timer reads
    /// it only when it fires.
    last: Instant,
}

// === impl Relay ===

impl<'a, C: Stream> Relay<'a, C> {
    fn new(
        client: C,
        backend: TcpStream,
        options: &'a RelayOptions,
        stats: &'a Stats,
    ) -> Relay<'a, C> {
        Relay {
            client,
            backend,
            up: Step::Read { bulk: false },
            down: Step::Read { bulk: false },
            options,
            stats,
            moved: Moved::default(),
            last: Instant::now(),
        }
    }

    /// When the connection idles out if no byte moves from now on.
    fn idle_deadline(&self) -> Instant {
        let timeout = self.options.idle_timeout;
        self.last
            .checked_add(timeout)
            .or_else(|| self.last.checked_add(FAR_FUTURE))
            .unwrap_or(self.last)
    }

    /// Moves what both directions can move now, then checks the drain
    /// signal and the idle timer. Ready with the outcome once both
    /// directions are done, one fails, drain closes it or it idles out.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        idle: Pin<&mut Sleep>,
        closed: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Poll<Outcome> {
        let mut moved = false;
        let mut up = Ends {
            from: &mut self.client,
            to: &mut self.backend,
            counter: &self.stats.bytes_in,
            options: self.options,
            other_ended: self.down.ended(),
            moved: &mut moved,
            total: &mut self.moved.bytes_in,
        };
        let up_done = match self.up.poll(cx, &mut up) {
            Poll::Ready(Err(e)) => return Poll::Ready(Outcome::Failed(e)),
            other => other.is_ready(),
        };
        let mut down = Ends {
            from: &mut self.backend,
            to: &mut self.client,
            counter: &self.stats.bytes_out,
            options: self.options,
            other_ended: self.up.ended(),
            moved: &mut moved,
            total: &mut self.moved.bytes_out,
        };
        let down_done = match self.down.poll(cx, &mut down) {
            Poll::Ready(Err(e)) => return Poll::Ready(Outcome::Failed(e)),
            other => other.is_ready(),
        };
        if up_done && down_done {
            return Poll::Ready(Outcome::Done);
        }
        if moved {
            self.last = Instant::now();
        }
        if closed.poll(cx).is_ready() {
            return Poll::Ready(Outcome::Closed);
        }
        self.poll_idle(cx, idle).map(|()| Outcome::IdleTimeout)
    }

    /// Ready once no byte moved for `idle_timeout`. The timer is not moved
    /// per chunk (each move costs a timer-wheel update): when it fires
    /// after bytes moved, it is set again from the last activity.
    fn poll_idle(&self, cx: &mut Context<'_>, mut idle: Pin<&mut Sleep>) -> Poll<()> {
        while idle.as_mut().poll(cx).is_ready() {
            let deadline = self.idle_deadline();
            // Nothing moved since the timer was set: idle long enough. Each
            // reset moves the deadline later, so this loop ends.
            if deadline <= idle.deadline() {
                return Poll::Ready(());
            }
            idle.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

// === impl Step ===

/// What one direction of a relay is doing: its own copy state, tracking
/// its own end of stream (the half-close model of linkerd's `duplex`).
enum Step {
    /// Waiting for the source to be readable, holding no buffer and no
    /// pipe. `bulk`: the last chunk filled the buffer (or was a long
    /// splice), so with zero-copy on the next one is spliced.
    Read { bulk: bool },
    /// Writing `buf[start..end]`, the rest of a chunk the destination has
    /// not taken yet.
    Write {
        buf: BufferLease,
        start: usize,
        end: usize,
    },
    /// Splicing a chunk out of `pipe` into the destination.
    #[cfg(target_os = "linux")]
    Splice { pipe: PipeLease, bulk: bool },
    /// Shutting the destination's write side: the half-close passed on.
    Shutdown,
    /// End of stream reached and passed on.
    Done,
}

/// One direction's streams and what it reports into, for one poll.
struct Ends<'s, F, T> {
    from: &'s mut F,
    to: &'s mut T,
    counter: &'s AtomicU64,
    options: &'s RelayOptions,
    /// The other direction reached end of stream already, so this one, the
    /// second, skips the shutdown when the destination is a plain socket:
    /// both sockets close as soon as it is done, and closing a socket
    /// whose input was read to its end sends the same FIN, one syscall
    /// cheaper. (TLS must still send its `close_notify`.)
    other_ended: bool,
    /// Set when a byte moved (activity for the idle timer).
    moved: &'s mut bool,
    /// Bytes this direction wrote so far (for the access log).
    total: &'s mut u64,
}

impl<F, T> Ends<'_, F, T> {
    /// Counts `n` bytes written: the backend's counter, this connection's
    /// total, and activity for the idle timer.
    fn count(&mut self, n: usize) {
        let n = n as u64;
        self.counter.fetch_add(n, Ordering::Relaxed);
        *self.total += n;
        *self.moved = true;
    }

    /// The step after the source's end of stream.
    fn at_end(&self) -> Step
    where
        T: Stream,
    {
        if self.other_ended && T::CLOSES_BY_DROP {
            Step::Done
        } else {
            Step::Shutdown
        }
    }
}

impl Step {
    /// This direction has read its source's end of stream.
    fn ended(&self) -> bool {
        matches!(self, Step::Shutdown | Step::Done)
    }

    /// Moves bytes `from` -> `to` until either would block (pending) or
    /// end of stream has been passed on (ready).
    ///
    /// Small messages are copied (one read, one write: the cheapest for
    /// them); after a read fills the whole buffer the direction carries
    /// bulk data, and (on Linux) it splices until a chunk comes up
    /// short again.
    fn poll<F: Stream, T: Stream>(
        &mut self,
        cx: &mut Context<'_>,
        ends: &mut Ends<'_, F, T>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self {
                Step::Read { bulk } => {
                    // The stream's own reader slot: waiting stores nothing
                    // in this future.
                    ready!(ends.from.poll_read_ready(cx))?;
                    #[cfg(target_os = "linux")]
                    if *bulk && ends.options.splices() {
                        if let Some(next) = splice_in(ends)? {
                            *self = next;
                            continue;
                        }
                        // No pipe to be had: copy this chunk instead.
                    }
                    *self = ready!(read_chunk(cx, ends))?;
                }
                Step::Write { buf, start, end } => {
                    while start < end {
                        let rest = buf.bytes().get(*start..*end).unwrap_or_default();
                        let n = ready!(Pin::new(&mut *ends.to).poll_write(cx, rest))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        *start += n;
                        ends.count(n);
                    }
                    // Bytes a TLS stream took may wait in it for the
                    // socket; a plain socket's flush does nothing.
                    ready!(Pin::new(&mut *ends.to).poll_flush(cx))?;
                    *self = Step::Read {
                        bulk: *end == buf.len(),
                    };
                }
                #[cfg(target_os = "linux")]
                Step::Splice { pipe, bulk } => {
                    while pipe.buffered() > 0 {
                        // Spliced chunks only ever go between two sockets.
                        let Some(to) = ends.to.socket() else {
                            return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
                        };
                        ready!(to.poll_write_ready(cx))?;
                        match pipe.drain(to) {
                            Ok(n) => ends.count(n),
                            // Readiness was stale and is cleared now.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                    *self = Step::Read { bulk: *bulk };
                }
                Step::Shutdown => {
                    ready!(Pin::new(&mut *ends.to).poll_shutdown(cx))?;
                    *self = Step::Done;
                }
                Step::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Reads one chunk into a buffer leased for it. Pending when readiness
/// was stale: the buffer then goes back at once instead of being held
/// while the connection idles (tokio's `poll_read` has cleared the
/// readiness and registered for the next).
fn read_chunk<F: Stream, T: Stream>(
    cx: &mut Context<'_>,
    ends: &mut Ends<'_, F, T>,
) -> Poll<io::Result<Step>> {
    let mut buf = BufferLease::take(ends.options.buffer_size);
    let mut read = ReadBuf::new(buf.bytes());
    match ready!(Pin::new(&mut *ends.from).poll_read(cx, &mut read)) {
        Err(e) if F::is_end(&e) => return Poll::Ready(Ok(ends.at_end())),
        other => other?,
    }
    let n = read.filled().len();
    if n == 0 {
        return Poll::Ready(Ok(ends.at_end()));
    }
    *ends.moved = true;
    Poll::Ready(Ok(Step::Write {
        buf,
        start: 0,
        end: n,
    }))
}

/// Splices one chunk from the source into a leased pipe. `None` when no
/// pipe can be had, or either side is not a plain socket (the caller
/// copies the chunk instead).
#[cfg(target_os = "linux")]
fn splice_in<F: Stream, T: Stream>(ends: &mut Ends<'_, F, T>) -> io::Result<Option<Step>> {
    let (Some(from), Some(_)) = (ends.from.socket(), ends.to.socket()) else {
        return Ok(None);
    };
    let Ok(mut pipe) = PipeLease::take() else {
        return Ok(None);
    };
    match pipe.fill(from) {
        Ok(0) => Ok(Some(ends.at_end())),
        Ok(n) => {
            *ends.moved = true;
            Ok(Some(Step::Splice {
                pipe,
                bulk: n >= BULK_MIN,
            }))
        }
        // Stale readiness, now cleared: the pipe goes back empty, and the
        // direction waits again holding nothing.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(Step::Read { bulk: true })),
        Err(e) => Err(e),
    }
}

// === impl BufferLease ===

/// Buffers kept per worker thread for reuse; beyond this they are freed.
const BUFFER_POOL_CAP: usize = 256;

thread_local! {
    static BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Leases taken and not yet dropped on this thread (tests only).
    static LEASED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A copy buffer borrowed from the worker thread's pool for one chunk and
/// given back on drop, so idle connections hold no buffer and busy ones do
/// not allocate (or zero) a buffer per chunk.
struct BufferLease {
    /// Always `Some` until drop takes it.
    buf: Option<Box<[u8]>>,
}

impl BufferLease {
    /// A buffer of exactly `size` bytes.
    fn take(size: usize) -> BufferLease {
        let pooled = BUFFERS.with(|pool| pool.borrow_mut().pop());
        let buf = match pooled {
            Some(buf) if buf.len() == size => buf,
            // A buffer of another listener's size is freed, not resized.
            _ => vec![0u8; size].into_boxed_slice(),
        };
        #[cfg(test)]
        LEASED.with(|n| n.set(n.get() + 1));
        BufferLease { buf: Some(buf) }
    }

    fn bytes(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.buf.as_deref().map_or(0, <[u8]>::len)
    }
}

impl Drop for BufferLease {
    fn drop(&mut self) {
        #[cfg(test)]
        LEASED.with(|n| n.set(n.get().saturating_sub(1)));
        let Some(buf) = self.buf.take() else { return };
        BUFFERS.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < BUFFER_POOL_CAP {
                pool.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::eventually;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected loopback pair: (the side the relay gets, the far end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (near, far) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (near.unwrap(), far.unwrap().0)
    }

    fn options(idle: Duration, zero_copy: bool) -> RelayOptions {
        RelayOptions {
            splice: zero_copy,
            ..RelayOptions::new(4096, idle)
        }
    }

    /// Both relay paths: user-space copy, and splice where it exists.
    const PATHS: [bool; 2] = [false, true];

    /// Spawns a relay between `client_side` and `backend_side` on this
    /// test's runtime; returns it and the token that closes it.
    fn spawn_relay(
        client_side: TcpStream,
        backend_side: TcpStream,
        idle: Duration,
        zero_copy: bool,
    ) -> (tokio::task::JoinHandle<Outcome>, CancellationToken) {
        let close = CancellationToken::new();
        let trigger = close.clone();
        let relay = tokio::spawn(async move {
            let opts = options(idle, zero_copy);
            relay(
                client_side,
                backend_side,
                &opts,
                &Stats::default(),
                &close,
                Moved::default(),
            )
            .await
            .0
        });
        (relay, trigger)
    }

    /// Deterministic pseudo-random bytes (xorshift), so a mismatch is
    /// reproducible.
    fn bytes(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    #[tokio::test]
    async fn bytes_cross_unchanged_both_ways_and_are_counted() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let stats = Stats::default();
            let close = CancellationToken::new();
            let up = bytes(3 << 20, 1);
            let down = bytes(2 << 20, 2);
            let opts = options(Duration::from_secs(60), zero_copy);
            let relay = relay(
                client_side,
                backend_side,
                &opts,
                &stats,
                &close,
                Moved::default(),
            );
            let client_io = async {
                let (mut r, mut w) = client.split();
                let send = async {
                    w.write_all(&up).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let mut got = Vec::new();
                let recv = r.read_to_end(&mut got);
                let ((), n) = tokio::join!(send, recv);
                n.unwrap();
                got
            };
            let backend_io = async {
                let (mut r, mut w) = backend.split();
                let send = async {
                    w.write_all(&down).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let mut got = Vec::new();
                let recv = r.read_to_end(&mut got);
                let ((), n) = tokio::join!(send, recv);
                n.unwrap();
                got
            };
            let ((outcome, moved), at_client, at_backend) =
                tokio::join!(relay, client_io, backend_io);
            assert!(matches!(outcome, Outcome::Done), "outcome: {outcome}");
            let expected = Moved {
                bytes_in: up.len() as u64,
                bytes_out: down.len() as u64,
            };
            assert_eq!(moved, expected, "the connection's own byte counts");
            assert!(at_backend == up, "client to backend bytes differ");
            assert!(at_client == down, "backend to client bytes differ");
            #[cfg(target_os = "linux")]
            assert_eq!(
                super::super::splice::pooled_pipes() > 0,
                zero_copy,
                "bulk data should move by splice exactly when zero_copy is on"
            );
            assert_eq!(stats.bytes_in.load(Ordering::Relaxed), up.len() as u64);
            assert_eq!(stats.bytes_out.load(Ordering::Relaxed), down.len() as u64);
        }
    }

    #[tokio::test]
    async fn a_half_close_is_passed_on_and_the_other_direction_keeps_flowing() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let (relay, _close) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(60),
                zero_copy,
            );
            client.write_all(b"question").await.unwrap();
            client.shutdown().await.unwrap();
            // The backend sees the whole question, then end of stream.
            let mut question = Vec::new();
            backend.read_to_end(&mut question).await.unwrap();
            assert_eq!(question, b"question");
            // The backend answers after the client's half-close.
            backend.write_all(b"answer").await.unwrap();
            backend.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"answer");
            assert!(matches!(relay.await.unwrap(), Outcome::Done));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_bytes_for_idle_timeout_is_closed() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let stats = Stats::default();
            let close = CancellationToken::new();
            let started = Instant::now();
            let (outcome, _) = relay(
                client_side,
                backend_side,
                &options(Duration::from_secs(300), zero_copy),
                &stats,
                &close,
                Moved::default(),
            )
            .await;
            assert!(
                matches!(outcome, Outcome::IdleTimeout),
                "outcome: {outcome}"
            );
            assert!(started.elapsed() >= Duration::from_secs(300));
            // Both ends see the close.
            let mut rest = Vec::new();
            assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
            assert_eq!(backend.read_to_end(&mut rest).await.unwrap(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_keep_an_idle_timeout_from_firing() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let (relay, _close) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(10),
                zero_copy,
            );
            for _ in 0..5 {
                // 6 s apart: longer than half the timeout, 30 s in all.
                tokio::time::advance(Duration::from_secs(6)).await;
                client.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                backend.read_exact(&mut one).await.unwrap();
            }
            assert!(!relay.is_finished(), "relay ended while bytes were moving");
            client.shutdown().await.unwrap();
            backend.shutdown().await.unwrap();
            assert!(matches!(relay.await.unwrap(), Outcome::Done));
        }
    }

    #[tokio::test]
    async fn cancelling_close_ends_an_open_relay() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, _backend) = pair().await;
            let (relay, trigger) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(60),
                zero_copy,
            );
            trigger.cancel();
            assert!(matches!(relay.await.unwrap(), Outcome::Closed));
            let mut rest = Vec::new();
            assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn a_connection_that_never_sends_holds_no_buffer() {
        for zero_copy in PATHS {
            // As in the balancer: the client's socket is an accepted one.
            let (_client, client_side) = pair().await;
            let (backend_side, _backend) = pair().await;
            // The relay runs on this test's thread, so the thread-local
            // lease count sees exactly its buffers.
            let (relay, trigger) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(60),
                zero_copy,
            );
            // Let the relay run until it waits on both sockets again.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                LEASED.with(std::cell::Cell::get),
                0,
                "an idle relay holds a buffer"
            );
            trigger.cancel();
            assert!(matches!(relay.await.unwrap(), Outcome::Closed));
        }
    }
    /// Buffers and pipes this thread's relays hold now.
    fn held() -> usize {
        let pipes = {
            #[cfg(target_os = "linux")]
            {
                super::super::splice::leased_pipes()
            }
            #[cfg(not(target_os = "linux"))]
            {
                0
            }
        };
        LEASED.with(std::cell::Cell::get) + pipes
    }

    #[tokio::test]
    async fn a_write_that_would_block_keeps_the_rest_and_finishes_it() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            // Far more than loopback socket buffers hold, so with the
            // backend not reading, the relay's writes must block.
            let up = bytes(16 << 20, 3);
            let sent = up.clone();
            // Both run on this test's thread, so `held` sees the relay.
            let writer = tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client.shutdown().await.unwrap();
                client
            });
            let (relay, _close) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(60),
                zero_copy,
            );
            // The relay waits on the backend, holding the chunk it could
            // not write yet, and nothing more.
            eventually(
                "a relay blocked on a write holds exactly one chunk",
                || async { held() == 1 },
            )
            .await;
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            assert!(got == up, "bytes differ after a blocked write");
            let _client = writer.await.unwrap();
            backend.shutdown().await.unwrap();
            assert!(matches!(relay.await.unwrap(), Outcome::Done));
            assert_eq!(held(), 0, "a finished relay still holds a chunk");
        }
    }

    #[tokio::test]
    async fn a_peer_reset_ends_the_relay_with_failed() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let (relay, _close) = spawn_relay(
                client_side,
                backend_side,
                Duration::from_secs(60),
                zero_copy,
            );
            // Bulk first, so on the splice path the reset meets splice.
            let down = bytes(1 << 20, 4);
            backend.write_all(&down).await.unwrap();
            let mut got = vec![0u8; down.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == down, "backend to client bytes differ");
            // A zero linger makes close send a reset instead of a FIN.
            backend.set_zero_linger().unwrap();
            drop(backend);
            let outcome = relay.await.unwrap();
            assert!(matches!(outcome, Outcome::Failed(_)), "outcome: {outcome}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timer_re_arms_from_the_last_byte_when_it_fires() {
        for zero_copy in PATHS {
            let (client_side, mut client) = pair().await;
            let (backend_side, mut backend) = pair().await;
            let stats = Stats::default();
            let close = CancellationToken::new();
            let opts = options(Duration::from_secs(10), zero_copy);
            let started = Instant::now();
            // Joined, not spawned: the relay starts (and sets its timer)
            // at 0 s.
            let relay = relay(
                client_side,
                backend_side,
                &opts,
                &stats,
                &close,
                Moved::default(),
            );
            // One byte at 6 s: the timer set for 10 s fires, sees the byte
            // and re-arms for 16 s (6 s + the timeout), not 20 s.
            let one_byte = async {
                tokio::time::advance(Duration::from_secs(6)).await;
                client.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                backend.read_exact(&mut one).await.unwrap();
            };
            let ((outcome, _), ()) = tokio::join!(relay, one_byte);
            let idled = started.elapsed();
            assert!(
                matches!(outcome, Outcome::IdleTimeout),
                "outcome: {outcome}"
            );
            assert!(
                idled >= Duration::from_secs(16) && idled < Duration::from_secs(17),
                "closed after {idled:?}, expected 16 s"
            );
        }
    }
    /// The size of what `relay` returns, from the function's type alone.
    fn future_size<'a, F, Fut>(_: F) -> usize
    where
        F: FnOnce(
            TcpStream,
            TcpStream,
            &'a RelayOptions,
            &'a Stats,
            &'a CancellationToken,
            Moved,
        ) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_relay_future_stays_small() {
        // Every idle connection is mostly its task's future: this was 912
        // bytes as `async` pumps, 400 as the hand-written `Relay`.
        let size = future_size(relay);
        println!("relay future: {size} bytes");
        assert!(size <= 512, "the relay future grew to {size} bytes");
    }
}
