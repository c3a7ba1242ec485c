//! sseloop: a Server-Sent Events server on one single-threaded mio poll loop
//! that writes every event to the socket the moment it is published.
//!
//! # Architecture
//!
//! One thread runs one [`mio::Poll`]. The listener, every connection and a
//! [`mio::Waker`] are registered with it. A request is parsed with `httparse`
//! straight from a read buffer shared by all connections; a publish encodes
//! its event once into a reference-counted frame ([`sse::Frame`]) that the
//! hub hands to every subscriber's write queue, and each queue is written at
//! once with a vectored write. What the kernel refuses stays queued and is
//! written on writable readiness; past `queue_limit` unsent bytes the
//! subscriber is cut off (it resumes with `Last-Event-ID`). Heartbeats,
//! request timeouts and the shutdown grace are deadlines in one ordered set
//! whose nearest entry is the poll timeout: there is no timer thread, and an
//! idle server does not wake up. Other threads publish through a
//! [`Publisher`]: a bounded channel plus the waker.
//!
//! Modules, each owning one thing:
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`Config`] and its defaults; duration and size values |
//! | `cli` | the command line of the `sseloop` binary |
//! | `server` | the poll loop: poll, listener, connections, hub, deadlines |
//! | `conn` | one connection's states (diagram there) |
//! | `request` | input bytes → requests: the head/body state machine (pure) |
//! | `io` | the one place `io::ErrorKind` is looked at |
//! | `buf` | the write queue of shared frames |
//! | `http` | request heads, routing, chunked bodies, responses (pure) |
//! | `sse` | [`Event`] and its wire encoding (pure) |
//! | `hub` | topics → subscribers, ids, the replay history |
//! | `publisher` | [`Publisher`]: the channel and waker into the loop |
//! | `metrics` | the `/metrics` text (pure) |
//! | `feeds` | `--stdin` and `--demo`: threads that publish |
//! | `fdlimit` | raising the open-file limit |
//!
//! # Example
//!
//! ```no_run
//! use sseloop::{Config, Event, Server};
//!
//! let server = Server::bind(Config::default())?;
//! let publisher = server.publisher();
//! std::thread::spawn(move || {
//!     for percent in (0..=100).step_by(10) {
//!         let event = Event::new(percent.to_string()).with_type("progress").with_topic("job");
//!         if publisher.publish(event).is_err() {
//!             break;
//!         }
//!         std::thread::sleep(std::time::Duration::from_millis(200));
//!     }
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

pub mod buf;
pub mod cli;
pub mod config;
pub mod fdlimit;
pub mod feeds;
pub mod http;
pub mod hub;
pub mod request;
pub mod sse;

mod conn;
mod io;
mod metrics;
mod publisher;
mod server;

pub use config::{Config, Framing};
pub use publisher::{PublishError, Publisher};
pub use server::{Server, Stats};
pub use sse::Event;
