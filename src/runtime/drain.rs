//! Drain: stop accepting at once, let open connections finish for up to
//! `drain_timeout`, then close what is left and wait for it to go.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The two halves of stopping: one token stops every accept loop, the other
/// closes every open connection; the trackers say when each is done.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Cancelled first: accept loops return and drop their sockets, so new
    /// connects are refused.
    pub stop_accepting: CancellationToken,
    /// Cancelled when the drain timeout runs out: open relays end.
    pub close_connections: CancellationToken,
    /// Every accept loop.
    pub listeners: TaskTracker,
    /// Every client connection.
    pub connections: TaskTracker,
}

impl Drain {
    /// Runs the drain sequence; returns once every task has ended. When
    /// `forced` resolves first (a second SIGTERM), what is still open is
    /// closed at once.
    pub async fn run(&self, timeout: Duration, forced: impl Future<Output = ()>) {
        self.stop_accepting.cancel();
        self.listeners.close();
        self.listeners.wait().await;
        self.connections.close();
        let open = self.connections.len();
        if open == 0 {
            tracing::info!("no open connections; stopped");
            return;
        }
        tracing::info!(
            open_connections = open,
            drain_timeout = %crate::net::format_duration(timeout),
            "stopped accepting; waiting for open connections to finish"
        );
        tokio::select! {
            finished = tokio::time::timeout(timeout, self.connections.wait()) => {
                if finished.is_ok() {
                    tracing::info!("all connections finished; stopped");
                    return;
                }
                tracing::warn!(
                    open_connections = self.connections.len(),
                    "drain timeout reached; closing the remaining connections"
                );
            }
            () = forced => {
                tracing::warn!(
                    open_connections = self.connections.len(),
                    "drain cut short; closing the remaining connections"
                );
            }
        }
        self.close_connections.cancel();
        self.connections.wait().await;
        tracing::info!("stopped");
    }
}
