//! Who may change things: a mutating call must not come from a page of
//! another origin, and must carry the bearer token when one is set.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use subtle::ConstantTimeEq;

use super::{Admin, AdminError};

/// Checks that a mutating call may change things: it does not come from
/// a page of another origin, and it carries the bearer token when one is
/// set (compared in constant time).
pub(super) fn authorize(admin: &Admin, request: &Request<Incoming>) -> Result<(), AdminError> {
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

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens_are_read_with_any_scheme_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
