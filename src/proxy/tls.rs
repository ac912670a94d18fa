//! A tcp listener's connection over TLS: as a cleartext one (see
//! [`super::handle`]), with the handshake between the PROXY protocol header
//! and the backend, as HAProxy orders them: a balancer in front sends its
//! header in cleartext before the client's TLS bytes. The backend is
//! connected only once the handshake is done, so a client that never
//! completes one costs no backend connection; the decrypted bytes are then
//! relayed on the copy path.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Arrival, Ended, arrive, ended, ended_early, reach, relay_options, tcp};
use crate::state::{ListenerSlot, Snapshot};

/// Serves one admitted client of a listener with TLS, as
/// [`super::handle`] serves a cleartext one. A failed handshake is counted
/// (by outcome, in the listener's stats) and logged at debug; it writes no
/// access log line, as a client turned away at accept does not.
pub(super) async fn handle(
    mut client: TcpStream,
    peer: &mut SocketAddr,
    slot: &Arc<ListenerSlot>,
    state: Arc<Snapshot>,
    close: CancellationToken,
) -> Option<Ended> {
    let tls = state.config.tls.as_ref()?;
    let _ = client.set_nodelay(true);
    let arrival = match arrive(&mut client, *peer, slot, &state).await {
        Ok(arrival) => arrival,
        Err(not_opened) => return ended_early(not_opened, peer),
    };
    *peer = arrival.client;
    let destination = client.local_addr().ok();
    let handshake = crate::tls::accept(tls, client, &arrival.early, &slot.stats.tls_handshakes);
    let client = tokio::select! {
        done = handshake => match done {
            Ok(client) => client,
            Err(e) => {
                let result = e.outcome.label();
                tracing::debug!(listener = %slot.name, client = %peer, result, error = %e, "TLS handshake failed");
                return None;
            }
        },
        () = close.cancelled() => return None,
    };
    // The early bytes were the start of the handshake: none are the
    // backend's.
    let arrival = Arrival {
        client: *peer,
        early: Vec::new(),
    };
    let (backend, guard, opening) = match reach(arrival, destination, slot, &state, &close).await {
        Ok(reached) => reached,
        Err(not_opened) => return ended_early(not_opened, peer),
    };
    tracing::debug!(listener = %state.config.name, client = %peer, backend = %guard.backend().address, "connected over TLS");
    let options = relay_options(&state);
    let stats = &guard.backend().stats;
    let relayed = tcp::relay(client, backend, &options, stats, &close, opening.moved);
    let (outcome, moved) = relayed.await;
    Some(ended(&state, *peer, guard, outcome, moved))
}
