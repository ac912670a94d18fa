//! A real DNS server for the discovery tests: Debian's `dnsmasq` on
//! `127.0.0.1` and a free port, answering A records from a hosts file
//! (read again on SIGHUP) and SRV records from its config, with a TTL of
//! one second, forwarding nothing. In a guard ([`Dnsmasq`]) that kills it
//! on drop. `.ci/run` installs it (`dnsmasq-base`); without it a test
//! skips, except under CI, where it fails.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tempfile::TempDir;

use super::{DEADLINE, eventually};

/// A running dnsmasq; killed on drop.
pub struct Dnsmasq {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq answering `hosts` (hosts-file lines, `IP NAME`) and
    /// `srv` (`--srv-host` values: `_service._proto.name,target,port,priority,weight`)
    /// for names under `.test`, and waits until it listens; `None` (after a
    /// skip message) when dnsmasq is not installed and this is not CI.
    pub fn start(hosts: &str, srv: &[&str]) -> Option<Dnsmasq> {
        let binary = dnsmasq_binary();
        let present = binary.is_some();
        if !crate::browser::tool_or_skip("dnsmasq", present, "apt-get install dnsmasq-base") {
            return None;
        }
        let binary = binary?;
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        std::fs::write(dir.path().join("hosts"), hosts).expect("the hosts file can be written");
        let mut conf = String::from("local=/test/\n");
        for line in srv {
            conf.push_str(&format!("srv-host={line}\n"));
        }
        std::fs::write(dir.path().join("dnsmasq.conf"), conf).expect("the config can be written");
        let port = free_udp_and_tcp_port();
        let child = Command::new(binary)
            .arg("--no-daemon")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!(
                "--addn-hosts={}",
                dir.path().join("hosts").display()
            ))
            .arg(format!(
                "--conf-file={}",
                dir.path().join("dnsmasq.conf").display()
            ))
            .arg("--local-ttl=1")
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg(format!("--port={port}"))
            .arg("--pid-file=")
            // Root drops to nobody otherwise, who cannot read the
            // temporary hosts file again on SIGHUP.
            .arg("--user=root")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dnsmasq = Dnsmasq {
            child: Some(child),
            addr,
            dir,
        };
        let listening = eventually(DEADLINE, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(listening, "dnsmasq did not listen on {addr}");
        Some(dnsmasq)
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the hosts file with `hosts` and has dnsmasq read it again
    /// (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        let path: PathBuf = self.dir.path().join("hosts");
        std::fs::write(path, hosts).expect("the hosts file can be rewritten");
        if let Some(child) = &self.child {
            let raw = i32::try_from(child.id()).expect("a pid fits in i32");
            let pid = Pid::from_raw(raw).expect("a child's pid is positive");
            rustix::process::kill_process(pid, Signal::HUP).expect("dnsmasq can be signalled");
        }
    }

    /// Stops it now (the DNS server goes away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dnsmasq binary: on `PATH`, or in `/usr/sbin` (not on every
/// user's `PATH`).
fn dnsmasq_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
}

/// A port free for both UDP and TCP on 127.0.0.1 now (dnsmasq takes both).
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket can be bound");
        let port = udp
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1")
}
