//! Listen sockets and the accept loop every server of ours runs (listeners,
//! the admin server, demo backends): bind before serving, accept until told
//! to stop, and back off on accept errors instead of dying or spinning.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::io_reason;

/// Pending connections the kernel queues per listen socket.
const BACKLOG: i32 = 1024;

/// The first pause after an accept error; it doubles with each error in a
/// row, up to [`MAX_BACKOFF`], and starts over after an accept succeeds.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// The longest pause after accept errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Binds `addr` for listening, as a non-blocking std socket, so it can be
/// bound (and a clash reported) before any runtime serves it.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted balancer bind at once while old connections linger
    // in TIME_WAIT; it does not allow two live listeners on one address.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Accepts clients on `listener` until `stop` is cancelled, handing each
/// to `admit`; then drops the socket, so new connects are refused at once.
///
/// Accept errors are mostly transient (a client gone before accept, fd
/// exhaustion): each is logged with `owner` (`listener web`, `admin`), and
/// the loop pauses, longer with each error in a row, and goes on. It never
/// ends but by `stop`.
pub async fn accept_loop(
    listener: TcpListener,
    stop: &CancellationToken,
    owner: &str,
    mut admit: impl FnMut(TcpStream, SocketAddr),
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                backoff = FIRST_BACKOFF;
                admit(stream, client);
            }
            Err(e) => {
                tracing::warn!(on = owner, error = %io_reason(&e), pause = %super::format_duration(backoff), "accept failed; backing off");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{accept_loop, bind};

    #[tokio::test]
    async fn every_client_is_admitted_until_stop_then_connects_are_refused() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(socket).unwrap();
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let serving = tokio::spawn({
            let stop = stop.clone();
            async move {
                accept_loop(listener, &stop, "test", |stream, client| {
                    let _ = tx.send((stream, client));
                })
                .await;
            }
        });
        for _ in 0..3 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let (_, seen) = rx.recv().await.unwrap();
            assert_eq!(seen, client.local_addr().unwrap());
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn binding_a_bound_address_fails_with_address_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
