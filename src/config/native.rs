//! TOML text to raw structs. (Stub.)
use super::ConfigErrors;
use super::validate::RawConfig;

pub(crate) fn parse(_text: &str, _origin: &str) -> Result<RawConfig, ConfigErrors> {
    Ok(RawConfig)
}
