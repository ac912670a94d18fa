//! The seed's INI format (`setup.cfg`, SPEC 3) read into the same raw
//! structs as TOML, by hand, counting lines.
//!
//! The format is tiny: `[options]` and `[mappings]` sections, `#` and `;`
//! comment lines, blank lines, and `key=value` lines split at the FIRST `=`
//! (a mapping key such as `127.0.0.1:24004` holds a `:`, so `:` is not a
//! delimiter as in Python's configparser). Keys and values are trimmed.
//!
//! - `[options]`: `buffer_size`, `algorithm`, `pre_resolve_workers`
//!   (accepted for compatibility, 0 or 1, no effect: hosts are resolved at
//!   load) and `admin` (the admin server's listen address, as `[admin]
//!   listen` in TOML; the INI format has no token). Option keys are matched
//!   without regard to case, as configparser did.
//! - `[mappings]`: `[addr:]port=host:port[:weight],...`. A bare port listens
//!   on 0.0.0.0; IPv6 hosts go in brackets (`[::1]:8080:2`); weight defaults
//!   to 1. Each line becomes a listener named by its key as written.
//!
//! Every bad line is reported in one pass. Values are checked here only as
//! far as the INI syntax goes (is the weight a number?); what they mean
//! (is the port in range, does the host resolve?) is [`super::validate`]'s,
//! shared with TOML. Raw values carry the byte range of their line, so
//! validation names the line as it does for TOML.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::error::{ConfigError, Context, Problem};
use super::native::{RawAdmin, RawBackend, RawConfig, RawListener, Typed};

/// The keys `[options]` knows, for the "unknown key" message.
const OPTION_KEYS: [&str; 4] = ["buffer_size", "algorithm", "pre_resolve_workers", "admin"];

/// Which section the lines being read belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Before any header.
    None,
    Options,
    Mappings,
    /// An unknown section: reported once at its header, its lines skipped.
    Skipped,
}

/// One `key=value` line.
struct Entry<'a> {
    key: &'a str,
    value: &'a str,
    /// 1-based line number.
    line: usize,
    /// Byte range of the line in the text.
    span: Range<usize>,
}

/// The reader's state over one pass.
struct Reader<'a> {
    origin: &'a str,
    raw: RawConfig,
    errors: Vec<ConfigError>,
    section: Section,
    /// First line of each section header seen.
    sections: HashMap<&'a str, usize>,
    /// First line of each key, per section (option keys lowercased).
    keys: HashMap<(bool, String), usize>,
}

/// Parses INI text into raw structs, with every bad line found. A mapping
/// whose backend list has items this reader refuses keeps the other items,
/// so validation, which runs anyway, reports their problems too (every
/// problem in one pass); it is marked so that an empty list adds nothing
/// spurious. A mapping key seen before is left out.
pub(crate) fn parse(text: &str, origin: &str) -> (RawConfig, Vec<ConfigError>) {
    let mut reader = Reader {
        origin,
        raw: RawConfig::default(),
        errors: Vec::new(),
        section: Section::None,
        sections: HashMap::new(),
        keys: HashMap::new(),
    };
    let mut offset = 0;
    for (index, chunk) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += chunk.len();
        let line = chunk.trim_end_matches(['\n', '\r']);
        let line = if index == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        reader.line(line, index + 1, start..start + line.len());
    }
    (reader.raw, reader.errors)
}

impl<'a> Reader<'a> {
    fn error(&mut self, line: usize, context: Vec<Context>, problem: Problem) {
        self.errors.push(ConfigError {
            origin: self.origin.to_string(),
            line: Some(line),
            context,
            problem,
        });
    }

    /// Reads one line (without its line ending).
    fn line(&mut self, text: &'a str, line: usize, span: Range<usize>) {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            return;
        }
        if let Some(name) = header(trimmed) {
            self.header(name, line);
            return;
        }
        match self.section {
            Section::Skipped => return,
            Section::None => {
                self.error(line, Vec::new(), Problem::OutsideSection);
                return;
            }
            Section::Options | Section::Mappings => {}
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            self.error(line, Vec::new(), Problem::MissingEquals);
            return;
        };
        let entry = Entry {
            key: key.trim(),
            value: value.trim(),
            line,
            span,
        };
        if entry.key.is_empty() {
            self.error(line, Vec::new(), Problem::EmptyKey);
            return;
        }
        if self.section == Section::Options {
            self.option(&entry);
        } else {
            self.mapping(&entry);
        }
    }

    fn header(&mut self, name: &'a str, line: usize) {
        self.section = match name {
            "options" => Section::Options,
            "mappings" => Section::Mappings,
            _ => {
                self.error(line, Vec::new(), Problem::UnknownSection(name.to_string()));
                Section::Skipped
            }
        };
        if self.section == Section::Skipped {
            return;
        }
        if let Some(&first_line) = self.sections.get(name) {
            let name = name.to_string();
            self.error(
                line,
                Vec::new(),
                Problem::DuplicateSection { name, first_line },
            );
        } else {
            self.sections.insert(name, line);
        }
    }

    /// Records the key of `entry` in the current section; false (and an
    /// error) when it was seen before.
    fn first_time(&mut self, key: String, entry: &Entry<'_>, context: &[Context]) -> bool {
        let slot = (self.section == Section::Options, key);
        if let Some(&first) = self.keys.get(&slot) {
            self.error(
                entry.line,
                context.to_vec(),
                Problem::DuplicateKey(Some(first)),
            );
            return false;
        }
        self.keys.insert(slot, entry.line);
        true
    }

    fn option(&mut self, entry: &Entry<'_>) {
        let key = entry.key.to_ascii_lowercase();
        let context = vec![
            Context::Table("options".into()),
            Context::Key(entry.key.into()),
        ];
        if !self.first_time(key.clone(), entry, &context) {
            return;
        }
        let span = entry.span.clone();
        match key.as_str() {
            "buffer_size" => match entry.value.parse::<i64>() {
                Ok(n) => self.raw.global.buffer_size = Some(Spanned::new(span, n)),
                Err(_) => {
                    let problem = Problem::NotInteger(entry.value.to_string());
                    self.error(entry.line, context, problem);
                }
            },
            "algorithm" => {
                self.raw.algorithm = Some(Spanned::new(span, entry.value.to_string()));
            }
            "pre_resolve_workers" => {
                if let Some(problem) = pre_resolve_workers(entry.value) {
                    self.error(entry.line, context, problem);
                }
            }
            "admin" => {
                let listen = Some(Spanned::new(span.clone(), entry.value.to_string()));
                let admin = RawAdmin {
                    listen,
                    ..RawAdmin::default()
                };
                self.raw.admin = Some(Spanned::new(span, admin));
            }
            _ => {
                let expected = OPTION_KEYS.iter().map(|k| k.to_string()).collect();
                self.error(entry.line, context, Problem::UnknownKey(expected));
            }
        }
    }

    fn mapping(&mut self, entry: &Entry<'_>) {
        let errors_before = self.errors.len();
        let context = vec![Context::Mapping(entry.key.into())];
        if !self.first_time(entry.key.to_string(), entry, &context) {
            return;
        }
        let spanned = |value| Some(Spanned::new(entry.span.clone(), value));
        let mut backends = Vec::new();
        if !entry.value.is_empty() {
            for item in entry.value.split(',').map(str::trim) {
                match backend(item, &entry.span) {
                    Ok(b) => backends.push(Spanned::new(entry.span.clone(), b)),
                    Err(problem) => {
                        let mut context = context.clone();
                        if !item.is_empty() {
                            context.push(Context::Backend(item.to_string()));
                        }
                        self.error(entry.line, context, problem);
                    }
                }
            }
        }
        let refused_backends = self.errors.len() > errors_before;
        let listen = if entry.key.contains(':') {
            entry.key.to_string()
        } else {
            format!("0.0.0.0:{}", entry.key)
        };
        let listener = RawListener {
            name: spanned(entry.key.to_string()),
            listen: spanned(listen),
            backends: Some(Spanned::new(entry.span.clone(), backends)),
            refused_backends,
            ..RawListener::default()
        };
        self.raw
            .listeners
            .push(Spanned::new(entry.span.clone(), listener));
    }
}

/// The name inside a `[section]` header line, trimmed; `None` for other
/// lines. A mapping key may start with `[` (`[::1]:24003=...`), so a header
/// has no `=`.
fn header(line: &str) -> Option<&str> {
    if line.contains('=') {
        return None;
    }
    Some(line.strip_prefix('[')?.strip_suffix(']')?.trim())
}

/// Checks `pre_resolve_workers`: 0 or 1, with no effect either way.
fn pre_resolve_workers(value: &str) -> Option<Problem> {
    match value.parse::<i64>() {
        Ok(0 | 1) => None,
        Ok(n) => Some(Problem::OutOfRange {
            value: n,
            min: 0,
            max: 1,
        }),
        Err(_) => Some(Problem::NotInteger(value.to_string())),
    }
}

/// Splits one `host:port[:weight]` item into the address as written (without
/// the weight) and the weight. IPv6 hosts are in brackets. The address is
/// only split here; validation checks its port and host.
fn backend(item: &str, span: &Range<usize>) -> Result<RawBackend, Problem> {
    if item.is_empty() {
        return Err(Problem::EmptyBackendItem);
    }
    let (address, weight) = match item.split_once(']') {
        Some((host, rest)) if item.starts_with('[') => {
            match rest.strip_prefix(':').map(split_weight) {
                Some((port, Some(weight))) => (format!("{host}]:{port}"), Some(weight)),
                _ => (item.to_string(), None),
            }
        }
        _ if item.matches(':').count() == 2 => match item.rsplit_once(':') {
            Some((address, weight)) => (address.trim_end().to_string(), Some(weight)),
            None => (item.to_string(), None),
        },
        _ => (item.to_string(), None),
    };
    let weight = match weight {
        None => None,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) => Some(Spanned::new(span.clone(), Typed::Value(i128::from(n)))),
            Err(_) => return Err(Problem::WeightNotNumber(text.to_string())),
        },
    };
    Ok(RawBackend {
        address: Typed::Value(address),
        weight,
    })
}

/// `port[:weight]` split at its `:`.
fn split_weight(text: &str) -> (&str, Option<&str>) {
    match text.split_once(':') {
        Some((port, weight)) => (port, Some(weight)),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::assert_readable;
    use crate::config::{
        Algorithm, FileFormat, Mode, ModeSettings, TcpSettings, defaults, parse as parse_config,
    };

    /// The seed project's `setup.cfg`, unchanged.
    pub(crate) const SEED: &str = "[options]
buffer_size=4096


# specify which algorithm to use :-
# options :- 1) round_robin
#            2) random
#            3) weighted_round_robin
algorithm=weighted_round_robin



[mappings]
24003=127.0.0.1:8080:3,127.0.0.1:8081:1,127.0.0.1:8082:2,127.0.0.1:8083:1
24004=127.0.0.1:8084:1
";

    /// One row per error the INI reader itself finds: input, full message.
    const CASES: &[(&str, &str)] = &[
        (
            "buffer_size=1\n",
            "s.cfg:1: line is outside any section (expected [options] or [mappings] above it)",
        ),
        (
            "garbage\n",
            "s.cfg:1: line is outside any section (expected [options] or [mappings] above it)",
        ),
        (
            "[options]\nbuffer_size\n",
            "s.cfg:2: line has no \"=\" (expected key=value)",
        ),
        ("[options]\n=3\n", "s.cfg:2: empty key before \"=\""),
        (
            "[option]\nbuffer_size=1\n",
            "s.cfg:1: unknown section [option] (expected [options] or [mappings])",
        ),
        (
            "[options]\n[mappings]\n[options]\n",
            "s.cfg:3: section [options] appears twice (first on line 1)",
        ),
        (
            "[options]\nbuffer_size=1\nBUFFER_SIZE=2\n",
            "s.cfg:3: [options]: key \"BUFFER_SIZE\": duplicate key (first on line 2)",
        ),
        (
            "[options]\nworkers=4\n",
            "s.cfg:2: [options]: key \"workers\": unknown key \
             (expected one of buffer_size, algorithm, pre_resolve_workers or admin)",
        ),
        (
            "[options]\nbuffer_size=4k\n",
            "s.cfg:2: [options]: key \"buffer_size\": \"4k\" is not a whole number",
        ),
        (
            "[options]\npre_resolve_workers=2\n",
            "s.cfg:2: [options]: key \"pre_resolve_workers\": 2 is out of range (expected 0 to 1)",
        ),
        (
            "[options]\npre_resolve_workers=yes\n",
            "s.cfg:2: [options]: key \"pre_resolve_workers\": \"yes\" is not a whole number",
        ),
        (
            "[mappings]\n24003=127.0.0.1:1\n24003=127.0.0.1:2\n",
            "s.cfg:3: mapping \"24003\": duplicate key (first on line 2)",
        ),
        (
            "[mappings]\n24003=127.0.0.1:1:x\n",
            "s.cfg:2: mapping \"24003\": backend \"127.0.0.1:1:x\": weight \"x\" is not a number",
        ),
        (
            "[mappings]\n24003=[::1]:1:heavy\n",
            "s.cfg:2: mapping \"24003\": backend \"[::1]:1:heavy\": weight \"heavy\" is not a number",
        ),
        (
            "[mappings]\n24003=127.0.0.1:1,,127.0.0.1:2\n",
            "s.cfg:2: mapping \"24003\": empty item in the backend list",
        ),
    ];

    #[test]
    fn ini_errors_name_the_line_and_the_problem() {
        for (text, expected) in CASES {
            let rendered = parse_config(text, FileFormat::Ini, "s.cfg")
                .unwrap_err()
                .to_string();
            assert_eq!(&rendered, expected, "for input:\n{text}");
            assert_readable(&rendered);
        }
    }

    #[test]
    fn every_bad_line_is_reported_in_one_pass() {
        let text = "stray=1\n[options]\nnope\nalgorithm=fastest\n[extra]\nignored\n\
                    [mappings]\n1=127.0.0.1:1:w\nabc=127.0.0.1:1\n2=127.0.0.1:1:0\n";
        let errors = parse_config(text, FileFormat::Ini, "s.cfg").unwrap_err();
        let lines: Vec<_> = errors.errors().iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            [
                Some(1),
                Some(3),
                Some(4),
                Some(5),
                Some(8),
                Some(9),
                Some(10)
            ]
        );
    }

    #[test]
    fn every_bad_backend_of_a_mapping_is_reported_in_one_pass_issue_16() {
        let text = "[mappings]\n24003=127.0.0.1:8080:0,127.0.0.1:8081:abc,,127.0.0.1:8082:2\n\
                    24004=127.0.0.1:1:x,nosuch host:1\n";
        let errors = parse_config(text, FileFormat::Ini, "s.cfg").unwrap_err();
        let rendered: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            rendered,
            [
                "s.cfg:2: mapping \"24003\": backend \"127.0.0.1:8081:abc\": \
                 weight \"abc\" is not a number",
                "s.cfg:2: mapping \"24003\": empty item in the backend list",
                "s.cfg:2: mapping \"24003\": backend \"127.0.0.1:8080\": \
                 weight 0 is out of range (expected 1 to 10000)",
                "s.cfg:3: mapping \"24004\": backend \"127.0.0.1:1:x\": \
                 weight \"x\" is not a number",
                "s.cfg:3: mapping \"24004\": backend \"nosuch host:1\": \
                 host \"nosuch host\" is not a valid host name \
                 (letters, digits, \"-\", \".\" and \"_\")",
            ]
        );
        // A mapping whose every item was refused adds no "empty list" error,
        // but its key is still checked.
        let text = "[mappings]\nabc=127.0.0.1:1:x\n";
        let errors = parse_config(text, FileFormat::Ini, "s.cfg").unwrap_err();
        let rendered: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            rendered,
            [
                "s.cfg:2: mapping \"abc\": backend \"127.0.0.1:1:x\": weight \"x\" is not a number",
                "s.cfg:2: mapping \"abc\": port is not a number",
            ]
        );
    }

    #[test]
    fn the_seed_setup_cfg_reads_unchanged() {
        let config = parse_config(SEED, FileFormat::Ini, "setup.cfg").unwrap();
        assert_eq!(config.global.buffer_size, 4096);
        assert_eq!(config.global.workers, defaults::WORKERS);
        let names: Vec<_> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["24003", "24004"]);
        let first = config.listeners.first().unwrap();
        assert_eq!(first.listen, "0.0.0.0:24003".parse().unwrap());
        assert_eq!(first.mode(), Mode::Tcp);
        assert_eq!(first.algorithm, Algorithm::WeightedRoundRobin);
        assert_eq!(
            first.mode,
            ModeSettings::Tcp(TcpSettings {
                buffer_size: 4096,
                proxy_protocol: None
            })
        );
        assert_eq!(first.connect_timeout, defaults::CONNECT_TIMEOUT);
        assert_eq!(first.idle_timeout, defaults::IDLE_TIMEOUT);
        assert_eq!(first.retries, defaults::RETRIES);
        assert_eq!(first.max_connections, defaults::LISTENER_MAX_CONNECTIONS);
        assert!(first.allow.is_empty() && first.source_address.is_none());
        let backends: Vec<_> = first
            .backends
            .iter()
            .map(|b| (b.address.as_str(), b.resolved.port(), b.weight))
            .collect();
        assert_eq!(
            backends,
            [
                ("127.0.0.1:8080", 8080, 3),
                ("127.0.0.1:8081", 8081, 1),
                ("127.0.0.1:8082", 8082, 2),
                ("127.0.0.1:8083", 8083, 1),
            ]
        );
        let second = config.listeners.get(1).unwrap();
        assert_eq!(second.listen, "0.0.0.0:24004".parse().unwrap());
        assert_eq!(second.backends.len(), 1);
    }

    #[test]
    fn the_spec_example_with_a_host_name_and_pre_resolve_workers_reads() {
        let text = "[options]
buffer_size=4096
# round_robin | random | weighted_round_robin (the other algorithms of 2 too)
algorithm=weighted_round_robin
pre_resolve_workers=1

[mappings]
24003=127.0.0.1:8080:3,127.0.0.1:8081:1,127.0.0.1:8082:2,127.0.0.1:8083:1
127.0.0.1:24004=localhost:8084
";
        let config = parse_config(text, FileFormat::Ini, "setup.cfg").unwrap();
        let second = config.listeners.get(1).unwrap();
        assert_eq!(second.name, "127.0.0.1:24004");
        assert_eq!(second.listen, "127.0.0.1:24004".parse().unwrap());
        let backend = second.backends.first().unwrap();
        assert_eq!(backend.address, "localhost:8084");
        assert_eq!(backend.weight, 1);
        assert_eq!(backend.resolved.port(), 8084);
        assert!(backend.resolved.ip().is_loopback());
    }

    #[test]
    fn ipv6_crlf_bom_comments_and_defaults_are_handled() {
        let text = "\u{feff}; comment\r\n[mappings]\r\n  # indented comment\r\n\
                    [::1]:24005 = [::1]:8080:2 , [::1]:8081\r\n";
        let config = parse_config(text, FileFormat::Ini, "s.cfg").unwrap();
        assert_eq!(config.global.buffer_size, defaults::BUFFER_SIZE);
        let listener = config.listeners.first().unwrap();
        assert_eq!(listener.name, "[::1]:24005");
        assert_eq!(listener.listen, "[::1]:24005".parse().unwrap());
        assert_eq!(listener.algorithm, Algorithm::RoundRobin);
        let backends: Vec<_> = listener
            .backends
            .iter()
            .map(|b| (b.address.as_str(), b.weight))
            .collect();
        assert_eq!(backends, [("[::1]:8080", 2), ("[::1]:8081", 1)]);
    }

    #[test]
    fn a_mapping_value_splits_at_the_first_equals_sign() {
        let (key, value) = "127.0.0.1:24004=localhost:8084=x".split_once('=').unwrap();
        assert_eq!((key, value), ("127.0.0.1:24004", "localhost:8084=x"));
        let address = |b: &RawBackend| b.address.value().cloned().unwrap_or_default();
        let b = backend("127.0.0.1:8080:3", &(0..1)).unwrap();
        assert_eq!(address(&b), "127.0.0.1:8080");
        assert_eq!(b.weight.map(|w| w.into_inner()), Some(Typed::Value(3)));
        let b = backend("[::1]:8080", &(0..1)).unwrap();
        assert_eq!((address(&b).as_str(), b.weight), ("[::1]:8080", None));
        let b = backend("::1:8080", &(0..1)).unwrap();
        assert_eq!(address(&b), "::1:8080");
    }
}
