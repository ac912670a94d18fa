//! A listener's backend list: present and not empty, each address listed
//! once, each weight in range, each host resolved (once per host per pass).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::native::RawBackend;
use crate::config::{BackendSpec, Format, defaults};
use crate::net::addr;

use super::{MAX_WEIGHT, Validator, with, with_key};

impl Validator<'_> {
    pub(super) fn backends(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawBackend>>>>,
        header: &Range<usize>,
        scope: &[Context],
    ) -> Option<Vec<BackendSpec>> {
        let Some(list) = raw else {
            let problem = Problem::MissingKey("backends".into());
            self.report(header.clone(), scope.to_vec(), problem);
            return None;
        };
        if list.get_ref().is_empty() {
            let context = match self.format {
                Format::Toml => with_key(scope, "backends"),
                Format::Ini => scope.to_vec(),
            };
            self.report(list.span(), context, Problem::NoBackends);
            return None;
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut specs = Some(Vec::new());
        for entry in list.get_ref() {
            let raw = entry.get_ref();
            let line = self.line(entry.span());
            let spec = self.backend(entry, scope);
            if let Some(&first) = seen.get(raw.address.as_str()) {
                let context = with(scope, Context::Backend(raw.address.clone()));
                self.report(
                    entry.span(),
                    context,
                    Problem::DuplicateBackend(Some(first)),
                );
                specs = None;
            } else {
                seen.insert(&raw.address, line);
            }
            match (spec, specs.as_mut()) {
                (Some(spec), Some(specs)) => specs.push(spec),
                (None, _) => specs = None,
                (Some(_), None) => {}
            }
        }
        specs
    }

    fn backend(&mut self, entry: &Spanned<RawBackend>, scope: &[Context]) -> Option<BackendSpec> {
        let raw = entry.get_ref();
        let context = with(scope, Context::Backend(raw.address.clone()));
        let weight = match &raw.weight {
            None => Some(defaults::WEIGHT),
            Some(w) => match u32::try_from(*w.get_ref()) {
                Ok(n) if n >= 1 && i64::from(n) <= MAX_WEIGHT => Some(n),
                _ => {
                    let problem = Problem::WeightOutOfRange {
                        value: *w.get_ref(),
                        max: MAX_WEIGHT,
                    };
                    self.report(w.span(), context.clone(), problem);
                    None
                }
            },
        };
        let resolved = match self.backend_address(&raw.address) {
            Ok(addr) => Some(addr),
            Err(problem) => {
                self.report(entry.span(), context, problem);
                None
            }
        };
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
