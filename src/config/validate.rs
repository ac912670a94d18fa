//! Raw structs to the validated model. (Stub.)
use super::{Config, ConfigErrors};

/// Raw config as typed (stub).
pub(crate) struct RawConfig;

pub(crate) fn validate(_raw: RawConfig, origin: &str) -> Result<Config, ConfigErrors> {
    Err(super::ConfigError {
        origin: origin.to_string(),
        line: None,
        problem: "not implemented".into(),
    }
    .into())
}
