//! Loopback clients with deadlines, so no test hangs on a silent peer:
//! connect (from a chosen source address too), read a backend's greeting,
//! echo, read until closed, half-close, and tell a refused connect.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::PROMPTLY;

/// Connects to `addr` with read and write timeouts, so no test hangs on a
/// silent peer.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    with_timeouts(stream)
}

/// Connects from `source` (any 127.x address works on Linux loopback),
/// with the same timeouts as [`connect`].
pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
    socket
        .connect_timeout(&addr.into(), PROMPTLY)
        .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
    with_timeouts(socket.into())
}

/// `stream` with read and write timeouts of [`PROMPTLY`].
fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(PROMPTLY))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(PROMPTLY))
        .expect("set a write timeout");
    stream
}

/// Reads one `\n`-terminated line (without the `\n`); the greeting of a
/// named backend.
pub fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&line)),
                ));
            }
            _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            _ => line.push(byte[0]),
        }
    }
}

/// Connects to `addr` and reads the name a named backend greets with.
pub fn backend_name_via(addr: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPTLY)?;
    stream.set_read_timeout(Some(PROMPTLY))?;
    read_line(&mut stream)
}

/// The names of the backends `count` sequential connections to `addr`
/// reach (each connection is closed before the next opens); panics naming
/// the connection that got no backend.
pub fn backends_reached(addr: SocketAddr, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| backend_name_via(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}")))
        .collect()
}

/// How many of `names` (a tally of [`backends_reached`]) are `name`.
pub fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Writes `message` and reads as many bytes back: `Ok` when they are the
/// same (an echo came through whole), else what happened instead. Tests
/// say `assert_eq!(echoes(&mut client, b"x"), Ok(()))`.
pub fn echoes(stream: &mut TcpStream, message: &[u8]) -> Result<(), String> {
    let len = message.len();
    stream
        .write_all(message)
        .map_err(|e| format!("sending {len} bytes: {e}"))?;
    let mut back = vec![0u8; len];
    stream
        .read_exact(&mut back)
        .map_err(|e| format!("reading {len} bytes back: {e}"))?;
    match message
        .iter()
        .zip(&back)
        .position(|(sent, got)| sent != got)
    {
        None => Ok(()),
        Some(_) if len <= 64 => Err(format!(
            "sent {:?}, got {:?} back",
            String::from_utf8_lossy(message),
            String::from_utf8_lossy(&back)
        )),
        Some(at) => Err(format!(
            "of {len} bytes sent, byte {at} came back different"
        )),
    }
}

/// How a stream ended when a test expected it to end.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// An orderly EOF.
    Eof,
    /// A reset (RST), also acceptable where SPEC says "closed".
    Reset,
}

/// Reads from `stream` until it is closed (EOF or reset), at most
/// `within`; any bytes read are returned with how it closed. `Err` if it
/// stayed open.
pub fn read_until_closed(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<(Vec<u8>, Closed), String> {
    let (received, closed) = read_until(stream, within, |_| false)?;
    Ok((
        received,
        closed.expect("a read that is never complete ends only by a close"),
    ))
}

/// Reads from `stream` until `complete` holds for the bytes read so far
/// (then without a close: `None`) or the stream is closed (EOF or reset),
/// at most `within`. `Err` if neither came in time.
pub(super) fn read_until(
    stream: &mut TcpStream,
    within: Duration,
    complete: impl Fn(&[u8]) -> bool,
) -> Result<(Vec<u8>, Option<Closed>), String> {
    let mut received = Vec::new();
    let closed = read_chunks(stream, within, |chunk| {
        received.extend_from_slice(chunk);
        if complete(&received) { 0 } else { 16 * 1024 }
    })?;
    Ok((received, closed))
}

/// Reads from `stream` a chunk at a time, at most `within`, handing each
/// chunk to `take` (first an empty one), which says how many bytes the
/// next read may take: 0 when it has had enough (then `None`), else until
/// the stream is closed (EOF or reset: how). `Err` if neither came in time.
pub(super) fn read_chunks(
    stream: &mut TcpStream,
    within: Duration,
    mut take: impl FnMut(&[u8]) -> usize,
) -> Result<Option<Closed>, String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let mut want = take(&[]);
    loop {
        if want == 0 {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open after {within:?} ({total} bytes received)"
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buf[..want.min(64 * 1024)]) {
            Ok(0) => return Ok(Some(Closed::Eof)),
            Ok(n) => {
                total += n;
                want = take(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(Some(Closed::Reset));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Asserts that `stream` is closed within `within` without sending a byte.
pub fn assert_closed_without_data(stream: &mut TcpStream, within: Duration) {
    match read_until_closed(stream, within) {
        Ok((data, _)) if data.is_empty() => {}
        Ok((data, how)) => panic!(
            "expected a closed connection, got {} bytes before {how:?}: {:?}",
            data.len(),
            String::from_utf8_lossy(&data)
        ),
        Err(e) => panic!("expected a closed connection: {e}"),
    }
}

/// Whether a connect to `addr` is refused right now (nothing listens).
pub fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, PROMPTLY) {
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// An address where nothing listens: bound on port 0, then released.
pub fn refused_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// Shuts the write side of a client stream (sends FIN).
pub fn half_close(stream: &TcpStream) {
    stream
        .shutdown(Shutdown::Write)
        .expect("shut the write side");
}
