//! The PROXY protocol both ways (issue 10): the exact header a backend
//! receives from a listener with `proxy_protocol`, and a listener with
//! `accept_proxy_protocol` behind another balancer: only listed sources,
//! only with a good header in time, the header's client used for `allow`,
//! nothing of the header relayed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{
    Backend, Balancer, DEADLINE, Format, PROMPTLY, connect_from, eventually, half_close, http_get,
    read_until_closed, sample,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// One listener `web` over `backend` with `extra` keys, and an admin port.
fn config(backend: SocketAddr, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\n\
         listen = \"127.0.0.1:0\"\n{extra}\nbackends = [\"{backend}\"]\n"
    )
}

/// Sends `payload` from a client bound to `from`, half-closes, and reads
/// the answer until the balancer closes: the client's own address, and
/// what it got back.
fn send_from(from: Ipv4Addr, to: SocketAddr, payload: &[u8]) -> (SocketAddr, Vec<u8>) {
    let mut client = connect_from(from, to);
    let me = client.local_addr().expect("a local address");
    client.write_all(payload).expect("send");
    half_close(&client);
    let (answer, _) = read_until_closed(&mut client, DEADLINE).expect("closed in time");
    (me, answer)
}

/// The PROXY v2 header for TCP over IPv4 from `source` to `destination`,
/// written out byte by byte as the specification lays it out.
fn v2_tcp4(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    for addr in [source, destination] {
        let std::net::IpAddr::V4(ip) = addr.ip() else {
            panic!("IPv4 expected")
        };
        out.extend_from_slice(&ip.octets());
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[test]
fn a_backend_gets_the_exact_v1_or_v2_header_naming_the_client_then_its_bytes() {
    for version in ["v1", "v2"] {
        let backend = Backend::recording();
        let balancer = Balancer::start(
            &config(backend.addr(), &format!("proxy_protocol = \"{version}\"")),
            Format::Toml,
        );
        let web = balancer.addr("web");
        let (me, answer) = send_from(CLIENT, web, b"hello");
        assert_eq!(answer, b"ok\n");
        let header = match version {
            "v1" => format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                me.ip(),
                web.ip(),
                me.port(),
                web.port()
            )
            .into_bytes(),
            _ => v2_tcp4(me, web),
        };
        let mut expected = header;
        expected.extend_from_slice(b"hello");
        assert_eq!(backend.received(), expected, "{version}");
        let admin = balancer.wait_admin();
        let labels = [
            ("listener", "web"),
            ("backend", &backend.addr().to_string()[..]),
            ("direction", "in"),
        ];
        let counted = sample(
            &http_get(admin, "/metrics").expect("metrics").body,
            "balancer_bytes_total",
            &labels,
        );
        assert_eq!(counted, Some(5.0), "{version}: the header is not payload");
        balancer.stop();
    }
}

#[test]
fn behind_another_balancer_the_headers_client_is_the_client_and_the_header_is_not_relayed() {
    // front (ours, sending v2) -> back (accepting it, allowing only the
    // client's address) -> a recording backend.
    let backend = Backend::recording();
    let back = Balancer::start(
        &config(
            backend.addr(),
            "accept_proxy_protocol = [\"127.0.0.1/32\"]\nallow = [\"127.0.0.2/32\"]",
        ),
        Format::Toml,
    );
    let front = Balancer::start(
        &config(back.addr("web"), "proxy_protocol = \"v2\""),
        Format::Toml,
    );
    let (_, answer) = send_from(CLIENT, front.addr("web"), b"through two");
    assert_eq!(answer, b"ok\n");
    assert_eq!(backend.received(), b"through two");
    // A client the allow list does not name, through the same front: the
    // back sees its real address and refuses it.
    let (_, refused) = send_from(Ipv4Addr::new(127, 0, 0, 3), front.addr("web"), b"x");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(backend.accepts(), 1);
    let admin = back.wait_admin();
    let not_allowed = [("listener", "web"), ("reason", "not_allowed")];
    let metrics = http_get(admin, "/metrics").expect("metrics").body;
    assert_eq!(
        sample(
            &metrics,
            "balancer_rejected_connections_total",
            &not_allowed
        ),
        Some(1.0)
    );
    front.stop();
    back.stop();
}

#[test]
fn connections_without_a_good_header_from_a_listed_source_never_reach_a_backend() {
    let backend = Backend::recording();
    let balancer = Balancer::start(
        &config(backend.addr(), "accept_proxy_protocol = [\"127.0.0.2/32\"]"),
        Format::Toml,
    );
    let admin = balancer.wait_admin();
    let web = balancer.addr("web");
    let closed_at_once = |from: Ipv4Addr, bytes: &[u8]| {
        let mut client = connect_from(from, web);
        let _ = client.write_all(bytes);
        read_until_closed(&mut client, PROMPTLY).is_ok()
    };
    // An unlisted source, a listed one without a header, a bad header, a
    // truncated one (the client then closes).
    assert!(closed_at_once(
        Ipv4Addr::LOCALHOST,
        b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\r\n"
    ));
    assert!(closed_at_once(CLIENT, b"GET / HTTP/1.0\r\n\r\n"));
    assert!(closed_at_once(
        CLIENT,
        b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 80\r\n"
    ));
    let mut truncated = connect_from(CLIENT, web);
    truncated.write_all(b"PROXY TCP4 1.2.3.4").expect("send");
    half_close(&truncated);
    assert!(read_until_closed(&mut truncated, PROMPTLY).is_ok());
    // Too slow: half a header, then nothing; closed after 3 s.
    let mut slow = connect_from(CLIENT, web);
    slow.write_all(b"\r\n\r\n\0").expect("send");
    let waited = Instant::now();
    assert!(read_until_closed(&mut slow, DEADLINE).is_ok());
    assert!(
        waited.elapsed() >= Duration::from_millis(2_500),
        "closed after {:?}",
        waited.elapsed()
    );

    let rejected = |reason: &str| {
        let labels = [("listener", "web"), ("reason", reason)];
        sample(
            &http_get(admin, "/metrics").expect("metrics").body,
            "balancer_rejected_connections_total",
            &labels,
        )
    };
    assert!(
        eventually(PROMPTLY, || rejected("proxy_protocol") == Some(5.0)),
        "rejections counted: {:?}",
        rejected("proxy_protocol")
    );
    assert_eq!(
        backend.accepts(),
        0,
        "a backend was connected for a refused client"
    );

    // A v2 LOCAL header (the front balancer's own health check) is served
    // with the connection's own address.
    let mut local = connect_from(CLIENT, web);
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    header.extend_from_slice(b"ping");
    local.write_all(&header).expect("send");
    half_close(&local);
    let mut answer = Vec::new();
    local.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let _ = local.read_to_end(&mut answer);
    assert_eq!(answer, b"ok\n");
    assert_eq!(backend.received(), b"ping");
    drop::<TcpStream>(local);
    balancer.stop();
}
