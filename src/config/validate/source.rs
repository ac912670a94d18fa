//! A listener's `source_address`, the IP address its connects to backends
//! (and its health checks) bind to. `balancer check` refuses what would
//! make every such connect fail, as far as it can be known without
//! running: an address that is not an IP address or is IPv4-mapped (the
//! grammar of `net::addr`), an address of the other family than one of
//! the listener's backends, and an address this machine cannot bind.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use toml::Spanned;

use crate::config::BackendSpec;
use crate::config::error::{Context, Problem};
use crate::net::{addr, io_reason};

use super::{Checked, Validator, with_key};

impl Validator<'_> {
    /// `source_address`, checked against the listener's `backends` (when
    /// they all passed; otherwise the listener has failed already):
    /// `Some(None)` when absent, `None` when bad (every problem reported).
    pub(super) fn source_address(
        &mut self,
        raw: &Option<Spanned<String>>,
        scope: &[Context],
        backends: Option<&[BackendSpec]>,
    ) -> Checked<Option<IpAddr>> {
        let Some(value) = raw else {
            return Some(None);
        };
        let context = with_key(scope, "source_address");
        let parsed = addr::source_ip(value.get_ref()).map_err(Problem::from);
        let ip = self.ok_or_report(parsed, value.span(), context.clone())?;
        let errors_before = self.errors.len();
        if let Some(problem) = backends.and_then(|list| other_family(ip, list)) {
            self.report(value.span(), context.clone(), problem);
        }
        if let Err(err) = bindable(ip) {
            let reason = io_reason(&err);
            self.report(
                value.span(),
                context,
                Problem::SourceNotBindable { ip, reason },
            );
        }
        (self.errors.len() == errors_before).then_some(Some(ip))
    }
}

/// The problem with the first backend whose address is of the other
/// family than `ip`: a socket of one family cannot bind an address of the
/// other, so every connect to it would fail.
fn other_family(ip: IpAddr, backends: &[BackendSpec]) -> Option<Problem> {
    let other = backends
        .iter()
        .find(|b| b.resolved.is_ipv4() != ip.is_ipv4())?;
    let by_name = addr::backend_address(&other.address).is_ok_and(|a| a.literal().is_none());
    Some(Problem::SourceFamily {
        ip,
        backend: other.address.clone(),
        resolved: other.resolved.ip(),
        by_name,
    })
}

/// Whether this machine lets a socket bind `ip`, as every connect from the
/// listener will: a throwaway TCP socket is bound to `ip:0` (any port) and
/// dropped at once, never listening and sending nothing.
///
/// Binding rather than reading the interfaces: the kernel then answers the
/// very question the connects will ask, with every rule that applies to it
/// (all of 127.0.0.0/8 is local on Linux, `ip_nonlocal_bind` allows any
/// address, a link-local IPv6 address needs a scope), where an interface
/// list would have to copy those rules, and std has none (reading it takes
/// `getifaddrs` through unsafe code or another crate). Like resolving
/// backend host names, this is I/O at load, kept in this one function.
fn bindable(ip: IpAddr) -> io::Result<()> {
    let address = SocketAddr::new(ip, 0);
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.bind(&address.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_bindable_and_documentation_ones_are_not() {
        for local in ["127.0.0.1", "127.0.0.2", "0.0.0.0"] {
            assert!(bindable(local.parse().unwrap()).is_ok(), "{local}");
        }
        // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never on a machine.
        let err = bindable("192.0.2.1".parse().unwrap()).unwrap_err();
        assert_eq!(io_reason(&err), "address not available on this machine");
    }
}
