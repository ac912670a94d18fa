//! The access log (SPEC 8, issue 10): one line per finished connection,
//! in text or JSON, with the fields SPEC 8 names; a file reopened on
//! SIGUSR1 for log rotation; `shutdown_delay` keeping the listeners open
//! after `/ready` turned 503.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, connect, connect_refused, echoes, eventually,
    http_get, read_until_closed, refused_address,
};

/// `web` over `backend`, `down` over nothing that listens, the access log
/// to `path` in `format`.
fn config(backend: SocketAddr, path: &Path, format: &str) -> String {
    format!(
        "[global]\naccess_log = \"{}\"\naccess_log_format = \"{format}\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{backend}\"]\n\n\
         [[listeners]]\nname = \"down\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n\
         [listeners.passive_check]\nenabled = false\n",
        path.display(),
        refused_address()
    )
}

/// The lines of the file at `path` once it has `count` of them.
fn lines(path: &Path, count: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        eventually(DEADLINE, || read().lines().count() >= count),
        "{} has {} lines, expected {count}:\n{}",
        path.display(),
        read().lines().count(),
        read()
    );
    read().lines().map(str::to_string).collect()
}

/// Two echoed connections to `web` (5 and 3 bytes each way) and one to
/// `down` (no backend): the client addresses, in order.
fn traffic(balancer: &Balancer) -> Vec<SocketAddr> {
    let mut clients = Vec::new();
    for message in [&b"hello"[..], b"abc"] {
        let mut client = connect(balancer.addr("web"));
        clients.push(client.local_addr().expect("an address"));
        assert_eq!(echoes(&mut client, message), Ok(()));
    }
    let mut refused = connect(balancer.addr("down"));
    clients.push(refused.local_addr().expect("an address"));
    assert!(read_until_closed(&mut refused, PROMPTLY).is_ok());
    clients
}

#[test]
fn json_lines_carry_exactly_the_keys_of_spec_8_one_per_connection() {
    let backend = Backend::echo();
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("access.json");
    let balancer = Balancer::start(&config(backend.addr(), &path, "json"), Format::Toml);
    let clients = traffic(&balancer);
    let lines = lines(&path, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    for record in &records {
        let mut keys: Vec<&str> = record
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "backend",
                "bytes_in",
                "bytes_out",
                "client",
                "duration_ms",
                "listener",
                "outcome",
                "time"
            ]
        );
        assert!(
            record["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{record}"
        );
    }
    // Lines are written when connections end, in that order here.
    let by_client = |client: SocketAddr| {
        records
            .iter()
            .find(|r| r["client"] == client.to_string())
            .unwrap_or_else(|| panic!("no line for {client}: {lines:?}"))
    };
    let first = by_client(clients[0]);
    assert_eq!(first["listener"], "web");
    assert_eq!(first["backend"], backend.addr().to_string());
    assert_eq!(
        (first["bytes_in"].clone(), first["bytes_out"].clone()),
        (5.into(), 5.into())
    );
    assert_eq!(first["outcome"], "ok");
    assert_eq!(by_client(clients[1])["bytes_in"], 3);
    let refused = by_client(clients[2]);
    assert_eq!(refused["listener"], "down");
    assert_eq!(refused["backend"], serde_json::Value::Null);
    assert_eq!(refused["outcome"], "no_backend");
    assert_eq!(
        (refused["bytes_in"].clone(), refused["bytes_out"].clone()),
        (0.into(), 0.into())
    );
    balancer.stop();
}

#[test]
fn text_lines_have_the_fields_in_order_and_sigusr1_reopens_the_file_for_rotation() {
    let backend = Backend::echo();
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("access.log");
    let balancer = Balancer::start(&config(backend.addr(), &path, "text"), Format::Toml);
    let clients = traffic(&balancer);
    let before = lines(&path, 3);
    let fields: Vec<&str> = before
        .iter()
        .find(|l| l.contains(&clients[0].to_string()))
        .expect("a line for the first client")
        .split(' ')
        .collect();
    // time listener client backend bytes_in bytes_out duration_ms outcome
    assert_eq!(fields.len(), 8, "{fields:?}");
    assert_eq!(
        fields[1..4],
        ["web", &clients[0].to_string(), &backend.addr().to_string()]
    );
    assert_eq!(fields[4..6], ["5", "5"]);
    assert_eq!(fields[7], "ok");
    assert!(
        before
            .iter()
            .any(|l| l.contains(" down ") && l.contains(" - 0 0 ") && l.ends_with(" no_backend")),
        "{before:?}"
    );

    // logrotate: move the file away, then SIGUSR1.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    balancer.signal(Signal::USR1);
    assert!(
        balancer.wait_for_log(PROMPTLY, |l| l.contains("reopening the access log")),
        "SIGUSR1 was not taken as a reopen"
    );
    let later = traffic(&balancer);
    let after = lines(&path, 3);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.iter().any(|l| l.contains(&later[0].to_string())));
    assert_eq!(
        std::fs::read_to_string(&rotated)
            .expect("the old file")
            .lines()
            .count(),
        3,
        "lines lost or misplaced"
    );
    balancer.stop();
}

#[test]
fn shutdown_delay_keeps_accepting_after_ready_turned_503_then_drains() {
    let backend = Backend::echo();
    let config = format!(
        "[global]\nshutdown_delay = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr()
    );
    let mut balancer = Balancer::start(&config, Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    let signalled = Instant::now();
    balancer.signal(Signal::TERM);
    assert!(
        eventually(PROMPTLY, || http_get(admin, "/ready")
            .is_ok_and(|r| r.status == 503)),
        "/ready did not turn 503 at once"
    );
    // Still accepting and relaying during the delay.
    if signalled.elapsed() < Duration::from_millis(1_500) {
        let mut client = connect(web);
        assert_eq!(echoes(&mut client, b"during the delay"), Ok(()));
    }
    assert!(
        eventually(DEADLINE, || connect_refused(web)),
        "never stopped accepting"
    );
    assert!(
        signalled.elapsed() >= Duration::from_millis(1_900),
        "stopped after {:?}",
        signalled.elapsed()
    );
    let status = balancer.wait_exit(DEADLINE);
    assert!(status.success(), "exit {status}");
}
