//! Signals (SPEC 5): SIGTERM and SIGINT stop accepting at once, let open
//! connections finish for up to `drain_timeout`, then exit 0; SIGHUP does
//! not stop the balancer; a second SIGTERM cuts the drain short; SIGUSR1
//! and SIGUSR2 are logged and ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, connect, connect_refused, echoes, eventually,
    http_get, read_until_closed,
};

fn config(backend: SocketAddr, drain_timeout: &str) -> String {
    format!(
        "[global]\ndrain_timeout = \"{drain_timeout}\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{backend}\"]\n"
    )
}

#[test]
fn sigterm_refuses_new_clients_at_once_and_exits_0_when_the_open_connection_ends() {
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "30s"), Format::Toml);
    let addr = balancer.addr("web");
    let mut open = connect(addr);
    assert_eq!(echoes(&mut open, b"before"), Ok(()));

    balancer.signal(Signal::TERM);
    assert!(
        eventually(PROMPTLY, || connect_refused(addr)),
        "new connects are still accepted after SIGTERM"
    );

    assert_eq!(
        echoes(&mut open, b"during the drain"),
        Ok(()),
        "the open connection stopped relaying after SIGTERM"
    );
    assert_eq!(
        balancer.try_exit(),
        None,
        "exited while a connection was open"
    );

    drop(open);
    let status = balancer.wait_exit(DEADLINE);
    assert!(status.success(), "exit {status}");
}

#[test]
fn when_drain_timeout_runs_out_the_held_connection_is_closed_and_the_exit_is_0() {
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "1s"), Format::Toml);
    let mut held = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut held, b"hold"), Ok(()));

    let signalled = Instant::now();
    balancer.signal(Signal::TERM);
    let status = balancer.wait_exit(DEADLINE);
    let took = signalled.elapsed();
    assert!(status.success(), "exit {status}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, without waiting for drain_timeout"
    );

    let closed = read_until_closed(&mut held, PROMPTLY);
    assert!(
        matches!(closed, Ok((ref data, _)) if data.is_empty()),
        "the held client was not closed: {closed:?}"
    );
}

#[test]
fn sigint_with_no_open_connection_exits_0_at_once() {
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "30s"), Format::Toml);
    balancer.signal(Signal::INT);
    let status = balancer.wait_exit(PROMPTLY);
    assert!(status.success(), "exit {status}");
}

#[test]
fn sighup_is_logged_and_the_balancer_keeps_serving() {
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "30s"), Format::Toml);
    balancer.signal(Signal::HUP);
    let logged = balancer.wait_for_log(PROMPTLY, |line| {
        let line = line.to_ascii_lowercase();
        line.contains("sighup") || line.contains("hangup") || line.contains("reload")
    });
    assert!(logged, "SIGHUP was not logged");

    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"after SIGHUP"), Ok(()));
    assert_eq!(balancer.try_exit(), None);
    drop(client);
    balancer.stop();
}

#[test]
fn a_second_sigterm_during_the_drain_closes_what_is_open_and_exits_0_at_once() {
    // Regression (issue 16 item 14): the second signal was ignored, so
    // with a long drain_timeout only SIGKILL ended the process.
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "1h"), Format::Toml);
    let mut held = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut held, b"hold"), Ok(()));

    balancer.signal(Signal::TERM);
    assert!(
        balancer.wait_for_log(PROMPTLY, |line| line
            .contains("waiting for open connections")),
        "the drain did not start"
    );
    assert_eq!(
        balancer.try_exit(),
        None,
        "exited while a connection was open"
    );
    balancer.signal(Signal::TERM);
    let status = balancer.wait_exit(PROMPTLY);
    assert!(status.success(), "exit {status}");
    assert!(
        balancer.stderr().contains("second shutdown signal"),
        "the second signal was not logged:\n{}",
        balancer.stderr()
    );
    let closed = read_until_closed(&mut held, PROMPTLY);
    assert!(
        matches!(closed, Ok((ref data, _)) if data.is_empty()),
        "the held client was not closed: {closed:?}"
    );
}

#[test]
fn sigusr1_and_sigusr2_are_logged_and_the_balancer_keeps_serving() {
    // Regression (issue 16 item 15): their default action killed it.
    let backend = Backend::echo();
    let mut balancer = Balancer::start(&config(backend.addr(), "30s"), Format::Toml);
    for (signal, name) in [(Signal::USR1, "SIGUSR1"), (Signal::USR2, "SIGUSR2")] {
        balancer.signal(signal);
        assert!(
            balancer.wait_for_log(PROMPTLY, |line| line.contains(name)),
            "{name} was not logged"
        );
    }
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"after SIGUSR1 and SIGUSR2"), Ok(()));
    assert_eq!(balancer.try_exit(), None);
    drop(client);
    balancer.stop();
}

#[test]
fn ready_answers_503_from_sigterm_on_while_live_stays_200_through_the_drain() {
    let backend = Backend::echo();
    // `[admin]` after `[global]`, before the listeners.
    let config = config(backend.addr(), "30s").replace(
        "\n\n[[listeners]]",
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]",
    );
    let mut balancer = Balancer::start(&config, Format::Toml);
    let admin = balancer.wait_admin();
    let probe = |path: &str| {
        let answer = http_get(admin, path).expect("the admin port answers");
        (answer.status, answer.body.trim().to_string())
    };
    assert_eq!(probe("/ready"), (200, "ready".to_string()));
    assert_eq!(probe("/live"), (200, "live".to_string()));
    let mut held = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut held, b"hold"), Ok(()));

    balancer.signal(Signal::TERM);
    assert!(
        eventually(PROMPTLY, || probe("/ready").0 == 503),
        "/ready still answers 200 after SIGTERM"
    );
    assert_eq!(probe("/ready"), (503, "draining".to_string()));
    assert_eq!(probe("/live"), (200, "live".to_string()));
    assert_eq!(echoes(&mut held, b"still relayed"), Ok(()));
    drop(held);
    let status = balancer.wait_exit(DEADLINE);
    assert!(status.success(), "exit {status}");
}
