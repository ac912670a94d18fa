//! Signals (SPEC 5): SIGTERM and SIGINT stop accepting at once, let open
//! connections finish for up to `drain_timeout`, then exit 0; SIGHUP does
//! not stop the balancer; a second SIGTERM cuts the drain short; SIGUSR1
//! and SIGUSR2 are logged and ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, HttpBackend, PROMPTLY, connect, connect_refused, echoes,
    eventually, http_get, read_until_closed,
};
use crate::http::{Client, http_config};

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

#[test]
fn with_one_worker_one_thread_serves_http_clients_and_the_admin_then_drains() {
    // `workers = 1` runs everything on one thread (no work-stealing
    // scheduler): clients interleaved on one keep-alive connection each,
    // the admin port, then SIGTERM's drain, which closes the idle ones.
    let backend = HttpBackend::start("a");
    let config = format!(
        "[global]\nworkers = 1\ndrain_timeout = \"30s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{}",
        http_config(&[&backend], "")
    );
    let mut balancer = Balancer::start(&config, Format::Toml);
    let addr = balancer.addr("web");
    let get = |path: String| format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for round in 0..3 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(get(format!("/{i}/{round}")).as_bytes());
        }
        for client in &mut clients {
            assert_eq!(client.answer().status, 200);
        }
    }
    assert_eq!(backend.seen().len(), 9);
    let admin = balancer.wait_admin();
    let status = http_get(admin, "/api/status").expect("the admin port answers");
    assert_eq!(status.status, 200);

    balancer.signal(Signal::TERM);
    assert!(
        eventually(PROMPTLY, || connect_refused(addr)),
        "new connects are still accepted after SIGTERM"
    );
    // Idle between requests, each keep-alive client is closed at once,
    // with nothing sent.
    for client in &clients {
        let (received, _) = read_until_closed(&mut client.try_clone_stream(), DEADLINE)
            .expect("an idle keep-alive connection is closed by the drain");
        assert_eq!(received, b"", "bytes sent on a closing idle connection");
    }
    let exit = balancer.wait_exit(DEADLINE);
    assert!(exit.success(), "exit {exit}");
}
