//! One listener: its name, listen address, mode, algorithm, timeouts, allow
//! list and health checks, and that its name and address are its own. Its
//! backends are checked in `backend.rs`, its source address in `source.rs`,
//! listen addresses in `listen.rs`, the keys of one mode only in `mode.rs`,
//! its TLS in `tls.rs`, its `[listeners.discovery]` in `discovery.rs`.

use std::net::SocketAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::limits::{MAX_CONNECTIONS, MAX_RETRIES, MAX_RISE_FALL, STATUS_RANGE};
use crate::config::native::{RawHealthCheck, RawListener, RawPassiveCheck};
use crate::config::{Algorithm, FileFormat, Global, HealthCheck, Listener, PassiveCheck, defaults};
use crate::net::addr;

use super::values::{
    algorithm, check_kind, check_path, duration, duration_or_zero, listener_name, mode,
};
use super::{Checked, Validator, with, with_key};

impl Validator<'_> {
    /// Checks one listener; `None` when anything in it is bad (reported).
    pub(super) fn listener(
        &mut self,
        index: usize,
        spanned: &Spanned<RawListener>,
        global: &Global,
        default_algorithm: Option<Algorithm>,
    ) -> Option<Listener> {
        let raw = spanned.get_ref();
        let errors_before = self.errors.len();
        let name = self.name_of(raw);
        let here = self.listener_context(index, name.as_ref());
        let scope = [here.clone()];
        let header = spanned.span();

        if let (Some(name), FileFormat::Toml) = (&raw.name, self.format) {
            self.check_name(name, &scope);
        }
        let listen = self.listen(raw.listen.as_ref(), &header, &scope);
        let mode_name = self.text(&raw.mode, &scope, "mode", mode);
        let algorithm = match &raw.algorithm {
            Some(_) => self.text(&raw.algorithm, &scope, "algorithm", algorithm),
            None => default_algorithm.map(Some),
        };
        let connect_timeout = self.text(&raw.connect_timeout, &scope, "connect_timeout", duration);
        let idle_timeout = self.text(&raw.idle_timeout, &scope, "idle_timeout", duration);
        let retries = self.int(&raw.retries, &scope, "retries", 0, MAX_RETRIES);
        let default_idle = idle_timeout.flatten().unwrap_or(defaults::IDLE_TIMEOUT);
        let mode = self.mode_settings(raw, &scope, global, mode_name, default_idle);
        let allow = self.cidrs(raw.allow.as_ref(), &scope, "allow", Problem::EmptyAllow);
        let accept_proxy_protocol = self.cidrs(
            raw.accept_proxy_protocol.as_ref(),
            &scope,
            "accept_proxy_protocol",
            Problem::EmptyAcceptProxyProtocol,
        );
        let max_connections = self.int(
            &raw.max_connections,
            &scope,
            "max_connections",
            1,
            MAX_CONNECTIONS,
        );
        let discovery = match &raw.discovery {
            Some(table) => self.discovery(table, &scope).map(Some),
            None => Some(None),
        };
        let backends = match (&raw.discovery, &raw.backends) {
            (None, list) => self.backends(list.as_ref(), raw.refused_backends, &header, &scope),
            (Some(_), Some(list)) if !list.get_ref().is_empty() => {
                let context = with_key(&scope, "backends");
                self.report(list.span(), context, Problem::BackendsAndDiscovery);
                None
            }
            (Some(_), _) => Some(Vec::new()),
        };
        let source_address = self.source_address(&raw.source_address, &scope, backends.as_deref());
        let slow_start = self.text(&raw.slow_start, &scope, "slow_start", duration_or_zero);
        let ewma_decay = self.text(&raw.ewma_decay, &scope, "ewma_decay", duration);
        let health_check = match &raw.health_check {
            Some(check) => self.health_check(check.get_ref(), &scope).map(Some),
            None => Some(None),
        };
        let passive_check = match &raw.passive_check {
            Some(check) => self.passive_check(check.get_ref(), &scope),
            None => Some(Some(defaults::PASSIVE_CHECK)),
        };
        let mode_of_tls = mode_name.map(|m| m.unwrap_or(defaults::MODE));
        let tls = self.tls(raw.tls.as_ref(), &scope, mode_of_tls);

        if let (Some(name), Some(written), Some(addr)) = (&name, &raw.listen, listen) {
            self.claim_name(name, here.clone());
            self.claim_listen(addr, written.span(), here);
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Listener {
            name: name?.into_inner(),
            listen: listen?,
            mode: mode?,
            algorithm: algorithm.flatten().unwrap_or(Algorithm::RoundRobin),
            connect_timeout: connect_timeout?.unwrap_or(defaults::CONNECT_TIMEOUT),
            idle_timeout: idle_timeout?.unwrap_or(defaults::IDLE_TIMEOUT),
            retries: retries?.unwrap_or(defaults::RETRIES),
            source_address: source_address?,
            allow: allow?,
            accept_proxy_protocol: accept_proxy_protocol?,
            max_connections: max_connections?.unwrap_or(defaults::LISTENER_MAX_CONNECTIONS),
            backends: backends?,
            discovery: discovery?,
            slow_start: slow_start?.unwrap_or(defaults::SLOW_START),
            ewma_decay: ewma_decay?.unwrap_or(defaults::EWMA_DECAY),
            health_check: health_check?,
            passive_check: passive_check?,
            tls: tls?,
        })
    }

    /// How errors name the listener at `index` (0-based): by `name` (its
    /// name, else its listen address as written), as a mapping in INI; by
    /// its position when it has neither.
    fn listener_context(&self, index: usize, name: Option<&Spanned<String>>) -> Context {
        match (name, self.format) {
            (Some(n), FileFormat::Ini) => Context::Mapping(n.get_ref().clone()),
            (Some(n), FileFormat::Toml) => Context::Listener(n.get_ref().clone()),
            (None, _) => Context::ListenerNumber(index + 1),
        }
    }

    /// The listener's name: its `name` when a listener may be called so,
    /// else its listen address as written, without the spaces around it,
    /// which the address grammar ignores too (a newline there would end up
    /// in every log line naming the listener). A bad `name` is reported by
    /// [`Self::check_name`].
    fn name_of(&self, raw: &RawListener) -> Option<Spanned<String>> {
        let usable = |name: &&Spanned<String>| match self.format {
            FileFormat::Toml => listener_name(name.get_ref()).is_ok(),
            // An INI mapping is named by its key, which is its listen
            // address as well: the listen grammar refuses what a name may
            // not hold, so the key names its errors as written.
            FileFormat::Ini => true,
        };
        match raw.name.as_ref().filter(usable) {
            Some(name) => Some(name.clone()),
            None => raw
                .listen
                .as_ref()
                .map(|listen| Spanned::new(listen.span(), listen.get_ref().trim().to_string())),
        }
    }

    fn check_name(&mut self, name: &Spanned<String>, scope: &[Context]) {
        if let Err(problem) = listener_name(name.get_ref()) {
            self.report(name.span(), with_key(scope, "name"), problem);
        }
    }

    /// Records `name` as taken by `here`, or reports that an earlier
    /// listener has it.
    fn claim_name(&mut self, name: &Spanned<String>, here: Context) {
        if let Some(&first) = self.names.get(name.get_ref()) {
            self.report(name.span(), vec![here], Problem::DuplicateName(first));
        } else {
            let line = Some(self.line(name.span()));
            self.names.insert(name.get_ref().clone(), line);
        }
    }

    /// The listen address; a missing one is reported on the listener's line.
    fn listen(
        &mut self,
        raw: Option<&Spanned<String>>,
        header: &Range<usize>,
        scope: &[Context],
    ) -> Option<SocketAddr> {
        let Some(value) = raw else {
            self.missing(header.clone(), scope, "listen");
            return None;
        };
        // An INI mapping is named by its listen address already.
        let named_by_value = self.format == FileFormat::Ini;
        self.listen_value(value, scope, "listen", named_by_value)
    }

    /// The client networks let in: every entry is checked (and reported),
    /// and the list stands only when all of them pass.
    /// A list of CIDR networks under `key` (`allow`,
    /// `accept_proxy_protocol`): absent is empty; present but empty is
    /// `empty` (ambiguous: refused); every bad entry is reported.
    fn cidrs(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        scope: &[Context],
        key: &str,
        empty: Problem,
    ) -> Option<Vec<IpNet>> {
        let Some(list) = raw else {
            return Some(Vec::new());
        };
        let context = with_key(scope, key);
        if list.get_ref().is_empty() {
            self.report(list.span(), context, empty);
            return None;
        }
        let nets: Vec<Option<IpNet>> = list
            .get_ref()
            .iter()
            .map(|entry| {
                let net = addr::cidr(entry.get_ref()).map_err(Problem::from);
                self.ok_or_report(net, entry.span(), context.clone())
            })
            .collect();
        nets.into_iter().collect()
    }

    // === health checks ===

    /// `[listeners.health_check]`; `None` when anything in it is bad
    /// (reported).
    fn health_check(&mut self, raw: &RawHealthCheck, scope: &[Context]) -> Option<HealthCheck> {
        let scope = with(scope, Context::Table("listeners.health_check".into()));
        let kind = self.text(&raw.kind, &scope, "kind", check_kind);
        let interval = self.text(&raw.interval, &scope, "interval", duration);
        let timeout = self.text(&raw.timeout, &scope, "timeout", duration);
        let path = self.text(&raw.path, &scope, "path", check_path);
        let (min, max) = STATUS_RANGE;
        let status = self.int(&raw.expect_status, &scope, "expect_status", min, max);
        let rise = self.int(&raw.rise, &scope, "rise", 1, MAX_RISE_FALL);
        let fall = self.int(&raw.fall, &scope, "fall", 1, MAX_RISE_FALL);
        Some(HealthCheck {
            kind: kind?.unwrap_or(defaults::CHECK_KIND),
            interval: interval?.unwrap_or(defaults::CHECK_INTERVAL),
            timeout: timeout?.unwrap_or(defaults::CHECK_TIMEOUT),
            path: path?.unwrap_or_else(|| defaults::CHECK_PATH.to_string()),
            expect_status: status?.unwrap_or(defaults::EXPECT_STATUS),
            rise: rise?.unwrap_or(defaults::RISE),
            fall: fall?.unwrap_or(defaults::FALL),
        })
    }

    /// `[listeners.passive_check]`: `Some(None)` when `enabled = false`,
    /// `None` when anything in it is bad (reported).
    fn passive_check(
        &mut self,
        raw: &RawPassiveCheck,
        scope: &[Context],
    ) -> Checked<Option<PassiveCheck>> {
        let scope = with(scope, Context::Table("listeners.passive_check".into()));
        let fall = self.int(&raw.fall, &scope, "fall", 1, MAX_RISE_FALL);
        let backoff = self.text(&raw.backoff, &scope, "backoff", duration);
        let check = PassiveCheck {
            fall: fall?.unwrap_or(defaults::PASSIVE_FALL),
            backoff: backoff?.unwrap_or(defaults::PASSIVE_BACKOFF),
        };
        let enabled = raw.enabled.as_ref().is_none_or(|e| *e.get_ref());
        Some(enabled.then_some(check))
    }
}
