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
//!
//! This module only moves bytes and never waits: the relay's state machine
//! polls socket readiness and calls [`PipeLease::fill`] and
//! [`PipeLease::drain`] when it is ready.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipes kept per worker thread for reuse; beyond this they are closed.
const POOL_CAP: usize = 256;

/// The capacity asked of each new pipe: a splice moves up to a whole pipe,
/// so a larger pipe halves the calls per MiB of bulk data. The kernel may
/// refuse (a user past `pipe-user-pages-soft`); the pipe then keeps the
/// size it has, which [`Pipe::capacity`] records.
const PIPE_SIZE: usize = 256 * 1024;

/// Linux's default pipe capacity, assumed if the size cannot be read.
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// Non-blocking on the pipe too: a full pipe must never park the thread.
const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Leases taken and not yet dropped on this thread (tests only).
    static LEASED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The two ends of one non-blocking, close-on-exec pipe; closed on drop.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes the pipe holds at most: one splice into it moves up to this
    /// much, and into an empty pipe always has room.
    capacity: usize,
}

/// A pipe borrowed from this thread's pool for one chunk of one direction;
/// given back on drop when empty, closed otherwise.
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
                let capacity = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE)
                    .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
                    .unwrap_or(DEFAULT_PIPE_SIZE);
                Pipe {
                    read,
                    write,
                    capacity,
                }
            }
        };
        #[cfg(test)]
        LEASED.with(|n| n.set(n.get() + 1));
        Ok(PipeLease {
            pipe: Some(pipe),
            buffered: 0,
        })
    }

    /// Bytes in the pipe still to be spliced out.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Splices what `from` has to read (up to the pipe's capacity) into the pipe, which
    /// must be empty: then a would-block can only mean the socket has
    /// nothing to read, and `try_io` rightly clears its readiness.
    /// Returns 0 at end of stream.
    pub(crate) fn fill(&mut self, from: &TcpStream) -> io::Result<usize> {
        debug_assert_eq!(self.buffered, 0, "fill needs an empty pipe");
        let pipe = self.pipe()?;
        let n = from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe.write, None, pipe.capacity, FLAGS).map_err(io::Error::from)
        })?;
        self.buffered += n;
        Ok(n)
    }

    /// Splices as much of the pipe's bytes into `to` as it takes now.
    pub(crate) fn drain(&mut self, to: &TcpStream) -> io::Result<usize> {
        let pipe = self.pipe()?;
        let want = self.buffered;
        let n = to.try_io(Interest::WRITABLE, || {
            splice(&pipe.read, None, to, None, want, FLAGS).map_err(io::Error::from)
        })?;
        if n == 0 {
            // The pipe had bytes: nothing taken means the socket is gone.
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.buffered = self.buffered.saturating_sub(n);
        Ok(n)
    }

    fn pipe(&self) -> io::Result<&Pipe> {
        self.pipe
            .as_ref()
            .ok_or_else(|| io::Error::other("pipe lease already given back"))
    }
}

impl Drop for PipeLease {
    fn drop(&mut self) {
        #[cfg(test)]
        LEASED.with(|n| n.set(n.get().saturating_sub(1)));
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

/// Pipes leased on this thread now (tests check what a relay holds).
#[cfg(test)]
pub(crate) fn leased_pipes() -> usize {
    LEASED.with(std::cell::Cell::get)
}

/// A splice that moved at least this much keeps a direction in bulk mode;
/// a shorter one means the burst is over and small messages are copied.
pub(crate) const BULK_MIN: usize = 16 * 1024;

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
