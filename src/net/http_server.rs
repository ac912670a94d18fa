//! The HTTP/1.1 server setup our HTTP servers share (the admin server, the
//! demo backend, and next the http listeners): hyper's http1 connection
//! with a timer, so its header-read timeout really fires (without a timer
//! hyper ignores it), one tracked task per connection, and a graceful
//! shutdown that lets requests in flight finish.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An error type hyper accepts from services and bodies.
type BoxError = Box<dyn StdError + Send + Sync>;

/// The connections of one HTTP server: each on its own tracked task,
/// watched for a graceful shutdown.
pub struct HttpServer {
    /// Who serves, for logs: `admin`, `backend b1`.
    owner: String,
    /// How long a client may take to send a request head; a connection
    /// that sends none in time is closed.
    header_read_timeout: Duration,
    /// Tells every connection to finish its request in flight and close.
    graceful: GracefulShutdown,
    /// Every connection task, waited for by [`HttpServer::shutdown`].
    connections: TaskTracker,
    /// Cancelled when the grace period is over: ends what is left.
    close: CancellationToken,
}

impl HttpServer {
    /// A server with no connections yet; `owner` names it in logs.
    pub fn new(owner: impl Into<String>, header_read_timeout: Duration) -> HttpServer {
        HttpServer {
            owner: owner.into(),
            header_read_timeout,
            graceful: GracefulShutdown::new(),
            connections: TaskTracker::new(),
            close: CancellationToken::new(),
        }
    }

    /// Serves HTTP/1.1 on an accepted connection from `client`, answering
    /// each request with `service`, on a tracked task. `held` (a
    /// connection slot, say) lives as long as the connection.
    pub fn serve<S>(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        service: S,
        held: impl Send + 'static,
    ) where
        S: HttpService<Incoming> + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        S::ResBody: Body + Send + 'static,
        <S::ResBody as Body>::Data: Send,
        <S::ResBody as Body>::Error: Into<BoxError>,
    {
        let connection =
            builder(self.header_read_timeout).serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        let close = self.close.clone();
        let owner = self.owner.clone();
        self.connections.spawn(async move {
            let _held = held;
            tokio::select! {
                served = connection => if let Err(e) = served {
                    tracing::debug!(on = %owner, client = %client, error = %e, "http connection ended with an error");
                },
                () = close.cancelled() => {}
            }
        });
    }

    /// Stops serving: every connection finishes the request it is
    /// answering and closes (idle ones at once). With a `grace`, what is
    /// still open after it is closed; without, requests in flight may take
    /// as long as they take. Returns once every connection task has ended.
    pub async fn shutdown(self, grace: Option<Duration>) {
        let graceful = self.graceful.shutdown();
        match grace {
            Some(grace) => {
                if tokio::time::timeout(grace, graceful).await.is_err() {
                    self.close.cancel();
                }
            }
            None => graceful.await,
        }
        self.connections.close();
        self.connections.wait().await;
    }
}

/// hyper's HTTP/1.1 server settings every server of ours starts from: a
/// timer, so the header-read timeout fires (without one hyper ignores it),
/// and that timeout, which also bounds how long a kept-alive connection
/// waits for its next request.
pub fn builder(header_read_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

/// Decodes the `%XX` escapes of one path segment into UTF-8 text; `None`
/// for a `%` not followed by two hex digits, or bytes that are not UTF-8.
/// Callers decode segment by segment, so an encoded `/` (`%2F`) stays
/// inside its segment.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let high = hex_value(*bytes.get(index + 1)?)?;
            let low = hex_value(*bytes.get(index + 2)?)?;
            decoded.push(high << 4 | low);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The value of one hex digit, either case.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn segments_decode_their_escapes_and_refuse_broken_ones() {
        assert_eq!(
            percent_decode("%5B%3a%3A1%5D:80").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%zz", "%+1", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
