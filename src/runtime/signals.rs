//! The only code that touches Unix signals. Everything else takes a
//! shutdown future and never knows where it came from.
//!
//! SIGTERM or SIGINT asks for a shutdown (the drain); a second one cuts the
//! drain short, as HAProxy and nginx do. SIGHUP asks for a config reload,
//! SIGUSR1 for the access log file to be reopened (log rotation). SIGUSR2 is
//! logged and ignored, rather than left to its default action, which would
//! kill the process.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ReloadSender;
use crate::error::Error;

/// The installed handlers. Installing them early (before listeners are
/// announced) means a signal sent as soon as the balancer is ready is
/// caught, never the default action that kills the process.
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
    user1: Signal,
    user2: Signal,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2.
    /// Must be called inside the tokio runtime.
    pub fn install() -> Result<Signals, Error> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| {
                Error::Runtime(format!(
                    "cannot install the {name} handler: {}",
                    crate::net::io_reason(&e)
                ))
            })
        };
        Ok(Signals {
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
            user1: install(SignalKind::user_defined1(), "SIGUSR1")?,
            user2: install(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }

    /// Starts listening on a task of the current runtime, owned by the
    /// returned [`Shutdown`] (dropping it stops listening). SIGHUP asks
    /// `reloads` for a reload.
    pub fn listen(self, reloads: ReloadSender) -> Shutdown {
        let (count, requests) = watch::channel(0u32);
        let task = tokio::spawn(self.count_stops(count, reloads));
        Shutdown { requests, task }
    }

    /// Counts SIGTERM and SIGINT into `count`, asks for a reload on each
    /// SIGHUP, logs every signal.
    async fn count_stops(mut self, count: watch::Sender<u32>, reloads: ReloadSender) {
        loop {
            let name = tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.hangup.recv() => {
                    tracing::info!(signal = "SIGHUP", "config reload requested");
                    reloads.request();
                    continue;
                }
                _ = self.user1.recv() => {
                    tracing::info!(signal = "SIGUSR1", "reopening the access log requested");
                    reloads.reopen_logs();
                    continue;
                }
                _ = self.user2.recv() => {
                    tracing::info!(signal = "SIGUSR2", "ignoring");
                    continue;
                }
            };
            count.send_modify(|n| *n = n.saturating_add(1));
            if *count.borrow() == 1 {
                tracing::info!(signal = name, "shutdown requested");
            } else {
                tracing::warn!(
                    signal = name,
                    "second shutdown signal: closing open connections and exiting now"
                );
            }
        }
    }
}

/// The shutdown requests signals have made: the first starts the drain,
/// the second cuts it short. Owns the task that listens for them.
pub struct Shutdown {
    /// How many SIGTERM/SIGINT arrived so far.
    requests: watch::Receiver<u32>,
    /// The listening task, stopped on drop.
    task: JoinHandle<()>,
}

impl Shutdown {
    /// Resolves once a shutdown was requested (the first SIGTERM or SIGINT).
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        self.at_least(1)
    }

    /// Resolves once a second SIGTERM or SIGINT arrived.
    pub fn forced(&self) -> impl Future<Output = ()> + Send + 'static {
        self.at_least(2)
    }

    fn at_least(&self, n: u32) -> impl Future<Output = ()> + Send + 'static {
        let mut requests = self.requests.clone();
        async move {
            // An error means the listener is gone: only at exit, so
            // resolving then changes nothing.
            let _ = requests.wait_for(|count| *count >= n).await;
        }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.task.abort();
    }
}
