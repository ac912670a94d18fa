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
struct Activity {
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

    fn touch(&self) {
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
    let (mut client_read, mut client_write) = client.split();
    let (mut backend_read, mut backend_write) = backend.split();
    let mut up = vec![0u8; options.buffer_size];
    let mut down = vec![0u8; options.buffer_size];
    let both = async {
        tokio::try_join!(
            pump(
                &mut client_read,
                &mut backend_write,
                &mut up,
                &stats.bytes_in,
                &activity
            ),
            pump(
                &mut backend_read,
                &mut client_write,
                &mut down,
                &stats.bytes_out,
                &activity
            ),
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
