//! Idle HTTP/1.1 connections to one backend, kept for the next request
//! (http mode). A connection is its hyper [`SendRequest`]: the task that
//! drives the socket runs on its own and ends when the last sender is
//! dropped, so dropping an idle sender closes its connection.
//!
//! The pool hands out the connection idle the shortest time first (the one
//! the backend is least likely to have closed meanwhile), never one idle
//! longer than the caller's timeout, and keeps at most the caller's number
//! of them; a sweep ([`Pool::sweep`]) closes the ones that expired without
//! being asked for.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

/// The body of a request sent to a backend: the client's, streamed, with
/// its bytes counted; or none (a request without a body, or one sent
/// again after its first try, which only requests without a body are).
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<UnsyncBoxBody<Bytes, BoxError>>,
    counted: Option<Arc<Tally>>,
}

/// A body's error, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What passed through a client's request body: its data bytes, and
/// whether reading it failed (the client's framing was bad, or it left):
/// then the request failed because of the client, not of the backend.
#[derive(Debug, Default)]
pub struct Tally {
    /// Data bytes read from the client so far.
    pub bytes: AtomicU64,
    /// Reading the client's body failed.
    pub failed: AtomicBool,
}

impl RequestBody {
    /// The client's body, its data bytes and a failure to read it noted in
    /// `counted` as they pass.
    pub fn streamed(inner: UnsyncBoxBody<Bytes, BoxError>, counted: Arc<Tally>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            counted: Some(counted),
        }
    }

    /// No body.
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            counted: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match (&polled, &this.counted) {
            (Poll::Ready(Some(Ok(frame))), Some(counted)) => {
                if let Some(data) = frame.data_ref() {
                    counted
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            (Poll::Ready(Some(Err(_))), Some(counted)) => {
                counted.failed.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// One connection to a backend, ready for a request.
pub type Sender = SendRequest<RequestBody>;

/// The idle connections to one backend.
#[derive(Debug, Default)]
pub struct Pool {
    /// Newest last.
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    /// The connection idle the shortest time that is not closed and has not
    /// been idle longer than `max_idle`; the expired and closed ones found
    /// on the way are closed.
    pub fn take(&self, max_idle: Duration) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(found) = idle.pop() {
            if !found.sender.is_closed() && now.duration_since(found.since) < max_idle {
                return Some(found.sender);
            }
        }
        None
    }

    /// Keeps `sender` for a later request, unless `max` are kept already
    /// or it is closed (then it is dropped, which closes it).
    pub fn put(&self, sender: Sender, max: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < max {
            idle.push(Idle {
                sender,
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
        idle.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < max_idle);
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

    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    use super::{Pool, Sender};

    /// A connection to a listener that accepts and holds every connection;
    /// returns the sender and the accepted stream (dropping it closes the
    /// connection from the backend's side).
    async fn connection(listener: &TcpListener) -> (Sender, TcpStream) {
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        (sender, accepted)
    }

    #[tokio::test]
    async fn the_newest_connection_goes_first_and_at_most_max_are_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let mut held = Vec::new();
        for _ in 0..3 {
            let (sender, accepted) = connection(&listener).await;
            held.push(accepted);
            pool.put(sender, 2);
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
        let (sender, _accepted) = connection(&listener).await;
        pool.put(sender, 8);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(pool.sweep(Duration::from_secs(30)), 0);
        let (sender, _accepted2) = connection(&listener).await;
        pool.put(sender, 8);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(pool.take(Duration::from_secs(30)).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_skipped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let (sender, accepted) = connection(&listener).await;
        pool.put(sender, 8);
        drop(accepted);
        crate::testing::eventually("the pool sees the close", || async {
            pool.sweep(Duration::from_secs(60)) == 0
        })
        .await;
        assert!(pool.take(Duration::from_secs(60)).is_none());
    }
}
