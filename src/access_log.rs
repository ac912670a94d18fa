//! The access log (SPEC 8): one line per finished connection (tcp mode) or
//! request (http mode, later), as text or JSON, to stderr, stdout or a
//! file, written so that it can never stall the data plane.
//!
//! A worker hands a finished connection's [`Record`] to [`AccessLog::log`],
//! which only tries to put it in a bounded queue: no formatting, no
//! allocation, never a wait (waking an idle writer costs one futex call; a
//! busy one needs no waking). One writer thread takes records from the
//! queue, formats them and writes them through a buffer that is flushed
//! whenever the queue is momentarily empty: a line is visible within
//! milliseconds under light load, and heavy load costs one write per
//! buffer, not one per line. A record that does not fit in the queue, or that the target
//! refuses (a full disk), is dropped and counted ([`AccessLog::dropped`],
//! exported as `balancer_access_log_dropped_total`).
//!
//! Formatting happens on the writer thread, not in [`AccessLog::log`]: a
//! worker's cost per connection stays one move into the queue, a record
//! that is dropped is never formatted, and the writer formats into one
//! reused buffer instead of allocating a line per record. One thread
//! formats over a million lines a second (about 0.6 µs a line, text or
//! JSON, in a release build), far above any connection rate.
//!
//! SIGUSR1 calls [`AccessLog::reopen`]: the writer writes what it holds to
//! the file it has open (logrotate has moved it away), then opens the path
//! again, so later lines go to a new file there and none are lost. An open
//! or write error is a throttled warning in the application log; the
//! writer tries the target again later and the balancer never stops for
//! it.
//!
//! Rejected connections (allow list, connection caps) have no line here:
//! they are turned away at accept, before they are connections the access
//! log describes, and they come in floods exactly when something is wrong:
//! a line each would push the lines of real connections out of the queue.
//! They are counted in the metrics and are a throttled warning already.
//!
//! This module imports only [`crate::logging`] and [`crate::net`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::logging::Throttle;
use crate::net::{Quoted, io_reason};

/// Records the queue holds before new ones are dropped: a burst of
/// thousands of connections ending at once while the target catches up,
/// in under a megabyte of slots (a record is 184 bytes, plus its backend
/// name).
const QUEUE_RECORDS: usize = 4_096;

/// The writer's buffer for a file: lines written in one system call when
/// the queue stays busy.
const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// The writer's buffer for stderr and stdout, which are often pipes that
/// the application log (stderr) writes to as well: a write of at most
/// `PIPE_BUF` bytes is never interleaved with another's, and the buffer
/// only ever holds whole lines, so a line of either log is never cut by a
/// line of the other.
const PIPE_BUFFER_BYTES: usize = rustix::pipe::PIPE_BUF;

/// How long after a failed open or write the writer tries the target
/// again; the records in between are dropped and counted.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often a failing target is a warning in the application log: the
/// first failure at once, then one line per interval with the count left
/// out.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// How a tcp connection ended: the `outcome` of its line. The names are
/// part of the log format ([`Outcome::name`]) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed until both sides closed.
    Ok,
    /// No backend could be reached: none was up, or every connect failed.
    NoBackend,
    /// Closed because no byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write on either side failed (a reset, a broken pipe).
    Reset,
    /// Closed by the drain: its deadline passed, or a second SIGTERM.
    DrainTimeout,
    /// A connect failed on this machine (out of file descriptors, ports
    /// or memory), not because of the backend.
    LocalResources,
}

impl Outcome {
    /// The outcome's name in both formats: `ok`, `no_backend`,
    /// `idle_timeout`, `reset`, `drain_timeout`, `local_resources`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NoBackend => "no_backend",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::Reset => "reset",
            Outcome::DrainTimeout => "drain_timeout",
            Outcome::LocalResources => "local_resources",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an http-mode line adds to a [`Record`] (SPEC 8): the seam for the
/// http data plane, which is not built yet. A tcp record has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFields {
    /// The request method as received (`GET`).
    pub method: String,
    /// The request target as received (`/api/items?id=7`).
    pub path: String,
    /// The status code sent to the client.
    pub status: u16,
    /// How many times the request was sent again to another backend.
    pub retries: u32,
}

/// One finished connection (or, in http mode, request), as the data plane
/// knows it when it ends: everything its access log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When it ended (the line's `time`), by the wall clock.
    pub ended: SystemTime,
    /// How long it lasted, from accept to close.
    pub duration: Duration,
    /// The listener's name: an `Arc` so that a worker clones a pointer per
    /// connection, not the name.
    pub listener: Arc<str>,
    /// The client's address as accepted (or as a PROXY header gave it).
    pub client: SocketAddr,
    /// The backend's address as written in the config (its name), or none
    /// when no backend was reached.
    pub backend: Option<String>,
    /// Payload bytes from the client to the backend (a PROXY header is not
    /// counted).
    pub bytes_in: u64,
    /// Payload bytes from the backend to the client.
    pub bytes_out: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Method, path, status and retries of an http-mode request; none in
    /// tcp mode.
    pub http: Option<HttpFields>,
}

/// How lines are written (the config's `access_log` format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One space-separated line: `time listener client backend bytes_in
    /// bytes_out duration_ms outcome`, then in http mode `method path
    /// status retries`. A missing backend is `-`; a value that is empty,
    /// `-`, or holds a space, a quote, a backslash or a control character
    /// is written in double quotes with those escaped, so a line can never
    /// be split or shifted by a value.
    Text,
    /// One JSON object per line with the keys `time`, `listener`,
    /// `client`, `backend` (null when none), `bytes_in`, `bytes_out`,
    /// `duration_ms`, `outcome`, and in http mode `method`, `path`,
    /// `status`, `retries`.
    Json,
}

/// Where lines go (the config's `access_log` target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard error, shared with the application log.
    Stderr,
    /// The process's standard output.
    Stdout,
    /// A file, opened for append and created (mode 0644) if missing;
    /// opened again by [`AccessLog::reopen`].
    File(PathBuf),
}

impl Target {
    /// How warnings name the target: `stderr`, `stdout` or the path.
    fn label(&self) -> String {
        match self {
            Target::Stderr => "stderr".to_string(),
            Target::Stdout => "stdout".to_string(),
            Target::File(path) => path.display().to_string(),
        }
    }

    /// The writer's buffer size for this target.
    fn buffer_bytes(&self) -> usize {
        match self {
            Target::Stderr | Target::Stdout => PIPE_BUFFER_BYTES,
            Target::File(_) => FILE_BUFFER_BYTES,
        }
    }

    /// Opens the target for writing (a file: for append, created if
    /// missing).
    fn open(&self) -> io::Result<Sink> {
        match self {
            Target::Stderr => Ok(Box::new(io::stderr())),
            Target::Stdout => Ok(Box::new(io::stdout())),
            Target::File(path) => Ok(Box::new(open_file(path)?)),
        }
    }
}

/// Opens `path` for append, creating it readable by all and writable by
/// the owner only (before the umask): lines hold client addresses, and
/// nobody else should be able to forge them.
fn open_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    options.open(path)
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The target (a file) could not be opened.
    #[error("cannot open the access log {}: {reason}", Quoted(&.target.label()))]
    Open {
        /// The target as configured.
        target: Target,
        /// Why, in words.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the access log writer: {reason}")]
    Start {
        /// Why, in words.
        reason: String,
    },
}

/// What the writer writes to.
type Sink = Box<dyn Write + Send>;

/// How the writer opens its target again (after a reopen or a failure).
type Open = Box<dyn FnMut() -> io::Result<Sink> + Send>;

/// How a writer thread is set up: the target's traits and the limits.
struct Setup {
    /// Records the queue holds.
    capacity: usize,
    format: Format,
    /// The target in warnings.
    label: String,
    /// The writer's buffer, in bytes.
    buffer_bytes: usize,
    /// How long after a failure the target is tried again.
    retry_after: Duration,
    /// Whether [`AccessLog::reopen`] reopens the target (a file).
    reopenable: bool,
}

/// What the writer thread is sent.
enum Message {
    /// One finished connection, to be formatted and written.
    Record(Record),
    /// Write out everything before this, then answer on the channel.
    Flush(SyncSender<()>),
    /// Nothing: wakes an idle writer so it sees a reopen request.
    Wake,
}

/// What the handles and the writer thread both see.
#[derive(Default)]
struct Shared {
    /// Records dropped: the queue was full, or the target failed.
    dropped: AtomicU64,
    /// Set by [`AccessLog::reopen`]; the writer clears it when it reopens.
    reopen: AtomicBool,
}

/// The access log: a cheap handle (one `Arc`) to the queue of one writer
/// thread, shared by every worker. The writer writes what is queued and
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// The shared part of every [`AccessLog`] handle.
struct Inner {
    sender: SyncSender<Message>,
    shared: Arc<Shared>,
    /// Whether the target is a file, which [`AccessLog::reopen`] reopens.
    reopenable: bool,
}

impl AccessLog {
    /// Starts the access log: opens `target` now (so a bad path is an
    /// error at startup, with the path, not a warning later) and starts
    /// its writer thread. Called once per configured access log.
    pub fn start(target: &Target, format: Format) -> Result<AccessLog, AccessLogError> {
        let sink = target.open().map_err(|e| AccessLogError::Open {
            target: target.clone(),
            reason: io_reason(&e),
        })?;
        let setup = Setup {
            capacity: QUEUE_RECORDS,
            format,
            label: target.label(),
            buffer_bytes: target.buffer_bytes(),
            retry_after: RETRY_AFTER,
            reopenable: matches!(target, Target::File(_)),
        };
        let target = target.clone();
        let open: Open = Box::new(move || target.open());
        AccessLog::start_with(setup, sink, open).map_err(|e| AccessLogError::Start {
            reason: io_reason(&e),
        })
    }

    /// Starts a writer thread writing lines to `sink` as `setup` says,
    /// opening the target again with `open`; what [`AccessLog::start`] and
    /// the tests build on.
    fn start_with(setup: Setup, sink: Sink, open: Open) -> io::Result<AccessLog> {
        let (sender, receiver) = mpsc::sync_channel(setup.capacity);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            format: setup.format,
            label: setup.label,
            buffer_bytes: setup.buffer_bytes,
            sink: Some(BufWriter::with_capacity(setup.buffer_bytes, sink)),
            open,
            retry_after: setup.retry_after,
            next_open: Instant::now(),
            line: Vec::with_capacity(512),
            unflushed: 0,
            warnings: Throttle::new(WARN_INTERVAL),
            shared: Arc::clone(&shared),
        };
        std::thread::Builder::new()
            .name("balancer-access-log".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(AccessLog {
            inner: Arc::new(Inner {
                sender,
                shared,
                reopenable: setup.reopenable,
            }),
        })
    }

    /// Queues one finished connection's record, or drops and counts it
    /// when the queue is full. Never blocks: the only call on the hot
    /// path, made once per connection when it ends.
    pub fn log(&self, record: Record) {
        if self.inner.sender.try_send(Message::Record(record)).is_err() {
            self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to close the file and open its path again, after
    /// writing what it holds to the old one: for log rotation (SIGUSR1).
    /// Returns at once; nothing for stderr and stdout.
    pub fn reopen(&self) {
        if !self.inner.reopenable {
            return;
        }
        self.inner.shared.reopen.store(true, Ordering::Relaxed);
        // An idle writer waits for a message; a full queue means it is
        // busy and sees the request with its next record.
        let _ = self.inner.sender.try_send(Message::Wake);
    }

    /// Records dropped so far, because the queue was full or the target
    /// failed: `balancer_access_log_dropped_total`.
    pub fn dropped(&self) -> u64 {
        self.inner.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `within` for every record queued so far to be written
    /// out (at exit). Whether they were, in time.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (done, written) = mpsc::sync_channel(1);
        let mut flush = Message::Flush(done);
        // A full queue has no room for the marker yet: look again shortly,
        // until the deadline (this runs at exit, not on the hot path).
        loop {
            match self.inner.sender.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    flush = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The writer thread's state: the open target, its buffer, and how to
/// open it again.
struct Writer {
    format: Format,
    /// The target in warnings.
    label: String,
    /// The buffer's size, in bytes.
    buffer_bytes: usize,
    /// The buffered target; none after a failure until it opens again.
    sink: Option<BufWriter<Sink>>,
    open: Open,
    /// How long after a failure to try the target again.
    retry_after: Duration,
    /// When the target may be opened again after a failure.
    next_open: Instant,
    /// The line being formatted, reused.
    line: Vec<u8>,
    /// Lines in the buffer not yet written out: lost if the target fails.
    unflushed: u64,
    warnings: Throttle,
    shared: Arc<Shared>,
}

impl Writer {
    /// Takes messages until every handle is gone, flushing whenever the
    /// queue is momentarily empty, then writes out what it holds.
    fn run(mut self, receiver: &Receiver<Message>) {
        loop {
            let message = match receiver.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Empty) => {
                    self.flush();
                    match receiver.recv() {
                        Ok(message) => message,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if self.shared.reopen.swap(false, Ordering::Relaxed) {
                self.reopen();
            }
            match message {
                Message::Record(record) => self.write(&record),
                Message::Flush(done) => {
                    self.flush();
                    let _ = done.try_send(());
                }
                Message::Wake => {}
            }
        }
        self.flush();
    }

    /// Formats `record` and writes it to the buffer (and so, when the
    /// buffer is full, to the target).
    fn write(&mut self, record: &Record) {
        self.line.clear();
        if format_line(self.format, record, &mut self.line).is_err() {
            self.drop_lines(1);
            return;
        }
        self.open_if_closed();
        let Some(sink) = self.sink.as_mut() else {
            self.drop_lines(1);
            return;
        };
        match sink.write_all(&self.line) {
            Ok(()) => self.unflushed += 1,
            Err(e) => {
                self.drop_lines(1);
                self.fail("cannot write the access log; lines dropped", &e);
            }
        }
    }

    /// Writes the buffer out to the target.
    fn flush(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        match sink.flush() {
            Ok(()) => self.unflushed = 0,
            Err(e) => self.fail("cannot write the access log; lines dropped", &e),
        }
    }

    /// Writes what is buffered to the file open now, closes it and opens
    /// the target again.
    fn reopen(&mut self) {
        self.flush();
        if let Some(sink) = self.sink.take() {
            // Flushed (or failed and already gone): nothing left to write.
            drop(sink.into_parts());
        }
        self.next_open = Instant::now();
        self.open_if_closed();
    }

    /// Opens the target if it is closed and the retry time has come.
    fn open_if_closed(&mut self) {
        if self.sink.is_none() && Instant::now() >= self.next_open {
            match (self.open)() {
                Ok(sink) => self.sink = Some(BufWriter::with_capacity(self.buffer_bytes, sink)),
                Err(e) => {
                    self.fail(
                        "cannot open the access log; lines dropped until it opens",
                        &e,
                    );
                }
            }
        }
    }

    /// After an open or write error: counts the buffered lines lost,
    /// discards the target (it is opened again after `retry_after`) and
    /// warns, throttled.
    fn fail(&mut self, what: &str, error: &io::Error) {
        self.drop_lines(self.unflushed);
        self.unflushed = 0;
        if let Some(sink) = self.sink.take() {
            // Discard the buffer: writing it again would fail again, or
            // put half a line in the file.
            drop(sink.into_parts());
        }
        self.next_open = Instant::now() + self.retry_after;
        if let Some(left_out) = self.warnings.admit() {
            tracing::warn!(access_log = %self.label, error = %io_reason(error), left_out, "{what}");
        }
    }

    /// Counts `lines` as dropped.
    fn drop_lines(&self, lines: u64) {
        self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
    }
}

/// Appends `record` to `out` as one line in `format`, newline included.
fn format_line(format: Format, record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    match format {
        Format::Text => text_line(record, out),
        Format::Json => json_line(record, out),
    }
}

/// The [`Format::Text`] line.
fn text_line(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    write!(out, "{} ", Rfc3339(record.ended))?;
    push_text_value(out, &record.listener);
    write!(out, " {} ", record.client)?;
    match &record.backend {
        Some(backend) => push_text_value(out, backend),
        None => out.push(b'-'),
    }
    write!(
        out,
        " {} {} {} {}",
        record.bytes_in,
        record.bytes_out,
        millis(record.duration),
        record.outcome
    )?;
    if let Some(http) = &record.http {
        out.push(b' ');
        push_text_value(out, &http.method);
        out.push(b' ');
        push_text_value(out, &http.path);
        write!(out, " {} {}", http.status, http.retries)?;
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `value` as one text field: as it is when it cannot be mistaken
/// for a separator, a missing value or a quoted one; otherwise in double
/// quotes with quotes, backslashes, control characters and any whitespace
/// but the space escaped.
fn push_text_value(out: &mut Vec<u8>, value: &str) {
    let plain = !value.is_empty()
        && value != "-"
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if plain {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    let mut utf8 = [0; 4];
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            ' ' => out.push(b' '),
            c if c.is_whitespace() || c.is_control() => {
                out.extend_from_slice(c.escape_default().to_string().as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}

/// The [`Format::Json`] line: the keys of SPEC 8, in its order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: Rfc3339,
    listener: &'a str,
    /// serde writes a socket address as `ip:port` (`[ip]:port` for IPv6)
    /// in JSON.
    client: SocketAddr,
    backend: Option<&'a str>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
}

/// Appends the JSON object of `record` and a newline.
fn json_line(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let http = record.http.as_ref();
    let line = JsonLine {
        time: Rfc3339(record.ended),
        listener: &record.listener,
        client: record.client,
        backend: record.backend.as_deref(),
        bytes_in: record.bytes_in,
        bytes_out: record.bytes_out,
        duration_ms: millis(record.duration),
        outcome: record.outcome.name(),
        method: http.map(|h| h.method.as_str()),
        path: http.map(|h| h.path.as_str()),
        status: http.map(|h| h.status),
        retries: http.map(|h| h.retries),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

/// Whole milliseconds of `duration` (`duration_ms`).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An instant as RFC 3339 in UTC with milliseconds, truncated:
/// `2026-11-30T10:31:14.123Z`. Written here rather than with
/// `humantime::format_rfc3339_millis`, which panics on a time before 1970
/// (a clock set wrong must not stop the log).
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = unix_millis(self.0);
        let seconds = ms.div_euclid(1000);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let of_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            ms.rem_euclid(1000)
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z, rounded down (negative before).
fn unix_millis(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX),
        Err(before) => {
            let nanos = i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX);
            -((nanos + 999_999) / 1_000_000)
        }
    }
}

/// The proleptic Gregorian date (year, month 1-12, day 1-31) of `days`
/// since 1970-01-01: Howard Hinnant's `civil_from_days`, which counts in
/// 400-year eras of 146 097 days from 0000-03-01, so that the leap day is
/// the last day of its year.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::{
        AccessLog, AccessLogError, Format, HttpFields, Open, Outcome, Record, Rfc3339, Setup, Sink,
        Target, format_line,
    };

    /// 2026-11-30T10:31:14.123Z, the example of the task.
    fn sample_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_034_674_123)
    }

    fn sample() -> Record {
        Record {
            ended: sample_time(),
            // 1532.9 ms: written as whole milliseconds, truncated.
            duration: Duration::from_micros(1_532_900),
            listener: Arc::from("web"),
            client: "192.0.2.7:51234".parse().unwrap(),
            backend: Some("10.0.0.1:8080".to_string()),
            bytes_in: 512,
            bytes_out: 20480,
            outcome: Outcome::Ok,
            http: None,
        }
    }

    fn unreached() -> Record {
        Record {
            duration: Duration::from_millis(3),
            backend: None,
            bytes_in: 0,
            bytes_out: 0,
            outcome: Outcome::NoBackend,
            ..sample()
        }
    }

    fn numbered(n: u64) -> Record {
        Record {
            bytes_in: n,
            ..sample()
        }
    }

    fn line(format: Format, record: &Record) -> String {
        let mut out = Vec::new();
        format_line(format, record, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn at(millis: i64) -> String {
        let time = if millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
        };
        Rfc3339(time).to_string()
    }

    /// The `bytes_in` of each text line in `text`, which tests use to
    /// number records.
    fn numbers(text: &str) -> Vec<u64> {
        text.lines()
            .map(|line| line.split(' ').nth(4).unwrap().parse().unwrap())
            .collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// A sink that keeps what it is given, shared with the test.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Kept {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink every write to which fails, as a full disk does.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a [`Gate`] knows: whether it is open, whether a write waits on
    /// it, and each write that got through.
    #[derive(Default)]
    struct GateState {
        open: bool,
        waiting: bool,
        writes: Vec<String>,
    }

    /// A sink that blocks every write until it is opened, as a pipe
    /// nobody reads does.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<GateState>, Condvar)>);

    impl Gate {
        fn open(&self) {
            self.0.0.lock().unwrap().open = true;
            self.0.1.notify_all();
        }

        /// Waits (at most 10 s) until a write is blocked on the gate.
        fn wait_for_a_writer(&self) {
            let (state, changed) = &*self.0;
            let (state, timeout) = changed
                .wait_timeout_while(state.lock().unwrap(), Duration::from_secs(10), |s| {
                    !s.waiting
                })
                .unwrap();
            assert!(!timeout.timed_out() && state.waiting);
        }

        fn writes(&self) -> Vec<String> {
            self.0.0.lock().unwrap().writes.clone()
        }

        fn text(&self) -> String {
            self.writes().concat()
        }
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (state, changed) = &*self.0;
            let mut state = state.lock().unwrap();
            state.waiting = true;
            changed.notify_all();
            let mut state = changed.wait_while(state, |s| !s.open).unwrap();
            state
                .writes
                .push(String::from_utf8(bytes.to_vec()).unwrap());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An access log of `capacity` records writing text to `sink`,
    /// opening `reopen` after that; retrying at once after a failure.
    fn start_with(capacity: usize, sink: impl Write + Send + 'static, reopen: Open) -> AccessLog {
        let setup = Setup {
            capacity,
            format: Format::Text,
            label: "test".to_string(),
            buffer_bytes: 4096,
            retry_after: Duration::ZERO,
            reopenable: true,
        };
        AccessLog::start_with(setup, Box::new(sink), reopen).unwrap()
    }

    fn opens(sink: &Kept) -> Open {
        let sink = sink.clone();
        Box::new(move || Ok(Box::new(sink.clone()) as Sink))
    }

    #[test]
    fn a_text_line_has_the_documented_fields_in_order() {
        assert_eq!(
            line(Format::Text, &sample()),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 10.0.0.1:8080 512 20480 1532 ok\n"
        );
    }

    #[test]
    fn a_text_line_without_a_backend_says_dash() {
        assert_eq!(
            line(Format::Text, &unreached()),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 - 0 0 3 no_backend\n"
        );
    }

    #[test]
    fn a_json_line_has_exactly_the_keys_of_spec_8() {
        assert_eq!(
            line(Format::Json, &sample()),
            "{\"time\":\"2026-11-30T10:31:14.123Z\",\"listener\":\"web\",\
             \"client\":\"192.0.2.7:51234\",\"backend\":\"10.0.0.1:8080\",\
             \"bytes_in\":512,\"bytes_out\":20480,\"duration_ms\":1532,\"outcome\":\"ok\"}\n"
        );
    }

    #[test]
    fn a_json_line_without_a_backend_has_backend_null() {
        assert_eq!(
            line(Format::Json, &unreached()),
            "{\"time\":\"2026-11-30T10:31:14.123Z\",\"listener\":\"web\",\
             \"client\":\"192.0.2.7:51234\",\"backend\":null,\
             \"bytes_in\":0,\"bytes_out\":0,\"duration_ms\":3,\"outcome\":\"no_backend\"}\n"
        );
    }

    #[test]
    fn an_ipv6_client_is_written_in_brackets_with_its_port() {
        let record = Record {
            client: "[2001:db8::7]:443".parse().unwrap(),
            ..sample()
        };
        assert!(line(Format::Text, &record).contains(" [2001:db8::7]:443 "));
        assert!(line(Format::Json, &record).contains("\"client\":\"[2001:db8::7]:443\""));
    }

    #[test]
    fn an_http_record_adds_method_path_status_and_retries() {
        let record = Record {
            http: Some(HttpFields {
                method: "GET".to_string(),
                path: "/api/items?id=7".to_string(),
                status: 200,
                retries: 1,
            }),
            ..sample()
        };
        assert_eq!(
            line(Format::Text, &record),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 10.0.0.1:8080 512 20480 1532 ok \
             GET /api/items?id=7 200 1\n"
        );
        assert!(line(Format::Json, &record).ends_with(
            ",\"outcome\":\"ok\",\"method\":\"GET\",\"path\":\"/api/items?id=7\",\
             \"status\":200,\"retries\":1}\n"
        ));
    }

    #[test]
    fn outcomes_have_stable_names() {
        let names = [
            (Outcome::Ok, "ok"),
            (Outcome::NoBackend, "no_backend"),
            (Outcome::IdleTimeout, "idle_timeout"),
            (Outcome::Reset, "reset"),
            (Outcome::DrainTimeout, "drain_timeout"),
            (Outcome::LocalResources, "local_resources"),
        ];
        for (outcome, name) in names {
            assert_eq!(outcome.name(), name);
            assert_eq!(outcome.to_string(), name);
        }
    }

    #[test]
    fn awkward_text_values_are_quoted_and_escaped_so_a_line_stays_one_line() {
        let cases = [
            ("a b", "\"a b\""),
            ("", "\"\""),
            ("-", "\"-\""),
            ("x\"y\\z", "\"x\\\"y\\\\z\""),
            ("a\nb", "\"a\\nb\""),
            ("a\r\tb", "\"a\\r\\tb\""),
            ("\u{1b}[31m", "\"\\u{1b}[31m\""),
            ("a\u{2028}b", "\"a\\u{2028}b\""),
            ("a\u{a0}b", "\"a\\u{a0}b\""),
            ("café-1", "café-1"),
        ];
        for (value, written) in cases {
            let record = Record {
                listener: Arc::from(value),
                backend: Some(value.to_string()),
                ..sample()
            };
            let text = line(Format::Text, &record);
            assert_eq!(
                text,
                format!(
                    "2026-11-30T10:31:14.123Z {written} 192.0.2.7:51234 {written} \
                     512 20480 1532 ok\n"
                ),
                "{value:?}"
            );
            let json = line(Format::Json, &record);
            assert_eq!(json.lines().count(), 1, "{json}");
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed["listener"], value);
        }
    }

    #[test]
    fn an_awkward_http_path_is_quoted_too() {
        let record = Record {
            http: Some(HttpFields {
                method: "GET".to_string(),
                path: "/a b\n".to_string(),
                status: 400,
                retries: 0,
            }),
            ..sample()
        };
        assert!(line(Format::Text, &record).ends_with(" GET \"/a b\\n\" 400 0\n"));
    }

    #[test]
    fn times_are_rfc_3339_in_utc_with_milliseconds() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
        assert_eq!(at(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_796_034_674_123), "2026-11-30T10:31:14.123Z");
    }

    #[test]
    fn a_time_before_1970_is_written_not_a_panic() {
        assert_eq!(at(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(at(-86_400_000), "1969-12-31T00:00:00.000Z");
        let just_before = UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(Rfc3339(just_before).to_string(), "1969-12-31T23:59:59.999Z");
    }

    proptest! {
        #[test]
        fn times_agree_with_humantime_from_1970_to_9999(
            seconds in 0u64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let time = UNIX_EPOCH + Duration::new(seconds, nanos);
            prop_assert_eq!(
                Rfc3339(time).to_string(),
                humantime::format_rfc3339_millis(time).to_string()
            );
        }
    }

    #[test]
    fn the_handle_is_cheap_to_share_between_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<AccessLog>();
    }

    #[test]
    fn a_file_target_gets_one_line_per_record_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = AccessLog::start(&Target::File(path.clone()), Format::Json).unwrap();
        log.log(sample());
        log.log(unreached());
        assert!(log.flush(Duration::from_secs(10)));
        let expected = format!(
            "earlier\n{}{}",
            line(Format::Json, &sample()),
            line(Format::Json, &unreached())
        );
        assert_eq!(read(&path), expected);
        assert_eq!(log.dropped(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_created_writable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let _log = AccessLog::start(&Target::File(path.clone()), Format::Text).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777 & !0o644, 0, "{mode:o}");
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_at_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("access.log");
        let Err(error) = AccessLog::start(&Target::File(path.clone()), Format::Text) else {
            panic!("started on a missing directory");
        };
        assert!(
            matches!(&error, AccessLogError::Open { target: Target::File(p), .. } if *p == path)
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot open the access log \"{}\": no such file or directory",
                path.display()
            )
        );
    }

    #[test]
    fn after_a_rename_and_reopen_later_lines_go_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let log = AccessLog::start(&Target::File(path.clone()), Format::Text).unwrap();
        log.log(numbered(1));
        log.log(numbered(2));
        assert!(log.flush(Duration::from_secs(10)));
        std::fs::rename(&path, &rotated).unwrap();
        // Queued before the reopen: in the old file or the new one,
        // depending on when the writer sees the request, but in one.
        log.log(numbered(3));
        log.reopen();
        log.log(numbered(4));
        log.log(numbered(5));
        assert!(log.flush(Duration::from_secs(10)));
        let old = numbers(&read(&rotated));
        let new = numbers(&read(&path));
        assert_eq!(&old[..2], &[1, 2]);
        assert_eq!(&new[new.len() - 2..], &[4, 5]);
        let mut all = [old, new].concat();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3, 4, 5], "nothing lost, nothing twice");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_target_that_cannot_be_reopened_drops_and_counts_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("access.log");
        let target = Target::File(path.clone());
        let first = target.open().unwrap();
        let log = start_with(16, first, Box::new(move || target.open()));
        std::fs::remove_dir_all(&logs).unwrap();
        log.reopen();
        log.log(numbered(1));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.dropped(), 1);
        std::fs::create_dir(&logs).unwrap();
        log.log(numbered(2));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(numbers(&read(&path)), [2]);
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn a_failed_write_counts_its_lines_and_a_later_record_opens_the_target_again() {
        let kept = Kept::default();
        let log = start_with(16, Broken, opens(&kept));
        log.log(numbered(1));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.dropped(), 1);
        log.log(numbered(2));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(numbers(&kept.text()), [2]);
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn reopen_does_nothing_for_stderr_and_stdout() {
        for target in [Target::Stderr, Target::Stdout] {
            let log = AccessLog::start(&target, Format::Text).unwrap();
            log.reopen();
            assert!(
                !log.inner.shared.reopen.load(Ordering::Relaxed),
                "{target:?}"
            );
        }
    }

    #[test]
    fn a_stuck_writer_never_blocks_log_and_what_overflows_is_counted() {
        let gate = Gate::default();
        let log = start_with(4, gate.clone(), opens(&Kept::default()));
        log.log(numbered(0));
        gate.wait_for_a_writer();
        // The writer is stuck writing record 0: four records fill the
        // queue and the other sixteen are dropped at once.
        let started = Instant::now();
        for n in 1..=20 {
            log.log(numbered(n));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(log.dropped(), 16);
        gate.open();
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(numbers(&gate.text()), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn each_write_holds_whole_lines_within_the_buffer_so_a_pipe_never_cuts_one() {
        assert_eq!(Target::Stderr.buffer_bytes(), rustix::pipe::PIPE_BUF);
        assert_eq!(Target::Stdout.buffer_bytes(), rustix::pipe::PIPE_BUF);
        let gate = Gate::default();
        let setup = Setup {
            capacity: 64,
            format: Format::Text,
            label: "test".to_string(),
            buffer_bytes: 200,
            retry_after: Duration::ZERO,
            reopenable: false,
        };
        let log =
            AccessLog::start_with(setup, Box::new(gate.clone()), opens(&Kept::default())).unwrap();
        // The gate holds the writer on the first line while the others
        // queue up, so they are written in full buffers.
        log.log(numbered(0));
        gate.wait_for_a_writer();
        for n in 1..=20 {
            log.log(numbered(n));
        }
        gate.open();
        assert!(log.flush(Duration::from_secs(10)));
        let writes = gate.writes();
        for write in &writes {
            assert!(write.len() <= 200 && write.ends_with("\n"), "{write:?}");
        }
        assert!(writes.iter().any(|w| w.lines().count() > 1), "{writes:?}");
        assert_eq!(numbers(&gate.text()), (0..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_flush_gives_up_at_its_deadline_when_the_writer_is_stuck() {
        let gate = Gate::default();
        let log = start_with(4, gate.clone(), opens(&Kept::default()));
        log.log(numbered(0));
        gate.wait_for_a_writer();
        let started = Instant::now();
        assert!(!log.flush(Duration::from_millis(100)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
        gate.open();
        assert!(log.flush(Duration::from_secs(10)));
    }

    #[test]
    fn dropping_the_last_handle_still_writes_what_was_queued() {
        let kept = Kept::default();
        let log = start_with(16, kept.clone(), opens(&kept));
        let other = log.clone();
        for n in 1..=3 {
            other.log(numbered(n));
        }
        drop(log);
        drop(other);
        let deadline = Instant::now() + Duration::from_secs(10);
        while numbers(&kept.text()).len() < 3 {
            assert!(Instant::now() < deadline, "{}", kept.text());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(numbers(&kept.text()), [1, 2, 3]);
    }

    #[test]
    fn a_path_with_a_space_is_quoted_in_the_open_error() {
        let error = AccessLogError::Open {
            target: Target::File(PathBuf::from("/var/log/my logs/access.log")),
            reason: "permission denied".to_string(),
        };
        assert_eq!(
            error.to_string(),
            "cannot open the access log \"/var/log/my logs/access.log\": permission denied"
        );
    }

    #[test]
    fn warnings_name_stderr_and_stdout_in_words_and_a_file_by_its_path() {
        assert_eq!(Target::Stderr.label(), "stderr");
        assert_eq!(Target::Stdout.label(), "stdout");
        assert_eq!(
            Target::File(PathBuf::from("/var/log/a.log")).label(),
            "/var/log/a.log"
        );
    }
}
