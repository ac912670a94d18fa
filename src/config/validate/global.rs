//! The process-wide parts of a config: `[global]` (INI `[options]`), the
//! INI `[options] algorithm` that listeners fall back to, and `[admin]`
//! (INI `[options] admin`).

use toml::Spanned;

use crate::config::error::Context;
use crate::config::limits::{MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_WORKERS};
use crate::config::native::{RawAdmin, RawGlobal};
use crate::config::{Admin, Algorithm, FileFormat, Global, defaults};

use super::Validator;
use super::values::{
    access_log_format, access_log_target, algorithm, duration, duration_or_zero, token,
};
use crate::config::error::Problem;
use crate::net::addr;

impl Validator<'_> {
    /// `[global]` (INI `[options]`), every key at its default when absent.
    pub(super) fn global(&mut self, raw: &RawGlobal) -> Global {
        let table = Context::Table(match self.format {
            FileFormat::Toml => "global".into(),
            FileFormat::Ini => "options".into(),
        });
        let scope = [table];
        let workers = self.int(&raw.workers, &scope, "workers", 0, MAX_WORKERS);
        let buffer_size = self.int(&raw.buffer_size, &scope, "buffer_size", 1, MAX_BUFFER_SIZE);
        let drain_timeout = self.text(&raw.drain_timeout, &scope, "drain_timeout", duration);
        let shutdown_delay = self.text(
            &raw.shutdown_delay,
            &scope,
            "shutdown_delay",
            duration_or_zero,
        );
        let access_log = self.text(&raw.access_log, &scope, "access_log", access_log_target);
        let access_log_format = self.text(
            &raw.access_log_format,
            &scope,
            "access_log_format",
            access_log_format,
        );
        let max_connections = self.int(
            &raw.max_connections,
            &scope,
            "max_connections",
            1,
            MAX_CONNECTIONS,
        );
        // Built even when a value is bad (reported): listeners copy from
        // it, and the pass fails anyway.
        Global {
            workers: workers.flatten().unwrap_or(defaults::WORKERS),
            buffer_size: buffer_size.flatten().unwrap_or(defaults::BUFFER_SIZE),
            drain_timeout: drain_timeout.flatten().unwrap_or(defaults::DRAIN_TIMEOUT),
            max_connections: max_connections
                .flatten()
                .unwrap_or(defaults::GLOBAL_MAX_CONNECTIONS),
            shutdown_delay: shutdown_delay.flatten().unwrap_or(defaults::SHUTDOWN_DELAY),
            access_log: access_log.flatten().flatten(),
            access_log_format: access_log_format
                .flatten()
                .unwrap_or(defaults::ACCESS_LOG_FORMAT),
        }
    }

    /// The INI `[options] algorithm`, checked once; round robin when absent.
    /// `None` when it is bad (already reported).
    pub(super) fn default_algorithm(&mut self, raw: &Option<Spanned<String>>) -> Option<Algorithm> {
        let scope = [Context::Table("options".into())];
        let algorithm = self.text(raw, &scope, "algorithm", algorithm)?;
        Some(algorithm.unwrap_or(Algorithm::RoundRobin))
    }

    /// Checks `[admin]` (TOML) or `[options] admin` (INI); `None` when
    /// anything in it is bad (reported). Its address takes part in the
    /// listen conflict checks, as a listener's does.
    pub(super) fn admin(&mut self, spanned: &Spanned<RawAdmin>) -> Option<Admin> {
        let raw = spanned.get_ref();
        let errors_before = self.errors.len();
        // TOML: `[admin]: key "listen"`; INI: `[options]: key "admin"`.
        let (table, listen_key) = match self.format {
            FileFormat::Toml => ("admin", "listen"),
            FileFormat::Ini => ("options", "admin"),
        };
        let scope = [Context::Table(table.into())];
        let listen = match &raw.listen {
            None => {
                self.missing(spanned.span(), &scope, listen_key);
                None
            }
            Some(value) => self.listen_value(value, &scope, listen_key, false),
        };
        let token = self.text(&raw.token, &scope, "token", token);
        let allowed_hosts = self.allowed_hosts(raw.allowed_hosts.as_ref(), &scope);
        if let (Some(addr), Some(written)) = (listen, &raw.listen) {
            let here = match self.format {
                FileFormat::Toml => Context::Table("admin".into()),
                FileFormat::Ini => Context::Key("admin".into()),
            };
            self.claim_listen(addr, written.span(), here);
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Admin {
            listen: listen?,
            token: token?,
            allowed_hosts: allowed_hosts?,
        })
    }

    /// `[admin] allowed_hosts`: host names; every bad one reported.
    fn allowed_hosts(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        scope: &[Context],
    ) -> Option<Vec<String>> {
        self.strings(raw, scope, "allowed_hosts", |entry| {
            addr::host_name(entry)
                .map(str::to_string)
                .map_err(Problem::from)
        })
    }
}
