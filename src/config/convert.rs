//! The model back to TOML text (`balancer convert`). (Stub.)
use super::Config;

/// TOML text that loads back into an equal `Config`.
pub fn to_toml(_config: &Config) -> String {
    String::new()
}
