//! `source_hash`: Maglev consistent hashing of the client address
//! (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, section 3.4).
//!
//! Several balancer instances with one config must send a client to the
//! same backend, and a change of backends must move as few clients as
//! possible. Maglev does both with a lookup table of `M` entries (`M`
//! prime), each naming a backend: a client goes to the entry its address
//! hashes to.
//!
//! # What is fixed here (the paper leaves it open)
//!
//! - **Table size**: the smallest prime at least 65,537 and at least 100
//!   times the number of backends ([`table_size`]), so every backend has
//!   at least ~100 entries and shares are even to within 1%.
//! - **Input**: the backends *as configured*, in config order, whatever
//!   their health: the table changes only when the config does. Each
//!   backend is named by its address *as written* (`app1:8080` stays
//!   `app1:8080` whatever it resolves to) and brings its weight. Nothing
//!   else enters: not the listener's name or address, not the process.
//! - **Hash** ([`hash`]): 64-bit FNV-1a over one seed byte and then the
//!   bytes, followed by the 64-bit finalizer of MurmurHash3 (`fmix64`),
//!   which FNV-1a needs because its low bits mix poorly for inputs that
//!   differ in their last bytes (as `:8080` and `:8081` do). It is written
//!   out here and pinned by tests, so it is the same on every machine,
//!   build and release; never Rust's `DefaultHasher`, whose output is not
//!   promised to stay the same, or a per-process random seed. Seeds: `1`
//!   for a backend's offset, `2` for its skip, `3` for a client address
//!   (its 4 or 16 bytes in network order; an IPv4-mapped IPv6 client counts
//!   as its IPv4 address).
//! - **Permutation**: backend `i` prefers the entries `(offset_i + j *
//!   skip_i) mod M` for `j = 0, 1, ...`, with `offset_i = hash(1, address)
//!   mod M` and `skip_i = hash(2, address) mod (M - 1) + 1`; `M` prime
//!   makes every such sequence visit every entry.
//! - **Weights**: a backend of weight `w` gets `w` times as many turns at
//!   filling the table. Turns are handed out by stride scheduling: backend
//!   `i`'s `k`-th turn (from 0) falls at virtual time `(2k + 1) / (2 w_i)`,
//!   earliest first, ties to the backend listed first. So with equal
//!   weights the turns go in config order, exactly as in the paper, and
//!   with any weights every backend's count of entries is within one turn
//!   of its exact share. Weights change the number of turns, not a
//!   backend's preferences, so changing one weight moves only the entries
//!   that must move.
//! - **Lookup**: the client's entry is `hash(3, address) mod M`. When that
//!   entry's backend cannot be picked (down, draining, or already tried by
//!   this client) the lookup walks on to the next entries, in order,
//!   wrapping around, and takes the first whose backend can. Entries of
//!   healthy backends never change, so their clients never move when
//!   another backend goes down; a down backend's clients spread over the
//!   others as its entries' successors do (evenly, since the table is
//!   well mixed), and come back when it does.
//! - **Digest** ([`TableSummary`]): a 64-bit hash (same function, seed
//!   `4`) of the table size, every backend's address and weight in order,
//!   and every entry. `balancer check` prints it and the log shows it at
//!   start, so an operator can see that two instances agree.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::backend::Backend;

/// The table size for up to 655 backends: a prime (2^16 + 1).
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// The table has at least this many entries per backend.
pub const MIN_ENTRIES_PER_BACKEND: usize = 100;

/// Hash seeds (see the module doc).
mod seed {
    pub const OFFSET: u8 = 1;
    pub const SKIP: u8 = 2;
    pub const CLIENT: u8 = 3;
    pub const DIGEST: u8 = 4;
}

/// The number of entries of the table for `backends` backends: the
/// smallest prime that is at least [`DEFAULT_TABLE_SIZE`] and at least
/// [`MIN_ENTRIES_PER_BACKEND`] times `backends`.
pub fn table_size(backends: usize) -> usize {
    let wanted = backends
        .saturating_mul(MIN_ENTRIES_PER_BACKEND)
        .max(DEFAULT_TABLE_SIZE);
    (wanted..).find(|&n| is_prime(n)).unwrap_or(wanted)
}

/// Trial division; the table sizes are small enough (a million entries is
/// a thousand divisions).
fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

// === the fixed hash ===

/// 64-bit FNV-1a: offset basis and prime of the FNV specification.
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv1a {
        Fnv1a(Fnv1a::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Fnv1a::PRIME);
        }
    }

    /// The state through MurmurHash3's `fmix64`.
    fn finish(self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output
/// bit.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The fixed hash of the module doc: FNV-1a 64 over `seed` then `bytes`,
/// then `fmix64`.
pub fn hash(seed: u8, bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(&[seed]);
    h.write(bytes);
    h.finish()
}

/// The hash of a client address: its 4 or 16 bytes in network order.
pub fn client_hash(client: IpAddr) -> u64 {
    match client {
        IpAddr::V4(v4) => hash(seed::CLIENT, &v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash(seed::CLIENT, &v4.octets()),
            None => hash(seed::CLIENT, &v6.octets()),
        },
    }
}

/// `value mod m` as an index; `m` is a table size, never 0.
fn modulo(value: u64, m: usize) -> usize {
    // usize is at most 64 bits here, and the result is below m.
    usize::try_from(value % (m as u64)).unwrap_or(0)
}

// === table building ===

/// What the table is built from: one backend as configured.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// The address as written.
    pub address: &'a str,
    /// The configured weight (0 counts as 1).
    pub weight: u32,
}

/// The backends of one weight, in config order, and the turns each of
/// them has had: backends of equal weight always have had equally many,
/// so their turns fall at the same virtual times and go in config order.
#[derive(Debug)]
struct Class {
    weight: u64,
    turns: u64,
    members: Vec<u32>,
}

impl Class {
    /// Virtual time of the class's next turn, `(2k + 1) / (2w)`, as a
    /// fraction (numerator, denominator).
    fn due(&self) -> (u128, u128) {
        (u128::from(self.turns) * 2 + 1, u128::from(self.weight) * 2)
    }
}

/// A heap entry ordered so the `BinaryHeap` (a max-heap) pops the class
/// whose next turn is earliest first.
#[derive(Debug)]
struct Due {
    time: (u128, u128),
    class: usize,
}

impl Due {
    fn cmp_time(&self, other: &Due) -> Ordering {
        (self.time.0 * other.time.1).cmp(&(other.time.0 * self.time.1))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        other.cmp_time(self).then(other.class.cmp(&self.class))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Due {}

/// Marks an entry not filled yet while building.
const EMPTY: u32 = u32::MAX;

/// The table being filled: which entries are taken (a bit per entry, so
/// the late turns that probe many taken entries stay in cache) and each
/// backend's walk through its preference list.
struct Filling {
    table: Vec<u32>,
    taken: Vec<u64>,
    filled: usize,
    next: Vec<u64>,
    skip: Vec<u64>,
    m: u64,
}

impl Filling {
    /// Backend `index` takes its next preferred entry that is still empty.
    /// Returns whether the table is now full.
    fn turn(&mut self, index: u32) -> bool {
        let i = index as usize;
        let (Some(next), Some(&skip)) = (self.next.get_mut(i), self.skip.get(i)) else {
            return true;
        };
        let mut n = *next;
        // Every walk visits every entry within m steps (m is prime), and an
        // empty one exists while the table is not full.
        for _ in 0..self.m {
            let entry = usize::try_from(n).unwrap_or(usize::MAX);
            n += skip;
            if n >= self.m {
                n -= self.m;
            }
            let (word, bit) = (entry / 64, 1u64 << (entry % 64));
            let Some(bits) = self.taken.get_mut(word) else {
                break;
            };
            if *bits & bit == 0 {
                *bits |= bit;
                if let Some(slot) = self.table.get_mut(entry) {
                    *slot = index;
                }
                self.filled += 1;
                break;
            }
        }
        *next = n;
        self.filled >= self.table.len()
    }
}

/// Builds the lookup table for `members` with `m` entries (a prime above
/// the number of members): entry -> index into `members`.
///
/// Turns go earliest virtual time first, ties to the backend listed first
/// (the module doc). Backends of one weight share their times, so the
/// schedule is kept per weight, not per backend: a heap of the distinct
/// weights, and when several weights are due at the same time their
/// backends go merged in config order.
fn populate(members: &[Member<'_>], m: usize) -> Vec<u32> {
    if members.is_empty() || m == 0 {
        return Vec::new();
    }
    let m64 = m as u64;
    let mut filling = Filling {
        table: vec![EMPTY; m],
        taken: vec![0; m.div_ceil(64)],
        filled: 0,
        next: Vec::with_capacity(members.len()),
        skip: Vec::with_capacity(members.len()),
        m: m64,
    };
    let mut classes: Vec<Class> = Vec::new();
    let mut class_of_weight = std::collections::HashMap::new();
    for (index, member) in members.iter().enumerate() {
        let address = member.address.as_bytes();
        filling.next.push(hash(seed::OFFSET, address) % m64);
        filling.skip.push(hash(seed::SKIP, address) % (m64 - 1) + 1);
        let weight = u64::from(member.weight.max(1));
        let class = *class_of_weight.entry(weight).or_insert_with(|| {
            classes.push(Class {
                weight,
                turns: 0,
                members: Vec::new(),
            });
            classes.len() - 1
        });
        if let (Some(class), Ok(index)) = (classes.get_mut(class), u32::try_from(index)) {
            class.members.push(index);
        }
    }
    let mut heap: BinaryHeap<Due> = classes
        .iter()
        .enumerate()
        .map(|(class, c)| Due {
            time: c.due(),
            class,
        })
        .collect();
    let mut tied: Vec<usize> = Vec::new();
    let mut merge: BinaryHeap<std::cmp::Reverse<(u32, usize, usize)>> = BinaryHeap::new();
    'fill: while let Some(first) = heap.pop() {
        tied.clear();
        tied.push(first.class);
        while let Some(same) = heap.peek() {
            if same.cmp_time(&first) != Ordering::Equal {
                break;
            }
            tied.push(same.class);
            heap.pop();
        }
        if let [only] = tied[..] {
            let members = classes.get(only).map_or(&[][..], |c| &c.members[..]);
            for &index in members {
                if filling.turn(index) {
                    break 'fill;
                }
            }
        } else {
            // Merge the tied classes' backends into config order.
            merge.clear();
            for &class in &tied {
                if let Some(&index) = classes.get(class).and_then(|c| c.members.first()) {
                    merge.push(std::cmp::Reverse((index, class, 0)));
                }
            }
            while let Some(std::cmp::Reverse((index, class, at))) = merge.pop() {
                if filling.turn(index) {
                    break 'fill;
                }
                if let Some(&next) = classes.get(class).and_then(|c| c.members.get(at + 1)) {
                    merge.push(std::cmp::Reverse((next, class, at + 1)));
                }
            }
        }
        for &class in &tied {
            if let Some(c) = classes.get_mut(class) {
                c.turns += 1;
                heap.push(Due {
                    time: c.due(),
                    class,
                });
            }
        }
    }
    filling.table
}

/// The digest of a table (see the module doc).
fn digest(members: &[Member<'_>], table: &[u32]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(&[seed::DIGEST]);
    h.write(&(table.len() as u64).to_le_bytes());
    for member in members {
        h.write(&(member.address.len() as u64).to_le_bytes());
        h.write(member.address.as_bytes());
        h.write(&member.weight.to_le_bytes());
    }
    for &entry in table {
        h.write(&entry.to_le_bytes());
    }
    h.finish()
}

/// What an operator sees of a hashing balancer's table: its size and a
/// digest that two instances with one config share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSummary {
    /// Entries in the table.
    pub entries: usize,
    /// The digest of the module doc.
    pub digest: u64,
}

impl TableSummary {
    /// The digest as 16 lowercase hex digits, as printed.
    pub fn digest_hex(&self) -> String {
        format!("{:016x}", self.digest)
    }
}

impl fmt::Display for TableSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "maglev table of {} entries, digest {}",
            self.entries,
            self.digest_hex()
        )
    }
}

/// A Maglev lookup table over one backend set, built once (when a
/// listener's snapshot is built) and then only read, by every worker.
#[derive(Debug)]
pub struct Maglev {
    /// Entry -> backend index (in config order).
    table: Box<[u32]>,
    /// The table's size and digest.
    summary: TableSummary,
}

// === impl Maglev ===

impl Maglev {
    /// The table for `backends`, from their addresses as written and their
    /// configured weights, in the order given; health plays no part.
    pub fn new(backends: &[Arc<Backend>]) -> Maglev {
        let members: Vec<Member<'_>> = backends
            .iter()
            .map(|b| Member {
                address: &b.address,
                weight: b.weight(),
            })
            .collect();
        Maglev::from_members(&members)
    }

    /// The table for `members` (what [`Maglev::new`] reads of backends).
    pub fn from_members(members: &[Member<'_>]) -> Maglev {
        let m = table_size(members.len());
        let table = populate(members, m);
        let summary = TableSummary {
            entries: table.len(),
            digest: digest(members, &table),
        };
        Maglev {
            table: table.into_boxed_slice(),
            summary,
        }
    }

    /// The table's size and digest.
    pub fn summary(&self) -> TableSummary {
        self.summary
    }

    /// The backend index of every entry.
    #[cfg(test)]
    pub fn entries(&self) -> &[u32] {
        &self.table
    }

    /// The backend of `client`'s own entry, whatever its state.
    #[cfg(test)]
    pub fn lookup(&self, client: IpAddr) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let entry = self.table.get(modulo(client_hash(client), m))?;
        usize::try_from(*entry).ok()
    }
}

impl Balancer for Maglev {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext<'_>) -> Option<usize> {
        let m = self.table.len();
        // Nothing eligible: say so in O(backends), not after a walk of the
        // whole table.
        if m == 0 || !(0..backends.len()).any(|i| ctx.eligible(backends, i)) {
            return None;
        }
        let start = modulo(client_hash(ctx.client), m);
        let (after, before) = self.table.split_at(start);
        before
            .iter()
            .chain(after)
            .filter_map(|&entry| usize::try_from(entry).ok())
            .find(|&index| ctx.eligible(backends, index))
    }

    fn table(&self) -> Option<TableSummary> {
        Some(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::backend::BackendState;
    use crate::balance::PickContext;
    use crate::balance::tests::{backends, equal_backends};

    /// Client `10.x.y.z` number `i`: 10,000 distinct addresses.
    /// The table as first written: one heap entry per backend, each turn
    /// popped in order, the table itself probed for empty entries. The
    /// fast `populate` must give exactly this table.
    fn reference_populate(members: &[Member<'_>], m: usize) -> Vec<u32> {
        struct Walk {
            next: u64,
            skip: u64,
            turns: u64,
            weight: u64,
        }
        let mut table = vec![EMPTY; m];
        if members.is_empty() {
            return Vec::new();
        }
        let m64 = m as u64;
        let mut walks: Vec<Walk> = members
            .iter()
            .map(|member| Walk {
                next: hash(seed::OFFSET, member.address.as_bytes()) % m64,
                skip: hash(seed::SKIP, member.address.as_bytes()) % (m64 - 1) + 1,
                turns: 0,
                weight: u64::from(member.weight.max(1)),
            })
            .collect();
        // (numerator, denominator, index): earliest, then listed first.
        let due = |w: &Walk| (u128::from(w.turns) * 2 + 1, u128::from(w.weight) * 2);
        let mut filled = 0;
        while filled < m {
            let (index, _) = walks
                .iter()
                .enumerate()
                .min_by(|(i, a), (j, b)| {
                    let (an, ad) = due(a);
                    let (bn, bd) = due(b);
                    (an * bd).cmp(&(bn * ad)).then(i.cmp(j))
                })
                .unwrap();
            let walk = &mut walks[index];
            loop {
                let entry = (walk.next % m64) as usize;
                walk.next = (walk.next + walk.skip) % m64;
                if table[entry] == EMPTY {
                    table[entry] = index as u32;
                    filled += 1;
                    break;
                }
            }
            walk.turns += 1;
        }
        table
    }

    fn client(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn pick_for(maglev: &Maglev, set: &[Arc<Backend>], client: IpAddr) -> Option<usize> {
        maglev.pick(set, &PickContext { client, tried: &[] })
    }

    /// The address each of 10,000 clients lands on.
    fn assignments(maglev: &Maglev, set: &[Arc<Backend>]) -> Vec<String> {
        (0..10_000)
            .map(|i| {
                let index = pick_for(maglev, set, client(i)).expect("a backend is up");
                set[index].address.clone()
            })
            .collect()
    }

    /// Entries per backend.
    fn shares(maglev: &Maglev, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &entry in maglev.entries() {
            counts[entry as usize] += 1;
        }
        counts
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        let fnv = |bytes: &[u8]| {
            let mut h = Fnv1a::new();
            h.write(bytes);
            h.0
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_pinned_so_every_build_and_machine_agrees() {
        // If this fails the hash changed, and instances built before and
        // after the change would send clients to different backends.
        assert_eq!(hash(1, b"127.0.0.1:8080"), 0xdc90_0f8b_89dd_fe4e);
        assert_eq!(
            client_hash(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            0x04e4_bd18_fea1_3e2a
        );
    }

    #[test]
    fn the_digest_of_a_known_config_is_pinned() {
        // An independent implementation of the module doc (a few lines of
        // Python, written from the doc alone) gives the same digest and
        // the same entry counts, 32768, 10923 and 21846.
        let members = [
            Member {
                address: "127.0.0.1:8080",
                weight: 3,
            },
            Member {
                address: "127.0.0.1:8081",
                weight: 1,
            },
            Member {
                address: "127.0.0.1:8082",
                weight: 2,
            },
        ];
        let summary = Maglev::from_members(&members).summary();
        assert_eq!(
            summary.to_string(),
            "maglev table of 65537 entries, digest ea3ad2a17766b1f0"
        );
    }

    #[test]
    fn the_table_size_is_a_prime_of_at_least_65537_and_100_entries_per_backend() {
        assert_eq!(table_size(0), 65_537);
        assert_eq!(table_size(655), 65_537);
        assert_eq!(table_size(656), 65_609);
        assert_eq!(table_size(1_000), 100_003);
        assert!(is_prime(65_537) && is_prime(65_609) && is_prime(100_003));
        assert!(!is_prime(65_541) && !is_prime(100_001));
    }

    #[test]
    fn equal_weights_get_entry_counts_within_one_of_each_other() {
        for n in [1, 2, 3, 7, 10, 50] {
            let set = equal_backends(n);
            let counts = shares(&Maglev::new(&set), n);
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(max - min <= 1, "{n} backends: {counts:?}");
            // So within 1% of each other, as the issue asks.
            assert!((max - min) * 100 <= *min, "{counts:?}");
        }
    }

    #[test]
    fn weights_3_1_2_give_entries_in_proportion() {
        let set = backends(&[3, 1, 2]);
        let counts = shares(&Maglev::new(&set), 3);
        // Exact shares are 32768.5, 10922.8 and 21845.7 entries.
        let exact = [65_537.0 * 3.0 / 6.0, 65_537.0 / 6.0, 65_537.0 * 2.0 / 6.0];
        for (&count, exact) in counts.iter().zip(exact) {
            assert!((count as f64 - exact).abs() <= 3.0, "{counts:?}");
        }
    }

    #[test]
    fn building_twice_gives_the_same_table_and_digest() {
        let set = backends(&[1, 4, 2, 2]);
        let (a, b) = (Maglev::new(&set), Maglev::new(&set));
        assert_eq!(a.entries(), b.entries());
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn the_digest_changes_with_the_order_the_weights_or_an_address() {
        let member = |address, weight| Member { address, weight };
        let base = [member("a:1", 1), member("b:1", 1)];
        let digest = |members: &[Member<'_>]| Maglev::from_members(members).summary().digest;
        let d = digest(&base);
        assert_ne!(d, digest(&[member("b:1", 1), member("a:1", 1)]));
        assert_ne!(d, digest(&[member("a:1", 2), member("b:1", 1)]));
        assert_ne!(d, digest(&[member("a:1", 1), member("c:1", 1)]));
    }

    #[test]
    fn health_plays_no_part_in_the_table() {
        let set = equal_backends(4);
        let before = Maglev::new(&set).summary();
        set[1].set_state(BackendState::Down);
        set[2].set_state(BackendState::Draining);
        assert_eq!(Maglev::new(&set).summary(), before);
    }

    #[test]
    fn one_client_always_lands_on_the_same_backend() {
        let set = equal_backends(5);
        let maglev = Maglev::new(&set);
        for i in 0..100 {
            let first = pick_for(&maglev, &set, client(i));
            for _ in 0..3 {
                assert_eq!(pick_for(&maglev, &set, client(i)), first);
            }
            assert_eq!(first, maglev.lookup(client(i)));
        }
    }

    #[test]
    fn an_ipv4_mapped_ipv6_client_hashes_as_its_ipv4_address() {
        let v4 = Ipv4Addr::new(127, 0, 0, 5);
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(client_hash(mapped), client_hash(IpAddr::V4(v4)));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_ne!(client_hash(v6), client_hash(IpAddr::V4(v4)));
    }

    #[test]
    fn clients_spread_evenly_over_equal_backends() {
        let set = equal_backends(4);
        let maglev = Maglev::new(&set);
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[pick_for(&maglev, &set, client(i)).unwrap()] += 1;
        }
        for &count in &counts {
            assert!(count.abs_diff(10_000) < 500, "{counts:?}");
        }
    }

    #[test]
    fn a_down_backends_clients_spread_over_all_the_others_and_come_back() {
        let set = equal_backends(5);
        let maglev = Maglev::new(&set);
        let before = assignments(&maglev, &set);
        set[2].set_state(BackendState::Down);
        let during = assignments(&maglev, &set);
        let mut took_over = HashSet::new();
        for (was, now) in before.iter().zip(&during) {
            if *was == set[2].address {
                assert_ne!(*now, set[2].address);
                took_over.insert(now.clone());
            } else {
                assert_eq!(was, now, "a client of a healthy backend moved");
            }
        }
        assert_eq!(took_over.len(), 4, "every other backend takes some");
        set[2].set_state(BackendState::Up);
        assert_eq!(assignments(&maglev, &set), before);
    }

    #[test]
    fn retries_walk_on_to_other_backends_deterministically() {
        let set = equal_backends(3);
        let maglev = Maglev::new(&set);
        let who = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let first = pick_for(&maglev, &set, who).unwrap();
        let tried = [first];
        let ctx = PickContext {
            client: who,
            tried: &tried,
        };
        let second = maglev.pick(&set, &ctx).unwrap();
        assert_ne!(first, second);
        for _ in 0..5 {
            assert_eq!(maglev.pick(&set, &ctx), Some(second));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn the_table_is_the_one_of_the_plain_turn_by_turn_build(
            weights in prop::collection::vec(1u32..=6, 1..=40),
            size in 0usize..3,
        ) {
            let addresses: Vec<String> =
                (0..weights.len()).map(|i| format!("10.0.{}.{}:80", i / 200, i % 200)).collect();
            let members: Vec<Member<'_>> = addresses
                .iter()
                .zip(&weights)
                .map(|(address, &weight)| Member { address, weight })
                .collect();
            // Small primes so every size is tried fast: each backend's
            // turns, ties between weights and the last partial round.
            let m = [101, 211, 1009][size];
            prop_assert_eq!(populate(&members, m), reference_populate(&members, m));
        }

        #[test]
        fn removing_one_of_n_backends_moves_at_most_one_and_a_half_nth_of_clients(
            n in 2usize..=24,
            removed in any::<prop::sample::Index>(),
        ) {
            let set = equal_backends(n);
            let before = assignments(&Maglev::new(&set), &set);
            let removed = removed.index(n);
            let rest: Vec<_> = set
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != removed)
                .map(|(_, b)| Arc::clone(b))
                .collect();
            let after = assignments(&Maglev::new(&rest), &rest);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            // moved / 10,000 <= 1.5 / n
            prop_assert!(moved * n * 2 <= 3 * 10_000, "{moved} of 10000 moved with {n} backends");
        }

        #[test]
        fn marking_one_backend_down_moves_only_its_clients(
            n in 2usize..=24,
            down in any::<prop::sample::Index>(),
        ) {
            let set = equal_backends(n);
            let maglev = Maglev::new(&set);
            let before = assignments(&maglev, &set);
            let down = down.index(n);
            set[down].set_state(BackendState::Down);
            let after = assignments(&maglev, &set);
            for (was, now) in before.iter().zip(&after) {
                if *was == set[down].address {
                    prop_assert_ne!(now, was);
                } else {
                    prop_assert_eq!(now, was);
                }
            }
        }

        #[test]
        fn equal_weight_backends_get_entries_within_one_percent_of_each_other(
            n in 1usize..=64,
        ) {
            let set = equal_backends(n);
            let counts = shares(&Maglev::new(&set), n);
            let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            prop_assert!((max - min) * 100 <= min, "{counts:?}");
        }
    }
}
