//! Minimal single-threaded io_uring TCP relay (prototype for issue 15).
//!
//! `relay LISTEN_PORT BACKEND_ADDR`
//!
//! Multishot accept on 127.0.0.1:LISTEN_PORT; per client a blocking connect to the
//! backend, TCP_NODELAY on both; then each direction is a multishot IORING_OP_RECV
//! drawing from one shared provided-buffer ring, and an IORING_OP_SEND of each
//! received buffer to the peer (one send in flight per direction, so order is kept;
//! short sends are resubmitted). A buffer goes back to the ring when its send
//! completed. EOF on one side: shutdown(SHUT_WR) of the other once its queued sends
//! are done; both fds closed when both directions ended, or on an error.
//! Env RELAY_BUF (bytes per buffer, default 65536) and RELAY_NBUF (buffers, power of two,
//! default 256); RELAY_ZC=1 sends with IORING_OP_SEND_ZC from the buffer memory registered
//! as a fixed buffer (a buffer then goes back to the ring on the send's notification).

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::collections::VecDeque;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

const BGID: u16 = 0;
const ACCEPT: u64 = u64::MAX;
const OP_RECV: u64 = 0;
const OP_SEND: u64 = 1;

fn ud(slot: usize, op: u64, dir: usize, bid: u16) -> u64 {
    (slot as u64) << 18 | (bid as u64) << 2 | op << 1 | dir as u64
}

/// The provided-buffer ring: `n` entries of `io_uring_buf` shared with the kernel, and
/// the `n * size` bytes of buffer memory they point to.
struct BufRing {
    ring: *mut types::BufRingEntry,
    mem: Vec<u8>,
    size: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn new(uring: &IoUring, n: u16, size: usize) -> BufRing {
        assert!(n.is_power_of_two());
        let bytes = n as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: plain anonymous mapping, checked for failure; page aligned as the kernel requires.
        let ring = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE,
                       libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert!(ring != libc::MAP_FAILED, "mmap buf ring");
        let mut br = BufRing { ring: ring.cast(), mem: vec![0u8; n as usize * size], size, mask: n - 1, tail: 0 };
        // SAFETY: the ring mapping and `mem` are never freed or moved (the Vec's heap block
        // does not move when `br` moves) while the ring exists: `br` lives for the whole
        // of `main`, which never returns while the io_uring is alive, so every address the
        // kernel holds stays valid for as long as it may write through it.
        unsafe { uring.submitter().register_buf_ring_with_flags(ring as u64, n, BGID, 0) }
            .expect("register_buf_ring (needs Linux >= 5.19)");
        for bid in 0..n {
            br.put(bid);
        }
        br.publish();
        br
    }

    /// Hand buffer `bid` back to the kernel (visible after `publish`).
    fn put(&mut self, bid: u16) {
        // SAFETY: index is masked into the n-entry mapping; the entry at `tail` is not
        // owned by the kernel until the tail is published past it.
        let e = unsafe { &mut *self.ring.add((self.tail & self.mask) as usize) };
        e.set_addr(self.mem[bid as usize * self.size..].as_ptr() as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the mapped ring (first entry's reserved field);
        // the kernel reads it concurrently, hence the atomic release store.
        unsafe { (*(types::BufRingEntry::tail(self.ring) as *const AtomicU16)).store(self.tail, Ordering::Release) }
    }

    fn data(&self, bid: u16, off: u32, len: u32) -> &[u8] {
        &self.mem[bid as usize * self.size + off as usize..bid as usize * self.size + len as usize]
    }
}

#[derive(Default)]
struct Dir {
    queue: VecDeque<(u16, u32, u32)>, // (buffer id, length, bytes already sent)
    sending: bool,
    recv_armed: bool,
    starved: bool, // multishot recv ended with ENOBUFS: re-arm when buffers come back
    eof: bool,
    done: bool, // EOF seen, everything sent, peer shut down for writing
}

/// The fds are owned here: the libc shutdown/close calls below are sound because an fd is
/// closed once, in `maybe_free`, after the last io_uring operation on it has completed
/// (`inflight` counts them), so no operation or later call can hit a reused fd number.
struct Conn {
    fd: [RawFd; 2], // 0 = client, 1 = backend; Dir d reads fd[d] and writes fd[1 - d]
    dir: [Dir; 2],
    inflight: u32,
    aborting: bool,
}

struct Relay {
    ring: IoUring,
    bufs: BufRing,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    starved: Vec<(usize, usize)>,
    zc: bool,
    zc_refs: Vec<u16>, // per buffer: zero-copy sends whose notification is still due
}

impl Relay {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry refers either to nothing in user memory (recv/accept use the
        // buffer ring) or to a buffer of `bufs.mem` that stays out of the buffer ring (so
        // untouched) until the send's completion has been reaped; see BufRing::new for lifetime.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().expect("submit");
        }
    }

    fn arm_recv(&mut self, s: usize, d: usize) {
        let c = self.conns[s].as_mut().unwrap();
        c.dir[d].recv_armed = true;
        c.inflight += 1;
        let e = opcode::RecvMulti::new(types::Fd(c.fd[d]), BGID).build().user_data(ud(s, OP_RECV, d, 0));
        self.push(e);
    }

    fn send_front(&mut self, s: usize, d: usize) {
        let c = self.conns[s].as_mut().unwrap();
        let &(bid, len, off) = c.dir[d].queue.front().unwrap();
        c.dir[d].sending = true;
        c.inflight += 1;
        let b = self.bufs.data(bid, off, len);
        let fd = types::Fd(c.fd[1 - d]);
        let e = if self.zc {
            self.zc_refs[bid as usize] += 1;
            opcode::SendZc::new(fd, b.as_ptr(), b.len() as u32).buf_index(Some(0))
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL).build()
        } else {
            opcode::Send::new(fd, b.as_ptr(), b.len() as u32).flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL).build()
        };
        let e = e.user_data(ud(s, OP_SEND, d, bid));
        self.push(e);
    }

    fn accept(&mut self, cfd: RawFd, backend: &str) {
        let bfd = match TcpStream::connect(backend) {
            Ok(b) => {
                let _ = b.set_nodelay(true);
                b.into_raw_fd()
            }
            Err(e) => {
                eprintln!("connect {backend}: {e}");
                unsafe { libc::close(cfd) };
                return;
            }
        };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid pointer to an int of the stated size.
        unsafe {
            libc::setsockopt(cfd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const _, 4);
        }
        let conn = Conn { fd: [cfd, bfd], dir: Default::default(), inflight: 0, aborting: false };
        let s = match self.free.pop() {
            Some(s) => { self.conns[s] = Some(conn); s }
            None => { self.conns.push(Some(conn)); self.conns.len() - 1 }
        };
        self.arm_recv(s, 0);
        self.arm_recv(s, 1);
    }

    /// Error: shut both sockets down so pending operations complete, free the slot when
    /// the last one has.
    fn abort(&mut self, s: usize) {
        let c = self.conns[s].as_mut().unwrap();
        if !c.aborting {
            c.aborting = true;
            for fd in c.fd {
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
    }

    fn maybe_free(&mut self, s: usize) {
        let c = self.conns[s].as_ref().unwrap();
        if c.inflight > 0 || !(c.aborting || (c.dir[0].done && c.dir[1].done)) {
            return;
        }
        let c = self.conns[s].take().unwrap();
        for fd in c.fd {
            unsafe { libc::close(fd) };
        }
        for d in c.dir {
            for (bid, _, _) in d.queue {
                self.release(bid);
            }
        }
        self.free.push(s);
    }

    fn finish_dir_if_drained(&mut self, s: usize, d: usize) {
        let c = self.conns[s].as_mut().unwrap();
        let dir = &mut c.dir[d];
        if dir.eof && !dir.done && !dir.sending && dir.queue.is_empty() && !c.aborting {
            dir.done = true;
            unsafe { libc::shutdown(c.fd[1 - d], libc::SHUT_WR) };
        }
    }

    fn on_recv(&mut self, s: usize, d: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let c = self.conns[s].as_mut().unwrap();
        if !more {
            c.inflight -= 1;
            c.dir[d].recv_armed = false;
        }
        if res > 0 {
            let bid = cqueue::buffer_select(flags).expect("recv without buffer");
            if c.aborting {
                self.bufs.put(bid);
            } else {
                c.dir[d].queue.push_back((bid, res as u32, 0));
                if !c.dir[d].sending {
                    self.send_front(s, d);
                }
                if !more {
                    self.arm_recv(s, d);
                }
            }
        } else if res == 0 {
            c.dir[d].eof = true;
            self.finish_dir_if_drained(s, d);
        } else if res == -libc::ENOBUFS && !c.aborting {
            c.dir[d].starved = true;
            self.starved.push((s, d));
        } else {
            self.abort(s);
        }
        self.maybe_free(s);
    }

    /// Buffer `bid` fully sent: back to the ring unless a zero-copy notification is still due.
    fn release(&mut self, bid: u16) {
        if self.zc_refs.get(bid as usize).is_none_or(|&n| n == 0) {
            self.bufs.put(bid);
        }
    }

    /// IORING_OP_SEND_ZC's notification: the kernel no longer reads the buffer.
    fn on_notif(&mut self, s: usize, bid: u16) {
        self.zc_refs[bid as usize] -= 1;
        let c = self.conns[s].as_mut().unwrap();
        c.inflight -= 1;
        let queued = c.dir.iter().any(|d| d.queue.iter().any(|q| q.0 == bid));
        if !queued {
            self.release(bid);
        }
        self.maybe_free(s);
    }

    fn on_send(&mut self, s: usize, d: usize, res: i32, flags: u32) {
        let c = self.conns[s].as_mut().unwrap();
        if self.zc && !cqueue::more(flags) {
            // no notification will follow (e.g. an error): this completion ends the operation
            self.zc_refs[c.dir[d].queue.front().unwrap().0 as usize] -= 1;
        }
        if !self.zc || !cqueue::more(flags) {
            c.inflight -= 1;
        }
        c.dir[d].sending = false;
        if res < 0 || c.aborting {
            self.abort(s);
        } else {
            let front = c.dir[d].queue.front_mut().unwrap();
            front.2 += res as u32;
            let sent = (front.2 == front.1).then(|| c.dir[d].queue.pop_front().unwrap().0);
            let more_queued = !c.dir[d].queue.is_empty();
            if let Some(bid) = sent {
                self.release(bid);
            }
            if more_queued {
                self.send_front(s, d);
            } else {
                self.finish_dir_if_drained(s, d);
            }
        }
        self.maybe_free(s);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: relay LISTEN_PORT BACKEND_ADDR");
        std::process::exit(2);
    }
    let backend = args[2].clone();
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (bsize, nbuf) = (env("RELAY_BUF", 65536), env("RELAY_NBUF", 256) as u16);
    let listener = TcpListener::bind(("127.0.0.1", args[1].parse::<u16>().expect("port"))).expect("bind");
    let lfd = listener.into_raw_fd();
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)
        .expect("io_uring setup");
    let bufs = BufRing::new(&ring, nbuf, bsize);
    let zc = env("RELAY_ZC", 0) == 1;
    if zc {
        let iov = libc::iovec { iov_base: bufs.mem.as_ptr() as *mut _, iov_len: bufs.mem.len() };
        // SAFETY: the memory registered is `bufs.mem`, which lives as long as the ring (see BufRing::new).
        unsafe { ring.submitter().register_buffers(&[iov]) }.expect("register_buffers");
    }
    let zc_refs = if zc { vec![0; nbuf as usize] } else { Vec::new() };
    let mut r = Relay { ring, bufs, conns: Vec::new(), free: Vec::new(), starved: Vec::new(), zc, zc_refs };
    r.push(opcode::AcceptMulti::new(types::Fd(lfd)).build().user_data(ACCEPT));
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    let mut published = r.bufs.tail;
    loop {
        r.bufs.publish();
        r.ring.submit_and_wait(1).expect("submit_and_wait");
        cqes.extend(r.ring.completion().map(|e| (e.user_data(), e.result(), e.flags())));
        for (u, res, flags) in cqes.drain(..) {
            if u == ACCEPT {
                if res >= 0 {
                    r.accept(res, &backend);
                } else {
                    eprintln!("accept: {}", std::io::Error::from_raw_os_error(-res));
                }
                if !cqueue::more(flags) {
                    r.push(opcode::AcceptMulti::new(types::Fd(lfd)).build().user_data(ACCEPT));
                }
                continue;
            }
            let (s, bid, op, d) = ((u >> 18) as usize, (u >> 2) as u16, u >> 1 & 1, (u & 1) as usize);
            if op == OP_RECV {
                r.on_recv(s, d, res, flags)
            } else if cqueue::notif(flags) {
                r.on_notif(s, bid)
            } else {
                r.on_send(s, d, res, flags)
            }
        }
        // Buffers came back: re-arm receives that ran out of them.
        let returned = r.bufs.tail != published;
        published = r.bufs.tail;
        for (s, d) in if returned { std::mem::take(&mut r.starved) } else { Vec::new() } {
            match r.conns[s].as_mut() {
                Some(c) if c.dir[d].starved && !c.aborting && !c.dir[d].recv_armed => {
                    c.dir[d].starved = false;
                    r.arm_recv(s, d);
                }
                _ => {}
            }
        }
    }
}
