//! The admin API's changes to a fleet listener: written to etcd (one
//! transaction each), not to this instance; every instance, this one
//! included, applies them from its own watch. While the fleet task does
//! not have etcd, nothing is written: a change that reached one instance
//! only would split the fleet.

use super::etcd::{self, Compare, RequestOp, ResponseHeader, TxnRequest};

use super::{Layout, Value, reason};
use crate::backend::BackendState;
use crate::net::Quoted;
use crate::state::fleet::FleetLink;

/// How often a PATCH reads and writes again when the key changed between
/// its read and its write.
const PATCH_ATTEMPTS: usize = 3;

/// Why a change was not written; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// etcd cannot be reached (or the fleet task has lost it).
    #[error(
        "the fleet's etcd cannot be reached ({0}); nothing was changed, so that every \
         instance keeps the same backends: try again once etcd is back"
    )]
    Unavailable(String),
    /// A POST of a backend the fleet has.
    #[error("listener {} already has backend {} in the fleet", Quoted(.listener), Quoted(.address))]
    Exists {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
    /// A PATCH or DELETE of a backend the fleet does not have.
    #[error("listener {} has no backend {} in the fleet", Quoted(.listener), Quoted(.address))]
    Missing {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
    /// A PATCH whose key kept changing under it.
    #[error(
        "backend {} of listener {} kept changing in etcd meanwhile; try again",
        Quoted(.address),
        Quoted(.listener)
    )]
    Busy {
        /// The listener's name.
        listener: String,
        /// The backend's address.
        address: String,
    },
}

/// Adds backend `address` of `listener` at `weight`, up, unless the fleet
/// has it. The etcd revision of the write.
pub async fn add(
    link: &FleetLink,
    listener: &str,
    address: &str,
    weight: u32,
) -> Result<i64, WriteError> {
    connected(link)?;
    let key = Layout::new(&link.settings.prefix).backend(listener, address);
    let value = Value {
        weight,
        state: BackendState::Up,
    };
    let txn = TxnRequest {
        compare: vec![Compare::create_revision_is(key.clone(), 0)],
        success: vec![RequestOp::put(key, value.encode())],
        failure: Vec::new(),
    };
    let done = link.client.clone().txn(txn).await.map_err(unavailable)?;
    if !done.succeeded {
        return Err(WriteError::Exists {
            listener: listener.to_string(),
            address: address.to_string(),
        });
    }
    Ok(ResponseHeader::revision_of(done.header.as_ref()))
}

/// Sets the weight and/or state of backend `address` of `listener` (what
/// is `None` stays). The etcd revision of the write. A value in etcd that
/// does not parse is replaced: its weight counts as 1, its state as up.
pub async fn change(
    link: &FleetLink,
    listener: &str,
    address: &str,
    weight: Option<u32>,
    state: Option<BackendState>,
) -> Result<i64, WriteError> {
    connected(link)?;
    let key = Layout::new(&link.settings.prefix).backend(listener, address);
    let mut client = link.client.clone();
    for _ in 0..PATCH_ATTEMPTS {
        let read = client
            .range(key.clone().into(), false)
            .await
            .map_err(unavailable)?;
        let Some(kv) = read.kvs.first() else {
            return Err(WriteError::Missing {
                listener: listener.to_string(),
                address: address.to_string(),
            });
        };
        let before = Value::parse(&kv.value).unwrap_or(Value {
            weight: 1,
            state: BackendState::Up,
        });
        let after = Value {
            weight: weight.unwrap_or(before.weight),
            state: state.unwrap_or(before.state),
        };
        let txn = TxnRequest {
            compare: vec![Compare::mod_revision_is(key.clone(), kv.mod_revision)],
            success: vec![RequestOp::put(key.clone(), after.encode())],
            failure: Vec::new(),
        };
        let done = client.txn(txn).await.map_err(unavailable)?;
        if done.succeeded {
            return Ok(ResponseHeader::revision_of(done.header.as_ref()));
        }
    }
    Err(WriteError::Busy {
        listener: listener.to_string(),
        address: address.to_string(),
    })
}

/// Deletes backend `address` of `listener`: every instance drains it, then
/// forgets it. The etcd revision of the delete.
pub async fn remove(link: &FleetLink, listener: &str, address: &str) -> Result<i64, WriteError> {
    connected(link)?;
    let key = Layout::new(&link.settings.prefix).backend(listener, address);
    let done = link
        .client
        .clone()
        .delete(key.into())
        .await
        .map_err(unavailable)?;
    if done.deleted == 0 {
        return Err(WriteError::Missing {
            listener: listener.to_string(),
            address: address.to_string(),
        });
    }
    Ok(ResponseHeader::revision_of(done.header.as_ref()))
}

/// Refuses a change while the fleet task does not have etcd: this
/// instance would not apply it until it has.
fn connected(link: &FleetLink) -> Result<(), WriteError> {
    if link.is_connected() {
        return Ok(());
    }
    let why = link
        .status()
        .last_error
        .unwrap_or_else(|| "not connected yet".to_string());
    Err(WriteError::Unavailable(why))
}

fn unavailable(e: etcd::Error) -> WriteError {
    WriteError::Unavailable(reason(&e))
}
