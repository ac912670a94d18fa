//! The settings that apply to one mode only. Two things live here and
//! nowhere else: which keys belong to one mode ([`mode_only_keys`], where a
//! key set on a listener of another mode is refused), and one function per
//! mode that checks that mode's keys into its settings.
//!

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::limits::{MAX_HEADER_BYTES, MAX_IDLE_PER_BACKEND, MIN_HEADER_BYTES};
use crate::config::native::RawListener;
use crate::config::{Global, HttpSettings, Mode, ModeSettings, TcpSettings, defaults};

use super::values::{duration, proxy_protocol};
use super::{Checked, Validator, with_key};

/// The keys that apply to listeners of one mode only, each with that mode
/// and where `raw` sets it; keys it leaves out are not listed.
fn mode_only_keys(raw: &RawListener) -> Vec<(&'static str, Mode, Range<usize>)> {
    let http = |key, span: Option<Range<usize>>| (key, Mode::Http, span);
    let keys = [
        (
            "proxy_protocol",
            Mode::Tcp,
            raw.proxy_protocol.as_ref().map(Spanned::span),
        ),
        http(
            "request_header_timeout",
            raw.request_header_timeout.as_ref().map(Spanned::span),
        ),
        http(
            "max_header_bytes",
            raw.max_header_bytes.as_ref().map(Spanned::span),
        ),
        http(
            "response_timeout",
            raw.response_timeout.as_ref().map(Spanned::span),
        ),
        http(
            "backend_idle_timeout",
            raw.backend_idle_timeout.as_ref().map(Spanned::span),
        ),
        http(
            "max_idle_per_backend",
            raw.max_idle_per_backend.as_ref().map(Spanned::span),
        ),
    ];
    keys.into_iter()
        .filter_map(|(key, mode, span)| Some((key, mode, span?)))
        .collect()
}

impl Validator<'_> {
    /// The listener's settings for its `mode` (the checked `mode` key;
    /// absent means the default), from that mode's keys, after refusing
    /// the keys of other modes. `None` when anything here is bad
    /// (reported). `idle_timeout` is the listener's (the default of
    /// `response_timeout`).
    ///
    /// When the mode itself is bad (`mode` is `None`, already reported),
    /// every mode's keys are still checked so one run reports them too,
    /// but none is refused for not applying: which mode is meant is not
    /// known.
    pub(super) fn mode_settings(
        &mut self,
        raw: &RawListener,
        scope: &[Context],
        global: &Global,
        mode: Checked<Option<Mode>>,
        idle_timeout: Duration,
    ) -> Checked<ModeSettings> {
        let Some(mode) = mode else {
            let _ = self.tcp(raw, scope, global);
            let _ = self.http(raw, scope, idle_timeout);
            return None;
        };
        let mode = mode.unwrap_or(defaults::MODE);
        self.refuse_keys_of_other_modes(raw, scope, mode);
        match mode {
            Mode::Tcp => self.tcp(raw, scope, global).map(ModeSettings::Tcp),
            Mode::Http => self.http(raw, scope, idle_timeout).map(ModeSettings::Http),
        }
    }

    /// Reports each key `raw` sets that applies to another mode than the
    /// listener's `mode`.
    fn refuse_keys_of_other_modes(&mut self, raw: &RawListener, scope: &[Context], mode: Mode) {
        for (key, only, span) in mode_only_keys(raw) {
            if only != mode {
                let problem = Problem::KeyNotForMode { only, mode };
                self.report(span, with_key(scope, key), problem);
            }
        }
    }

    /// tcp mode's keys: `proxy_protocol`. The copy buffer is `[global]`'s.
    fn tcp(
        &mut self,
        raw: &RawListener,
        scope: &[Context],
        global: &Global,
    ) -> Option<TcpSettings> {
        let sent = self.text(&raw.proxy_protocol, scope, "proxy_protocol", proxy_protocol)?;
        Some(TcpSettings {
            buffer_size: global.buffer_size,
            proxy_protocol: sent.flatten(),
        })
    }
}

impl Validator<'_> {
    /// http mode's keys (SPEC 2, "http mode only"), each checked even when
    /// another is bad, so one run reports them all.
    fn http(
        &mut self,
        raw: &RawListener,
        scope: &[Context],
        idle_timeout: Duration,
    ) -> Option<HttpSettings> {
        let header_timeout = self.text(
            &raw.request_header_timeout,
            scope,
            "request_header_timeout",
            duration,
        );
        let header_bytes = self.int(
            &raw.max_header_bytes,
            scope,
            "max_header_bytes",
            MIN_HEADER_BYTES,
            MAX_HEADER_BYTES,
        );
        let response_timeout =
            self.text(&raw.response_timeout, scope, "response_timeout", duration);
        let backend_idle = self.text(
            &raw.backend_idle_timeout,
            scope,
            "backend_idle_timeout",
            duration,
        );
        let max_idle = self.int(
            &raw.max_idle_per_backend,
            scope,
            "max_idle_per_backend",
            0,
            MAX_IDLE_PER_BACKEND,
        );
        Some(HttpSettings {
            request_header_timeout: header_timeout?.unwrap_or(defaults::REQUEST_HEADER_TIMEOUT),
            max_header_bytes: header_bytes?.unwrap_or(defaults::MAX_HEADER_BYTES),
            response_timeout: response_timeout?.unwrap_or(idle_timeout),
            backend_idle_timeout: backend_idle?.unwrap_or(defaults::BACKEND_IDLE_TIMEOUT),
            max_idle_per_backend: max_idle?.unwrap_or(defaults::MAX_IDLE_PER_BACKEND),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_only_keys_lists_the_keys_a_listener_sets_with_their_mode() {
        let set = RawListener {
            proxy_protocol: Some(Spanned::new(3..8, "off".to_string())),
            ..RawListener::default()
        };
        assert_eq!(mode_only_keys(&set), [("proxy_protocol", Mode::Tcp, 3..8)]);
        assert!(mode_only_keys(&RawListener::default()).is_empty());
    }
}
