//! http mode (SPEC 4, docs/http.md): HTTP/1.1 from clients (and HTTP/2
//! over TLS), each request balanced on its own and sent to its backend as
//! HTTP/1.1 over a pooled keep-alive connection, the answer streamed back.
//!
//! [`h1::serve`] is one cleartext client connection: our own HTTP/1.1
//! server side ([`h1`]) reads the requests (keep-alive, pipelining,
//! HTTP/1.0, `Expect: 100-continue`, the header timeout and size limit,
//! the framing rules); [`tls::serve`] is one over TLS, whose requests
//! hyper's HTTP/2 or HTTP/1.1 server reads. [`answer`] answers each: the
//! backend set
//! ([`route`]), a backend and a connection to it (pooled, or new, with the
//! listener's retries), the forwarded request, the answer. A request's
//! bookkeeping (counters, the pooled connection given back, the access log
//! line) is done by its [`Finish`] when the answer's last byte is sent.

mod body;
pub mod h1;
pub mod headers;
pub mod tls;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::access_log::{self, HttpFields, Record};
use crate::backend::{Backend, ConnectionGuard};
use crate::config::HttpSettings;
use crate::health::passive;
use crate::net::connect::ConnectError;
use crate::net::pool::BackendConn;
use crate::proxy::connect::{Attempts, NoBackend, connect_to};
use crate::state::{ListenerSlot, Snapshot};
use body::{Relayed, RequestBody, ResponseBody};
use h1::client::{self, Answer, Failure, Outgoing, Tally};
use h1::codec::{self, RequestFraming};
use headers::{Field, FieldSet};
use upgrade::UpgradeTo;

/// What every request of one client connection shares.
pub struct Conn {
    slot: Arc<ListenerSlot>,
    /// The client: the peer, or the source its PROXY protocol header named.
    client: SocketAddr,
    /// The scheme the client used, named to backends in the forwarding
    /// headers: `http`, or `https` over TLS.
    scheme: &'static str,
    settings: HttpSettings,
    /// Cancelled when open connections must close (drain timeout).
    close: CancellationToken,
    /// The client socket's read side (`h1`; empty over HTTP/2, where
    /// hyper reads).
    reader: std::sync::Mutex<h1::body::Reader>,
    /// When the connection was accepted.
    accepted: std::time::Instant,
    /// The connection's slots under the global and the listener's caps,
    /// given back when the connection is over.
    _permits: Permits,
}

/// A connection's slots under the global and its listener's connection
/// caps.
pub type Permits = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("listener", &self.slot.name)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// An admitted client connection of an http listener on its way to being
/// served: the PROXY protocol header read (when the listener takes one),
/// then the connection's [`Conn`], which holds its socket; `None` when it
/// was turned away. Boxed, and made outside the connection's task: what
/// opening holds is freed once it is done, and an idle keep-alive
/// connection's task keeps only a pointer to it.
pub type Opening = std::pin::Pin<Box<dyn Future<Output = Option<Arc<Conn>>> + Send>>;

/// Opens client `stream` from `peer` (see [`Opening`]); [`h1::serve`]
/// then serves it until the client closes it, it idles out
/// (`request_header_timeout` between requests), the listener stops (the
/// drain: requests in flight finish, the connection then closes), or
/// `close` is cancelled (drain timeout). `permits` are held as long as
/// the connection is.
pub fn open_client(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<ListenerSlot>,
    state: Arc<Snapshot>,
    close: CancellationToken,
    settings: HttpSettings,
    permits: Permits,
) -> Opening {
    let accepted = std::time::Instant::now();
    Box::pin(async move {
        let mut stream = stream;
        let Ok(arrival) = super::arrive(&mut stream, peer, &slot, &state).await else {
            slot.stats.connection_duration.observe(accepted.elapsed());
            return None;
        };
        drop(state);
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            slot,
            client: arrival.client,
            scheme: "http",
            settings,
            close,
            reader: std::sync::Mutex::new(h1::body::Reader::new(
                h1::socket::Socket::Plain(stream),
                &arrival.early,
            )),
            accepted,
            _permits: permits,
        });
        Some(conn)
    })
}

/// How often idle pooled connections are checked for their
/// `backend_idle_timeout`.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Closes the pooled connections of `slot`'s backends that were idle
/// longer than its `backend_idle_timeout` (checked every second), until the
/// listener stops; then closes them all.
pub async fn sweep_pools(slot: Arc<ListenerSlot>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = slot.stop_accepting.cancelled() => break,
        }
        let state = slot.snapshot.load();
        if let crate::config::ModeSettings::Http(settings) = &state.config.mode {
            for backend in &state.backends {
                backend.pool.sweep(settings.backend_idle_timeout);
            }
        }
    }
    for backend in &slot.snapshot.load().backends {
        backend.pool.clear();
    }
}

/// The backend set for `req`: today every request of a listener goes to
/// its backends (routing by host and path would choose here).
fn route(slot: &ListenerSlot, _req: &Request<RequestBody>) -> Arc<Snapshot> {
    slot.snapshot.load_full()
}

/// What the head's framing rules leave to the request (each is answered
/// with its status and text, and the connection closed): an HTTP/1.1
/// request without `Host`, with two, or with one that is not a valid
/// authority (RFC 9112 3.2: 400).
fn check_request(req: &Request<RequestBody>) -> Result<(), (StatusCode, &'static str)> {
    let bad = |text| Err((StatusCode::BAD_REQUEST, text));
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 => {
            bad("bad request: an HTTP/1.1 request needs a Host header\n")
        }
        (Some(_), Some(_)) => bad("bad request: more than one Host header\n"),
        (Some(host), None) => {
            let valid = host
                .to_str()
                .ok()
                .is_some_and(|h| !h.is_empty() && h.parse::<hyper::http::uri::Authority>().is_ok());
            if valid {
                Ok(())
            } else {
                bad("bad request: the Host header is not a host\n")
            }
        }
        (None, _) => Ok(()),
    }
}

/// Methods a request may be sent again with (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The answer to one request (never fails: errors are answers). An
/// upgrade the backend accepted (`101`) comes with an [`UpgradeTo`] in the
/// answer's extensions, for the connection to relay once it has sent it.
///
/// `deadline` is the connection's timer, moved to `response_timeout` from
/// each try's start.
pub async fn answer(
    conn: Arc<Conn>,
    mut req: Request<RequestBody>,
    fields: FieldSet,
    mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let logged = conn.slot.access_log.load().is_some().then(|| {
        // An HTTP/2 request's target is its path: its scheme and
        // authority are pseudo-headers, not part of what the client wrote
        // as its target.
        let target = match req.version() {
            Version::HTTP_2 => req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            _ => req.uri().to_string(),
        };
        (req.method().to_string(), target)
    });
    let local = |status: StatusCode, text: &'static str, close: bool, logged| {
        conn.answer(status, text, close, started, logged)
    };
    if let Err((status, text)) = check_request(&req) {
        return local(status, text, true, logged);
    }
    let state = route(&conn.slot, &req);
    let upgrade = if fields.has(Field::Upgrade) {
        upgrade::requested(req.headers())
    } else {
        None
    };
    let trailers = fields.has(Field::Te) && headers::accepts_trailers(req.headers());
    to_origin_form(&mut req);
    let (parts, incoming) = req.into_parts();
    let client = headers::Forwarding::new(conn.client.ip(), conn.scheme);
    let host = parts.headers.get(header::HOST);
    let outbound = headers::Outbound {
        client: &client,
        host,
        connection: fields.has(Field::Connection),
        trailers,
        upgrade: upgrade.as_ref(),
    };
    let head_request = parts.method == Method::HEAD;
    // A request without a body can be sent again as it is; one with a body
    // cannot once its first try has read from it.
    let bodiless = incoming.is_end_stream();
    let framing = match incoming.size_hint().exact() {
        _ if bodiless => RequestFraming::None,
        Some(length) => RequestFraming::Length(length),
        None => RequestFraming::Chunked,
    };
    let tally = (!bodiless).then(|| Arc::new(Tally::default()));
    let mut outgoing = tally.as_ref().map(|tally| Outgoing {
        body: incoming,
        chunked: framing == RequestFraming::Chunked,
        tally: Arc::clone(tally),
    });
    let replayable = bodiless && idempotent(&parts.method);
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // An HTTP/1.0 request may come without a Host: it gets the address of
    // the backend it goes to, as nginx gives `$proxy_host`.
    let needs_host = host.is_none();
    // Encoded once; per try only when the Host is the backend's.
    let mut head = Vec::with_capacity(512);
    if !needs_host {
        codec::encode_request_head(
            &mut head,
            &parts.method,
            target,
            &parts.headers,
            framing,
            &outbound,
        );
    }

    let mut attempts = Attempts::new(&state);
    let mut retries = 0u32;
    let mut timed_out = false;
    let client_ip = conn.client.ip();
    while let Some(backend) = attempts.next(&state, client_ip) {
        let pooled = match conn.settings.max_idle_per_backend {
            0 => None,
            _ => backend.pool.take(conn.settings.backend_idle_timeout),
        };
        let reused = pooled.is_some();
        let backend_conn = match pooled {
            Some(pooled) => pooled,
            // Boxed: opening is the rare case with keep-alive, and its
            // state would widen every request's future.
            None => match Box::pin(open(&state, backend)).await {
                Ok(opened) => opened,
                // Closed after the answer: this machine is short of
                // descriptors, and a kept client connection would hold one
                // (under a full accept queue, every one of them, so that
                // no request could get a backend connection at all).
                Err(NoBackend::Local(_)) => {
                    return local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service unavailable: out of resources\n",
                        true,
                        logged,
                    );
                }
                Err(NoBackend::Unreachable { last, .. }) => {
                    if let Some((_, err)) = last {
                        timed_out = matches!(err, ConnectError::Timeout(_));
                        attempts.failed(backend, err);
                    }
                    retries += 1;
                    continue;
                }
            },
        };
        if needs_host {
            let mut headers = parts.headers.clone();
            if let Ok(host) = HeaderValue::from_str(&backend.address) {
                headers.insert(header::HOST, host);
            }
            head.clear();
            codec::encode_request_head(
                &mut head,
                &parts.method,
                target,
                &headers,
                framing,
                &outbound,
            );
        }
        let guard = ConnectionGuard::new(Arc::clone(backend));
        // A first try on a pooled connection goes out right after the
        // request came (one clock read less per request); a retry or a new
        // connection is timed from here, its connect left out.
        let sent_at = if retries == 0 && reused {
            started
        } else {
            Instant::now()
        };
        deadline
            .as_mut()
            .reset(sent_at + conn.settings.response_timeout);
        let sent = tokio::select! {
            biased;
            sent = client::send(backend_conn, &head, outgoing.take(), head_request) => Ok(sent),
            () = deadline.as_mut() => Err(()),
        };
        let failure = match sent {
            Err(_elapsed) => {
                return local(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout: the backend did not answer in time\n",
                    false,
                    logged,
                );
            }
            Ok(Ok(Answer { head: answer, body })) => {
                let now = Instant::now();
                let status = answer.status;
                passive::answered(
                    &state.config.name,
                    backend,
                    &state.backends,
                    status.as_u16(),
                    now - sent_at,
                    now,
                );
                let finish = Finish {
                    conn: Arc::clone(&conn),
                    guard,
                    started,
                    status: status.as_u16(),
                    logged,
                    retries,
                    bytes_in: tally,
                };
                let mut response = Response::new(());
                *response.status_mut() = status;
                *response.headers_mut() = answer.headers;
                let (mut parts, ()) = response.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers);
                if status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
                    let protocol = answer_protocol(&parts.headers, upgrade);
                    let Some(backend_side) = body.upgraded() else {
                        finish.done(false, 0, None);
                        return conn.answer(
                            StatusCode::BAD_GATEWAY,
                            "bad gateway: the backend switched protocols before the request's end\n",
                            true,
                            started,
                            None,
                        );
                    };
                    if let Some(protocol) = protocol {
                        upgrade::mark(&mut parts.headers, protocol);
                    }
                    parts
                        .extensions
                        .insert(upgrade::PendingUpgrade::new(UpgradeTo {
                            backend: backend_side,
                            finish,
                            idle_timeout: state.config.idle_timeout,
                        }));
                    return Response::from_parts(parts, body::local(""));
                }
                return Response::from_parts(
                    parts,
                    http_body_util::Either::Left(Relayed::new(body, answer.raw, finish)),
                );
            }
            Ok(Err(failure)) => failure,
        };
        if tally
            .as_ref()
            .is_some_and(|t| t.failed.load(Ordering::Relaxed))
        {
            // The client's body could not be read (bad chunked framing, or
            // the client left): its fault, not the backend's.
            return local(
                StatusCode::BAD_REQUEST,
                "bad request: the request body is malformed or incomplete\n",
                true,
                logged,
            );
        }
        match failure {
            Failure::NotSent(back) => {
                // Nothing reached the backend: as if the connect had failed.
                tracing::debug!(backend = %backend.address, reused, "request to a backend not sent");
                outgoing = back;
                retries += 1;
            }
            Failure::ClientBody => {
                return local(
                    StatusCode::BAD_REQUEST,
                    "bad request: the request body is malformed or incomplete\n",
                    true,
                    logged,
                );
            }
            // A reused connection the backend closed before answering (its
            // keep-alive ran out as the request went): an idempotent
            // bodiless request goes again.
            Failure::NoAnswer if reused && replayable => {
                tracing::debug!(backend = %backend.address, "reused connection closed without an answer; sending again");
                retries += 1;
            }
            Failure::NoAnswer => {
                return local(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the backend closed the connection without an answer\n",
                    false,
                    logged,
                );
            }
            // An answer that came and was garbage is not retried.
            Failure::BadAnswer(why) => {
                tracing::debug!(backend = %backend.address, why, "backend answer refused");
                return local(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the backend's answer is not valid HTTP\n",
                    false,
                    logged,
                );
            }
        }
    }
    if attempts.count() == 0 {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable: no backend is up\n",
            false,
            logged,
        );
    }
    if timed_out {
        return local(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway timeout: connecting to the backend timed out\n",
            false,
            logged,
        );
    }
    local(
        StatusCode::BAD_GATEWAY,
        "bad gateway: no backend could be reached\n",
        false,
        logged,
    )
}

/// A new connection to `backend` (counted and reported as the tcp mode's
/// connects are).
async fn open(state: &Snapshot, backend: &Backend) -> Result<BackendConn, NoBackend> {
    let stream = connect_to(state, backend, false).await.map_err(|err| {
        if err.is_local() {
            NoBackend::Local(err)
        } else {
            NoBackend::Unreachable {
                attempts: 1,
                last: Some((backend.address.clone(), err)),
            }
        }
    })?;
    Ok(BackendConn::new(stream))
}

/// The protocol a `101` switches to: the backend's `Upgrade`, else the
/// one the client asked for.
fn answer_protocol(headers: &hyper::HeaderMap, asked: Option<HeaderValue>) -> Option<HeaderValue> {
    headers.get(header::UPGRADE).cloned().or(asked)
}

/// Makes an absolute-form request (`GET http://host/path`) one in origin
/// form, as backends expect: the path as target, the authority as `Host`
/// (RFC 9112 3.2.2: it replaces any Host the request had). What else
/// changes on the way (hop-by-hop headers, the forwarding ones) is written
/// with the head ([`headers::write_request_fields`]).
fn to_origin_form(req: &mut Request<RequestBody>) {
    let Some(authority) = req.uri().authority().cloned() else {
        return;
    };
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        req.headers_mut().insert(header::HOST, host);
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Ok(uri) = path.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
}

/// A request's bookkeeping once its answer is sent (or abandoned).
#[derive(Debug)]
pub struct Finish {
    conn: Arc<Conn>,
    /// Counts the request as outstanding on its backend until dropped.
    guard: ConnectionGuard,
    started: Instant,
    status: u16,
    /// Method and target, when the access log is on.
    logged: Option<(String, String)>,
    retries: u32,
    /// Request body bytes sent so far; `None` for a request without one.
    bytes_in: Option<Arc<Tally>>,
}

impl Finish {
    /// The backend that answers.
    pub fn backend(&self) -> &Arc<Backend> {
        self.guard.backend()
    }

    /// The answer ended after `bytes_out` body bytes: `complete` when its
    /// last byte was sent; `reusable`, the backend connection when it can
    /// serve another request.
    pub fn done(mut self, complete: bool, bytes_out: u64, reusable: Option<BackendConn>) {
        let duration = self.started.elapsed();
        let backend = Arc::clone(self.guard.backend());
        let bytes_in = self
            .bytes_in
            .as_ref()
            .map_or(0, |counted| counted.bytes.load(Ordering::Relaxed));
        backend
            .stats
            .bytes_in
            .fetch_add(bytes_in, Ordering::Relaxed);
        backend.stats.record_response(self.status, duration);
        if let (true, Some(reusable)) = (complete, reusable) {
            backend
                .pool
                .put(reusable, self.conn.settings.max_idle_per_backend);
        }
        self.conn.log(
            self.logged.take(),
            Some(&backend),
            self.status,
            self.retries,
            (bytes_in, bytes_out),
            duration,
            if complete {
                access_log::Outcome::Ok
            } else {
                access_log::Outcome::Reset
            },
        );
    }
}

impl Finish {
    /// An upgraded exchange ended after moving `moved` (counted on the
    /// backend by the relay): `complete` when both sides closed.
    pub fn done_upgraded(mut self, complete: bool, moved: crate::proxy::tcp::Moved) {
        let duration = self.started.elapsed();
        let backend = Arc::clone(self.guard.backend());
        backend.stats.record_response(self.status, duration);
        self.conn.log(
            self.logged.take(),
            Some(&backend),
            self.status,
            self.retries,
            (moved.bytes_in, moved.bytes_out),
            duration,
            if complete {
                access_log::Outcome::Ok
            } else {
                access_log::Outcome::Reset
            },
        );
    }
}

impl Conn {
    /// An answer of the balancer's own: counted, logged, and when `close`,
    /// the connection closed after it.
    fn answer(
        &self,
        status: StatusCode,
        text: &'static str,
        close: bool,
        started: Instant,
        logged: Option<(String, String)>,
    ) -> Response<ResponseBody> {
        self.slot.stats.record_response(status.as_u16());
        let outcome = match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
                access_log::Outcome::NoBackend
            }
            _ => access_log::Outcome::Ok,
        };
        self.log(
            logged,
            None,
            status.as_u16(),
            0,
            (0, 0),
            started.elapsed(),
            outcome,
        );
        let mut response = Response::new(body::local(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Writes the access log line of one request, when the log is on.
    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        logged: Option<(String, String)>,
        backend: Option<&Backend>,
        status: u16,
        retries: u32,
        (bytes_in, bytes_out): (u64, u64),
        duration: Duration,
        outcome: access_log::Outcome,
    ) {
        // The log is looked up only for a request it takes.
        let Some((method, path)) = logged else {
            return;
        };
        let Some(log) = self.slot.access_log.load_full() else {
            return;
        };
        log.log(Record {
            ended: SystemTime::now(),
            duration,
            listener: Arc::from(self.slot.name.as_str()),
            client: self.client,
            backend: backend.map(|b| b.address.clone()),
            bytes_in,
            bytes_out,
            outcome,
            http: Some(HttpFields {
                method,
                path,
                status,
                retries,
            }),
        });
    }
}
