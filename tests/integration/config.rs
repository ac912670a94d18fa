//! What `balancer check` refuses before anything runs, and how it prints
//! what it accepts (issue 16, items 9 to 13): configs that would pass
//! `check` and then fail (an IPv4-mapped listen address, a source address
//! of the wrong family or not on this machine), durations outside the
//! documented grammar, wrong types inside a backend table, which must name
//! their listener, every bad backend of an INI mapping in one run, and
//! listener names that would split log lines. Each test runs the real
//! binary on a file, as a user does.

use crate::harness::{Format, Output, assert_no_debug_formatting, check, run_with_config};

/// A TOML listener `web` listening on `listen` whose line 4 is `line4`
/// (lines 1-3: table, name, listen; line 5: backends).
fn web(listen: &str, line4: &str, backends: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"{listen}\"\n{line4}\nbackends = {backends}\n"
    )
}

/// Runs `check` on `text` and asserts that it exits 2, that every line of
/// stderr is one error, with no debug formatting, and that one of them
/// starts with `location` and holds every fragment of `names`. Returns
/// the output for more checks.
#[track_caller]
fn assert_refused(format: Format, text: &str, location: &str, names: &[&str]) -> Output {
    let out = check(text, format);
    let context = format!("--- config ---\n{text}{}", out.both());
    assert_eq!(out.code(), 2, "check did not refuse it\n{context}");
    assert_no_debug_formatting("check", &out.both());
    for line in out.stderr.lines() {
        assert!(
            line.starts_with("error: "),
            "a stray line {line:?}\n{context}"
        );
    }
    let prefix = format!("error: {}:{location}: ", format.file_name());
    let found = out
        .stderr
        .lines()
        .any(|line| line.starts_with(&prefix) && names.iter().all(|name| line.contains(name)));
    assert!(
        found,
        "no error line {prefix:?} naming {names:?}\n{context}"
    );
    out
}

// === item 9: configs that pass check but cannot run ===

#[test]
fn an_ipv4_mapped_listen_address_is_refused_saying_to_write_the_ipv4_one_issue_16() {
    let text = web("[::ffff:127.0.0.1]:24999", "", "[\"127.0.0.1:8080\"]");
    assert_refused(
        Format::Toml,
        &text,
        "3",
        &[
            "listener \"web\"",
            "key \"listen\"",
            "IPv4-mapped",
            "write the IPv4 address 127.0.0.1",
        ],
    );
    // `run` refuses it the same way, before binding anything (exit 2, not 1).
    let out = run_with_config(&["run"], &text, Format::Toml);
    assert_eq!(out.code(), 2, "{}", out.both());

    let admin = format!(
        "[admin]\nlisten = \"[::ffff:127.0.0.1]:9000\"\n{}",
        web("127.0.0.1:0", "", "[\"127.0.0.1:8080\"]")
    );
    assert_refused(
        Format::Toml,
        &admin,
        "2",
        &["[admin]", "key \"listen\"", "IPv4-mapped"],
    );
}

#[test]
fn a_source_address_of_the_other_family_than_a_backend_is_refused_naming_both_issue_16() {
    let v6_source = web(
        "127.0.0.1:0",
        "source_address = \"::1\"",
        "[\"127.0.0.1:8080\"]",
    );
    assert_refused(
        Format::Toml,
        &v6_source,
        "4",
        &[
            "listener \"web\"",
            "key \"source_address\"",
            "::1",
            "\"127.0.0.1:8080\"",
        ],
    );
    // One backend of the other family among good ones is enough.
    let v4_source = web(
        "127.0.0.1:0",
        "source_address = \"127.0.0.1\"",
        "[\"127.0.0.1:8080\", \"[::1]:8081\"]",
    );
    assert_refused(
        Format::Toml,
        &v4_source,
        "4",
        &[
            "listener \"web\"",
            "key \"source_address\"",
            "127.0.0.1",
            "\"[::1]:8081\"",
        ],
    );
}

#[test]
fn a_source_address_that_is_not_on_this_machine_is_refused_issue_16() {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address.
    let text = web(
        "127.0.0.1:0",
        "source_address = \"192.0.2.1\"",
        "[\"127.0.0.1:8080\"]",
    );
    assert_refused(
        Format::Toml,
        &text,
        "4",
        &[
            "listener \"web\"",
            "key \"source_address\"",
            "192.0.2.1",
            "cannot be bound",
        ],
    );
    let mapped = web(
        "127.0.0.1:0",
        "source_address = \"::ffff:127.0.0.2\"",
        "[\"127.0.0.1:8080\"]",
    );
    assert_refused(
        Format::Toml,
        &mapped,
        "4",
        &["key \"source_address\"", "write the IPv4 address 127.0.0.2"],
    );
}

#[test]
fn a_local_source_address_of_the_backends_family_passes_check() {
    let text = web(
        "127.0.0.1:0",
        "source_address = \"127.0.0.2\"",
        "[\"127.0.0.1:8080\", \"localhost:8081\"]",
    );
    let out = check(&text, Format::Toml);
    // localhost may resolve to ::1 first on some systems; then the family
    // check rightly refuses it, naming it.
    if out.code() != 0 {
        assert!(out.stderr.contains("\"localhost:8081\""), "{}", out.both());
        return;
    }
    assert_no_debug_formatting("check", &out.both());
}
// === item 10: durations ===

#[test]
fn durations_outside_the_documented_grammar_are_refused_naming_key_and_value_issue_16() {
    let cases = [
        ("365d", "unknown unit \"d\""),
        ("1us", "unknown unit \"us\""),
        ("1ns", "unknown unit \"ns\""),
        ("1sec", "unknown unit \"sec\""),
        ("1.5s", "whole"),
        ("30m 1h", "largest unit"),
        ("30", "expected a number and a unit"),
    ];
    for (value, problem) in cases {
        let text = web(
            "127.0.0.1:0",
            &format!("idle_timeout = \"{value}\""),
            "[\"127.0.0.1:8080\"]",
        );
        let quoted = format!("\"{value}\"");
        assert_refused(
            Format::Toml,
            &text,
            "4",
            &["listener \"web\"", "key \"idle_timeout\"", &quoted, problem],
        );
    }
}

#[test]
fn check_prints_every_duration_in_the_largest_unit_that_divides_it_issue_16() {
    let text = format!(
        "[global]\ndrain_timeout = \"8760h\"\n{}\
         slow_start = \"1h 30m\"\n\
         [listeners.health_check]\ninterval = \"1h 30m\"\ntimeout = \"1500ms\"\n\
         [listeners.passive_check]\nbackoff = \"90s\"\n",
        web("127.0.0.1:0", "", "[\"127.0.0.1:8080\"]")
    );
    let out = check(&text, Format::Toml);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&[
        "drain_timeout 8760h,",
        "every 90m, timeout 1500ms,",
        "tried again after 90s",
        "slow start: 90m",
    ]);
    for humantime_word in ["months", "days", "1h 30m"] {
        assert!(!out.stdout.contains(humantime_word), "{}", out.both());
    }
}
// === item 11: type errors inside a backend table ===

#[test]
fn a_mistyped_weight_in_a_backend_table_names_the_listener_the_backend_and_the_key_issue_16() {
    for weight in ["1.5", "\"3\"", "true"] {
        let backends = format!("[{{ address = \"127.0.0.1:8080\", weight = {weight} }}]");
        let text = web("127.0.0.1:0", "", &backends);
        let value = weight.trim_matches('"');
        assert_refused(
            Format::Toml,
            &text,
            "5",
            &[
                "listener \"web\"",
                "backend \"127.0.0.1:8080\"",
                "key \"weight\"",
                value,
                "expected an integer",
            ],
        );
    }
    // A number too large for any weight is out of range, not mistyped.
    let huge = web(
        "127.0.0.1:0",
        "",
        "[{ address = \"127.0.0.1:8080\", weight = 99999999999999999999 }]",
    );
    assert_refused(
        Format::Toml,
        &huge,
        "5",
        &[
            "listener \"web\"",
            "backend \"127.0.0.1:8080\"",
            "weight 99999999999999999999 is out of range",
        ],
    );
    // The array-of-tables form, with another problem: both are reported,
    // since a mistyped weight no longer stops the reading.
    let text = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"fastest\"\n\
                [[listeners.backends]]\naddress = \"127.0.0.1:8080\"\nweight = 2.5\n";
    let out = assert_refused(
        Format::Toml,
        text,
        "7",
        &[
            "listener \"web\"",
            "backend \"127.0.0.1:8080\"",
            "key \"weight\"",
            "2.5",
        ],
    );
    assert!(out.stderr.contains("fastest"), "{}", out.both());
}

#[test]
fn a_mistyped_backend_address_names_the_listener_and_the_key_issue_16() {
    let text = web(
        "127.0.0.1:0",
        "",
        "[\"127.0.0.1:8081\", { address = 8080 }]",
    );
    assert_refused(
        Format::Toml,
        &text,
        "5",
        &[
            "listener \"web\"",
            "backend #2",
            "key \"address\"",
            "8080",
            "expected a string",
        ],
    );
}
// === item 12: every bad backend of an INI mapping ===

#[test]
fn every_bad_backend_of_an_ini_mapping_is_reported_in_one_run_issue_16() {
    let text = "[mappings]\n24003=127.0.0.1:8080:0,127.0.0.1:8081:abc,127.0.0.1:8082:2\n";
    let out = assert_refused(
        Format::Ini,
        text,
        "2",
        &[
            "mapping \"24003\"",
            "backend \"127.0.0.1:8080\"",
            "weight 0",
        ],
    );
    assert!(
        out.stderr.contains(
            "error: setup.cfg:2: mapping \"24003\": backend \"127.0.0.1:8081:abc\": \
             weight \"abc\" is not a number"
        ),
        "{}",
        out.both()
    );
    assert_eq!(out.stderr.lines().count(), 2, "{}", out.both());
}

// === item 13: listener names ===

#[test]
fn listener_names_with_control_characters_or_only_spaces_are_refused_issue_16() {
    // (the name as a TOML basic string, what the error shows of it)
    let cases = [
        ("a\\nb", "name \"a\\nb\""),
        ("a\\u0000b", "name \"a\\u{0}b\""),
        ("a\\tb", "name \"a\\tb\""),
        ("web\\r", "name \"web\\r\""),
        ("   ", "name \"   \""),
    ];
    for (name, shown) in cases {
        let text = format!(
            "[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n\
             backends = [\"127.0.0.1:8080\"]\n"
        );
        assert_refused(
            Format::Toml,
            &text,
            "2",
            &["listener \"127.0.0.1:0\"", "key \"name\"", shown],
        );
    }
}

#[test]
fn a_default_name_is_the_listen_address_without_the_spaces_around_it_issue_16() {
    let text = "[[listeners]]\nlisten = \" 127.0.0.1:0\\n\"\nbackends = [\"127.0.0.1:8080\"]\n";
    let out = check(text, Format::Toml);
    assert_eq!(out.code(), 0, "{}", out.both());
    out.assert_stdout_contains(&["listener 127.0.0.1:0 on 127.0.0.1:0 "]);
}
