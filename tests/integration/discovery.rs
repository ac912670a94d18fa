//! DNS discovery (issue 13, SPEC 10) against a real DNS server: dnsmasq on
//! loopback (`harness::Dnsmasq`), real backends on `127.0.0.x` addresses,
//! real bytes. A records found and balanced over, a record added and one
//! removed (its open connection finishing first), the DNS server gone
//! (the last good set serves on, the failures counted), health checks and
//! Maglev over a discovered set, SRV weights shaping weighted round robin,
//! reloads, admin changes refused with 409, and the config errors.
//!
//! dnsmasq answers with a TTL of one second, so the balancer resolves
//! about every second (`min_interval`'s default); every wait is a
//! condition polled against a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    Backend, Balancer, DEADLINE, Dnsmasq, Format, HttpResponse, admin_call, backend_name_via,
    backends_reached, check, count, echoes, eventually, read_line, sample,
};

// === Helpers ===

/// How long a change of records may take to reach the balancer: dnsmasq
/// re-reads its hosts file at once, and the TTL (1s) plus jitter bound
/// the next resolution; a failed one takes up to the query timeouts.
const RESOLVES_WITHIN: Duration = Duration::from_secs(15);

/// Named backends on `127.0.0.2`, `127.0.0.3`, ... that all listen on one
/// port (A records carry no port: `host:port` gives every backend the
/// same one); the port and the backends.
fn backends_on_one_port(names: &[&str]) -> (u16, Vec<Backend>) {
    for _ in 0..50 {
        let first = Backend::named_on(ip_of(0, 0), names[0]).expect("bind a backend");
        let port = first.addr().port();
        let rest: Result<Vec<Backend>, _> = names[1..]
            .iter()
            .enumerate()
            .map(|(i, name)| Backend::named_on(ip_of(i + 1, port), name))
            .collect();
        if let Ok(rest) = rest {
            let mut all = vec![first];
            all.extend(rest);
            return (port, all);
        }
    }
    panic!("no port free on 127.0.0.2 and up")
}

/// `127.0.0.{2 + index}:port`.
fn ip_of(index: usize, port: u16) -> SocketAddr {
    let last = u8::try_from(2 + index).expect("a few backends");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
}

/// A config with an admin port and one listener `web` discovering `dns`
/// through `resolver`, with no slow start (shares are exact at once).
fn config(algorithm: &str, dns: &str, resolver: SocketAddr) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"{algorithm}\"\n\
         slow_start = \"0s\"\n\
         [listeners.discovery]\ndns = \"{dns}\"\nresolvers = [\"{resolver}\"]\n"
    )
}

/// A running balancer with its admin address.
struct Running {
    balancer: Balancer,
    admin: SocketAddr,
}

impl Running {
    fn start(config: &str) -> Running {
        let balancer = Balancer::start(config, Format::Toml);
        let admin = balancer.wait_admin();
        Running { balancer, admin }
    }

    fn web(&self) -> SocketAddr {
        self.balancer.addr("web")
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        admin_call(self.admin, method, path, body)
    }

    /// Listener `web` in `/api/status`.
    fn web_status(&self) -> Value {
        let answer = self.request("GET", "/api/status", None);
        let status: Value = serde_json::from_str(&answer.body).expect("status is JSON");
        status["listeners"][0].clone()
    }

    /// `web`'s backends in `/api/status`: address, state and whether it
    /// is being removed.
    fn backends(&self) -> Vec<(String, String, bool)> {
        let web = self.web_status();
        web["backends"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|b| {
                        (
                            b["address"].as_str().unwrap_or_default().to_string(),
                            b["state"].as_str().unwrap_or_default().to_string(),
                            b["removing"].as_bool().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The addresses of `web`'s backends, in status order.
    fn addresses(&self) -> Vec<String> {
        self.backends().into_iter().map(|(a, _, _)| a).collect()
    }

    /// Waits until `web`'s backends are exactly `wanted` (any order).
    fn wait_backends(&self, wanted: &[String]) {
        let mut wanted = wanted.to_vec();
        wanted.sort();
        let reached = eventually(RESOLVES_WITHIN, || {
            let mut now = self.addresses();
            now.sort();
            now == wanted
        });
        assert!(
            reached,
            "backends {:?}, wanted {wanted:?}:\n{}",
            self.addresses(),
            self.balancer.output()
        );
    }

    /// `balancer_discovery_resolutions_total{listener="web",result}`.
    fn resolutions(&self, result: &str) -> f64 {
        let metrics = self.request("GET", "/metrics", None);
        let labels = [("listener", "web"), ("result", result)];
        sample(
            &metrics.body,
            "balancer_discovery_resolutions_total",
            &labels,
        )
        .unwrap_or(0.0)
    }
}

// === A records ===

#[test]
fn discovery_balances_over_a_records_and_follows_records_added_and_removed() {
    let (port, backends) = backends_on_one_port(&["a", "b", "c"]);
    let [a, b, c] = [0, 1, 2].map(|i| backends[i].addr().to_string());
    let hosts_ab = "127.0.0.2 web.test\n127.0.0.3 web.test\n";
    let Some(dns) = Dnsmasq::start(hosts_ab, &[]) else {
        return;
    };
    let running = Running::start(&config(
        "round_robin",
        &format!("web.test:{port}"),
        dns.addr(),
    ));
    running.wait_backends(&[a.clone(), b.clone()]);
    let names = backends_reached(running.web(), 4);
    assert_eq!(
        (count(&names, "a"), count(&names, "b")),
        (2, 2),
        "{names:?}"
    );
    let web = running.web_status();
    assert_eq!(web["discovery"]["dns"], format!("web.test:{port}"));
    assert_eq!(web["discovery"]["records"], "A/AAAA");
    assert_eq!(web["discovery"]["last_result"], "ok");
    assert!(web["discovery"]["next_resolution"].is_string(), "{web}");

    // A record added: a backend, reached by real connections.
    dns.set_hosts(&format!("{hosts_ab}127.0.0.4 web.test\n"));
    running.wait_backends(&[a.clone(), b.clone(), c.clone()]);
    let names = backends_reached(running.web(), 6);
    assert_eq!(count(&names, "c"), 2, "{names:?}");

    // A connection open to b while its record goes.
    let mut to_b = (0..6)
        .map(|_| {
            let mut stream = TcpStream::connect(running.web()).expect("connect to web");
            stream
                .set_read_timeout(Some(DEADLINE))
                .expect("set a timeout");
            let name = read_line(&mut stream).expect("a greeting");
            (name, stream)
        })
        .find(|(name, _)| name == "b")
        .map(|(_, stream)| stream)
        .expect("round robin reaches b within six connections");
    dns.set_hosts("127.0.0.2 web.test\n127.0.0.4 web.test\n");
    let draining = eventually(RESOLVES_WITHIN, || {
        running
            .backends()
            .iter()
            .any(|(address, state, removing)| *address == b && state == "draining" && *removing)
    });
    assert!(draining, "b is not draining: {:?}", running.backends());
    let names = backends_reached(running.web(), 6);
    assert_eq!(count(&names, "b"), 0, "a draining backend got {names:?}");
    assert_eq!(echoes(&mut to_b, b"still here"), Ok(()));
    drop(to_b);
    running.wait_backends(&[a.clone(), c.clone()]);
    assert_eq!(
        running.resolutions("error") + running.resolutions("timeout"),
        0.0
    );
}

#[test]
fn a_dns_server_that_stops_leaves_the_last_good_set_serving_and_counts_the_failures() {
    let (port, backends) = backends_on_one_port(&["a", "b"]);
    let addresses: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let Some(mut dns) = Dnsmasq::start("127.0.0.2 web.test\n127.0.0.3 web.test\n", &[]) else {
        return;
    };
    let running = Running::start(&config(
        "round_robin",
        &format!("web.test:{port}"),
        dns.addr(),
    ));
    running.wait_backends(&addresses);
    dns.stop();
    let counted = eventually(RESOLVES_WITHIN, || {
        running.resolutions("error") + running.resolutions("timeout") >= 2.0
    });
    assert!(
        counted,
        "no failed resolutions counted:\n{}",
        running.balancer.output()
    );
    let web = running.web_status();
    let last = web["discovery"]["last_result"].as_str().unwrap_or_default();
    assert!(matches!(last, "error" | "timeout"), "{web}");
    assert!(web["discovery"]["last_error"].is_string(), "{web}");
    assert_eq!(running.addresses().len(), 2);
    let names = backends_reached(running.web(), 4);
    assert_eq!(
        (count(&names, "a"), count(&names, "b")),
        (2, 2),
        "{names:?}"
    );
    // Logged once for the streak, in words.
    let output = running.balancer.output();
    let warned = output.matches("discovery failed").count();
    assert_eq!(warned, 1, "{output}");
    crate::harness::assert_no_debug_formatting("the log", &output);
}

#[test]
fn health_checks_judge_discovered_backends_and_their_verdict_outlives_resolutions() {
    let (port, backends) = backends_on_one_port(&["a"]);
    let a = backends[0].addr().to_string();
    // 127.0.0.3 has a record but nothing listening there.
    let dead = ip_of(1, port).to_string();
    let Some(dns) = Dnsmasq::start("127.0.0.2 web.test\n127.0.0.3 web.test\n", &[]) else {
        return;
    };
    let with_checks = format!(
        "{}[listeners.health_check]\ninterval = \"100ms\"\ntimeout = \"500ms\"\n\
         rise = 1\nfall = 1\n",
        config("round_robin", &format!("web.test:{port}"), dns.addr())
    );
    let running = Running::start(&with_checks);
    running.wait_backends(&[a.clone(), dead.clone()]);
    let state_of = |address: &str| {
        running
            .backends()
            .into_iter()
            .find(|(a, _, _)| a == address)
            .map(|(_, state, _)| state)
    };
    let down = eventually(RESOLVES_WITHIN, || {
        state_of(&dead).as_deref() == Some("down")
    });
    assert!(down, "{:?}", running.backends());
    let names = backends_reached(running.web(), 4);
    assert_eq!(count(&names, "a"), 4, "{names:?}");
    // Later resolutions bring the same records: the verdict and the
    // counters stay.
    let ok_before = running.resolutions("ok");
    let resolved = eventually(RESOLVES_WITHIN, || {
        running.resolutions("ok") >= ok_before + 2.0
    });
    assert!(resolved, "no further resolutions");
    assert_eq!(state_of(&dead).as_deref(), Some("down"));
    let web = running.web_status();
    let total = web["backends"]
        .as_array()
        .and_then(|list| list.iter().find(|b| b["address"] == a.as_str()))
        .and_then(|b| b["total_connections"].as_u64());
    assert_eq!(total, Some(4), "{web}");
}

#[test]
fn source_hash_builds_its_maglev_table_from_the_discovered_set() {
    let (port, backends) = backends_on_one_port(&["a", "b"]);
    let addresses: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let Some(dns) = Dnsmasq::start("127.0.0.2 web.test\n", &[]) else {
        return;
    };
    let running = Running::start(&config(
        "source_hash",
        &format!("web.test:{port}"),
        dns.addr(),
    ));
    running.wait_backends(&addresses[..1]);
    assert_eq!(backends_reached(running.web(), 3), ["a", "a", "a"]);
    dns.set_hosts("127.0.0.2 web.test\n127.0.0.3 web.test\n");
    running.wait_backends(&addresses);
    // One client, one backend, whichever the new table gives it.
    let names = backends_reached(running.web(), 4);
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
}

// === SRV records ===

#[test]
fn srv_weights_shape_the_weighted_round_robin_shares() {
    let (port, _backends) = backends_on_one_port(&["a", "b", "c"]);
    let hosts = "127.0.0.2 a.test\n127.0.0.3 b.test\n127.0.0.4 c.test\n";
    let srv = [
        format!("_echo._tcp.web.test,a.test,{port},0,3"),
        format!("_echo._tcp.web.test,b.test,{port},0,1"),
        // Weight 0 counts as 1.
        format!("_echo._tcp.web.test,c.test,{port},0,0"),
        // A higher priority value: a fallback, not a backend.
        "_echo._tcp.web.test,a.test,1,5,9".to_string(),
    ];
    let srv: Vec<&str> = srv.iter().map(String::as_str).collect();
    let Some(dns) = Dnsmasq::start(hosts, &srv) else {
        return;
    };
    let running = Running::start(&config(
        "weighted_round_robin",
        "_echo._tcp.web.test",
        dns.addr(),
    ));
    let named = |host: &str| format!("{host}:{port}");
    running.wait_backends(&[named("a.test"), named("b.test"), named("c.test")]);
    let web = running.web_status();
    assert_eq!(web["discovery"]["records"], "SRV");
    let weights: Vec<(String, u64)> = web["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap_or_default().to_string(),
                b["weight"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(weights.contains(&(named("a.test"), 3)), "{weights:?}");
    assert!(weights.contains(&(named("c.test"), 1)), "{weights:?}");
    let names = backends_reached(running.web(), 10);
    let shares = [count(&names, "a"), count(&names, "b"), count(&names, "c")];
    assert_eq!(shares, [6, 2, 2], "{names:?}");
}

// === Reload ===

#[test]
fn a_reload_keeps_the_discovered_set_and_restarts_discovery_only_when_it_changed() {
    let (port, backends) = backends_on_one_port(&["a", "b", "c"]);
    let [a, b, c] = [0, 1, 2].map(|i| backends[i].addr().to_string());
    let hosts = "127.0.0.2 web.test\n127.0.0.3 web.test\n127.0.0.4 other.test\n";
    let Some(dns) = Dnsmasq::start(hosts, &[]) else {
        return;
    };
    let first = config("round_robin", &format!("web.test:{port}"), dns.addr());
    let running = Running::start(&first);
    running.wait_backends(&[a.clone(), b.clone()]);
    let reload = |config: &str| {
        running.balancer.rewrite_config(config);
        let answer = running.request("POST", "/api/reload", None);
        assert_eq!(answer.status, 200, "{}", answer.body);
    };

    // Another algorithm, the same discovery: the set stays, the task runs on.
    reload(&first.replace("round_robin", "least_connections"));
    assert_eq!(running.web_status()["algorithm"], "least_connections");
    let mut now = running.addresses();
    now.sort();
    assert_eq!(now, [a.clone(), b.clone()]);
    let output = running.balancer.output();
    assert_eq!(output.matches("discovery started").count(), 1, "{output}");
    assert!(!output.contains("admin API"), "{output}");

    // Another name: the new records replace the set (the old drain away).
    reload(&config(
        "round_robin",
        &format!("other.test:{port}"),
        dns.addr(),
    ));
    running.wait_backends(std::slice::from_ref(&c));
    assert_eq!(
        running.web_status()["discovery"]["dns"],
        format!("other.test:{port}")
    );

    // Back to a static list: discovery stops, the admin API may change it.
    let fixed = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\n\
         listen = \"127.0.0.1:0\"\nbackends = [\"{a}\"]\n"
    );
    reload(&fixed);
    running.wait_backends(std::slice::from_ref(&a));
    assert!(running.web_status()["discovery"].is_null());
    let body = format!(r#"{{"address":"{b}"}}"#);
    let added = running.request("POST", "/api/listeners/web/backends", Some(&body));
    assert_eq!(added.status, 201, "{}", added.body);
}

// === Admin API and start without records ===

#[test]
fn admin_changes_to_a_discovered_listener_are_refused_with_409_and_no_records_means_no_backend() {
    // No DNS server answers here: the listener starts without backends.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let running = Running::start(&config(
        "round_robin",
        "web.test:8080",
        silent.local_addr().expect("an address"),
    ));
    assert!(running.addresses().is_empty());
    assert!(
        backend_name_via(running.web()).is_err(),
        "a listener without backends served a client"
    );
    let calls = [
        (
            "POST",
            "/api/listeners/web/backends",
            Some(r#"{"address":"127.0.0.1:1"}"#),
        ),
        (
            "PATCH",
            "/api/listeners/web/backends/127.0.0.2:8080",
            Some(r#"{"weight":2}"#),
        ),
        ("DELETE", "/api/listeners/web/backends/127.0.0.2:8080", None),
    ];
    for (method, path, body) in calls {
        let answer = running.request(method, path, body);
        assert_eq!(answer.status, 409, "{method} {path}: {}", answer.body);
        let error: Value = serde_json::from_str(&answer.body).expect("a JSON error");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("found by DNS") && message.contains("web.test:8080"),
            "{message}"
        );
    }
}

// === Config errors ===

#[test]
fn backends_with_discovery_and_a_bad_dns_value_are_config_errors_naming_the_line() {
    let both = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                backends = [\"127.0.0.1:8080\"]\n\
                [listeners.discovery]\ndns = \"web.test:80\"\n";
    let out = check(both, Format::Toml);
    assert_eq!(out.code(), 2, "{}", out.both());
    assert!(
        out.stderr.contains(
            "balancer.toml:4: listener \"web\": key \"backends\": backends and \
             [listeners.discovery] cannot both be set"
        ),
        "{}",
        out.stderr
    );
    let bad = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
               [listeners.discovery]\ndns = \"web.test\"\n";
    let out = check(bad, Format::Toml);
    assert_eq!(out.code(), 2, "{}", out.both());
    assert!(
        out.stderr.contains(
            "balancer.toml:5: listener \"web\": [listeners.discovery]: key \"dns\": \
             \"web.test\" is not a name to discover"
        ),
        "{}",
        out.stderr
    );
    let good = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                [listeners.discovery]\ndns = \"_http._tcp.web.test\"\n\
                resolvers = [\"127.0.0.1:5353\"]\n";
    let out = check(good, Format::Toml);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "backends found by DNS",
        "discovery: SRV records of _http._tcp.web.test through 127.0.0.1:5353",
    ]);
}
