//! The top-level error: how it renders (once, in `main`) and which exit code
//! it maps to: 2 for bad usage or bad config (nothing was started), 1 for a
//! runtime failure.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigErrors;

/// Everything `balancer` can fail with, as the user sees it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is invalid; every problem found is listed.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A command-line value is wrong (beyond what clap itself checks).
    #[error("{0}")]
    Usage(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// Whose address it is: `listener web`, `backend b1`.
        what: String,
        /// Why, in words.
        reason: String,
    },
    /// Another runtime failure (the runtime could not start, ...).
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// The process exit code for this error (SPEC 1).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Bind { .. } | Error::Runtime(_) => 1,
        }
    }

    /// A bind failure of `addr`, for `what` (e.g. `listener web`).
    pub fn bind(addr: SocketAddr, what: impl Into<String>, err: &io::Error) -> Error {
        Error::Bind {
            addr,
            what: what.into(),
            reason: crate::net::io_reason(err),
        }
    }
}
