//! Which backend each connection gets (SPEC 4): round robin exact, smooth
//! weighted round robin, random, refused backends skipped, all backends
//! down, and the per-listener connection cap.

use std::net::SocketAddr;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, assert_closed_without_data, backend_name_via,
    backends_reached, connect, count, echoes, eventually, refused_address,
};

/// A TOML config with one listener `web` using `algorithm` over
/// `backends` (`address` or `(address, weight)`), plus `extra` lines.
fn listener(algorithm: &str, backends: &[(SocketAddr, u32)], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(addr, weight)| format!("{{ address = \"{addr}\", weight = {weight} }}"))
        .collect();
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"{algorithm}\"\n{extra}\nbackends = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn round_robin_gives_k_backends_exactly_n_over_k_connections_in_config_order() {
    let backends = Backend::named_each(&["a", "b", "c"]);
    let weighted: Vec<_> = backends.iter().map(|b| (b.addr(), 1)).collect();
    let balancer = Balancer::start(&listener("round_robin", &weighted, ""), Format::Toml);

    let names = backends_reached(balancer.addr("web"), 12);
    for name in ["a", "b", "c"] {
        assert_eq!(count(&names, name), 4, "{names:?}");
    }
    let successor = |name: &str| match name {
        "a" => "b",
        "b" => "c",
        _ => "a",
    };
    for pair in names.windows(2) {
        assert_eq!(
            pair[1],
            successor(&pair[0]),
            "not in config order: {names:?}"
        );
    }
    balancer.stop();
}

#[test]
fn weighted_round_robin_3_1_2_1_hands_out_a_c_b_a_d_c_a_and_repeats() {
    let backends = Backend::named_each(&["a", "b", "c", "d"]);
    let weighted: Vec<_> = backends
        .iter()
        .zip([3, 1, 2, 1])
        .map(|(b, w)| (b.addr(), w))
        .collect();
    let balancer = Balancer::start(
        &listener("weighted_round_robin", &weighted, ""),
        Format::Toml,
    );

    let names = backends_reached(balancer.addr("web"), 14).concat();
    assert_eq!(names, "acbadcaacbadca");
    balancer.stop();
}

#[test]
fn random_reaches_every_backend() {
    let backends = Backend::named_each(&["a", "b"]);
    let weighted: Vec<_> = backends.iter().map(|b| (b.addr(), 1)).collect();
    let balancer = Balancer::start(&listener("random", &weighted, ""), Format::Toml);

    // The chance that 40 fair draws all pick one of two is 2^-39.
    let names = backends_reached(balancer.addr("web"), 40);
    for name in ["a", "b"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} never picked: {names:?}"
        );
    }
    balancer.stop();
}

#[test]
fn a_refused_backend_is_skipped_and_every_client_is_served() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let backends = [
        (refused_address(), 1),
        (a.addr(), 1),
        (refused_address(), 1),
        (b.addr(), 1),
    ];
    let balancer = Balancer::start(
        &listener("round_robin", &backends, "retries = 3"),
        Format::Toml,
    );

    let names = backends_reached(balancer.addr("web"), 8);
    assert!(names.iter().all(|n| n == "a" || n == "b"), "{names:?}");
    balancer.stop();
}

#[test]
fn with_every_backend_down_the_client_is_closed_and_later_clients_are_served() {
    let down = refused_address();
    let backends = [(down, 1), (refused_address(), 1)];
    let balancer = Balancer::start(
        &listener(
            "round_robin",
            &backends,
            "retries = 3\nconnect_timeout = \"1s\"",
        ),
        Format::Toml,
    );
    let addr = balancer.addr("web");

    let mut client = connect(addr);
    assert_closed_without_data(&mut client, PROMPTLY);

    let revived = Backend::named_on(down, "revived")
        .unwrap_or_else(|e| panic!("bind the refused address {down} again: {e}"));
    let served = eventually(DEADLINE, || {
        backend_name_via(addr).is_ok_and(|name| name == "revived")
    });
    assert!(served, "no client was served after a backend came back");
    assert!(revived.accepts() > 0);
    balancer.stop();
}

#[test]
fn over_max_connections_a_new_client_is_closed_at_once_until_a_slot_frees() {
    let backend = Backend::echo();
    let balancer = Balancer::start(
        &listener("round_robin", &[(backend.addr(), 1)], "max_connections = 2"),
        Format::Toml,
    );
    let addr = balancer.addr("web");

    let mut first = connect(addr);
    let mut second = connect(addr);
    for (i, client) in [&mut first, &mut second].into_iter().enumerate() {
        assert_eq!(echoes(client, b"hi"), Ok(()), "client {i}");
    }

    let mut third = connect(addr);
    assert_closed_without_data(&mut third, PROMPTLY);

    drop(first);
    let served = eventually(DEADLINE, || {
        let mut client = connect(addr);
        echoes(&mut client, b"again").is_ok()
    });
    assert!(served, "the slot of a closed connection was not given back");
    assert_eq!(echoes(&mut second, b"still"), Ok(()));
    drop(second);
    balancer.stop();
}

#[test]
fn the_global_max_connections_caps_all_listeners_together() {
    let backend = Backend::echo();
    let config = format!(
        "[global]\nmax_connections = 1\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{0}\"]\n\n\
         [[listeners]]\nname = \"api\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{0}\"]\n",
        backend.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);

    let mut first = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut first, b"one"), Ok(()));

    let mut over = connect(balancer.addr("api"));
    assert_closed_without_data(&mut over, PROMPTLY);

    drop(first);
    let api = balancer.addr("api");
    let served = eventually(DEADLINE, || {
        let mut client = connect(api);
        echoes(&mut client, b"two").is_ok()
    });
    assert!(served, "the process-wide slot was not given back");
    balancer.stop();
}

#[test]
fn ten_thousand_backends_start_and_balance() {
    // Issue 17: the structures that make a pick O(log n) must also start
    // and serve at this size. One server on every loopback address (127.x
    // is all this machine), 10,000 backend addresses that reach it.
    let server = Backend::named_on("0.0.0.0:0".parse().expect("an address"), "any")
        .expect("bind the server");
    let port = server.addr().port();
    let backends: Vec<String> = (0..10_000)
        .map(|i| {
            let weight = 1 + i % 2;
            format!(
                "{{ address = \"127.0.{}.{}:{port}\", weight = {weight} }}",
                1 + i / 250,
                1 + i % 250
            )
        })
        .collect();
    for algorithm in ["least_connections", "weighted_round_robin", "source_hash"] {
        let config = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\n\
             listen = \"127.0.0.1:0\"\nalgorithm = \"{algorithm}\"\nbackends = [{}]\n",
            backends.join(", ")
        );
        let balancer = Balancer::start(&config, Format::Toml);
        let admin = balancer.wait_admin();
        let reached = backends_reached(balancer.addr("web"), 200);
        assert_eq!(count(&reached, "any"), 200, "{algorithm}");
        let status = crate::harness::http_get(admin, "/api/status").expect("status");
        let status: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
        let used = status["listeners"][0]["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .filter(|b| b["total_connections"].as_u64().unwrap_or(0) > 0)
            .count();
        match algorithm {
            // Idle backends take turns: every connection a new one.
            "least_connections" => assert_eq!(used, 200, "{algorithm}"),
            "weighted_round_robin" => assert!(used >= 100, "{algorithm}: {used}"),
            // One client address: one backend.
            _ => assert_eq!(used, 1, "{algorithm}"),
        }
        balancer.stop();
    }
}
