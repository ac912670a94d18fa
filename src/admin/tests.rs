//! The admin server over real loopback sockets: the whole runtime (`bind`
//! then `run`) with an admin port, in-test backends that name themselves,
//! and a minimal HTTP/1.1 client. Every endpoint and error code; changes
//! seen by the data plane; metrics that move with traffic.
//!
//! Nothing sleeps to synchronize: conditions are polled with a deadline
//! ([`eventually`]), and every wait is bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Algorithm;
use crate::runtime;
use crate::testing::{self, DEADLINE, ListenerBuilder, eventually, sample};

// === Harness ===

/// A backend that writes its name and a newline to each client, then
/// echoes until the client closes.
struct TestBackend {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestBackend {
    async fn start(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepts);
        let greeting = format!("{name}\n");
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    if stream.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TestBackend {
            addr,
            accepts,
            task,
        }
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener over `backends` (address, weight) with the settings these
/// tests count on: one retry, no slow-start ramp (they count exact splits
/// right after a change) and no passive detection.
fn listener(name: &str, algorithm: Algorithm, backends: &[(&str, u32)]) -> ListenerBuilder {
    backends
        .iter()
        .fold(testing::listener(name), |l, &(address, weight)| {
            l.weighted(address, weight)
        })
        .set("algorithm", algorithm.name())
        .set("connect_timeout", "2s")
        .set("idle_timeout", "60s")
        .set("retries", 1)
        .set("max_connections", 1000)
        .set("slow_start", "0s")
        .table("[listeners.passive_check]\nenabled = false")
}

/// Backend `a` behind round-robin listener `web`; no admin token.
async fn web_over_a() -> (TestBackend, Running) {
    let a = TestBackend::start("a").await;
    let web = listener("web", Algorithm::RoundRobin, &[(&a.address(), 1)]);
    (a, Running::start(vec![web], None).await)
}

/// Backends `a` and `b` behind round-robin listener `web`; no admin token.
async fn web_over_a_and_b() -> (TestBackend, TestBackend, Running) {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let backends = [(a.address(), 1), (b.address(), 1)];
    let backends: Vec<(&str, u32)> = backends.iter().map(|(s, w)| (s.as_str(), *w)).collect();
    let web = listener("web", Algorithm::RoundRobin, &backends);
    (a, b, Running::start(vec![web], None).await)
}

/// A balancer running in this test's runtime, with an admin port.
struct Running {
    admin: SocketAddr,
    listeners: HashMap<String, SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(listeners: Vec<ListenerBuilder>, token: Option<&str>) -> Running {
        let token = token.map_or(String::new(), |t| format!("token = \"{t}\""));
        let head = format!(
            "[global]\ndrain_timeout = \"2s\"\nmax_connections = 10000\n\
             [admin]\nlisten = \"127.0.0.1:0\"\nallowed_hosts = [\"admin.example\"]\n{token}"
        );
        let config = testing::config(&head, &listeners);
        let bound = runtime::bind(&config).unwrap();
        let admin = bound.admin_address().unwrap();
        let listeners = bound.addresses().into_iter().collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let reloads = runtime::Reloads::none();
        let task = tokio::spawn(runtime::run(
            config,
            bound,
            stopped,
            std::future::pending(),
            reloads,
        ));
        Running {
            admin,
            listeners,
            stop: Some(stop),
            task,
        }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    async fn get(&self, path: &str) -> Answer {
        http(self.admin, "GET", path, &[], None).await
    }

    async fn status(&self) -> Value {
        let answer = self.get("/api/status").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    async fn backend_status(&self, listener: &str, address: &str) -> Option<Value> {
        let status = self.status().await;
        status["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == listener)?["backends"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == address)
            .cloned()
    }

    async fn metrics(&self) -> String {
        let answer = self.get("/metrics").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// Stops the balancer and waits for `run` to return.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        // The admin address as `Host`, unless the test gives its own.
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            request.push_str("\r\n");
        }
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        // A reset after the answer (a refused body left unread) still
        // leaves the answer readable.
        let _ = stream.read_to_end(&mut raw).await;
        parse_answer(&raw)
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the admin server answers in time")
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer with headers");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A client connection through the balancer, with the name of the backend
/// that greeted it.
async fn open(addr: SocketAddr) -> (BufReader<TcpStream>, String) {
    let connect = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut name = String::new();
        reader.read_line(&mut name).await.unwrap();
        (reader, name.trim_end().to_string())
    };
    tokio::time::timeout(DEADLINE, connect)
        .await
        .expect("a backend greets in time")
}

/// The backend a fresh connection lands on; the connection is closed.
async fn which_backend(addr: SocketAddr) -> String {
    open(addr).await.1
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

// === Reading ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_listener_and_backend_in_the_spec_shape() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let running = Running::start(
        vec![
            listener(
                "web",
                Algorithm::WeightedRoundRobin,
                &[(&a.address(), 3), (&b.address(), 1)],
            ),
            listener("api", Algorithm::RoundRobin, &[(&b.address(), 1)]),
        ],
        None,
    )
    .await;

    let answer = running.get("/api/status").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let status = answer.json();
    let listeners = status["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    let web = &listeners[0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["listen"], running.addr("web").to_string());
    assert_eq!(web["mode"], "tcp");
    assert_eq!(web["algorithm"], "weighted_round_robin");
    let backends = web["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    let first = &backends[0];
    assert_eq!(first["address"], a.address());
    assert_eq!(first["weight"], 3);
    assert_eq!(first["state"], "up");
    for key in [
        "active_connections",
        "total_connections",
        "failures",
        "bytes_in",
        "bytes_out",
    ] {
        assert_eq!(first[key], 0, "{key}");
    }
    assert_eq!(listeners[1]["algorithm"], "round_robin");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backend_can_be_read_on_its_own_path() {
    let a = TestBackend::start("a").await;
    let running = Running::start(
        vec![listener("web", Algorithm::RoundRobin, &[(&a.address(), 2)])],
        None,
    )
    .await;
    let answer = running
        .get(&format!("/api/listeners/web/backends/{}", a.address()))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["weight"], 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_one_html_page_that_polls_the_status() {
    let (_a, running) = web_over_a().await;
    let answer = running.get("/").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(answer.body.contains("api/status"));
    running.stop().await;
}

#[test]
fn the_dashboard_loads_nothing_from_elsewhere() {
    let page = super::dashboard::PAGE;
    for outside in [
        "http://",
        "https://",
        "//cdn",
        "<script src",
        "<link rel=\"stylesheet\"",
    ] {
        assert!(!page.contains(outside), "the dashboard refers to {outside}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_list_every_metric_name_in_the_format_asked_for() {
    let (a, running) = web_over_a().await;
    let text = running.get("/metrics").await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for name in super::metrics::names::ALL {
        assert!(
            text.body.contains(&format!("# TYPE {name} ")),
            "{name} is missing:\n{}",
            text.body
        );
    }
    let address = a.address();
    let labels = [("listener", "web"), ("backend", address.as_str())];
    assert_eq!(
        sample(&text.body, "balancer_connections_total", &labels),
        Some(0.0)
    );
    assert_eq!(
        sample(&text.body, "balancer_backend_up", &labels),
        Some(1.0)
    );
    assert_eq!(
        sample(&text.body, "balancer_backend_weight", &labels),
        Some(1.0)
    );

    let open_metrics = http(
        running.admin,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        None,
    )
    .await;
    assert_eq!(open_metrics.status, 200);
    assert!(
        open_metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text")
    );
    assert!(open_metrics.body.ends_with("# EOF\n"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_the_active_gauge_returns_to_zero() {
    let (a, running) = web_over_a().await;
    let address = a.address();
    let labels = [("listener", "web"), ("backend", address.as_str())];

    let (mut client, name) = open(running.addr("web")).await;
    assert_eq!(name, "a");
    client.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    client.read_line(&mut echo).await.unwrap();
    assert_eq!(echo, "ping\n");
    let text = running.metrics().await;
    assert_eq!(
        sample(&text, "balancer_connections_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "balancer_active_connections", &labels),
        Some(1.0)
    );
    assert!(
        sample(&text, "balancer_backend_latency_seconds", &labels).is_some_and(|s| s > 0.0),
        "the connect latency is measured"
    );
    let backend = running.backend_status("web", &address).await.unwrap();
    assert!(
        backend["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{backend}"
    );
    assert_eq!(backend["connecting"], 0);
    assert_eq!(backend["effective_weight"], 1.0);
    assert_eq!(backend["last_check"], Value::Null, "no active checks");
    let bytes = |text: &str, direction: &str| {
        let labels = [labels[0], labels[1], ("direction", direction)];
        sample(text, "balancer_bytes_total", &labels)
    };
    // In: "ping\n"; out: the greeting "a\n" and the echo.
    eventually("bytes are counted both ways", || async {
        let text = running.metrics().await;
        bytes(&text, "in") == Some(5.0) && bytes(&text, "out") == Some(7.0)
    })
    .await;

    drop(client);
    eventually("the active gauge is back to 0", || async {
        let text = running.metrics().await;
        sample(&text, "balancer_active_connections", &labels) == Some(0.0)
            && sample(
                &text,
                "balancer_connection_duration_seconds_count",
                &[("listener", "web")],
            ) == Some(1.0)
            && sample(
                &text,
                "balancer_connection_duration_seconds_bucket",
                &[("listener", "web"), ("le", "+Inf")],
            ) == Some(1.0)
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_turned_away_by_the_allow_list_are_counted_by_reason() {
    let a = TestBackend::start("a").await;
    let web = listener("web", Algorithm::RoundRobin, &[(&a.address(), 1)])
        .set("allow", toml::Value::Array(vec!["10.0.0.0/8".into()]));
    let running = Running::start(vec![web], None).await;
    let mut refused = TcpStream::connect(running.addr("web")).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(DEADLINE, refused.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the client is closed at accept"
    );
    let labels = [("listener", "web"), ("reason", "not_allowed")];
    eventually("the rejection is counted", || async {
        sample(
            &running.metrics().await,
            "balancer_rejected_connections_total",
            &labels,
        ) == Some(1.0)
    })
    .await;
    let status = running.status().await;
    assert_eq!(
        status["listeners"][0]["rejected_connections"]["not_allowed"],
        1
    );
    running.stop().await;
}

// === Changing ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_backend_receives_traffic() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let running = Running::start(
        vec![listener("web", Algorithm::RoundRobin, &[(&a.address(), 1)])],
        None,
    )
    .await;
    let body = format!(r#"{{"address": "{}", "weight": 2}}"#, b.address());
    let answer = http(
        running.admin,
        "POST",
        "/api/listeners/web/backends",
        &[JSON],
        Some(&body),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.json()["address"], b.address());
    assert_eq!(answer.json()["weight"], 2);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/listeners/web/backends/{}", b.address()).as_str())
    );

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(which_backend(running.addr("web")).await);
    }
    assert_eq!(seen, ["a", "b", "a", "b"], "round robin over both");
    assert_eq!(b.accepts.load(Ordering::SeqCst), 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_a_weight_changes_the_split() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let running = Running::start(
        vec![listener(
            "web",
            Algorithm::WeightedRoundRobin,
            &[(&a.address(), 1), (&b.address(), 1)],
        )],
        None,
    )
    .await;
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let answer = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON],
        Some(r#"{"weight": 3}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["weight"], 3);

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..8 {
        *counts
            .entry(which_backend(running.addr("web")).await)
            .or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&6), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&2), "{counts:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_a_backend_to_draining_stops_new_connections_and_up_brings_it_back() {
    let (a, _b, running) = web_over_a_and_b().await;
    let (held, _) = open(running.addr("web")).await;
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let answer = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON],
        Some(r#"{"state": "draining"}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["state"], "draining");
    for _ in 0..4 {
        assert_eq!(which_backend(running.addr("web")).await, "b");
    }
    let drained = running.backend_status("web", &a.address()).await.unwrap();
    assert_eq!(drained["state"], "draining");
    assert_eq!(
        drained["active_connections"], 1,
        "an open connection finishes"
    );
    drop(held);

    let answer = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON],
        Some(r#"{"state": "up"}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(which_backend(running.addr("web")).await);
    }
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_backend_drains_it_then_removes_it_once_idle() {
    let (a, _b, running) = web_over_a_and_b().await;
    let (held, name) = open(running.addr("web")).await;
    assert_eq!(name, "a");
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let answer = http(running.admin, "DELETE", &path, &[], None).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.json()["state"], "draining");
    assert_eq!(answer.json()["removing"], true);

    for _ in 0..3 {
        assert_eq!(which_backend(running.addr("web")).await, "b");
    }
    let draining = running.backend_status("web", &a.address()).await;
    assert_eq!(
        draining.as_ref().map(|b| b["state"].clone()),
        Some("draining".into()),
        "kept while a connection is open"
    );

    drop(held);
    eventually("the backend is removed", || async {
        running.backend_status("web", &a.address()).await.is_none()
    })
    .await;
    assert_eq!(running.get(&path).await.status, 404);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_to_up_during_a_removal_answers_that_the_removal_is_cancelled() {
    // Regression (issue 16 item 8): the answer said "up" and "removing"
    // at once, and the removal was cancelled about 90 ms later.
    let (a, _b, running) = web_over_a_and_b().await;
    let (held, _) = open(running.addr("web")).await;
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let deleted = http(running.admin, "DELETE", &path, &[], None).await;
    assert_eq!(deleted.json()["removing"], true);
    let up = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON],
        Some(r#"{"state": "up"}"#),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(
        (up.json()["state"].clone(), up.json()["removing"].clone()),
        ("up".into(), false.into())
    );
    drop(held);
    let seen = running.backend_status("web", &a.address()).await;
    assert_eq!(seen.map(|b| b["removing"].clone()), Some(false.into()));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_backend_cannot_be_deleted() {
    let (a, b, running) = web_over_a_and_b().await;
    let delete = |address: String| {
        let admin = running.admin;
        async move {
            http(
                admin,
                "DELETE",
                &format!("/api/listeners/web/backends/{address}"),
                &[],
                None,
            )
            .await
        }
    };
    assert_eq!(delete(a.address()).await.status, 202);
    let refused = delete(b.address()).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .error()
            .contains("is the last one of listener \"web\""),
        "{}",
        refused.error()
    );
    assert_eq!(
        running.backend_status("web", &b.address()).await.unwrap()["state"],
        "up"
    );
    running.stop().await;
}

// === Auth ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_changes_need_it_and_reads_do_not() {
    let a = TestBackend::start("a").await;
    let running = Running::start(
        vec![listener("web", Algorithm::RoundRobin, &[(&a.address(), 1)])],
        Some("s3cret"),
    )
    .await;
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let body = Some(r#"{"weight": 2}"#);

    let missing = http(running.admin, "PATCH", &path, &[JSON], body).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert!(
        missing.error().contains("Authorization: Bearer"),
        "{}",
        missing.error()
    );
    let wrong = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON, ("Authorization", "Bearer s3cre")],
        body,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let basic = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON, ("Authorization", "Basic s3cret")],
        body,
    )
    .await;
    assert_eq!(basic.status, 401);
    let post = http(
        running.admin,
        "POST",
        "/api/listeners/web/backends",
        &[JSON],
        Some(r#"{"address": "127.0.0.1:1"}"#),
    )
    .await;
    assert_eq!(post.status, 401);
    let delete = http(running.admin, "DELETE", &path, &[], None).await;
    assert_eq!(delete.status, 401);
    assert_eq!(
        running.backend_status("web", &a.address()).await.unwrap()["weight"],
        1,
        "nothing changed"
    );

    let right = http(
        running.admin,
        "PATCH",
        &path,
        &[JSON, ("Authorization", "Bearer s3cret")],
        body,
    )
    .await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.json()["weight"], 2);
    assert_eq!(running.get("/api/status").await.status, 200);
    assert_eq!(running.get("/metrics").await.status, 200);
    assert_eq!(running.get("/").await.status, 200);
    running.stop().await;
}

// === Errors ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_with_400_naming_the_problem_and_change_nothing() {
    let (a, running) = web_over_a().await;
    let before = running.status().await;
    let backends = "/api/listeners/web/backends";
    let one = format!("{backends}/{}", a.address());
    let duplicate = format!(r#"{{"address": "{}"}}"#, a.address());
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            "POST",
            backends,
            "{\"address\": ",
            "the body is not valid JSON",
        ),
        (
            "POST",
            backends,
            "[1, 2]",
            "the body must be a JSON object, got an array",
        ),
        ("POST", backends, "{}", "missing field \"address\""),
        (
            "POST",
            backends,
            r#"{"address": 8080}"#,
            "field \"address\": expected a string \"host:port\", got 8080",
        ),
        (
            "POST",
            backends,
            r#"{"address": "127.0.0.1:9", "weight": 0}"#,
            "field \"weight\": 0 is out of range (expected 1 to 10000)",
        ),
        (
            "POST",
            backends,
            r#"{"address": "127.0.0.1:9", "weight": "3"}"#,
            "field \"weight\": expected an integer, got \"3\"",
        ),
        (
            "POST",
            backends,
            r#"{"address": "127.0.0.1:9", "weight": 1.5}"#,
            "field \"weight\": expected an integer, got 1.5",
        ),
        (
            "POST",
            backends,
            r#"{"address": "not an address"}"#,
            "field \"address\": \"not an address\": missing port (expected host:port)",
        ),
        (
            "POST",
            backends,
            r#"{"address": "127.0.0.1:0"}"#,
            "field \"address\": \"127.0.0.1:0\": port 0 is out of range (expected 1 to 65535)",
        ),
        (
            "POST",
            backends,
            r#"{"address": "127.0.0.1:9", "colour": "red"}"#,
            "unknown field \"colour\" (expected \"address\" and \"weight\")",
        ),
        ("POST", backends, &duplicate, "already has backend"),
        (
            "PATCH",
            &one,
            "{}",
            "nothing to change: give \"weight\", \"state\" or both",
        ),
        (
            "PATCH",
            &one,
            r#"{"weight": -2}"#,
            "field \"weight\": -2 is out of range (expected 1 to 10000)",
        ),
        (
            "PATCH",
            &one,
            r#"{"state": "down"}"#,
            "field \"state\": \"down\" is not a state that can be set (expected \"up\" or \"draining\")",
        ),
        (
            "PATCH",
            &one,
            r#"{"state": true}"#,
            "field \"state\": expected \"up\" or \"draining\", got true",
        ),
        (
            "PATCH",
            &one,
            r#"{"weight": 2, "state": "gone"}"#,
            "field \"state\": \"gone\"",
        ),
    ];
    for (method, path, body, expected) in cases {
        let answer = http(running.admin, method, path, &[JSON], Some(body)).await;
        assert_eq!(
            answer.status, 400,
            "{method} {path} {body}: {}",
            answer.body
        );
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let error = answer.error();
        assert!(error.contains(expected), "{method} {path} {body}: {error}");
        assert!(
            !error.contains("Some(") && !error.contains("Error {"),
            "debug formatting: {error}"
        );
    }
    let mut after = running.status().await;
    after["uptime_seconds"] = before["uptime_seconds"].clone();
    assert_eq!(after, before, "nothing changed");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_listeners_backends_and_paths_are_404() {
    let (_a, running) = web_over_a().await;
    let cases = [
        ("GET", "/nope".to_string(), "no such path: /nope"),
        ("GET", "/api/status/extra".to_string(), "no such path"),
        (
            "POST",
            "/api/listeners/db/backends".to_string(),
            "no listener named \"db\"",
        ),
        (
            "PATCH",
            "/api/listeners/db/backends/127.0.0.1:1".to_string(),
            "no listener named \"db\"",
        ),
        (
            "PATCH",
            "/api/listeners/web/backends/127.0.0.1:1".to_string(),
            "listener \"web\" has no backend \"127.0.0.1:1\"",
        ),
        (
            "DELETE",
            "/api/listeners/web/backends/127.0.0.1:1".to_string(),
            "listener \"web\" has no backend \"127.0.0.1:1\"",
        ),
        (
            "GET",
            "/api/listeners/web/backends/127.0.0.1:1".to_string(),
            "has no backend",
        ),
    ];
    for (method, path, expected) in cases {
        let answer = http(
            running.admin,
            method,
            &path,
            &[JSON],
            Some(r#"{"weight": 2}"#),
        )
        .await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.body);
        assert!(
            answer.error().contains(expected),
            "{method} {path}: {}",
            answer.error()
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_with_the_allowed_ones() {
    let (_a, running) = web_over_a().await;
    let cases = [
        ("POST", "/api/status", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("PUT", "/", "GET, HEAD"),
        ("GET", "/api/listeners/web/backends", "POST"),
        (
            "PUT",
            "/api/listeners/web/backends/x:1",
            "GET, HEAD, PATCH, DELETE",
        ),
    ];
    for (method, path, allow) in cases {
        let answer = http(running.admin, method, path, &[], None).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
        assert!(
            answer
                .error()
                .contains(&format!("method {method} is not allowed")),
            "{}",
            answer.error()
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let (_a, running) = web_over_a().await;
    let big = format!(
        r#"{{"address": "127.0.0.1:9", "pad": "{}"}}"#,
        "x".repeat(super::BODY_LIMIT)
    );
    let answer = http(
        running.admin,
        "POST",
        "/api/listeners/web/backends",
        &[JSON],
        Some(&big),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert!(
        answer.error().contains("over the limit of 16384 bytes"),
        "{}",
        answer.error()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_not_an_ip_localhost_or_allowed_is_refused_except_for_metrics() {
    // Regression (issue 16 item 4): with DNS rebinding, a page of
    // rebind.example reaches the admin port as its own origin.
    let (a, running) = web_over_a().await;
    let port = running.admin.port();
    let rebound = format!("rebind.example:{port}");
    let origin = format!("http://{rebound}");
    let path = format!("/api/listeners/web/backends/{}", a.address());
    let headers = [
        ("Host", rebound.as_str()),
        ("Origin", origin.as_str()),
        JSON,
    ];
    let refused = http(
        running.admin,
        "PATCH",
        &path,
        &headers,
        Some(r#"{"weight": 7}"#),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.error(),
        format!(
            "host \"{rebound}\" is not allowed (use an IP address or localhost, \
             or add the name to [admin] allowed_hosts)"
        )
    );
    let status = running.backend_status("web", &a.address()).await;
    assert_eq!(
        status.map(|b| b["weight"].clone()),
        Some(1.into()),
        "nothing changed"
    );
    let read = http(
        running.admin,
        "GET",
        "/api/status",
        &[("Host", &rebound)],
        None,
    )
    .await;
    assert_eq!(read.status, 403, "reads are refused too: {}", read.body);

    // A name of [admin] allowed_hosts passes, in any case.
    let listed = format!("Admin.Example:{port}");
    let answer = http(
        running.admin,
        "GET",
        "/api/status",
        &[("Host", &listed)],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Scrapers may use any name; IPs and localhost are always fine.
    let scrape = http(
        running.admin,
        "GET",
        "/metrics",
        &[("Host", &rebound)],
        None,
    )
    .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_string(),
    ] {
        let answer = http(
            running.admin,
            "GET",
            "/api/status",
            &[("Host", &host)],
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "Host {host}: {}", answer.body);
    }
    running.stop().await;
}

// === Lifecycle ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_closes_when_the_balancer_stops() {
    let (_a, running) = web_over_a().await;
    let admin = running.admin;
    // A keep-alive connection left open must not hold the stop up.
    let mut idle = TcpStream::connect(admin).await.unwrap();
    idle.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    running.stop().await;
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "the admin port is closed"
    );
}

#[test]
fn only_a_non_loopback_address_without_a_token_is_exposed() {
    use super::is_exposed_without_token;
    let none = None;
    let token = Some("t");
    let public: SocketAddr = "0.0.0.0:9000".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let v6: SocketAddr = "[::1]:9000".parse().unwrap();
    assert!(is_exposed_without_token(public, none));
    assert!(!is_exposed_without_token(public, token));
    assert!(!is_exposed_without_token(loopback, none));
    assert!(!is_exposed_without_token(v6, none));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_a_page_of_another_origin_are_refused() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let running = Running::start(
        vec![listener("web", Algorithm::RoundRobin, &[(&a.address(), 1)])],
        None,
    )
    .await;
    let body = format!(r#"{{"address": "{}"}}"#, b.address());
    let path = "/api/listeners/web/backends";
    let evil = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let refused = http(running.admin, "POST", path, &evil, Some(&body)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused
            .error()
            .contains("another origin (http://evil.example)"),
        "{}",
        refused.error()
    );
    assert!(
        running.backend_status("web", &b.address()).await.is_none(),
        "nothing changed"
    );

    // The test client sends `Host: ADDRESS`; a page served from there may.
    let origin = format!("http://{}", running.admin);
    let own = [("Origin", origin.as_str()), JSON];
    let accepted = http(running.admin, "POST", path, &own, Some(&body)).await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    running.stop().await;
}
