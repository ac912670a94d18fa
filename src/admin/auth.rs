//! Who may ask and who may change things: a request must name an allowed
//! `Host` (against DNS rebinding), and a mutating call must not come from
//! a page of another origin and must carry the bearer token when one is
//! set.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use subtle::ConstantTimeEq;

use super::{Admin, AdminError};

/// Refuses a request whose `Host` names neither an IP address,
/// `localhost`, nor a name of `[admin] allowed_hosts`.
///
/// DNS rebinding: a web page on `rebind.example` makes its name resolve to
/// 127.0.0.1, then its scripts reach the admin port as a same-origin site
/// (so the origin check passes), sending `Host: rebind.example:9000`.
/// Only a name can be rebound, so an IP literal is always fine; names must
/// be listed. A request without `Host` (HTTP/1.0 tools) comes from no
/// browser and passes.
pub(super) fn allowed_host(admin: &Admin, request: &Request<Incoming>) -> Result<(), AdminError> {
    let Some(host) = request.headers().get(header::HOST) else {
        return Ok(());
    };
    let refused =
        || AdminError::HostNotAllowed(String::from_utf8_lossy(host.as_bytes()).into_owned());
    let host = host.to_str().map_err(|_| refused())?;
    let name = host_name(host);
    let allowed = name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || admin
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name));
    if allowed { Ok(()) } else { Err(refused()) }
}

/// The name part of a `Host` value: without its port, an IPv6 literal
/// without its brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(inside, _)| inside);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

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
    use super::{bearer_token, host_name};

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("localhost:9000"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:9000"), "::1");
        assert_eq!(host_name("rebind.example:9000"), "rebind.example");
    }

    #[test]
    fn bearer_tokens_are_read_with_any_scheme_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
