//! The native TOML format (SPEC 2) read into raw structs, and the raw structs
//! themselves, which the INI reader ([`super::ini`]) fills too.
//!
//! Raw structs hold what was typed, not what it means: strings for
//! durations, addresses and names, `i64` for numbers (so a negative weight
//! reaches validation and gets a message of its own). Every field that
//! [`super::validate`] checks is a [`Spanned`] value, whose byte range in the
//! text gives the line an error names. Unknown keys and wrong types are
//! refused here by serde (`deny_unknown_fields`); the parser's message is
//! tidied into the project's voice and located with
//! [`toml::de::Error::span`]. serde stops at the first such error, so TOML
//! syntax errors come one at a time; semantic errors are all reported. The
//! values of a backend table are the exception: they are kept as typed
//! ([`Typed`]), so a wrong type there is reported by validation, which can
//! name the listener it is in.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors, Context, Problem, line_of};
use crate::net::Quoted;

/// A whole config as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawConfig {
    /// `[global]`; absent means all defaults.
    #[serde(default)]
    pub global: RawGlobal,
    /// `[admin]` (or the INI `[options] admin`); the span is the table's.
    pub admin: Option<Spanned<RawAdmin>>,
    /// `[[listeners]]`, in file order; the span is the table's header.
    #[serde(default)]
    pub listeners: Vec<Spanned<RawListener>>,
    /// `[fleet]` (TOML only); the span is the table's.
    pub fleet: Option<Spanned<RawFleet>>,
    /// INI only: `[options] algorithm`, the algorithm of every listener that
    /// names none. Kept once here so a bad value is reported once, on its line.
    #[serde(skip)]
    pub algorithm: Option<Spanned<String>>,
}

/// `[global]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawGlobal {
    /// Worker threads; 0 = one per core.
    pub workers: Option<Spanned<i64>>,
    /// Bytes per direction per connection.
    pub buffer_size: Option<Spanned<i64>>,
    /// A duration string.
    pub drain_timeout: Option<Spanned<String>>,
    /// Process-wide connection cap.
    pub max_connections: Option<Spanned<i64>>,
    /// A duration string: how long listeners keep accepting after SIGTERM.
    pub shutdown_delay: Option<Spanned<String>>,
    /// `off`, `stderr`, `stdout` or a file path.
    pub access_log: Option<Spanned<String>>,
    /// `text` or `json`.
    pub access_log_format: Option<Spanned<String>>,
}

/// `[admin]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAdmin {
    /// `ip:port` or `[ipv6]:port`.
    pub listen: Option<Spanned<String>>,
    /// The bearer token of mutating calls.
    pub token: Option<Spanned<String>>,
    /// Names a request may give as `Host` besides IPs and `localhost`.
    pub allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[listeners]]` table (or one INI mapping) as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawListener {
    /// Unique name; defaults to `listen` as written.
    pub name: Option<Spanned<String>>,
    /// `ip:port` or `[ipv6]:port`.
    pub listen: Option<Spanned<String>>,
    /// `tcp` or `http`.
    pub mode: Option<Spanned<String>>,
    /// An algorithm name.
    pub algorithm: Option<Spanned<String>>,
    /// A duration string.
    pub connect_timeout: Option<Spanned<String>>,
    /// A duration string.
    pub idle_timeout: Option<Spanned<String>>,
    /// Other backends a failed connect moves on to.
    pub retries: Option<Spanned<i64>>,
    /// An IP address outgoing connections bind to.
    pub source_address: Option<Spanned<String>>,
    /// `off`, `v1` or `v2`.
    pub proxy_protocol: Option<Spanned<String>>,
    /// http: a duration string.
    pub request_header_timeout: Option<Spanned<String>>,
    /// http: bytes.
    pub max_header_bytes: Option<Spanned<i64>>,
    /// http: a duration string.
    pub response_timeout: Option<Spanned<String>>,
    /// http: a duration string.
    pub backend_idle_timeout: Option<Spanned<String>>,
    /// http: a count.
    pub max_idle_per_backend: Option<Spanned<i64>>,
    /// CIDR networks or bare IP addresses of balancers in front.
    pub accept_proxy_protocol: Option<Spanned<Vec<Spanned<String>>>>,
    /// CIDR networks or bare IP addresses.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Per-listener connection cap.
    pub max_connections: Option<Spanned<i64>>,
    /// The backends, in order.
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    /// A duration string (may be zero: no ramp).
    pub slow_start: Option<Spanned<String>>,
    /// A duration string.
    pub ewma_decay: Option<Spanned<String>>,
    /// `[listeners.health_check]`: active checks.
    pub health_check: Option<Spanned<RawHealthCheck>>,
    /// `[listeners.passive_check]`: what failed real connects do.
    pub passive_check: Option<Spanned<RawPassiveCheck>>,
    /// `[listeners.tls]`: TLS terminated on this listener.
    pub tls: Option<Spanned<RawTls>>,
    /// `[listeners.discovery]`: backends found by DNS (TOML only).
    pub discovery: Option<Spanned<RawDiscovery>>,
    /// INI only: the reader refused (and reported) some items of the
    /// mapping's backend list, which holds the others; an empty list then
    /// says nothing new.
    #[serde(skip)]
    pub refused_backends: bool,
}

/// `[listeners.health_check]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHealthCheck {
    /// `tcp` or `http`.
    pub kind: Option<Spanned<String>>,
    /// A duration string.
    pub interval: Option<Spanned<String>>,
    /// A duration string.
    pub timeout: Option<Spanned<String>>,
    /// The path an http check asks for.
    pub path: Option<Spanned<String>>,
    /// The status an http check expects.
    pub expect_status: Option<Spanned<i64>>,
    /// Passed checks in a row to mark a backend up.
    pub rise: Option<Spanned<i64>>,
    /// Failed checks in a row to mark a backend down.
    pub fall: Option<Spanned<i64>>,
}

/// `[listeners.passive_check]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawPassiveCheck {
    /// `false` turns passive detection off.
    pub enabled: Option<Spanned<bool>>,
    /// Failed connects in a row to mark a backend down.
    pub fall: Option<Spanned<i64>>,
    /// A duration string.
    pub backoff: Option<Spanned<String>>,
}

/// `[listeners.discovery]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawDiscovery {
    /// An SRV name, or `host:port` for A/AAAA records.
    pub dns: Option<Spanned<String>>,
    /// DNS servers: `ip:port`, or a bare IP (port 53).
    pub resolvers: Option<Spanned<Vec<Spanned<String>>>>,
    /// A duration string.
    pub min_interval: Option<Spanned<String>>,
    /// A duration string.
    pub max_interval: Option<Spanned<String>>,
}

/// `[fleet]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawFleet {
    /// etcd endpoints, each `http://host:port`.
    pub etcd: Option<Spanned<Vec<Spanned<String>>>>,
    /// The key prefix: starts with `/`, no trailing `/`.
    pub prefix: Option<Spanned<String>>,
}

/// `[listeners.tls]` as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawTls {
    /// The certificates, in order; the first is the default.
    pub certificates: Option<Spanned<Vec<Spanned<RawCertificate>>>>,
    /// `1.2` or `1.3`.
    pub min_version: Option<Spanned<String>>,
    /// ALPN protocol names, in order of preference.
    pub alpn: Option<Spanned<Vec<Spanned<String>>>>,
    /// A duration string.
    pub handshake_timeout: Option<Spanned<String>>,
}

/// One `{ cert = "...", key = "..." }` of `certificates`: two file paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with cert and key")]
pub(crate) struct RawCertificate {
    /// The PEM file of the certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// The PEM file of the private key.
    pub key: Spanned<String>,
}

/// A backend as typed: a bare `"host:port"` string (weight absent) or a
/// table `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawBackend {
    /// `host:port` or `[ipv6]:port`, as written (or, in the table form,
    /// what was typed instead of a string).
    pub address: Typed<String>,
    /// Absent means the default weight. An `i128`, so a number too large
    /// for any weight is refused as out of range, not as a type error.
    pub weight: Option<Spanned<Typed<i128>>>,
}

/// A value of a backend table as typed: the value, or, when it has another
/// type, what was typed instead.
///
/// serde stops at a type error and knows only the table it is in, not the
/// listener, so a mistyped `weight` was reported alone and named neither
/// the key nor the listener (issue 16). Kept here instead, it reaches
/// validation, which reports it with the listener, the backend and the
/// key, together with the rest of the file's problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Typed<T> {
    /// A value of the expected type.
    Value(T),
    /// What was typed instead, in TOML's words: ``float `1.5` ``,
    /// ``string "3"``, `array`, `table`.
    Wrong(String),
}

#[cfg(test)]
impl<T> Typed<T> {
    /// The value, when it has the expected type.
    pub(crate) fn value(&self) -> Option<&T> {
        match self {
            Typed::Value(value) => Some(value),
            Typed::Wrong(_) => None,
        }
    }
}

/// The table form of a backend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct BackendTable {
    address: Typed<String>,
    weight: Option<Spanned<Typed<i128>>>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BackendVisitor)
    }
}

/// Accepts either form of a backend. Hand-written rather than an untagged
/// enum so a wrong value gets a message naming both forms, not a Rust type.
struct BackendVisitor;

impl<'de> Visitor<'de> for BackendVisitor {
    type Value = RawBackend;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a backend address string or a table with address and weight")
    }

    fn visit_str<E: de::Error>(self, address: &str) -> Result<RawBackend, E> {
        Ok(RawBackend {
            address: Typed::Value(address.to_string()),
            weight: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
        let table = BackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawBackend {
            address: table.address,
            weight: table.weight,
        })
    }
}

/// The types a backend table's values have: how a value of another type
/// is told apart from one of this type.
trait Scalar: Sized {
    fn from_integer(n: i128) -> Option<Self>;
    fn from_str(text: &str) -> Option<Self>;
}

impl Scalar for i128 {
    fn from_integer(n: i128) -> Option<Self> {
        Some(n)
    }

    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl Scalar for String {
    fn from_integer(_: i128) -> Option<Self> {
        None
    }

    fn from_str(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
}

impl<'de, T: Scalar> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TypedVisitor(PhantomData))
    }
}

/// Takes any TOML value: one of type `T`, or the words for what it is.
struct TypedVisitor<T>(PhantomData<T>);

impl<T> TypedVisitor<T> {
    fn integer(n: impl Into<i128> + fmt::Display + Copy) -> Typed<T>
    where
        T: Scalar,
    {
        match T::from_integer(n.into()) {
            Some(value) => Typed::Value(value),
            None => Typed::Wrong(format!("integer `{n}`")),
        }
    }
}

impl<'de, T: Scalar> Visitor<'de> for TypedVisitor<T> {
    type Value = Typed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Typed<T>, E> {
        Ok(Typed::Wrong(format!("boolean `{v}`")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Typed<T>, E> {
        Ok(Self::integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Typed<T>, E> {
        Ok(Self::integer(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Typed<T>, E> {
        Ok(Self::integer(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Typed<T>, E> {
        Ok(match i128::try_from(v) {
            Ok(n) => Self::integer(n),
            Err(_) => Typed::Wrong(format!("integer `{v}`")),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Typed<T>, E> {
        Ok(Typed::Wrong(format!("float `{v}`")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Typed<T>, E> {
        Ok(match T::from_str(v) {
            Some(value) => Typed::Value(value),
            None => Typed::Wrong(format!("string {}", Quoted(v))),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Typed<T>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Typed::Wrong("array".to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Typed<T>, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Typed::Wrong("table".to_string()))
    }
}

/// Parses TOML text into raw structs. `origin` names the file in errors.
pub(crate) fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigErrors> {
    toml::from_str(text).map_err(|e| ConfigErrors::from(from_toml_error(&e, text, origin)))
}

/// A serde/TOML error as a located [`ConfigError`]: unknown and missing keys
/// get their own problems; other messages are tidied and, when the error
/// points at the value of a `key = value` line, the key is named.
fn from_toml_error(err: &toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let span = err.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    let message = err.message();
    let mut context = Vec::new();
    let problem = if let Some(rest) = message.strip_prefix("unknown field ") {
        let mut names = backticked(rest).into_iter();
        if let Some(key) = names.next() {
            context.push(Context::Key(key));
        }
        Problem::UnknownKey(names.collect())
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let key = backticked(rest).into_iter().next().unwrap_or_default();
        Problem::MissingKey(key)
    } else if message == "duplicate key" {
        if let Some(key) = span.and_then(|s| text.get(s)) {
            context.push(Context::Key(key.trim().to_string()));
        }
        Problem::DuplicateKey(None)
    } else {
        if let Some(key) = span.and_then(|s| key_before(text, s)) {
            context.push(Context::Key(key));
        }
        Problem::Syntax(tidy(message))
    };
    ConfigError {
        origin: origin.to_string(),
        line,
        context,
        problem,
    }
}

/// The words between backticks, in order: serde quotes field names so.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The key of a `key = value` line when `span` starts its value.
fn key_before(text: &str, span: Range<usize>) -> Option<String> {
    let before = text.get(..span.start)?;
    let line = before.rsplit('\n').next()?;
    let key = line.trim_end().strip_suffix('=')?.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    (!key.is_empty() && key.chars().all(plain)).then(|| key.to_string())
}

/// The parser's message in the project's voice: serde's Rust words replaced
/// by TOML's, lowercase first letter, no trailing period, one line.
fn tidy(message: &str) -> String {
    let mut text = message.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [
        (" as i128", ""),
        (" as u128", ""),
        ("expected i64", "expected an integer"),
        ("a sequence", "an array"),
        ("invalid type: map", "invalid type: table"),
        ("expected a map", "expected a table"),
        ("floating point", "float"),
    ] {
        text = text.replace(from, to);
    }
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "invalid TOML".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::assert_readable;

    /// One row per TOML-level error: input, full rendered message.
    const CASES: &[(&str, &str)] = &[
        (
            "[global]\nbogus = 1\n",
            "b.toml:2: key \"bogus\": unknown key (expected one of workers, buffer_size, \
             drain_timeout, max_connections, shutdown_delay, access_log or access_log_format)",
        ),
        (
            "[bogus]\n",
            "b.toml:1: key \"bogus\": unknown key (expected one of global, admin, listeners or fleet)",
        ),
        (
            "[[listeners]]\nlisten = \"127.0.0.1:1\"\nbackend = [\"127.0.0.1:2\"]\n",
            "b.toml:3: key \"backend\": unknown key (expected one of name, listen, mode, \
             algorithm, connect_timeout, idle_timeout, retries, source_address, \
             proxy_protocol, request_header_timeout, max_header_bytes, response_timeout, \
             backend_idle_timeout, max_idle_per_backend, accept_proxy_protocol, allow, max_connections, backends, slow_start, ewma_decay, \
             health_check, passive_check, tls or discovery)",
        ),
        (
            "[[listeners]]\nbackends = [{ address = \"127.0.0.1:2\", wieght = 2 }]\n",
            "b.toml:2: key \"wieght\": unknown key (expected address or weight)",
        ),
        (
            "[[listeners]]\nbackends = [{ weight = 2 }]\n",
            "b.toml:2: missing key \"address\"",
        ),
        (
            "[global]\nworkers = \"x\"\n",
            "b.toml:2: key \"workers\": invalid type: string \"x\", expected an integer",
        ),
        (
            "[global]\nworkers = 1.5\n",
            "b.toml:2: key \"workers\": invalid type: float `1.5`, expected an integer",
        ),
        (
            "[global]\nmax_connections = 99999999999999999999\n",
            "b.toml:2: key \"max_connections\": invalid type: integer `99999999999999999999`, \
             expected an integer",
        ),
        (
            "[global]\ndrain_timeout = 30\n",
            "b.toml:2: key \"drain_timeout\": invalid type: integer `30`, expected a string",
        ),
        (
            "global = 3\n",
            "b.toml:1: key \"global\": invalid type: integer `3`, expected a table",
        ),
        (
            "[listeners]\nlisten = \"127.0.0.1:1\"\n",
            "b.toml:1: invalid type: table, expected an array",
        ),
        (
            "[[listeners]]\nallow = \"10.0.0.0/8\"\n",
            "b.toml:2: key \"allow\": invalid type: string \"10.0.0.0/8\", expected an array",
        ),
        (
            "[[listeners]]\nbackends = [8080]\n",
            "b.toml:2: invalid type: integer `8080`, expected a backend address string \
             or a table with address and weight",
        ),
        (
            "[[listeners]]\nname = \"a\"\nname = \"b\"\n",
            "b.toml:3: key \"name\": duplicate key",
        ),
        ("[global\n", "b.toml:1: unclosed table, expected `]`"),
        (
            "[[listeners]]\nname = \"abc\n",
            "b.toml:2: invalid basic string, expected `\"`",
        ),
    ];

    #[test]
    fn toml_errors_name_the_line_the_key_and_the_problem() {
        for (text, expected) in CASES {
            let errors = parse(text, "b.toml").unwrap_err();
            let rendered = errors.to_string();
            assert_eq!(&rendered, expected, "for input:\n{text}");
            assert_readable(&rendered);
        }
    }

    #[test]
    fn backends_are_bare_strings_or_tables_with_spans() {
        let text = "[[listeners]]\nbackends = [\n  \"127.0.0.1:1\",\n  \
                    { address = \"[::1]:2\", weight = 3 },\n]\n";
        let raw = parse(text, "b.toml").unwrap();
        let listener = raw.listeners.first().unwrap().get_ref();
        let backends = listener.backends.as_ref().unwrap().get_ref();
        let got: Vec<_> = backends
            .iter()
            .map(|b| {
                let b = b.get_ref();
                let weight = b.weight.as_ref().and_then(|w| w.get_ref().value().copied());
                (b.address.value().map(String::as_str), weight)
            })
            .collect();
        assert_eq!(
            got,
            [(Some("127.0.0.1:1"), None), (Some("[::1]:2"), Some(3))]
        );
        let lines: Vec<_> = backends
            .iter()
            .map(|b| line_of(text, b.span().start))
            .collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn health_check_tables_refuse_unknown_keys_by_name() {
        let text = "[[listeners]]\n[listeners.health_check]\nintervall = \"2s\"\n";
        assert_eq!(
            parse(text, "b.toml").unwrap_err().to_string(),
            "b.toml:3: key \"intervall\": unknown key (expected one of kind, interval, \
             timeout, path, expect_status, rise or fall)"
        );
        let text = "[[listeners]]\npassive_check = { fall = 2, after = \"1s\" }\n";
        assert_eq!(
            parse(text, "b.toml").unwrap_err().to_string(),
            "b.toml:2: key \"after\": unknown key (expected one of enabled, fall or backoff)"
        );
    }

    #[test]
    fn a_backend_table_keeps_values_of_the_wrong_type_for_validation_issue_16() {
        let text = "[[listeners]]\nbackends = [\n  { address = \"a:1\", weight = 1.5 },\n  \
                    { address = \"a:2\", weight = 99999999999999999999 },\n  \
                    { address = \"a:3\", weight = -99999999999999999999 },\n  \
                    { address = \"a:4\", weight = \"3\" },\n  \
                    { address = \"a:5\", weight = true },\n  \
                    { address = \"a:6\", weight = [1] },\n  \
                    { address = \"a:7\", weight = { n = 1 } },\n  \
                    { address = 8, weight = 2 },\n]\n";
        let raw = parse(text, "b.toml").unwrap();
        let listener = raw.listeners.first().unwrap().get_ref();
        let backends = listener.backends.as_ref().unwrap().get_ref();
        let weights: Vec<_> = backends
            .iter()
            .map(|b| b.get_ref().weight.as_ref().unwrap().get_ref().clone())
            .collect();
        let wrong = |found: &str| Typed::Wrong(found.to_string());
        assert_eq!(
            weights,
            [
                wrong("float `1.5`"),
                Typed::Value(99_999_999_999_999_999_999),
                Typed::Value(-99_999_999_999_999_999_999),
                wrong("string \"3\""),
                wrong("boolean `true`"),
                wrong("array"),
                wrong("table"),
                Typed::Value(2),
            ]
        );
        let last = backends.last().unwrap().get_ref();
        assert_eq!(last.address, Typed::Wrong("integer `8`".to_string()));
        // Each weight keeps its own line.
        let lines: Vec<_> = backends
            .iter()
            .map(|b| line_of(text, b.get_ref().weight.as_ref().unwrap().span().start))
            .collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn tidy_speaks_toml_not_rust() {
        assert_eq!(tidy("Invalid thing.\n"), "invalid thing");
        assert_eq!(tidy("expected a sequence"), "expected an array");
        assert_eq!(tidy(""), "invalid TOML");
    }
}
