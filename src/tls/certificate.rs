//! One certificate of a listener: its chain and private key read from PEM
//! files, checked to belong together, and what `balancer check` and the
//! expiry gauge show of it (its names and when it expires).
//!
//! Everything read here comes from outside, so every failure is a
//! [`FileProblem`] naming what is wrong with which file, never a panic.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use crate::net::io_reason;

/// What is wrong with a certificate or key file, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// The file could not be read (missing, a directory, no permission).
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// The file is not PEM text, or a PEM block in it is broken.
    #[error("not a PEM file: {0}")]
    NotPem(String),
    /// A cert file without a `CERTIFICATE` block.
    #[error("no certificate in it (expected a PEM \"CERTIFICATE\" block)")]
    NoCertificate,
    /// A key file without a private key block.
    #[error(
        "no private key in it (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" \
         or \"EC PRIVATE KEY\" block)"
    )]
    NoKey,
    /// A key file whose key is encrypted with a passphrase.
    #[error("the private key is encrypted (give it unencrypted: nothing asks for a passphrase)")]
    EncryptedKey,
    /// The first certificate is not an X.509 certificate that parses.
    #[error("the certificate does not parse: {0}")]
    BadCertificate(String),
    /// The key is not one the crypto provider can sign with.
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// The key is not the private half of the certificate's public key.
    #[error("the private key does not match the certificate in {}", .0.display())]
    KeyMismatch(PathBuf),
}

/// A [`FileProblem`] and the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file as it was opened (resolved against the config's folder).
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: FileProblem,
}

/// A certificate chain with its private key, read and matched, ready to
/// be served.
#[derive(Clone)]
pub struct Certificate {
    /// The chain's file, as opened.
    pub cert_path: PathBuf,
    /// The key's file, as opened.
    pub key_path: PathBuf,
    /// The names SNI is matched against, lowercase: the certificate's DNS
    /// subject alternative names (`*.` wildcards as written), or its
    /// subject's common name when it has none (as older certificates do).
    pub names: Vec<String>,
    /// Every subject alternative name, DNS names and IP addresses, in the
    /// certificate's order: what `balancer check` prints.
    pub alt_names: Vec<String>,
    /// The end of its validity (`notAfter`).
    pub not_after: SystemTime,
    /// The chain and signing key rustls serves.
    pub(super) key: Arc<CertifiedKey>,
}

impl Certificate {
    /// Reads the chain at `cert_path` (the leaf first, then its
    /// intermediates) and the private key at `key_path` (PKCS#8, PKCS#1
    /// RSA or SEC1 EC), and checks that the key is the leaf's.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Certificate, FileError> {
        let chain = read_chain(cert_path).map_err(at(cert_path))?;
        let key = read_key(key_path).map_err(at(key_path))?;
        let leaf = chain.first().ok_or(FileProblem::NoCertificate);
        let about = Leaf::parse(leaf.map_err(at(cert_path))?).map_err(at(cert_path))?;
        let key = CertifiedKey::from_der(chain, key, &super::provider())
            .map_err(|e| key_problem(&e, cert_path))
            .map_err(at(key_path))?;
        Ok(Certificate {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            names: about.names,
            alt_names: about.alt_names,
            not_after: about.not_after,
            key: Arc::new(key),
        })
    }

    /// How the certificate is named in metrics and summaries: its first
    /// subject alternative name, else its common name, else its file.
    pub fn name(&self) -> String {
        self.alt_names
            .first()
            .or(self.names.first())
            .cloned()
            .unwrap_or_else(|| self.cert_path.display().to_string())
    }
}

impl PartialEq for Certificate {
    /// The same files holding the same chain. (A key matches exactly one
    /// certificate, so the chain stands for the key too.)
    fn eq(&self, other: &Certificate) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.key.cert == other.key.cert
    }
}

impl fmt::Debug for Certificate {
    /// Names and files only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// What turns a problem into an error about the file at `path`.
fn at(path: &Path) -> impl Fn(FileProblem) -> FileError + '_ {
    move |problem| FileError {
        path: path.to_path_buf(),
        problem,
    }
}

/// Reads a file whole, with the reason in words when it cannot be.
fn read(path: &Path) -> Result<Vec<u8>, FileProblem> {
    std::fs::read(path).map_err(|e| FileProblem::Unreadable(io_reason(&e)))
}

/// Every `CERTIFICATE` block of the file at `path`, in order.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileProblem> {
    let text = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(&e))?;
    if chain.is_empty() {
        return Err(FileProblem::NoCertificate);
    }
    Ok(chain)
}

/// The first private key of the file at `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileProblem> {
    let text = read(path)?;
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if has_encrypted_key(&text) => Err(FileProblem::EncryptedKey),
        Err(pem::Error::NoItemsFound) => Err(FileProblem::NoKey),
        Err(e) => Err(pem_problem(&e)),
    }
}

/// Whether PEM `text` holds an `ENCRYPTED PRIVATE KEY` block (which the
/// PEM reader skips as a kind it does not know).
fn has_encrypted_key(text: &[u8]) -> bool {
    const MARKER: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    text.windows(MARKER.len()).any(|w| w == MARKER)
}

/// A PEM reading error in words.
fn pem_problem(err: &pem::Error) -> FileProblem {
    let what = match err {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a block's base64 does not decode",
        pem::Error::Io(_) => "it could not be read to its end",
        _ => "it cannot be read as PEM",
    };
    FileProblem::NotPem(what.to_string())
}

/// What rustls refused about a chain and key, in words.
fn key_problem(err: &rustls::Error, cert_path: &Path) -> FileProblem {
    match err {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            FileProblem::KeyMismatch(cert_path.to_path_buf())
        }
        rustls::Error::InvalidCertificate(_) => {
            FileProblem::BadCertificate("the certificate's public key cannot be read".to_string())
        }
        _ => {
            FileProblem::BadKey("not an RSA, ECDSA or Ed25519 key this build can sign with".into())
        }
    }
}

/// What is shown of a leaf certificate.
struct Leaf {
    names: Vec<String>,
    alt_names: Vec<String>,
    not_after: SystemTime,
}

impl Leaf {
    /// Reads the names and the expiry of the DER certificate `der`.
    fn parse(der: &CertificateDer<'_>) -> Result<Leaf, FileProblem> {
        let bad = |what: &str| FileProblem::BadCertificate(what.to_string());
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| bad("it is not a DER X.509 certificate"))?;
        let mut dns = Vec::new();
        let mut alt_names = Vec::new();
        let sans = cert
            .subject_alternative_name()
            .map_err(|_| bad("its subject alternative names are malformed"))?;
        for name in sans.iter().flat_map(|ext| &ext.value.general_names) {
            match name {
                GeneralName::DNSName(name) => {
                    dns.push(name.to_ascii_lowercase());
                    alt_names.push(name.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => alt_names.extend(ip_text(bytes)),
                _ => {}
            }
        }
        if dns.is_empty() {
            let common_name = cert.subject().iter_common_name().next();
            dns.extend(
                common_name
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        let seconds = cert.validity().not_after.timestamp();
        let not_after = u64::try_from(seconds)
            .ok()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .unwrap_or(UNIX_EPOCH);
        Ok(Leaf {
            names: dns,
            alt_names,
            not_after,
        })
    }
}

/// An IP address subject alternative name (4 or 16 bytes) as text.
fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{Files, self_signed};

    #[test]
    fn a_chain_and_its_key_load_with_names_and_expiry() {
        let files = Files::new();
        let (cert, key) = files.pair("site", &["example.com", "*.example.com", "127.0.0.1"]);
        let loaded = Certificate::load(&cert, &key).unwrap();
        assert_eq!(loaded.names, ["example.com", "*.example.com"]);
        assert_eq!(
            loaded.alt_names,
            ["example.com", "*.example.com", "127.0.0.1"]
        );
        assert_eq!(loaded.name(), "example.com");
        assert!(loaded.not_after > SystemTime::now());
    }

    #[test]
    fn every_key_format_loads_pkcs8_rsa_and_ec() {
        let files = Files::new();
        for (name, alg) in [
            ("ec", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("ed", &rcgen::PKCS_ED25519),
            ("rsa", &rcgen::PKCS_RSA_SHA256),
        ] {
            let generated = self_signed(&["a.test"], alg);
            let cert = files.write(&format!("{name}.pem"), generated.cert.pem().as_bytes());
            // PKCS#8 as rcgen writes it.
            let pkcs8 = files.write(
                &format!("{name}.key"),
                generated.signing_key.serialize_pem().as_bytes(),
            );
            Certificate::load(&cert, &pkcs8).unwrap();
            // The same key in its algorithm's own format (SEC1, PKCS#1).
            if let Some(own) = crate::tls::testing::legacy_key_pem(&generated.signing_key) {
                let legacy = files.write(&format!("{name}.legacy.key"), own.as_bytes());
                Certificate::load(&cert, &legacy).unwrap();
            }
        }
    }

    #[test]
    fn each_bad_file_is_a_problem_naming_that_file() {
        let files = Files::new();
        let (cert, key) = files.pair("site", &["a.test"]);
        let (_, other_key) = files.pair("other", &["b.test"]);
        let missing = files.path("missing.pem");
        let garbage = files.write("garbage.pem", b"hello, this is not PEM\n");
        let broken = files.write("broken.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
        let encrypted = files.write(
            "encrypted.key",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let not_der = files.write(
            "notder.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let cases: [(&Path, &Path, &Path, FileProblem); 8] = [
            (
                &missing,
                &key,
                &missing,
                FileProblem::Unreadable("no such file or directory".into()),
            ),
            (
                &cert,
                &missing,
                &missing,
                FileProblem::Unreadable("no such file or directory".into()),
            ),
            (&garbage, &key, &garbage, FileProblem::NoCertificate),
            (&cert, &garbage, &garbage, FileProblem::NoKey),
            // A key file given as the certificate: PEM, but no certificate.
            (&key, &key, &key, FileProblem::NoCertificate),
            (
                &broken,
                &key,
                &broken,
                FileProblem::NotPem("a block has no END line".into()),
            ),
            (&cert, &encrypted, &encrypted, FileProblem::EncryptedKey),
            (
                &cert,
                &other_key,
                &other_key,
                FileProblem::KeyMismatch(cert.clone()),
            ),
        ];
        for (cert_path, key_path, blamed, problem) in cases {
            let err = Certificate::load(cert_path, key_path).unwrap_err();
            assert_eq!(err.path, blamed, "{problem}");
            assert_eq!(err.problem, problem);
            crate::tls::testing::assert_words(&err.problem.to_string());
        }
        let err = Certificate::load(&not_der, &key).unwrap_err();
        assert_eq!(err.path, not_der);
        assert!(matches!(err.problem, FileProblem::BadCertificate(_)));
    }

    #[test]
    fn a_certificate_without_alternative_names_is_matched_by_its_common_name() {
        let files = Files::new();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Legacy.Example");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = files.write("legacy.pem", cert.pem().as_bytes());
        let key_path = files.write("legacy.key", key.serialize_pem().as_bytes());
        let loaded = Certificate::load(&cert_path, &key_path).unwrap();
        assert_eq!(loaded.names, ["legacy.example"]);
        assert!(loaded.alt_names.is_empty());
        assert_eq!(loaded.name(), "legacy.example");
    }
}
