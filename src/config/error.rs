//! Config errors: where (file, line), in what (section, listener, key,
//! backend), and the problem, with the bad value it names.
//!
//! Errors carry data, not preformatted strings: a [`ConfigError`] is an
//! origin, an optional line, a path of [`Context`]s from the outside in, and
//! one [`Problem`]. Rendering happens only in `Display`, in one voice:
//! lowercase, no trailing period, values in double quotes, never Rust debug
//! formatting. For example:
//!
//! ```text
//! setup.cfg:9: mapping "abc": port is not a number
//! balancer.toml:14: listener "web": key "algorithm": unknown algorithm "fastest" (expected one of round_robin, ...)
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::Mode;
use crate::net::addr::{AddrError, ResolveError};
use crate::net::{Plain, Quoted, io_reason};

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// How the file is named (the path as given, or `demo.toml`).
    pub origin: String,
    /// 1-based line, where it can be known.
    pub line: Option<usize>,
    /// Where in the file, from the outside in: `listener "web"`, `key "algorithm"`.
    pub context: Vec<Context>,
    /// What is wrong, with the value it is about.
    pub problem: Problem,
}

/// One step of the path to a bad value, rendered as `listener "web"`,
/// `key "weight"`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// A table or section, named without brackets: `global`, `options`.
    Table(String),
    /// A TOML `[[listeners]]` entry, by its name (or listen address as written).
    Listener(String),
    /// A TOML `[[listeners]]` entry that has neither name nor listen address;
    /// 1-based position in the file.
    ListenerNumber(usize),
    /// An INI `[mappings]` line, by its key as written (`24003`).
    Mapping(String),
    /// A key, as typed.
    Key(String),
    /// A key and the value it was given, both as typed, for problems whose
    /// message does not quote the value itself.
    KeyValue(String, String),
    /// A backend, by its address as written.
    Backend(String),
    /// A backend whose address is not a string; 1-based position in its
    /// listener's list.
    BackendNumber(usize),
    /// A file a key names (a certificate or key file), as it was opened.
    File(String),
}

/// What is wrong. Values are carried as typed so the message can quote them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file could not be read; the reason in words.
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// A TOML syntax or type error, in the parser's words (tidied).
    #[error("{0}")]
    Syntax(String),
    /// A value of another type than its key takes, found by validation (a
    /// backend table's values are kept as typed): what was typed, in TOML's
    /// words (``float `1.5` ``), and what the key takes (`an integer`).
    #[error("invalid type: {found}, expected {expected}")]
    WrongType {
        /// What was typed.
        found: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A key the table does not have; carries the keys it does have.
    #[error("unknown key (expected {})", OneOf(.0))]
    UnknownKey(Vec<String>),
    /// A required key is absent.
    #[error("missing key {}", Quoted(.0))]
    MissingKey(String),
    /// A key given twice; carries the line of the first one when known.
    #[error("duplicate key{}", FirstOn(*.0))]
    DuplicateKey(Option<usize>),
    /// INI: a section other than `[options]` and `[mappings]`.
    #[error("unknown section [{}] (expected [options] or [mappings])", Plain(.0))]
    UnknownSection(String),
    /// INI: a section header given twice; carries the first line.
    #[error("section [{}] appears twice{}", Plain(.name), FirstOn(Some(*.first_line)))]
    DuplicateSection {
        /// The section name.
        name: String,
        /// Where it first appeared.
        first_line: usize,
    },
    /// INI: a key line before any section header.
    #[error("line is outside any section (expected [options] or [mappings] above it)")]
    OutsideSection,
    /// INI: a line that is neither blank, comment, header nor `key=value`.
    #[error("line has no \"=\" (expected key=value)")]
    MissingEquals,
    /// INI: nothing before the `=`.
    #[error("empty key before \"=\"")]
    EmptyKey,
    /// INI: a value that must be a whole number is not.
    #[error("{} is not a whole number", Quoted(.0))]
    NotInteger(String),
    /// A number outside its allowed range (inclusive bounds).
    #[error("{value} is out of range (expected {min} to {max})")]
    OutOfRange {
        /// The value given.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A duration that does not parse; carries the text.
    #[error("{} is not a duration (expected a number and a unit: ms, s, m or h)", Quoted(.0))]
    BadDuration(String),
    /// A duration whose unit is not one of `ms`, `s`, `m` and `h`; carries
    /// the text and the unit as written.
    #[error(
        "{} is not a duration: unknown unit {} (expected ms, s, m or h)",
        Quoted(.value),
        Quoted(.unit)
    )]
    DurationUnit {
        /// The text given.
        value: String,
        /// The unit in it that is not known.
        unit: String,
    },
    /// A duration with a fraction (`1.5s`); carries the text.
    #[error(
        "{} is not a duration: the number must be whole \
         (use a smaller unit, as in \"1500ms\" for 1.5s)",
        Quoted(.0)
    )]
    DurationFraction(String),
    /// A duration whose parts are not largest unit first, each unit once
    /// (`30m 1h`, `1s 1s`); carries the text.
    #[error(
        "{} is not a duration: its parts must go from the largest unit to the smallest, \
         each unit once (as in \"1h 30m\")",
        Quoted(.0)
    )]
    DurationOrder(String),
    /// A duration of zero where time must pass.
    #[error("duration must be more than zero")]
    ZeroDuration,
    /// A duration above the sanity bound; carries the text and the bound in days.
    #[error("{} is too long (at most {max_days} days)", Quoted(.value))]
    DurationTooLong {
        /// The text given.
        value: String,
        /// The bound.
        max_days: u64,
    },
    /// An algorithm name SPEC does not know.
    #[error(
        "unknown algorithm {} (expected one of round_robin, random, weighted_round_robin, \
         least_connections, power_of_two or source_hash)",
        Quoted(.0)
    )]
    UnknownAlgorithm(String),
    /// A health check kind other than tcp or http.
    #[error("unknown health check kind {} (expected tcp or http)", Quoted(.0))]
    UnknownCheckKind(String),
    /// A health check path that does not start with `/`.
    #[error("path {} must start with \"/\"", Quoted(.0))]
    CheckPathNotAbsolute(String),
    /// A health check path with a space, control character or non-ASCII
    /// character, which cannot go into a request line as it is.
    #[error(
        "path {} must be visible ASCII characters only (no spaces; percent-encode the rest)",
        Quoted(.0)
    )]
    CheckPathNotPrintable(String),
    /// A mode other than tcp or http.
    #[error("unknown mode {} (expected tcp or http)", Quoted(.0))]
    UnknownMode(String),
    /// `access_log = ""`.
    #[error("the access log is empty (expected off, stderr, stdout or a file path)")]
    EmptyAccessLog,
    /// An access log path with a control character.
    #[error("access log path {} has a control character", Quoted(.0))]
    BadAccessLogPath(String),
    /// An access_log_format other than text or json.
    #[error("unknown access_log_format {} (expected text or json)", Quoted(.0))]
    UnknownAccessLogFormat(String),
    /// A proxy_protocol other than off, v1 or v2.
    #[error("unknown proxy_protocol {} (expected off, v1 or v2)", Quoted(.0))]
    UnknownProxyProtocol(String),
    /// A key that applies to listeners of one mode only, set on a listener
    /// of another (an http-only key on a tcp listener).
    #[error("the key applies only to {only} listeners (this listener's mode is {mode})")]
    KeyNotForMode {
        /// The mode the key belongs to.
        only: Mode,
        /// The listener's mode.
        mode: Mode,
    },
    /// An admin token that is empty.
    #[error("the token is empty (leave the key out for no token)")]
    EmptyToken,
    /// An admin token that cannot be sent in an HTTP header as it is.
    #[error("the token must be printable ASCII without spaces")]
    BadToken,
    /// A listener name that is empty.
    #[error("name is empty")]
    EmptyName,
    /// A listener name with a control character (newline, tab, NUL, ...),
    /// which would split or garble the text log lines it is written into.
    #[error(
        "name {} must not contain control characters such as newline, tab or NUL \
         (it is written into log lines)",
        Quoted(.0)
    )]
    NameNotPrintable(String),
    /// A listener name of spaces only.
    #[error("name {} is blank (expected at least one visible character)", Quoted(.0))]
    BlankName(String),
    /// `allow = []`: it would read as "no one", but an absent list means
    /// everyone, so an empty one is refused as ambiguous.
    #[error("the allow list is empty (leave the key out to let every client in)")]
    EmptyAllow,
    /// `accept_proxy_protocol = []`: refused as ambiguous, as `allow`.
    #[error(
        "the list is empty (leave the key out when no balancer in front sends PROXY protocol headers)"
    )]
    EmptyAcceptProxyProtocol,
    /// An address, network or IP address that does not parse (the shared
    /// grammar of `net::addr`, in its words).
    #[error(transparent)]
    Address(#[from] AddrError),
    /// A backend host that does not resolve.
    #[error(transparent)]
    Unresolved(#[from] ResolveError),
    /// A source address of one family and a backend of the other: no
    /// connect to that backend could bind it.
    #[error(
        "source address {ip} is {} but backend {} (connects to it would fail)",
        Family(*.ip),
        OtherEnd::new(.backend, *.resolved, *.by_name)
    )]
    SourceFamily {
        /// The source address.
        ip: IpAddr,
        /// The first backend of the other family, as written.
        backend: String,
        /// The address it is connected to.
        resolved: IpAddr,
        /// Whether `backend` is a host name (the message then shows what it
        /// resolved to).
        by_name: bool,
    },
    /// A source address this machine cannot bind: every connect from it
    /// would fail. Carries the reason in words.
    #[error("source address {ip} cannot be bound: {reason}")]
    SourceNotBindable {
        /// The source address.
        ip: IpAddr,
        /// Why, in words ("address not available on this machine").
        reason: String,
    },
    /// A listener with an empty backend list.
    #[error("the backend list is empty")]
    NoBackends,
    /// `backends` and `[listeners.discovery]` on one listener: DNS gives a
    /// discovered listener its backends.
    #[error(
        "backends and [listeners.discovery] cannot both be set \
         (DNS gives a discovered listener its backends: leave backends out)"
    )]
    BackendsAndDiscovery,
    /// A `dns` value that is neither an SRV name nor `host:port`.
    #[error(
        "{} is not a name to discover (expected an SRV name starting with \"_\", \
         such as \"_http._tcp.web.internal\", or \"host:port\" for A/AAAA records)",
        Quoted(.0)
    )]
    BadDnsName(String),
    /// An SRV name written with a port: the records give each backend's.
    #[error(
        "{} is an SRV name with a port (each SRV record gives its backend's port: \
         leave the port out, or name a host without \"_\" for A/AAAA records)",
        Quoted(.0)
    )]
    SrvWithPort(String),
    /// `[fleet] etcd = []`.
    #[error("the etcd endpoint list is empty (name at least one, as in \"http://127.0.0.1:2379\")")]
    EmptyEtcdEndpoints,
    /// An etcd endpoint that is not `http://host:port`.
    #[error(
        "etcd endpoint {} is not \"http://host:port\" (as in \"http://127.0.0.1:2379\"): {reason}",
        Quoted(.value)
    )]
    BadEtcdEndpoint {
        /// The endpoint as typed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `[fleet] prefix` that does not start with `/` or ends with one.
    #[error(
        "prefix {} must start with \"/\" and not end with \"/\" (as in \"/balancer\")",
        Quoted(.0)
    )]
    BadFleetPrefix(String),
    /// `resolvers = []`.
    #[error("the resolver list is empty (leave the key out to use the system's resolvers)")]
    EmptyResolvers,
    /// A resolver that is not an IP address with an optional port.
    #[error(
        "resolver {} is not an IP address with an optional port \
         (as in \"127.0.0.1:53\" or \"[::1]:53\")",
        Quoted(.0)
    )]
    BadResolver(String),
    /// `min_interval` above `max_interval`; both as typed (or defaulted).
    #[error("min_interval {min} is longer than max_interval {max}")]
    IntervalsOutOfOrder {
        /// `min_interval`, formatted.
        min: String,
        /// `max_interval`, formatted.
        max: String,
    },
    /// INI: an empty item in a comma-separated backend list.
    #[error("empty item in the backend list")]
    EmptyBackendItem,
    /// INI: the `:weight` part is not a number.
    #[error("weight {} is not a number", Quoted(.0))]
    WeightNotNumber(String),
    /// A backend weight outside 1..=max.
    #[error("weight {value} is out of range (expected 1 to {max})")]
    WeightOutOfRange {
        /// The weight given (an `i128`: TOML integers beyond `i64` too).
        value: i128,
        /// The largest allowed ([`super::limits::MAX_WEIGHT`]).
        max: u32,
    },
    /// The same backend address twice in one listener (it names the backend
    /// in metrics and the admin API, so it must be unique); carries the line
    /// of the first.
    #[error("backend is listed twice in this listener{}", FirstOn(*.0))]
    DuplicateBackend(Option<usize>),
    /// A listener name used before; carries the line of the first.
    #[error("duplicate listener name{}", FirstOn(*.0))]
    DuplicateName(Option<usize>),
    /// A listen address that cannot be bound next to another listener's.
    #[error(
        "listen address {addr} conflicts with {other} ({other_addr}{}): both cannot be bound",
        OnLine(*.other_line)
    )]
    ListenConflict {
        /// This listener's address.
        addr: SocketAddr,
        /// The listener it conflicts with (boxed: keeps `Problem` small).
        other: Box<Context>,
        /// That listener's address.
        other_addr: SocketAddr,
        /// That listener's line.
        other_line: Option<usize>,
    },
    /// A certificate or key file that cannot be used (the file is named
    /// in the context).
    #[error(transparent)]
    Certificate(#[from] crate::tls::FileProblem),
    /// `certificates = []`.
    #[error("the certificate list is empty (expected at least one table with cert and key)")]
    NoCertificates,
    /// A `min_version` other than 1.2 and 1.3.
    #[error("unknown TLS version {} (expected \"1.2\" or \"1.3\")", Quoted(.0))]
    UnknownTlsVersion(String),
    /// An ALPN protocol name that is empty or longer than 255 bytes.
    #[error("ALPN protocol {} must be 1 to 255 bytes long", Quoted(.0))]
    BadAlpn(String),
    /// rustls refused the TLS settings; its reason.
    #[error("TLS cannot be set up: {0}")]
    TlsSetup(String),
    /// TOML: no `[[listeners]]`.
    #[error("no listeners (expected at least one [[listeners]] table)")]
    NoListeners,
    /// INI: no mapping lines.
    #[error("no mappings (expected at least one line in [mappings])")]
    NoMappings,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Table(name) => write!(f, "[{}]", Plain(name)),
            Context::Listener(name) => write!(f, "listener {}", Quoted(name)),
            Context::ListenerNumber(n) => write!(f, "listener #{n}"),
            Context::Mapping(key) => write!(f, "mapping {}", Quoted(key)),
            Context::Key(key) => write!(f, "key {}", Quoted(key)),
            Context::KeyValue(key, value) => write!(f, "key {} = {}", Quoted(key), Quoted(value)),
            Context::Backend(address) => write!(f, "backend {}", Quoted(address)),
            Context::BackendNumber(n) => write!(f, "backend #{n}"),
            Context::File(path) => write!(f, "file {}", Quoted(path)),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        for context in &self.context {
            write!(f, ": {context}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The 1-based line of byte `offset` in `text`: how an error found at a
/// TOML span names its line. It reads the text up to `offset`, so it suits
/// one lookup (the parser's one error); a pass that looks up many lines
/// uses [`LineStarts`].
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.bytes().take(offset).filter(|&b| b == b'\n').count() + 1
}

/// Where each line of a text starts, so that the line of a byte offset is
/// a binary search: built once per pass over the text, it keeps a pass
/// linear in the number of values it locates. ([`line_of`] for each value
/// read the text from its start every time: 20,000 backends took seconds,
/// issue 17.)
#[derive(Debug)]
pub(crate) struct LineStarts(Vec<usize>);

impl LineStarts {
    /// The table of `text`: offset 0, then the offset after each `\n`.
    pub(crate) fn new(text: &str) -> Self {
        let after_newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i + 1);
        LineStarts(std::iter::once(0).chain(after_newlines).collect())
    }

    /// The 1-based line of byte `offset`, as [`line_of`] gives it: the
    /// number of lines that start at or before it (offset 0 always does).
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Every problem found in one pass over a config; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The file could not be read.
    pub fn io(origin: &str, err: &std::io::Error) -> Self {
        ConfigErrors(vec![ConfigError {
            origin: origin.to_string(),
            line: None,
            context: Vec::new(),
            problem: Problem::Unreadable(io_reason(err)),
        }])
    }

    /// The errors, in file order (errors without a line come last).
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Wraps what a pass found: `None` when it found nothing. Sorts by line,
    /// keeping the order of errors on one line.
    pub(crate) fn from_list(mut errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by_key(|e| (e.line.is_none(), e.line));
        Some(ConfigErrors(errors))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

// === rendering helpers ===

/// `IPv4` or `IPv6`.
struct Family(IpAddr);

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_ipv4() { "IPv4" } else { "IPv6" })
    }
}

/// A backend and its family: `"127.0.0.1:8080" is IPv4`, or for a host
/// name `"db:5432" resolves to IPv4 address 10.0.0.5`.
struct OtherEnd<'a> {
    address: &'a str,
    resolved: IpAddr,
    by_name: bool,
}

impl<'a> OtherEnd<'a> {
    fn new(address: &'a str, resolved: IpAddr, by_name: bool) -> Self {
        OtherEnd {
            address,
            resolved,
            by_name,
        }
    }
}

impl fmt::Display for OtherEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = Family(self.resolved);
        if self.by_name {
            let resolved = self.resolved;
            write!(
                f,
                "{} resolves to {family} address {resolved}",
                Quoted(self.address)
            )
        } else {
            write!(f, "{} is {family}", Quoted(self.address))
        }
    }
}

/// ` (first on line N)` when the line is known, else nothing.
struct FirstOn(Option<usize>);

impl fmt::Display for FirstOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (first on line {line})"),
            None => Ok(()),
        }
    }
}

/// `, line N` when the line is known, else nothing.
struct OnLine(Option<usize>);

impl fmt::Display for OnLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ", line {line}"),
            None => Ok(()),
        }
    }
}

/// `a, b or c`; `one of ` first when there are more than two.
struct OneOf<'a>(&'a [String]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if n == 0 {
            return f.write_str("no keys here");
        }
        if n > 2 {
            f.write_str("one of ")?;
        }
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == n { " or " } else { ", " })?;
            }
            write!(f, "{}", Plain(item))?;
        }
        Ok(())
    }
}

/// Test helper: fails when a rendered message shows Rust debug formatting,
/// ends with a period or is not one line.
#[cfg(test)]
pub(crate) fn assert_readable(message: &str) {
    for pattern in ["Some(", "None", "Os {", "{ ", "Error {", "kind:"] {
        assert!(
            !message.contains(pattern),
            "debug pattern {pattern} in: {message}"
        );
    }
    assert!(!message.ends_with('.'), "trailing period: {message}");
    assert!(!message.contains('\n'), "more than one line: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, context: Vec<Context>, problem: Problem) -> ConfigError {
        ConfigError {
            origin: "f.toml".to_string(),
            line,
            context,
            problem,
        }
    }

    #[test]
    fn errors_render_as_one_lowercase_phrase_with_their_path() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let cases = [
            (
                error(
                    Some(9),
                    vec![Context::Mapping("abc".into())],
                    Problem::Address(AddrError::PortNotNumber),
                ),
                "f.toml:9: mapping \"abc\": port is not a number",
            ),
            (
                error(
                    Some(14),
                    vec![
                        Context::Listener("web".into()),
                        Context::Key("algorithm".into()),
                    ],
                    Problem::UnknownAlgorithm("fastest".into()),
                ),
                "f.toml:14: listener \"web\": key \"algorithm\": unknown algorithm \"fastest\" \
                 (expected one of round_robin, random, weighted_round_robin, \
                 least_connections, power_of_two or source_hash)",
            ),
            (
                error(None, vec![], Problem::NoListeners),
                "f.toml: no listeners (expected at least one [[listeners]] table)",
            ),
            (
                error(
                    Some(2),
                    vec![Context::Table("global".into()), Context::Key("x".into())],
                    Problem::UnknownKey(vec!["a".into(), "b".into(), "c".into()]),
                ),
                "f.toml:2: [global]: key \"x\": unknown key (expected one of a, b or c)",
            ),
            (
                error(
                    Some(3),
                    vec![Context::Key("x".into())],
                    Problem::UnknownKey(vec!["a".into(), "b".into()]),
                ),
                "f.toml:3: key \"x\": unknown key (expected a or b)",
            ),
            (
                error(
                    Some(1),
                    vec![Context::Listener("a\"b\n".into())],
                    Problem::EmptyName,
                ),
                "f.toml:1: listener \"a\\\"b\\n\": name is empty",
            ),
            (
                error(
                    Some(7),
                    vec![Context::ListenerNumber(2)],
                    Problem::DuplicateName(Some(3)),
                ),
                "f.toml:7: listener #2: duplicate listener name (first on line 3)",
            ),
            (
                error(
                    Some(8),
                    vec![Context::Listener("b".into())],
                    Problem::ListenConflict {
                        addr: addr("0.0.0.0:80"),
                        other: Box::new(Context::Listener("a".into())),
                        other_addr: addr("127.0.0.1:80"),
                        other_line: Some(2),
                    },
                ),
                "f.toml:8: listener \"b\": listen address 0.0.0.0:80 conflicts with \
                 listener \"a\" (127.0.0.1:80, line 2): both cannot be bound",
            ),
        ];
        for (error, expected) in cases {
            let rendered = error.to_string();
            assert_eq!(rendered, expected);
            assert_readable(&rendered);
        }
    }

    #[test]
    fn a_source_family_mismatch_names_both_ends_and_what_a_host_name_resolved_to() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mismatch = |backend: &str, resolved: &str, by_name: bool| Problem::SourceFamily {
            ip: ip("::1"),
            backend: backend.into(),
            resolved: ip(resolved),
            by_name,
        };
        assert_eq!(
            mismatch("127.0.0.1:8080", "127.0.0.1", false).to_string(),
            "source address ::1 is IPv6 but backend \"127.0.0.1:8080\" is IPv4 \
             (connects to it would fail)"
        );
        assert_eq!(
            mismatch("db.internal:5432", "10.0.0.5", true).to_string(),
            "source address ::1 is IPv6 but backend \"db.internal:5432\" resolves to IPv4 \
             address 10.0.0.5 (connects to it would fail)"
        );
    }

    #[test]
    fn io_errors_name_the_file_and_the_reason_in_words() {
        let err = std::io::Error::from(std::io::ErrorKind::NotFound);
        let errors = ConfigErrors::io("setup.cfg", &err);
        assert_eq!(
            errors.to_string(),
            "setup.cfg: cannot read the file: no such file or directory"
        );
        assert_eq!(errors.errors().len(), 1);
    }

    #[test]
    fn the_line_table_gives_every_offset_the_line_a_scan_gives_issue_17() {
        for text in [
            "",
            "a",
            "\n",
            "\n\n",
            "ab\ncd",
            "ab\ncd\n",
            "\r\nx = 1\r\n\n[y]\n",
        ] {
            let lines = LineStarts::new(text);
            for offset in 0..text.len() + 3 {
                assert_eq!(
                    lines.line(offset),
                    line_of(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    #[test]
    fn errors_are_sorted_by_line_with_lineless_ones_last() {
        let list = vec![
            error(None, vec![], Problem::NoMappings),
            error(Some(5), vec![], Problem::MissingEquals),
            error(Some(2), vec![], Problem::EmptyKey),
        ];
        let errors = ConfigErrors::from_list(list).unwrap();
        let lines: Vec<_> = errors.errors().iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(2), Some(5), None]);
        assert!(ConfigErrors::from_list(Vec::new()).is_none());
    }
}
