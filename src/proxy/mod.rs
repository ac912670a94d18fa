//! The data plane of a tcp listener: connect to a backend ([`connect`]),
//! then relay bytes both ways ([`tcp`]).

pub mod connect;
pub mod tcp;
