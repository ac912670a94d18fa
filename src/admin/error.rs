//! Why an admin request failed: one [`AdminError`] per cause, each with
//! its HTTP status, answered as `{"error": "..."}` in the project's voice.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::body::{Body, json_response};
use crate::discovery::fleet::write::WriteError;
use crate::state::change::ChangeError;

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
    /// A `Host` that is not an IP address, `localhost` or an allowed name.
    #[error(
        "host \"{0}\" is not allowed (use an IP address or localhost, or add the name to [admin] allowed_hosts)"
    )]
    HostNotAllowed(String),
    /// A change sent by a browser from a page of another origin.
    #[error("changes from a page of another origin ({0}) are refused")]
    CrossOrigin(String),
    /// The request body is over [`BODY_LIMIT`](super::body::BODY_LIMIT).
    #[error("the request body is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {}", crate::net::format_duration(*.0))]
    BodyTimeout(std::time::Duration),
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
    /// A change the live state refused (an unknown listener or backend, a
    /// duplicate, the last backend), in its words.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// A change to a fleet listener that etcd refused or could not take.
    #[error(transparent)]
    Fleet(#[from] WriteError),
    /// A reload that changed nothing: every problem, one per line.
    #[error("{0}")]
    ReloadFailed(String),
    /// `/metrics` could not be rendered.
    #[error("cannot render the metrics")]
    Metrics,
}

impl AdminError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NoSuchPath(_)
            | AdminError::Fleet(WriteError::Missing { .. })
            | AdminError::Change(
                ChangeError::UnknownListener(_) | ChangeError::UnknownBackend { .. },
            ) => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::CrossOrigin(_) | AdminError::HostNotAllowed(_) => StatusCode::FORBIDDEN,
            AdminError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AdminError::Metrics => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Change(ChangeError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Change(ChangeError::Discovered { .. })
            | AdminError::Fleet(WriteError::Exists { .. } | WriteError::Busy { .. }) => {
                StatusCode::CONFLICT
            }
            AdminError::Fleet(WriteError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
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
            | AdminError::ReloadFailed(_)
            | AdminError::BadAddress { .. }
            | AdminError::Change(
                ChangeError::DuplicateBackend { .. } | ChangeError::LastBackend { .. },
            ) => StatusCode::BAD_REQUEST,
        }
    }

    /// The answer: the status, `{"error": "..."}`, and the headers the
    /// status calls for (`Allow` on 405, `WWW-Authenticate` on 401).
    pub(super) fn into_response(self) -> Response<Body> {
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
            // The rest of the body was not read: the connection cannot
            // carry another request.
            AdminError::BodyTimeout(_) | AdminError::BodyTooLarge { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
