//! Fault injection by numbers (issue 14), on tcp and http listeners:
//! clients that never read (memory stays bounded), the balancer out of
//! file descriptors (extra clients turned away, no spinning, served again
//! after), 5,000 concurrent connections with checksummed payloads, and
//! slowloris and garbage on an http listener. Every figure measured is
//! printed (`cargo test -- --nocapture` shows them).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::faults_tcp::{assert_fds_back, idle_fds};
use crate::harness::{
    Balancer, DEADLINE, Digest, FaultBackend, Format, PROMPTLY, Script, Usage, connect, eventually,
    pattern, raise_own_file_limit, read_digest,
};

/// A listener `web` in `mode` over `backend`, with `extra` listener lines.
/// In http mode idle pooled backend connections close after a second, so
/// a case can await every descriptor back.
fn listener(mode: &str, backend: SocketAddr, extra: &str) -> String {
    let pool = if mode == "http" {
        "backend_idle_timeout = \"1s\"\n"
    } else {
        ""
    };
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"{mode}\"\n{pool}{extra}\n\
         backends = [\"{backend}\"]\n[listeners.passive_check]\nenabled = false\n"
    )
}

const MIB: u64 = 1 << 20;

/// Serializes the heavy cases of this file (thousands of sockets, or
/// gigabytes owed): two at once would need twice the descriptors of this
/// process (both ends of every connection are here) and load a two-core
/// machine past what the other tests' deadlines allow. Hold the guard for
/// the whole case.
fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A failed case poisons the lock; its sockets are closed by then.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === Clients that never read ===

/// Waits until `reading` stops changing (the same over five readings
/// 200 ms apart), at most `DEADLINE`: a bounded wait for a quiet state,
/// such as senders held back by full buffers.
fn until_flat(mut reading: impl FnMut() -> u64) -> bool {
    let deadline = Instant::now() + DEADLINE;
    let mut last = reading();
    let mut flat = 0;
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        let now = reading();
        flat = if now == last { flat + 1 } else { 0 };
        last = now;
        if flat >= 5 {
            return true;
        }
    }
    false
}

/// 200 clients each owed 10 MiB that read none of it: the backends are
/// held back, and the balancer's memory grows by far less than the 2 GB
/// owed. Then one of them reads its 10 MiB, intact, and all close.
fn clients_that_never_read(mode: &str, request: &[u8]) {
    let _heavy = heavy();
    let owed = 10 * MIB;
    let script = if mode == "http" {
        Script::HttpSend {
            len: owed,
            seed: 21,
        }
    } else {
        Script::Send {
            len: owed,
            seed: 21,
        }
    };
    let backend = FaultBackend::start(script);
    let balancer = Balancer::start(&listener(mode, backend.addr(), ""), Format::Toml);
    let web = balancer.addr("web");
    let pid = balancer.pid();
    // One whole answer first, so what any connection allocates is there.
    let mut first = connect(web);
    first.write_all(request).expect("send");
    if mode == "http" {
        head_len(&mut first);
    }
    let (got, _) = read_digest(&mut first, owed, DEADLINE).expect("the warm-up answer");
    assert_eq!(
        got,
        Digest::of_pattern(21, owed),
        "the warm-up answer changed"
    );
    drop(first);
    let baseline = idle_fds(&balancer);
    let before = Usage::of(pid);

    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = connect(web);
            c.write_all(request).expect("send");
            c
        })
        .collect();
    // (In http mode one of them may reuse the warm-up's pooled
    // connection.)
    assert!(
        eventually(DEADLINE, || backend.open() == 200),
        "{} of 200 reached the backend",
        backend.open()
    );
    let mut peak = before.rss_kib;
    let flat = until_flat(|| {
        peak = peak.max(Usage::of(pid).rss_kib);
        backend.written_bytes()
    });
    assert!(flat, "the backends never stopped sending: no back-pressure");
    let sent = backend.written_bytes() - owed;
    let growth_mib = (peak.saturating_sub(before.rss_kib)) as f64 / 1024.0;
    println!(
        "{mode}: 200 clients owed 10 MiB each, none read: the backends sent {:.0} MiB \
         (the rest held back), balancer RSS {:.1} MiB before, peak {:.1} MiB (+{growth_mib:.1} MiB)",
        sent as f64 / MIB as f64,
        before.rss_kib as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    assert!(
        sent < 200 * owed,
        "every byte was sent: nothing was held back"
    );
    assert!(
        growth_mib < 200.0,
        "the balancer grew by {growth_mib:.1} MiB holding answers nobody reads"
    );

    // One of them reads its whole answer now: intact.
    let mut reader = clients.pop().expect("a client");
    if mode == "http" {
        head_len(&mut reader);
    }
    let before = backend.written_bytes();
    let (got, _) = read_digest(&mut reader, owed, DEADLINE).unwrap_or_else(|e| {
        panic!(
            "the held answer: {e}; meanwhile the backends wrote {} more bytes, {} connections open",
            backend.written_bytes() - before,
            backend.open()
        )
    });
    assert_eq!(got, Digest::of_pattern(21, owed), "a held answer changed");
    drop((reader, clients));
    assert!(
        eventually(DEADLINE, || backend.open() == 0),
        "backend connections left open"
    );
    assert_fds_back(&balancer, baseline);
    balancer.stop();
}

/// Reads an answer head byte by byte (so no body byte is taken) and
/// returns its length.
fn head_len(stream: &mut TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("an answer head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    head.len()
}

#[test]
fn two_hundred_tcp_clients_that_never_read_10_mib_each_leave_memory_bounded() {
    clients_that_never_read("tcp", b"go\n");
}

#[test]
fn two_hundred_http_clients_that_never_read_10_mib_each_leave_memory_bounded() {
    clients_that_never_read("http", b"GET /big HTTP/1.1\r\nHost: example.test\r\n\r\n");
}

// === Out of file descriptors ===

/// How a client fared against a balancer out of descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Answered, correctly.
    Served,
    /// Closed or told it cannot be served (a 503), nothing wrong sent.
    TurnedAway,
    /// Neither yet: waiting in the listen queue, never accepted.
    Waiting,
}

/// What a client of the exhaustion case sends and expects: its answer
/// starts with `answer` and is whole at `end`; `told` starts a refusal.
struct Traffic {
    request: &'static [u8],
    answer: &'static [u8],
    end: &'static [u8],
    told: &'static [u8],
}

impl Traffic {
    /// Whether `got` is a whole answer.
    fn answered(&self, got: &[u8]) -> bool {
        got.starts_with(self.answer) && got.ends_with(self.end)
    }

    /// Whether `got` is a refusal (or its start).
    fn refused(&self, got: &[u8]) -> bool {
        !self.told.is_empty() && got.starts_with(self.told)
    }

    /// Whether `got` could be the start of an answer or of a refusal.
    fn so_far_right(&self, got: &[u8]) -> bool {
        self.answer.starts_with(got)
            || got.starts_with(self.answer)
            || self.refused(got)
            || self.told.starts_with(got)
    }
}

/// One client of the exhaustion case: its socket, what came so far, and
/// how it fared.
struct Probe {
    stream: TcpStream,
    got: Vec<u8>,
    fate: Fate,
}

impl Probe {
    fn open(web: SocketAddr, traffic: &Traffic) -> Probe {
        let mut stream = connect(web);
        stream.write_all(traffic.request).expect("send");
        stream.set_nonblocking(true).expect("non-blocking");
        Probe {
            stream,
            got: Vec::new(),
            fate: Fate::Waiting,
        }
    }

    /// Reads what is there and updates the fate; panics on a byte that is
    /// neither its answer nor a refusal.
    fn poll(&mut self, traffic: &Traffic) {
        if self.fate == Fate::TurnedAway {
            return;
        }
        let mut closed = false;
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => {
                    self.got.extend_from_slice(&buf[..n]);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
            break;
        }
        assert!(
            traffic.so_far_right(&self.got),
            "a client got bytes that are neither its answer nor a refusal: {:?}",
            String::from_utf8_lossy(&self.got)
        );
        if traffic.answered(&self.got) {
            self.fate = Fate::Served;
        } else if traffic.refused(&self.got) || closed {
            self.fate = Fate::TurnedAway;
        }
    }
}

/// Counts the fates of `probes`.
fn fates(probes: &[Probe]) -> (usize, usize, usize) {
    let count = |f: Fate| probes.iter().filter(|p| p.fate == f).count();
    (
        count(Fate::Served),
        count(Fate::TurnedAway),
        count(Fate::Waiting),
    )
}

/// Under `ulimit -n 128`, 300 clients: some are served (each holds
/// `fds_each` descriptors at least), the rest are turned away or wait
/// unaccepted, nobody gets a wrong byte, the balancer does not spin while
/// saturated, and once the clients leave, a new client is served. With
/// `[global] max_connections` set to `cap` (operations.md's advice when
/// the limit cannot be raised), none is left waiting: the extra ones are
/// closed at accept.
fn out_of_descriptors(
    mode: &str,
    script: Script,
    traffic: &Traffic,
    fds_each: usize,
    cap: Option<usize>,
) {
    const LIMIT: u32 = 128;
    let backend = FaultBackend::start(script);
    let max = cap.map_or(String::new(), |n| format!("max_connections = {n}\n"));
    let config = format!(
        "[global]\nworkers = 1\n{max}\n{}",
        listener(mode, backend.addr(), "")
    );
    let mut balancer = Balancer::spawn_under_ulimit(LIMIT, &config, Format::Toml);
    balancer.wait_listening(&["web".to_string()]);
    let web = balancer.addr("web");
    let pid = balancer.pid();
    let baseline = idle_fds(&balancer);

    let mut probes: Vec<Probe> = (0..300).map(|_| Probe::open(web, traffic)).collect();
    let settled = until_flat(|| {
        probes.iter_mut().for_each(|p| p.poll(traffic));
        let (served, away, _) = fates(&probes);
        (served * 1000 + away) as u64
    });
    assert!(settled, "the clients' fates never settled");
    let (served, away, waiting) = fates(&probes);
    let saturated = Usage::of(pid);
    println!(
        "{mode} under ulimit -n {LIMIT}: of 300 clients {served} served, {away} turned away, \
         {waiting} waiting unaccepted; the balancer holds {} descriptors",
        saturated.fds
    );
    assert!(served >= 1, "nobody was served");
    let fit = usize::try_from(LIMIT).expect("fits") / fds_each;
    assert!(
        served <= fit,
        "{served} served: more than {LIMIT} descriptors allow"
    );
    assert_eq!(served + away + waiting, 300);
    if let Some(cap) = cap {
        assert!(served <= cap, "{served} served over max_connections {cap}");
        assert_eq!(waiting, 0, "clients left waiting despite max_connections");
    }

    // Saturated for two seconds: CPU time grows little.
    let window = Duration::from_secs(2);
    thread::sleep(window);
    probes.iter_mut().for_each(|p| p.poll(traffic));
    let spent = Usage::of(pid).cpu - saturated.cpu;
    println!("{mode}: {spent:?} of CPU time in {window:?} saturated");
    assert!(
        spent < Duration::from_millis(500),
        "the balancer spun while out of descriptors: {spent:?} of CPU in {window:?}"
    );

    // They all leave, the waiting ones too; a new client is served.
    drop(probes);
    let served_again = eventually(DEADLINE, || {
        let mut fresh = Probe::open(web, traffic);
        fresh.stream.set_nonblocking(false).expect("blocking again");
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = fresh.stream.read(&mut buf) {
            fresh.got.extend_from_slice(&buf[..n]);
            if traffic.answered(&fresh.got) {
                return true;
            }
        }
        false
    });
    assert!(served_again, "no client was served once the others left");
    assert_fds_back(&balancer, baseline);
    balancer.stop();
}

/// An echo over a tcp listener.
const TCP_PING: Traffic = Traffic {
    request: b"ping\n",
    answer: b"ping\n",
    end: b"\n",
    told: b"",
};

/// A GET over an http listener; a 503 is a refusal.
const HTTP_GET: Traffic = Traffic {
    request: b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
    answer: b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n",
    end: b"\r\n\r\n",
    told: b"HTTP/1.1 503",
};

// In tcp mode each served client holds its socket and its backend's; in
// http mode an idle keep-alive client holds its socket, and backend
// connections go back to the pool between requests.

#[test]
fn a_tcp_listener_out_of_descriptors_turns_clients_away_idles_and_serves_again() {
    out_of_descriptors("tcp", Script::Echo, &TCP_PING, 2, None);
}

#[test]
fn an_http_listener_out_of_descriptors_turns_clients_away_idles_and_serves_again() {
    out_of_descriptors("http", Script::HttpEcho, &HTTP_GET, 1, None);
}

#[test]
fn under_ulimit_a_tcp_listener_with_max_connections_closes_the_extra_clients_at_accept() {
    out_of_descriptors("tcp", Script::Echo, &TCP_PING, 2, Some(40));
}

#[test]
fn under_ulimit_an_http_listener_with_max_connections_closes_the_extra_clients_at_accept() {
    out_of_descriptors("http", Script::HttpEcho, &HTTP_GET, 1, Some(40));
}

// === 5,000 concurrent connections ===

/// How many connections the concurrency cases hold open at once.
const CONCURRENT: usize = 5_000;

/// Whether this process may open enough descriptors for `connections`
/// clients and their backend connections (both ends are in this process);
/// raises its soft limit to the hard one first.
fn enough_descriptors(connections: usize) -> bool {
    let limit = raise_own_file_limit();
    let needed = 2 * connections as u64 + 500;
    if limit < needed {
        eprintln!(
            "SKIPPED: {connections} concurrent connections need {needed} open files in the test \
             process; its hard limit is {limit}"
        );
        return false;
    }
    true
}

/// One client connection's work, run on each of [`CONCURRENT`] clients
/// at once: the connection back when every answer was intact.
type Exchange = fn(tokio::net::TcpStream, u64) -> Pending;

/// A client's exchange in flight.
type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<tokio::net::TcpStream, String>> + Send>,
>;

/// Opens [`CONCURRENT`] connections to `web` (500 connects in flight at
/// most), runs `exchange` on each, holds them all open at once, checks the
/// balancer then holds at least `fds_each` descriptors per connection,
/// releases them, and checks descriptors and memory come back.
fn concurrent(mode: &str, script: Script, exchange: Exchange, fds_each: usize) {
    let _heavy = heavy();
    if !enough_descriptors(CONCURRENT) {
        return;
    }
    let backend = FaultBackend::start(script);
    // An idle keep-alive client is closed after request_header_timeout,
    // 10 s by default: the first ones must stay open until the last ones
    // are done, on a busy machine too.
    let keep = if mode == "http" {
        "request_header_timeout = \"120s\""
    } else {
        ""
    };
    let config = format!(
        "[global]\nworkers = 2\n\n{}",
        listener(
            mode,
            backend.addr(),
            &format!("max_connections = 20000\n{keep}")
        )
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let web = balancer.addr("web");
    let pid = balancer.pid();
    let baseline = idle_fds(&balancer);
    let before = Usage::of(pid);
    let started = Instant::now();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let (streams, failures) = runtime.block_on(async {
        let connects = Arc::new(tokio::sync::Semaphore::new(500));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT {
            let connects = Arc::clone(&connects);
            tasks.spawn(async move {
                let permit = connects.acquire_owned().await.expect("open semaphore");
                let stream = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(web))
                    .await
                    .map_err(|_| format!("connection {i}: connect timed out"))?
                    .map_err(|e| format!("connection {i}: connect: {e}"))?;
                drop(permit);
                tokio::time::timeout(DEADLINE * 4, exchange(stream, i as u64))
                    .await
                    .map_err(|_| format!("connection {i}: timed out"))?
            });
        }
        let mut streams = Vec::new();
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done.expect("a client task") {
                Ok(stream) => streams.push(stream),
                Err(e) => failures.push(e),
            }
        }
        (streams, failures)
    });
    let took = started.elapsed();
    let held = Usage::of(pid);
    println!(
        "{mode}: {} of {CONCURRENT} concurrent connections intact in {took:?}; the balancer held \
         {} descriptors ({} idle) and {:.1} MiB ({:.1} MiB idle)",
        streams.len(),
        held.fds,
        before.fds,
        held.rss_kib as f64 / 1024.0,
        before.rss_kib as f64 / 1024.0
    );
    assert!(
        failures.is_empty(),
        "{} failed, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        held.held() >= baseline + fds_each * CONCURRENT,
        "the connections were not all open at once: {held:?}"
    );
    runtime.block_on(async move { drop(streams) });
    assert_fds_back(&balancer, baseline);
    let after = Usage::of(pid);
    println!(
        "{mode}: after they closed: {} descriptors, {:.1} MiB",
        after.fds,
        after.rss_kib as f64 / 1024.0
    );
    assert!(
        after.rss_kib < before.rss_kib + 64 * 1024,
        "the balancer kept {:.1} MiB after the connections closed",
        (after.rss_kib - before.rss_kib) as f64 / 1024.0
    );
    balancer.stop();
}

/// tcp: 4 KiB of this connection's own stream out, the same back.
fn tcp_exchange(mut stream: tokio::net::TcpStream, seed: u64) -> Pending {
    Box::pin(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let payload = pattern(seed, 0, 4096);
        stream
            .write_all(&payload)
            .await
            .map_err(|e| e.to_string())?;
        let mut back = vec![0u8; payload.len()];
        stream
            .read_exact(&mut back)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sent, mut got) = (Digest::default(), Digest::default());
        sent.update(&payload);
        got.update(&back);
        if sent == got {
            Ok(stream)
        } else {
            Err(format!("connection {seed}: the echo changed"))
        }
    })
}

/// http: three keep-alive POSTs of 2 KiB of this connection's own stream,
/// each answered with its own body.
fn http_exchange(mut stream: tokio::net::TcpStream, seed: u64) -> Pending {
    Box::pin(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for request in 0..3u64 {
            let body = pattern(seed * 8 + request, 0, 2048);
            let head = format!(
                "POST /{seed}/{request} HTTP/1.1\r\nHost: example.test\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&body).await.map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            let mut whole = usize::MAX;
            while answer.len() < whole {
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!(
                        "connection {seed}: closed after {} bytes of answer {request}",
                        answer.len()
                    ));
                }
                answer.extend_from_slice(&buf[..n]);
                if whole == usize::MAX {
                    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                        whole = end + 4 + body.len();
                    }
                }
            }
            let head_len = whole - body.len();
            let head = String::from_utf8_lossy(&answer[..head_len]).to_ascii_lowercase();
            let length = format!("\r\ncontent-length: {}\r\n", body.len());
            if !head.starts_with("http/1.1 200 ") || !head.contains(&length) {
                return Err(format!("connection {seed}: answer {request}: {head:?}"));
            }
            if answer.len() != whole || answer[head_len..] != body[..] {
                return Err(format!(
                    "connection {seed}: answer {request}'s body changed"
                ));
            }
        }
        Ok(stream)
    })
}

#[test]
fn five_thousand_concurrent_tcp_connections_all_intact_and_every_descriptor_back() {
    // Each holds its client and its backend socket.
    concurrent("tcp", Script::Echo, tcp_exchange, 2);
}

#[test]
fn five_thousand_concurrent_http_keep_alive_connections_all_intact_and_every_descriptor_back() {
    // Each idle keep-alive client holds its socket; backend connections go
    // back to the pool between requests.
    concurrent("http", Script::HttpEcho, http_exchange, 1);
}

// === Slowloris and garbage on an http listener ===

#[test]
fn an_http_listener_under_slowloris_and_garbage_serves_other_clients_throughout() {
    let backend = FaultBackend::start(Script::HttpEcho);
    let config = listener("http", backend.addr(), "request_header_timeout = \"6s\"");
    let balancer = Balancer::start(&config, Format::Toml);
    let web = balancer.addr("web");
    let baseline = idle_fds(&balancer);
    let started = Instant::now();

    // 500 clients trickle a head that never ends, a byte a second.
    let mut slow: Vec<TcpStream> = (0..500).map(|_| connect(web)).collect();
    let trickle =
        b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    let mut worst = Duration::ZERO;
    let mut served = 0;
    let mut garbage_answers = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        if sent < trickle.len() && started.elapsed() >= Duration::from_secs(sent as u64) {
            for client in &mut slow {
                let _ = client.write_all(&trickle[sent..=sent]);
            }
            sent += 1;
        }
        // A garbage client: random bytes, told 400 and closed.
        let mut garbage = connect(web);
        let junk = pattern(served as u64, 0, 512);
        let _ = garbage.write_all(&junk);
        let _ = garbage.write_all(b"\r\n\r\n");
        garbage_answers.push(crate::harness::read_until_closed(&mut garbage, DEADLINE));
        // A normal client, answered in time, its body intact.
        let asked = Instant::now();
        let mut client = crate::http::Client::connect(web);
        let body = pattern(1000 + served as u64, 0, 1024);
        client.send(
            format!(
                "POST / HTTP/1.1\r\nHost: example.test\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        client.send(&body);
        let answer = client.answer();
        worst = worst.max(asked.elapsed());
        assert_eq!(
            answer.status, 200,
            "a normal client was not served: {answer:?}"
        );
        assert!(answer.body == body, "a normal client's body changed");
        served += 1;
    }
    println!(
        "http under 500 slowloris clients and {} garbage ones: {served} normal clients served \
         in 5 s, the slowest in {worst:?}",
        garbage_answers.len()
    );
    assert!(worst < PROMPTLY, "a normal client waited {worst:?}");
    for (i, answer) in garbage_answers.iter().enumerate() {
        let Ok((bytes, _)) = answer else {
            panic!("garbage client {i} stayed open: {answer:?}")
        };
        assert!(
            bytes.starts_with(b"HTTP/1.1 400 "),
            "garbage client {i} was answered {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
    }
    // The slow ones are told 408 and closed once request_header_timeout
    // has passed since their first byte.
    for (i, client) in slow.iter_mut().enumerate() {
        let closed = crate::harness::read_until_closed(client, DEADLINE);
        let Ok((bytes, _)) = closed else {
            panic!("slowloris client {i} still open: {closed:?}")
        };
        assert!(
            bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408"),
            "slowloris client {i} got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(backend.accepts() > 0);
    drop(slow);
    assert_fds_back(&balancer, baseline);
    balancer.stop();
}
