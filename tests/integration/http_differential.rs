//! The smuggling table of `http_smuggling` sent through HAProxy (Debian's
//! package, `mode http`) and through the balancer, each in front of its
//! own recording [`HttpBackend`] (issue 11): what reaches the backends
//! must not differ except the headers each proxy adds; where one is more
//! lenient or stricter than the other and the RFC allows both, the table
//! row says so (`Row::haproxy`).
//!
//! HAProxy is started by the test on a free loopback port with a config
//! file in a temporary directory and stopped by it. The test is skipped
//! (with a message saying so) only when no `haproxy` binary can be found;
//! `.ci/run` installs it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

use crate::harness::{DEADLINE, HttpBackend, PROMPTLY, Seen, eventually};
use crate::http_smuggling::{MAX_HEADER_BYTES, ROW_WITHIN, balancer_for, run_row, table};

/// The `haproxy` binary: on `PATH`, or where Debian puts it.
fn haproxy_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"));
    on_path
        .chain([PathBuf::from("/usr/sbin/haproxy")])
        .find(|candidate| candidate.is_file())
}

/// A running HAProxy in `mode http` in front of one backend; stopped
/// (killed and reaped) on drop.
struct HaProxy {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl HaProxy {
    /// Starts `binary` on a free loopback port in front of `backend`, with
    /// settings as close to the balancer's in `http_smuggling` as HAProxy
    /// has: `option forwardfor`, pooled server connections, a 1 s
    /// `timeout http-request`, and a request head limit of
    /// `MAX_HEADER_BYTES` (`tune.bufsize` less `tune.maxrewrite`).
    fn start(binary: &PathBuf, backend: SocketAddr) -> HaProxy {
        // A port that was free a moment ago; HAProxy exits if it is taken
        // meanwhile, and the test fails saying so.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = format!(
            "global\n    maxconn 200\n    tune.bufsize {}\n    tune.maxrewrite 1024\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n\
             timeout server 5s\n    timeout http-request 1s\n    timeout http-keep-alive 1s\n\n\
             frontend web\n    bind {addr}\n    option forwardfor\n    default_backend backends\n\n\
             backend backends\n    http-reuse always\n    server a {backend}\n",
            MAX_HEADER_BYTES + 1024
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).expect("write the HAProxy config");
        let log = dir.path().join("haproxy.log");
        let output = std::fs::File::create(&log).expect("create HAProxy's log");
        let mut child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("share the log file"))
            .stderr(output)
            .spawn()
            .expect("HAProxy starts");
        let listening = eventually(DEADLINE, || {
            matches!(child.try_wait(), Ok(None))
                && TcpStream::connect_timeout(&addr, PROMPTLY).is_ok()
        });
        if !listening {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "HAProxy did not listen on {addr}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        HaProxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The headers each proxy adds, left out when comparing what the backends
/// got: the balancer's forwarding headers, HAProxy's `X-Forwarded-For`.
const ADDED: [&str; 3] = ["x-forwarded-for", "forwarded", "x-forwarded-proto"];

/// A request as a backend got it, without what the proxy in front adds and
/// without framing (bodies are compared decoded).
fn essence(seen: &Seen) -> (String, String, Vec<(String, String)>, Vec<u8>, bool) {
    let headers = seen
        .headers
        .iter()
        .filter(|(n, _)| {
            !ADDED.contains(&n.as_str())
                && !matches!(
                    n.as_str(),
                    "transfer-encoding" | "content-length" | "connection"
                )
        })
        .cloned()
        .collect();
    (
        seen.method.clone(),
        seen.target.clone(),
        headers,
        seen.body.clone(),
        seen.bad,
    )
}

#[test]
fn haproxy_and_the_balancer_pass_the_same_requests_of_the_smuggling_table() {
    let Some(binary) = haproxy_binary() else {
        eprintln!(
            "SKIPPED: no haproxy binary on PATH or at /usr/sbin/haproxy \
             (apt-get install haproxy; .ci/run installs it)"
        );
        return;
    };
    let ours = HttpBackend::start("a");
    let theirs = HttpBackend::start("a");
    let balancer = balancer_for(&ours);
    let haproxy = HaProxy::start(&binary, theirs.addr());
    let mut problems = Vec::new();
    for (i, row) in table().iter().enumerate() {
        let by_balancer = run_row(row, balancer.addr("web"), &ours, ROW_WITHIN, i);
        let by_haproxy = run_row(row, haproxy.addr, &theirs, ROW_WITHIN, i);
        eprintln!(
            "{}\n  balancer: {}\n  haproxy:  {}",
            row.name,
            by_balancer.describe(),
            by_haproxy.describe()
        );
        if !row
            .balancer_expects()
            .iter()
            .any(|e| by_balancer.matches(e))
        {
            problems.push(format!(
                "{}: the balancer did {}; the table expects {:?}",
                row.name,
                by_balancer.describe(),
                row.balancer_expects()
            ));
        }
        if !row.haproxy_expects().iter().any(|e| by_haproxy.matches(e)) {
            problems.push(format!(
                "{}: HAProxy did {}; the table expects {:?}",
                row.name,
                by_haproxy.describe(),
                row.haproxy_expects()
            ));
        }
        let smuggled = |s: &Seen| s.target.contains("smuggled");
        if by_haproxy.reached.iter().any(smuggled) || by_balancer.reached.iter().any(smuggled) {
            problems.push(format!(
                "{}: a smuggled request reached a backend",
                row.name
            ));
        }
        // Whatever each answered, what reached the backends is the same,
        // apart from what each proxy adds.
        let a: Vec<_> = by_balancer.reached.iter().map(essence).collect();
        let b: Vec<_> = by_haproxy.reached.iter().map(essence).collect();
        let same = a == b;
        let noted = row.haproxy.is_some();
        if !same && !noted {
            problems.push(format!(
                "{}: the backends got different requests:\n  balancer: {a:?}\n  haproxy:  {b:?}",
                row.name
            ));
        }
    }
    drop(haproxy);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
