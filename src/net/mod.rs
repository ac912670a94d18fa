//! Network basics every plane shares, written once: the address grammar and
//! the resolver ([`addr`]), connecting with a source address and a timeout
//! ([`connect`]), the accept loop with back-off ([`accept`]), the hyper
//! HTTP/1.1 server setup ([`http_server`]), the PROXY protocol header,
//! written and read ([`proxy_protocol`]), and how an I/O error
//! ([`io_reason`]) and a value given by a user ([`Quoted`]) are said in
//! words.
//!
//! This module is a leaf: it imports nothing else of the crate, so config,
//! proxy, health, admin, demo and runtime can all use it without tying
//! themselves to each other. Its errors carry data and render in the same
//! voice as the rest (lowercase, no trailing period, no debug formatting);
//! callers wrap them in their own error types.

pub mod accept;
pub mod addr;
pub mod connect;
pub mod http_server;
pub mod pool;
pub mod proxy_protocol;

use std::fmt;
use std::io;
use std::time::Duration;

/// An I/O error in words, without Rust's debug formatting: "address already
/// in use", "no such file or directory", "connection refused".
pub fn io_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => {
            // std renders OS errors as "text (os error N)"; keep the text.
            let text = err.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// The units durations are written in, largest first, with their length
/// in milliseconds (the config's grammar: `h`, `m`, `s`, `ms`).
const DURATION_UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// A duration in the largest unit of `h`, `m`, `s` and `ms` that states it
/// exactly, `"0s"` for zero: what `balancer check`, `balancer convert` and
/// log lines print. Every config value is a whole number of milliseconds,
/// so this reads back to it. A computed duration below that precision (a
/// jittered wait, say) is written in whole `us` or `ns`, which a config
/// does not accept.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        let nanos = d.as_nanos();
        return if nanos % 1_000 == 0 {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let millis = d.as_millis();
    let (unit, size) = DURATION_UNITS
        .into_iter()
        .find(|(_, size)| millis % u128::from(*size) == 0)
        .unwrap_or(("ms", 1));
    format!("{}{unit}", millis / u128::from(size))
}

/// A value as typed by a user, in double quotes, with quotes, backslashes
/// and control characters escaped: an error message shows exactly what was
/// given and can never be broken up by it.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        write!(f, "{}", Plain(self.0))?;
        f.write_str("\"")
    }
}

/// A value without quotes, escaped as in [`Quoted`].
pub struct Plain<'a>(pub &'a str);

impl fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::{Quoted, io_reason};

    #[test]
    fn quoted_values_escape_what_could_break_the_message() {
        assert_eq!(Quoted("a\"b\\c\n").to_string(), r#""a\"b\\c\n""#);
    }

    #[test]
    fn io_errors_are_said_in_words_without_the_os_error_number() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&refused), "connection refused");
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert_eq!(io_reason(&in_use), "address already in use");
    }
}
