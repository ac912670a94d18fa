//! The run-time changes of the admin API (SPEC 7): `POST` a backend,
//! `PATCH` its weight or state, `DELETE` it (drain, then remove once
//! idle). A listener whose backends DNS discovery gives refuses them all
//! (409). A body is checked whole before anything changes (a 400 changes
//! nothing); the change itself is one of the named changes of
//! [`state::change`](crate::state::change), the one writer path. Changes
//! last until the next reload or restart.
//!
//! With `[fleet]`, a change is written to etcd instead
//! ([`discovery::fleet::write`](crate::discovery::fleet::write)): every
//! instance applies it from its watch, and it survives restarts. The
//! answer waits (at most [`APPLY_PATIENCE`]) until this instance's own
//! watch has applied the write, so a `GET /api/status` right after shows
//! it; one that waited in vain answers 202 with `"applied": false`.
//! While etcd cannot be reached, changes answer 503.

use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::body::{Body, encode_segment, json_response};
use super::status::backend_answer;
use super::{Admin, AdminError};
use crate::backend::BackendState;
use crate::config::limits::MAX_WEIGHT;
use crate::config::{BackendSpec, defaults};
use crate::discovery::fleet;
use crate::net::addr;
use crate::state::change::{self, BackendChange};
use crate::state::fleet::FleetLink;

/// How long resolving a POSTed backend's host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// With `[fleet]`, how long an answer waits for this instance to apply
/// its write to etcd (it takes milliseconds while the watch is up).
pub const APPLY_PATIENCE: Duration = Duration::from_secs(2);

/// `POST /api/listeners/{name}/backends`: adds a backend, up, with zeroed
/// counters. Answers 201 with the backend and its `Location`.
pub async fn add_backend(
    admin: &Admin,
    listener: &str,
    body: &Map<String, Value>,
) -> Result<Response<Body>, AdminError> {
    // The listener is looked up first, so a POST to an unknown one is a
    // 404 whatever its body, and no name is resolved for nothing.
    found_and_not_discovered(admin, listener)?;
    only_fields(body, &["address", "weight"], "\"address\" and \"weight\"")?;
    let address = match body.get("address") {
        None => return Err(AdminError::MissingField("address")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type("address", "a string \"host:port\"", other)),
    };
    let weight = match body.get("weight") {
        None => defaults::WEIGHT,
        Some(value) => weight(value)?,
    };
    let spec = BackendSpec {
        resolved: resolve(&address).await?,
        address,
        weight,
    };
    if let Some(link) = admin.process.fleet.load_full() {
        let revision = fleet::write::add(&link, listener, &spec.address, weight).await?;
        tracing::info!(listener, backend = %spec.address, weight, revision, "backend added to the fleet through the admin API");
        let mut answer = fleet_answer(
            admin,
            &link,
            revision,
            StatusCode::CREATED,
            listener,
            &spec.address,
        )
        .await;
        set_location(&mut answer, listener, &spec.address);
        return Ok(answer);
    }
    let backend = change::add_backend(&admin.listeners, listener, &spec).await?;
    tracing::info!(listener, backend = %spec.address, weight, "backend added through the admin API");
    let mut answer = backend_answer(admin, StatusCode::CREATED, listener, &backend);
    set_location(&mut answer, listener, &spec.address);
    Ok(answer)
}

/// The `Location` of an added backend.
fn set_location(answer: &mut Response<Body>, listener: &str, address: &str) {
    let location = format!(
        "/api/listeners/{}/backends/{}",
        encode_segment(listener),
        encode_segment(address)
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        answer.headers_mut().insert(header::LOCATION, value);
    }
}

/// The answer to a change written to etcd at `revision`: once this
/// instance has applied it, `status` with the backend as it is here (202
/// with `"removing": true` or `"removed": true` for a DELETE); if it was
/// not applied within [`APPLY_PATIENCE`], 202 with `"applied": false`.
async fn fleet_answer(
    admin: &Admin,
    link: &FleetLink,
    revision: i64,
    status: StatusCode,
    listener: &str,
    address: &str,
) -> Response<Body> {
    if !link.wait_applied(revision, APPLY_PATIENCE).await {
        let note = serde_json::json!({
            "address": address,
            "revision": revision,
            "applied": false,
            "note": "written to etcd; this instance applies it once its watch catches up",
        });
        return json_response(StatusCode::ACCEPTED, &note);
    }
    let backend = admin
        .listeners
        .find(listener)
        .and_then(|slot| slot.snapshot.load().backend(address).cloned());
    match backend {
        Some(backend) => backend_answer(admin, status, listener, &backend),
        // A deleted backend that was idle is gone already.
        None => json_response(
            status,
            &serde_json::json!({ "address": address, "revision": revision, "removed": true }),
        ),
    }
}

/// `PATCH /api/listeners/{name}/backends/{address}`: sets its weight and/or
/// its state (`draining` or `up`). Answers 200 with the backend.
pub async fn change_backend(
    admin: &Admin,
    listener: &str,
    address: &str,
    body: &Map<String, Value>,
) -> Result<Response<Body>, AdminError> {
    found_and_not_discovered(admin, listener)?;
    only_fields(body, &["weight", "state"], "\"weight\" and \"state\"")?;
    let wanted = BackendChange {
        weight: body.get("weight").map(weight).transpose()?,
        state: body.get("state").map(settable_state).transpose()?,
    };
    if wanted == BackendChange::default() {
        return Err(AdminError::NothingToChange);
    }
    if let Some(link) = admin.process.fleet.load_full() {
        let revision =
            fleet::write::change(&link, listener, address, wanted.weight, wanted.state).await?;
        tracing::info!(
            listener,
            backend = address,
            revision,
            "backend changed in the fleet through the admin API"
        );
        return Ok(fleet_answer(admin, &link, revision, StatusCode::OK, listener, address).await);
    }
    let backend = change::change_backend(&admin.listeners, listener, address, wanted).await?;
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
/// (no new connections, open ones finish) and removes it once idle.
/// Answers 202 with the backend, draining. A PATCH back to `up` before it
/// is removed cancels the removal.
pub async fn remove_backend(
    admin: &Admin,
    listener: &str,
    address: &str,
) -> Result<Response<Body>, AdminError> {
    found_and_not_discovered(admin, listener)?;
    if let Some(link) = admin.process.fleet.load_full() {
        let revision = fleet::write::remove(&link, listener, address).await?;
        tracing::info!(
            listener,
            backend = address,
            revision,
            "backend deleted from the fleet through the admin API; every instance drains it"
        );
        return Ok(fleet_answer(
            admin,
            &link,
            revision,
            StatusCode::ACCEPTED,
            listener,
            address,
        )
        .await);
    }
    let backend = change::remove_backend(&admin.listeners, listener, address).await?;
    Ok(backend_answer(
        admin,
        StatusCode::ACCEPTED,
        listener,
        &backend,
    ))
}

/// Refuses a change to an unknown listener (404) or to one whose
/// backends DNS discovery gives (409), before its body is looked at: the
/// state checks both again as it applies the change.
fn found_and_not_discovered(admin: &Admin, listener: &str) -> Result<(), AdminError> {
    let Some(slot) = admin.listeners.find(listener) else {
        return Err(change::ChangeError::UnknownListener(listener.to_string()).into());
    };
    match &slot.snapshot.load().config.discovery {
        Some(discovery) => Err(change::ChangeError::Discovered {
            listener: listener.to_string(),
            dns: discovery.dns.to_string(),
        }
        .into()),
        None => Ok(()),
    }
}

/// A POSTed backend address, parsed with the config's grammar and resolved
/// (the first address a name resolves to is the one connected to, as at
/// config load).
async fn resolve(address: &str) -> Result<std::net::SocketAddr, AdminError> {
    let bad = |reason: String| AdminError::BadAddress {
        value: address.to_string(),
        reason,
    };
    let parsed = addr::backend_address(address).map_err(|e| bad(e.to_string()))?;
    addr::resolve(parsed, RESOLVE_TIMEOUT)
        .await
        .map_err(|e| bad(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
