//! Which certificate a handshake gets: the client's SNI matched against
//! each certificate's names, exactly or by a `*.` wildcard; the first
//! certificate when the client sends no SNI or no name matches.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Certificate;

/// A listener's certificates, indexed by name once so that a handshake
/// costs a hash lookup or two, whatever their number.
pub(super) struct ByName {
    /// Every certificate, in config order; never empty.
    keys: Vec<Arc<CertifiedKey>>,
    /// Exact names (lowercase) to the first certificate listing them.
    exact: HashMap<String, usize>,
    /// For each `*.rest` name, `rest` (lowercase) to the first certificate
    /// listing it.
    wildcard: HashMap<String, usize>,
}

impl ByName {
    /// The index of `certificates`; `None` when there are none.
    pub(super) fn new(certificates: &[Certificate]) -> Option<ByName> {
        if certificates.is_empty() {
            return None;
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, certificate) in certificates.iter().enumerate() {
            for name in &certificate.names {
                match name.strip_prefix("*.") {
                    Some(rest) => wildcard.entry(rest.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Some(ByName {
            keys: certificates.iter().map(|c| Arc::clone(&c.key)).collect(),
            exact,
            wildcard,
        })
    }

    /// The index of the certificate for server name `sni`: an exact name
    /// first, then a wildcard covering exactly one label (as RFC 6125:
    /// `*.example.com` covers `a.example.com`, not `example.com` nor
    /// `a.b.example.com`), else the first certificate.
    pub(super) fn pick(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&sni) {
            return i;
        }
        sni.split_once('.')
            .and_then(|(_, rest)| self.wildcard.get(rest))
            .copied()
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = self.pick(hello.server_name());
        self.keys.get(i).or(self.keys.first()).cloned()
    }
}

impl fmt::Debug for ByName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByName")
            .field("certificates", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::Files;

    fn index(sets: &[&[&str]]) -> ByName {
        let files = Files::new();
        let certificates: Vec<Certificate> = sets
            .iter()
            .enumerate()
            .map(|(i, names)| {
                let (cert, key) = files.pair(&format!("c{i}"), names);
                Certificate::load(&cert, &key).unwrap()
            })
            .collect();
        ByName::new(&certificates).unwrap()
    }

    #[test]
    fn sni_picks_by_exact_name_then_one_label_wildcard_else_the_first() {
        let by_name = index(&[
            &["default.test"],
            &["api.example.com", "www.example.com"],
            &["*.example.com"],
            &["example.com", "*.example.com"],
        ]);
        let cases = [
            (None, 0),
            (Some("default.test"), 0),
            (Some("api.example.com"), 1),
            (Some("WWW.Example.COM"), 1),
            (Some("www.example.com."), 1),
            // A wildcard covers one label: the first certificate listing it.
            (Some("shop.example.com"), 2),
            (Some("example.com"), 3),
            (Some("a.b.example.com"), 0),
            (Some("unknown.test"), 0),
            (Some("com"), 0),
        ];
        for (sni, expected) in cases {
            assert_eq!(by_name.pick(sni), expected, "for {sni:?}");
        }
    }

    #[test]
    fn no_certificates_make_no_index() {
        assert!(ByName::new(&[]).is_none());
    }
}
