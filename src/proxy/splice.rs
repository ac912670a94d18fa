//! Zero-copy relaying on Linux: bytes move socket -> pipe -> socket with
//! `splice(2)`, never through a user-space buffer.
//!
//! Each direction of a connection borrows a pipe ([`PipeLease`]) from a per-thread
//! pool and gives it back when the connection ends, if the pipe is empty
//! (a pipe still holding bytes is closed instead, so no stale byte can ever
//! reach another connection). Creating pipes costs two syscalls and two
//! file descriptors, so reusing them keeps per-connection work small.
//! When no pipe can be had (fd exhaustion), the caller falls back to
//! copying.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
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

/// Moves one direction, `from` to `to`, through `pipe` until end of stream,
/// then shuts `to`'s write side so the peer sees the half-close.
pub(crate) async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    lease: &mut PipeLease,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let Some(pipe) = lease.pipe.as_ref() else {
        return Err(io::Error::other("pipe lease already returned"));
    };
    loop {
        // The pipe is empty here, so a would-block can only mean the socket
        // has nothing to read, and clearing its readiness is right.
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe.write, None, CHUNK, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return socket2::SockRef::from(to).shutdown(Shutdown::Write);
        }
        lease.buffered += n;
        activity.touch();
        while lease.buffered > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to, None, lease.buffered, flags).map_err(io::Error::from)
            }) {
                Ok(m) => {
                    lease.buffered -= m;
                    counter.fetch_add(m as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        activity.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pooled() -> usize {
        POOL.with(|pool| pool.borrow().len())
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
