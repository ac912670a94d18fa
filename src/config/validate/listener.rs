//! One listener: its name, listen address (and whether it can be bound next
//! to the others), mode, algorithm, timeouts, allow list and health checks.
//! Its backends are checked in `backend.rs`.

use std::net::SocketAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::native::{RawHealthCheck, RawListener, RawPassiveCheck};
use crate::config::{
    Algorithm, Format, Global, HealthCheck, Listener, Mode, PassiveCheck, defaults,
};
use crate::net::addr::{self, AddrError};

use super::values::{algorithm, check_kind, check_path, conflicts, mode, proxy_protocol};
use super::{
    Checked, MAX_CONNECTIONS, MAX_RETRIES, MAX_RISE_FALL, STATUS_RANGE, Validator, to_usize, with,
    with_key,
};

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
        let given = raw.name.as_ref().filter(|n| !n.get_ref().is_empty());
        let name = given.or(raw.listen.as_ref());
        let name_text = name.map(|n| n.get_ref().clone());
        let here = match (&name_text, self.format) {
            (Some(n), Format::Ini) => Context::Mapping(n.clone()),
            (Some(n), Format::Toml) => Context::Listener(n.clone()),
            (None, _) => Context::ListenerNumber(index + 1),
        };
        let scope = [here.clone()];
        let header = spanned.span();

        if let Some(name) = &raw.name {
            self.check_name(name, &scope);
        }
        let listen = self.listen(raw.listen.as_ref(), &header, &scope);
        let mode = self.text(&raw.mode, &scope, "mode", mode);
        let algorithm = match &raw.algorithm {
            Some(_) => self.text(&raw.algorithm, &scope, "algorithm", algorithm),
            None => default_algorithm.map(Some),
        };
        let connect_timeout = self.duration(&raw.connect_timeout, &scope, "connect_timeout");
        let idle_timeout = self.duration(&raw.idle_timeout, &scope, "idle_timeout");
        let retries = self.int(&raw.retries, &scope, "retries", 0, MAX_RETRIES);
        let source_address = self.text(&raw.source_address, &scope, "source_address", |t| {
            Ok(addr::ip(t)?)
        });
        self.text(
            &raw.proxy_protocol,
            &scope,
            "proxy_protocol",
            proxy_protocol,
        );
        let allow = self.allow(raw.allow.as_ref(), &scope);
        let max_connections = self.int(
            &raw.max_connections,
            &scope,
            "max_connections",
            1,
            MAX_CONNECTIONS,
        );
        let backends = self.backends(raw.backends.as_ref(), &header, &scope);
        let slow_start = self.duration_or_zero(&raw.slow_start, &scope, "slow_start");
        let ewma_decay = self.duration(&raw.ewma_decay, &scope, "ewma_decay");
        let health_check = match &raw.health_check {
            Some(check) => self.health_check(check.get_ref(), &scope).map(Some),
            None => Some(None),
        };
        let passive_check = match &raw.passive_check {
            Some(check) => self.passive_check(check.get_ref(), &scope),
            None => Some(Some(defaults::PASSIVE_CHECK)),
        };

        if let (Some(name), Some(written), Some(addr)) = (name, &raw.listen, listen) {
            self.check_unique(name, written, addr, here);
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Listener {
            name: name_text?,
            listen: listen?,
            mode: mode.flatten().unwrap_or(Mode::Tcp),
            algorithm: algorithm.flatten().unwrap_or(Algorithm::RoundRobin),
            connect_timeout: connect_timeout?.unwrap_or(defaults::CONNECT_TIMEOUT),
            idle_timeout: idle_timeout?.unwrap_or(defaults::IDLE_TIMEOUT),
            retries: retries?.map_or(defaults::RETRIES, |n| u32::try_from(n).unwrap_or(0)),
            source_address: source_address?,
            allow: allow?,
            max_connections: to_usize(max_connections, defaults::LISTENER_MAX_CONNECTIONS),
            buffer_size: global.buffer_size,
            backends: backends?,
            slow_start: slow_start?.unwrap_or(defaults::SLOW_START),
            ewma_decay: ewma_decay?.unwrap_or(defaults::EWMA_DECAY),
            health_check: health_check?,
            passive_check: passive_check?,
        })
    }

    // === health checks ===

    /// `[listeners.health_check]`; `None` when anything in it is bad
    /// (reported).
    fn health_check(&mut self, raw: &RawHealthCheck, scope: &[Context]) -> Option<HealthCheck> {
        let scope = with(scope, Context::Table("listeners.health_check".into()));
        let kind = self.text(&raw.kind, &scope, "kind", check_kind);
        let interval = self.duration(&raw.interval, &scope, "interval");
        let timeout = self.duration(&raw.timeout, &scope, "timeout");
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
            expect_status: status?.map_or(defaults::EXPECT_STATUS, |n| {
                u16::try_from(n).unwrap_or(defaults::EXPECT_STATUS)
            }),
            rise: rise?.map_or(defaults::RISE, |n| u32::try_from(n).unwrap_or(1)),
            fall: fall?.map_or(defaults::FALL, |n| u32::try_from(n).unwrap_or(1)),
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
        let backoff = self.duration(&raw.backoff, &scope, "backoff");
        let check = PassiveCheck {
            fall: fall?.map_or(defaults::PASSIVE_FALL, |n| u32::try_from(n).unwrap_or(1)),
            backoff: backoff?.unwrap_or(defaults::PASSIVE_BACKOFF),
        };
        let enabled = raw.enabled.as_ref().is_none_or(|e| *e.get_ref());
        Some(enabled.then_some(check))
    }

    fn check_name(&mut self, name: &Spanned<String>, scope: &[Context]) {
        if name.get_ref().is_empty() {
            self.report(name.span(), with_key(scope, "name"), Problem::EmptyName);
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
            let problem = Problem::MissingKey("listen".into());
            self.report(header.clone(), scope.to_vec(), problem);
            return None;
        };
        // An INI mapping is named by its listen address already.
        let named_by_value = self.format == Format::Ini;
        self.listen_value(value, scope, "listen", named_by_value)
    }

    /// A listen address given under `key`. A bad one is reported with the
    /// value in the context when the problem does not quote it itself,
    /// unless the scope already names the value (`named_by_value`).
    pub(super) fn listen_value(
        &mut self,
        value: &Spanned<String>,
        scope: &[Context],
        key: &str,
        named_by_value: bool,
    ) -> Option<SocketAddr> {
        let problem = match addr::listen_address(value.get_ref()) {
            Ok(addr) => return Some(addr),
            Err(problem) => problem,
        };
        let unquoted = matches!(
            problem,
            AddrError::MissingPort | AddrError::MissingHost | AddrError::PortNotNumber
        );
        let context = if named_by_value {
            scope.to_vec()
        } else if unquoted {
            with(
                scope,
                Context::KeyValue(key.into(), value.get_ref().clone()),
            )
        } else {
            with_key(scope, key)
        };
        self.report(value.span(), context, problem.into());
        None
    }

    /// Names must be unique; listen addresses must be bindable side by side.
    fn check_unique(
        &mut self,
        name: &Spanned<String>,
        written: &Spanned<String>,
        listen: SocketAddr,
        here: Context,
    ) {
        if let Some(&first) = self.names.get(name.get_ref()) {
            self.report(
                name.span(),
                vec![here.clone()],
                Problem::DuplicateName(first),
            );
        } else {
            let line = Some(self.line(name.span()));
            self.names.insert(name.get_ref().clone(), line);
        }
        let line = Some(self.line(written.span()));
        let clash = self
            .listens
            .iter()
            .find(|(other, _, _)| conflicts(listen, *other))
            .cloned();
        if let Some((other_addr, other, other_line)) = clash {
            let problem = Problem::ListenConflict {
                addr: listen,
                other: Box::new(other),
                other_addr,
                other_line,
            };
            self.errors.push(self.error(line, vec![here], problem));
        } else {
            self.listens.push((listen, here, line));
        }
    }

    fn allow(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        scope: &[Context],
    ) -> Option<Vec<IpNet>> {
        let Some(list) = raw else {
            return Some(Vec::new());
        };
        if list.get_ref().is_empty() {
            self.report(list.span(), with_key(scope, "allow"), Problem::EmptyAllow);
            return None;
        }
        let mut nets = Some(Vec::new());
        for entry in list.get_ref() {
            match addr::cidr(entry.get_ref()) {
                Ok(net) => {
                    if let Some(nets) = nets.as_mut() {
                        nets.push(net);
                    }
                }
                Err(problem) => {
                    self.report(entry.span(), with_key(scope, "allow"), problem.into());
                    nets = None;
                }
            }
        }
        nets
    }
}
