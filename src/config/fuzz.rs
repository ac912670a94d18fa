//! Fuzzing the config loaders on stable Rust (issue 14): random text, and
//! random mutations of valid files in both formats, through the same
//! parse and validation as `balancer check`. Whatever the input: no panic,
//! and every error is a line that names the file, with no Rust debug
//! output in it. proptest keeps every input that once failed in
//! `proptest-regressions/`, and `cargo test` replays them first.

use proptest::prelude::*;

use super::{FileFormat, parse};

/// A native file that uses most of the format: the mutations start here.
const TOML_SEED: &str = r#"[global]
workers = 2
max_connections = 1000
drain_timeout = "5s"
access_log = "-"

[admin]
listen = "127.0.0.1:9000"

[[listeners]]
name = "web"
listen = "127.0.0.1:8000"
algorithm = "weighted_round_robin"
connect_timeout = "2s"
retries = 2
backends = ["127.0.0.1:8080", { address = "127.0.0.1:8081", weight = 3 }]

[listeners.health_check]
kind = "http"
path = "/health"
interval = "1s"

[[listeners]]
name = "api"
listen = "127.0.0.1:8001"
mode = "http"
algorithm = "source_hash"
request_header_timeout = "10s"
max_header_bytes = 65536
backends = ["127.0.0.1:8082"]
"#;

/// The seed project's file, as it ships.
const INI_SEED: &str = include_str!("../../tests/fixtures/setup.cfg");

/// Bytes that mean something to one of the formats, favoured by the
/// mutations so they reach past the first syntax error more often.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    ",",
    ":",
    "{",
    "}",
    "\n",
    "#",
    ";",
    "0",
    "-1",
    "999999999999",
    "1s",
    "weight",
    "backends",
    "listen",
    "127.0.0.1:",
    "[mappings]",
    "[options]",
    "true",
    "\u{0}",
    "é",
    "\\u",
];

/// One edit of a text: replace, insert or delete at a position (taken
/// modulo the length), with a byte or a token.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, t)| Edit::Insert(at, t)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
    ];
    proptest::collection::vec(edit, 1..8)
}

/// `seed` with `edits` applied, as text (invalid UTF-8 replaced, as a
/// file read as text could not hold it).
fn mutated(seed: &str, edits: &[Edit]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for edit in edits {
        let at = |i: usize| i % (bytes.len() + 1);
        match *edit {
            Edit::Replace(i, b) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] = b;
                }
            }
            Edit::Insert(i, t) => {
                let i = at(i);
                bytes.splice(i..i, TOKENS[t].bytes());
            }
            Edit::Delete(i, n) => {
                let i = at(i);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Parses `text` as `format`: a config, or errors that each name the file
/// and show no debug output.
fn check(text: &str, format: FileFormat, origin: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = parse(text, format, origin) {
        let shown = errors.to_string();
        prop_assert!(!shown.is_empty(), "an empty error for {text:?}");
        for line in shown.lines() {
            prop_assert!(
                line.starts_with(origin),
                "an error line that does not name the file: {line:?} (input {text:?})"
            );
            for debug in ["Some(", "None)", "Error {", "Kind(", "Os {"] {
                prop_assert!(
                    !line.contains(debug) || text.contains(debug),
                    "debug output {debug:?} in {line:?} (input {text:?})"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_text_is_a_config_or_errors_naming_the_file(text in "\\PC{0,300}") {
        check(&text, FileFormat::Toml, "fuzz.toml")?;
        check(&text, FileFormat::Ini, "fuzz.cfg")?;
    }

    #[test]
    fn a_mutated_native_file_is_a_config_or_errors_naming_the_file(edits in edits()) {
        check(&mutated(TOML_SEED, &edits), FileFormat::Toml, "fuzz.toml")?;
    }

    #[test]
    fn a_mutated_seed_file_is_a_config_or_errors_naming_the_file(edits in edits()) {
        check(&mutated(INI_SEED, &edits), FileFormat::Ini, "fuzz.cfg")?;
    }
}

#[test]
fn both_seeds_are_valid_configs() {
    assert!(parse(TOML_SEED, FileFormat::Toml, "seed.toml").is_ok());
    assert!(parse(INI_SEED, FileFormat::Ini, "setup.cfg").is_ok());
}
