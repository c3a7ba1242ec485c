//! The integration tests: each runs the real `sseloop` binary on a port-0
//! listener and talks to it over raw TCP. One module per area.

mod bench;
mod browsers;
mod cli;
mod clients;
mod cluster;
mod corpus;
mod data;
mod errors;
mod fanout;
mod feeds;
mod heartbeat;
mod hostile;
mod idle;
mod inspector;
mod library;
mod limits;
mod loops;
mod metrics;
mod nginx;
mod nodelay;
mod page;
mod publish;
mod real;
mod replay;
mod security;
mod shutdown;
mod slow;
mod storm;
mod stream;
mod support;
mod topics;
mod trace;
mod wire_property;
