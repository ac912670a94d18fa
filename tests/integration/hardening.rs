//! Issue 16: what a careless or hostile operator broke, each case with the
//! outcome HAProxy or nginx users expect: a stderr nobody reads stalls
//! nothing, a refusing backend does not flood the log, running out of file
//! descriptors is not blamed on the backends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, connect, echoes, eventually, http_get,
    read_until_closed, refused_address, sample,
};

/// One listener `web` over `backends`, no passive detection (so a refusing
/// backend keeps being tried), and an admin port.
fn config(backends: &[SocketAddr], extra_global: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[global]\n{extra_global}\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [{}]\n\
         [listeners.passive_check]\nenabled = false\n",
        list.join(", ")
    )
}

/// Opens a client to `addr` and waits until the balancer closes it (no
/// backend): false if it stayed open past `within`.
fn closed_by_the_balancer(addr: SocketAddr, within: Duration) -> bool {
    let mut client = connect(addr);
    read_until_closed(&mut client, within).is_ok()
}

/// The value of one sample of `/metrics` at `admin`.
fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let answer = http_get(admin, "/metrics").ok()?;
    sample(&answer.body, name, labels)
}

#[test]
fn a_stderr_nobody_reads_stalls_neither_clients_nor_the_admin_port_nor_sigterm() {
    // Regression (issue 16 item 1): logging blocked in `write` on a
    // worker, and then every listener, the admin port and SIGTERM.
    let mut balancer = Balancer::spawn_with_config(
        &["--log-level", "debug"],
        &config(&[refused_address()], ""),
        Format::Toml,
    );
    balancer.wait_listening(&["web".to_string()]);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    balancer.pause_stderr();

    // Every client writes a debug line: far more than a pipe holds (64
    // KiB) and than the log's queue holds (16,384 lines), so lines must be
    // dropped, and counted, rather than waited for.
    let started = Instant::now();
    let budget = Duration::from_secs(60);
    let mut served = 0;
    while served < 20_000 && started.elapsed() < budget {
        assert!(
            closed_by_the_balancer(web, PROMPTLY),
            "client {served} was not served: the balancer stalled"
        );
        served += 1;
    }
    assert_eq!(served, 20_000, "only {served} clients within {budget:?}");
    let dropped = metric(admin, "balancer_log_lines_dropped_total", &[]);
    assert!(
        dropped.is_some_and(|n| n > 0.0),
        "dropped lines: {dropped:?}"
    );

    balancer.signal(Signal::TERM);
    let status = balancer.wait_exit(PROMPTLY);
    assert!(status.success(), "exit {status}");
    balancer.resume_stderr();
}

#[test]
fn a_backend_that_refuses_every_connect_is_logged_a_few_times_not_per_client() {
    // Regression (issue 16 item 2): each client wrote two info lines and a
    // warning, 55,000 lines in 3 s.
    let balancer = Balancer::start(
        &config(&[refused_address(), refused_address()], ""),
        Format::Toml,
    );
    let web = balancer.addr("web");
    for client in 0..500 {
        assert!(closed_by_the_balancer(web, PROMPTLY), "client {client}");
    }
    let output = balancer.stop();
    let count = |what: &str| output.stderr.lines().filter(|l| l.contains(what)).count();
    // One line per backend or listener, then one per second with the count
    // left out: a handful for a run of a few seconds, never one per client.
    let failed = count("connect failed");
    let unreachable = count("no backend could be reached");
    assert!((2..=40).contains(&failed), "{failed} connect failed lines");
    assert!(
        (1..=20).contains(&unreachable),
        "{unreachable} no-backend lines"
    );
    assert!(
        output.stderr.contains("left_out="),
        "the throttled lines do not say how many were left out:\n{}",
        output.stderr
    );
}

#[test]
fn running_out_of_file_descriptors_is_counted_as_local_and_never_marks_backends_down() {
    // Regression (issue 16 item 6): under `ulimit -n 64`, EMFILE on
    // connect marked both healthy backends down, flapping.
    let backends = [Backend::echo(), Backend::echo()];
    let addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    // Passive detection on (the default): a failure it saw would mark a
    // backend down after 3.
    // One worker: its accept loop takes every waiting client before any
    // of their tasks runs (with two, another worker may connect each
    // client to its backend while the loop accepts, and the accept then
    // runs out of descriptors first, with no connect left to fail).
    let config = config(&addrs, "workers = 1\nmax_connections = 1000")
        .replace("[listeners.passive_check]\nenabled = false\n", "");
    let mut balancer = Balancer::spawn_under_ulimit(64, &config, Format::Toml);
    balancer.wait_listening(&["web".to_string()]);
    let admin = balancer.wait_admin();
    assert!(
        balancer.wait_for_log(PROMPTLY, |l| l
            .contains("open files but ulimit -n allows 64")),
        "no warning at start that max_connections does not fit ulimit -n"
    );
    let web = balancer.addr("web");

    // Far more clients than 64 descriptors allow, each held open, all
    // waiting in the listen queue (the balancer stopped meanwhile), so
    // that it accepts them in one go until its descriptors run out, and
    // then their connects to the backends fail.
    balancer.signal(Signal::STOP);
    let held: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(web).ok())
        .collect();
    balancer.signal(Signal::CONT);
    assert!(
        eventually(DEADLINE, || balancer
            .stderr()
            .contains("out of resources on this machine")),
        "no connect failed on this machine:\n{}",
        balancer.stderr()
    );
    drop(held);

    // Once they are gone: both backends up, no failure held against them,
    // the local failures counted by their own reason, and a new client served.
    let up = |addr: SocketAddr| {
        let labels = [("listener", "web"), ("backend", &addr.to_string()[..])];
        metric(admin, "balancer_backend_up", &labels) == Some(1.0)
            && metric(admin, "balancer_connect_failures_total", &labels) == Some(0.0)
    };
    assert!(
        eventually(DEADLINE, || addrs.iter().all(|&a| up(a))),
        "a backend was blamed:\n{}",
        http_get(admin, "/metrics")
            .map(|r| r.body)
            .unwrap_or_default()
    );
    let local = metric(
        admin,
        "balancer_rejected_connections_total",
        &[("listener", "web"), ("reason", "local_resources")],
    );
    assert!(
        local.is_some_and(|n| n >= 1.0),
        "local_resources: {local:?}"
    );
    let mut client = connect(web);
    assert_eq!(echoes(&mut client, b"served again"), Ok(()));
    drop(client);
    balancer.stop();
}

/// One `GET path` to the admin port from `source`, answered in time: its
/// status line.
fn status_line_from(source: std::net::Ipv4Addr, admin: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut client = crate::harness::connect_from(source, admin);
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    client
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn admin_slowloris_from_one_address_neither_locks_out_others_nor_holds_its_connections() {
    // Regression (issue 16 item 3): 256 connections that sent a POST head
    // announcing 100 body bytes and 6 of them locked the admin port (and
    // /metrics) out indefinitely; 256 silent ones did so in 10 s rounds.
    use std::io::Write;
    let balancer = Balancer::start(&config(&[refused_address()], ""), Format::Toml);
    let admin = balancer.wait_admin();
    let stalled = b"POST /api/listeners/web/backends HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"add";
    let mut attack: Vec<std::net::TcpStream> = Vec::new();
    for i in 0..256 {
        let mut stream = connect(admin);
        if i % 2 == 0 {
            // Half stall in the body; the others never send a byte.
            let _ = stream.write_all(stalled);
        }
        attack.push(stream);
    }

    // Another client is served at once, /metrics included.
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(
        status_line_from(other, admin, "/metrics"),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_line_from(other, admin, "/api/status"),
        "HTTP/1.1 200 OK"
    );
    assert!(
        balancer.wait_for_log(PROMPTLY, |l| l.contains("WARN")
            && l.contains("admin connection closed")
            && l.contains("too many open from this client")),
        "turning the flood away was not logged as a warning"
    );

    // Every attacking connection is closed: at accept (over the cap per
    // client), or when its head or body did not arrive in time; a stalled
    // body is answered 408.
    let mut timed_out = 0;
    for (i, stream) in attack.iter_mut().enumerate() {
        let closed = read_until_closed(stream, DEADLINE);
        let Ok((answer, _)) = closed else {
            panic!("attacking connection {i} still open after {DEADLINE:?}");
        };
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert!(timed_out >= 1, "no stalled body was answered 408");
    assert_eq!(
        status_line_from(std::net::Ipv4Addr::LOCALHOST, admin, "/metrics"),
        "HTTP/1.1 200 OK",
        "the attacking address is served again once its connections are gone"
    );
    balancer.stop();
}
