//! The seed's `setup.cfg` (SPEC 3), unchanged: it runs, splits traffic as
//! the seed's weights say, and `check` and `convert` accept it. It uses
//! fixed ports, so every test that binds them holds `fixed_ports()`.

use crate::harness::{
    Backend, Balancer, Format, Output, assert_no_debug_formatting, backends_reached, check,
    fixed_ports, fixture, loopback, run,
};

/// The seed's backends 127.0.0.1:8080-8084, greeting with a..e.
fn seed_backends() -> Vec<Backend> {
    (8080..=8084)
        .zip(["a", "b", "c", "d", "e"])
        .map(|(port, name)| {
            let addr = loopback(port);
            Backend::named_on(addr, name).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
        })
        .collect()
}

/// Checks the seed's split through the running balancer: 14 sequential
/// connections to 24003 go a c b a d c a twice (weights 3,1,2,1: 6:2:4:2),
/// and 24004 always reaches e.
fn assert_seed_split() {
    let web = loopback(24003);
    let names = backends_reached(web, 14).concat();
    assert_eq!(names, "acbadcaacbadca");

    let other = loopback(24004);
    assert_eq!(backends_reached(other, 2), ["e", "e"]);
}

#[test]
fn the_seed_setup_cfg_runs_unchanged_and_splits_6_2_4_2_in_smooth_order() {
    let _ports = fixed_ports();
    let _backends = seed_backends();
    let balancer = Balancer::start_file(&fixture("setup.cfg"), Format::Ini);
    assert_seed_split();
    balancer.stop();
}

#[test]
fn check_summarizes_the_seed_setup_cfg() {
    let out = run(["check".as_ref(), fixture("setup.cfg").as_os_str()], None);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "24003",
        "24004",
        "weighted_round_robin",
        "127.0.0.1:8080 weight 3",
        "127.0.0.1:8081 weight 1",
        "127.0.0.1:8082 weight 2",
        "127.0.0.1:8083 weight 1",
        "127.0.0.1:8084 weight 1",
    ]);
    assert_no_debug_formatting("check", &out.both());
}

#[test]
fn the_converted_seed_config_checks_the_same_and_runs_the_same() {
    let seed = fixture("setup.cfg");
    let converted = run(["convert".as_ref(), seed.as_os_str()], None);
    assert_eq!(converted.code(), 0, "{}", converted.both());
    assert_no_debug_formatting("convert", &converted.both());

    let checked_toml = check(&converted.stdout, Format::Toml);
    assert_eq!(
        checked_toml.code(),
        0,
        "check refuses convert's output:\n{}\n{}",
        converted.stdout,
        checked_toml.both()
    );
    let checked_ini = run(["check".as_ref(), seed.as_os_str()], None);
    // The summaries may name their file; compare everything else.
    let summary_of = |out: &Output, file: &str| out.stdout.replace(file, "FILE");
    assert_eq!(
        summary_of(&checked_toml, Format::Toml.file_name()),
        summary_of(&checked_ini, &seed.to_string_lossy()),
        "the two files do not describe the same balancer\n--- converted ---\n{}",
        converted.stdout
    );

    let _ports = fixed_ports();
    let _backends = seed_backends();
    let balancer = Balancer::start(&converted.stdout, Format::Toml);
    assert_seed_split();
    balancer.stop();
}

#[test]
fn the_spec_example_with_pre_resolve_workers_and_a_host_name_passes_check() {
    let out = run(
        ["check".as_ref(), fixture("spec-example.cfg").as_os_str()],
        None,
    );
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&["24003", "127.0.0.1:24004", "localhost:8084 weight 1"]);
}

#[test]
fn a_seed_style_config_on_a_free_port_balances_round_robin() {
    let backends = Backend::named_each(&["a", "b"]);
    let config = format!(
        "[options]\nbuffer_size=4096\nalgorithm=round_robin\n\n[mappings]\n127.0.0.1:0={},{}\n",
        backends[0].addr(),
        backends[1].addr()
    );
    let balancer = Balancer::start(&config, Format::Ini);
    let addr = balancer.addr("127.0.0.1:0");
    let names = backends_reached(addr, 6).concat();
    assert!(
        names == "ababab" || names == "bababa",
        "not round robin: {names}"
    );
    balancer.stop();
}
