//! The library API in-process: a `Server` on a port-0 listener run on a
//! thread, fed by a `Publisher` from another thread, and shut down by it
//! (once as a node of a cluster on a real Redis).

use std::thread::{self, JoinHandle};
use std::time::Duration;

use sseloop::{Config, Event, PublishError, Publisher, Server};

use crate::real::redis::{Persistence, Redis};
use crate::support::{
    HttpConn, assert_publish_ok, connect, deadline, id_run, id_seq, publish_request,
};

/// A library server running on its own thread.
struct InProcess {
    addr: std::net::SocketAddr,
    publisher: Publisher,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    fn start() -> InProcess {
        InProcess::start_with(Config::default())
    }

    /// A server of `config` on a port-0 listener.
    fn start_with(config: Config) -> InProcess {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "local_addr reports the real port");
        let publisher = server.publisher();
        let thread = Some(thread::spawn(move || server.run()));
        InProcess {
            addr,
            publisher,
            thread,
        }
    }

    /// Subscribes and reads up to the end of the `: connected` line, so the
    /// subscriber is registered before anything is published.
    fn subscribe(&self, query: &str) -> HttpConn {
        let mut conn = HttpConn::new(connect(self.addr));
        conn.send(format!("GET /events{query} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        conn.take_raw_until(b": connected\n");
        conn
    }

    fn stop(&mut self) -> std::io::Result<()> {
        self.publisher.shutdown();
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("loop thread panicked")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

#[test]
fn publisher_delivers_from_another_thread() {
    let server = InProcess::start();
    let mut sub = server.subscribe("?topic=jobs");
    let publisher = server.publisher.clone();
    let worker = thread::spawn(move || {
        for i in 0..3 {
            let event = Event::new(format!("step {i}\nof 3"))
                .with_type("progress")
                .with_topic("jobs");
            publisher.publish(event).unwrap();
        }
        // Another topic: must not reach this subscriber.
        publisher
            .publish(Event::new("elsewhere").with_topic("other"))
            .unwrap();
        publisher.publish(Event::new("everyone")).unwrap();
    });
    worker.join().unwrap();
    let raw = sub.take_raw_until(b"data: everyone\n\n");
    let text = String::from_utf8(raw).unwrap();
    for i in 0..3 {
        assert!(
            text.contains(&format!("event: progress\ndata: step {i}\ndata: of 3\n\n")),
            "{text:?}"
        );
    }
    assert!(!text.contains("elsewhere"), "{text:?}");
}

#[test]
fn shutdown_ends_streams_cleanly_and_run_returns() {
    let mut server = InProcess::start();
    let mut sub = server.subscribe("");
    server.publisher.publish(Event::new("last words")).unwrap();
    server.stop().expect("run returns Ok after shutdown");
    // The queued event, then the terminating chunk, then the close.
    let raw = sub.take_raw_until(b"0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("data: last words\n\n"), "{text:?}");
    assert!(text.ends_with("\r\n0\r\n\r\n"), "{text:?}");
    sub.expect_closed();
    assert_eq!(
        server.publisher.publish(Event::new("too late")),
        Err(PublishError::Closed)
    );
}

#[test]
fn invalid_event_type_is_refused() {
    let server = InProcess::start();
    let bad = Event::new("x").with_type("a\nb");
    assert_eq!(
        server.publisher.publish(bad),
        Err(PublishError::InvalidType)
    );
}

/// The id `publish` returns is the one subscribers get, and it is of the
/// same run as the ids an HTTP publish answers with.
#[test]
fn publish_returns_the_id_subscribers_get() {
    let server = InProcess::start();
    let mut sub = server.subscribe("?topic=t");
    let id = server
        .publisher
        .publish(Event::new("first").with_topic("t"))
        .unwrap();
    let raw = sub.take_raw_until(b"data: first\n\n");
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.contains(&format!("id: {id}\ndata: first\n")),
        "{text:?}"
    );
    let mut http = HttpConn::new(connect(server.addr));
    http.send(&publish_request("?topic=t", b"second"));
    let answered = assert_publish_ok(&http.read_response(deadline()));
    assert_eq!(id_run(&answered), id_run(&id));
    assert_eq!(id_seq(&answered), id_seq(&id) + 1);
}

/// A topic no subscriber could name is refused as HTTP refuses it, before
/// anything is published.
#[test]
fn topics_follow_the_http_rules() {
    let server = InProcess::start();
    for bad in [
        String::new(),
        "x".repeat(129),
        "line\nbreak".into(),
        "nul\0".into(),
    ] {
        assert_eq!(
            server
                .publisher
                .publish(Event::new("x").with_topic(bad.clone())),
            Err(PublishError::InvalidTopic),
            "{bad:?}"
        );
    }
    let longest = "x".repeat(128);
    assert!(
        server
            .publisher
            .publish(Event::new("x").with_topic(longest))
            .is_ok()
    );
    assert!(sseloop::valid_topic("ok topic") && !sseloop::valid_topic(""));
    assert_eq!(server.publisher.stats().events_published, 1);
}

/// The library, not only the binary, refuses to serve an open publish
/// endpoint to a network, unless told that is wanted.
#[test]
fn binding_off_loopback_needs_a_token_or_the_explicit_flag() {
    let open = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Config::default()
    };
    let err = Server::bind(open.clone()).expect_err("an open publish endpoint on a network");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("anyone could publish"), "{err}");
    let with_token = Config {
        publish_token: Some("t0ken".into()),
        ..open.clone()
    };
    assert!(Server::bind(with_token).is_ok());
    let allowed = Config {
        insecure_open_publish: true,
        ..open
    };
    assert!(Server::bind(allowed).is_ok());
}

/// `Publisher::stats` sums what the server did, as `/metrics` shows it.
#[test]
fn stats_count_what_happened() {
    let server = InProcess::start();
    let mut a = server.subscribe("?topic=s");
    let mut b = server.subscribe("");
    for i in 0..3 {
        server
            .publisher
            .publish(Event::new(format!("e{i}")).with_topic("s"))
            .unwrap();
    }
    server.publisher.publish(Event::new("all")).unwrap();
    a.take_raw_until(b"data: all\n\n");
    b.take_raw_until(b"data: all\n\n");
    let stats = server.publisher.stats();
    assert_eq!(stats.subscribers, 2);
    assert_eq!(stats.events_published, 4);
    assert_eq!(stats.deliveries, 5, "{stats:?}");
    assert!(stats.connections >= 2 && stats.accepted >= 2, "{stats:?}");
    assert!(stats.bytes_written > 0);
    assert_eq!(stats.write_delay.count(), 0, "nothing waited on loopback");
}

#[test]
fn idle_server_shuts_down_promptly() {
    let mut server = InProcess::start();
    let started = std::time::Instant::now();
    server.stop().unwrap();
    // No connections: nothing to wait for, so no grace period is spent.
    assert!(started.elapsed() < Duration::from_millis(900));
}

/// Regression: in a cluster, a publish whose key was used already was
/// answered with the id it named its own event, which no event has; the
/// answer is the first event's id, as in process.
#[test]
fn a_key_used_again_answers_the_first_events_id_in_process_and_in_a_cluster() {
    let redis = Redis::start(Persistence::None);
    let target = sseloop::config::RedisTarget::parse(&redis.url()).unwrap();
    for cluster in [None, Some(sseloop::config::Cluster::new(target))] {
        let clustered = cluster.is_some();
        let mut server = InProcess::start_with(Config {
            cluster,
            ..Config::default()
        });
        let publish = |name: &str| {
            let event = Event::new("paid").with_topic("orders").with_id(name);
            server.publisher.publish_once(event, "order-42")
        };
        let first = publish("order-42-paid").unwrap();
        let again = publish("order-42-paid-again").unwrap();
        assert_eq!(
            (first.as_str(), again.as_str()),
            ("order-42-paid", "order-42-paid"),
            "in a cluster: {clustered}"
        );
        server.stop().unwrap();
    }
}
