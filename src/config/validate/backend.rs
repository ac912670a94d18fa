//! A listener's backend list: present and not empty, each address listed
//! once, each weight in range, each host resolved (once per host per pass).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::limits::MAX_WEIGHT;
use crate::config::native::RawBackend;
use crate::config::{BackendSpec, FileFormat, defaults};
use crate::net::addr;

use super::{Validator, with, with_key};

impl Validator<'_> {
    /// A listener's backends; a missing list is reported on the listener's
    /// line. Every entry is checked (and reported), and the list stands
    /// only when all of them pass.
    pub(super) fn backends(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawBackend>>>>,
        header: &Range<usize>,
        scope: &[Context],
    ) -> Option<Vec<BackendSpec>> {
        let Some(list) = raw else {
            self.missing(header.clone(), scope, "backends");
            return None;
        };
        if list.get_ref().is_empty() {
            let context = match self.format {
                FileFormat::Toml => with_key(scope, "backends"),
                FileFormat::Ini => scope.to_vec(),
            };
            self.report(list.span(), context, Problem::NoBackends);
            return None;
        }
        // The line each address was first listed on.
        let mut first_lines: HashMap<&str, usize> = HashMap::new();
        let specs: Vec<Option<BackendSpec>> = list
            .get_ref()
            .iter()
            .map(|entry| {
                let spec = self.backend(entry, scope);
                let address = entry.get_ref().address.as_str();
                match first_lines.get(address) {
                    Some(&first) => {
                        let context = with(scope, Context::Backend(address.to_string()));
                        let problem = Problem::DuplicateBackend(Some(first));
                        self.report(entry.span(), context, problem);
                        None
                    }
                    None => {
                        first_lines.insert(address, self.line(entry.span()));
                        spec
                    }
                }
            })
            .collect();
        specs.into_iter().collect()
    }

    /// One backend: its weight in range and its address resolved.
    fn backend(&mut self, entry: &Spanned<RawBackend>, scope: &[Context]) -> Option<BackendSpec> {
        let raw = entry.get_ref();
        let context = with(scope, Context::Backend(raw.address.clone()));
        let weight = match &raw.weight {
            None => Some(defaults::WEIGHT),
            Some(w) => {
                let value = *w.get_ref();
                let weight = match u32::try_from(value) {
                    Ok(n) if (1..=MAX_WEIGHT).contains(&n) => Ok(n),
                    _ => Err(Problem::WeightOutOfRange {
                        value,
                        max: MAX_WEIGHT,
                    }),
                };
                self.ok_or_report(weight, w.span(), context.clone())
            }
        };
        let resolved = self.backend_address(&raw.address);
        let resolved = self.ok_or_report(resolved, entry.span(), context);
        Some(BackendSpec {
            address: raw.address.clone(),
            resolved: resolved?,
            weight: weight?,
        })
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
