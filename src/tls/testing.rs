//! Test helpers of the `tls` module: certificates made with rcgen and
//! written to a temporary folder, and a rustls client to talk to a server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use rustls::pki_types::CertificateDer;

/// A temporary folder for certificate and key files, removed on drop.
pub(crate) struct Files(tempfile::TempDir);

impl Files {
    pub(crate) fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    /// Where `name` is (or would be) in the folder.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `bytes` to `name`; its path.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A self-signed ECDSA P-256 certificate for `names` and its key,
    /// written to `NAME.pem` and `NAME.key`.
    pub(crate) fn pair(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let made = self_signed(names, &rcgen::PKCS_ECDSA_P256_SHA256);
        (
            self.write(&format!("{name}.pem"), made.cert.pem().as_bytes()),
            self.write(
                &format!("{name}.key"),
                made.signing_key.serialize_pem().as_bytes(),
            ),
        )
    }
}

/// Fails when `message` shows Rust debug formatting or ends with a period.
pub(crate) fn assert_words(message: &str) {
    for pattern in ["Some(", "None", "Os {", "{ ", "Error {", "kind:"] {
        assert!(!message.contains(pattern), "{pattern} in: {message}");
    }
    assert!(!message.ends_with('.'), "trailing period: {message}");
}

/// A self-signed certificate for `names` (DNS names or IP addresses),
/// signed with a new key of `alg`.
pub(crate) fn self_signed(
    names: &[&str],
    alg: &'static SignatureAlgorithm,
) -> rcgen::CertifiedKey<KeyPair> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let signing_key = KeyPair::generate_for(alg).unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .self_signed(&signing_key)
        .unwrap();
    rcgen::CertifiedKey { cert, signing_key }
}

/// The key in its algorithm's own PEM format, `EC PRIVATE KEY` (SEC1) or
/// `RSA PRIVATE KEY` (PKCS#1), taken out of its PKCS#8 wrapping: the
/// third field of a PKCS#8 `PrivateKeyInfo` is an octet string holding
/// exactly that. `None` for algorithms without one (Ed25519).
pub(crate) fn legacy_key_pem(key: &KeyPair) -> Option<String> {
    let label = if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        "RSA PRIVATE KEY"
    } else if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        "EC PRIVATE KEY"
    } else {
        return None;
    };
    let der = key.serialize_der();
    let (_, info) = x509_parser::der_parser::parse_der(&der).unwrap();
    let fields = info.as_sequence().unwrap();
    let inner = fields[2].as_slice().unwrap();
    Some(pem::encode(&pem::Pem::new(label, inner)))
}

/// A rustls client config that trusts exactly `roots` (the server's
/// self-signed certificates), offering `alpn`, with TLS `versions`.
pub(crate) fn client_config(
    roots: &[&Path],
    alpn: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for path in roots {
        use rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_file_iter(path).unwrap() {
            store.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}
