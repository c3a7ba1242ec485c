//! The integration tests: each runs the real `sseloop` binary on a port-0
//! listener and talks to it over raw TCP. One module per area.

mod bench;
mod bounds;
mod browser_threats;
mod browsers;
mod cli;
mod clients;
mod cluster;
mod cluster_defects;
mod corpus;
mod data;
mod errors;
mod failover;
mod fanout;
mod feeds;
mod heartbeat;
mod hostile;
mod idle;
mod inspector;
mod lab;
mod library;
mod limits;
mod loops;
mod mercure;
mod metrics;
mod nginx;
mod nodelay;
mod page;
mod private;
mod publish;
mod real;
mod replay;
mod security;
mod service;
mod shutdown;
mod slow;
mod storm;
mod stream;
mod support;
#[cfg(feature = "tls")]
mod tls;
mod topics;
mod trace;
mod wire_property;
