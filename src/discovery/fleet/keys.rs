//! The fleet's keys and values in etcd (SPEC 10): where a listener's
//! backends live, what a value says, and how a malformed one is told in
//! words. Pure: no I/O, unit-tested from strings.
//!
//! - `{prefix}/listeners/{listener}/backends/{address}`: one backend,
//!   its value `{"weight": N, "state": "up"|"draining"}` (`state` may be
//!   left out: `up`).
//! - `{prefix}/listeners/{listener}/seeded`: written once, with the
//!   first backends, by the instance that seeded the listener; while it
//!   exists no instance seeds that listener again, even when every
//!   backend key is gone.

use serde::{Deserialize, Serialize};

use crate::backend::BackendState;
use crate::config::limits::MAX_WEIGHT;

/// The keys of one fleet: every key under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `[fleet] prefix`: starts with `/`, does not end with one.
    prefix: String,
}

impl Layout {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix of every listener's keys: one read and one watch cover
    /// them all.
    pub fn listeners(&self) -> String {
        format!("{}/listeners/", self.prefix)
    }

    /// The prefix of listener `listener`'s backend keys.
    pub fn backends(&self, listener: &str) -> String {
        format!("{}/listeners/{listener}/backends/", self.prefix)
    }

    /// The key of backend `address` of `listener`.
    pub fn backend(&self, listener: &str, address: &str) -> String {
        format!("{}{address}", self.backends(listener))
    }

    /// The key that says `listener` was seeded.
    pub fn seeded(&self, listener: &str) -> String {
        format!("{}/listeners/{listener}/seeded", self.prefix)
    }

    /// The listener (one of `listeners`) and backend address a key names;
    /// `None` for a key of another listener, or not a backend's. When
    /// names nest (`a` and `a/backends/b`), the longest that fits wins.
    pub fn parse<'k>(
        &self,
        key: &'k str,
        listeners: impl IntoIterator<Item = &'k str>,
    ) -> Option<(&'k str, &'k str)> {
        listeners
            .into_iter()
            .filter_map(|name| {
                let address = key.strip_prefix(&self.backends(name))?;
                Some((name, address))
            })
            .max_by_key(|(name, _)| name.len())
    }
}

/// A backend's value in etcd, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// 1 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// `Up` or `Draining`.
    pub state: BackendState,
}

/// A value as typed; unknown fields are ignored (a later version may add
/// some).
#[derive(Debug, Deserialize, Serialize)]
struct Raw {
    weight: Option<i64>,
    state: Option<String>,
}

impl Value {
    /// Parses a value read from etcd; `Err` says what is wrong, in words.
    pub fn parse(bytes: &[u8]) -> Result<Value, String> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JSON object with \"weight\" and \"state\": {e}"))?;
        let weight = raw.weight.ok_or("missing \"weight\"")?;
        let weight = u32::try_from(weight)
            .ok()
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
            .ok_or_else(|| format!("weight {weight} is out of range (1 to {MAX_WEIGHT})"))?;
        let state = match raw.state.as_deref() {
            None | Some("up") => BackendState::Up,
            Some("draining") => BackendState::Draining,
            Some(other) => {
                return Err(format!("state \"{other}\" is not \"up\" or \"draining\""));
            }
        };
        Ok(Value { weight, state })
    }

    /// The value as stored: `{"weight":N,"state":"up"}`.
    pub fn encode(&self) -> String {
        let state = match self.state {
            BackendState::Draining => "draining",
            _ => "up",
        };
        serde_json::json!({ "weight": self.weight, "state": state }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_of_spec_10() {
        let layout = Layout::new("/balancer");
        assert_eq!(layout.listeners(), "/balancer/listeners/");
        assert_eq!(
            layout.backend("web", "10.0.0.1:80"),
            "/balancer/listeners/web/backends/10.0.0.1:80"
        );
        assert_eq!(layout.seeded("web"), "/balancer/listeners/web/seeded");
    }

    #[test]
    fn a_key_names_its_listener_and_backend_when_the_listener_is_known() {
        let layout = Layout::new("/b");
        let names = ["web", "web/backends/x", "api"];
        assert_eq!(
            layout.parse("/b/listeners/web/backends/[::1]:80", names),
            Some(("web", "[::1]:80"))
        );
        assert_eq!(
            layout.parse("/b/listeners/web/backends/x/backends/a:1", names),
            Some(("web/backends/x", "a:1"))
        );
        assert_eq!(layout.parse("/b/listeners/web/seeded", names), None);
        assert_eq!(layout.parse("/b/listeners/other/backends/a:1", names), None);
        assert_eq!(layout.parse("/c/listeners/web/backends/a:1", names), None);
    }

    #[test]
    fn values_are_checked_and_said_in_words() {
        assert_eq!(
            Value::parse(br#"{"weight": 3, "state": "draining"}"#),
            Ok(Value {
                weight: 3,
                state: BackendState::Draining
            })
        );
        assert_eq!(
            Value::parse(br#"{"weight": 1, "note": "ignored"}"#),
            Ok(Value {
                weight: 1,
                state: BackendState::Up
            })
        );
        for (bad, says) in [
            (&b"not json"[..], "not a JSON object"),
            (br#"{"state": "up"}"#, "missing \"weight\""),
            (br#"{"weight": 0}"#, "weight 0 is out of range"),
            (br#"{"weight": 10001}"#, "weight 10001 is out of range"),
            (br#"{"weight": -2}"#, "weight -2 is out of range"),
            (br#"{"weight": 1, "state": "down"}"#, "state \"down\""),
            (br#"{"weight": "2"}"#, "not a JSON object"),
        ] {
            let error = Value::parse(bad).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn an_encoded_value_parses_back() {
        for state in [BackendState::Up, BackendState::Draining] {
            let value = Value { weight: 7, state };
            assert_eq!(Value::parse(value.encode().as_bytes()), Ok(value));
        }
    }
}
