//! tcp mode relaying (SPEC 4): bytes unchanged both ways, half-close in
//! either direction, idle timeout, and the `allow` list.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Backend, Balancer, Closed, DEADLINE, Format, PROMPTLY, assert_closed_without_data, connect,
    connect_from, echoes, eventually, half_close, pseudo_random_bytes, read_until_closed,
};

/// A one-listener TOML config named `web` over `backend`, with `extra`
/// lines in the listener.
fn one_listener(backend: SocketAddr, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{extra}\nbackends = [\"{backend}\"]\n"
    )
}

#[test]
fn eight_mib_of_random_bytes_cross_unchanged_both_ways() {
    const LEN: usize = 8 * 1024 * 1024;
    let backend = Backend::echo();
    let balancer = Balancer::start(&one_listener(backend.addr(), ""), Format::Toml);
    let mut client = connect(balancer.addr("web"));
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");

    let sent = pseudo_random_bytes(LEN, 0x9E37_79B9_7F4A_7C15);
    let mut writer = client.try_clone().expect("clone the client stream");
    let to_send = sent.clone();
    // Write on a thread while this one reads, so neither side's buffers
    // fill and stall the other.
    let writing = thread::spawn(move || {
        writer.write_all(&to_send)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut received = Vec::with_capacity(LEN);
    let read = client.read_to_end(&mut received);
    let written = writing.join().expect("the writer thread ends");

    assert!(written.is_ok(), "writing failed: {written:?}");
    assert!(read.is_ok(), "reading failed: {read:?}");
    assert_eq!(received.len(), LEN);
    let first_difference = sent.iter().zip(&received).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the echoed bytes differ from what was sent"
    );
    balancer.stop();
}

#[test]
fn a_client_half_close_reaches_the_backend_and_its_reply_still_arrives() {
    let backend = Backend::reply_after_eof();
    let balancer = Balancer::start(&one_listener(backend.addr(), ""), Format::Toml);
    let mut client = connect(balancer.addr("web"));
    client
        .write_all(b"hello world")
        .expect("write to the balancer");
    half_close(&client);
    let closed = read_until_closed(&mut client, PROMPTLY);
    assert_eq!(closed, Ok((b"received 11 bytes\n".to_vec(), Closed::Eof)));
    balancer.stop();
}

#[test]
fn a_backend_half_close_reaches_the_client_which_can_still_send() {
    let backend = Backend::greet_then_half_close("bye\n");
    let balancer = Balancer::start(&one_listener(backend.addr(), ""), Format::Toml);
    let mut client = connect(balancer.addr("web"));
    let closed = read_until_closed(&mut client, PROMPTLY);
    assert_eq!(
        closed,
        Ok((b"bye\n".to_vec(), Closed::Eof)),
        "the client should see the greeting, then EOF"
    );
    client
        .write_all(b"still here")
        .expect("the client's direction stays open");
    let arrived = eventually(PROMPTLY, || backend.received() == b"still here");
    assert!(
        arrived,
        "the backend received {:?}",
        String::from_utf8_lossy(&backend.received())
    );
    drop(client);
    balancer.stop();
}

#[test]
fn an_idle_connection_is_closed_after_idle_timeout() {
    let backend = Backend::echo();
    let config = one_listener(backend.addr(), "idle_timeout = \"500ms\"");
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"x"), Ok(()));

    let idle_since = Instant::now();
    let closed = read_until_closed(&mut client, Duration::from_secs(5));
    assert!(
        matches!(closed, Ok((ref data, _)) if data.is_empty()),
        "the idle connection was not closed: {closed:?}"
    );
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(400),
        "closed after {idle:?}, before idle_timeout"
    );
    balancer.stop();
}

#[test]
fn a_busy_connection_outlives_idle_timeout() {
    let backend = Backend::echo();
    let config = one_listener(backend.addr(), "idle_timeout = \"500ms\"");
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = connect(balancer.addr("web"));
    let started = Instant::now();
    let mut exchanges = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            echoes(&mut client, b"ping"),
            Ok(()),
            "a busy connection was cut after {:?} and {exchanges} exchanges",
            started.elapsed()
        );
        exchanges += 1;
        // Pacing, not synchronization: traffic every 100 ms keeps the
        // connection under the 500 ms idle timeout for three times as long.
        thread::sleep(Duration::from_millis(100));
    }
    balancer.stop();
}

#[test]
fn the_allow_list_lets_in_listed_clients_and_closes_the_rest_at_accept() {
    let backend = Backend::echo();
    let config = one_listener(backend.addr(), "allow = [\"127.0.0.2/32\"]");
    let balancer = Balancer::start(&config, Format::Toml);
    let addr = balancer.addr("web");

    let mut stranger = connect_from(Ipv4Addr::LOCALHOST, addr);
    assert_closed_without_data(&mut stranger, PROMPTLY);
    assert_eq!(
        backend.accepts(),
        0,
        "a client outside `allow` reached the backend"
    );

    let mut friend = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
    assert_eq!(echoes(&mut friend, b"let me in"), Ok(()));
    assert_eq!(backend.accepts(), 1);
    drop(friend);
    balancer.stop();
}

#[test]
fn connections_to_backends_come_from_source_address() {
    let backend = Backend::echo();
    let config = one_listener(backend.addr(), "source_address = \"127.0.0.2\"");
    let balancer = Balancer::start(&config, Format::Toml);
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"from where?"), Ok(()));
    let sources: Vec<_> = backend.peers().iter().map(SocketAddr::ip).collect();
    assert_eq!(sources, [Ipv4Addr::new(127, 0, 0, 2)]);
    drop(client);
    balancer.stop();
}

/// The balancer's open file descriptors, by kind (`socket`, `pipe`, ...).
fn open_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the balancer's fd table")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| {
            let target = target.to_string_lossy().into_owned();
            target.split(':').next().unwrap_or_default().to_string()
        })
        .collect()
}

/// "12 socket, 4 pipe, ...": counts by kind, for failure messages.
fn fd_summary(fds: &[String]) -> String {
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for kind in fds {
        *kinds.entry(kind).or_default() += 1;
    }
    let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    parts.join(", ")
}

/// One connection that moves `payload` each way and closes.
fn echo_through(addr: SocketAddr, payload: &[u8]) {
    let mut client = connect(addr);
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    assert_eq!(echoes(&mut client, payload), Ok(()));
}

#[test]
fn a_thousand_bulk_connections_leak_no_file_descriptors() {
    // 64 KiB each way through 4 KiB buffers: every connection turns bulk
    // and moves most of its bytes by splice through pooled pipes.
    let backend = Backend::echo();
    let config = format!(
        "[global]\nworkers = 1\nbuffer_size = 4096\n{}",
        one_listener(backend.addr(), "")
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let addr = balancer.addr("web");
    let pid = balancer.pid();
    let payload = pseudo_random_bytes(64 * 1024, 7);

    // Warm up, so the pools hold what sequential connections need.
    for _ in 0..20 {
        echo_through(addr, &payload);
    }
    let settled = |limit: usize| eventually(PROMPTLY, || open_fds(pid).len() <= limit);
    let baseline = open_fds(pid);
    #[cfg(target_os = "linux")]
    assert!(
        baseline.iter().any(|kind| kind == "pipe"),
        "no pooled pipe after bulk traffic: splice was not used ({})",
        fd_summary(&baseline)
    );
    assert!(
        settled(baseline.len()),
        "connections still open after warm-up"
    );

    for _ in 0..1000 {
        echo_through(addr, &payload);
    }
    assert!(
        settled(baseline.len()),
        "fds open after 1,000 connections: {}; before: {}",
        fd_summary(&open_fds(pid)),
        fd_summary(&baseline)
    );
    balancer.stop();
}
