//! The relay: bytes copied unchanged both ways, each direction tracking its
//! own end, so a half-close (one side shuts its write side) is passed on
//! while the other direction keeps flowing until it ends too. A connection
//! with no bytes either way for `idle_timeout` is closed, and so is every
//! connection when drain runs out of time.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
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
    let both = async {
        if options.zero_copy {
            #[cfg(target_os = "linux")]
            if let Some(result) = splice_both(&client, &backend, stats, &activity).await {
                return result;
            }
        }
        copy_both(
            &mut client,
            &mut backend,
            options.buffer_size,
            stats,
            &activity,
        )
        .await
    };
    tokio::select! {
        result = both => match result {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e),
        },
        _ = idle(&activity, options.idle_timeout) => Outcome::IdleTimeout,
        _ = close.cancelled() => Outcome::Closed,
    }
}

/// Both directions through pipes; `None` when no pipe pair can be had, so
/// the caller copies instead.
#[cfg(target_os = "linux")]
async fn splice_both(
    client: &TcpStream,
    backend: &TcpStream,
    stats: &Stats,
    activity: &Activity,
) -> Option<io::Result<()>> {
    use super::splice::{PipeLease, pump};
    let (Ok(mut up), Ok(mut down)) = (PipeLease::take(), PipeLease::take()) else {
        return None;
    };
    let result = tokio::try_join!(
        pump(client, backend, &mut up, &stats.bytes_in, activity),
        pump(backend, client, &mut down, &stats.bytes_out, activity),
    );
    Some(result.map(|_| ()))
}

/// Both directions through user-space buffers of `buffer_size` bytes.
async fn copy_both(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    buffer_size: usize,
    stats: &Stats,
    activity: &Activity,
) -> io::Result<()> {
    let (mut client_read, mut client_write) = client.split();
    let (mut backend_read, mut backend_write) = backend.split();
    let mut up = vec![0u8; buffer_size];
    let mut down = vec![0u8; buffer_size];
    tokio::try_join!(
        pump(
            &mut client_read,
            &mut backend_write,
            &mut up,
            &stats.bytes_in,
            activity
        ),
        pump(
            &mut backend_read,
            &mut client_write,
            &mut down,
            &stats.bytes_out,
            activity
        ),
    )
    .map(|_| ())
}

/// Copies one direction until end of stream, then shuts the write side so
/// the peer sees the half-close.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    buf: &mut [u8],
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let n = from.read(buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        activity.touch();
        to.write_all(&buf[..n]).await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
    }
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
}
