//! `[fleet]`: the etcd endpoints (each `http://host:port`, at least one)
//! and the key prefix (`/` first, none last).

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::native::RawFleet;
use crate::config::{Fleet, defaults};

use super::{Validator, with};

impl Validator<'_> {
    /// `[fleet]`; `None` when anything in it is bad (reported).
    pub(super) fn fleet(&mut self, spanned: &Spanned<RawFleet>) -> Option<Fleet> {
        let raw = spanned.get_ref();
        let scope = [Context::Table("fleet".into())];
        let etcd = match &raw.etcd {
            None => {
                self.missing(spanned.span(), &scope, "etcd");
                None
            }
            Some(list) if list.get_ref().is_empty() => {
                let context = with(&scope, Context::Key("etcd".into()));
                self.report(list.span(), context, Problem::EmptyEtcdEndpoints);
                None
            }
            list => self.strings(list.as_ref(), &scope, "etcd", etcd_endpoint),
        };
        let prefix = self.text(&raw.prefix, &scope, "prefix", fleet_prefix);
        Some(Fleet {
            etcd: etcd?,
            prefix: prefix?.unwrap_or_else(|| defaults::FLEET_PREFIX.to_string()),
        })
    }
}

/// An etcd endpoint: `http://` and a `host:port` (an IP literal, `[ipv6]`
/// in brackets, or a name), nothing after the port.
pub(super) fn etcd_endpoint(text: &str) -> Result<String, Problem> {
    let bad = |reason| Problem::BadEtcdEndpoint {
        value: text.to_string(),
        reason,
    };
    if text.starts_with("https://") {
        return Err(bad("TLS to etcd is not supported; use http://"));
    }
    let Some(rest) = text.strip_prefix("http://") else {
        return Err(bad("it must start with http://"));
    };
    if rest.contains('/') {
        return Err(bad("nothing may follow the port"));
    }
    crate::net::addr::backend_address(rest)
        .map_err(|_| bad("the host and port after http:// do not parse"))?;
    Ok(text.to_string())
}

/// A key prefix: starts with `/`, does not end with one (so
/// `{prefix}/listeners/...` has no empty segment).
pub(super) fn fleet_prefix(text: &str) -> Result<String, Problem> {
    if text.len() < 2 || !text.starts_with('/') || text.ends_with('/') {
        return Err(Problem::BadFleetPrefix(text.to_string()));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_endpoint_is_http_with_a_host_and_a_port() {
        for good in [
            "http://127.0.0.1:2379",
            "http://[::1]:2379",
            "http://etcd-0.etcd.svc:2379",
        ] {
            assert_eq!(etcd_endpoint(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "127.0.0.1:2379",
            "https://127.0.0.1:2379",
            "http://127.0.0.1",
            "http://127.0.0.1:2379/",
            "http://127.0.0.1:99999",
            "http://",
        ] {
            assert!(
                matches!(etcd_endpoint(bad), Err(Problem::BadEtcdEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_prefix_starts_with_a_slash_and_does_not_end_with_one() {
        assert_eq!(fleet_prefix("/balancer").as_deref(), Ok("/balancer"));
        assert_eq!(fleet_prefix("/a/b").as_deref(), Ok("/a/b"));
        for bad in ["", "/", "balancer", "/balancer/"] {
            assert_eq!(
                fleet_prefix(bad),
                Err(Problem::BadFleetPrefix(bad.to_string()))
            );
        }
    }
}
