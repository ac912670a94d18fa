//! Zero-copy relaying on Linux: bulk bytes move socket -> pipe -> socket
//! with `splice(2)`, never through a user-space buffer.
//!
//! A direction in bulk mode (see `tcp.rs`) leases a pipe from a per-thread
//! pool for one chunk, and gives it back once the chunk has been spliced
//! out and the pipe is empty. A pipe that still holds bytes when its lease
//! ends (the connection failed mid-chunk) is closed instead, so no stale
//! byte can ever reach another connection. Reusing pipes saves two
//! syscalls per lease, and leasing per chunk means an idle connection holds
//! no pipe (no file descriptors beyond its two sockets). When no pipe can
//! be had (fd exhaustion), the caller copies instead.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::tcp::Activity;

/// Pipes kept per worker thread for reuse; beyond this they are closed.
const POOL_CAP: usize = 256;

/// Bytes moved by one splice call at most: the default pipe capacity, so a
/// splice into an empty pipe always has room (see [`pump`]).
const CHUNK: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// The two ends of one non-blocking, close-on-exec pipe; closed on drop.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// A pipe borrowed from this thread's pool for one direction of one
/// connection; given back on drop when empty, closed otherwise.
#[derive(Debug)]
pub struct PipeLease {
    /// Always `Some` until drop takes it.
    pipe: Option<Pipe>,
    /// Bytes written into the pipe and not yet read out.
    buffered: usize,
}

impl PipeLease {
    /// A pipe from this thread's pool, or a new one.
    pub fn take() -> io::Result<PipeLease> {
        let pooled = POOL.with(|pool| pool.borrow_mut().pop());
        let pipe = match pooled {
            Some(pipe) => pipe,
            None => {
                let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
                Pipe { read, write }
            }
        };
        Ok(PipeLease {
            pipe: Some(pipe),
            buffered: 0,
        })
    }
}

impl Drop for PipeLease {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        if self.buffered != 0 {
            return; // closed here: stale bytes must never reach another connection
        }
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_CAP {
                pool.push(pipe);
            }
        });
    }
}

/// Pipes pooled on this thread now (tests check that bulk used splice).
#[cfg(test)]
pub(crate) fn pooled_pipes() -> usize {
    POOL.with(|pool| pool.borrow().len())
}

/// A splice that moved at least this much keeps a direction in bulk mode;
/// a shorter one means the burst is over and small messages are copied.
pub(crate) const BULK_MIN: usize = 16 * 1024;

/// Moves what `from` has to read into `to` through a leased pipe: one
/// splice in, then splices out until the pipe is empty (so the pipe goes
/// back to the pool empty, and a connection holds no pipe while idle).
///
/// Returns `Some(0)` at end of stream, `Some(n)` after moving `n` bytes
/// (0 < n), and `None` when no pipe can be had (the caller copies).
pub(crate) async fn forward(
    from: &TcpStream,
    to: &TcpStream,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<Option<usize>> {
    let Ok(mut lease) = PipeLease::take() else {
        return Ok(None);
    };
    let Some(pipe) = lease.pipe.as_ref() else {
        return Ok(None);
    };
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    // The pipe is empty here, so a would-block can only mean the socket has
    // nothing to read, and clearing its readiness is right.
    let n = loop {
        match from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe.write, None, CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => from.readable().await?,
            Err(e) => return Err(e),
        }
    };
    if n == 0 {
        return Ok(Some(0));
    }
    lease.buffered = n;
    activity.touch();
    while lease.buffered > 0 {
        match to.try_io(Interest::WRITABLE, || {
            splice(&pipe.read, None, to, None, lease.buffered, flags).map_err(io::Error::from)
        }) {
            Ok(m) => {
                lease.buffered -= m;
                counter.fetch_add(m as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    activity.touch();
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pooled() -> usize {
        pooled_pipes()
    }

    fn read_fd(lease: &PipeLease) -> i32 {
        lease.pipe.as_ref().map_or(-1, |p| p.read.as_raw_fd())
    }

    #[test]
    fn an_empty_pipe_goes_back_to_the_pool_and_is_reused() {
        // The pool is per thread and each test runs on its own thread.
        let lease = PipeLease::take().unwrap();
        let fd = read_fd(&lease);
        let before = pooled();
        drop(lease);
        assert_eq!(pooled(), before + 1);
        let again = PipeLease::take().unwrap();
        assert_eq!(read_fd(&again), fd, "the pooled pipe was not reused");
        assert_eq!(pooled(), before);
    }

    #[test]
    fn a_pipe_still_holding_bytes_is_closed_not_pooled() {
        let mut lease = PipeLease::take().unwrap();
        lease.buffered = 10;
        let before = pooled();
        drop(lease);
        assert_eq!(pooled(), before);
    }
}
