//! The bodies of admin requests and answers: a JSON object read with a
//! size limit, answers in JSON or another content type (never cached: they
//! are live), and the percent-encoding of path segments both ways.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::AdminError;
use crate::net::http_server::percent_decode;

/// The largest request body accepted, in bytes: a backend change is a few
/// dozen bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// How long a request body may take to arrive, once its head has (the
/// head has its own timeout in the server): a client that announces a
/// body and stalls is answered 408 and closed, not waited for.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body every answer has.
pub type Body = Full<Bytes>;

/// Reads a body of at most [`BODY_LIMIT`] bytes and parses it as a JSON
/// object.
pub(super) async fn read_object(
    request: Request<Incoming>,
) -> Result<Map<String, Value>, AdminError> {
    let too_large = AdminError::BodyTooLarge { limit: BODY_LIMIT };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large);
    }
    let collect = Limited::new(request.into_body(), BODY_LIMIT).collect();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => return Err(AdminError::BodyTimeout(BODY_TIMEOUT)),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large),
        Ok(Err(e)) => return Err(AdminError::BodyUnreadable(e.to_string())),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(AdminError::NotAnObject(kind_of(&other).to_string())),
        Err(e) => Err(AdminError::InvalidJson(e.to_string())),
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

/// An answer with a body of `content_type`, never cached (it is live).
pub(super) fn response(
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
pub(super) fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serializing these plain structs cannot fail; an empty object is a
    // safe answer should it ever.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(status, "application/json", Bytes::from(body))
}

/// Decodes a percent-encoded path segment.
pub(super) fn decode_segment(segment: &str) -> Result<String, AdminError> {
    percent_decode(segment).ok_or_else(|| AdminError::BadPathSegment(segment.to_string()))
}

/// Percent-encodes a path segment (keeping `:`, common in addresses).
pub(super) fn encode_segment(segment: &str) -> String {
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
