//! `balancer backend`: a small demo HTTP server. (Stub; replaced by the
//! backend branch.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Options of one demo backend.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Shown in X-Backend and the body.
    pub name: String,
    /// Empty: everyone; else others get 403.
    pub allow_from: Vec<IpNet>,
    /// Files served from here.
    pub dir: Option<PathBuf>,
    /// Each answer is delayed this long.
    pub delay: Duration,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    _listener: TcpListener,
    _options: Arc<BackendOptions>,
    shutdown: CancellationToken,
) {
    shutdown.cancelled().await;
}
