//! A listener's `[listeners.discovery]`: the name (SRV, or `host:port` for
//! A/AAAA), the resolvers, and the two intervals in order. That it goes
//! without `backends` is checked in `listener.rs`, which sees both.

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::native::RawDiscovery;
use crate::config::{Discovery, defaults, format_duration};

use super::values::{dns_name, duration, resolver};
use super::{Validator, with};

impl Validator<'_> {
    /// `[listeners.discovery]`; `None` when anything in it is bad
    /// (reported).
    pub(super) fn discovery(
        &mut self,
        spanned: &Spanned<RawDiscovery>,
        scope: &[Context],
    ) -> Option<Discovery> {
        let raw = spanned.get_ref();
        let scope = with(scope, Context::Table("listeners.discovery".into()));
        let dns = match &raw.dns {
            Some(_) => self.text(&raw.dns, &scope, "dns", dns_name).flatten(),
            None => {
                self.missing(spanned.span(), &scope, "dns");
                None
            }
        };
        let resolvers = match &raw.resolvers {
            Some(list) if list.get_ref().is_empty() => {
                let context = with(&scope, Context::Key("resolvers".into()));
                self.report(list.span(), context, Problem::EmptyResolvers);
                None
            }
            list => self.strings(list.as_ref(), &scope, "resolvers", resolver),
        };
        let min = self.text(&raw.min_interval, &scope, "min_interval", duration);
        let max = self.text(&raw.max_interval, &scope, "max_interval", duration);
        let min_interval = min?.unwrap_or(defaults::DISCOVERY_MIN_INTERVAL);
        let max_interval = max?.unwrap_or(defaults::DISCOVERY_MAX_INTERVAL);
        if min_interval > max_interval {
            let span = raw
                .min_interval
                .as_ref()
                .or(raw.max_interval.as_ref())
                .map_or(spanned.span(), Spanned::span);
            let problem = Problem::IntervalsOutOfOrder {
                min: format_duration(min_interval),
                max: format_duration(max_interval),
            };
            self.report(span, scope, problem);
            return None;
        }
        Some(Discovery {
            dns: dns?,
            resolvers: resolvers?,
            min_interval,
            max_interval,
        })
    }
}
