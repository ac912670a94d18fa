//! The only code that touches Unix signals. Everything else takes a
//! shutdown future and never knows where it came from.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::Error;

/// The installed handlers. Installing them early (before listeners are
/// announced) means a SIGTERM sent as soon as the balancer is ready is
/// caught, never the default action that kills the process.
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT and SIGHUP. Must be called
    /// inside the tokio runtime.
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
        })
    }

    /// Resolves on the first SIGTERM or SIGINT. SIGHUP (config reload, a
    /// later feature) is logged and ignored meanwhile.
    pub async fn shutdown(mut self) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    tracing::info!(signal = "SIGTERM", "shutdown requested");
                    return;
                }
                _ = self.interrupt.recv() => {
                    tracing::info!(signal = "SIGINT", "shutdown requested");
                    return;
                }
                _ = self.hangup.recv() => {
                    tracing::warn!(signal = "SIGHUP", "config reload is not supported yet; ignoring");
                }
            }
        }
    }
}
