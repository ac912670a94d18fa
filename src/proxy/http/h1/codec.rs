//! Parsing request heads, decoding chunked bodies and encoding answer
//! heads and chunks (see the module of `h1`).
