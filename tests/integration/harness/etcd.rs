//! A real etcd for the fleet tests: Debian's `etcd` (package
//! `etcd-server`), one member on `127.0.0.1` with free client and peer
//! ports and a temporary data directory, in a guard ([`Etcd`]) that kills
//! it on drop. It can be stopped and started again on the same ports and
//! data, as an outage would leave it; a [`Relay`] in front of it cuts one
//! instance off while the others keep it. Keys are read and written with
//! etcd's own client, `etcdctl` (package `etcd-client`): a client that is
//! not the one under test. `.ci/run` installs both; without them a test
//! skips, except under CI, where it fails.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;
use tokio::task::{AbortHandle, JoinHandle};

use super::backends::runtime;
use super::{DEADLINE, eventually};

/// How long one request of the test's client may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A running etcd member; killed on drop.
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd and waits until it answers; `None` (after a skip
    /// message) when etcd is not installed and this is not CI.
    pub fn start() -> Option<Etcd> {
        let present = binary().is_some() && which("etcdctl").is_some();
        if !crate::browser::tool_or_skip(
            "etcd and etcdctl",
            present,
            "apt-get install etcd-server etcd-client",
        ) {
            return None;
        }
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("a temporary directory can be created"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.run();
        Some(etcd)
    }

    /// Where clients reach it: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills it now: clients find nothing on its port until [`Etcd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data, and waits until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Starts it again on the same ports with its data gone: a new,
    /// empty etcd at revision 1 (as a cluster rebuilt from nothing).
    pub fn wipe(&mut self) {
        self.stop();
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).expect("the etcd data can be removed");
        self.run();
    }

    /// Puts `value` under `key`.
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", "--", key, value])
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
    }

    /// Every key under `prefix` with its value, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let listed = self
            .etcdctl(&["get", "--prefix", "--", prefix])
            .unwrap_or_else(|e| panic!("etcd get {prefix}: {e}"));
        // A key's line, then its value's (the fleet's values are one line).
        let lines: Vec<&str> = listed.lines().collect();
        lines
            .chunks(2)
            .map(|pair| (pair[0].to_string(), pair.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// Compacts its history up to its current revision: a watch that
    /// resumes from an older one is told its revision is gone.
    pub fn compact(&self) {
        let read = self
            .etcdctl(&["get", "/", "--write-out=json"])
            .unwrap_or_else(|e| panic!("etcd get /: {e}"));
        let read: serde_json::Value = serde_json::from_str(&read).expect("etcdctl's JSON");
        let revision = read["header"]["revision"]
            .as_i64()
            .expect("a revision in the header");
        self.etcdctl(&["compact", &revision.to_string()])
            .unwrap_or_else(|e| panic!("etcd compact {revision}: {e}"));
    }

    /// Runs `etcdctl` (API v3) with `args` against this etcd, each request
    /// bounded in time: its output, or what it said on failure.
    fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let timeout = format!("{}s", REQUEST_TIMEOUT.as_secs());
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg(format!("--dial-timeout={timeout}"))
            .arg(format!("--command-timeout={timeout}"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("etcdctl cannot run: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// Starts the process on this guard's ports and data, and waits until
    /// it answers a read.
    fn run(&mut self) {
        let binary = binary().expect("etcd is installed");
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::create(self.dir.path().join("etcd.log")).expect("the etcd log can be made");
        let child = Command::new(binary)
            .arg("--name=fleet-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=fleet-test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
        let answers = eventually(DEADLINE, || self.etcdctl(&["get", "/"]).is_ok());
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        assert!(
            answers,
            "etcd did not answer at {}:\n{log}",
            self.endpoint()
        );
    }
}

/// A TCP relay to an etcd that a test can cut (every connection closed,
/// new ones refused at once) and restore: one instance cut off while etcd
/// runs on for the others, as a network partition leaves it.
pub struct Relay {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay on a free loopback port to `etcd`.
    pub fn to(etcd: &Etcd) -> Relay {
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], etcd.client_port));
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a relay can listen");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let task = runtime().spawn({
            let (open, connections) = (Arc::clone(&open), Arc::clone(&connections));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let relayed = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    lock(&connections).push(relayed.abort_handle());
                }
            }
        });
        Relay {
            addr,
            open,
            connections,
            task,
        }
    }

    /// Where clients reach etcd through it: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The etcd binary on `PATH` (Debian puts it in `/usr/bin`).
fn binary() -> Option<PathBuf> {
    which("etcd")
}

/// Program `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
