//! Fault injection on a tcp listener (issue 14): backends killed, reset,
//! silent or stalled mid-transfer, clients reset or half-closed, clients
//! that never read, and the balancer out of file descriptors. Each case
//! checks the bytes that did arrive by digest, that the client was closed
//! (or served whole), that the next client is served, and that the
//! balancer's descriptors come back to where they were.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Balancer, DEADLINE, Digest, FaultBackend, Format, PROMPTLY, Script, Usage, connect, echoes,
    eventually, half_close, pattern, read_digest, reset,
};

/// A tcp listener `web` over `backend`, with `extra` listener lines.
fn one_listener(backend: SocketAddr, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         backends = [\"{backend}\"]\n[listeners.passive_check]\nenabled = false\n"
    )
}

/// 64 MiB: more than loopback's socket buffers hold, so a transfer of it
/// is still under way when a test stops reading or kills a side.
const LONG: u64 = 64 << 20;

/// How much of a long transfer a test lets through before the fault.
const FIRST: u64 = 1 << 20;

/// The running balancer's descriptors once idle, pooled pipes left out
/// ([`Usage::held`]): what every case must come back to.
pub fn idle_fds(balancer: &Balancer) -> usize {
    Usage::of(balancer.pid()).held()
}

/// Waits until the balancer holds no more descriptors (pooled pipes left
/// out) than `baseline`.
#[track_caller]
pub fn assert_fds_back(balancer: &Balancer, baseline: usize) {
    let pid = balancer.pid();
    assert!(
        eventually(DEADLINE, || Usage::of(pid).held() <= baseline),
        "the balancer holds {:?}, {baseline} descriptors (pooled pipes left out) before the case",
        Usage::of(pid)
    );
}

/// Kills `backend` (if still running) and starts an echo backend on its
/// address, then checks that a new client is served through `balancer`.
#[track_caller]
fn assert_next_client_served(balancer: &Balancer, backend: &mut FaultBackend) {
    let addr = backend.addr();
    backend.kill();
    let _echo = FaultBackend::start_on(addr, Script::Echo).expect("restart on the same address");
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, &pattern(99, 0, 100_000)), Ok(()));
}

/// One case: a tcp listener `web` (with `extra` lines) over a backend
/// following `script`; `fault` runs the case against the listener's
/// address. Then the balancer's descriptors must come back to their idle
/// count and a new client must be served.
fn case(script: Script, extra: &str, fault: impl FnOnce(SocketAddr, &mut FaultBackend)) {
    let mut backend = FaultBackend::start(script);
    let balancer = Balancer::start(&one_listener(backend.addr(), extra), Format::Toml);
    let baseline = idle_fds(&balancer);
    fault(balancer.addr("web"), &mut backend);
    assert_fds_back(&balancer, baseline);
    assert_next_client_served(&balancer, &mut backend);
    balancer.stop();
}

/// Reads the first [`FIRST`] bytes of stream `seed` through `client`,
/// checked by digest.
#[track_caller]
fn assert_first_bytes_intact(client: &mut TcpStream, seed: u64) {
    let (got, closed) = read_digest(client, FIRST, DEADLINE).expect("the first bytes came");
    assert_eq!(closed, None, "closed after {} bytes", got.len);
    assert_eq!(
        got,
        Digest::of_pattern(seed, FIRST),
        "the first MiB changed"
    );
}

/// Reads the rest of a transfer of stream `seed` after its first
/// [`FIRST`] bytes until the balancer closes the client: the whole
/// transfer never arrives, and what did is the stream's prefix.
#[track_caller]
fn assert_cut_short_and_closed(client: &mut TcpStream, seed: u64, total: u64) {
    // The rest, in a digest of its own, checked against the stream from
    // byte FIRST on.
    let (rest, closed) = read_digest(client, u64::MAX, DEADLINE)
        .unwrap_or_else(|e| panic!("the client was not closed: {e}"));
    assert!(closed.is_some(), "read {} bytes, but no close", rest.len);
    let got = FIRST + rest.len;
    assert!(
        got < total,
        "all {total} bytes came: the fault was too late"
    );
    let expected_rest = Digest::of_pattern_from(seed, FIRST, rest.len);
    assert_eq!(rest, expected_rest, "bytes after the first MiB changed");
}

#[test]
fn a_backend_killed_while_it_sends_closes_the_client_after_intact_bytes() {
    case(Script::Send { len: LONG, seed: 1 }, "", |web, backend| {
        let mut client = connect(web);
        assert_first_bytes_intact(&mut client, 1);
        // The client reads no more for now: the transfer is stuck in buffers
        // when the backend dies.
        backend.kill();
        assert_cut_short_and_closed(&mut client, 1, LONG);
    });
}

#[test]
fn a_backend_killed_while_the_client_uploads_closes_the_client_and_got_intact_bytes() {
    case(Script::Sink, "", |web, backend| {
        let client = connect(web);
        let uploader = upload(&client, 2, LONG);
        assert!(
            eventually(DEADLINE, || backend.read_bytes() >= FIRST),
            "the upload did not reach the backend"
        );
        backend.kill();
        // The client is closed: its upload fails before the end, and a read
        // sees the close.
        let sent = uploader.join().expect("the uploader thread");
        assert!(sent.is_err(), "the whole upload was taken: {sent:?}");
        let mut client = client;
        let (back, closed) = read_digest(&mut client, u64::MAX, DEADLINE).expect("closed");
        assert!(closed.is_some() && back.len == 0, "{back:?} {closed:?}");
        let received = backend.received();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0],
            Digest::of_pattern(2, received[0].len),
            "what reached the backend changed"
        );
    });
}

/// Writes `len` bytes of stream `seed` to `client` from a thread: `Ok`
/// when all were taken, else the error that stopped it.
fn upload(client: &TcpStream, seed: u64, len: u64) -> thread::JoinHandle<Result<(), String>> {
    let mut writer = client.try_clone().expect("clone the client socket");
    writer
        .set_write_timeout(Some(DEADLINE))
        .expect("a write timeout");
    thread::spawn(move || {
        let mut at = 0;
        while at < len {
            let n = (len - at).min(256 * 1024);
            let chunk = pattern(seed, at, usize::try_from(n).expect("fits"));
            writer
                .write_all(&chunk)
                .map_err(|e| format!("after {at} bytes: {e}"))?;
            at += n;
        }
        Ok(())
    })
}

#[test]
fn a_backend_that_resets_mid_transfer_closes_the_client_after_intact_bytes() {
    case(Script::Send { len: LONG, seed: 3 }, "", |web, backend| {
        let mut client = connect(web);
        assert_first_bytes_intact(&mut client, 3);
        backend.reset();
        assert_cut_short_and_closed(&mut client, 3, LONG);
    });
}

#[test]
fn a_backend_that_resets_at_accept_closes_the_client_without_data() {
    case(Script::ResetAtOnce, "", |web, backend| {
        let mut client = connect(web);
        let (got, closed) = read_digest(&mut client, u64::MAX, PROMPTLY).expect("closed promptly");
        assert!(closed.is_some() && got.len == 0, "{got:?} {closed:?}");
        assert_eq!(backend.accepts(), 1);
    });
}

#[test]
fn a_backend_that_closes_at_accept_closes_the_client_without_data() {
    case(Script::CloseAtOnce, "", |web, backend| {
        let mut client = connect(web);
        client.write_all(b"hello?").expect("send");
        let (got, closed) = read_digest(&mut client, u64::MAX, PROMPTLY).expect("closed promptly");
        assert!(closed.is_some() && got.len == 0, "{got:?} {closed:?}");
        assert_eq!(backend.accepts(), 1);
    });
}

#[test]
fn a_backend_that_accepts_and_never_answers_is_closed_at_idle_timeout() {
    case(Script::Silent, "idle_timeout = \"1s\"", |web, backend| {
        let mut client = connect(web);
        client.write_all(b"anyone there?").expect("send");
        let started = Instant::now();
        let (got, closed) = read_digest(&mut client, u64::MAX, DEADLINE).expect("closed in time");
        let waited = started.elapsed();
        assert!(closed.is_some() && got.len == 0, "{got:?} {closed:?}");
        assert!(
            waited >= Duration::from_millis(900),
            "closed after {waited:?}, before idle_timeout"
        );
        assert!(
            eventually(PROMPTLY, || backend.open() == 0),
            "the backend connection stayed open"
        );
    });
}

#[test]
fn a_backend_that_sends_half_then_stalls_is_closed_at_idle_timeout_after_intact_bytes() {
    case(
        Script::SendThenStall {
            sent: FIRST,
            seed: 4,
        },
        "idle_timeout = \"1s\"",
        |web, backend| {
            let mut client = connect(web);
            assert_first_bytes_intact(&mut client, 4);
            let started = Instant::now();
            let (rest, closed) =
                read_digest(&mut client, u64::MAX, DEADLINE).expect("closed in time");
            assert!(closed.is_some() && rest.len == 0, "{rest:?} {closed:?}");
            assert!(
                started.elapsed() >= Duration::from_millis(500),
                "closed after {:?}: not by idle_timeout",
                started.elapsed()
            );
            assert!(
                eventually(PROMPTLY, || backend.open() == 0),
                "the backend connection stayed open"
            );
        },
    );
}

#[test]
fn a_client_that_resets_while_reading_closes_its_backend_connection() {
    case(Script::Send { len: LONG, seed: 5 }, "", |web, backend| {
        let mut client = connect(web);
        assert_first_bytes_intact(&mut client, 5);
        reset(client);
        assert!(
            eventually(DEADLINE, || backend.open() == 0),
            "the backend connection stayed open after the client's reset"
        );
        assert!(backend.written_bytes() < LONG, "the backend sent it all");
    });
}

#[test]
fn a_client_that_resets_while_uploading_closes_its_backend_connection_after_intact_bytes() {
    case(Script::Sink, "", |web, backend| {
        let mut client = connect(web);
        let chunk = pattern(6, 0, usize::try_from(FIRST).expect("fits"));
        client.write_all(&chunk).expect("send the first MiB");
        assert!(
            eventually(DEADLINE, || backend.read_bytes() >= FIRST),
            "the upload did not reach the backend"
        );
        reset(client);
        assert!(
            eventually(DEADLINE, || backend.open() == 0),
            "the backend connection stayed open after the client's reset"
        );
        assert_eq!(backend.received(), [Digest::of_pattern(6, FIRST)]);
    });
}

#[test]
fn a_client_that_half_closes_after_8_mib_still_gets_all_8_mib_back() {
    case(Script::Echo, "", |web, _backend| {
        let len = 8 << 20;
        let mut client = connect(web);
        let uploader = upload(&client, 7, len);
        // Read while the upload goes on (an echo fills both ways at once).
        let (first, closed) = read_digest(&mut client, len / 2, DEADLINE).expect("the first half");
        assert_eq!(closed, None);
        uploader
            .join()
            .expect("the uploader thread")
            .expect("the whole upload was taken");
        half_close(&client);
        let (second, closed) = read_digest(&mut client, u64::MAX, DEADLINE).expect("the rest");
        assert_eq!(
            closed,
            Some(crate::harness::Closed::Eof),
            "ended by a reset"
        );
        assert_eq!(first, Digest::of_pattern(7, len / 2));
        assert_eq!(second, Digest::of_pattern_from(7, len / 2, len / 2));
    });
}
