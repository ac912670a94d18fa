//! The process-wide parts of a config: `[global]` (INI `[options]`), the
//! INI `[options] algorithm` that listeners fall back to, and `[admin]`
//! (INI `[options] admin`).

use toml::Spanned;

use super::values::{algorithm, token};
use super::{MAX_BUFFER_SIZE, MAX_CONNECTIONS, MAX_WORKERS, Validator, to_usize};
use crate::config::error::{Context, Problem};
use crate::config::native::{RawAdmin, RawGlobal};
use crate::config::{Admin, Algorithm, Format, Global, defaults};

impl Validator<'_> {
    pub(super) fn global(&mut self, raw: &RawGlobal) -> Global {
        let table = Context::Table(match self.format {
            Format::Toml => "global".into(),
            Format::Ini => "options".into(),
        });
        let scope = [table];
        let workers = self.int(&raw.workers, &scope, "workers", 0, MAX_WORKERS);
        let buffer_size = self.int(&raw.buffer_size, &scope, "buffer_size", 1, MAX_BUFFER_SIZE);
        let drain_timeout = self.duration(&raw.drain_timeout, &scope, "drain_timeout");
        let max_connections = self.int(
            &raw.max_connections,
            &scope,
            "max_connections",
            1,
            MAX_CONNECTIONS,
        );
        Global {
            workers: to_usize(workers, defaults::WORKERS),
            buffer_size: to_usize(buffer_size, defaults::BUFFER_SIZE),
            drain_timeout: drain_timeout.flatten().unwrap_or(defaults::DRAIN_TIMEOUT),
            max_connections: to_usize(max_connections, defaults::GLOBAL_MAX_CONNECTIONS),
        }
    }

    /// The INI `[options] algorithm`, checked once; round robin when absent.
    /// `None` when it is bad (already reported).
    pub(super) fn default_algorithm(&mut self, raw: Option<&Spanned<String>>) -> Option<Algorithm> {
        let Some(value) = raw else {
            return Some(Algorithm::RoundRobin);
        };
        match algorithm(value.get_ref()) {
            Ok(a) => Some(a),
            Err(problem) => {
                let context = vec![
                    Context::Table("options".into()),
                    Context::Key("algorithm".into()),
                ];
                self.report(value.span(), context, problem);
                None
            }
        }
    }

    /// Checks `[admin]` (TOML) or `[options] admin` (INI); `None` when
    /// anything in it is bad (reported). Its address takes part in the
    /// listen conflict checks, as a listener's does.
    pub(super) fn admin(&mut self, spanned: &Spanned<RawAdmin>) -> Option<Admin> {
        let raw = spanned.get_ref();
        let errors_before = self.errors.len();
        // TOML: `[admin]: key "listen"`; INI: `[options]: key "admin"`.
        let (table, listen_key) = match self.format {
            Format::Toml => ("admin", "listen"),
            Format::Ini => ("options", "admin"),
        };
        let scope = [Context::Table(table.into())];
        let listen = match &raw.listen {
            None => {
                let problem = Problem::MissingKey(listen_key.into());
                self.report(spanned.span(), scope.to_vec(), problem);
                None
            }
            Some(value) => self.listen_value(value, &scope, listen_key, false),
        };
        let token = self.text(&raw.token, &scope, "token", token);
        if let (Some(addr), Some(written)) = (listen, &raw.listen) {
            let line = Some(self.line(written.span()));
            let here = match self.format {
                Format::Toml => Context::Table("admin".into()),
                Format::Ini => Context::Key("admin".into()),
            };
            self.listens.push((addr, here, line));
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Admin {
            listen: listen?,
            token: token?,
        })
    }
}
