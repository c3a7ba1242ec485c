//! sseloop: a Server-Sent Events server on single-threaded mio poll loops
//! that writes every event to the socket the moment it is published.
//!
//! # Architecture
//!
//! A loop is one thread with one [`mio::Poll`]: the listener, every
//! connection and a [`mio::Waker`] are registered with it, and it alone
//! does their I/O. A request is parsed with `httparse` straight from a read
//! buffer shared by all connections; what to answer is a pure function of
//! the request (`app`); the connection's state machine (`conn`) says what
//! the loop must do next. A publish goes to the bus, the seam behind which
//! the hub is shared: the in-process sequencer numbers the event, encodes
//! it once into a reference-counted frame and hands it to every loop's
//! inbox in one order; each loop queues a pointer to that frame for each of
//! its subscribers (its topic index says who) and writes each queue at once
//! with a vectored write. What the kernel refuses stays queued and is
//! written on writable readiness; past `queue_limit` unsent bytes the
//! subscriber is cut off (it resumes with `Last-Event-ID` from the loop's
//! copy of the history). Heartbeats, request timeouts and the shutdown
//! grace are deadlines in one ordered set whose nearest entry is the poll
//! timeout: there is no timer thread, and an idle server does not wake up.
//! Other threads publish through a [`Publisher`], which goes through the
//! same sequencer and wakes the loops.
//!
//! In a cluster (`Config::cluster`, `--redis`) the hub is a Redis stream
//! instead: each loop's bus stores its publishes there over a Redis
//! connection of its own, registered in the loop's poll like any socket
//! and driven by a RESP codec without I/O; one reader per node (on loop 0)
//! reads the stream and hands each entry, encoded once, to every loop's
//! inbox in stream order, so every node's subscribers get one order, and
//! each loop's history is filled from the stream. The publisher's answer
//! waits until Redis has stored the event. `bus::redis` explains the
//! design: ids, epochs, what happens when Redis is away or loses data.
//!
//! A connection's life:
//!
//! ```text
//!      accept
//!        │
//!        ▼
//!    Requests ◄──┐  head (→ body) → answer, kept alive; a publish may
//!     │   │ └────┘  wait for the bus's answer before the next request
//!     │   │ GET /events
//!     │   ▼
//!     │  Stream ── events, heartbeats, replay
//!     │   │
//!     ▼   ▼ error, Connection: close, slow-subscriber cut-off, shutdown
//!    Closing ──(queue written, then the peer's EOF or the linger timeout)──► closed
//! ```
//!
//! # Layout
//!
//! Dependencies point down the table: the reactor uses everything below
//! it; `conn` never sees the poll, the slab or the bus; `config` uses
//! nothing of the crate, and the pure `sse`, `http` and `auth` little more
//! (`http` asks `auth` about tokens).
//!
//! | module | owns |
//! |---|---|
//! | `server` | [`Server`]: binding, putting the hub and loop together, safe defaults |
//! | `reactor` | the poll loop: poll, listener, slab, budgets, flush lists; `serve`: carrying out requests, fan-out, replay |
//! | `app` | what to answer: request + context → action (pure) |
//! | `auth` | private topics: HS256 JWTs → grants, who may subscribe to, receive and publish what (pure) |
//! | `conn` | one connection: its states as enum variants that own their data; `queue`: the write queue of shared frames |
//! | `topics` | per loop: topic → connections |
//! | `bus` | the seam: ids, one order, the history (`history`); `local`: the in-process sequencer and inboxes; `redis`: the cluster's hub on a Redis stream (`redis::conn`: one Redis connection in the loop's poll); `resp`: the Redis protocol (pure) |
//! | `publisher` | [`Publisher`]: the door from other threads; counters of every loop |
//! | `timers` | the deadline set and the heartbeat grid |
//! | `net` | every `io::ErrorKind` decision |
//! | `request` | input bytes → requests: the head/body state machine (pure) |
//! | `http` | heads, routing, chunked bodies, responses (pure) |
//! | `sse` | [`Event`] and its wire encoding (pure) |
//! | `metrics` | [`Stats`] and the `/metrics` text |
//! | `config` | [`Config`], its defaults as constants, duration and size values |
//! | `fdlimit` | raising the open-file limit |
//! | [`lab`] | the failure lab (`--lab`): each classic cause of late events made for real, on a thread of its own, and its terminal client |
//!
//! The `sseloop` binary (`src/main.rs`) adds the command line (`cli.rs`)
//! and the `--stdin` and `--demo` feeds (`feeds.rs`).
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use sseloop::{Config, Event, Server};
//!
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..Config::default()
//! };
//! let server = Server::bind(config)?;
//! let addr = server.local_addr();
//! let publisher = server.publisher(); // Clone + Send
//! let serving = std::thread::spawn(move || server.run());
//!
//! // A subscriber of topic `job`, over plain HTTP.
//! let mut stream = std::net::TcpStream::connect(addr)?;
//! stream.write_all(b"GET /events?topic=job HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
//! let mut seen = Vec::new();
//! let mut buf = [0; 512];
//! while !seen.ends_with(b": connected\n") {
//!     let n = stream.read(&mut buf)?;
//!     seen.extend_from_slice(&buf[..n]);
//! }
//!
//! let id = publisher.publish(Event::new("50").with_type("progress").with_topic("job"))?;
//! while !String::from_utf8_lossy(&seen).contains("data: 50\n\n") {
//!     let n = stream.read(&mut buf)?;
//!     seen.extend_from_slice(&buf[..n]);
//! }
//! assert!(String::from_utf8_lossy(&seen).contains(&format!("id: {id}\nevent: progress\n")));
//!
//! publisher.shutdown();
//! serving.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod lab;

mod app;
mod auth;
mod bus;
mod conn;
mod fdlimit;
mod http;
mod metrics;
mod net;
mod process;
mod publisher;
mod reactor;
mod request;
mod server;
mod sse;
mod timers;
mod topics;

pub use config::{Config, Framing};
pub use metrics::{Stats, WriteDelay};
pub use publisher::{PublishError, Publisher};
pub use server::Server;
pub use sse::{Event, MAX_TOPIC_LEN, valid_event_type, valid_topic};

/// Internals the benches, fuzz targets and tests reach into. Not a
/// supported API: it changes without notice.
#[doc(hidden)]
pub mod _internals {
    pub use crate::conn::WriteQueue;
    pub use crate::sse::Frame;

    /// `http`: heads, routes, chunked bodies, responses.
    pub mod http {
        pub use crate::http::*;
    }

    /// `request`: the request reader.
    pub mod request {
        pub use crate::request::*;
    }

    /// `auth`: tokens, grants and the private-topic policy.
    pub mod auth {
        pub use crate::auth::*;
    }

    /// `resp`: the Redis protocol of the cluster bus.
    pub mod resp {
        pub use crate::bus::resp::*;
    }
}
