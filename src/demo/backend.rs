//! `balancer backend`: a small demo HTTP server. (Stub.)
