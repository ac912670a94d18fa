//! Listen addresses, of listeners and of the admin server alike: reading
//! one (a bad one is reported in the context that names it best), and
//! claiming it, which refuses an address that cannot be bound next to one
//! claimed before.

use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;

use crate::config::error::{Context, Problem};
use crate::net::addr::{self, AddrError};

use super::{Validator, with, with_key};

impl Validator<'_> {
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

    /// Records that `here` binds `addr` (written at `written`), or reports
    /// that it cannot, naming the first claim it conflicts with. The admin
    /// server claims first, then each listener in file order.
    pub(super) fn claim_listen(&mut self, addr: SocketAddr, written: Range<usize>, here: Context) {
        let line = Some(self.line(written));
        let clash = self
            .listens
            .iter()
            .find(|(other, _, _)| conflicts(addr, *other))
            .cloned();
        if let Some((other_addr, other, other_line)) = clash {
            let problem = Problem::ListenConflict {
                addr,
                other: Box::new(other),
                other_addr,
                other_line,
            };
            self.errors.push(self.error(line, vec![here], problem));
        } else {
            self.listens.push((addr, here, line));
        }
    }
}

/// Whether two listen addresses cannot both be bound: equal, or the same
/// port where one is the unspecified address of the same family. Port 0
/// (any free port) never conflicts.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    a.ip() == b.ip()
        || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_conflicts_follow_what_can_bind() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(conflicts(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(conflicts(a("0.0.0.0:80"), a("127.0.0.2:80")));
        assert!(conflicts(a("[::1]:80"), a("[::]:80")));
        assert!(!conflicts(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!conflicts(a("0.0.0.0:80"), a("[::1]:80")));
        assert!(!conflicts(a("127.0.0.1:80"), a("127.0.0.1:81")));
        assert!(!conflicts(a("0.0.0.0:0"), a("0.0.0.0:0")));
    }
}
