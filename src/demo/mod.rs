//! `balancer demo` and `balancer backend`: the seed's `runserver.py` and its
//! rule that backends only answer traffic that came through the balancer.
//!
//! The demo's config is embedded (`demo.toml`) and goes through the same
//! parsing and validation as any file; its backends are [`backend`]
//! servers on the same runtime as the balancer. The certificate of its
//! TLS listeners (`tls` in tcp mode, `https` in http mode) is made at
//! start ([`DemoCertificate`]), self-signed for `localhost` and
//! `127.0.0.1`.

pub mod backend;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, FileFormat};
use crate::error::Error;
use crate::runtime::{self, ConfigSource, Reloads, listener, signals::Signals};
use backend::BackendOptions;

/// The embedded demo config.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// The address the demo balancer connects from, and the only client the
/// demo backends answer.
const BALANCER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The demo backends: name and port.
const DEMO_BACKENDS: [(&str, u16); 5] = [
    ("b1", 8080),
    ("b2", 8081),
    ("b3", 8082),
    ("b4", 8083),
    ("b5", 8084),
];

/// The validated demo config, its certificate files taken from `folder`.
fn config(folder: &Path) -> Result<Config, Error> {
    Ok(config::parse_in(
        DEMO_CONFIG,
        FileFormat::Toml,
        "demo.toml",
        folder,
    )?)
}

/// `balancer demo`: five backends and the balancer in one process, until
/// Ctrl-C (or SIGTERM). Once everything listens, `announce` is given what
/// to tell a newcomer: what runs and what to try.
pub fn run(announce: impl FnOnce(&str)) -> Result<(), Error> {
    let certificate = DemoCertificate::make()?;
    let config = config(&certificate.folder)?;
    let runtime = runtime::build_runtime(config.global.workers)?;
    runtime.block_on(async move {
        let reloads = Reloads::of(ConfigSource::Embedded {
            text: DEMO_CONFIG,
            origin: "demo.toml",
            folder: certificate.folder.clone(),
        });
        let shutdown = Signals::install()?.listen(reloads.sender());
        let mut sockets = Vec::new();
        for (name, port) in DEMO_BACKENDS {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            sockets.push((name, listener::bind(addr, &format!("demo backend {name}"))?));
        }
        runtime::limits::fit_open_files(&config);
        let bound = runtime::bind(&config)?;
        let stop_backends = CancellationToken::new();
        let backends = TaskTracker::new();
        for (name, socket) in sockets {
            let options = BackendOptions {
                name: name.to_string(),
                allow_from: vec![IpNet::from(IpAddr::V4(BALANCER_SOURCE))],
                dir: None,
                delay: std::time::Duration::ZERO,
            };
            spawn_backend(&backends, socket, options, stop_backends.clone())?;
        }
        announce(&instructions(&bound));
        runtime::run(
            config,
            bound,
            shutdown.requested(),
            shutdown.forced(),
            reloads,
        )
        .await;
        stop_backends.cancel();
        backends.close();
        backends.wait().await;
        Ok(())
    })
}

/// The demo TLS listeners' certificate and key (`demo.pem`, `demo.key`):
/// self-signed for `localhost` and `127.0.0.1`, made at start in a folder
/// of this process's own under the system's temporary folder, which is
/// removed when the demo ends.
struct DemoCertificate {
    folder: PathBuf,
}

impl DemoCertificate {
    fn make() -> Result<DemoCertificate, Error> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::Runtime(format!("cannot make the demo's certificate: {e}")))?;
        let folder = std::env::temp_dir().join(format!("balancer-demo-{}", std::process::id()));
        let certificate = DemoCertificate { folder };
        let write = |name: &str, text: &str| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let path = certificate.folder.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .map_err(|e| {
                    let reason = crate::net::io_reason(&e);
                    Error::Runtime(format!("cannot write {}: {reason}", path.display()))
                })
        };
        std::fs::create_dir_all(&certificate.folder).map_err(|e| {
            let reason = crate::net::io_reason(&e);
            let folder = certificate.folder.display();
            Error::Runtime(format!("cannot make the folder {folder}: {reason}"))
        })?;
        write("demo.pem", &made.cert.pem())?;
        write("demo.key", &made.signing_key.serialize_pem())?;
        Ok(certificate)
    }
}

impl Drop for DemoCertificate {
    fn drop(&mut self) {
        // Best effort: a folder left behind in the temporary folder is
        // harmless.
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// `balancer backend`: one demo backend until Ctrl-C (or SIGTERM).
pub fn run_backend(options: BackendOptions, listen: SocketAddr) -> Result<(), Error> {
    let runtime = runtime::build_runtime(1)?;
    runtime.block_on(async move {
        // A demo backend has no config to reload: SIGHUP asks no one.
        let shutdown = Signals::install()?.listen(Reloads::none().sender());
        let socket = listener::bind(listen, &format!("backend {}", options.name))?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        spawn_backend(&tasks, socket, options, stop.clone())?;
        shutdown.requested().await;
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(())
    })
}

/// Serves one bound demo backend on the current runtime, logging its
/// readiness line (`listening backend=NAME address=ADDR`).
fn spawn_backend(
    tasks: &TaskTracker,
    socket: std::net::TcpListener,
    options: BackendOptions,
    stop: CancellationToken,
) -> Result<(), Error> {
    let address = socket
        .local_addr()
        .map_err(|e| Error::Runtime(crate::net::io_reason(&e)))?;
    let socket = tokio::net::TcpListener::from_std(socket)
        .map_err(|e| Error::bind(address, format!("backend {}", options.name), &e))?;
    tracing::info!(backend = %options.name, address = %address, "listening");
    tasks.spawn(backend::serve(socket, Arc::new(options), stop));
    Ok(())
}

/// What the demo tells a newcomer: what runs and what to try.
fn instructions(bound: &runtime::Bound) -> String {
    let addresses = bound.addresses();
    let address_of = |listener: &str, default: &str| {
        addresses
            .iter()
            .find(|(name, _)| name == listener)
            .map_or_else(|| default.to_string(), |(_, a)| a.to_string())
    };
    let web = address_of("web", "127.0.0.1:24003");
    let api = address_of("api", "127.0.0.1:24004");
    let http = address_of("http", "127.0.0.1:24005");
    let tls = address_of("tls", "127.0.0.1:24006");
    let https = address_of("https", "127.0.0.1:24007");
    let admin = bound
        .admin_address()
        .map_or_else(|| "127.0.0.1:9000".to_string(), |a| a.to_string());
    format!(
        "\
balancer demo is running:
  backends b1..b5 on 127.0.0.1:8080-8084 answer only the balancer (127.0.0.2)
  listener web on {web}: smooth weighted round robin 3,1,2,1 over b1..b4
  listener api on {api}: b5
  listener http on {http}: http mode, each request balanced 3,1,2,1 over b1..b4
  listener tls on {tls}: TLS (a self-signed certificate made at start),
      the decrypted bytes relayed 3,1,2,1 over b1..b4
  listener https on {https}: http mode over TLS (same certificate), HTTP/2
      for clients that offer it, each request balanced 3,1,2,1 over b1..b4
  dashboard on http://{admin}/ (metrics at /metrics, JSON at /api/status)

Try, in another terminal:
  curl -i http://{web}/
      answered through the balancer; the X-Backend header names the backend
  for i in $(seq 7); do curl -s http://{web}/; done
      seven connections, interleaved by weight: b1 b3 b2 b1 b4 b3 b1
  curl -s http://{http}/[1-7]
      seven requests on one keep-alive connection, spread by weight
      (add -v to see curl re-using the connection)
  curl -ik https://{tls}/
      over TLS (-k: the certificate is self-signed), answered through the balancer
  curl -sk --http2 https://{https}/[1-7]
      seven HTTP/2 requests on one connection, spread by weight
      (add -v to see ALPN choose h2)
  curl -i http://127.0.0.1:8080/
      straight at a backend: 403, backends only answer the balancer
  while true; do curl -s http://{web}/ >/dev/null; sleep 0.2; done
      steady traffic: watch it move on the dashboard

Press Ctrl-C to stop.
"
    )
}
