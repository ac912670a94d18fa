//! The command line (SPEC 1): help, version, usage errors, every config
//! error with its file:line and what it names, exit codes 0/1/2, and no
//! Rust debug formatting in any output.

use std::net::{TcpListener, TcpStream};

use serde_json::Value;

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, Output, assert_no_debug_formatting, check, config_dir,
    connect, debug_formatting_in, echoes, eventually, refused_address, run, run_with_config,
};

#[test]
fn help_names_every_subcommand_and_global_flag() {
    let out = run(["--help"], None);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "run",
        "check",
        "convert",
        "demo",
        "backend",
        "--log-level",
        "--log-format",
        "--help-config",
        "--version",
    ]);
}

#[test]
fn version_prints_the_package_version() {
    let out = run(["--version"], None);
    assert_eq!(out.code(), 0, "{}", out.both());
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.both()
    );
}

#[test]
fn help_config_documents_both_formats_and_every_supported_key() {
    let out = run(["--help-config"], None);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "[global]",
        "workers",
        "buffer_size",
        "drain_timeout",
        "max_connections",
        "[[listeners]]",
        "name",
        "listen",
        "algorithm",
        "round_robin",
        "random",
        "weighted_round_robin",
        "connect_timeout",
        "idle_timeout",
        "retries",
        "source_address",
        "allow",
        "backends",
        "weight",
        "[options]",
        "[mappings]",
    ]);
}

#[test]
fn bad_usage_exits_2_with_a_message_and_starts_nothing() {
    let cases: &[&[&str]] = &[
        &[],
        &["--frobnicate"],
        &["check"],
        &["convert"],
        &["check", "a.toml", "b.toml"],
        &["--log-format", "xml", "check", "x.toml"],
        &["--log-level", "loud", "check", "x.toml"],
        &["backend"],
        &["backend", "--listen", "nonsense"],
        &[
            "backend",
            "--listen",
            "127.0.0.1:0",
            "--allow-from",
            "10.0.0.0/99",
        ],
        &["backend", "--listen", "127.0.0.1:0", "--delay", "soon"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let out = run(*args, None);
        let stderr = &out.stderr;
        if out.code() != 2 || stderr.trim().is_empty() || stderr.contains(" listening ") {
            failures.push(format!("{args:?}: exit {}\n{}", out.code(), out.both()));
        }
        assert_no_debug_formatting(&format!("{args:?}"), &out.both());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_config_together_with_a_subcommand_or_an_extra_argument_exits_2_naming_it() {
    // (command line, what the error must name)
    let cases: &[(&[&str], &str)] = &[
        (
            &["x.toml", "check", "y.toml"],
            "\"x.toml\" cannot be given together with a subcommand",
        ),
        (
            &["x.toml", "run", "y.toml"],
            "\"x.toml\" cannot be given together with a subcommand",
        ),
        (
            &["x.toml", "demo"],
            "\"x.toml\" cannot be given together with a subcommand",
        ),
        (
            &["--log-format", "json", "x.toml", "convert", "y.cfg"],
            "\"x.toml\" cannot be given together with a subcommand",
        ),
        (&["x.toml", "check"], "<CONFIG>"),
        (&["run", "x.toml", "extra"], "'extra'"),
        (
            &["--log-level", "debug", "run", "x.toml", "extra"],
            "'extra'",
        ),
    ];
    let mut failures = Vec::new();
    for (args, named) in cases {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = run(*args, Some(dir.path()));
        if out.code() != 2
            || !out.stderr.starts_with("error: ")
            || !out.stderr.contains(named)
            || out.stderr.contains(" listening ")
        {
            failures.push(format!(
                "{args:?}: exit {}, expected {named:?}\n{}",
                out.code(),
                out.both()
            ));
        }
        assert_no_debug_formatting(&format!("{args:?}"), &out.both());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_config_file_exits_2_naming_the_file() {
    for args in [
        &["check", "missing.toml"][..],
        &["run", "missing.cfg"],
        &["missing.toml"],
    ] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = run(args, Some(dir.path()));
        assert_eq!(out.code(), 2, "{args:?}\n{}", out.both());
        let file = args[args.len() - 1];
        assert!(
            out.stderr.contains(&format!("error: {file}")),
            "{args:?}: the error does not name {file}\n{}",
            out.both()
        );
        assert_no_debug_formatting(&format!("{args:?}"), &out.both());
    }
}

/// One bad config: what is wrong, the text, the line SPEC lets us know
/// (None where a line is not required), and what the message must name.
struct Case {
    what: &'static str,
    text: String,
    line: Option<usize>,
    names: &'static [&'static str],
}

fn case(
    what: &'static str,
    text: impl Into<String>,
    line: Option<usize>,
    names: &'static [&'static str],
) -> Case {
    Case {
        what,
        text: text.into(),
        line,
        names,
    }
}

/// A TOML listener `web` on `listen` over one backend.
fn web_listening_on(listen: impl std::fmt::Display) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"{listen}\"\nbackends = [\"127.0.0.1:8080\"]\n"
    )
}

/// A TOML listener whose line 4 is `line4` (lines 1-3: table, name,
/// listen; line 5: backends).
fn toml_with_line4(line4: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{line4}\nbackends = [\"127.0.0.1:8080\"]\n"
    )
}

/// A TOML listener whose backends line (line 4) is `backends`.
fn toml_with_backends(backends: &str) -> String {
    format!("[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = {backends}\n")
}

/// A seed INI file whose line 2 is `option` and line 5 `mapping`.
fn ini(option: &str, mapping: &str) -> String {
    format!("[options]\n{option}\n\n[mappings]\n{mapping}\n")
}

/// Runs `check` on every case; reports every case that did not exit 2
/// with `error: FILE:LINE:` and every expected name.
fn assert_config_errors(format: Format, cases: &[Case]) {
    let file = format.file_name();
    let mut failures = Vec::new();
    for case in cases {
        let out = check(&case.text, format);
        let location = match case.line {
            Some(line) => format!("error: {file}:{line}: "),
            None => format!("error: {file}:"),
        };
        let mut wrong = Vec::new();
        if out.code() != 2 {
            wrong.push(format!("exit {} instead of 2", out.code()));
        }
        if !out.stderr.contains(&location) {
            wrong.push(format!("no {location:?}"));
        }
        for name in case.names {
            if !out.stderr.contains(name) {
                wrong.push(format!("does not name {name:?}"));
            }
        }
        if let Some(fragment) = debug_formatting_in(&out.both()) {
            wrong.push(format!("shows debug formatting {fragment:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n--- {file} ---\n{}--- stderr ---\n{}",
                case.what,
                wrong.join(", "),
                case.text,
                out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad configs were not reported as expected:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_toml_config_error_exits_2_naming_file_line_key_and_value() {
    let duplicate_names = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:8080\"]\n\
                           [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:8080\"]\n";
    let duplicate_listen = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:24999\"\nbackends = [\"127.0.0.1:8080\"]\n\
                            [[listeners]]\nname = \"api\"\nlisten = \"127.0.0.1:24999\"\nbackends = [\"127.0.0.1:8080\"]\n";
    let cases = [
        case(
            "an unknown key in [global]",
            format!("[global]\nworkerz = 2\n{}", toml_with_line4("retries = 1")),
            Some(2),
            &["workerz"],
        ),
        case(
            "a global of the wrong type",
            format!(
                "[global]\ndrain_timeout = 30\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(2),
            &["drain_timeout"],
        ),
        case(
            "negative workers",
            format!("[global]\nworkers = -1\n{}", toml_with_line4("retries = 1")),
            Some(2),
            &["workers"],
        ),
        case(
            "an unknown key in a listener",
            toml_with_line4("algoritm = \"random\""),
            Some(4),
            &["algoritm"],
        ),
        case(
            "an unknown algorithm",
            toml_with_line4("algorithm = \"fastest\""),
            Some(4),
            &["algorithm", "fastest"],
        ),
        case(
            "retries of the wrong type",
            toml_with_line4("retries = \"three\""),
            Some(4),
            &["retries"],
        ),
        case(
            "a duration without a unit",
            toml_with_line4("connect_timeout = \"30\""),
            Some(4),
            &["connect_timeout", "30"],
        ),
        case(
            "a duration that is not one",
            toml_with_line4("idle_timeout = \"soon\""),
            Some(4),
            &["idle_timeout", "soon"],
        ),
        case(
            "a source address that is not an IP",
            toml_with_line4("source_address = \"somewhere\""),
            Some(4),
            &["source_address", "somewhere"],
        ),
        case(
            "an allow entry that is not a CIDR",
            toml_with_line4("allow = [\"10.0.0.0/33\"]"),
            Some(4),
            &["allow", "10.0.0.0/33"],
        ),
        case(
            "a listen address without a port",
            web_listening_on("127.0.0.1"),
            Some(3),
            &["listen", "127.0.0.1"],
        ),
        case(
            "a listener without listen",
            "[[listeners]]\nname = \"web\"\nbackends = [\"127.0.0.1:8080\"]\n",
            None,
            &["listen"],
        ),
        case(
            "a listener without backends",
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n",
            None,
            &["backends"],
        ),
        case(
            "an empty backend list",
            toml_with_backends("[]"),
            Some(4),
            &["backends"],
        ),
        case(
            "weight 0",
            toml_with_backends("[{ address = \"127.0.0.1:8080\", weight = 0 }]"),
            Some(4),
            &["weight"],
        ),
        case(
            "a negative weight",
            toml_with_backends("[{ address = \"127.0.0.1:8080\", weight = -1 }]"),
            Some(4),
            &["weight"],
        ),
        case(
            "a backend address with a bad port",
            toml_with_backends("[\"127.0.0.1:http\"]"),
            Some(4),
            &["127.0.0.1:http"],
        ),
        case(
            "a backend address without a port",
            toml_with_backends("[\"127.0.0.1\"]"),
            Some(4),
            &["127.0.0.1"],
        ),
        case(
            "duplicate listener names",
            duplicate_names,
            Some(6),
            &["web"],
        ),
        case(
            "duplicate listen addresses",
            duplicate_listen,
            Some(7),
            &["127.0.0.1:24999"],
        ),
        case(
            "a TOML syntax error",
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\nbackends = [\"127.0.0.1:8080\"]\n",
            Some(3),
            &[],
        ),
        case(
            "an http-only key on a tcp listener",
            toml_with_line4("max_idle_per_backend = 8"),
            Some(4),
            &["max_idle_per_backend", "http", "tcp"],
        ),
        case(
            "an unknown mode",
            toml_with_line4("mode = \"udp\""),
            Some(4),
            &["mode", "udp"],
        ),
        case(
            "an unknown proxy_protocol version",
            toml_with_line4("proxy_protocol = \"v3\""),
            Some(4),
            &["proxy_protocol", "v3"],
        ),
        case(
            "an unknown access_log_format",
            format!(
                "[global]\naccess_log_format = \"xml\"\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(2),
            &["access_log_format", "xml"],
        ),
        case(
            "an empty access_log",
            format!(
                "[global]\naccess_log = \"\"\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(2),
            &["access_log", "empty"],
        ),
        case(
            "a shutdown_delay that is not a duration",
            format!(
                "[global]\nshutdown_delay = \"soon\"\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(2),
            &["shutdown_delay", "soon"],
        ),
        case(
            "accept_proxy_protocol with a bad network",
            toml_with_line4("accept_proxy_protocol = [\"10.0.0.0/40\"]"),
            Some(4),
            &["accept_proxy_protocol", "10.0.0.0/40"],
        ),
        case(
            "an [admin] listen address that is a host name",
            format!(
                "[admin]\nlisten = \"localhost:9000\"\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(2),
            &["admin", "listen", "localhost"],
        ),
        case(
            "an empty [admin] token",
            format!(
                "[admin]\nlisten = \"127.0.0.1:9000\"\ntoken = \"\"\n{}",
                toml_with_line4("retries = 1")
            ),
            Some(3),
            &["admin", "token"],
        ),
    ];
    assert_config_errors(Format::Toml, &cases);
}

#[test]
fn every_seed_ini_config_error_exits_2_naming_file_line_key_and_value() {
    let mapping = "24003=127.0.0.1:8080";
    let cases = [
        case(
            "an unknown algorithm",
            ini("algorithm=fastest", mapping),
            Some(2),
            &["algorithm", "fastest"],
        ),
        case(
            "an admin address without a port",
            ini("admin=127.0.0.1", mapping),
            Some(2),
            &["admin", "127.0.0.1"],
        ),
        case(
            "a buffer size that is not a number",
            ini("buffer_size=abc", mapping),
            Some(2),
            &["buffer_size", "abc"],
        ),
        case(
            "pre_resolve_workers that is not a number",
            ini("pre_resolve_workers=abc", mapping),
            Some(2),
            &["pre_resolve_workers", "abc"],
        ),
        case(
            "a mapping key that is not a port",
            ini("algorithm=round_robin", "abc=127.0.0.1:8080"),
            Some(5),
            &["abc"],
        ),
        case(
            "a mapping port out of range",
            ini("algorithm=round_robin", "70000=127.0.0.1:8080"),
            Some(5),
            &["70000"],
        ),
        case(
            "a backend port out of range",
            ini("algorithm=round_robin", "24003=127.0.0.1:70000"),
            Some(5),
            &["70000"],
        ),
        case(
            "a backend without a port",
            ini("algorithm=round_robin", "24003=127.0.0.1"),
            Some(5),
            &["127.0.0.1"],
        ),
        case(
            "a weight that is not a number",
            ini("algorithm=round_robin", "24003=127.0.0.1:8080:x"),
            Some(5),
            &["weight"],
        ),
        case(
            "weight 0",
            ini("algorithm=round_robin", "24003=127.0.0.1:8080:0"),
            Some(5),
            &["weight"],
        ),
        case(
            "a mapping with no backends",
            ini("algorithm=round_robin", "24003="),
            Some(5),
            &["24003"],
        ),
        case(
            "a mapping line without =",
            ini("algorithm=round_robin", "garbage"),
            Some(5),
            &["="],
        ),
        case(
            "a duplicate mapping",
            ini(
                "algorithm=round_robin",
                "24003=127.0.0.1:8080\n24003=127.0.0.1:8081",
            ),
            Some(6),
            &["24003"],
        ),
        case(
            "an unknown section",
            format!("[frobs]\nx=1\n{}", ini("algorithm=round_robin", mapping)),
            Some(1),
            &["frobs"],
        ),
    ];
    assert_config_errors(Format::Ini, &cases);
}

#[test]
fn a_bad_mapping_port_is_reported_exactly_as_spec_shows() {
    // SPEC 1's own example, with the bad mapping on line 9.
    let text = "[options]\nbuffer_size=4096\nalgorithm=round_robin\n\n[mappings]\n\
                24003=127.0.0.1:8080\n# a comment\n; another comment\nabc=127.0.0.1:8081\n";
    let out = check(text, Format::Ini);
    assert_eq!(out.code(), 2, "{}", out.both());
    assert!(
        out.stderr
            .contains("error: setup.cfg:9: mapping \"abc\": port is not a number"),
        "{}",
        out.both()
    );
}

#[test]
fn valid_configs_of_every_supported_shape_pass_check() {
    let configs = [
        (
            "every supported key",
            "[global]\nworkers = 2\nbuffer_size = 8192\ndrain_timeout = \"2s\"\nmax_connections = 50\n\n\
             [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"tcp\"\n\
             algorithm = \"weighted_round_robin\"\nconnect_timeout = \"500ms\"\nidle_timeout = \"5m\"\n\
             retries = 2\nsource_address = \"127.0.0.1\"\nproxy_protocol = \"off\"\n\
             allow = [\"127.0.0.0/8\", \"::1/128\"]\nmax_connections = 10\n\
             backends = [{ address = \"127.0.0.1:8080\", weight = 3 }, \"127.0.0.1:8081\", \"127.0.0.1:8082\"]\n\n\
             [[listeners]]\nname = \"v6\"\nlisten = \"[::1]:0\"\nsource_address = \"::1\"\n\
             backends = [\"[::1]:8082\"]\n",
        ),
        (
            "round robin, hours and a bare listener",
            "[[listeners]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"round_robin\"\n\
             idle_timeout = \"1h\"\nbackends = [\"127.0.0.1:8080\"]\n",
        ),
        (
            "random",
            "[[listeners]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"random\"\n\
             backends = [\"127.0.0.1:8080\", \"127.0.0.1:8081\"]\n",
        ),
    ];
    for (what, text) in configs {
        let out = check(text, Format::Toml);
        assert_eq!(out.code(), 0, "{what}\n{}", out.both());
        assert!(
            out.stdout.contains("127.0.0.1:8080"),
            "{what}: the summary does not list the backends\n{}",
            out.both()
        );
        assert_no_debug_formatting(what, &out.both());
    }
}

#[test]
fn check_prints_each_listener_with_its_algorithm_and_weighted_backends() {
    let text = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"weighted_round_robin\"\n\
                backends = [{ address = \"127.0.0.1:8080\", weight = 3 }, \"127.0.0.1:8081\"]\n\n\
                [[listeners]]\nname = \"api\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"random\"\n\
                backends = [\"127.0.0.1:9090\"]\n";
    let out = check(text, Format::Toml);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "web",
        "weighted_round_robin",
        "127.0.0.1:8080 weight 3",
        "127.0.0.1:8081 weight 1",
        "api",
        "random",
        "127.0.0.1:9090 weight 1",
    ]);
}

#[test]
fn check_and_a_bad_config_run_bind_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to keep busy");
    let addr = taken.local_addr().expect("a bound address");
    let good = web_listening_on(addr);
    let out = check(&good, Format::Toml);
    assert_eq!(out.code(), 0, "check must not bind {addr}\n{}", out.both());

    let bad = format!("{good}retries = \"many\"\n");
    let out = run_with_config(&[], &bad, Format::Toml);
    assert_eq!(out.code(), 2, "{}", out.both());
    assert!(!out.stderr.contains(" listening "), "{}", out.both());
}

#[test]
fn a_listen_address_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to keep busy");
    let addr = taken.local_addr().expect("a bound address");
    let text = web_listening_on(addr);
    for subcommand in [&[][..], &["run"]] {
        let out = run_with_config(subcommand, &text, Format::Toml);
        assert_eq!(out.code(), 1, "{}", out.both());
        assert!(out.stderr.contains("error: "), "{}", out.both());
        assert!(
            out.stderr.contains(&addr.to_string()),
            "the error does not name {addr}\n{}",
            out.both()
        );
        assert_no_debug_formatting("the bind error", &out.both());
    }
}

#[test]
fn a_demo_backend_whose_address_is_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to keep busy");
    let addr = taken.local_addr().expect("a bound address").to_string();
    let out = run(["backend", "--listen", addr.as_str()], None);
    assert_eq!(out.code(), 1, "{}", out.both());
    assert!(out.stderr.contains(&addr), "{}", out.both());
    assert_no_debug_formatting("the bind error", &out.both());
}

#[test]
fn json_log_format_writes_the_readiness_line_as_json() {
    let config = web_listening_on("127.0.0.1:0");
    let balancer = Balancer::spawn_with_config(&["--log-format", "json"], &config, Format::Toml);
    let found = balancer.wait_for_log(DEADLINE, |line| {
        line.contains("listening") && line.contains("\"address\":\"127.0.0.1:")
    });
    assert!(found, "no JSON readiness line");
    for line in balancer.stderr().lines() {
        let line = line.trim();
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "a log line is not JSON: {line}"
        );
    }
    balancer.stop();
}

#[test]
fn log_level_warn_hides_info_lines() {
    // With --log-level warn the readiness line (info) is not printed, so
    // readiness is judged by the port: poll connects until one succeeds.
    let addr = refused_address();
    let config = web_listening_on(addr);
    let balancer = Balancer::spawn_with_config(&["--log-level", "warn"], &config, Format::Toml);
    let up = eventually(DEADLINE, || TcpStream::connect(addr).is_ok());
    assert!(up, "the balancer never listened on {addr}");
    assert!(
        !balancer.stderr().contains(" INFO "),
        "info lines printed at --log-level warn"
    );
    balancer.stop();
}

#[test]
fn a_config_path_names_its_format_by_extension() {
    // The same TOML text is a config error when the file is not `.toml`.
    let text = web_listening_on("127.0.0.1:0");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("balancer.conf");
    std::fs::write(&path, text).expect("write the config");
    let out = run(["check", "balancer.conf"], Some(dir.path()));
    assert_eq!(out.code(), 2, "{}", out.both());
    assert!(
        out.stderr.contains("error: balancer.conf:"),
        "{}",
        out.both()
    );
}

// === Global flags on either side of the subcommand (SPEC 1) ===

/// Every place a global `flag value` may stand around `run CONFIG` and the
/// bare `CONFIG` (SPEC 1: before or after the subcommand), as command
/// lines run in the directory that holds `file`.
fn with_global_flag<'a>(flag: &'a str, value: &'a str, file: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec![flag, value, "run", file],
        vec!["run", flag, value, file],
        vec!["run", file, flag, value],
        vec![flag, value, file],
        vec![file, flag, value],
    ]
}

/// Starts `args` in a directory holding a config `web` over an echo
/// backend, waits until `web` listens and proves it by an echo through it.
/// Returns the stopped process's output.
fn serve_one_echo(args: &[&str]) -> Output {
    let backend = Backend::echo();
    let config = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr()
    );
    let mut balancer = Balancer::spawn(args, Some(config_dir(&config, Format::Toml)));
    balancer.wait_listening(&["web".to_string()]);
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"through"), Ok(()), "{args:?}");
    drop(client);
    balancer.stop()
}

#[test]
fn check_prints_the_same_summary_with_global_flags_before_or_after_it() {
    let dir = config_dir(&web_listening_on("127.0.0.1:0"), Format::Toml);
    let file = Format::Toml.file_name();
    let plain = run(["check", file], Some(dir.path()));
    assert_eq!(plain.code(), 0, "{}", plain.both());
    for (flag, value) in [("--log-format", "json"), ("--log-level", "debug")] {
        for args in [
            vec![flag, value, "check", file],
            vec!["check", flag, value, file],
            vec!["check", file, flag, value],
        ] {
            let out = run(&args, Some(dir.path()));
            assert_eq!(out.code(), 0, "{args:?}\n{}", out.both());
            assert_eq!(out.stdout, plain.stdout, "{args:?}");
        }
    }
}

#[test]
fn log_format_json_before_or_after_run_or_the_bare_config_writes_every_log_line_as_json() {
    let file = Format::Toml.file_name();
    for args in with_global_flag("--log-format", "json", file) {
        let out = serve_one_echo(&args);
        let lines: Vec<&str> = out.stderr.lines().collect();
        let objects: Vec<Value> = lines
            .iter()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| panic!("{args:?}: a log line is not a JSON object: {line}"))
            })
            .collect();
        let ready = objects
            .iter()
            .any(|o| o["fields"]["message"] == "listening" && o["fields"]["listener"] == "web");
        assert!(ready, "{args:?}: no JSON readiness line\n{}", out.both());
        assert!(
            lines.len() > 1,
            "{args:?}: no shutdown lines\n{}",
            out.both()
        );
    }
}

#[test]
fn log_level_debug_before_or_after_run_or_the_bare_config_logs_each_connection() {
    let file = Format::Toml.file_name();
    for args in with_global_flag("--log-level", "debug", file) {
        let out = serve_one_echo(&args);
        let connected = out
            .stderr
            .lines()
            .any(|line| line.contains(" DEBUG ") && line.contains("connected"));
        assert!(
            connected,
            "{args:?}: no debug line for the connection\n{}",
            out.both()
        );
    }
}
