//! Our own HTTP/1.1 server side for http mode (the client-facing half):
//! a request head parsed with httparse into `http` types, its body
//! framing decided by RFC 9112's rules and SPEC 4's (both Content-Length
//! and Transfer-Encoding is a 400), bodies decoded as they stream, answers
//! encoded, and no buffer held while a kept-alive connection is idle.
//! hyper stays for the backend side.

pub mod codec;
