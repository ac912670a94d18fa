//! Relay bytes.
