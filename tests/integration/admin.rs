//! The admin API of the real binary (SPEC 7, issue 6): status, metrics
//! read by a real Prometheus parser, changes at run time reaching the data
//! plane, the token, the dashboard in headless Chromium, and the demo's
//! admin port.
//!
//! Tools that may be absent (Python's `prometheus-client`, Chromium and
//! chromedriver) are installed by `.ci/run`; without them a test skips,
//! except under CI where a missing tool fails (`browser::tool_or_skip`).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};

use balancer::metric_names as names;
use serde_json::Value;

use crate::browser::{Browser, tool_or_skip};
use crate::harness::{
    Backend, Balancer, DEADLINE, Format, HttpBackend, HttpResponse, backends_reached, connect,
    count, echoes, eventually, fixed_ports, http_request, loopback, read_line, sample,
};

// === Helpers ===

/// A running balancer and its admin address (from its `admin listening`
/// log line: the config asks for port 0).
struct Admin {
    balancer: Balancer,
    addr: SocketAddr,
}

impl Admin {
    /// Runs `config` (TOML; its `[admin]` listens on 127.0.0.1:0) and waits
    /// until its listeners and the admin server listen.
    fn start(config: &str) -> Admin {
        let balancer = Balancer::start(config, Format::Toml);
        let addr = balancer.wait_admin();
        Admin { balancer, addr }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        http_request(
            self.addr,
            method,
            path,
            headers,
            body.map(str::as_bytes),
            DEADLINE,
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], None)
    }

    fn status(&self) -> Value {
        json(&self.get("/api/status"))
    }

    /// The backend `address` of listener `listener` in `/api/status`.
    fn backend(&self, listener: &str, address: &str) -> Option<Value> {
        let status = self.status();
        status["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == listener)?["backends"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == address)
            .cloned()
    }
}

fn json(answer: &HttpResponse) -> Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.body))
}

/// A config with one listener `web` over `backends` and an admin port.
fn config(algorithm: &str, backends: &[String], admin_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nalgorithm = \"{algorithm}\"\n\
         backends = [{}]\n",
        list.join(", ")
    )
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Runs `program args` with `input` on its stdin and waits for it to end;
/// what it printed and how it exited. Panics if it did not take all of
/// `input`, after it ended (so it is never left running).
fn run_tool(program: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    // The write end is dropped at the end of the statement: EOF for the tool.
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{program} finishes: {e}"));
    if let Err(e) = written {
        panic!(
            "{program} did not take its input ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// One sample as the Python parser read it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Metric families and samples of `text`, as Python's `prometheus-client`
/// parses it (`openmetrics`: its stricter OpenMetrics parser), or `None`
/// when the parser is not installed (a skip; a failure under CI). Panics
/// with the parser's message when it refuses the text.
fn parse_with_python(
    text: &str,
    openmetrics: bool,
) -> Option<(HashMap<String, String>, Vec<Sample>)> {
    let present = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !tool_or_skip(
        "python3 prometheus-client",
        present,
        "pip install prometheus-client",
    ) {
        return None;
    }
    let parser = if openmetrics {
        "prometheus_client.openmetrics.parser"
    } else {
        "prometheus_client.parser"
    };
    let script = format!(
        "import json, sys\n\
         from {parser} import text_string_to_metric_families\n\
         families, samples = {{}}, []\n\
         for f in text_string_to_metric_families(sys.stdin.read()):\n\
         \x20   families[f.name] = f.type\n\
         \x20   for s in f.samples:\n\
         \x20       samples.append([s.name, s.labels, s.value])\n\
         print(json.dumps({{'families': families, 'samples': samples}}))\n"
    );
    let out = run_tool("python3", &["-c", &script], text);
    assert!(
        out.status.success(),
        "{parser} refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("the parser prints JSON");
    let families = parsed["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| Sample {
            name: s[0].as_str().unwrap_or_default().to_string(),
            labels: s[1]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            value: s[2].as_f64().unwrap_or(f64::NAN),
        })
        .collect();
    Some((families, samples))
}

/// The value of sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

// === Tests ===

#[test]
fn the_binary_serves_status_dashboard_and_metrics_on_its_admin_address() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let admin = Admin::start(&config(
        "weighted_round_robin",
        &[a.addr().to_string(), b.addr().to_string()],
        "",
    ));
    let status = admin.status();
    let web = &status["listeners"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["listen"], admin.balancer.addr("web").to_string());
    assert_eq!(web["mode"], "tcp");
    assert_eq!(web["algorithm"], "weighted_round_robin");
    let addresses: Vec<&str> = web["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| b["address"].as_str())
        .collect();
    assert_eq!(addresses, [a.addr().to_string(), b.addr().to_string()]);
    for key in [
        "weight",
        "state",
        "active_connections",
        "total_connections",
        "failures",
    ] {
        assert!(!web["backends"][0][key].is_null(), "backend key {key}");
    }

    let page = admin.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let metrics = admin.get("/metrics");
    assert_eq!(metrics.status, 200);
    for name in names::ALL {
        assert!(metrics.body.contains(name), "/metrics lacks {name}");
    }
    admin.balancer.stop();
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser_and_move_with_traffic() {
    let a = Backend::named("a");
    let admin = Admin::start(&config("round_robin", &[a.addr().to_string()], ""));
    let backend = a.addr().to_string();
    let labels = [("listener", "web"), ("backend", backend.as_str())];

    let mut client = connect(admin.balancer.addr("web"));
    assert_eq!(read_line(&mut client).expect("a greeting"), "a");
    assert_eq!(echoes(&mut client, b"hello"), Ok(()));

    let Some((families, samples)) = parse_with_python(&admin.get("/metrics").body, false) else {
        return;
    };
    for name in names::ALL {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            families.contains_key(family),
            "the parser saw no {family} family: {families:?}"
        );
    }
    assert_eq!(
        families.get("balancer_connections").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        families
            .get("balancer_connection_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        value(&samples, "balancer_connections_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "balancer_active_connections", &labels),
        Some(1.0)
    );
    assert_eq!(value(&samples, "balancer_backend_up", &labels), Some(1.0));
    assert!(value(&samples, "process_open_fds", &[]).is_some_and(|n| n > 0.0));
    assert!(value(&samples, "process_resident_memory_bytes", &[]).is_some_and(|n| n > 0.0));
    assert!(value(&samples, "process_start_time_seconds", &[]).is_some_and(|n| n > 1.0e9));

    drop(client);
    let settled = eventually(DEADLINE, || {
        let text = admin.get("/metrics").body;
        let Some((_, samples)) = parse_with_python(&text, false) else {
            return false;
        };
        let bytes = |direction| {
            value(
                &samples,
                "balancer_bytes_total",
                &[labels[0], labels[1], ("direction", direction)],
            )
        };
        // In: "hello"; out: the greeting "a\n" and the echo.
        value(&samples, "balancer_active_connections", &labels) == Some(0.0)
            && bytes("in") == Some(5.0)
            && bytes("out") == Some(7.0)
            && value(
                &samples,
                "balancer_connection_duration_seconds_count",
                &[labels[0]],
            ) == Some(1.0)
    });
    assert!(
        settled,
        "the metrics did not settle:\n{}",
        admin.get("/metrics").body
    );

    let open_metrics = admin.request(
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
        None,
    );
    assert!(
        open_metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text")
    );
    let (_, samples) =
        parse_with_python(&open_metrics.body, true).expect("the parser was there a moment ago");
    assert_eq!(
        value(&samples, "balancer_connections_total", &labels),
        Some(1.0)
    );
    admin.balancer.stop();
}

#[test]
fn promtool_finds_nothing_to_lint_in_the_metrics() {
    let present = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // promtool is a bonus check (Debian's `prometheus` package is large):
    // skipped when absent, even on CI.
    if !present {
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        return;
    }
    let a = Backend::named("a");
    let admin = Admin::start(&config("round_robin", &[a.addr().to_string()], ""));
    let text = admin.get("/metrics").body;
    let out = run_tool("promtool", &["check", "metrics"], &text);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    admin.balancer.stop();
}

#[test]
fn changes_through_the_api_need_the_token_and_reach_the_data_plane() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let admin = Admin::start(&config(
        "round_robin",
        &[a.addr().to_string()],
        "token = \"t0ken\"\n",
    ));
    let web = admin.balancer.addr("web");
    let auth = ("Authorization", "Bearer t0ken");
    let post = format!(r#"{{"address": "{}"}}"#, b.addr());

    let refused = admin.request("POST", "/api/listeners/web/backends", &[JSON], Some(&post));
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        json(&refused)["error"]
            .as_str()
            .is_some_and(|e| e.contains("token"))
    );
    assert_eq!(backends_reached(web, 2), ["a", "a"], "nothing changed");

    let added = admin.request(
        "POST",
        "/api/listeners/web/backends",
        &[JSON, auth],
        Some(&post),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        backends_reached(web, 4),
        ["a", "b", "a", "b"],
        "the new backend takes its turn"
    );

    let b_path = format!("/api/listeners/web/backends/{}", b.addr());
    let drained = admin.request(
        "PATCH",
        &b_path,
        &[JSON, auth],
        Some(r#"{"state": "draining"}"#),
    );
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(
        backends_reached(web, 3),
        ["a", "a", "a"],
        "a draining backend gets no new connection"
    );

    let mut held = connect(web);
    assert_eq!(read_line(&mut held).expect("a greeting"), "a");
    let a_path = format!("/api/listeners/web/backends/{}", a.addr());
    let back_up = admin.request("PATCH", &b_path, &[JSON, auth], Some(r#"{"state": "up"}"#));
    assert_eq!(back_up.status, 200, "{}", back_up.body);
    let deleted = admin.request("DELETE", &a_path, &[auth], None);
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(
        backends_reached(web, 2),
        ["b", "b"],
        "a deleted backend drains"
    );
    assert_eq!(
        admin
            .backend("web", &a.addr().to_string())
            .map(|b| b["state"].clone()),
        Some("draining".into()),
        "kept while its connection is open"
    );
    drop(held);
    let removed = eventually(DEADLINE, || {
        admin.backend("web", &a.addr().to_string()).is_none()
    });
    assert!(
        removed,
        "the idle backend was not removed: {}",
        admin.status()
    );
    admin.balancer.stop();
}

#[test]
fn patching_a_weight_changes_the_split_of_the_next_connections() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let admin = Admin::start(&config(
        "weighted_round_robin",
        &[a.addr().to_string(), b.addr().to_string()],
        "",
    ));
    let web = admin.balancer.addr("web");
    let before = backends_reached(web, 10);
    assert_eq!((count(&before, "a"), count(&before, "b")), (5, 5));
    let path = format!("/api/listeners/web/backends/{}", b.addr());
    let answer = admin.request("PATCH", &path, &[JSON], Some(r#"{"weight": 4}"#));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let after = backends_reached(web, 10);
    assert_eq!((count(&after, "a"), count(&after, "b")), (2, 8));
    admin.balancer.stop();
}

#[test]
fn an_admin_address_in_use_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("an address").port();
    let a = Backend::named("a");
    let text = config("round_robin", &[a.addr().to_string()], "")
        .replace("127.0.0.1:0\"\n\n", &format!("127.0.0.1:{port}\"\n\n"));
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let mut balancer = Balancer::spawn_with_config(&[], &text, Format::Toml);
    let status = balancer.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", balancer.output());
    let stderr = balancer.stderr();
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (admin): address already in use"
        )),
        "{stderr}"
    );
}

#[test]
fn the_dashboard_in_headless_chromium_shows_every_backend_and_counts_traffic() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let a = Backend::named("a");
    let b = Backend::named("b");
    let c = Backend::named("c");
    let admin = Admin::start(&format!(
        "{}\n[[listeners]]\nname = \"api\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        config(
            "weighted_round_robin",
            &[a.addr().to_string(), b.addr().to_string()],
            ""
        ),
        c.addr()
    ));
    browser.open(&format!("http://{}/", admin.addr));

    let rows = "return Array.from(document.querySelectorAll('tr[data-backend]')).map(r => \
                [r.dataset.listener, r.dataset.backend, \
                 r.querySelector('[data-field=total_connections]').textContent])";
    let shown = |browser: &Browser| -> Vec<(String, String, String)> {
        browser
            .run(rows)
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let s = |i: usize| r[i].as_str().unwrap_or_default().to_string();
                        (s(0), s(1), s(2))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = [
        ("web", a.addr().to_string()),
        ("web", b.addr().to_string()),
        ("api", c.addr().to_string()),
    ];
    let all_shown = eventually(DEADLINE, || {
        let rows = shown(&browser);
        rows.len() == expected.len()
            && expected
                .iter()
                .all(|(l, b)| rows.iter().any(|(rl, rb, _)| rl == l && rb == b))
    });
    assert!(
        all_shown,
        "the dashboard does not show every backend: {:?}",
        shown(&browser)
    );
    let total_of = |browser: &Browser, backend: &str| {
        shown(browser)
            .into_iter()
            .find(|(_, b, _)| b == backend)
            .and_then(|(_, _, total)| total.parse::<u64>().ok())
    };
    assert_eq!(total_of(&browser, &a.addr().to_string()), Some(0));

    // Traffic that keeps going while the page polls, so its chart moves.
    let web = admin.balancer.addr("web");
    let api = admin.balancer.addr("api");
    let rose = eventually(DEADLINE, || {
        backends_reached(web, 3);
        backends_reached(api, 1);
        total_of(&browser, &a.addr().to_string()).is_some_and(|n| n >= 6)
    });
    assert!(
        rose,
        "the total of backend a did not rise: {:?}",
        shown(&browser)
    );
    for _ in 0..3 {
        // A few more polls with traffic, for a chart worth looking at.
        let seen = total_of(&browser, &c.addr().to_string()).unwrap_or(0);
        let moved = eventually(DEADLINE, || {
            backends_reached(web, 3);
            backends_reached(api, 2);
            total_of(&browser, &c.addr().to_string()).is_some_and(|n| n > seen)
        });
        assert!(moved, "the dashboard stopped updating");
    }

    // A drained backend shows its state.
    let path = format!("/api/listeners/web/backends/{}", b.addr());
    let drained = admin.request("PATCH", &path, &[JSON], Some(r#"{"state": "draining"}"#));
    assert_eq!(drained.status, 200, "{}", drained.body);
    let state_of = format!(
        "const row = document.querySelector('tr[data-backend=\"{}\"] .state'); \
         return row ? [row.textContent, row.className] : null;",
        b.addr()
    );
    let shown_draining = eventually(DEADLINE, || {
        browser.run(&state_of) == serde_json::json!(["draining", "state draining"])
    });
    assert!(
        shown_draining,
        "the state is not shown: {}",
        browser.run(&state_of)
    );
    backends_reached(web, 3);

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard.png");
    browser.screenshot(&screenshot);
    eprintln!("dashboard screenshot: {}", screenshot.display());
    let errors: Vec<(String, String)> = browser
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    drop(browser);
    admin.balancer.stop();
}

#[test]
fn the_demo_serves_its_dashboard_on_port_9000() {
    let _ports = fixed_ports();
    let mut demo = Balancer::spawn(["demo"], None);
    let listening = [24003, 24004, 24005, 24006, 24007].map(loopback);
    demo.wait_listening_on(&listening);
    assert!(demo.wait_for_log(DEADLINE, |l| {
        l.contains("admin listening address=127.0.0.1:9000")
    }));
    // Stdout is read by its own thread: wait for it too.
    assert!(
        eventually(DEADLINE, || demo
            .stdout()
            .contains("http://127.0.0.1:9000/")),
        "{}",
        demo.stdout()
    );
    let admin = loopback(9000);
    let status = http_request(admin, "GET", "/api/status", &[], None, DEADLINE)
        .expect("the demo's admin answers");
    let status: Value = serde_json::from_str(&status.body).expect("JSON");
    let listeners: Vec<(String, usize)> = status["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            (name, l["backends"].as_array().map_or(0, Vec::len))
        })
        .collect();
    assert_eq!(
        listeners,
        [
            ("web".to_string(), 4),
            ("api".to_string(), 1),
            ("http".to_string(), 4),
            ("tls".to_string(), 4),
            ("https".to_string(), 4)
        ]
    );
    demo.stop();
}

#[test]
fn backend_up_flips_to_0_when_a_backend_dies_with_health_checks_on() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let checks = "[listeners.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\n\
                  timeout = \"500ms\"\nrise = 1\nfall = 1\n";
    let admin = Admin::start(&format!(
        "{}{checks}",
        config(
            "round_robin",
            &[a.addr().to_string(), b.addr().to_string()],
            ""
        )
    ));
    let b_address = b.addr().to_string();
    let labels = [("listener", "web"), ("backend", b_address.as_str())];
    let checked = eventually(DEADLINE, || {
        admin
            .backend("web", &b_address)
            .is_some_and(|b| b["last_check"] == "ok")
    });
    assert!(checked, "b was never checked: {}", admin.status());
    assert_eq!(
        sample(&admin.get("/metrics").body, "balancer_backend_up", &labels),
        Some(1.0)
    );

    drop(b);
    let down = eventually(DEADLINE, || {
        sample(&admin.get("/metrics").body, "balancer_backend_up", &labels) == Some(0.0)
    });
    assert!(
        down,
        "backend_up of b did not flip: {}",
        admin.get("/metrics").body
    );
    let status = admin.backend("web", &b_address).expect("b is listed");
    assert_eq!(status["state"], "down");
    assert_eq!(status["health"]["down_cause"], "checks");
    assert!(
        status["last_check"].as_str().is_some_and(|c| c != "ok"),
        "the last check names its failure: {status}"
    );
    let down_state = [labels[0], labels[1], ("state", "down")];
    assert_eq!(
        sample(
            &admin.get("/metrics").body,
            "balancer_backend_state",
            &down_state
        ),
        Some(1.0)
    );
    assert_eq!(
        backends_reached(admin.balancer.addr("web"), 3),
        ["a", "a", "a"]
    );
    admin.balancer.stop();
}

// === The dashboard of an http listener ===

/// What the card of listener `name` shows: `mode` (its `data-mode`), each
/// stats box's `[data-field]` text (its classes as `FIELD.class`, its
/// box's tooltip as `FIELD.title`),
/// `labels` (the stats boxes' labels, `|`-joined) and `columns` (the
/// table's headings); `None` before the page drew it.
fn card_shown(browser: &Browser, name: &str) -> Option<HashMap<String, String>> {
    let script = format!(
        "const card = document.querySelector('section[data-listener=\"{name}\"]'); \
         if (!card) return null; \
         const out = {{ mode: card.dataset.mode }}; \
         for (const n of card.querySelectorAll('.stats [data-field]')) {{ \
           out[n.dataset.field] = n.textContent; out[n.dataset.field + '.class'] = n.className; \
           out[n.dataset.field + '.title'] = n.closest('.stat').title; }} \
         out.labels = Array.from(card.querySelectorAll('.stat .label')).map(n => n.textContent).join('|'); \
         out.columns = Array.from(card.querySelectorAll('thead th')).map(n => n.textContent).join('|'); \
         return out;"
    );
    strings(browser.run(&script).as_object()?)
}

/// The backend rows of listener `name`'s card: each `[data-field]` cell's
/// text, and `backend` (its address).
fn rows_shown(browser: &Browser, name: &str) -> Vec<HashMap<String, String>> {
    let script = format!(
        "return Array.from(document.querySelectorAll('tr[data-listener=\"{name}\"]')).map(r => {{ \
           const out = {{ backend: r.dataset.backend }}; \
           for (const n of r.querySelectorAll('[data-field]')) out[n.dataset.field] = n.textContent; \
           return out; }});"
    );
    browser
        .run(&script)
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| strings(r.as_object()?))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(object: &serde_json::Map<String, Value>) -> Option<HashMap<String, String>> {
    Some(
        object
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

/// A shown number (`"12"`, `"0.52"`); `None` for `"–"` or anything else.
fn number(shown: Option<&String>) -> Option<f64> {
    shown?.parse().ok()
}

/// A shown duration in milliseconds (`"0.52 ms"`, `"12.0 s"`); `None` for
/// `"–"` or anything else.
fn millis(shown: Option<&String>) -> Option<f64> {
    let (value, unit) = shown?.split_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match unit {
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        _ => None,
    }
}

#[test]
fn the_dashboard_shows_requests_status_classes_and_latency_of_an_http_listener() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let a = HttpBackend::start("a");
    let b = HttpBackend::start("b");
    let db = Backend::named("db");
    let admin = Admin::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nmode = \"http\"\n\
         algorithm = \"round_robin\"\nbackends = [\"{}\", \"{}\"]\n\n\
         [[listeners]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n",
        a.addr(),
        b.addr(),
        db.addr()
    ));
    let web = admin.balancer.addr("web");
    let db_listener = admin.balancer.addr("db");
    browser.open(&format!("http://{}/", admin.addr));

    // Before any request: zeros and no latency yet, nothing undefined.
    let drawn = eventually(DEADLINE, || {
        card_shown(&browser, "web").is_some_and(|c| c["mode"] == "http")
            && card_shown(&browser, "db").is_some_and(|c| c["mode"] == "tcp")
            && rows_shown(&browser, "web").len() == 2
    });
    assert!(drawn, "no cards: {:?}", card_shown(&browser, "web"));
    let web_card = card_shown(&browser, "web").expect("the web card");
    assert_eq!(web_card["requests_total"], "0");
    assert_eq!(web_card["latency_p99"], "–");
    assert_eq!(
        web_card["columns"],
        "backend|state|weight|in flight|requests|5xx|p99|share of traffic|bytes in|bytes out|failures|latency"
    );

    // Requests (and tcp connections) while the page polls: both rates rise.
    let mut sent = 0u64;
    let mut get = |headers: &[(&str, &str)]| {
        let answer = http_request(web, "GET", "/", headers, None, DEADLINE)
            .unwrap_or_else(|e| panic!("a request through web: {e}"));
        sent += 1;
        answer.status
    };
    let rates = eventually(DEADLINE, || {
        assert_eq!(get(&[]), 200);
        backends_reached(db_listener, 1);
        let rate =
            |name: &str, field: &str| card_shown(&browser, name).and_then(|c| number(c.get(field)));
        rate("web", "request_rate").is_some_and(|r| r > 0.0)
            && rate("db", "connection_rate").is_some_and(|r| r > 0.0)
    });
    assert!(
        rates,
        "no requests/s or connections/s: {:?} {:?}",
        card_shown(&browser, "web"),
        card_shown(&browser, "db")
    );

    // Three 503s (never five in a row from one backend: none goes down) and
    // a 404 among 200s.
    for status in ["503", "", "503", "404", "503", ""] {
        let headers: &[(&str, &str)] = if status.is_empty() {
            &[]
        } else {
            &[("x-reply-status", status)]
        };
        let expected: u16 = status.parse().unwrap_or(200);
        assert_eq!(get(headers), expected, "asked for {status:?}");
    }
    // And one the balancer answers itself: 400 for two Content-Lengths.
    let refused = [("Content-Length", "1"), ("Content-Length", "2")];
    assert_eq!(get(&refused), 400);
    let sent = sent;
    // (Counted once the answer's last byte is out: the client may see it first.)
    let in_status = eventually(DEADLINE, || {
        admin.status()["listeners"][0]["http"]["requests_total"] == sent
    });
    assert!(in_status, "{sent} requests sent: {}", admin.status());

    let expected_card = |c: &HashMap<String, String>| {
        c["requests_total"] == sent.to_string()
            && c["responses_5xx"] == "3"
            && c["responses_4xx"] == "2"
            && c["responses_2xx"] == (sent - 5).to_string()
    };
    let counted = eventually(DEADLINE, || {
        card_shown(&browser, "web").is_some_and(|c| expected_card(&c))
    });
    let card = card_shown(&browser, "web").expect("the web card");
    assert!(
        counted,
        "{sent} requests, 3 of them 503, not shown: {card:?}"
    );
    assert!(
        card["responses_4xx.title"].contains("1 of them the balancer's own"),
        "{card:?}"
    );
    assert!(
        card["responses_5xx.class"].split(' ').any(|c| c == "fail"),
        "5xx not highlighted: {card:?}"
    );
    assert!(
        !card["responses_4xx.class"].split(' ').any(|c| c == "fail"),
        "{card:?}"
    );
    assert!(card["share_5xx"].ends_with('%'), "{card:?}");
    for field in ["latency_p50", "latency_p99"] {
        assert!(
            number(card.get(field)).is_some_and(|ms| ms > 0.0),
            "{field}: {card:?}"
        );
    }

    // Per backend: requests, 5xx and p99, adding up to the listener's.
    let rows = rows_shown(&browser, "web");
    let sum = |field: &str| -> f64 { rows.iter().filter_map(|r| number(r.get(field))).sum() };
    assert_eq!(sum("requests_total"), (sent - 1) as f64, "{rows:?}");
    assert_eq!(sum("responses_5xx"), 3.0, "{rows:?}");
    for row in &rows {
        assert!(
            millis(row.get("latency_p99")).is_some_and(|ms| ms > 0.0),
            "{row:?}"
        );
        assert!(!row.contains_key("total_connections"), "{row:?}");
    }

    // The tcp listener looks as before: its connections, no http fields.
    let db_card = card_shown(&browser, "db").expect("the db card");
    assert_eq!(
        db_card["labels"],
        "active|connections / s|in / s|out / s|connections|rejected"
    );
    assert_eq!(
        db_card["columns"],
        "backend|state|weight|active|total|share of traffic|bytes in|bytes out|failures|latency"
    );
    assert!(
        !db_card
            .keys()
            .any(|k| k.starts_with("responses_") || k.starts_with("latency_p")),
        "{db_card:?}"
    );
    let db_connections = admin.status()["listeners"][1]["total_connections"]
        .as_u64()
        .expect("db's connections");
    let db_shown = eventually(DEADLINE, || {
        card_shown(&browser, "db")
            .is_some_and(|c| c["total_connections"] == db_connections.to_string())
    });
    assert!(
        db_shown,
        "db's {db_connections} connections not shown: {:?}",
        card_shown(&browser, "db")
    );
    let db_rows = rows_shown(&browser, "db");
    assert_eq!(db_rows.len(), 1);
    assert_eq!(db_rows[0]["total_connections"], db_connections.to_string());

    // Nothing on the page, nor in its tooltips, says undefined or NaN.
    let texts = browser.run(
        "return [document.body.innerText, \
         ...Array.from(document.querySelectorAll('[title]')).map(n => n.title)].join('\\n');",
    );
    let texts = texts.as_str().unwrap_or_default();
    for bad in ["undefined", "NaN", "null", "Infinity"] {
        assert!(!texts.contains(bad), "the page shows {bad}: {texts}");
    }

    let screenshot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard-http.png");
    browser.screenshot(&screenshot);
    eprintln!("dashboard screenshot: {}", screenshot.display());
    let errors: Vec<(String, String)> = browser
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    drop(browser);
    admin.balancer.stop();
}

#[test]
fn instances_with_one_backend_set_show_one_maglev_digest_and_a_change_shows_in_it() {
    let backends: Vec<Backend> = ["a", "b", "c"].into_iter().map(Backend::named).collect();
    let list: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    let text = config("source_hash", &list, "");
    let (one, two) = (Admin::start(&text), Admin::start(&text));
    let digest = |admin: &Admin| {
        admin.status()["listeners"][0]["maglev_digest"]
            .as_str()
            .map(str::to_string)
    };
    let first = digest(&one).expect("a source_hash listener shows its maglev_digest");
    assert_eq!(first.len(), 16, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    assert_eq!(digest(&two), Some(first.clone()), "two instances, one set");
    // `balancer check` prints the same digest for the same config.
    let checked = crate::harness::check(&text, Format::Toml);
    assert!(
        checked.stdout.contains(&first),
        "check does not print {first}:\n{}",
        checked.stdout
    );

    // A backend added on one instance only: its table, and digest, change.
    let d = Backend::named("d");
    let post = format!(r#"{{"address": "{}"}}"#, d.addr());
    for admin in [&one, &two] {
        let added = admin.request("POST", "/api/listeners/web/backends", &[JSON], Some(&post));
        assert_eq!(added.status, 201, "{}", added.body);
        if std::ptr::eq(admin, &one) {
            let changed = digest(&one).expect("still a digest");
            assert_ne!(changed, first, "the table did not change with the set");
            assert_ne!(Some(changed), digest(&two), "different sets, one digest");
        }
    }
    // The same change on both: one digest again.
    assert_eq!(digest(&one), digest(&two));
    // Round robin has no table, and no digest.
    let plain = Admin::start(&config("round_robin", &list, ""));
    assert_eq!(plain.status()["listeners"][0].get("maglev_digest"), None);
}
