//! Fuzzing the admin API through the real binary (issue 14): random and
//! mutated JSON bodies for the backend changes, and random path segments,
//! sent to one running balancer (one test, its own runner, so the process
//! is stopped at its end). Whatever comes: an answer in time, never
//! a 5xx, an error as JSON `{"error": "..."}` without Rust debug output,
//! and the balancer still serving its listener afterwards.

use std::net::SocketAddr;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::harness::{Backend, Balancer, DEADLINE, Format, connect, echoes, http_request};

/// Sends one request; checks the answer's status and, for an error, its
/// JSON body.
fn exchange(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(), TestCaseError> {
    let json = ("Content-Type", "application/json");
    let answer = http_request(admin, method, path, &[json], body, DEADLINE)
        .map_err(|e| TestCaseError::fail(format!("{method} {path}: no answer: {e}")))?;
    prop_assert!(
        answer.status < 500,
        "{method} {path} {body:?}: {} {}",
        answer.status,
        answer.body
    );
    if answer.status >= 400 {
        let parsed: Value = serde_json::from_str(&answer.body).map_err(|e| {
            TestCaseError::fail(format!("{method} {path}: not JSON ({e}): {}", answer.body))
        })?;
        let error = parsed["error"].as_str().unwrap_or_default();
        prop_assert!(!error.is_empty(), "no error text: {}", answer.body);
        for debug in ["Some(", "Error {", "Kind(", "Os {", "Utf8Error"] {
            prop_assert!(!error.contains(debug), "debug output in {error:?}");
        }
    }
    Ok(())
}

/// JSON-ish text: fragments of the change bodies, random values, broken
/// syntax.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("\"address\"".to_string()),
        Just("\"weight\"".to_string()),
        Just("\"state\"".to_string()),
        "\"[a-z]{0,8}\"",
    ];
    let value = prop_oneof![
        Just("\"127.0.0.1:9\"".to_string()),
        Just("\"draining\"".to_string()),
        Just("\"up\"".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "\"\\PC{0,20}\"",
        "[0-9:.\\[\\]a-z]{0,30}",
    ];
    let object = proptest::collection::vec((field, value), 0..4).prop_map(|pairs| {
        let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", inner.join(", ")).into_bytes()
    });
    prop_oneof![
        object,
        proptest::collection::vec(any::<u8>(), 0..64),
        "\\PC{0,80}".prop_map(String::into_bytes),
    ]
}

/// A path segment: printable text, percent escapes (valid and not),
/// slashes and dots.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("127.0.0.1:9".to_string()),
        Just("127.0.0.1%3A9".to_string()),
        "[a-zA-Z0-9%./:_~-]{0,24}",
        "%[0-9A-Fa-fg-z]{0,2}",
        Just("..".to_string()),
    ]
}

#[test]
fn any_change_body_or_path_segment_is_answered_below_500_with_a_json_error() {
    let backend = Backend::echo();
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\n\
         listen = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        backend.addr()
    );
    let balancer = Balancer::start(&config, Format::Toml);
    let admin = balancer.wait_admin();
    let method = prop_oneof![Just("GET"), Just("PATCH"), Just("DELETE"), Just("POST")];
    let cases = (bodies(), any::<bool>(), segment(), segment(), method);
    let mut runner = TestRunner::new(Config::with_cases(128));
    let result = runner.run(&cases, |(body, patch, listener, address, method)| {
        if patch {
            exchange(
                admin,
                "PATCH",
                "/api/listeners/web/backends/127.0.0.1%3A9",
                Some(&body),
            )?;
        } else {
            exchange(admin, "POST", "/api/listeners/web/backends", Some(&body))?;
        }
        let path = format!("/api/listeners/{listener}/backends/{address}");
        let weight = (method == "PATCH" || method == "POST").then_some(&b"{\"weight\": 2}"[..]);
        exchange(admin, method, &path, weight)
    });
    if let Err(failure) = result {
        panic!("{failure}\n{}", balancer.stderr());
    }
    // Whatever the changes did (backends added at a refused address,
    // drained, reweighted), the echo backend is still up and a client is
    // served (a refused connect moves on to the next backend).
    let mut client = connect(balancer.addr("web"));
    assert_eq!(echoes(&mut client, b"still here"), Ok(()));
    drop(client);
    balancer.stop();
}
