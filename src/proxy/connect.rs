//! Connect to a backend.
