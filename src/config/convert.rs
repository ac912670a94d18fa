//! The model back to native TOML text: what `balancer convert setup.cfg`
//! prints.
//!
//! Every key is written, defaults included, so the output documents what the
//! INI file meant. Durations are written by [`format_duration`], in the
//! largest of the units (`h`, `m`, `s`, `ms`) that states them exactly. A
//! backend of weight 1 is a bare string, others a table.
//! Backends keep their address as written (`localhost:8084`), so a host name
//! is resolved again when the TOML is loaded. The output loads back into an
//! equal [`Config`]: `parse(&to_toml(&c), FileFormat::Toml, _) == Ok(c)`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    AccessLogFormat, AccessLogTarget, Admin, BackendSpec, Config, Discovery, Fleet, Global,
    HealthCheck, Listener, ModeSettings, TcpSettings, format_duration,
};

/// TOML text that loads back into an equal `Config`.
pub fn to_toml(config: &Config) -> String {
    let mut out = String::new();
    out.push_str("# balancer configuration, native TOML format (see `balancer --help-config`)\n\n");
    global(&mut out, &config.global);
    if let Some(a) = &config.admin {
        out.push('\n');
        admin(&mut out, a);
    }
    for listener in &config.listeners {
        out.push('\n');
        self::listener(&mut out, listener);
    }
    if let Some(f) = &config.fleet {
        out.push('\n');
        fleet(&mut out, f);
    }
    out
}

/// `[fleet]`, every key written.
fn fleet(out: &mut String, f: &Fleet) {
    let _ = writeln!(out, "[fleet]");
    let endpoints: Vec<String> = f.etcd.iter().map(|e| string(e)).collect();
    let _ = writeln!(out, "etcd = [{}]", endpoints.join(", "));
    let _ = writeln!(out, "prefix = {}", string(&f.prefix));
}

fn global(out: &mut String, g: &Global) {
    let _ = writeln!(out, "[global]");
    let _ = writeln!(out, "workers = {}", g.workers);
    let _ = writeln!(out, "buffer_size = {}", g.buffer_size);
    let _ = writeln!(out, "drain_timeout = {}", duration(g.drain_timeout));
    let _ = writeln!(out, "max_connections = {}", g.max_connections);
    let _ = writeln!(out, "shutdown_delay = {}", duration(g.shutdown_delay));
    let target = match &g.access_log {
        None => "off".to_string(),
        Some(AccessLogTarget::Stderr) => "stderr".to_string(),
        Some(AccessLogTarget::Stdout) => "stdout".to_string(),
        Some(AccessLogTarget::File(path)) => path.display().to_string(),
    };
    let _ = writeln!(out, "access_log = {}", string(&target));
    let format = match g.access_log_format {
        AccessLogFormat::Text => "text",
        AccessLogFormat::Json => "json",
    };
    let _ = writeln!(out, "access_log_format = {}", string(format));
}

fn admin(out: &mut String, a: &Admin) {
    let _ = writeln!(out, "[admin]");
    let _ = writeln!(out, "listen = {}", string(&a.listen.to_string()));
    if let Some(token) = &a.token {
        let _ = writeln!(out, "token = {}", string(token));
    }
    if !a.allowed_hosts.is_empty() {
        let names: Vec<String> = a.allowed_hosts.iter().map(|h| string(h)).collect();
        let _ = writeln!(out, "allowed_hosts = [{}]", names.join(", "));
    }
}

fn listener(out: &mut String, l: &Listener) {
    let _ = writeln!(out, "[[listeners]]");
    let _ = writeln!(out, "name = {}", string(&l.name));
    let _ = writeln!(out, "listen = {}", string(&l.listen.to_string()));
    let _ = writeln!(out, "mode = {}", string(l.mode().name()));
    let _ = writeln!(out, "algorithm = {}", string(l.algorithm.name()));
    let _ = writeln!(out, "connect_timeout = {}", duration(l.connect_timeout));
    let _ = writeln!(out, "idle_timeout = {}", duration(l.idle_timeout));
    let _ = writeln!(out, "retries = {}", l.retries);
    if let Some(source) = l.source_address {
        let _ = writeln!(out, "source_address = {}", string(&source.to_string()));
    }
    if let ModeSettings::Tcp(TcpSettings {
        proxy_protocol: Some(version),
        ..
    }) = l.mode
    {
        let _ = writeln!(out, "proxy_protocol = {}", string(version.name()));
    }
    if !l.accept_proxy_protocol.is_empty() {
        let nets: Vec<String> = l
            .accept_proxy_protocol
            .iter()
            .map(|n| string(&n.to_string()))
            .collect();
        let _ = writeln!(out, "accept_proxy_protocol = [{}]", nets.join(", "));
    }
    if !l.allow.is_empty() {
        let nets: Vec<String> = l.allow.iter().map(|n| string(&n.to_string())).collect();
        let _ = writeln!(out, "allow = [{}]", nets.join(", "));
    }
    let _ = writeln!(out, "max_connections = {}", l.max_connections);
    let _ = writeln!(out, "slow_start = {}", duration(l.slow_start));
    let _ = writeln!(out, "ewma_decay = {}", duration(l.ewma_decay));
    if l.discovery.is_none() {
        let _ = writeln!(out, "backends = [");
        for b in &l.backends {
            let _ = writeln!(out, "  {},", backend(b));
        }
        let _ = writeln!(out, "]");
    }
    if let Some(d) = &l.discovery {
        discovery(out, d);
    }
    if let Some(check) = &l.health_check {
        health_check(out, check);
    }
    let _ = writeln!(out, "\n[listeners.passive_check]");
    match &l.passive_check {
        Some(p) => {
            let _ = writeln!(out, "fall = {}", p.fall);
            let _ = writeln!(out, "backoff = {}", duration(p.backoff));
        }
        None => {
            let _ = writeln!(out, "enabled = false");
        }
    }
    if let Some(tls) = &l.tls {
        self::tls(out, tls.settings());
    }
}

/// `[listeners.discovery]`, every key written.
fn discovery(out: &mut String, d: &Discovery) {
    let _ = writeln!(out, "\n[listeners.discovery]");
    let _ = writeln!(out, "dns = {}", string(&d.dns.to_string()));
    if !d.resolvers.is_empty() {
        let list: Vec<String> = d.resolvers.iter().map(|r| string(&r.to_string())).collect();
        let _ = writeln!(out, "resolvers = [{}]", list.join(", "));
    }
    let _ = writeln!(out, "min_interval = {}", duration(d.min_interval));
    let _ = writeln!(out, "max_interval = {}", duration(d.max_interval));
}

/// `[listeners.tls]`, its files as they were opened (relative ones taken
/// from the folder of the file converted).
fn tls(out: &mut String, settings: &crate::tls::Settings) {
    let _ = writeln!(out, "\n[listeners.tls]");
    let _ = writeln!(out, "certificates = [");
    for c in &settings.certificates {
        let cert = string(&c.cert_path.display().to_string());
        let key = string(&c.key_path.display().to_string());
        let _ = writeln!(out, "  {{ cert = {cert}, key = {key} }},");
    }
    let _ = writeln!(out, "]");
    let _ = writeln!(out, "min_version = {}", string(settings.min_version.name()));
    let alpn: Vec<String> = settings.alpn.iter().map(|p| string(p)).collect();
    let _ = writeln!(out, "alpn = [{}]", alpn.join(", "));
    let timeout = duration(settings.handshake_timeout);
    let _ = writeln!(out, "handshake_timeout = {timeout}");
}

/// Every key of a health check (`path` and `expect_status` too, which only
/// an http check uses).
fn health_check(out: &mut String, c: &HealthCheck) {
    let _ = writeln!(out, "\n[listeners.health_check]");
    let _ = writeln!(out, "kind = {}", string(c.kind.name()));
    let _ = writeln!(out, "interval = {}", duration(c.interval));
    let _ = writeln!(out, "timeout = {}", duration(c.timeout));
    let _ = writeln!(out, "path = {}", string(&c.path));
    let _ = writeln!(out, "expect_status = {}", c.expect_status);
    let _ = writeln!(out, "rise = {}", c.rise);
    let _ = writeln!(out, "fall = {}", c.fall);
}

/// A bare string for weight 1, else an inline table.
fn backend(b: &BackendSpec) -> String {
    if b.weight == 1 {
        string(&b.address)
    } else {
        format!(
            "{{ address = {}, weight = {} }}",
            string(&b.address),
            b.weight
        )
    }
}

/// A TOML string literal, escaped by the toml crate.
fn string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A quoted duration, as [`format_duration`] writes it.
fn duration(d: Duration) -> String {
    string(&format_duration(d))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use ipnet::IpNet;
    use proptest::prelude::*;

    use super::*;
    use crate::config::limits::{
        MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_RETRIES, MAX_RISE_FALL, MAX_WEIGHT, MAX_WORKERS,
    };
    use crate::config::{
        Algorithm, CheckKind, FileFormat, ModeSettings, PassiveCheck, TcpSettings, parse,
    };

    fn round_trip(config: &Config) {
        let text = to_toml(config);
        assert_eq!(
            parse(&text, FileFormat::Toml, "x").as_ref(),
            Ok(config),
            "{text}"
        );
    }

    #[test]
    fn the_seed_setup_cfg_converts_to_equivalent_toml() {
        let text = "[options]\nbuffer_size=4096\nalgorithm=weighted_round_robin\n\n[mappings]\n\
                    24003=127.0.0.1:8080:3,127.0.0.1:8081:1,127.0.0.1:8082:2,127.0.0.1:8083:1\n\
                    127.0.0.1:24004=localhost:8084\n";
        let config = parse(text, FileFormat::Ini, "setup.cfg").unwrap();
        round_trip(&config);
        let toml = to_toml(&config);
        assert!(toml.contains("name = \"24003\"\nlisten = \"0.0.0.0:24003\"\n"));
        assert!(toml.contains("algorithm = \"weighted_round_robin\"\n"));
        assert!(toml.contains(
            "backends = [\n  { address = \"127.0.0.1:8080\", weight = 3 },\n  \"127.0.0.1:8081\",\n"
        ));
        assert!(toml.contains("  \"localhost:8084\",\n"));
        assert!(toml.contains("buffer_size = 4096\n"));
        assert!(toml.contains("idle_timeout = \"5m\"\n"));
    }

    #[test]
    fn ipv6_allow_source_address_and_odd_names_round_trip() {
        let text = "[global]\nworkers = 4\ndrain_timeout = \"1500ms\"\n\n[[listeners]]\n\
                    name = \"we\\\"b\\\\\"\nlisten = \"[::1]:0\"\nalgorithm = \"random\"\n\
                    connect_timeout = \"1m 30s\"\nidle_timeout = \"90m\"\nretries = 0\n\
                    source_address = \"::1\"\nallow = [\"::1\", \"10.1.0.0/16\"]\n\
                    backends = [\"[::1]:8080\", { address = \"[::1]:8081\", weight = 7 }]\n";
        let config = parse(text, FileFormat::Toml, "x").unwrap();
        round_trip(&config);
        let toml = to_toml(&config);
        assert!(toml.contains("drain_timeout = \"1500ms\"\n"), "{toml}");
        assert!(toml.contains("connect_timeout = \"90s\"\n"), "{toml}");
        assert!(toml.contains("idle_timeout = \"90m\"\n"), "{toml}");
    }

    #[test]
    fn the_config_reference_shows_what_convert_prints_for_the_seed() {
        let seed = "[options]\nbuffer_size=4096\nalgorithm=weighted_round_robin\n[mappings]\n\
                    24003=127.0.0.1:8080:3,127.0.0.1:8081:1,127.0.0.1:8082:2,127.0.0.1:8083:1\n\
                    24004=127.0.0.1:8084:1\n";
        let toml = to_toml(&parse(seed, FileFormat::Ini, "setup.cfg").unwrap());
        let start = toml.find("[global]").unwrap();
        let end = toml.find("\n\n[[listeners]]\nname = \"24004\"").unwrap();
        let shown: String = toml[start..end]
            .lines()
            .map(|line| {
                if line.is_empty() {
                    "\n".to_string()
                } else {
                    format!("    {line}\n")
                }
            })
            .collect();
        let reference = include_str!("../../docs/config.md");
        assert!(
            reference.contains(&shown),
            "docs/config.md should show:\n{shown}"
        );
        for (n, line) in reference.lines().enumerate() {
            assert!(
                line.chars().count() < 100,
                "docs/config.md:{}: too long",
                n + 1
            );
        }
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        let cases = [
            (Duration::from_secs(7200), "\"2h\""),
            (Duration::from_secs(300), "\"5m\""),
            (Duration::from_secs(30), "\"30s\""),
            (Duration::from_millis(1500), "\"1500ms\""),
            (Duration::from_micros(1500), "\"1500us\""),
            (Duration::ZERO, "\"0s\""),
        ];
        for (d, expected) in cases {
            assert_eq!(duration(d), expected);
        }
    }

    /// Any IP address but an IPv4-mapped one, which no listen address may be.
    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>()
                .prop_filter("not IPv4-mapped", |n| {
                    Ipv6Addr::from(*n).to_ipv4_mapped().is_none()
                })
                .prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    /// A source address this machine has: loopback, of either family (the
    /// listener keeps it only when its backends are of that family).
    fn source_strategy() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            Just(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            Just(Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
        ]
    }

    fn duration_strategy() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (1u64..=100_000).prop_map(Duration::from_millis),
            (1u64..=1_000_000_000).prop_map(Duration::from_millis),
            (1u64..=8_760).prop_map(|h| Duration::from_secs(h * 3600)),
        ]
    }

    fn backend_strategy() -> impl Strategy<Value = BackendSpec> {
        (ip(), 1u16.., 1..=MAX_WEIGHT).prop_map(|(ip, port, weight)| {
            let resolved = SocketAddr::new(ip, port);
            BackendSpec {
                address: resolved.to_string(),
                resolved,
                weight,
            }
        })
    }

    fn health_check_strategy() -> impl Strategy<Value = HealthCheck> {
        (
            prop_oneof![Just(CheckKind::Tcp), Just(CheckKind::Http)],
            duration_strategy(),
            duration_strategy(),
            "/[!-~]{0,12}",
            100u16..=599,
            1..=MAX_RISE_FALL,
            1..=MAX_RISE_FALL,
        )
            .prop_map(
                |(kind, interval, timeout, path, expect_status, rise, fall)| HealthCheck {
                    kind,
                    interval,
                    timeout,
                    path,
                    expect_status,
                    rise: u32::try_from(rise).unwrap(),
                    fall: u32::try_from(fall).unwrap(),
                },
            )
    }

    fn passive_check_strategy() -> impl Strategy<Value = Option<PassiveCheck>> {
        proptest::option::of((1..=MAX_RISE_FALL, duration_strategy()).prop_map(
            |(fall, backoff)| PassiveCheck {
                fall: u32::try_from(fall).unwrap(),
                backoff,
            },
        ))
    }

    fn listener_strategy() -> impl Strategy<Value = Listener> {
        (
            (
                "[ -~]{0,12}",
                ip(),
                prop_oneof![
                    Just(Algorithm::RoundRobin),
                    Just(Algorithm::Random),
                    Just(Algorithm::WeightedRoundRobin),
                    Just(Algorithm::LeastConnections),
                    Just(Algorithm::PowerOfTwo),
                    Just(Algorithm::SourceHash),
                ],
                duration_strategy(),
                duration_strategy(),
                0..=MAX_RETRIES,
            ),
            (
                source_strategy(),
                proptest::collection::vec((ip(), 0u8..=128), 0..3),
                1..=MAX_CONNECTIONS,
                proptest::collection::vec(backend_strategy(), 1..5),
            ),
            (
                prop_oneof![Just(Duration::ZERO), duration_strategy()],
                duration_strategy(),
                proptest::option::of(health_check_strategy()),
                passive_check_strategy(),
            ),
        )
            .prop_map(|(first, second, third)| {
                let (name, ip, algorithm, connect_timeout, idle_timeout, retries) = first;
                let (source_address, allow, max_connections, mut backends) = second;
                let (slow_start, ewma_decay, health_check, passive_check) = third;
                let allow = allow
                    .into_iter()
                    .map(|(ip, len)| {
                        let len = if ip.is_ipv4() { len % 33 } else { len };
                        IpNet::new(ip, len).unwrap().trunc()
                    })
                    .collect();
                let mut seen = std::collections::HashSet::new();
                backends.retain(|b| seen.insert(b.address.clone()));
                let source_address = source_address.filter(|source: &IpAddr| {
                    let family = source.is_ipv4();
                    backends.iter().all(|b| b.resolved.is_ipv4() == family)
                });
                Listener {
                    name: format!("l{name}"),
                    listen: SocketAddr::new(ip, 0),
                    mode: ModeSettings::Tcp(TcpSettings {
                        buffer_size: 0,
                        proxy_protocol: None,
                    }),
                    algorithm,
                    connect_timeout,
                    idle_timeout,
                    retries: u32::try_from(retries).unwrap(),
                    source_address,
                    allow,
                    accept_proxy_protocol: Vec::new(),
                    max_connections: usize::try_from(max_connections).unwrap(),
                    backends,
                    discovery: None,
                    slow_start,
                    ewma_decay,
                    health_check,
                    passive_check,
                    tls: None,
                }
            })
    }

    fn config_strategy() -> impl Strategy<Value = Config> {
        (
            0..=MAX_WORKERS,
            1..=MAX_BUFFER_SIZE,
            duration_strategy(),
            1..=MAX_CONNECTIONS,
            proptest::collection::vec(listener_strategy(), 1..4),
            proptest::option::of((ip(), proptest::option::of("[!-~]{1,16}"))),
        )
            .prop_map(
                |(workers, buffer_size, drain_timeout, max_connections, listeners, admin)| {
                    let buffer_size = usize::try_from(buffer_size).unwrap();
                    let listeners = listeners
                        .into_iter()
                        .enumerate()
                        .map(|(i, mut l)| {
                            l.name = format!("{i}{}", l.name);
                            let proxy_protocol = [
                                None,
                                Some(crate::config::ProxyProtocol::V1),
                                Some(crate::config::ProxyProtocol::V2),
                            ]
                            .get(i % 3)
                            .copied()
                            .flatten();
                            l.mode = ModeSettings::Tcp(TcpSettings {
                                buffer_size,
                                proxy_protocol,
                            });
                            l.accept_proxy_protocol = l.allow.clone();
                            l
                        })
                        .collect();
                    Config {
                        global: Global {
                            workers: usize::try_from(workers).unwrap(),
                            buffer_size,
                            drain_timeout,
                            max_connections: usize::try_from(max_connections).unwrap(),
                            shutdown_delay: Duration::from_secs(
                                u64::try_from(workers % 3).unwrap(),
                            ),
                            access_log: [
                                None,
                                Some(AccessLogTarget::Stderr),
                                Some(AccessLogTarget::Stdout),
                                Some(AccessLogTarget::File("logs/access log.json".into())),
                            ]
                            .get(usize::try_from(workers % 4).unwrap())
                            .cloned()
                            .flatten(),
                            access_log_format: if workers % 2 == 0 {
                                AccessLogFormat::Json
                            } else {
                                AccessLogFormat::Text
                            },
                        },
                        admin: admin.map(|(ip, token)| Admin {
                            listen: SocketAddr::new(ip, 0),
                            allowed_hosts: token
                                .iter()
                                .map(|_| "admin.example".to_string())
                                .collect(),
                            token,
                        }),
                        listeners,
                        fleet: (workers % 2 == 1).then(|| Fleet {
                            etcd: vec![
                                "http://127.0.0.1:2379".to_string(),
                                "http://[::1]:2379".to_string(),
                            ],
                            prefix: "/balancer/prod".to_string(),
                        }),
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_valid_config_round_trips_through_toml(config in config_strategy()) {
            let text = to_toml(&config);
            prop_assert_eq!(parse(&text, FileFormat::Toml, "x"), Ok(config), "{}", text);
        }
    }
}
