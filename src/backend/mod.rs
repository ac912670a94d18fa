//! A backend: its address, weight, live state and counters, shared by `Arc`.
//!
//! A `Backend` outlives any one config snapshot: the balancer reads its state
//! to skip backends that cannot take connections, the proxy updates its
//! counters, and (later) health checks and the admin API change its state.

pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::config::BackendSpec;
pub use stats::{ConnectionGuard, Stats};

/// Whether a backend takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes new connections.
    Up,
    /// Marked down (by checks or failures): no new connections.
    Down,
    /// Being taken out: no new connections, open ones finish.
    Draining,
}

impl State {
    /// The word used in logs and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Down,
            2 => State::Draining,
            _ => State::Up,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            State::Up => 0,
            State::Down => 1,
            State::Draining => 2,
        }
    }
}

/// One backend of one listener.
#[derive(Debug)]
pub struct Backend {
    /// The address as written in the config: the backend's name everywhere.
    pub address: String,
    /// The resolved address connected to.
    pub addr: SocketAddr,
    /// Relative share of traffic, at least 1. An atomic so the admin API
    /// can change it on the shared backend (its counters stay); balancers
    /// read it when they are built, so a change is published by building a
    /// new listener state (`runtime::state::Registry::update`).
    weight: AtomicU32,
    /// Live counters.
    pub stats: Stats,
    /// `State` as a byte, so every worker reads it without a lock.
    state: AtomicU8,
}

impl Backend {
    /// A new backend, up, with zeroed counters.
    pub fn new(spec: &BackendSpec) -> Backend {
        Backend {
            address: spec.address.clone(),
            addr: spec.resolved,
            weight: AtomicU32::new(spec.weight),
            stats: Stats::default(),
            state: AtomicU8::new(State::Up.to_u8()),
        }
    }

    /// The current weight (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the weight. Callers publish a new listener state afterwards so
    /// the balancer is rebuilt with it (`Registry::update`).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state; returns the previous one.
    pub fn set_state(&self, state: State) -> State {
        State::from_u8(self.state.swap(state.to_u8(), Ordering::Relaxed))
    }

    /// Whether the balancer may hand this backend a new connection.
    pub fn is_available(&self) -> bool {
        self.state() == State::Up
    }
}
