//! The application log (stderr), written so that it can never stall the
//! balancer, and throttles for messages that could flood it.
//!
//! Lines go through a bounded queue to one writer thread: a stderr that
//! nobody reads (a full pipe) blocks that thread only, never a worker, the
//! admin server or signal handling. What does not fit in the queue is
//! dropped and counted ([`dropped_lines`], exported as
//! `balancer_log_lines_dropped_total`). At exit the queue gets a second to
//! be written, no more. (tracing-appender's non-blocking writer does the
//! same, but when its queue is full at exit it prints a Rust debug message
//! to stdout; this one stays quiet.)
//!
//! A [`Throttle`] keeps a message that can repeat per connection (a
//! backend refusing connects, no backend reachable, clients turned away)
//! to its first occurrence, then one line per interval carrying how many
//! were left out since.
//!
//! This module imports nothing else of the crate.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Log lines the queue holds before new ones are dropped: about 3 MiB of
/// typical lines, seconds of a flood, while a reader catches up.
const QUEUE_LINES: usize = 16_384;

/// How long the exit waits for queued lines to be written.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

/// The queue of the process's log, set once by [`init`]: what
/// [`dropped_lines`] reads.
static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// What the writer thread is sent.
enum Message {
    /// One formatted log line (or event), written as it is.
    Line(Vec<u8>),
    /// Answer on this channel once every line before it is written.
    Flush(SyncSender<()>),
}

/// The bounded queue between every thread that logs and the one writer
/// thread.
struct Queue {
    sender: SyncSender<Message>,
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
}

impl Queue {
    /// A queue of `capacity` lines and the thread that writes them to
    /// `out`, in order, for the life of the process.
    fn start(capacity: usize, mut out: impl Write + Send + 'static) -> std::io::Result<Arc<Queue>> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("balancer-log".into())
            .spawn(move || write_lines(&receiver, &mut out))?;
        Ok(Arc::new(Queue {
            sender,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Queues `line`, or counts it dropped when the queue is full.
    fn push(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `within` for every line queued so far to be written.
    fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (done, written) = mpsc::sync_channel(1);
        let mut flush = Message::Flush(done);
        // A full queue has no room for the marker yet: look again shortly,
        // until the deadline (this runs once, at exit).
        loop {
            match self.sender.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    flush = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The writer thread: writes each line as it comes; a write error (a
/// closed stderr) loses that line only.
fn write_lines(receiver: &Receiver<Message>, out: &mut impl Write) {
    for message in receiver {
        match message {
            Message::Line(line) => {
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
        }
    }
}

/// What `tracing_subscriber` writes through: each event is formatted into
/// its own [`QueuedLine`], queued whole when the subscriber is done with it.
#[derive(Clone)]
struct QueueWriter(Arc<Queue>);

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine {
            queue: &self.0,
            line: Vec::new(),
        }
    }
}

/// One event's bytes, queued on drop.
struct QueuedLine<'a> {
    queue: &'a Queue,
    line: Vec<u8>,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.queue.push(std::mem::take(&mut self.line));
        }
    }
}

/// Writes what is queued when dropped (at exit), waiting at most
/// [`FLUSH_AT_EXIT`]; hold it for the life of the program.
#[must_use = "dropping the guard flushes the log at once"]
pub struct LogGuard {
    queue: Arc<Queue>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.queue.flush(FLUSH_AT_EXIT);
    }
}

/// Sets up the global log to stderr at `level`, as text or as one JSON
/// object per line. `None` when a log is set up already (a second call,
/// only possible in tests) or the writer thread cannot start (then events
/// go nowhere; the balancer still runs).
pub fn init(level: tracing::Level, json: bool) -> Option<LogGuard> {
    // Colours only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let queue = Queue::start(QUEUE_LINES, std::io::stderr()).ok()?;
    let builder = tracing_subscriber::fmt()
        .with_writer(QueueWriter(Arc::clone(&queue)))
        .with_ansi(ansi)
        .with_max_level(level);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.ok()?;
    let _ = QUEUE.set(Arc::clone(&queue));
    Some(LogGuard { queue })
}

/// Log lines dropped so far because stderr did not keep up.
pub fn dropped_lines() -> u64 {
    QUEUE
        .get()
        .map_or(0, |queue| queue.dropped.load(Ordering::Relaxed))
}

/// Lets a repeating message through once per `interval`: the first
/// occurrence at once, then the first one after each interval, with the
/// number left out in between. Lock-free: one or two `Relaxed` atomics per
/// occurrence (they only decide what is logged).
#[derive(Debug)]
pub struct Throttle {
    /// How long after a logged occurrence the next one may be.
    interval: Duration,
    /// When this throttle was made; times are kept as milliseconds since.
    start: Instant,
    /// When an occurrence was last let through, in ms since `start`, plus
    /// one (0: never).
    last: AtomicU64,
    /// Occurrences left out since the last one let through.
    left_out: AtomicU64,
}

impl Throttle {
    /// A throttle that lets one occurrence through per `interval`.
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            start: Instant::now(),
            last: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// Whether to log this occurrence: `Some(n)` with the number of
    /// occurrences left out since the last one logged, or `None` to stay
    /// quiet. Of racing callers, exactly one is let through.
    pub fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{Queue, Throttle};

    /// A sink that blocks every write until `open` is set, then keeps what
    /// it is given.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (lock, opened) = &*self.open;
            let _open = opened
                .wait_while(lock.lock().unwrap(), |open| !*open)
                .unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_never_blocks_the_logger_and_what_overflows_is_counted() {
        let gate = Gate::default();
        let queue = Queue::start(4, gate.clone()).unwrap();
        // The writer takes the first line and blocks on it; four more fill
        // the queue; the rest are dropped at once, never waited for.
        for i in 0..20u8 {
            queue.push(vec![b'a' + i]);
        }
        let dropped = queue.dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert!((15..=16).contains(&dropped), "{dropped}");
        gate.open();
        queue.flush(Duration::from_secs(10));
        let written = gate.written.lock().unwrap().clone();
        assert_eq!(written.len() as u64, 20 - dropped);
        assert!(written.starts_with(b"abcd"), "{written:?}");
    }

    #[test]
    fn flushing_a_stuck_writer_gives_up_after_its_deadline() {
        let gate = Gate::default();
        let queue = Queue::start(4, gate.clone()).unwrap();
        queue.push(b"stuck".to_vec());
        let started = std::time::Instant::now();
        queue.flush(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        gate.open();
    }

    #[test]
    fn the_first_occurrence_passes_then_one_per_interval_with_the_count_left_out() {
        let throttle = Throttle::new(Duration::from_millis(50));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..99 {
            assert_eq!(throttle.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.admit(), Some(99));
        assert_eq!(throttle.admit(), None);
    }

    #[test]
    fn racing_callers_let_exactly_one_through() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        let passed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..1000).filter(|_| throttle.admit().is_some()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 1);
    }
}
