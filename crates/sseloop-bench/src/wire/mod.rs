//! Wire parsing, incremental and allocation-free per delivery: response
//! heads and body framing ([`http`]), then the event stream inside the body
//! ([`sse`]). Bytes pass through as read, in whatever splits the kernel
//! made, so a parser never waits for more than it has.

pub(crate) mod http;
pub(crate) mod sse;
