//! Health and the load-aware algorithms (issue 5), with the real binary:
//! active tcp and http checks, passive detection, slow start,
//! least_connections steering, two processes agreeing on Maglev, and the
//! bad health-check values refused with exit 2.
//!
//! Checks run every 100 ms here so state changes come quickly; every wait
//! is for a log line or a connection's answer, with a deadline.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, backend_name_via, backends_reached, check, connect,
    connect_from, count, debug_formatting_in, half_close, read_line, read_until_closed,
    refused_address,
};

/// The check interval of these tests.
const INTERVAL: Duration = Duration::from_millis(100);

/// Allowed on top of `fall * interval` for a down backend to be noticed: a
/// loaded two-core CI machine may run a check late.
const SLACK: Duration = Duration::from_secs(3);

/// A listener `web` using `algorithm` over `backends` (`address` or
/// `{ address, weight }` entries as written), with `tables` after.
fn config(algorithm: &str, backends: &[String], keys: &str, tables: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"{algorithm}\"\n\
         {keys}\nbackends = [{}]\n{tables}",
        backends.join(", ")
    )
}

fn quoted(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

/// A tcp health check every 100 ms with these `rise` and `fall`.
fn tcp_check(rise: u32, fall: u32) -> String {
    format!(
        "[listeners.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n\
         rise = {rise}\nfall = {fall}\n"
    )
}

const NO_PASSIVE: &str = "[listeners.passive_check]\nenabled = false\n";

/// Waits for the log line of `backend` of listener `web` changing state
/// with `reason`; panics with the output if it does not come in `within`.
fn wait_for_change(balancer: &Balancer, backend: SocketAddr, change: &str, within: Duration) {
    let line = format!("backend {backend} of listener web {change}");
    assert!(
        balancer.wait_for_log(within, |l| l.contains(&line)),
        "no {line:?} within {within:?}"
    );
}

/// Opens a connection to `addr`, reads the backend's greeting and keeps
/// the connection open: (name, stream).
fn hold(addr: SocketAddr) -> (String, TcpStream) {
    let mut stream = connect(addr);
    let name = read_line(&mut stream).expect("a backend greets");
    (name, stream)
}

/// Closes `stream` the way a client ends and waits until the balancer has
/// closed it too (so it no longer counts as open there).
fn close(mut stream: TcpStream) {
    half_close(&stream);
    read_until_closed(&mut stream, DEADLINE).expect("the balancer closes its side");
}

// === active checks ===

#[test]
fn a_stopped_backend_stops_getting_connections_within_fall_intervals_and_returns_after_rise_checks()
{
    let a = Backend::named("a");
    let b = Backend::named("b");
    let b_addr = b.addr();
    let text = config(
        "round_robin",
        &[quoted(a.addr()), quoted(b_addr)],
        "slow_start = \"0s\"",
        &format!("{}{NO_PASSIVE}", tcp_check(2, 3)),
    );
    let balancer = Balancer::start(&text, Format::Toml);
    let web = balancer.addr("web");
    let both = backends_reached(web, 4);
    assert_eq!((count(&both, "a"), count(&both, "b")), (2, 2), "{both:?}");

    let stopped = Instant::now();
    drop(b);
    wait_for_change(
        &balancer,
        b_addr,
        "is down: 3 failed checks",
        3 * INTERVAL + SLACK,
    );
    assert!(stopped.elapsed() <= 3 * INTERVAL + SLACK);
    assert_eq!(backends_reached(web, 10), vec!["a"; 10]);

    let _b = Backend::named_on(b_addr, "b").expect("b's address is free again");
    wait_for_change(&balancer, b_addr, "is up: 2 passed checks", DEADLINE);
    let back = backends_reached(web, 4);
    assert_eq!((count(&back, "a"), count(&back, "b")), (2, 2), "{back:?}");
    balancer.stop();
}

/// The `X-Backend` of a `GET /` through `addr`.
fn http_backend_via(addr: SocketAddr) -> String {
    let answer = crate::harness::http_get(addr, "/").expect("an answer through the balancer");
    answer.header("x-backend").unwrap_or_default().to_string()
}

#[test]
fn an_http_check_answered_with_the_wrong_status_marks_the_backend_down() {
    // b1 answers everyone; b2 only 127.0.0.2, so the checks get 403.
    let (_b1, b1) = Balancer::start_demo_backend("b1", &[]);
    let (_b2, b2) = Balancer::start_demo_backend("b2", &["--allow-from", "127.0.0.2/32"]);
    let check = "[listeners.health_check]\nkind = \"http\"\ninterval = \"100ms\"\n\
                 path = \"/health\"\nexpect_status = 200\nfall = 2\n";
    let text = config("round_robin", &[quoted(b1), quoted(b2)], "", check);
    let balancer = Balancer::start(&text, Format::Toml);
    wait_for_change(
        &balancer,
        b2,
        "is down: 2 failed checks: status 403, expected 200",
        DEADLINE,
    );
    for _ in 0..6 {
        assert_eq!(http_backend_via(balancer.addr("web")), "b1");
    }
    balancer.stop();
}

#[test]
fn http_checks_come_from_the_listeners_source_address() {
    // Both backends only answer 127.0.0.2, the listener's source address:
    // the checks pass and both stay up.
    let allow = ["--allow-from", "127.0.0.2/32"];
    let (_b1, b1) = Balancer::start_demo_backend("b1", &allow);
    let (_b2, b2) = Balancer::start_demo_backend("b2", &allow);
    let check = "[listeners.health_check]\nkind = \"http\"\ninterval = \"100ms\"\nfall = 1\n";
    let text = config(
        "round_robin",
        &[quoted(b1), quoted(b2)],
        "source_address = \"127.0.0.2\"",
        check,
    );
    let balancer = Balancer::start(&text, Format::Toml);
    let reached: Vec<String> = (0..20)
        .map(|_| http_backend_via(balancer.addr("web")))
        .collect();
    assert_eq!(
        (count(&reached, "b1"), count(&reached, "b2")),
        (10, 10),
        "{reached:?}"
    );
    assert!(
        !balancer.stderr().contains("is down"),
        "{}",
        balancer.stderr()
    );
    balancer.stop();
}

// === passive detection ===

#[test]
fn without_a_health_check_fall_failed_connects_mark_a_backend_down() {
    let a = Backend::named("a");
    let dead = refused_address();
    let passive = "[listeners.passive_check]\nfall = 2\nbackoff = \"1h\"\n";
    let text = config(
        "round_robin",
        &[quoted(dead), quoted(a.addr())],
        "",
        passive,
    );
    // At debug every failed connect is logged (at info they are throttled).
    let mut balancer = Balancer::spawn_with_config(&["--log-level", "debug"], &text, Format::Toml);
    balancer.wait_listening(&["web".to_string()]);
    // Every client reaches a: a failed connect moves on to it.
    assert_eq!(backends_reached(balancer.addr("web"), 10), vec!["a"; 10]);
    wait_for_change(
        &balancer,
        dead,
        "is down: 2 failed connects: connection refused",
        DEADLINE,
    );
    // Two failed connects, then no more attempts at it.
    let attempts = balancer
        .stderr()
        .lines()
        .filter(|l| l.contains("connect failed") && l.contains(&dead.to_string()))
        .count();
    assert_eq!(attempts, 2, "{}", balancer.stderr());
    balancer.stop();
}

#[test]
fn a_backend_down_by_failed_connects_is_tried_again_after_the_backoff() {
    let a = Backend::named("a");
    let flaky = refused_address();
    let passive = "[listeners.passive_check]\nfall = 1\nbackoff = \"200ms\"\n";
    let text = config(
        "round_robin",
        &[quoted(flaky), quoted(a.addr())],
        "slow_start = \"0s\"",
        passive,
    );
    let balancer = Balancer::start(&text, Format::Toml);
    let web = balancer.addr("web");
    assert_eq!(backend_name_via(web).expect("a answers"), "a");
    wait_for_change(&balancer, flaky, "is down: 1 failed connect", DEADLINE);

    let _back = Backend::named_on(flaky, "flaky").expect("the address is free");
    let deadline = Instant::now() + DEADLINE;
    while !backends_reached(web, 2).contains(&"flaky".to_string()) {
        assert!(
            Instant::now() < deadline,
            "flaky never got a connection again"
        );
    }
    wait_for_change(&balancer, flaky, "is up: a connect succeeded", DEADLINE);
    balancer.stop();
}

// === slow start ===

#[test]
fn a_recovered_backend_gets_visibly_fewer_connections_at_first_than_at_full_weight() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let b_addr = b.addr();
    // An hour-long ramp: b stays near its 10% start for the whole test.
    let text = config(
        "weighted_round_robin",
        &[quoted(a.addr()), quoted(b_addr)],
        "slow_start = \"1h\"",
        &format!("{}{NO_PASSIVE}", tcp_check(1, 1)),
    );
    let balancer = Balancer::start(&text, Format::Toml);
    let web = balancer.addr("web");
    let before = backends_reached(web, 100);
    assert_eq!(
        count(&before, "b"),
        50,
        "full weight: every other connection"
    );

    drop(b);
    wait_for_change(&balancer, b_addr, "is down", DEADLINE);
    let _b = Backend::named_on(b_addr, "b").expect("b's address is free again");
    wait_for_change(&balancer, b_addr, "is up", DEADLINE);
    let after = backends_reached(web, 110);
    // At 10% of its weight: about 10 in 110 instead of 55.
    let b_count = count(&after, "b");
    assert!((5..=15).contains(&b_count), "{b_count} of 110: {after:?}");
    balancer.stop();
}

// === least connections ===

#[test]
fn least_connections_steers_new_connections_away_from_backends_holding_long_ones() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let text = config(
        "least_connections",
        &[quoted(a.addr()), quoted(b.addr())],
        "",
        "",
    );
    let balancer = Balancer::start(&text, Format::Toml);
    let web = balancer.addr("web");
    // Ten long connections: idle backends take turns, five each.
    let held: Vec<(String, TcpStream)> = (0..10).map(|_| hold(web)).collect();
    let names: Vec<String> = held.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        (count(&names, "a"), count(&names, "b")),
        (5, 5),
        "{names:?}"
    );
    // b's clients leave; a keeps five.
    let mut kept = Vec::new();
    for (name, stream) in held {
        if name == "b" {
            close(stream);
        } else {
            kept.push(stream);
        }
    }
    // The next four all go to b, which has fewer open.
    let next: Vec<(String, TcpStream)> = (0..4).map(|_| hold(web)).collect();
    let next_names: Vec<&str> = next.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(next_names, ["b"; 4]);
    drop((kept, next));
    balancer.stop();
}

// === source_hash ===

/// The backend a client bound to `source` reaches through `addr`.
fn backend_for(source: Ipv4Addr, addr: SocketAddr) -> String {
    let mut stream = connect_from(source, addr);
    read_line(&mut stream).expect("a backend greets")
}

/// The digest after `marker` in `text` (`digest ` in check's summary,
/// `digest=` in the start-up log line).
fn digest_after(text: &str, marker: &str) -> Option<String> {
    let at = text.find("maglev table")?;
    let hex = text.get(at..)?.split(marker).nth(1)?;
    Some(hex.chars().take_while(char::is_ascii_hexdigit).collect())
}

#[test]
fn two_balancer_processes_with_one_config_send_every_client_to_the_same_backend() {
    let backends = Backend::named_each(&["a", "b", "c", "d"]);
    let list: Vec<String> = backends
        .iter()
        .zip([1, 1, 2, 1])
        .map(|(b, w)| format!("{{ address = \"{}\", weight = {w} }}", b.addr()))
        .collect();
    let text = config("source_hash", &list, "", "");
    let first = Balancer::start(&text, Format::Toml);
    let second = Balancer::start(&text, Format::Toml);

    let mut reached: HashMap<String, usize> = HashMap::new();
    for i in 0..200u32 {
        let source = Ipv4Addr::from(0x7f00_0000 + 0x0001_0000 + i * 257 + 2);
        let one = backend_for(source, first.addr("web"));
        let other = backend_for(source, second.addr("web"));
        assert_eq!(one, other, "client {source}");
        // The same client again: the same backend.
        assert_eq!(
            backend_for(source, first.addr("web")),
            one,
            "client {source}"
        );
        *reached.entry(one).or_default() += 1;
    }
    assert_eq!(reached.len(), 4, "every backend gets clients: {reached:?}");
    assert!(
        reached["c"] > reached["a"],
        "weight 2 gets more: {reached:?}"
    );

    let (d1, d2) = (
        digest_after(&first.stderr(), "digest="),
        digest_after(&second.stderr(), "digest="),
    );
    assert!(
        d1.as_ref().is_some_and(|d| d.len() == 16),
        "{}",
        first.stderr()
    );
    assert_eq!(d1, d2);
    let checked = check(&text, Format::Toml);
    assert_eq!(checked.code(), 0, "{}", checked.both());
    assert_eq!(
        digest_after(&checked.stdout, "digest "),
        d1,
        "{}",
        checked.stdout
    );
    first.stop();
    second.stop();
}

// === bad input ===

#[test]
fn bad_health_check_values_exit_2_naming_file_line_key_and_value() {
    let header = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                  backends = [\"127.0.0.1:8080\"]\n[listeners.health_check]\n";
    // Line 6 is the bad key.
    let cases = [
        ("kind = \"icmp\"", "kind", "\"icmp\""),
        ("interval = \"0s\"", "interval", "more than zero"),
        ("rise = 0", "rise", "0 is out of range"),
        ("fall = 0", "fall", "0 is out of range"),
        ("path = \"health\"", "path", "\"health\""),
        (
            "expect_status = 600",
            "expect_status",
            "600 is out of range",
        ),
        ("expect_status = 42", "expect_status", "42 is out of range"),
    ];
    let mut failures = Vec::new();
    for (line, key, value) in cases {
        let out = check(&format!("{header}{line}\n"), Format::Toml);
        let expected = [
            "error: balancer.toml:6: ",
            "listener \"web\"",
            &format!("key \"{key}\""),
            value,
        ];
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|e| !out.stderr.contains(**e))
            .collect();
        if out.code() != 2 || !missing.is_empty() || debug_formatting_in(&out.both()).is_some() {
            failures.push(format!(
                "{line}: exit {}, missing {missing:?}\n{}",
                out.code(),
                out.both()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_describes_health_settings_and_the_maglev_table() {
    let text = config(
        "source_hash",
        &[quoted(refused_address())],
        "slow_start = \"5s\"",
        "[listeners.health_check]\nkind = \"http\"\npath = \"/ready\"\n",
    );
    let out = check(&text, Format::Toml);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "health check: http GET /ready expecting 200 every 2s, timeout 1s, rise 2, fall 3",
        "passive check: down after 3 failed connects, tried again after 10s",
        "slow start: 5s",
        "maglev table of 65537 entries, digest ",
    ]);
}
