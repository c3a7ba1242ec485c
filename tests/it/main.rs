//! The integration tests: each runs the real `sseloop` binary on a port-0
//! listener and talks to it over raw TCP. One module per area.

mod cli;
mod data;
mod errors;
mod heartbeat;
mod library;
mod nodelay;
mod publish;
mod slow;
mod stream;
mod support;
mod topics;
