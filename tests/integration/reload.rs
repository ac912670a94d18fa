//! Hot reload (SPEC 5, 7; issue 10): SIGHUP and `POST /api/reload` read the
//! config file again and apply it as a diff by listener name, keeping
//! sockets, backends' state and open connections; a bad file changes
//! nothing.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, backends_reached, connect, connect_refused,
    count, echoes, eventually, http_get, http_request, sample,
};

/// The admin table every config here has.
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n";

/// A `[[listeners]]` table: `name` on a free port (or `listen`), round
/// robin over `backends` (weight 1), no slow start (exact splits at once).
fn listener(name: &str, listen: &str, backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "\n[[listeners]]\nname = \"{name}\"\nlisten = \"{listen}\"\nslow_start = \"0s\"\n\
         backends = [{}]\n",
        list.join(", ")
    )
}

/// `/api/status` of the admin at `admin`, as JSON.
fn status(admin: SocketAddr) -> serde_json::Value {
    let answer = http_get(admin, "/api/status").expect("the admin port answers");
    serde_json::from_str(&answer.body).expect("the status is JSON")
}

/// The status of backend `address` of listener `name`, if it is listed.
fn backend_status(admin: SocketAddr, name: &str, address: SocketAddr) -> Option<serde_json::Value> {
    let status = status(admin);
    status["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address.to_string())
        .cloned()
}

/// Reloads by SIGHUP and waits until the generation is `generation`.
fn sighup_until_generation(balancer: &Balancer, admin: SocketAddr, generation: u64) {
    balancer.signal(Signal::HUP);
    assert!(
        eventually(DEADLINE, || status(admin)["generation"] == generation),
        "generation {generation} never came:\n{}",
        balancer.stderr()
    );
}

/// A metric of `/metrics` at `admin`.
fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(&http_get(admin, "/metrics").ok()?.body, name, labels)
}

#[test]
fn sighup_applies_the_new_file_as_a_diff_by_listener_name() {
    let [a, b, c, d] = ["a", "b", "c", "d"].map(Backend::named);
    let first = format!(
        "{ADMIN}{}{}",
        listener("web", "127.0.0.1:0", &[a.addr(), b.addr()]),
        listener("old", "127.0.0.1:0", &[c.addr()])
    );
    let mut balancer = Balancer::start(&first, Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    let old = balancer.addr("old");
    assert_eq!(count(&backends_reached(web, 4), "b"), 2);
    let mut held = connect(old);
    assert_eq!(
        crate::harness::read_line(&mut held).ok().as_deref(),
        Some("c")
    );

    // web keeps b, loses a, gains d, on the same (port 0 = kept) socket;
    // old goes; api comes.
    let second = format!(
        "{ADMIN}{}{}",
        listener("web", "127.0.0.1:0", &[b.addr(), d.addr()]),
        listener("api", "127.0.0.1:0", &[c.addr()])
    );
    balancer.rewrite_config(&second);
    sighup_until_generation(&balancer, admin, 2);
    balancer.wait_listening(&["api".to_string()]);

    assert_eq!(balancer.addr("web"), web, "web kept its socket");
    // a, gone from the file, is drained and then removed; its removal
    // builds web's balancer afresh (round robin from the first backend
    // again): counted after it, the turns are exact.
    assert!(
        eventually(DEADLINE, || backend_status(admin, "web", a.addr())
            .is_none()),
        "a was never removed"
    );
    let reached = backends_reached(web, 4);
    assert_eq!(
        (count(&reached, "b"), count(&reached, "d")),
        (2, 2),
        "{reached:?}"
    );
    let kept = backend_status(admin, "web", b.addr()).expect("b stays");
    assert_eq!(kept["total_connections"], 4, "b kept its counters: {kept}");
    assert!(connect_refused(old), "the removed listener still accepts");
    assert_eq!(
        echoes(&mut held, b"still relayed"),
        Ok(()),
        "its open connection ended"
    );
    assert_eq!(backends_reached(balancer.addr("api"), 1), ["c"]);
    let labels = [("result", "ok")];
    assert_eq!(
        metric(admin, "balancer_config_reloads_total", &labels),
        Some(1.0)
    );
    assert_eq!(metric(admin, "balancer_config_generation", &[]), Some(2.0));
    assert_eq!(status(admin)["last_reload"]["result"], "ok");
    drop(held);
    balancer.stop();
}

#[test]
fn a_bad_file_or_an_address_in_use_changes_nothing_and_is_answered_400() {
    let a = Backend::named("a");
    let first = format!("{ADMIN}{}", listener("web", "127.0.0.1:0", &[a.addr()]));
    let balancer = Balancer::start(&first, Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    let reload = |token: &str| {
        let auth = format!("Bearer {token}");
        http_request(
            admin,
            "POST",
            "/api/reload",
            &[("Authorization", &auth)],
            None,
            DEADLINE,
        )
        .expect("the admin port answers")
    };

    // Without the token: refused.
    assert_eq!(reload("wrong").status, 401);
    // A file with two problems: both named, nothing changed.
    balancer.rewrite_config(
        &first.replace("slow_start = \"0s\"", "slow_start = \"soon\"\nretries = -1"),
    );
    let refused = reload("t0ken");
    assert_eq!(refused.status, 400, "{}", refused.body);
    let error: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON");
    let error = error["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("slow_start") && error.contains("retries"),
        "{error}"
    );
    // A new listener on an address in use: the whole reload fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let in_use = taken.local_addr().expect("address").to_string();
    balancer.rewrite_config(&format!("{first}{}", listener("api", &in_use, &[a.addr()])));
    let refused = reload("t0ken");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("address already in use"),
        "{}",
        refused.body
    );

    assert_eq!(status(admin)["generation"], 1);
    assert_eq!(status(admin)["last_reload"]["result"], "error");
    assert_eq!(
        metric(
            admin,
            "balancer_config_reloads_total",
            &[("result", "error")]
        ),
        Some(2.0)
    );
    assert!(
        balancer.stderr().contains("config reload failed"),
        "not logged"
    );
    assert_eq!(
        backends_reached(web, 2),
        ["a", "a"],
        "web still serves as before"
    );

    // The good file again: generation 2.
    balancer.rewrite_config(&first);
    let applied = reload("t0ken");
    assert_eq!(
        (applied.status, applied.body.trim()),
        (200, r#"{"generation":2}"#)
    );
    balancer.stop();
}

#[test]
fn twenty_reloads_under_load_refuse_or_break_nothing_and_a_long_transfer_arrives_intact() {
    let echo = Backend::echo();
    let other = Backend::echo();
    let config =
        |backends: &[SocketAddr]| format!("{ADMIN}{}", listener("web", "127.0.0.1:0", backends));
    let balancer = Balancer::start(&config(&[echo.addr()]), Format::Toml);
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");

    // 8 MiB through one connection while the reloads happen: written in
    // chunks, read back, compared by hash.
    let payload: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut long = connect(web);
    long.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut reader = long.try_clone().expect("clone");
    let expected = payload.clone();
    let transfer = thread::spawn(move || {
        let mut back = vec![0u8; expected.len()];
        reader.read_exact(&mut back).map(|()| back == expected)
    });
    let writer = thread::spawn(move || {
        for chunk in payload.chunks(64 << 10) {
            long.write_all(chunk)?;
            thread::sleep(Duration::from_millis(2));
        }
        Ok::<_, std::io::Error>(long)
    });

    // A bounded client loop: each connection must be served and echo.
    let clients = thread::spawn(move || {
        let started = Instant::now();
        let mut failures = Vec::new();
        for i in 0..1_000 {
            if started.elapsed() > Duration::from_secs(60) {
                failures.push(format!("out of time after {i} clients"));
                break;
            }
            match std::net::TcpStream::connect_timeout(&web, PROMPTLY) {
                Err(e) => failures.push(format!("client {i}: refused: {e}")),
                Ok(mut client) => {
                    let _ = client.set_read_timeout(Some(PROMPTLY));
                    if let Err(e) = echoes(&mut client, format!("client {i}").as_bytes()) {
                        failures.push(format!("client {i}: {e}"));
                    }
                }
            }
        }
        failures
    });

    for generation in 2..=21u64 {
        // Alternate between one and two backends: every reload changes
        // the listener, never its address.
        let backends = if generation % 2 == 0 {
            vec![echo.addr(), other.addr()]
        } else {
            vec![echo.addr()]
        };
        balancer.rewrite_config(&config(&backends));
        sighup_until_generation(&balancer, admin, generation);
    }
    let failures = clients.join().expect("the client loop ran");
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    let long = writer
        .join()
        .expect("the writer ran")
        .expect("the transfer was written");
    assert_eq!(
        transfer.join().expect("the reader ran").ok(),
        Some(true),
        "8 MiB arrived changed or cut"
    );
    drop(long);
    balancer.stop();
}

#[test]
fn the_seeds_setup_cfg_reloads_too() {
    let [a, b] = ["a", "b"].map(Backend::named);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let ini = |weights: (u32, u32)| {
        format!(
            "[options]\nalgorithm=weighted_round_robin\nadmin=127.0.0.1:0\n\n[mappings]\n\
             127.0.0.1:{port}={}:{},{}:{}\n",
            a.addr(),
            weights.0,
            b.addr(),
            weights.1
        )
    };
    let balancer = Balancer::start(&ini((1, 1)), Format::Ini);
    let admin = balancer.wait_admin();
    let web = balancer.addr(&format!("127.0.0.1:{port}"));
    assert_eq!(count(&backends_reached(web, 4), "a"), 2);
    balancer.rewrite_config(&ini((3, 1)));
    sighup_until_generation(&balancer, admin, 2);
    assert_eq!(
        count(&backends_reached(web, 8), "a"),
        6,
        "the new weights apply"
    );
    let _ = PROMPTLY;
    balancer.stop();
}

#[test]
fn changes_made_through_the_admin_api_give_way_to_the_file_and_are_logged() {
    let [a, b, c] = ["a", "b", "c"].map(Backend::named);
    let file = format!(
        "{ADMIN}{}",
        listener("web", "127.0.0.1:0", &[a.addr(), b.addr()])
    );
    let balancer = Balancer::start(&file, Format::Toml);
    let admin = balancer.wait_admin();
    let auth = [
        ("Authorization", "Bearer t0ken"),
        ("Content-Type", "application/json"),
    ];
    let call = |method: &str, path: &str, body: &str| {
        http_request(admin, method, path, &auth, Some(body.as_bytes()), DEADLINE)
            .expect("the admin port answers")
            .status
    };
    let added = format!(r#"{{"address": "{}"}}"#, c.addr());
    assert_eq!(call("POST", "/api/listeners/web/backends", &added), 201);
    let a_path = format!("/api/listeners/web/backends/{}", a.addr());
    assert_eq!(call("PATCH", &a_path, r#"{"weight": 5}"#), 200);
    let b_path = format!("/api/listeners/web/backends/{}", b.addr());
    assert_eq!(call("PATCH", &b_path, r#"{"state": "draining"}"#), 200);

    assert_eq!(call("POST", "/api/reload", ""), 200);
    let a_now = backend_status(admin, "web", a.addr()).expect("a stays");
    let b_now = backend_status(admin, "web", b.addr()).expect("b stays");
    assert_eq!(a_now["weight"], 1, "{a_now}");
    assert_eq!(b_now["state"], "up", "{b_now}");
    assert!(
        eventually(DEADLINE, || backend_status(admin, "web", c.addr())
            .is_none()),
        "the backend added through the API is still there"
    );
    for dropped in [
        format!("backend {} (added) is removed", c.addr()),
        format!("backend {} weight 5 is 1 again", a.addr()),
        format!("backend {} (draining) is up again", b.addr()),
    ] {
        assert!(
            balancer.stderr().contains(&dropped),
            "not logged: {dropped}\n{}",
            balancer.stderr()
        );
    }
    balancer.stop();
}

#[test]
fn a_listener_whose_address_changes_moves_and_keeps_its_backends_state() {
    let a = Backend::named("a");
    let first = format!("{ADMIN}{}", listener("web", "127.0.0.1:0", &[a.addr()]));
    let mut balancer = Balancer::start(&first, Format::Toml);
    let admin = balancer.wait_admin();
    let before = balancer.addr("web");
    assert_eq!(backends_reached(before, 3), ["a"; 3]);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    balancer.rewrite_config(&format!(
        "{ADMIN}{}",
        listener("web", &free.to_string(), &[a.addr()])
    ));
    sighup_until_generation(&balancer, admin, 2);
    balancer.wait_listening_on(&[free]);
    assert!(connect_refused(before), "the old address still accepts");
    assert_eq!(backends_reached(free, 1), ["a"]);
    let a_now = backend_status(admin, "web", a.addr()).expect("a stays");
    assert_eq!(
        a_now["total_connections"], 4,
        "a kept its counters: {a_now}"
    );
    balancer.stop();
}
