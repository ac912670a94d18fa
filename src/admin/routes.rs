//! The admin routes (SPEC 7): what each path names, which methods it
//! takes, and the dispatch of a request to its handler. Every failure is
//! answered as a JSON error ([`AdminError`]); nothing here panics on what a
//! client sends.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};

use super::auth::{allowed_host, authorize};
use super::body::{Body, decode_segment, json_response, read_object, response};
use super::{Admin, AdminError, changes, dashboard, metrics, status};

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/`: the dashboard.
    Dashboard,
    /// `/metrics`.
    Metrics,
    /// `/api/status`.
    Status,
    /// `/ready`: 200 while serving, 503 once draining.
    Ready,
    /// `/live`: 200 while the process runs.
    Live,
    /// `/api/reload`: read the config file again.
    Reload,
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
            ["ready"] => Route::Ready,
            ["live"] => Route::Live,
            ["api", "reload"] => Route::Reload,
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
            Route::Dashboard | Route::Metrics | Route::Status | Route::Ready | Route::Live => {
                "GET, HEAD"
            }
            Route::Backends { .. } | Route::Reload => "POST",
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
    // Scrapers and probes may use any name; everything else only allowed ones.
    if !matches!(route, Route::Metrics | Route::Ready | Route::Live) {
        allowed_host(admin, &request)?;
    }
    let method = request.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    match (&route, method) {
        (Route::Dashboard, _) if read => Ok(dashboard::page()),
        (Route::Metrics, _) if read => metrics_response(admin, &request),
        (Route::Status, _) if read => Ok(json_response(StatusCode::OK, &status::all(admin))),
        (Route::Ready, _) if read => Ok(probe(admin.process.is_ready(), "ready", "draining")),
        (Route::Live, _) if read => Ok(probe(true, "live", "")),
        (Route::Backend { listener, address }, _) if read => {
            let backend = status::backend(admin, listener, address)?;
            Ok(json_response(StatusCode::OK, &backend))
        }
        (Route::Reload, Method::POST) => {
            authorize(admin, &request)?;
            match admin.reloads.reload().await {
                Ok(generation) => Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "generation": generation }),
                )),
                Err(problems) => Err(AdminError::ReloadFailed(problems)),
            }
        }
        (Route::Backends { listener }, Method::POST) => {
            authorize(admin, &request)?;
            let body = read_object(request).await?;
            changes::add_backend(admin, listener, &body).await
        }
        (Route::Backend { listener, address }, Method::PATCH) => {
            authorize(admin, &request)?;
            let body = read_object(request).await?;
            changes::change_backend(admin, listener, address, &body).await
        }
        (Route::Backend { listener, address }, Method::DELETE) => {
            authorize(admin, &request)?;
            changes::remove_backend(admin, listener, address).await
        }
        (route, method) => Err(AdminError::MethodNotAllowed {
            method: method.to_string(),
            path: request.uri().path().to_string(),
            allow: route.allow(),
        }),
    }
}

/// A probe's answer: 200 with `yes`, or 503 with `no`, as plain text.
fn probe(ok: bool, yes: &'static str, no: &'static str) -> Response<Body> {
    let (status, text) = if ok {
        (StatusCode::OK, yes)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, no)
    };
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{text}\n")),
    )
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
}
