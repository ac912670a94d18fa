//! Fault injection (issue 14): a backend whose connections follow a
//! [`Script`] and can be killed or reset mid-transfer ([`FaultBackend`]);
//! the deterministic bytes every case checks by digest ([`pattern`],
//! [`Digest`]); and what the balancer process holds, read from `/proc`
//! ([`Usage`]: open descriptors, resident memory, CPU time).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::backends::runtime;
use super::clients::{Closed, read_chunks};
use super::loopback;

// === Bytes checked by digest ===

/// The 64-bit word number `index` of the stream `seed` (splitmix64).
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_add(1))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The length of the block every stream is cut from: a prime number of
/// bytes (about 1 MiB), so it lines up with no buffer, chunk or pipe size,
/// and a chunk lost, repeated or moved changes the digest.
const PERIOD: usize = 1_048_583;

/// The pseudo-random block every stream is cut from, made once: copying
/// from it keeps backends that send gigabytes cheap in a debug build.
fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let words = u64::try_from(PERIOD.div_ceil(8)).expect("fits");
        let mut block: Vec<u8> = (0..words)
            .flat_map(|i| word(0x5EED, i).to_le_bytes())
            .collect();
        block.truncate(PERIOD);
        block
    })
}

/// Bytes `from..from + len` of the deterministic stream `seed`: the block
/// repeated from an offset of the seed's own, so two seeds give two
/// different streams and bytes delivered to the wrong connection are
/// caught.
pub fn pattern(seed: u64, from: u64, len: usize) -> Vec<u8> {
    let block = block();
    let period = PERIOD as u64;
    let start = (from % period + seed.wrapping_mul(104_729) % period) % period;
    let mut at = usize::try_from(start).expect("an offset in the block fits");
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let take = (PERIOD - at).min(len - out.len());
        out.extend_from_slice(&block[at..at + take]);
        at = 0;
    }
    out
}

/// FNV-1a over a byte stream, fed as it comes: what arrived is compared
/// with what was sent by digest and length, not kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// The hash so far.
    pub hash: u64,
    /// How many bytes went in.
    pub len: u64,
}

impl Default for Digest {
    fn default() -> Digest {
        Digest {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Digest {
    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }

    /// The digest of the first `len` bytes of the stream `seed`.
    pub fn of_pattern(seed: u64, len: u64) -> Digest {
        Digest::of_pattern_from(seed, 0, len)
    }

    /// The digest of bytes `from..from + len` of the stream `seed`.
    pub fn of_pattern_from(seed: u64, from: u64, len: u64) -> Digest {
        let mut digest = Digest::default();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(1 << 20);
            let chunk = pattern(seed, from + done, usize::try_from(n).expect("1 MiB fits"));
            digest.update(&chunk);
            done += n;
        }
        digest
    }
}

// === A backend that misbehaves on cue ===

/// What a [`FaultBackend`] does with each connection it accepts.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Echo every byte back until EOF, then close.
    Echo,
    /// Read until EOF and record what came ([`FaultBackend::received`]);
    /// send nothing.
    Sink,
    /// Send `len` bytes of the stream `seed`, shut the write side, and
    /// read (and drop) what comes until the peer closes: bytes left unread
    /// at a close would make it a reset.
    Send { len: u64, seed: u64 },
    /// Send the first `sent` bytes of the stream `seed`, then hold the
    /// connection open, reading what comes and sending nothing more.
    SendThenStall { sent: u64, seed: u64 },
    /// Accept, read what comes and never answer.
    Silent,
    /// Close as soon as accepted.
    CloseAtOnce,
    /// Reset (RST) as soon as accepted.
    ResetAtOnce,
    /// HTTP/1.1 keep-alive: each request's body is the answer's body
    /// (`content-length` framed), so every answer can be checked against
    /// the request it answers.
    HttpEcho,
    /// HTTP: read a request head, answer a head announcing `len` bytes of
    /// the stream `seed` and the first half of them, then hold.
    HttpHalfThenStall { len: u64, seed: u64 },
    /// HTTP: read a request head, then record its body as it comes
    /// ([`FaultBackend::received`]) and never answer.
    HttpSink,
    /// HTTP: read a request head, then send `len` body bytes of the
    /// stream `seed` under a `content-length` head, and keep the
    /// connection for the next request.
    HttpSend { len: u64, seed: u64 },
}

/// How a killed backend's connections end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Closed, as the kernel closes a killed process's sockets (FIN, or
    /// RST when bytes were left unread).
    Close,
    /// Reset: SO_LINGER 0, then closed, so the peer gets an RST.
    Reset,
}

/// A backend on `127.0.0.1:0` following a [`Script`] that a test can kill
/// ([`FaultBackend::kill`]: the listener and every connection closed at
/// once, new connects refused) or reset ([`FaultBackend::reset`]) at any
/// moment. Stops when dropped.
pub struct FaultBackend {
    addr: SocketAddr,
    end: watch::Sender<Option<End>>,
    state: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

/// What the connections of one backend share with the test.
#[derive(Default)]
struct Shared {
    accepts: AtomicUsize,
    /// Connections open right now.
    open: AtomicUsize,
    /// Bytes read, over every connection.
    read: AtomicU64,
    /// Bytes written, over every connection.
    written: AtomicU64,
    /// What each `Sink` connection has read so far, by accept order.
    received: Mutex<Vec<Digest>>,
}

impl FaultBackend {
    /// Starts a backend following `script` on a free loopback port.
    pub fn start(script: Script) -> FaultBackend {
        FaultBackend::start_on(loopback(0), script).expect("bind a fault backend")
    }

    /// Starts one on `addr` (to bring a killed backend back where it was).
    pub fn start_on(addr: SocketAddr, script: Script) -> io::Result<FaultBackend> {
        let listener = runtime().block_on(async { bind(addr) })?;
        let addr = listener.local_addr()?;
        let (end, ended) = watch::channel(None);
        let state = Arc::new(Shared::default());
        let task = runtime().spawn(serve(listener, script, ended, Arc::clone(&state)));
        Ok(FaultBackend {
            addr,
            end,
            state,
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn accepts(&self) -> usize {
        self.state.accepts.load(Ordering::Relaxed)
    }

    /// How many of its connections are open right now.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::Relaxed)
    }

    /// Bytes read so far, over every connection.
    pub fn read_bytes(&self) -> u64 {
        self.state.read.load(Ordering::Relaxed)
    }

    /// Bytes written so far, over every connection.
    pub fn written_bytes(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// What each `Sink` connection has read so far (up to its end, or
    /// to the kill), by accept order.
    pub fn received(&self) -> Vec<Digest> {
        self.state
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kills it as a crash would: the listener and every connection
    /// closed at once (connects refused from now on). Returns when all
    /// are closed.
    pub fn kill(&mut self) {
        self.stop(End::Close);
    }

    /// Resets every connection (RST) and closes the listener.
    pub fn reset(&mut self) {
        self.stop(End::Reset);
    }

    fn stop(&mut self, how: End) {
        let Some(task) = self.task.take() else { return };
        let _ = self.end.send(Some(how));
        // Every connection task sees the signal, ends its socket its way
        // and returns; the serving task returns once they all did.
        let _ = runtime().block_on(task);
    }
}

impl Drop for FaultBackend {
    fn drop(&mut self) {
        self.stop(End::Close);
    }
}

/// Binds with a backlog as deep as the machine allows (SOMAXCONN caps it),
/// so thousands of connects at once all queue.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

async fn serve(
    listener: TcpListener,
    script: Script,
    mut ended: watch::Receiver<Option<End>>,
    state: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                state.accepts.fetch_add(1, Ordering::Relaxed);
                state.open.fetch_add(1, Ordering::Relaxed);
                let ended = ended.clone();
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    connection(stream, script, ended, &state).await;
                    state.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = ended.changed() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Runs `script` on one connection until it ends or the backend is
/// killed, then closes the socket the way the kill asks.
async fn connection(
    mut stream: TcpStream,
    script: Script,
    mut ended: watch::Receiver<Option<End>>,
    state: &Shared,
) {
    let _ = stream.set_nodelay(true);
    if ended.borrow().is_some() {
        return;
    }
    let how = tokio::select! {
        _ = run(&mut stream, script, state) => End::Close,
        _ = ended.changed() => ended.borrow().unwrap_or(End::Close),
    };
    if how == End::Reset {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

async fn run(stream: &mut TcpStream, script: Script, state: &Shared) -> io::Result<()> {
    match script {
        Script::Echo => echo(stream, state).await,
        Script::Sink => sink(stream, state).await,
        Script::Send { len, seed } => {
            send(stream, seed, 0, len, state).await?;
            stream.shutdown().await?;
            hold(stream, state).await
        }
        Script::SendThenStall { sent, seed } => {
            send(stream, seed, 0, sent, state).await?;
            hold(stream, state).await
        }
        Script::Silent => hold(stream, state).await,
        Script::CloseAtOnce => Ok(()),
        Script::ResetAtOnce => {
            socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO))?;
            Ok(())
        }
        Script::HttpEcho => http_echo(stream, state).await,
        Script::HttpSink => {
            let mut buf = Vec::new();
            read_head(stream, &mut buf, state).await?;
            sink_after(stream, buf, state).await
        }
        Script::HttpHalfThenStall { len, seed } => {
            let mut buf = Vec::new();
            read_head(stream, &mut buf, state).await?;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            send(stream, seed, 0, len / 2, state).await?;
            hold(stream, state).await
        }
        Script::HttpSend { len, seed } => {
            let mut buf = Vec::new();
            loop {
                if read_head(stream, &mut buf, state).await?.is_none() {
                    return Ok(());
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                stream.write_all(head.as_bytes()).await?;
                send(stream, seed, 0, len, state).await?;
            }
        }
    }
}

/// Reads and discards until the peer closes, sending nothing: a backend
/// that stalls, yet sees its connection end.
async fn hold(stream: &mut TcpStream, state: &Shared) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        state.read.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn echo(stream: &mut TcpStream, state: &Shared) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        state.read.fetch_add(n as u64, Ordering::Relaxed);
        stream.write_all(&buf[..n]).await?;
        state.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn sink(stream: &mut TcpStream, state: &Shared) -> io::Result<()> {
    sink_after(stream, Vec::new(), state).await
}

/// Records `first` and then everything read until EOF in a new slot of
/// [`Shared::received`].
async fn sink_after(stream: &mut TcpStream, first: Vec<u8>, state: &Shared) -> io::Result<()> {
    let slot = {
        let mut received = state.received.lock().unwrap_or_else(|p| p.into_inner());
        let mut digest = Digest::default();
        digest.update(&first);
        received.push(digest);
        received.len() - 1
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        state.read.fetch_add(n as u64, Ordering::Relaxed);
        state.received.lock().unwrap_or_else(|p| p.into_inner())[slot].update(&buf[..n]);
    }
}

/// Writes bytes `from..to` of the stream `seed`, a chunk at a time.
async fn send(
    stream: &mut TcpStream,
    seed: u64,
    from: u64,
    to: u64,
    state: &Shared,
) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(64 * 1024);
        let chunk = pattern(seed, at, usize::try_from(n).expect("64 KiB fits"));
        stream.write_all(&chunk).await?;
        state.written.fetch_add(n, Ordering::Relaxed);
        at += n;
    }
    Ok(())
}

/// Reads one request head into `buf` (which keeps what followed it) and
/// returns the body length its `content-length` announces (0 without
/// one); `None` at a clean EOF before any byte of a head.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    state: &Shared,
) -> io::Result<Option<u64>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            return Ok(Some(len));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        state.read.fetch_add(n as u64, Ordering::Relaxed);
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn http_echo(stream: &mut TcpStream, state: &Shared) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // A request without a body is answered with an empty one.
    while let Some(len) = read_head(stream, &mut buf, state).await? {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut left = len;
        while left > 0 {
            if buf.is_empty() {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                state.read.fetch_add(n as u64, Ordering::Relaxed);
                buf.extend_from_slice(&chunk[..n]);
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            stream.write_all(&buf[..take]).await?;
            state.written.fetch_add(take as u64, Ordering::Relaxed);
            buf.drain(..take);
            left -= take as u64;
        }
    }
    Ok(())
}

// === What the balancer process holds ===

/// A reading of a process's resources from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Open file descriptors.
    pub fds: usize,
    /// Of those, pipes. The balancer keeps a pool of empty pipes per
    /// worker thread for splicing (capped at 256 per thread; a pipe still
    /// holding bytes is closed, never pooled), so pipes are a cache that
    /// may stay after traffic.
    pub pipes: usize,
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

impl Usage {
    /// Reads `pid`'s usage now; panics if the process is gone.
    pub fn of(pid: u32) -> Usage {
        let (fds, pipes) = open_fds(pid);
        Usage {
            fds,
            pipes,
            rss_kib: rss_kib(pid),
            cpu: cpu_time(pid),
        }
    }

    /// Open descriptors other than pooled pipes: sockets, files, the
    /// event loop's own. What must come back to its idle count once
    /// connections end.
    pub fn held(&self) -> usize {
        self.fds - self.pipes
    }
}

/// How many file descriptors `pid` has open, and how many are pipes.
pub fn open_fds(pid: u32) -> (usize, usize) {
    let mut all = 0;
    let mut pipes = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the fd table") {
        let Ok(entry) = entry else { continue };
        all += 1;
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("pipe:"))
        {
            pipes += 1;
        }
    }
    (all, pipes)
}

/// `pid`'s resident memory in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in kB")
}

/// `pid`'s user plus system CPU time (fields 14 and 15 of
/// `/proc/PID/stat`, in clock ticks).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing one.
    let after = &stat[stat.rfind(')').expect("a stat line names its command") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Raises this test process's open-file soft limit to its hard limit and
/// returns the limit now in force.
pub fn raise_own_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

// === Clients that check what they read by digest ===

/// Reads from `stream` into a digest until `until` bytes came or the
/// stream closed (EOF or reset), at most `within`: the digest and how it
/// closed (`None`: `until` bytes came first). `Err` if neither happened in
/// time.
pub fn read_digest(
    stream: &mut std::net::TcpStream,
    until: u64,
    within: Duration,
) -> Result<(Digest, Option<Closed>), String> {
    let mut digest = Digest::default();
    let closed = read_chunks(stream, within, |chunk| {
        digest.update(chunk);
        usize::try_from(until - digest.len).unwrap_or(usize::MAX)
    })?;
    Ok((digest, closed))
}

/// Resets `stream` (SO_LINGER 0, then closed): the peer gets an RST.
pub fn reset(stream: std::net::TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}
