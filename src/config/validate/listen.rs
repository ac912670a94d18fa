//! Listen addresses, of listeners and of the admin server alike: reading
//! one (a bad one is reported in the context that names it best), and
//! claiming it, which refuses an address that cannot be bound next to one
//! claimed before ([`Listens`] holds the claims).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
        let clash = self.listens.first_conflict(addr).cloned();
        if let Some((other_addr, other, other_line)) = clash {
            let problem = Problem::ListenConflict {
                addr,
                other: Box::new(other),
                other_addr,
                other_line,
            };
            self.errors.push(self.error(line, vec![here], problem));
        } else {
            self.listens.add(addr, here, line);
        }
    }
}

/// One claimed listen address: the address, whose it is, its line.
type Claim = (SocketAddr, Context, Option<usize>);

/// The listen addresses claimed in one pass, indexed so that a new claim
/// finds the first one it conflicts with in a few lookups rather than by
/// reading them all (which made 20,000 INI mappings take seconds, issue
/// 17). Claims never conflict with one another: a claim that would is
/// refused, not added.
#[derive(Debug, Default)]
pub(super) struct Listens {
    /// Every claim, in the order claimed.
    claims: Vec<Claim>,
    /// The index in `claims` of the first claim of each IP and port.
    by_address: HashMap<(IpAddr, u16), usize>,
    /// The index in `claims` of the first claim of each port in each
    /// family (`true`: IPv4).
    by_port: HashMap<(u16, bool), usize>,
}

impl Listens {
    /// The first claim, in claim order, that `addr` [`conflicts`] with.
    ///
    /// Only three claims can be it: the claim of `addr` itself, the claim
    /// of the unspecified address of its family on its port, and, when
    /// `addr` is unspecified, the first claim of its port in its family
    /// (every such claim conflicts with it). Two claims of one IP and port
    /// would conflict, so each of the first two is the only one there is.
    fn first_conflict(&self, addr: SocketAddr) -> Option<&Claim> {
        let (ip, port) = (addr.ip(), addr.port());
        let unspecified = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let same_port = ip
            .is_unspecified()
            .then(|| self.by_port.get(&(port, addr.is_ipv4())))
            .flatten();
        [
            self.by_address.get(&(ip, port)),
            self.by_address.get(&(unspecified, port)),
            same_port,
        ]
        .into_iter()
        .flatten()
        .filter(|&&index| {
            let other = self.claims.get(index);
            other.is_some_and(|(other, _, _)| conflicts(addr, *other))
        })
        .min()
        .and_then(|&index| self.claims.get(index))
    }

    /// Records a claim that conflicts with none before it.
    fn add(&mut self, addr: SocketAddr, here: Context, line: Option<usize>) {
        let index = self.claims.len();
        let (ip, port) = (addr.ip(), addr.port());
        self.by_address.entry((ip, port)).or_insert(index);
        self.by_port.entry((port, addr.is_ipv4())).or_insert(index);
        self.claims.push((addr, here, line));
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

    #[test]
    fn the_claim_index_finds_the_conflict_a_scan_of_every_claim_finds_issue_17() {
        let ips = ["0.0.0.0", "127.0.0.1", "127.0.0.2", "::", "::1"];
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .flat_map(|ip| [0, 80, 81].map(|port| SocketAddr::new(ip.parse().unwrap(), port)))
            .collect();
        // Many claim orders, drawn by a fixed linear congruential generator.
        let mut seed: u64 = 17;
        for _ in 0..500 {
            let mut index = Listens::default();
            let mut scanned: Vec<Claim> = Vec::new();
            for n in 0..30 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let addr = addrs[usize::try_from(seed >> 33).unwrap() % addrs.len()];
                let found = index.first_conflict(addr);
                let expected = scanned.iter().find(|(other, _, _)| conflicts(addr, *other));
                assert_eq!(found, expected, "claiming {addr} after {scanned:?}");
                if found.is_none() {
                    let here = Context::ListenerNumber(n);
                    index.add(addr, here.clone(), Some(n));
                    scanned.push((addr, here, Some(n)));
                }
            }
        }
    }
}
