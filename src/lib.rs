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
//! the loop must do next. Every publish, over HTTP on any loop or from a
//! [`Publisher`] on any thread, goes through one door, the hub
//! (`bus::Hub`): it checks the event and hands it to the sequencer behind
//! it, which gives the event its place in one order and its id, encodes it
//! once into a reference-counted frame and hands it to every loop's inbox.
//! Each loop queues a pointer to that frame for each of its subscribers
//! (its topic index says who) and writes each queue at once with a
//! vectored write. What the kernel refuses stays queued and is written on
//! writable readiness; past `queue_limit` unsent bytes the subscriber is
//! cut off (it resumes with `Last-Event-ID` from the loop's copy of the
//! history). Heartbeats, request timeouts and the shutdown grace are
//! deadlines in one ordered set whose nearest entry is the poll timeout:
//! there is no timer thread, and an idle server does not wake up.
//!
//! In process the sequencer is a lock around a counter; in a cluster
//! (`Config::cluster`, `--redis`) it is a Redis stream: each loop stores
//! its publishes there over a Redis connection of its own, registered in
//! the loop's poll like any socket and driven by a RESP codec without I/O;
//! one reader per node (on loop 0) reads the stream and hands each entry,
//! encoded once, to every loop's inbox in stream order, so every node's
//! subscribers get one order, and each loop's history is filled from the
//! stream. The publisher's answer waits until Redis has stored the event,
//! and a loop listens only once its bus has reached Redis and read the
//! history there. `bus::redis` explains the design: ids, epochs, what
//! happens when Redis is away or loses data.
//!
//! ## One event, from its publish to the `writev`
//!
//! An HTTP publish on loop L becomes `Action::Publish` in `app`, and the
//! reactor hands it to `Hub::publish` for its connection (a ticket); a
//! thread's [`Publisher::publish`] hands it to the same door and waits
//! there. In process, `LocalSequencer` numbers the event under its lock
//! (its id, a `bus::id::EventId`, is `urn:sseloop:<run>-<seq>`, or its
//! publisher's), encodes it once and
//! hands the same `Delivery` to every loop's inbox; loop L gets the id
//! back at once, queues the answer, then drains its own inbox, and the
//! other loops are woken through their wakers, once per batch. In a
//! cluster, `RedisSequencer` queues the publish for loop L's Redis
//! connection (a thread's for loop 0's); before L polls again it sends it
//! to the publish script, which adds it to the stream, and Redis's reply
//! becomes the answer (`Message::Confirmed`). On every node, loop 0's
//! reader reads the new entry and hands it, encoded once, to that node's
//! inboxes as above.
//! From the inbox on, every loop does the same: it records the delivery in
//! its history, finds the subscribers of its topics, puts a pointer to the
//! frame on each one's write queue, and writes each queue with one
//! `writev`.
//!
//! ```text
//!  POST /publish on loop L            Publisher::publish, any thread
//!   app: Action::Publish (ticket)       (waits for its answer)
//!              └─────────────┬───────────────┘
//!                            ▼
//!            bus::Hub::publish: check type and topics
//!                            │
//!          in process ───────┴─────── in a cluster
//!              │                           │
//!   LocalSequencer, one lock:     RedisSequencer: queue for loop L's
//!   number (EventId), encode      (a thread's: loop 0's) writer
//!   once (Arc<Frame>); the id          │ EVALSHA publish script
//!   back to L at once                  ▼
//!              │               Redis stream ◄── stored; the reply is
//!              │                    │           L's answer (Confirmed)
//!              │                    ▼ every node
//!              │               loop 0's reader: XREAD, decide, encode once
//!              ▼                    │
//!   Inboxes::hand_out: the same Delivery to every loop's inbox, in one
//!   order; other loops woken by their wakers, once per batch
//!              │
//!              ▼ each loop
//!   Bus::next → History::record → fan_out: topics → each subscriber's
//!   WriteQueue gets a pointer to the frame → flush → writev
//!   (what the kernel refuses waits for writable readiness)
//! ```
//!
//! A connection's life:
//!
//! ```text
//!      accept
//!        │
//!        ▼
//!    Requests ◄──┐  head (→ body) → answer, kept alive; a publish may
//!     │   │ └────┘  wait for the bus's answer before the next request
//!     │   │ GET /events, GET /.well-known/mercure
//!     │   ▼
//!     │  Stream ── events, heartbeats, replay
//!     │   │
//!     ▼   ▼ error, Connection: close, slow-subscriber cut-off, shutdown
//!    Closing ──(queue written, then the peer's EOF or the linger timeout)──► closed
//! ```
//!
//! # Layout
//!
//! Dependencies point down the table and never form a cycle: the reactor
//! uses what is below it; `conn` never sees the poll, the slab or the
//! bus's sockets; `app` decides who may publish and subscribe from what
//! `http` parsed; `http`, `app` and `process` take the lab's pure parts
//! from its crate, never the `lab` module, which ties it to the server;
//! `config`, `http`, `auth` and `topics` use only modules below them (the
//! pure `mercure` among them), and `mercure` only `sse`; `sse`, `net`,
//! `timers` and `metrics` use nothing of the crate.
//!
//! | module | owns |
//! |---|---|
//! | `server` | [`Server`]: binding, putting the hub and loops together, safe defaults |
//! | `reactor` | the poll loop: poll, slab, deadlines; `books`: what it owes (flush lists, backlogs), replays and their budget, polls, the listener, the shutdown; `sockets`: accept, read, flush; `serve`: carrying out requests, fan-out, replay |
//! | [`lab`] | the failure lab (`--lab`, the crate `crates/sseloop-lab`, compiled for size): each classic cause of late events made for real, on a thread of its own, and its terminal client |
//! | `publisher` | [`Publisher`]: other threads' handle: publish through the hub's door, shut down, counters |
//! | `process` | `Shared`: what the loops and handles of one process share (the hub's door, each loop's counters, the connection limit) |
//! | `conn` | one connection over a `net::Transport` (a socket, or an in-memory stream in its tests): its states as enum variants that own their data (`requests`, `stream`); `queue`: the write queue of shared frames |
//! | `request` | input bytes → requests: the head/body state machine (pure) |
//! | `app` | what to answer: request + context → action, and who may publish and subscribe (pure); `app::mercure`: the Mercure hub's subscribe, publish and who may do either |
//! | `topics` | per loop: topic → connections (`/events` topics and Mercure exact matchers), and the Mercure wildcard and URL-pattern subscribers |
//! | `bus` | the seam: `Hub`, the one door every publish goes through, in front of a `Sequencer`; `Bus`, a loop's receiving side; `id`: event ids, epochs, placing a `Last-Event-ID`, `reset`s; `inbox`: every loop's inbox; `history`: a loop's copy of the history; `local`: the in-process sequencer and bus; `resp`: the Redis protocol (pure) |
//! | `bus::redis` | the cluster's hub on a Redis stream: the sequencer and each loop's bus; `scripts`: what is asked of Redis; `epoch`: the epochs a node saw; `writer`: a loop's publishing connection; `reader`: the reader's decisions (pure); `entry`: replies decoded; `conn`: one Redis connection in the loop's poll; `link`: its socket, and `tls`: TLS over it (the cargo feature `tls`, off by default: `rediss://`); `sentinel`: finding and following the primary through Sentinel (pure) |
//! | `metrics` | [`Stats`] and the `/metrics` text |
//! | `config` | [`Config`], its defaults as constants, duration and size values, and `Config::validate`, the rules the binary and the library share; `redis`: the `--redis` URLs (`redis://`, `redis+sentinel://`) |
//! | `http` | heads, routing, chunked bodies, responses, the two pages (pure) |
//! | `auth` | tokens and who receives what: HS256 JWTs verified into Mercure's grants, the private topics, the one rule per delivery (`Audience`) (pure) |
//! | `mercure` | the Mercure protocol's pieces (pure): form parsing, the character rule, URLs and URL Patterns, matchers and their per-loop index, the subscribe query, the form publish, tokens and their carriers |
//! | `timers` | the deadline set and the heartbeat grid |
//! | `net` | every `io::ErrorKind` decision; `Transport`, what a connection reads and writes through; the listeners |
//! | `sse` | [`Event`] and its wire encoding (pure) |
//! | `fdlimit` | raising the open-file limit |
//!
//! The `sseloop` binary (`src/main.rs`) adds the command line (`cli/`),
//! the `--stdin` and `--demo` feeds (`feeds.rs`) and the time on each log
//! line (`logging.rs`).
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
mod mercure;
mod metrics;
mod net;
mod percent;
mod process;
mod publisher;
mod reactor;
mod request;
mod server;
mod sse;
mod timers;
mod topics;

/// The README's Rust code blocks, compiled and run by `cargo test --doc`
/// like any example here, so what a user pastes from "As a library" works.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use config::{Config, Framing};
pub use metrics::{Stats, WriteDelay};
pub use publisher::{PublishError, Publisher};
pub use server::Server;
pub use sse::{Event, MAX_ID_LEN, MAX_TOPIC_LEN, valid_event_type, valid_id, valid_topic};

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

    /// `mercure`: what requests and tokens need of the Mercure hub.
    pub mod mercure {
        pub use crate::mercure::matcher::Patterns;
        pub use crate::mercure::url::Url;

        /// The URL patterns of a loop whose hub is at `hub`.
        pub fn patterns(hub: &str) -> Patterns {
            Patterns::new(Url::parse(hub, None).expect("an absolute URL"))
        }
    }
}
