//! The settings that apply to one mode only. Two things live here and
//! nowhere else: which keys belong to one mode ([`mode_only_keys`], where a
//! key set on a listener of another mode is refused), and one function per
//! mode that checks that mode's keys into its settings.
//!
//! http mode adds its keys to `mode_only_keys`, an `http` function beside
//! [`Validator::tcp`], and its arm in [`Validator::mode_settings`].

use std::ops::Range;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::config::native::RawListener;
use crate::config::{Global, Mode, ModeSettings, TcpSettings, defaults};

use super::values::proxy_protocol;
use super::{Checked, Validator, with_key};

/// The keys that apply to listeners of one mode only, each with that mode
/// and where `raw` sets it; keys it leaves out are not listed.
fn mode_only_keys(raw: &RawListener) -> Vec<(&'static str, Mode, Range<usize>)> {
    let keys = [(
        "proxy_protocol",
        Mode::Tcp,
        raw.proxy_protocol.as_ref().map(Spanned::span),
    )];
    keys.into_iter()
        .filter_map(|(key, mode, span)| Some((key, mode, span?)))
        .collect()
}

impl Validator<'_> {
    /// The listener's settings for its `mode` (the checked `mode` key;
    /// absent means the default), from that mode's keys, after refusing
    /// the keys of other modes. `None` when anything here is bad
    /// (reported).
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
    ) -> Checked<ModeSettings> {
        let Some(mode) = mode else {
            let _ = self.tcp(raw, scope, global);
            return None;
        };
        let mode = mode.unwrap_or(defaults::MODE);
        self.refuse_keys_of_other_modes(raw, scope, mode);
        match mode {
            Mode::Tcp => self.tcp(raw, scope, global).map(ModeSettings::Tcp),
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
