//! A listener's `[listeners.tls]`: the certificate and key files are read
//! and matched here, once per load (so `balancer check` reads them as
//! `run` and a reload do), and the listener's rustls config is built from
//! them. A relative path is taken from the config file's folder, so a
//! config and its certificates can move together and a reload finds the
//! same files whatever the working directory.

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::limits::MAX_ALPN_BYTES;
use crate::config::native::{RawCertificate, RawTls};
use crate::config::{Mode, ServerTls, TlsVersion, defaults};
use crate::tls::{Certificate, Settings};

use super::values::duration;
use super::{Checked, Validator, with, with_key};

impl Validator<'_> {
    /// `[listeners.tls]` of a listener of `mode` (`None` when the mode is
    /// bad, already reported): `Some(None)` when absent, `None` when
    /// anything in it is bad (reported). Every file is read even when
    /// another is bad, so one run names them all.
    pub(super) fn tls(
        &mut self,
        raw: Option<&Spanned<RawTls>>,
        scope: &[Context],
        mode: Option<Mode>,
    ) -> Checked<Option<ServerTls>> {
        let Some(table) = raw else {
            return Some(None);
        };
        let scope = with(scope, Context::Table("listeners.tls".into()));
        let raw = table.get_ref();
        let certificates = self.certificates(raw, &table.span(), &scope);
        let min_version = self.text(&raw.min_version, &scope, "min_version", tls_version);
        let alpn = self.strings(raw.alpn.as_ref(), &scope, "alpn", alpn_name);
        let handshake_timeout = self.text(
            &raw.handshake_timeout,
            &scope,
            "handshake_timeout",
            duration,
        );
        let alpn = match (alpn?, &raw.alpn, mode) {
            // Not given: an http listener offers HTTP/2, then HTTP/1.1.
            (_, None, Some(Mode::Http)) => defaults::HTTP_ALPN.map(String::from).to_vec(),
            (alpn, ..) => alpn,
        };
        let settings = Settings {
            certificates: certificates?,
            min_version: min_version?.unwrap_or(defaults::TLS_MIN_VERSION),
            alpn,
            handshake_timeout: handshake_timeout?.unwrap_or(defaults::TLS_HANDSHAKE_TIMEOUT),
        };
        let built = ServerTls::new(settings).map_err(|e| Problem::TlsSetup(e.to_string()));
        self.ok_or_report(built, table.span(), scope).map(Some)
    }

    /// `certificates`: required, not empty, every file readable and each
    /// key matching its certificate.
    fn certificates(
        &mut self,
        raw: &RawTls,
        table: &std::ops::Range<usize>,
        scope: &[Context],
    ) -> Option<Vec<Certificate>> {
        let Some(list) = &raw.certificates else {
            self.missing(table.clone(), scope, "certificates");
            return None;
        };
        if list.get_ref().is_empty() {
            let context = with_key(scope, "certificates");
            self.report(list.span(), context, Problem::NoCertificates);
            return None;
        }
        let loaded: Vec<Option<Certificate>> = list
            .get_ref()
            .iter()
            .map(|entry| self.certificate(entry.get_ref(), scope))
            .collect();
        loaded.into_iter().collect()
    }

    /// One `{ cert, key }`, its files read; a bad one is reported on the
    /// line of the path at fault, naming the file as it was opened.
    fn certificate(&mut self, raw: &RawCertificate, scope: &[Context]) -> Option<Certificate> {
        let cert = self.folder.join(raw.cert.get_ref());
        let key = self.folder.join(raw.key.get_ref());
        match Certificate::load(&cert, &key) {
            Ok(certificate) => Some(certificate),
            Err(e) => {
                let (key_name, span) = if e.path == cert {
                    ("cert", raw.cert.span())
                } else {
                    ("key", raw.key.span())
                };
                let mut context = with_key(scope, key_name);
                context.push(Context::File(e.path.display().to_string()));
                self.report(span, context, Problem::Certificate(e.problem));
                None
            }
        }
    }
}

/// `min_version`: `1.2` or `1.3`.
fn tls_version(text: &str) -> Result<TlsVersion, Problem> {
    match text {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(Problem::UnknownTlsVersion(text.to_string())),
    }
}

/// One ALPN protocol name: sent with a one-byte length, so 1 to 255 bytes.
fn alpn_name(name: &str) -> Result<String, Problem> {
    if name.is_empty() || name.len() > MAX_ALPN_BYTES {
        return Err(Problem::BadAlpn(name.to_string()));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::config::error::assert_readable;
    use crate::config::{FileFormat, TlsVersion, parse_in, to_toml};
    use crate::tls::testing::Files;

    /// A config of one tcp listener with `tls` as its `[listeners.tls]`.
    fn with_tls(mode: &str, tls: &str) -> String {
        format!(
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:24003\"\nmode = \"{mode}\"\n\
             backends = [\"127.0.0.1:8080\"]\n[listeners.tls]\n{tls}"
        )
    }

    fn errors(text: &str, folder: &Path) -> String {
        match parse_in(text, FileFormat::Toml, "b.toml", folder) {
            Ok(_) => panic!("no error for:\n{text}"),
            Err(errors) => errors.to_string(),
        }
    }

    #[test]
    fn every_bad_file_is_an_error_naming_it_and_its_line() {
        let files = Files::new();
        files.pair("site", &["a.test"]);
        files.pair("other", &["b.test"]);
        files.write("garbage.pem", b"not PEM at all\n");
        let folder = files.path("");
        let at = |name: &str| folder.join(name).display().to_string();
        let certs = |cert: &str, key: &str| {
            with_tls(
                "tcp",
                &format!("certificates = [\n  {{ cert = \"{cert}\", key = \"{key}\" }},\n]\n"),
            )
        };
        let cases = [
            (
                certs("missing.pem", "site.key"),
                format!(
                    "b.toml:8: listener \"web\": [listeners.tls]: key \"cert\": file \"{}\": \
                     cannot read the file: no such file or directory",
                    at("missing.pem")
                ),
            ),
            (
                certs("garbage.pem", "site.key"),
                format!(
                    "b.toml:8: listener \"web\": [listeners.tls]: key \"cert\": file \"{}\": \
                     no certificate in it (expected a PEM \"CERTIFICATE\" block)",
                    at("garbage.pem")
                ),
            ),
            (
                certs("site.pem", "garbage.pem"),
                format!(
                    "b.toml:8: listener \"web\": [listeners.tls]: key \"key\": file \"{}\": \
                     no private key in it (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" \
                     or \"EC PRIVATE KEY\" block)",
                    at("garbage.pem")
                ),
            ),
            (
                certs("site.pem", "other.key"),
                format!(
                    "b.toml:8: listener \"web\": [listeners.tls]: key \"key\": file \"{}\": \
                     the private key does not match the certificate in {}",
                    at("other.key"),
                    at("site.pem")
                ),
            ),
        ];
        for (text, expected) in cases {
            let rendered = errors(&text, &folder);
            assert_eq!(rendered, expected);
            assert_readable(&rendered);
        }
    }

    #[test]
    fn bad_tls_settings_are_errors_with_their_key() {
        let files = Files::new();
        files.pair("site", &["a.test"]);
        let folder = files.path("");
        let good = "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]\n";
        let cases = [
            (
                with_tls("tcp", "certificates = []\n"),
                "b.toml:7: listener \"web\": [listeners.tls]: key \"certificates\": the \
                 certificate list is empty (expected at least one table with cert and key)",
            ),
            (
                with_tls("tcp", "min_version = \"1.2\"\n"),
                "b.toml:6: listener \"web\": [listeners.tls]: missing key \"certificates\"",
            ),
            (
                with_tls("tcp", &format!("{good}min_version = \"1.1\"\n")),
                "b.toml:8: listener \"web\": [listeners.tls]: key \"min_version\": unknown TLS \
                 version \"1.1\" (expected \"1.2\" or \"1.3\")",
            ),
            (
                with_tls("tcp", &format!("{good}alpn = [\"h2\", \"\"]\n")),
                "b.toml:8: listener \"web\": [listeners.tls]: key \"alpn\": ALPN protocol \"\" \
                 must be 1 to 255 bytes long",
            ),
            (
                with_tls("tcp", &format!("{good}handshake_timeout = \"0s\"\n")),
                "b.toml:8: listener \"web\": [listeners.tls]: key \"handshake_timeout\": \
                 duration must be more than zero",
            ),
        ];
        for (text, expected) in cases {
            let rendered = errors(&text, &folder);
            assert_eq!(rendered, expected, "for:\n{text}");
            assert_readable(&rendered);
        }
    }

    #[test]
    fn relative_files_are_taken_from_the_config_folder_and_defaults_apply() {
        let files = Files::new();
        files.pair("site", &["a.test"]);
        let text = with_tls(
            "tcp",
            "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]\n",
        );
        let folder = files.path("");
        let config = parse_in(&text, FileFormat::Toml, "b.toml", &folder).unwrap();
        let listener = config.listeners.first().unwrap();
        let settings = listener.tls.as_ref().unwrap().settings();
        let certificate = settings.certificates.first().unwrap();
        assert_eq!(certificate.cert_path, folder.join("site.pem"));
        assert_eq!(certificate.names, ["a.test"]);
        assert_eq!(settings.min_version, TlsVersion::Tls12);
        assert!(settings.alpn.is_empty());
        assert_eq!(settings.handshake_timeout, Duration::from_secs(10));
        // `convert` writes the files as opened, and they load back.
        let again = parse_in(
            &to_toml(&config),
            FileFormat::Toml,
            "c.toml",
            Path::new("/"),
        );
        assert_eq!(again.unwrap(), config);
    }

    #[test]
    fn an_http_listener_takes_tls_and_offers_h2_then_http11_unless_told() {
        let files = Files::new();
        files.pair("site", &["a.test"]);
        let folder = files.path("");
        let certificates = "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]\n";
        let alpn_of = |tls: &str| {
            let config = parse_in(&with_tls("http", tls), FileFormat::Toml, "b.toml", &folder)
                .expect("TLS on an http listener is valid");
            let listener = config.listeners.first().unwrap();
            listener.tls.as_ref().unwrap().settings().alpn.clone()
        };
        assert_eq!(alpn_of(certificates), ["h2", "http/1.1"]);
        let only_h1 = format!("{certificates}alpn = [\"http/1.1\"]\n");
        assert_eq!(alpn_of(&only_h1), ["http/1.1"]);
        let none = format!("{certificates}alpn = []\n");
        assert!(alpn_of(&none).is_empty());
    }

    #[test]
    fn the_summary_shows_names_and_expiry_and_warns_within_fourteen_days() {
        let files = Files::new();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        files.write("site.pem", cert.pem().as_bytes());
        files.write("site.key", key.serialize_pem().as_bytes());
        let text = with_tls(
            "tcp",
            "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]\nalpn = [\"x\"]\n",
        );
        let config = parse_in(&text, FileFormat::Toml, "b.toml", &files.path("")).unwrap();
        let settings = config.listeners[0].tls.as_ref().unwrap().settings();
        let day = |d: u64| UNIX_EPOCH + Duration::from_secs(d * 86_400);
        // 2030-01-15 is day 21929 since the epoch.
        let summary = |now: SystemTime| {
            let mut out = String::new();
            crate::config::tls_summary(&mut out, settings, now);
            out
        };
        let file = files.path("site.pem").display().to_string();
        assert_eq!(
            summary(day(21_899)),
            format!(
                "  tls: TLS 1.2 and up, ALPN x, handshake timeout 10s\n  \
                 certificate {file}: a.test; expires 2030-01-15 (in 30 days)\n"
            )
        );
        assert!(
            summary(day(21_919)).ends_with(&format!(
                "  warning: certificate {file} expires 2030-01-15 (in 10 days): renew it\n"
            )),
            "{}",
            summary(day(21_919))
        );
        assert!(
            summary(day(21_931)).ends_with(&format!(
                "  warning: certificate {file} expired 2030-01-15 (2 days ago): renew it\n"
            )),
            "{}",
            summary(day(21_931))
        );
    }
}
