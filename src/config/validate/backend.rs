//! A listener's backend list: present and not empty, each address a string
//! listed once, each weight an integer in range, each host resolved (once
//! per host per pass).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::limits::MAX_WEIGHT;
use crate::config::native::{RawBackend, Typed};
use crate::config::{BackendSpec, FileFormat, defaults};
use crate::net::addr;

use super::{Validator, with, with_key};

impl Validator<'_> {
    /// A listener's backends; a missing list is reported on the listener's
    /// line. Every entry is checked (and reported), and the list stands
    /// only when all of them pass. `refused` says the INI reader left out
    /// items it reported already: the list does not stand, and being empty
    /// is no news.
    pub(super) fn backends(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawBackend>>>>,
        refused: bool,
        header: &Range<usize>,
        scope: &[Context],
    ) -> Option<Vec<BackendSpec>> {
        let Some(list) = raw else {
            self.missing(header.clone(), scope, "backends");
            return None;
        };
        if list.get_ref().is_empty() {
            if !refused {
                let context = match self.format {
                    FileFormat::Toml => with_key(scope, "backends"),
                    FileFormat::Ini => scope.to_vec(),
                };
                self.report(list.span(), context, Problem::NoBackends);
            }
            return None;
        }
        // Where each address was first listed: its line is looked up only
        // when a duplicate names it.
        let mut first_spans: HashMap<&str, Range<usize>> = HashMap::new();
        let specs: Vec<Option<BackendSpec>> = list
            .get_ref()
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let address = match &entry.get_ref().address {
                    Typed::Value(address) => address,
                    Typed::Wrong(found) => {
                        self.mistyped_address(entry.span(), found, index, scope);
                        return None;
                    }
                };
                let spec = self.backend(entry, address, scope);
                match first_spans.get(address.as_str()) {
                    Some(first) => {
                        let first = self.line(first.clone());
                        let context = with(scope, Context::Backend(address.to_string()));
                        let problem = Problem::DuplicateBackend(Some(first));
                        self.report(entry.span(), context, problem);
                        None
                    }
                    None => {
                        first_spans.insert(address.as_str(), entry.span());
                        spec
                    }
                }
            })
            .collect();
        let specs: Option<Vec<BackendSpec>> = specs.into_iter().collect();
        specs.filter(|_| !refused)
    }

    /// One backend, whose address is `address`: its weight an integer in
    /// range and its address resolved.
    fn backend(
        &mut self,
        entry: &Spanned<RawBackend>,
        address: &str,
        scope: &[Context],
    ) -> Option<BackendSpec> {
        let context = with(scope, Context::Backend(address.to_string()));
        let weight = match &entry.get_ref().weight {
            None => Some(defaults::WEIGHT),
            Some(w) => {
                let (weight, context) = match w.get_ref() {
                    Typed::Value(value) => (weight_in_range(*value), context.clone()),
                    Typed::Wrong(found) => {
                        let problem = Problem::WrongType {
                            found: found.clone(),
                            expected: "an integer",
                        };
                        (Err(problem), with(&context, Context::Key("weight".into())))
                    }
                };
                self.ok_or_report(weight, w.span(), context)
            }
        };
        let resolved = self.backend_address(address);
        let resolved = self.ok_or_report(resolved, entry.span(), context);
        Some(BackendSpec {
            address: address.to_string(),
            resolved: resolved?,
            weight: weight?,
        })
    }

    /// Reports a backend table (at `span`) whose `address` is `found`, not
    /// a string; `index` is its 0-based place in the list, which names it.
    fn mistyped_address(
        &mut self,
        span: Range<usize>,
        found: &str,
        index: usize,
        scope: &[Context],
    ) {
        let mut context = with(scope, Context::BackendNumber(index + 1));
        context.push(Context::Key("address".into()));
        let problem = Problem::WrongType {
            found: found.to_string(),
            expected: "a string",
        };
        self.report(span, context, problem);
    }

    /// `host:port` to the address connected to: IP literals as they are,
    /// host names through the resolver (first answer, cached per host).
    fn backend_address(&mut self, address: &str) -> Result<SocketAddr, Problem> {
        let parsed = addr::backend_address(address)?;
        if let Some(literal) = parsed.literal() {
            return Ok(literal);
        }
        let host = parsed.host.text;
        let answer = self
            .resolved
            .entry(host.to_string())
            .or_insert_with(|| addr::resolve_blocking(host))
            .clone();
        Ok(SocketAddr::new(answer?, parsed.port))
    }
}

/// A weight as typed, checked against 1..=[`MAX_WEIGHT`].
fn weight_in_range(value: i128) -> Result<u32, Problem> {
    match u32::try_from(value) {
        Ok(n) if (1..=MAX_WEIGHT).contains(&n) => Ok(n),
        _ => Err(Problem::WeightOutOfRange {
            value,
            max: MAX_WEIGHT,
        }),
    }
}
