//! The admin routes (SPEC 7): the dashboard, `/metrics`, `GET /api/status`
//! and the run-time changes (`POST`, `PATCH`, `DELETE` of a backend), the
//! token check, and JSON errors.
//!
//! Changes are checked whole before anything changes (a 400 changes
//! nothing), then applied through `Registry::update`, which builds the
//! listener's next state over the same `Arc<Backend>`s (counters and
//! health stay) and publishes it for the next connection on every worker.
//! They last until the next reload or restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::{Admin, dashboard, metrics};
use crate::backend::{Backend, BackendState};
use crate::config::BackendSpec;
use crate::runtime::state::{ListenerSlot, ListenerState};
use crate::runtime::stats::Rejection;

/// The largest request body accepted, in bytes: a backend change is a few
/// dozen bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The largest weight a backend may have (as in the config files).
pub const MAX_WEIGHT: u32 = 10_000;

/// How long resolving a backend's host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a backend that a DELETE drains is checked for being idle.
const REMOVAL_POLL: Duration = Duration::from_millis(100);

/// The body every answer has.
type Body = Full<Bytes>;

/// Why an admin request failed; each maps to one HTTP status, and renders
/// as the `error` of the JSON answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No route has this path.
    #[error("no such path: {0}")]
    NoSuchPath(String),
    /// The route exists but not with this method.
    #[error("method {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path asked for.
        path: String,
        /// The methods the route takes, comma-separated.
        allow: &'static str,
    },
    /// A mutating call without the right `Authorization: Bearer` token.
    #[error("this call needs the admin token: send the header \"Authorization: Bearer TOKEN\"")]
    Unauthorized,
    /// A change sent by a browser from a page of another origin.
    #[error("changes from a page of another origin ({0}) are refused")]
    CrossOrigin(String),
    /// The request body is over [`BODY_LIMIT`].
    #[error("the request body is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body could not be read.
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),
    /// A path segment is not valid percent-encoded UTF-8.
    #[error("path segment \"{0}\" is not valid percent-encoded UTF-8")]
    BadPathSegment(String),
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object, got {0}")]
    NotAnObject(String),
    /// The body has a field the call does not take.
    #[error("unknown field \"{field}\" (expected {expected})")]
    UnknownField {
        /// The field given.
        field: String,
        /// The fields the call takes, in words.
        expected: &'static str,
    },
    /// A field the call needs is missing.
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field \"{field}\": expected {expected}, got {value}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be, in words.
        expected: &'static str,
        /// The value given, as JSON.
        value: String,
    },
    /// A weight out of range.
    #[error("field \"weight\": {value} is out of range (expected 1 to {max})")]
    WeightOutOfRange {
        /// The value given, as JSON.
        value: String,
        /// The largest weight allowed.
        max: u32,
    },
    /// A state a PATCH cannot set.
    #[error(
        "field \"state\": \"{0}\" is not a state that can be set (expected \"up\" or \"draining\")"
    )]
    BadState(String),
    /// A PATCH with nothing to change.
    #[error("nothing to change: give \"weight\", \"state\" or both")]
    NothingToChange,
    /// A backend address that does not parse or resolve.
    #[error("field \"address\": \"{value}\": {reason}")]
    BadAddress {
        /// The address given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A POST of a backend the listener already has.
    #[error("listener \"{listener}\" already has backend \"{address}\"")]
    DuplicateBackend {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
    /// A DELETE that would leave the listener without a backend.
    #[error(
        "backend \"{address}\" is the last one of listener \"{listener}\" and cannot be removed"
    )]
    LastBackend {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
    /// No listener has this name.
    #[error("no listener named \"{0}\"")]
    UnknownListener(String),
    /// The listener has no backend with this address.
    #[error("listener \"{listener}\" has no backend \"{address}\"")]
    UnknownBackend {
        /// The listener's name.
        listener: String,
        /// The address asked for.
        address: String,
    },
    /// `/metrics` could not be rendered.
    #[error("cannot render the metrics")]
    Metrics,
}

impl AdminError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NoSuchPath(_)
            | AdminError::UnknownListener(_)
            | AdminError::UnknownBackend { .. } => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            AdminError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Metrics => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::BodyUnreadable(_)
            | AdminError::BadPathSegment(_)
            | AdminError::InvalidJson(_)
            | AdminError::NotAnObject(_)
            | AdminError::UnknownField { .. }
            | AdminError::MissingField(_)
            | AdminError::WrongType { .. }
            | AdminError::WeightOutOfRange { .. }
            | AdminError::BadState(_)
            | AdminError::NothingToChange
            | AdminError::BadAddress { .. }
            | AdminError::DuplicateBackend { .. }
            | AdminError::LastBackend { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The answer: the status, `{"error": "..."}`, and the headers the
    /// status calls for (`Allow` on 405, `WWW-Authenticate` on 401).
    fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        );
        let headers = response.headers_mut();
        match &self {
            AdminError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            AdminError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

// === Routing ===

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/`: the dashboard.
    Dashboard,
    /// `/metrics`.
    Metrics,
    /// `/api/status`.
    Status,
    /// `/api/listeners/{name}/backends`.
    Backends { listener: String },
    /// `/api/listeners/{name}/backends/{address}`.
    Backend { listener: String, address: String },
}

impl Route {
    /// The route of `path`, with its segments percent-decoded.
    fn parse(path: &str) -> Result<Route, AdminError> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        Ok(match segments.as_slice() {
            [""] => Route::Dashboard,
            ["metrics"] => Route::Metrics,
            ["api", "status"] => Route::Status,
            ["api", "listeners", name, "backends"] if !name.is_empty() => Route::Backends {
                listener: decode_segment(name)?,
            },
            ["api", "listeners", name, "backends", address]
                if !name.is_empty() && !address.is_empty() =>
            {
                Route::Backend {
                    listener: decode_segment(name)?,
                    address: decode_segment(address)?,
                }
            }
            _ => return Err(AdminError::NoSuchPath(path.to_string())),
        })
    }

    /// The methods this route takes, as the `Allow` header lists them.
    fn allow(&self) -> &'static str {
        match self {
            Route::Dashboard | Route::Metrics | Route::Status => "GET, HEAD",
            Route::Backends { .. } => "POST",
            Route::Backend { .. } => "GET, HEAD, PATCH, DELETE",
        }
    }
}

/// Answers one admin request. Never fails: every error is a JSON answer.
pub async fn handle(
    admin: Arc<Admin>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = match route(&admin, request).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(method = %method, path = %path, status = err.status().as_u16(), error = %err, "admin request refused");
            err.into_response()
        }
    };
    Ok(response)
}

/// Dispatches a request to its handler.
async fn route(
    admin: &Arc<Admin>,
    request: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let route = Route::parse(request.uri().path())?;
    let method = request.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    match (&route, method) {
        (Route::Dashboard, _) if read => Ok(dashboard::page()),
        (Route::Metrics, _) if read => metrics_response(admin, &request),
        (Route::Status, _) if read => Ok(json_response(StatusCode::OK, &status(admin))),
        (Route::Backend { listener, address }, _) if read => {
            let slot = find_listener(admin, listener)?;
            let state = slot.state.load();
            let backend = find_backend(&state, listener, address)?;
            Ok(json_response(
                StatusCode::OK,
                &backend_json(admin, &state, backend),
            ))
        }
        (Route::Backends { listener }, Method::POST) => {
            authorize(admin, &request)?;
            let body = read_object(request).await?;
            add_backend(admin, listener, &body).await
        }
        (Route::Backend { listener, address }, Method::PATCH) => {
            authorize(admin, &request)?;
            let body = read_object(request).await?;
            change_backend(admin, listener, address, &body)
        }
        (Route::Backend { listener, address }, Method::DELETE) => {
            authorize(admin, &request)?;
            remove_backend(admin, listener, address)
        }
        (route, method) => Err(AdminError::MethodNotAllowed {
            method: method.to_string(),
            path: request.uri().path().to_string(),
            allow: route.allow(),
        }),
    }
}

/// Checks that a mutating call may change things: it does not come from
/// a page of another origin, and it carries the bearer token when one is
/// set (compared in constant time).
fn authorize(admin: &Admin, request: &Request<Incoming>) -> Result<(), AdminError> {
    same_origin(request)?;
    let Some(token) = admin.token.as_deref() else {
        return Ok(());
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| bearer_token(value.as_bytes()));
    match given {
        Some(given) if bool::from(given.ct_eq(token.as_bytes())) => Ok(()),
        _ => Err(AdminError::Unauthorized),
    }
}

/// Refuses a change sent by a browser from a page of another origin.
///
/// A browser sends `Origin` with every cross-origin `POST` (and a form or
/// a `text/plain` fetch needs no preflight), so without this check any web
/// page a user opens could add a backend to an admin port on their
/// machine. Clients such as curl send no `Origin`, and the dashboard's own
/// page sends its own origin, so both pass.
fn same_origin(request: &Request<Incoming>) -> Result<(), AdminError> {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = request
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes);
    let origin_host = origin
        .as_bytes()
        .strip_prefix(b"http://")
        .or_else(|| origin.as_bytes().strip_prefix(b"https://"));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(AdminError::CrossOrigin(
            String::from_utf8_lossy(origin.as_bytes()).into_owned(),
        )),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value (the scheme
/// is case-insensitive, as RFC 7235 says).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value.get(7..))
        .flatten()
        .map(<[u8]>::trim_ascii)
}

/// Reads a body of at most [`BODY_LIMIT`] bytes and parses it as a JSON
/// object.
async fn read_object(request: Request<Incoming>) -> Result<Map<String, Value>, AdminError> {
    let too_large = AdminError::BodyTooLarge { limit: BODY_LIMIT };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large);
    }
    let bytes = match Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large),
        Err(e) => return Err(AdminError::BodyUnreadable(e.to_string())),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(AdminError::NotAnObject(kind_of(&other).to_string())),
        Err(e) => Err(AdminError::InvalidJson(e.to_string())),
    }
}

// === Reading ===

/// `GET /api/status`: every listener and its backends (SPEC 7's shape,
/// extended, never renamed).
#[derive(Debug, Serialize)]
pub struct Status {
    /// The balancer's version.
    pub version: &'static str,
    /// Seconds since the admin server started.
    pub uptime_seconds: f64,
    /// Every listener, in config order.
    pub listeners: Vec<ListenerStatus>,
}

/// One listener in `/api/status`.
#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    /// Its unique name.
    pub name: String,
    /// The address it listens on.
    pub listen: String,
    /// `tcp` (or `http`).
    pub mode: String,
    /// Its balancing algorithm, as the config names it.
    pub algorithm: String,
    /// Client connections open to its backends now.
    pub active_connections: u64,
    /// Client connections ever relayed to its backends.
    pub total_connections: u64,
    /// Clients turned away at accept, by reason (the `reason` label of
    /// `balancer_rejected_connections_total`).
    pub rejected_connections: Map<String, Value>,
    /// Its live backends, in order.
    pub backends: Vec<BackendStatus>,
}

/// One backend in `/api/status` and the answers of the backend calls.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Its address as written: its name everywhere.
    pub address: String,
    /// The address connected to.
    pub resolved: String,
    /// Its relative share of traffic.
    pub weight: u32,
    /// `up`, `down` or `draining`.
    pub state: &'static str,
    /// Whether a DELETE is draining it, to remove it once idle.
    pub removing: bool,
    /// Client connections open to it now.
    pub active_connections: u64,
    /// Client connections ever relayed to it.
    pub total_connections: u64,
    /// Connect attempts to it that failed or timed out.
    pub failures: u64,
    /// Bytes from clients to it.
    pub bytes_in: u64,
    /// Bytes from it to clients.
    pub bytes_out: u64,
    /// Connects to it in progress now.
    pub connecting: u64,
    /// The weight it competes with now: less than `weight` while its
    /// slow-start ramp runs.
    pub effective_weight: f64,
    /// Its connect latency (peak EWMA) in milliseconds; `null` before the
    /// first connect.
    pub latency_ms: Option<f64>,
    /// The result of its last active health check: `"ok"`, or the failure
    /// in words; `null` without active checks or before the first one.
    pub last_check: Option<String>,
    /// What its health is made of.
    pub health: HealthStatus,
}

/// The evidence behind a backend's state, in `/api/status`.
#[derive(Debug, Serialize)]
pub struct HealthStatus {
    /// What marked it down (`checks`, `connects`, `operator`); `null`
    /// unless it is down.
    pub down_cause: Option<&'static str>,
    /// Active checks passed in a row.
    pub check_successes: u32,
    /// Active checks failed in a row.
    pub check_failures: u32,
    /// Real connects failed in a row.
    pub connect_failures: u32,
    /// The last failure of a check or connect, in words.
    pub last_error: Option<String>,
    /// The last change of state, if any.
    pub last_change: Option<StateChange>,
}

/// A change of a backend's state.
#[derive(Debug, Serialize)]
pub struct StateChange {
    /// How long ago, in seconds.
    pub seconds_ago: f64,
    /// Why, in words.
    pub reason: String,
}

/// The status of every listener, read now.
pub fn status(admin: &Admin) -> Status {
    let listeners = admin
        .registry
        .listeners()
        .iter()
        .map(|slot| listener_status(admin, slot))
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: admin.started.elapsed().as_secs_f64(),
        listeners,
    }
}

fn listener_status(admin: &Admin, slot: &ListenerSlot) -> ListenerStatus {
    let state = slot.state.load();
    let backends: Vec<BackendStatus> = state
        .backends
        .iter()
        .map(|b| backend_json(admin, &state, b))
        .collect();
    let rejected_connections = Rejection::ALL
        .iter()
        .map(|&why| {
            (
                why.label().to_string(),
                Value::from(slot.stats.rejected(why)),
            )
        })
        .collect();
    ListenerStatus {
        name: slot.name.clone(),
        listen: slot.listen.to_string(),
        mode: state.config.mode().to_string(),
        algorithm: state.config.algorithm.to_string(),
        active_connections: backends.iter().map(|b| b.active_connections).sum(),
        total_connections: backends.iter().map(|b| b.total_connections).sum(),
        rejected_connections,
        backends,
    }
}

/// A backend of the listener whose current state is `state`, read now.
fn backend_json(admin: &Admin, state: &ListenerState, backend: &Backend) -> BackendStatus {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &backend.stats;
    let listener = state.config.name.as_str();
    let removing = admin
        .removals()
        .contains(&(listener.to_string(), backend.address.clone()));
    let now = tokio::time::Instant::now();
    let health = backend.health.snapshot();
    let last_check = match (&state.config.health_check, &health) {
        (None, _) => None,
        (Some(_), h) if h.check_successes > 0 => Some("ok".to_string()),
        (Some(_), h) if h.check_failures > 0 => {
            Some(h.last_error.clone().unwrap_or_else(|| "failed".to_string()))
        }
        (Some(_), _) => None,
    };
    // Thousandths of a weight unit, shown: precision loss does not matter.
    let effective_weight = backend.effective_weight() as f64 / 1000.0;
    BackendStatus {
        address: backend.address.clone(),
        resolved: backend.resolved.to_string(),
        weight: backend.weight(),
        state: backend.state().name(),
        removing,
        active_connections: stats.active.load(Relaxed),
        total_connections: stats.total.load(Relaxed),
        failures: stats.connect_failures.load(Relaxed),
        bytes_in: stats.bytes_in.load(Relaxed),
        bytes_out: stats.bytes_out.load(Relaxed),
        connecting: stats.connecting.load(Relaxed),
        effective_weight,
        latency_ms: backend
            .latency
            .get_at(now)
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        last_check,
        health: HealthStatus {
            down_cause: health.down_cause.map(|c| c.name()),
            check_successes: health.check_successes,
            check_failures: health.check_failures,
            connect_failures: health.connect_failures,
            last_error: health.last_error,
            last_change: health.last_change.map(|(at, reason)| StateChange {
                seconds_ago: now.saturating_duration_since(at).as_secs_f64(),
                reason,
            }),
        },
    }
}

/// The answer of a backend call: the backend as `/api/status` shows it,
/// in its listener's current state.
fn backend_answer(
    admin: &Admin,
    status: StatusCode,
    listener: &str,
    backend: &Backend,
) -> Response<Body> {
    let body = match admin.registry.find(listener) {
        Some(slot) => serde_json::to_value(backend_json(admin, &slot.state.load(), backend)),
        None => Ok(Value::Null),
    };
    json_response(status, &body.unwrap_or(Value::Null))
}

/// `GET /metrics`, in the format the client asks for: OpenMetrics when its
/// `Accept` names it (as Prometheus does), else the classic text format.
fn metrics_response(
    admin: &Admin,
    request: &Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    let wants_openmetrics = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let format = if wants_openmetrics {
        metrics::Format::OpenMetrics
    } else {
        metrics::Format::Text
    };
    let text = admin
        .metrics
        .render(format)
        .map_err(|_| AdminError::Metrics)?;
    Ok(response(
        StatusCode::OK,
        format.content_type(),
        Bytes::from(text),
    ))
}

// === Changing ===

/// `POST /api/listeners/{name}/backends`: adds a backend, up, with zeroed
/// counters. Answers 201 with the backend.
async fn add_backend(
    admin: &Admin,
    listener: &str,
    body: &Map<String, Value>,
) -> Result<Response<Body>, AdminError> {
    find_listener(admin, listener)?;
    only_fields(body, &["address", "weight"], "\"address\" and \"weight\"")?;
    let address = match body.get("address") {
        None => return Err(AdminError::MissingField("address")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type("address", "a string \"host:port\"", other)),
    };
    let weight = match body.get("weight") {
        None => crate::config::defaults::WEIGHT,
        Some(value) => weight(value)?,
    };
    let resolved = resolve(&address).await?;
    let spec = BackendSpec {
        address: address.clone(),
        resolved,
        weight,
    };
    let backend = admin
        .registry
        .update(listener, |current| {
            if current.backend(&address).is_some() {
                return Err(AdminError::DuplicateBackend {
                    listener: listener.to_string(),
                    address: address.clone(),
                });
            }
            let backend = Arc::new(Backend::new(&spec));
            let mut backends = current.backends.clone();
            backends.push(Arc::clone(&backend));
            Ok((next_state(current, backends), backend))
        })
        .ok_or_else(|| AdminError::UnknownListener(listener.to_string()))??;
    tracing::info!(listener, backend = %address, weight, "backend added through the admin API");
    let mut answer = backend_answer(admin, StatusCode::CREATED, listener, &backend);
    let location = format!(
        "/api/listeners/{}/backends/{}",
        encode_segment(listener),
        encode_segment(&address)
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        answer.headers_mut().insert(header::LOCATION, value);
    }
    Ok(answer)
}

/// `PATCH /api/listeners/{name}/backends/{address}`: sets its weight and/or
/// its state (`draining` or `up`). Answers 200 with the backend.
fn change_backend(
    admin: &Admin,
    listener: &str,
    address: &str,
    body: &Map<String, Value>,
) -> Result<Response<Body>, AdminError> {
    find_listener(admin, listener)?;
    only_fields(body, &["weight", "state"], "\"weight\" and \"state\"")?;
    let new_weight = body.get("weight").map(weight).transpose()?;
    let new_state = body.get("state").map(settable_state).transpose()?;
    if new_weight.is_none() && new_state.is_none() {
        return Err(AdminError::NothingToChange);
    }
    let backend = admin
        .registry
        .update(listener, |current| {
            let backend = Arc::clone(find_backend(current, listener, address)?);
            if let Some(weight) = new_weight {
                backend.set_weight(weight);
            }
            if let Some(state) = new_state {
                backend.set_state(state);
            }
            Ok((next_state(current, current.backends.clone()), backend))
        })
        .ok_or_else(|| AdminError::UnknownListener(listener.to_string()))??;
    tracing::info!(
        listener,
        backend = address,
        weight = backend.weight(),
        state = backend.state().name(),
        "backend changed through the admin API"
    );
    Ok(backend_answer(admin, StatusCode::OK, listener, &backend))
}

/// `DELETE /api/listeners/{name}/backends/{address}`: drains the backend
/// (no new connections, open ones finish) and removes it once idle, in a
/// tracked task. Answers 202 with the backend, draining. A PATCH back to
/// `up` before it is removed cancels the removal.
fn remove_backend(
    admin: &Arc<Admin>,
    listener: &str,
    address: &str,
) -> Result<Response<Body>, AdminError> {
    let key = (listener.to_string(), address.to_string());
    let (backend, started) = admin
        .registry
        .update(listener, |current| {
            let backend = Arc::clone(find_backend(current, listener, address)?);
            let mut removals = admin.removals();
            let staying = current
                .backends
                .iter()
                .filter(|b| !Arc::ptr_eq(b, &backend))
                .filter(|b| !removals.contains(&(listener.to_string(), b.address.clone())))
                .count();
            if staying == 0 {
                return Err(AdminError::LastBackend {
                    listener: listener.to_string(),
                    address: address.to_string(),
                });
            }
            backend.set_state(BackendState::Draining);
            let started = removals.insert(key.clone());
            Ok((
                next_state(current, current.backends.clone()),
                (backend, started),
            ))
        })
        .ok_or_else(|| AdminError::UnknownListener(listener.to_string()))??;
    if started {
        tracing::info!(
            listener,
            backend = address,
            "backend draining through the admin API; removed once idle"
        );
        admin.tasks.spawn(remove_when_idle(
            Arc::clone(admin),
            key,
            Arc::clone(&backend),
        ));
    }
    Ok(backend_answer(
        admin,
        StatusCode::ACCEPTED,
        listener,
        &backend,
    ))
}

/// Waits until `backend` has no open connection, then removes it from its
/// listener. Gives up when the backend stops draining (a PATCH to `up`),
/// or when the admin server stops.
async fn remove_when_idle(admin: Arc<Admin>, key: (String, String), backend: Arc<Backend>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (listener, address) = (&key.0, &key.1);
    let mut poll = tokio::time::interval(REMOVAL_POLL);
    loop {
        tokio::select! {
            () = admin.stop.cancelled() => return,
            _ = poll.tick() => {}
        }
        if backend.state() != BackendState::Draining || backend.stats.active.load(Relaxed) == 0 {
            break;
        }
    }
    // Checked again under the writer lock: a PATCH to `up` may have come
    // between the poll and here.
    let removed = admin.registry.update(listener, |current| {
        if backend.state() != BackendState::Draining {
            return Err(());
        }
        let backends = current
            .backends
            .iter()
            .filter(|b| !Arc::ptr_eq(b, &backend))
            .cloned()
            .collect();
        Ok((next_state(current, backends), ()))
    });
    admin.removals().remove(&key);
    match removed {
        Some(Ok(())) => {
            tracing::info!(listener = %listener, backend = %address, "backend removed through the admin API")
        }
        Some(Err(())) => {
            tracing::info!(listener = %listener, backend = %address, "backend removal cancelled: it is no longer draining")
        }
        None => {}
    }
}

/// The listener's next state: same config, these backends, a new balancer.
fn next_state(current: &ListenerState, backends: Vec<Arc<Backend>>) -> ListenerState {
    ListenerState::with_backends(current.config.clone(), backends)
}

// === Checking values ===

fn find_listener(admin: &Admin, name: &str) -> Result<Arc<ListenerSlot>, AdminError> {
    admin
        .registry
        .find(name)
        .ok_or_else(|| AdminError::UnknownListener(name.to_string()))
}

fn find_backend<'a>(
    state: &'a ListenerState,
    listener: &str,
    address: &str,
) -> Result<&'a Arc<Backend>, AdminError> {
    state
        .backend(address)
        .ok_or_else(|| AdminError::UnknownBackend {
            listener: listener.to_string(),
            address: address.to_string(),
        })
}

/// Refuses fields not in `allowed`.
fn only_fields(
    body: &Map<String, Value>,
    allowed: &[&str],
    expected: &'static str,
) -> Result<(), AdminError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(field) => Err(AdminError::UnknownField {
            field: field.clone(),
            expected,
        }),
        None => Ok(()),
    }
}

/// A weight: an integer from 1 to [`MAX_WEIGHT`].
fn weight(value: &Value) -> Result<u32, AdminError> {
    let Value::Number(number) = value else {
        return Err(wrong_type("weight", "an integer", value));
    };
    if let Some(n) = number.as_u64() {
        return u32::try_from(n)
            .ok()
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
            .ok_or_else(|| AdminError::WeightOutOfRange {
                value: value.to_string(),
                max: MAX_WEIGHT,
            });
    }
    if number.is_i64() {
        return Err(AdminError::WeightOutOfRange {
            value: value.to_string(),
            max: MAX_WEIGHT,
        });
    }
    Err(wrong_type("weight", "an integer", value))
}

/// A state a PATCH may set.
fn settable_state(value: &Value) -> Result<BackendState, AdminError> {
    match value {
        Value::String(s) if s == "up" => Ok(BackendState::Up),
        Value::String(s) if s == "draining" => Ok(BackendState::Draining),
        Value::String(s) => Err(AdminError::BadState(s.clone())),
        other => Err(wrong_type("state", "\"up\" or \"draining\"", other)),
    }
}

fn wrong_type(field: &'static str, expected: &'static str, value: &Value) -> AdminError {
    AdminError::WrongType {
        field,
        expected,
        value: value.to_string(),
    }
}

/// A JSON value's kind, in words.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `host:port` or `[ipv6]:port` and resolves the host (the first
/// address it resolves to is the one connected to, as at config load).
async fn resolve(address: &str) -> Result<SocketAddr, AdminError> {
    let bad = |reason: &str| AdminError::BadAddress {
        value: address.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(bad("port 0 cannot be connected to"))
        } else {
            Ok(addr)
        };
    }
    let (host, port) = split_host_port(address).map_err(&bad)?;
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)));
    match lookup.await {
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| bad("the host name resolves to no address")),
        Ok(Err(e)) => Err(bad(&format!(
            "cannot resolve the host name: {}",
            crate::net::io_reason(&e)
        ))),
        Err(_) => Err(bad("resolving the host name timed out")),
    }
}

/// Splits `host:port` (a host name: IP literals were parsed before).
fn split_host_port(address: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or("expected host:port or [ipv6]:port")?;
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.starts_with('[') || host.contains(':') {
        return Err("an IPv6 address must be written [ipv6]:port");
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !host.chars().all(valid) {
        return Err("the host is not a valid host name");
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to"),
        Ok(port) => Ok((host, port)),
        Err(_) => Err("the port is not a number from 1 to 65535"),
    }
}

/// Decodes a percent-encoded path segment.
fn decode_segment(segment: &str) -> Result<String, AdminError> {
    let bad = || AdminError::BadPathSegment(segment.to_string());
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Percent-encodes a path segment (keeping `:`, common in addresses).
fn encode_segment(segment: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

// === Answers ===

/// An answer with a body of `content_type`, never cached (it is live).
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON answer.
fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serializing these plain structs cannot fail; an empty object is a
    // safe answer should it ever.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(status, "application/json", Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_their_segments() {
        assert_eq!(Route::parse("/").ok(), Some(Route::Dashboard));
        assert_eq!(Route::parse("/metrics").ok(), Some(Route::Metrics));
        assert_eq!(Route::parse("/api/status").ok(), Some(Route::Status));
        assert_eq!(
            Route::parse("/api/listeners/web/backends/%5B%3A%3A1%5D:8080").ok(),
            Some(Route::Backend {
                listener: "web".into(),
                address: "[::1]:8080".into()
            })
        );
        assert!(matches!(
            Route::parse("/api/status/"),
            Err(AdminError::NoSuchPath(_))
        ));
        assert!(matches!(
            Route::parse("/api/listeners//backends"),
            Err(AdminError::NoSuchPath(_))
        ));
        assert!(matches!(
            Route::parse("/api/listeners/%zz/backends"),
            Err(AdminError::BadPathSegment(_))
        ));
        assert!(matches!(
            Route::parse("/api/listeners/%ff/backends"),
            Err(AdminError::BadPathSegment(_))
        ));
    }

    #[test]
    fn encoded_segments_decode_back() {
        for s in ["127.0.0.1:8080", "[::1]:80", "a b/c%d", "ünï"] {
            assert_eq!(decode_segment(&encode_segment(s)).ok().as_deref(), Some(s));
        }
    }

    #[test]
    fn bearer_tokens_are_read_with_any_scheme_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn weights_must_be_integers_in_range() {
        assert_eq!(weight(&serde_json::json!(3)).ok(), Some(3));
        assert_eq!(weight(&serde_json::json!(10_000)).ok(), Some(10_000));
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(10_001),
        ] {
            assert!(
                matches!(weight(&bad), Err(AdminError::WeightOutOfRange { .. })),
                "{bad}"
            );
        }
        for bad in [
            serde_json::json!(1.5),
            serde_json::json!("2"),
            serde_json::json!(null),
        ] {
            assert!(
                matches!(weight(&bad), Err(AdminError::WrongType { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_port_needs_a_host_and_a_port() {
        assert_eq!(split_host_port("localhost:80"), Ok(("localhost", 80)));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("localhost:0").is_err());
        assert!(split_host_port("localhost:http").is_err());
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("bad host:80").is_err());
    }
}
