//! The relay: bytes copied unchanged both ways, each direction tracking its
//! own end, so a half-close (one side shuts its write side) is passed on
//! while the other direction keeps flowing until it ends too. A connection
//! with no bytes either way for `idle_timeout` is closed, and so is every
//! connection when drain runs out of time.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::Stats;

/// How a relay behaves.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Bytes buffered per direction.
    pub buffer_size: usize,
    /// Close after this long without a byte either way.
    pub idle_timeout: Duration,
    /// Move bytes with `splice(2)` through pipes instead of copying them
    /// through user-space buffers (Linux; falls back to copying when no
    /// pipe can be had).
    pub zero_copy: bool,
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
            Outcome::Failed(e) => write!(f, "failed: {}", crate::error::io_reason(e)),
        }
    }
}

/// The last time a byte moved, as nanoseconds after `base`; written by
/// both directions, read by the idle timer.
pub(crate) struct Activity {
    base: Instant,
    last_ns: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }
}

/// Relays between `client` and `backend` until both directions are done,
/// counting bytes into `stats` as they move (`bytes_in`: client to backend).
pub async fn relay(
    mut client: TcpStream,
    mut backend: TcpStream,
    options: &RelayOptions,
    stats: &Stats,
    close: &CancellationToken,
) -> Outcome {
    let activity = Activity::new();
    let (client_read, client_write) = client.split();
    let (backend_read, backend_write) = backend.split();
    let one_done = AtomicBool::new(false);
    let up = Direction {
        counter: &stats.bytes_in,
        options,
        activity: &activity,
        one_done: &one_done,
    };
    let down = Direction {
        counter: &stats.bytes_out,
        options,
        activity: &activity,
        one_done: &one_done,
    };
    let both = async {
        tokio::try_join!(
            up.pump(client_read, backend_write),
            down.pump(backend_read, client_write)
        )
    };
    tokio::select! {
        result = both => match result {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Failed(e),
        },
        _ = idle(&activity, options.idle_timeout) => Outcome::IdleTimeout,
        _ = close.cancelled() => Outcome::Closed,
    }
}

/// What one direction of a relay counts into and how it moves bytes.
struct Direction<'a> {
    counter: &'a AtomicU64,
    options: &'a RelayOptions,
    activity: &'a Activity,
    /// Set by the first direction to reach end of stream.
    one_done: &'a AtomicBool,
}

impl Direction<'_> {
    /// Moves bytes `from` -> `to` until end of stream, then shuts `to`'s
    /// write side so the peer sees the half-close.
    ///
    /// While the connection is idle this holds no buffer and no pipe: it
    /// waits for readability first and borrows a buffer (or, on Linux, a
    /// pipe) from the worker thread's pool only to move what arrived. Small
    /// messages are copied (one read, one write: the cheapest for them);
    /// after a read fills the whole buffer the direction is carrying bulk
    /// data, and with `zero_copy` it switches to `splice` until a chunk
    /// comes up short again.
    async fn pump(&self, mut from: ReadHalf<'_>, mut to: WriteHalf<'_>) -> io::Result<()> {
        let mut bulk = false;
        loop {
            // The stream's own reader slot, not `readable()`: no waiter is
            // stored in the future, which keeps idle connections small.
            std::future::poll_fn(|cx| from.as_ref().poll_read_ready(cx)).await?;
            #[cfg(target_os = "linux")]
            if bulk && self.options.zero_copy {
                // Boxed: a bulk chunk (64 KiB) pays one small allocation,
                // and every connection's future stays small while idle.
                let chunk =
                    super::splice::forward(from.as_ref(), to.as_ref(), self.counter, self.activity);
                match Box::pin(chunk).await? {
                    Some(0) => return self.finish(&mut to).await,
                    Some(moved) => {
                        bulk = moved >= super::splice::BULK_MIN;
                        continue;
                    }
                    // No pipe to be had: copy this chunk instead.
                    None => {}
                }
            }
            let mut buf = BufferLease::take(self.options.buffer_size);
            // Readiness can be stale (the read would block): then the
            // buffer goes back at once instead of being held while idle.
            let Some(read) = poll_once(from.read(buf.bytes())).await else {
                continue;
            };
            let n = read?;
            if n == 0 {
                return self.finish(&mut to).await;
            }
            self.activity.touch();
            to.write_all(buf.bytes().get(..n).unwrap_or_default())
                .await?;
            self.counter.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
            bulk = n == buf.len();
        }
    }

    /// Passes end of stream on. The first direction to end shuts `to`'s
    /// write side (the half-close); the second needs no shutdown: both
    /// sockets are closed as soon as it returns, and closing a socket whose
    /// input was read to its end sends the same FIN, one syscall cheaper.
    async fn finish(&self, to: &mut WriteHalf<'_>) -> io::Result<()> {
        if self.one_done.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        to.shutdown().await
    }
}

/// Polls `future` once: its output if it is ready at once, `None` if it
/// would wait (the future is then dropped, which is fine for a read).
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Resolves once no byte has moved for `timeout`.
async fn idle(activity: &Activity, timeout: Duration) {
    loop {
        let deadline = activity.last() + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
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
            buffer_size: 4096,
            idle_timeout: idle,
            zero_copy,
        }
    }

    /// Both relay paths: user-space copy, and splice where it exists.
    const PATHS: [bool; 2] = [false, true];

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
            let relay = relay(client_side, backend_side, &opts, &stats, &close);
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
            let (outcome, at_client, at_backend) = tokio::join!(relay, client_io, backend_io);
            assert!(matches!(outcome, Outcome::Done), "outcome: {outcome}");
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
            let stats = Stats::default();
            let close = CancellationToken::new();
            let relay = tokio::spawn(async move {
                relay(
                    client_side,
                    backend_side,
                    &options(Duration::from_secs(60), zero_copy),
                    &stats,
                    &close,
                )
                .await
            });
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
            let outcome = relay(
                client_side,
                backend_side,
                &options(Duration::from_secs(300), zero_copy),
                &stats,
                &close,
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
            let stats = Stats::default();
            let close = CancellationToken::new();
            let relay = tokio::spawn(async move {
                relay(
                    client_side,
                    backend_side,
                    &options(Duration::from_secs(10), zero_copy),
                    &stats,
                    &close,
                )
                .await
            });
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
            let stats = Stats::default();
            let close = CancellationToken::new();
            let trigger = close.clone();
            let relay = tokio::spawn(async move {
                relay(
                    client_side,
                    backend_side,
                    &options(Duration::from_secs(60), zero_copy),
                    &stats,
                    &close,
                )
                .await
            });
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
            let stats = Stats::default();
            let close = CancellationToken::new();
            let trigger = close.clone();
            // The relay runs on this test's thread, so the thread-local
            // lease count sees exactly its buffers.
            let relay = tokio::spawn(async move {
                let opts = options(Duration::from_secs(60), zero_copy);
                relay(client_side, backend_side, &opts, &stats, &close).await
            });
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
}
