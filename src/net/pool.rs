//! Idle HTTP/1.1 connections to one backend, kept for the next request
//! (http mode). A connection is a [`BackendConn`]: its socket and the
//! bytes read past the last answer (none while idle); dropping it closes
//! it.
//!
//! The pool hands out the connection idle the shortest time first (the one
//! the backend is least likely to have closed meanwhile), never one idle
//! longer than the caller's timeout nor one the backend closed, and keeps
//! at most the caller's number of them; a sweep ([`Pool::sweep`]) closes
//! the ones that expired without being asked for.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A keep-alive connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    /// The socket (shared with the task writing a request body, while one
    /// is written).
    pub socket: Arc<TcpStream>,
    /// Bytes read and not used yet.
    pub buf: BytesMut,
}

impl BackendConn {
    /// A new connection on `stream`.
    pub fn new(stream: TcpStream) -> BackendConn {
        let _ = stream.set_nodelay(true);
        BackendConn {
            socket: Arc::new(stream),
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the backend has
    /// neither closed it nor sent anything unasked. Checked without
    /// waiting: what the runtime has seen of the socket, and a read only
    /// when it says there is something.
    pub fn usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.socket.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                matches!(
                    self.socket.try_read(&mut byte),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                )
            }
        }
    }
}

/// The idle connections to one backend.
#[derive(Debug, Default)]
pub struct Pool {
    /// Newest last.
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    conn: BackendConn,
    since: Instant,
}

impl Pool {
    /// The connection idle the shortest time that is not closed and has not
    /// been idle longer than `max_idle`; the expired and closed ones found
    /// on the way are closed.
    pub fn take(&self, max_idle: Duration) -> Option<BackendConn> {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(found) = idle.pop() {
            if now.duration_since(found.since) < max_idle && found.conn.usable() {
                return Some(found.conn);
            }
        }
        None
    }

    /// Keeps `conn` for a later request, unless `max` are kept already
    /// or it is not usable (then it is dropped, which closes it).
    pub fn put(&self, mut conn: BackendConn, max: usize) {
        if !conn.usable() {
            return;
        }
        // No buffer held while idle.
        conn.buf = BytesMut::new();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < max {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle longer than `max_idle` or closed by the
    /// backend. Returns how many are kept.
    pub fn sweep(&self, max_idle: Duration) -> usize {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|i| now.duration_since(i.since) < max_idle && i.conn.usable());
        idle.len()
    }

    /// How many connections are idle now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Closes every idle connection.
    pub fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};

    use super::{BackendConn, Pool};

    /// A connection to a listener that accepts and holds every connection;
    /// returns it and the accepted stream (dropping that closes the
    /// connection from the backend's side).
    async fn connection(listener: &TcpListener) -> (BackendConn, TcpStream) {
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (BackendConn::new(stream), accepted)
    }

    #[tokio::test]
    async fn the_newest_connection_goes_first_and_at_most_max_are_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let mut held = Vec::new();
        for _ in 0..3 {
            let (conn, accepted) = connection(&listener).await;
            held.push(accepted);
            pool.put(conn, 2);
        }
        assert_eq!(pool.len(), 2);
        assert!(pool.take(Duration::from_secs(60)).is_some());
        assert!(pool.take(Duration::from_secs(60)).is_some());
        assert!(pool.take(Duration::from_secs(60)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_connection_is_never_handed_out_and_the_sweep_closes_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let (conn, _accepted) = connection(&listener).await;
        pool.put(conn, 8);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(pool.sweep(Duration::from_secs(30)), 0);
        let (conn, _accepted2) = connection(&listener).await;
        pool.put(conn, 8);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(pool.take(Duration::from_secs(30)).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_backend_sent_unasked_bytes_on_is_skipped() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let (conn, mut accepted) = connection(&listener).await;
        pool.put(conn, 8);
        accepted.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        crate::testing::eventually("the pool sees the bytes", || async {
            pool.sweep(Duration::from_secs(60)) == 0
        })
        .await;
        assert!(pool.take(Duration::from_secs(60)).is_none());
        drop(accepted);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_skipped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let (conn, accepted) = connection(&listener).await;
        pool.put(conn, 8);
        drop(accepted);
        crate::testing::eventually("the pool sees the close", || async {
            pool.sweep(Duration::from_secs(60)) == 0
        })
        .await;
        assert!(pool.take(Duration::from_secs(60)).is_none());
    }
}
