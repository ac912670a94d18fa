//! Raw structs to the validated model: every semantic check, shared by both
//! formats. This file owns the pass: the entry point [`validate`], the
//! [`Validator`] state, how a problem is reported, and how one key is read
//! into a value; the files beside it check one part of a config each.
//!
//! Each check reports a [`ConfigError`] carrying the line (from the raw
//! value's span), the path to the value and the problem, and validation goes
//! on, so one run lists every problem. A listener with any error is left out
//! of the model; the model is returned only when nothing was found.
//!
//! Backend host names are resolved here, once per host, with the system
//! resolver (`net::addr::resolve_blocking`); the first address is kept. IP
//! literals need no resolution. A `source_address` is bound once, on a
//! throwaway socket, to learn whether this machine has it (`source.rs`).
//! These are the only I/O in `config`; nothing listens or connects.
//!
//! - `global.rs`: `[global]`, `[admin]` and the INI `[options]` algorithm.
//! - `listener.rs`: one listener: name, listen address, mode, algorithm,
//!   timeouts, allow list, health checks.
//! - `mode.rs`: the settings of one mode only: which keys belong to which
//!   mode (a key of another mode is refused there), a function per mode.
//! - `source.rs`: a listener's source address: its family against the
//!   backends', and whether this machine can bind it.
//! - `listen.rs`: listen addresses (listeners' and the admin server's) and
//!   the conflicts between them.
//! - `backend.rs`: a listener's backend list: weights, duplicates,
//!   resolution.
//! - `discovery.rs`: a listener's `[listeners.discovery]`: the DNS name
//!   (SRV or `host:port`), its resolvers and intervals.
//! - `fleet.rs`: `[fleet]`: the etcd endpoints and the key prefix.
//! - `tls.rs`: a listener's `[listeners.tls]`: its certificate and key
//!   files are read here (relative paths from the config file's folder),
//!   and the rustls config is built from them.
//! - `values.rs`: small pure checks of one value (durations, names, the
//!   token, a check path).
//! - `tests.rs`: the pass end to end, one row per error a user can see.

mod backend;
mod discovery;
mod fleet;
mod global;
mod listen;
mod listener;
mod mode;
mod source;
#[cfg(test)]
mod tests;
mod tls;
mod values;

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use crate::net::addr::ResolveError;

use super::error::{ConfigError, ConfigErrors, Context, LineStarts, Problem};
use super::native::RawConfig;
use super::{Config, FileFormat};
use listen::Listens;

/// Checks `raw` (read from `text` in `format`) and builds the model, or
/// returns every problem found, `found` (the reader's own) included.
/// `origin` names the file in errors; relative file paths in it are taken
/// from `folder`.
pub(crate) fn validate(
    raw: RawConfig,
    found: Vec<ConfigError>,
    text: &str,
    format: FileFormat,
    origin: &str,
    folder: &Path,
) -> Result<Config, ConfigErrors> {
    // With lines already refused, an empty listener list says nothing new.
    let refused_lines = !found.is_empty();
    let mut v = Validator {
        lines: LineStarts::new(text),
        format,
        origin,
        folder,
        errors: found,
        names: HashMap::new(),
        listens: Listens::default(),
        resolved: HashMap::new(),
    };
    let global = v.global(&raw.global);
    let admin = raw.admin.as_ref().and_then(|a| v.admin(a));
    let algorithm = v.default_algorithm(&raw.algorithm);
    let fleet = raw.fleet.as_ref().and_then(|f| v.fleet(f));
    if raw.listeners.is_empty() && !refused_lines {
        let problem = match format {
            FileFormat::Toml => Problem::NoListeners,
            FileFormat::Ini => Problem::NoMappings,
        };
        v.errors.push(v.error(None, Vec::new(), problem));
    }
    let listeners = raw
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| v.listener(i, l, &global, algorithm))
        .collect();
    match ConfigErrors::from_list(v.errors) {
        Some(errors) => Err(errors),
        None => Ok(Config {
            global,
            admin,
            listeners,
            fleet,
        }),
    }
}

/// State of one validation pass.
struct Validator<'a> {
    /// Where the lines of the text start: every error names its line, and
    /// so does every first listing a duplicate may point back to.
    lines: LineStarts,
    format: FileFormat,
    origin: &'a str,
    /// Where relative file paths are taken from: the config file's folder.
    folder: &'a Path,
    errors: Vec<ConfigError>,
    /// Listener names seen, with their line.
    names: HashMap<String, Option<usize>>,
    /// Listen addresses claimed so far.
    listens: Listens,
    /// Host name resolutions, once per host: an address or the reason.
    resolved: HashMap<String, Result<IpAddr, ResolveError>>,
}

/// A checked listener's fields, before it joins the model.
type Checked<T> = Option<T>;

impl Validator<'_> {
    /// The line a value at `span` is on.
    fn line(&self, span: Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    fn error(&self, line: Option<usize>, context: Vec<Context>, problem: Problem) -> ConfigError {
        ConfigError {
            origin: self.origin.to_string(),
            line,
            context,
            problem,
        }
    }

    fn report(&mut self, span: Range<usize>, context: Vec<Context>, problem: Problem) {
        let line = Some(self.line(span));
        self.errors.push(self.error(line, context, problem));
    }

    /// `result`'s value, or `None` with its problem reported at `span`
    /// under `context`.
    fn ok_or_report<T>(
        &mut self,
        result: Result<T, Problem>,
        span: Range<usize>,
        context: Vec<Context>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                self.report(span, context, problem);
                None
            }
        }
    }

    /// A required key that is absent, reported at `span` (the table's or
    /// the listener's header).
    fn missing(&mut self, span: Range<usize>, scope: &[Context], key: &str) {
        self.report(span, scope.to_vec(), Problem::MissingKey(key.into()));
    }

    // === typed values ===

    /// An integer key checked against `min..=max`, in the model's type `T`:
    /// `Some(None)` when absent, `None` when bad (reported).
    fn int<T: TryFrom<i64>>(
        &mut self,
        raw: &Option<Spanned<i64>>,
        scope: &[Context],
        key: &str,
        min: i64,
        max: i64,
    ) -> Checked<Option<T>> {
        let Some(value) = raw else {
            return Some(None);
        };
        let n = *value.get_ref();
        // Every caller's bounds fit `T`, so the conversion fails only where
        // the range check does: the value is refused, never replaced.
        let checked = match T::try_from(n) {
            Ok(v) if (min..=max).contains(&n) => Ok(v),
            _ => Err(Problem::OutOfRange { value: n, min, max }),
        };
        self.ok_or_report(checked, value.span(), with_key(scope, key))
            .map(Some)
    }

    /// A string key turned into a value by `check` (one of `values.rs`):
    /// `Some(None)` when absent, `None` when bad (reported).
    fn text<T>(
        &mut self,
        raw: &Option<Spanned<String>>,
        scope: &[Context],
        key: &str,
        check: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Checked<Option<T>> {
        let Some(value) = raw else {
            return Some(None);
        };
        self.ok_or_report(check(value.get_ref()), value.span(), with_key(scope, key))
            .map(Some)
    }

    /// A list of strings under `key`, each turned into a value by `check`:
    /// absent is empty; every bad entry is reported, and the list stands
    /// only when all of them pass.
    fn strings<T>(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        scope: &[Context],
        key: &str,
        check: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<Vec<T>> {
        let Some(list) = raw else {
            return Some(Vec::new());
        };
        let context = with_key(scope, key);
        let values: Vec<Option<T>> = list
            .get_ref()
            .iter()
            .map(|entry| self.ok_or_report(check(entry.get_ref()), entry.span(), context.clone()))
            .collect();
        values.into_iter().collect()
    }
}

// === context paths ===

/// `scope` followed by `key "key"`.
fn with_key(scope: &[Context], key: &str) -> Vec<Context> {
    with(scope, Context::Key(key.to_string()))
}

fn with(scope: &[Context], last: Context) -> Vec<Context> {
    let mut context = scope.to_vec();
    context.push(last);
    context
}
