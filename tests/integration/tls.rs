//! TLS on tcp listeners (SPEC 9, issue 12): decrypted bytes relayed both
//! ways with half-close, the PROXY protocol header before the handshake,
//! SNI choosing each certificate, versions and ALPN, handshakes that fail
//! or stall (counted, never stopping the listener), certificates read
//! again on reload, and every bad file refused before anything runs.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Backend, Balancer, Certs, Closed, DEADLINE, Format, HANDSHAKE_PATIENCE, PROMPTLY, Prefixed,
    TlsClient, assert_no_debug_formatting, block_on, check, connect, eventually, http_get,
    http_request, peer_certificate, pseudo_random_bytes, read_until_closed, reload_by_sighup,
    run_with_config, sample,
};

/// A config with an admin port and one tcp listener `tls` over `backend`,
/// with `listener` lines in it and `tls` lines in its `[listeners.tls]`
/// after the `certificates` (entries of [`Certs::entry`]).
fn config(certificates: &[String], tls: &str, listener: &str, backend: SocketAddr) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\n\
         listen = \"127.0.0.1:0\"\n{listener}\nbackends = [\"{backend}\"]\n\n\
         [listeners.tls]\ncertificates = [{}]\n{tls}",
        certificates.join(", ")
    )
}

/// A balancer whose listener `tls` serves one certificate, for
/// `localhost`, over `backend`: `head` comes before the config (a
/// `[global]` table), `tls` and `listener` lines go where [`config`] puts
/// them. The certificate files last as long as the `Certs`.
fn serving(backend: &Backend, head: &str, tls: &str, listener: &str) -> (Certs, Balancer) {
    let certs = Certs::new();
    certs.make("site", &["localhost"]);
    let text = config(&[certs.entry("site")], tls, listener, backend.addr());
    let balancer = Balancer::start(&format!("{head}{text}"), Format::Toml);
    (certs, balancer)
}

/// The `balancer_tls_handshakes_total` sample of listener `tls` with
/// `result`, read from the admin port at `admin`.
fn handshakes(admin: SocketAddr, result: &str) -> Option<f64> {
    let metrics = http_get(admin, "/metrics").expect("the admin port answers");
    let labels = [("listener", "tls"), ("result", result)];
    sample(&metrics.body, "balancer_tls_handshakes_total", &labels)
}

/// `/api/status` as JSON.
fn status(admin: SocketAddr) -> serde_json::Value {
    let answer = http_get(admin, "/api/status").expect("the admin port answers");
    serde_json::from_str(&answer.body).expect("the status is JSON")
}

/// Sends `message` over a new TLS connection to `addr` as `client`, and
/// reads it echoed back.
fn echoes_over_tls(client: &TlsClient, addr: SocketAddr, message: &[u8]) {
    let echoed = block_on(async {
        let mut stream = client.connect(addr).await.expect("a handshake");
        stream.write_all(message).await.expect("a write");
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).await.expect("the echo");
        back
    });
    assert_eq!(echoed, message);
}

#[test]
fn four_mib_cross_a_tls_listener_unchanged_both_ways_and_close_notify_ends_it() {
    const LEN: usize = 4 * 1024 * 1024;
    let backend = Backend::echo();
    let (_certs, balancer) = serving(&backend, "", "", "");
    let sent = pseudo_random_bytes(LEN, 0x9E37_79B9_7F4A_7C15);
    let addr = balancer.addr("tls");
    let received = block_on(async {
        let stream = TlsClient::default()
            .connect(addr)
            .await
            .expect("a handshake");
        let (mut reader, mut writer) = tokio::io::split(stream);
        // Written while read, so no side's buffers fill and stall the other;
        // the shutdown sends close_notify, then the FIN.
        let write = async {
            writer.write_all(&sent).await?;
            writer.shutdown().await
        };
        let mut received = Vec::with_capacity(LEN);
        let (written, read) = tokio::join!(write, reader.read_to_end(&mut received));
        written.expect("the whole payload is written");
        read.expect("the echo is read to a clean TLS end");
        received
    });
    assert_eq!(received.len(), LEN);
    let first_difference = sent.iter().zip(&received).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "the echoed bytes differ");
    let admin = balancer.wait_admin();
    let labels = [
        ("listener", "tls"),
        ("backend", &*backend.addr().to_string()),
    ];
    let metrics = http_get(admin, "/metrics").expect("metrics").body;
    let bytes_in = sample(
        &metrics,
        "balancer_bytes_total",
        &[labels[0], labels[1], ("direction", "in")],
    );
    assert_eq!(
        bytes_in,
        Some(LEN as f64),
        "bytes in are the decrypted payload"
    );
    assert_eq!(handshakes(admin, "ok"), Some(1.0));
    balancer.stop();
}

#[test]
fn a_tls_client_half_close_reaches_the_backend_and_its_reply_still_arrives() {
    let backend = Backend::reply_after_eof();
    let (_certs, balancer) = serving(&backend, "", "", "");
    let addr = balancer.addr("tls");
    let reply = block_on(async {
        let mut stream = TlsClient::default()
            .connect(addr)
            .await
            .expect("a handshake");
        stream.write_all(b"hello world").await.expect("a write");
        // close_notify and FIN: the client's half-close.
        stream.shutdown().await.expect("a half-close");
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .expect("the reply to a clean end");
        reply
    });
    assert_eq!(reply, b"received 11 bytes\n");
    balancer.stop();
}

#[test]
fn sni_picks_each_certificate_a_wildcard_covers_one_label_and_no_sni_gets_the_first() {
    let certs = Certs::new();
    let default = certs.make("default", &["default.test"]);
    let api = certs.make("api", &["api.example.com"]);
    let wildcard = certs.make("wildcard", &["*.example.com"]);
    let backend = Backend::echo();
    let entries = [
        certs.entry("default"),
        certs.entry("api"),
        certs.entry("wildcard"),
    ];
    let balancer = Balancer::start(&config(&entries, "", "", backend.addr()), Format::Toml);
    let addr = balancer.addr("tls");
    let cases = [
        (None, &default),
        (Some("default.test"), &default),
        (Some("api.example.com"), &api),
        (Some("shop.example.com"), &wildcard),
        (Some("a.b.example.com"), &default),
        (Some("unknown.test"), &default),
    ];
    for (sni, expected) in cases {
        let client = TlsClient {
            sni,
            ..TlsClient::default()
        };
        let got = block_on(async {
            let stream = client.connect(addr).await.expect("a handshake");
            peer_certificate(&stream)
        });
        assert!(got == *expected, "SNI {sni:?} got another certificate");
    }
    balancer.stop();
}

#[test]
fn a_tls_1_3_only_listener_refuses_a_tls_1_2_client_and_counts_the_error() {
    let backend = Backend::echo();
    let (_certs, balancer) = serving(&backend, "", "min_version = \"1.3\"\n", "");
    let addr = balancer.addr("tls");
    static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    let old = TlsClient {
        versions: &TLS12_ONLY,
        ..TlsClient::default()
    };
    assert!(
        block_on(old.connect(addr)).is_err(),
        "a TLS 1.2 client got in"
    );
    let version = block_on(async {
        let stream = TlsClient::default()
            .connect(addr)
            .await
            .expect("a handshake");
        stream.get_ref().1.protocol_version()
    });
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    let admin = balancer.wait_admin();
    assert!(eventually(DEADLINE, || handshakes(admin, "error") == Some(1.0)));
    // The accepted client is done once it sent its Finished; the balancer
    // counts the handshake once it read it.
    assert!(eventually(DEADLINE, || handshakes(admin, "ok") == Some(1.0)));
    // The accepted client's connection reaches the backend after its
    // handshake was counted; the refused one never does.
    assert!(eventually(DEADLINE, || backend.accepts() >= 1));
    assert_eq!(backend.accepts(), 1, "the refused client reached a backend");
    balancer.stop();
}

#[test]
fn alpn_negotiates_a_protocol_both_offer_and_refuses_a_client_offering_none_of_them() {
    let backend = Backend::echo();
    let tls = "alpn = [\"x-test\", \"http/1.1\"]\n";
    let (_certs, balancer) = serving(&backend, "", tls, "");
    let addr = balancer.addr("tls");
    let offering = |alpn: Vec<&'static str>| TlsClient {
        alpn,
        ..TlsClient::default()
    };
    let negotiated = block_on(async {
        let stream = offering(vec!["h2", "http/1.1"])
            .connect(addr)
            .await
            .expect("a handshake");
        stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    });
    assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
    assert!(block_on(offering(vec!["h2"]).connect(addr)).is_err());
    // A client that offers no ALPN at all is served.
    echoes_over_tls(&TlsClient::default(), addr, b"no alpn");
    balancer.stop();
}

#[test]
fn a_client_sending_garbage_is_closed_counted_and_the_next_client_is_served() {
    let backend = Backend::echo();
    let (_certs, balancer) = serving(&backend, "", "", "");
    let addr = balancer.addr("tls");
    let mut plain = connect(addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("a write");
    // A TLS alert at most, then the close.
    let closed = read_until_closed(&mut plain, PROMPTLY).map(|(_, how)| how);
    assert!(
        matches!(closed, Ok(Closed::Eof) | Ok(Closed::Reset)),
        "{closed:?}"
    );
    echoes_over_tls(&TlsClient::default(), addr, b"after the garbage");
    assert_eq!(backend.accepts(), 1, "the garbage reached a backend");
    let admin = balancer.wait_admin();
    // Counted right after the socket closes, on the balancer's side: a
    // loaded machine may show the close to the client first.
    assert!(
        eventually(DEADLINE, || handshakes(admin, "error") == Some(1.0)),
        "error handshakes: {:?}",
        handshakes(admin, "error")
    );
    assert_eq!(handshakes(admin, "ok"), Some(1.0));
    let output = balancer.stop();
    assert!(
        !output.stderr.contains("handshake failed"),
        "a failed handshake is logged at debug only:\n{}",
        output.stderr
    );
}

#[test]
fn a_client_that_stops_mid_handshake_holds_no_worker_and_is_closed_after_the_timeout() {
    let backend = Backend::echo();
    // One worker: a stalled handshake that held it would stall the rest.
    let timeout = "handshake_timeout = \"1s\"\n";
    let (_certs, balancer) = serving(&backend, "[global]\nworkers = 1\n", timeout, "");
    let addr = balancer.addr("tls");
    let mut stalled = connect(addr);
    let started = Instant::now();
    // The first bytes of a TLS record header, and nothing more.
    stalled.write_all(&[0x16, 0x03, 0x01]).expect("a write");
    echoes_over_tls(&TlsClient::default(), addr, b"served meanwhile");
    let closed = read_until_closed(&mut stalled, HANDSHAKE_PATIENCE);
    assert_eq!(
        closed.map(|(bytes, how)| (bytes.is_empty(), how)),
        Ok((true, Closed::Eof))
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "closed after {waited:?}"
    );
    let admin = balancer.wait_admin();
    // Counted right after the socket closes (see the garbage test).
    assert!(
        eventually(DEADLINE, || handshakes(admin, "timeout") == Some(1.0)),
        "timed-out handshakes: {:?}",
        handshakes(admin, "timeout")
    );
    assert_eq!(
        status(admin)["listeners"][0]["tls"]["handshakes"]["timeout"],
        1
    );
    balancer.stop();
}

#[test]
fn a_proxy_protocol_header_comes_before_the_handshake_and_names_the_client() {
    let backend = Backend::recording();
    let listener = "accept_proxy_protocol = [\"127.0.0.1/32\"]\nproxy_protocol = \"v1\"\n";
    let (_certs, balancer) = serving(&backend, "", "", listener);
    let addr = balancer.addr("tls");
    let header = format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n", addr.port());
    let answer = block_on(async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("a connect");
        // The header and the hello in one segment: TLS starts from the
        // bytes read past the header.
        let prefixed = Prefixed::new(stream, header.as_bytes());
        let mut tls = TlsClient::default()
            .handshake(prefixed, addr)
            .await
            .expect("a handshake after the header");
        tls.write_all(b"hello").await.expect("a write");
        tls.shutdown().await.expect("a half-close");
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.expect("the answer");
        answer
    });
    assert_eq!(answer, b"ok\n");
    let received = String::from_utf8(backend.received()).expect("text");
    assert!(
        received.starts_with("PROXY TCP4 192.0.2.7 127.0.0.1 5555 ")
            && received.ends_with("\r\nhello"),
        "the backend got {received:?}"
    );
    balancer.stop();
}

#[test]
fn a_reload_serves_new_connections_the_new_certificate_and_open_ones_keep_theirs() {
    let certs = Certs::new();
    let first = certs.make("site", &["one.test"]);
    let backend = Backend::echo();
    let balancer = Balancer::start(
        &config(&[certs.entry("site")], "", "", backend.addr()),
        Format::Toml,
    );
    let admin = balancer.wait_admin();
    let addr = balancer.addr("tls");
    let client = TlsClient::default();
    let mut open = block_on(client.connect(addr)).expect("a handshake");
    assert!(peer_certificate(&open) == first);

    // New files under the same names, then SIGHUP.
    let second = certs.make("site", &["two.test"]);
    reload_by_sighup(&balancer, 2);
    let fresh = block_on(client.connect(addr)).expect("a handshake");
    assert!(
        peer_certificate(&fresh) == second,
        "a new connection got the old certificate"
    );
    // The connection opened before keeps its session and goes on.
    let echoed = block_on(async {
        open.write_all(b"still here").await.expect("a write");
        let mut back = [0; 10];
        open.read_exact(&mut back).await.expect("the echo");
        back
    });
    assert_eq!(&echoed, b"still here");

    // A key that no longer matches: the reload fails, naming the file,
    // and the certificate in force stays.
    certs.make("other", &["three.test"]);
    let other_key = std::fs::read(certs.path("other.key")).expect("the key");
    certs.write("site.key", &other_key);
    let refused = http_request(admin, "POST", "/api/reload", &[], None, DEADLINE)
        .expect("the admin port answers");
    assert_eq!(refused.status, 400, "{}", refused.body);
    let site_key = certs.path("site.key").display().to_string();
    assert!(
        refused.body.contains(&site_key) && refused.body.contains("does not match"),
        "{}",
        refused.body
    );
    let after = block_on(client.connect(addr)).expect("a handshake");
    assert!(peer_certificate(&after) == second);
    drop((open, fresh, after));
    balancer.stop();
}

#[test]
fn every_bad_certificate_file_is_a_config_error_naming_it_with_exit_2() {
    let certs = Certs::new();
    certs.make("site", &["localhost"]);
    certs.make("other", &["other.test"]);
    certs.write("garbage.pem", b"this is not PEM\n");
    let backend: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let path = |name: &str| certs.path(name).display().to_string();
    let entry =
        |cert: &str, key: &str| format!("{{ cert = \"{}\", key = \"{}\" }}", path(cert), path(key));
    let cases = [
        (
            config(&[entry("missing.pem", "site.key")], "", "", backend),
            path("missing.pem"),
            "cannot read the file: no such file or directory",
        ),
        (
            config(&[entry("garbage.pem", "site.key")], "", "", backend),
            path("garbage.pem"),
            "no certificate in it",
        ),
        (
            config(&[entry("site.pem", "garbage.pem")], "", "", backend),
            path("garbage.pem"),
            "no private key in it",
        ),
        (
            config(&[entry("site.pem", "other.key")], "", "", backend),
            path("other.key"),
            "the private key does not match the certificate in",
        ),
        (
            config(
                &[entry("site.pem", "other.key")],
                "",
                "mode = \"http\"",
                backend,
            ),
            path("other.key"),
            "the private key does not match the certificate in",
        ),
    ];
    for (text, named, problem) in cases {
        for command in ["check", "run"] {
            let output = run_with_config(&[command], &text, Format::Toml);
            let stderr = &output.stderr;
            assert_eq!(output.code(), 2, "{command}: {stderr}");
            assert!(
                stderr.contains("balancer.toml:")
                    && stderr.contains(&named)
                    && stderr.contains(problem),
                "{command}: {stderr}"
            );
            assert_no_debug_formatting(command, stderr);
        }
    }
}

#[test]
fn check_prints_each_certificate_with_its_names_and_expiry_and_warns_before_it_ends() {
    let certs = Certs::new();
    certs.make_until(
        "site",
        &["example.com", "*.example.com"],
        Some((2099, 12, 31)),
    );
    certs.make_until("old", &["old.test"], Some((2020, 1, 15)));
    let text = config(
        &[certs.entry("site"), certs.entry("old")],
        "alpn = [\"http/1.1\"]\n",
        "",
        "127.0.0.1:9".parse().expect("an address"),
    );
    let output = check(&text, Format::Toml);
    assert_eq!(output.code(), 0, "{}", output.both());
    let site = certs.path("site.pem").display().to_string();
    let old = certs.path("old.pem").display().to_string();
    output.assert_stdout_contains(&[
        "tls: TLS 1.2 and up, ALPN http/1.1, handshake timeout 10s",
        &format!("certificate {site}: example.com, *.example.com; expires 2099-12-31 (in "),
        &format!("certificate {old}: old.test; expired 2020-01-15 ("),
        &format!("warning: certificate {old} expired 2020-01-15"),
    ]);
    assert!(
        !output
            .stdout
            .contains(&format!("warning: certificate {site}")),
        "{}",
        output.stdout
    );
}
