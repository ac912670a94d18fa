//! The harness every integration test uses: the real `balancer` binary in a
//! guard that waits until it listens and kills it on drop, in-process
//! backends on `127.0.0.1:0`, loopback clients with deadlines, and
//! `eventually` for conditions that take a moment to become true.
//!
//! Nothing here sleeps to synchronize: a test waits for a log line, an EOF,
//! a refused connect or an exit status, each with a deadline.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream as TokioStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

/// How long a process may take to start listening or to exit when asked.
/// Generous: CI has two cores and may be compiling beside the tests.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How long something SPEC calls immediate ("closed at once", "refused at
/// once") may take before the test calls it a failure.
pub const PROMPTLY: Duration = Duration::from_secs(3);

/// How often `eventually` and exit waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Fragments of Rust debug formatting or panics that must never reach a
/// user (SPEC 1).
const DEBUG_FORMATTING: &[&str] = &[
    "Some(",
    "None)",
    "Os {",
    "Custom {",
    "ParseIntError",
    "AddrParseError",
    "panicked",
    "RUST_BACKTRACE",
];

/// The built binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_balancer")
}

/// A fixture file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Serializes the tests that use fixed ports (the seed's 24003/24004 and
/// 8080-8084, the demo's): `cargo test` runs the tests of one binary as
/// threads of one process, so a process-wide lock is enough. Hold the guard
/// for the whole test.
pub fn fixed_ports() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the ports are
    // free again once its guards dropped, so the next test may go on.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `cond` until it holds or `within` has passed; says which.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// The first fragment of Rust debug formatting or a panic in `text`.
pub fn debug_formatting_in(text: &str) -> Option<&'static str> {
    DEBUG_FORMATTING.iter().copied().find(|f| text.contains(f))
}

/// Panics if `text` shows Rust debug formatting or a panic.
pub fn assert_no_debug_formatting(what: &str, text: &str) {
    if let Some(fragment) = debug_formatting_in(text) {
        panic!("{what} contains Rust debug formatting {fragment:?}:\n{text}");
    }
}

// === Captured output ===

/// The lines one output stream of a child printed, filled by a thread that
/// keeps draining the pipe so the child never blocks on a full pipe.
#[derive(Default)]
struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    closed: bool,
}

impl Lines {
    /// Starts a thread that reads `reader` to its end into a new `Lines`.
    fn drain(reader: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        sink.push(line.trim_end_matches(['\n', '\r']).to_string());
                    }
                }
            }
            sink.close();
        });
        lines
    }

    fn state(&self) -> MutexGuard<'_, LinesState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: String) {
        self.state().lines.push(line);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state().closed = true;
        self.changed.notify_all();
    }

    fn text(&self) -> String {
        self.state().lines.join("\n")
    }

    /// Waits until `found` returns `Some` over the lines so far, the stream
    /// closes (the child exited) or `within` passes.
    fn wait_for<T>(
        &self,
        within: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let mut state = self.state();
        loop {
            if let Some(t) = found(&state.lines) {
                return Some(t);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the stream is closed and all of it was read.
    fn wait_closed(&self, within: Duration) {
        self.wait_for(within, |_| None::<()>);
    }
}

/// Drops ANSI escape sequences (colors) so log lines parse the same
/// whether or not the logger colors them.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte(0x40..=0x7e)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A readiness line: `... listening listener=NAME address=IP:PORT` (the
/// demo backends say `backend=NAME`), in either log format: text, where
/// values may be quoted, or JSON (`--log-format json`), where they are
/// fields of the object.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    if line.starts_with('{') {
        parse_listening_json(line)
    } else {
        parse_listening_text(line)
    }
}

/// A JSON readiness line: `{"fields":{"message":"listening",
/// "listener":NAME,"address":IP:PORT,...},...}`.
fn parse_listening_json(line: &str) -> Option<(String, SocketAddr)> {
    let object: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &object["fields"];
    if fields["message"] != "listening" {
        return None;
    }
    let name = fields["listener"]
        .as_str()
        .or_else(|| fields["backend"].as_str())?;
    let address = fields["address"].as_str()?.parse().ok()?;
    Some((name.to_string(), address))
}

fn parse_listening_text(line: &str) -> Option<(String, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains(" listening ") {
        return None;
    }
    let mut name = None;
    let mut address = None;
    for token in line.split_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let value = value.trim_matches('"');
        match key {
            "listener" | "backend" => name = Some(value.to_string()),
            "address" => address = value.parse().ok(),
            _ => {}
        }
    }
    Some((name?, address?))
}

// === The balancer process ===

/// Which config format a test writes (SPEC 1: decided by the file name).
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// Written as `balancer.toml`.
    Toml,
    /// Written as `setup.cfg`, the seed's INI format.
    Ini,
}

impl Format {
    /// The file name a config of this format is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Toml => "balancer.toml",
            Format::Ini => "setup.cfg",
        }
    }
}

/// The listener names a test config declares: `name = "..."` lines in
/// TOML (tests always name their listeners), mapping keys in INI.
fn listener_names(config: &str, format: Format) -> Vec<String> {
    match format {
        Format::Toml => {
            let names: Vec<String> = config
                .lines()
                .filter_map(|l| {
                    let (key, value) = l.split_once('=')?;
                    (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
                })
                .collect();
            let blocks = config
                .lines()
                .filter(|l| l.trim() == "[[listeners]]")
                .count();
            assert_eq!(
                names.len(),
                blocks,
                "harness: give every test listener a `name`"
            );
            names
        }
        Format::Ini => {
            let mut in_mappings = false;
            let mut names = Vec::new();
            for line in config.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_mappings = line == "[mappings]";
                } else if in_mappings && !line.starts_with(['#', ';']) {
                    if let Some((key, _)) = line.split_once('=') {
                        names.push(key.trim().to_string());
                    }
                }
            }
            names
        }
    }
}

/// A fresh temporary directory holding `config` under `format`'s file
/// name, for running the binary in it: errors then name the file as a
/// user typed it (`balancer.toml`, not a long temporary path).
pub fn config_dir(config: &str, format: Format) -> TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    std::fs::write(dir.path().join(format.file_name()), config)
        .expect("the temporary config can be written");
    dir
}

/// A running `balancer` process. Killed on drop if still running. When the
/// test is failing (panicking), the drop prints everything the process
/// printed, so assertion messages need not repeat it.
pub struct Balancer {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    listening: HashMap<String, SocketAddr>,
    exit: Option<ExitStatus>,
    _dir: Option<TempDir>,
}

impl Balancer {
    /// Writes `config` to a temporary file, runs `balancer FILE` and waits
    /// until every listener of the config is listening.
    pub fn start(config: &str, format: Format) -> Balancer {
        let mut balancer = Balancer::spawn_with_config(&[], config, format);
        balancer.wait_listening(&listener_names(config, format));
        balancer
    }

    /// Writes `config` to a temporary directory and runs `balancer FLAGS...
    /// FILE` there; does not wait for anything.
    pub fn spawn_with_config(flags: &[&str], config: &str, format: Format) -> Balancer {
        let file = format.file_name();
        Balancer::spawn(
            flags.iter().copied().chain([file]),
            Some(config_dir(config, format)),
        )
    }

    /// Runs `balancer FILE` on a config file as it is and waits until its
    /// listeners (of `format`) are listening.
    pub fn start_file(path: &Path, format: Format) -> Balancer {
        let config = std::fs::read_to_string(path).expect("the fixture is readable");
        let mut balancer = Balancer::spawn([path.as_os_str()], None);
        balancer.wait_listening(&listener_names(&config, format));
        balancer
    }

    /// Spawns the binary with `args`, in `dir` when given (which it then
    /// owns); does not wait for anything.
    pub fn spawn<I, S>(args: I, dir: Option<TempDir>) -> Balancer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut balancer = Balancer::launch(args, dir.as_ref().map(TempDir::path));
        balancer._dir = dir;
        balancer
    }

    fn launch<I, S>(args: I, cwd: Option<&Path>) -> Balancer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().expect("the balancer binary can be spawned");
        let stdout: ChildStdout = child.stdout.take().expect("stdout was piped");
        let stderr: ChildStderr = child.stderr.take().expect("stderr was piped");
        Balancer {
            child,
            stdout: Lines::drain(stdout),
            stderr: Lines::drain(stderr),
            listening: HashMap::new(),
            exit: None,
            _dir: None,
        }
    }

    /// Waits until a readiness line was logged for each of `names`.
    pub fn wait_listening(&mut self, names: &[String]) {
        self.wait_listening_until(&format!("listeners {names:?}"), |listening| {
            names
                .iter()
                .all(|n| listening.iter().any(|(name, _)| name == n))
        });
    }

    /// Waits until a readiness line was logged for each of `addresses`
    /// (for the demo, whose listener names are its own business).
    pub fn wait_listening_on(&mut self, addresses: &[SocketAddr]) {
        self.wait_listening_until(&format!("addresses {addresses:?}"), |listening| {
            addresses
                .iter()
                .all(|a| listening.iter().any(|(_, l)| l == a))
        });
    }

    /// Waits until one readiness line was logged and returns its address
    /// (for `balancer backend`, which listens once).
    pub fn wait_listening_once(&mut self) -> SocketAddr {
        self.wait_listening_until("one address", |listening| !listening.is_empty());
        let mut addresses = self.listening.values();
        *addresses.next().expect("one address was seen")
    }

    /// Waits, at most `DEADLINE`, until `ready` holds over the readiness
    /// lines logged so far (name to address); panics with the output if
    /// it does not or the process exits first.
    fn wait_listening_until(
        &mut self,
        what: &str,
        ready: impl Fn(&[(String, SocketAddr)]) -> bool,
    ) {
        let found = self.stderr.wait_for(DEADLINE, |lines| {
            let listening: Vec<(String, SocketAddr)> =
                lines.iter().filter_map(|l| parse_listening(l)).collect();
            ready(&listening).then_some(listening)
        });
        match found {
            Some(listening) => self.listening = listening.into_iter().collect(),
            None => panic!(
                "the process did not log `listening` for {what} within {DEADLINE:?} (exit: {:?})",
                self.try_exit()
            ),
        }
    }

    /// The address listener `name` is bound to, as a client connects to it
    /// (an unspecified address such as `0.0.0.0` becomes `127.0.0.1`).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let Some(&addr) = self.listening.get(name) else {
            panic!("no listener {name:?} is listening")
        };
        if addr.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        } else {
            addr
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let raw = i32::try_from(self.pid()).expect("a pid fits in i32");
        let pid = Pid::from_raw(raw).expect("a child's pid is positive");
        rustix::process::kill_process(pid, signal).expect("the child can be signalled");
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("the child can be waited for");
        }
        self.exit
    }

    /// Waits for the process to exit, at most `within`; panics (with the
    /// captured output) if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        if eventually(within, || self.try_exit().is_some()) {
            let status = self.exit.expect("try_exit saw the exit");
            // The pipes close with the process; read them to their end.
            self.stdout.wait_closed(PROMPTLY);
            self.stderr.wait_closed(PROMPTLY);
            status
        } else {
            panic!("the process did not exit within {within:?}")
        }
    }

    /// Waits until a stderr line satisfies `pred`; says whether one did.
    pub fn wait_for_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        self.stderr
            .wait_for(within, |lines| lines.iter().any(|l| pred(l)).then_some(()))
            .is_some()
    }

    /// Everything the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Both streams, labelled, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- balancer stderr ---\n{}\n--- balancer stdout ---\n{}\n---",
            self.stderr(),
            self.stdout()
        )
    }

    /// Stops the process as an operator would (SIGTERM), checks that it
    /// exits 0 and never printed Rust debug formatting, and returns all it
    /// printed (for tests about the shutdown lines too).
    pub fn stop(mut self) -> Output {
        self.signal(Signal::TERM);
        let status = self.wait_exit(DEADLINE);
        assert!(status.success(), "SIGTERM ended the balancer with {status}");
        assert_no_debug_formatting("the balancer's output", &self.output());
        Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// What a finished command printed and how it exited.
pub struct Output {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code; panics if a signal ended the process.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(code) => code,
            None => panic!("ended by a signal: {}\n{}", self.status, self.both()),
        }
    }

    /// Both streams, labelled, for failure messages.
    pub fn both(&self) -> String {
        format!(
            "--- stderr ---\n{}\n--- stdout ---\n{}\n---",
            self.stderr, self.stdout
        )
    }
}

/// Runs the binary with `args` in `dir` (if given) to completion, which
/// must come within `DEADLINE`.
pub fn run<I, S>(args: I, dir: Option<&Path>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut process = Balancer::launch(args, dir);
    let status = process.wait_exit(DEADLINE);
    Output {
        status,
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}

// === Clients ===

/// Connects to `addr` with read and write timeouts, so no test hangs on a
/// silent peer.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(PROMPTLY))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(PROMPTLY))
        .expect("set a write timeout");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}

/// Connects from `source` (any 127.x address works on Linux loopback).
pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
    socket
        .connect_timeout(&addr.into(), PROMPTLY)
        .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
    let stream: TcpStream = socket.into();
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

/// Writes `message` and reads exactly as many bytes back from an echo.
pub fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(message)?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
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
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open after {within:?} ({} bytes received)",
                received.len()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set a read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Ok((received, Closed::Eof)),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok((received, Closed::Reset));
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
    let listener = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

// === Backends ===

/// The runtime every in-process backend runs on, shared by all tests.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the backends' runtime starts")
    })
}

/// What a backend does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Echo every byte until EOF, then close.
    Echo,
    /// Write `NAME\n` at once, then echo.
    Named(String),
    /// Read to EOF, then reply `received N bytes\n` and close: proves a
    /// client's half-close was passed on and the way back stayed open.
    ReplyAfterEof,
    /// Write the greeting, shut the write side, then keep reading and
    /// record what arrives: a backend-side half-close.
    GreetThenHalfClose(String),
}

/// An in-process backend on loopback. Stops (listener and connections)
/// when dropped.
pub struct Backend {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    received: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Echoes each connection's bytes back until EOF.
    pub fn echo() -> Backend {
        Backend::start(any_port(), Behaviour::Echo).expect("bind a backend")
    }

    /// Greets each connection with `name\n`, then echoes.
    pub fn named(name: &str) -> Backend {
        Backend::start(any_port(), Behaviour::Named(name.to_string())).expect("bind a backend")
    }

    /// A named backend on a fixed address (for the seed's ports, or to
    /// bring a refused address to life).
    pub fn named_on(addr: SocketAddr, name: &str) -> io::Result<Backend> {
        Backend::start(addr, Behaviour::Named(name.to_string()))
    }

    /// Replies `received N bytes\n` after the client's EOF.
    pub fn reply_after_eof() -> Backend {
        Backend::start(any_port(), Behaviour::ReplyAfterEof).expect("bind a backend")
    }

    /// Sends `greeting`, shuts its write side, records what it reads.
    pub fn greet_then_half_close(greeting: &str) -> Backend {
        Backend::start(
            any_port(),
            Behaviour::GreetThenHalfClose(greeting.to_string()),
        )
        .expect("bind a backend")
    }

    fn start(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Backend> {
        let listener = runtime().block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = runtime().spawn(serve(
            listener,
            behaviour,
            Arc::clone(&peers),
            Arc::clone(&received),
        ));
        Ok(Backend {
            addr,
            peers,
            received,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn accepts(&self) -> usize {
        self.peers().len()
    }

    /// The peer address of every connection it accepted, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a `greet_then_half_close` backend has read so far.
    pub fn received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting drops the listener and the JoinSet of connections.
        self.task.abort();
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn serve(
    listener: TcpListener,
    behaviour: Behaviour,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    received: Arc<Mutex<Vec<u8>>>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                connections.spawn(handle(stream, behaviour.clone(), Arc::clone(&received)));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(mut stream: TokioStream, behaviour: Behaviour, received: Arc<Mutex<Vec<u8>>>) {
    let _ = stream.set_nodelay(true);
    let _ = match behaviour {
        Behaviour::Echo => echo(&mut stream).await,
        Behaviour::Named(name) => match stream.write_all(format!("{name}\n").as_bytes()).await {
            Ok(()) => echo(&mut stream).await,
            Err(e) => Err(e),
        },
        Behaviour::ReplyAfterEof => reply_after_eof(&mut stream).await,
        Behaviour::GreetThenHalfClose(greeting) => {
            greet_then_half_close(&mut stream, &greeting, &received).await
        }
    };
}

async fn echo(stream: &mut TokioStream) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

async fn reply_after_eof(stream: &mut TokioStream) -> io::Result<()> {
    let mut sink = Vec::new();
    let n = stream.read_to_end(&mut sink).await?;
    stream
        .write_all(format!("received {n} bytes\n").as_bytes())
        .await?;
    stream.shutdown().await
}

async fn greet_then_half_close(
    stream: &mut TokioStream,
    greeting: &str,
    received: &Mutex<Vec<u8>>,
) -> io::Result<()> {
    stream.write_all(greeting.as_bytes()).await?;
    stream.shutdown().await?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(&buf[..n]);
    }
}

/// Shuts the write side of a client stream (sends FIN).
pub fn half_close(stream: &TcpStream) {
    stream
        .shutdown(Shutdown::Write)
        .expect("shut the write side");
}

// === HTTP (for the demo backends) ===

/// An HTTP/1.1 answer as a test reads it.
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` with `Connection: close` to `addr` and reads the
/// answer to EOF.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let (raw, _) = read_until_closed(&mut stream, PROMPTLY)?;
    parse_http_response(&String::from_utf8_lossy(&raw))
}

fn parse_http_response(raw: &str) -> Result<HttpResponse, String> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Sends one HTTP/1.1 request with any method, headers and body to `addr`
/// (`Connection: close`) and reads the answer: its `Content-Length` bytes
/// of body, or to EOF without one; everything within `within`. For the
/// admin API and for WebDriver.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    within: Duration,
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROMPTLY)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
    } else {
        request.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&request)
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let deadline = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let answer = parse_http_response(&String::from_utf8_lossy(&raw[..end + 4]))?;
            let length = answer
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]);
                    return Ok(HttpResponse {
                        body: body.into_owned(),
                        ..answer
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no whole answer from {addr} within {within:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set a read timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => return parse_http_response(&String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (a refused body left unread) still
            // leaves what was read.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => {
                return parse_http_response(&String::from_utf8_lossy(&raw));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
}
