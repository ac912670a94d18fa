//! `GET /`: the dashboard, one self-contained HTML page (styles and plain
//! JavaScript inline, no CDN, works offline) embedded in the binary with
//! `include_str!`, so there is no build step. It polls `/api/status` once
//! a second and draws, per listener, each backend's state, weight,
//! connections, share of traffic, bytes, failures and latency, and a chart
//! of traffic over the last minutes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// The page, as served.
pub const PAGE: &str = include_str!("assets/dashboard.html");

/// The dashboard's answer.
pub fn page() -> Response<Full<Bytes>> {
    super::body::response(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(PAGE.as_bytes()),
    )
}
