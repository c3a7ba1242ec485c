//! The library API in-process: a `Server` on a port-0 listener run on a
//! thread, fed by a `Publisher` from another thread, and shut down by it.

use std::net::TcpStream;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sseloop::{Config, Event, PublishError, Publisher, Server};

use crate::support::{HttpConn, IO_TIMEOUT};

/// A library server running on its own thread.
struct InProcess {
    addr: std::net::SocketAddr,
    publisher: Publisher,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    fn start() -> InProcess {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
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

    /// Subscribes and reads up to the end of the `: connected` block, so the
    /// subscriber is registered before anything is published.
    fn subscribe(&self, query: &str) -> HttpConn {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut conn = HttpConn::new(stream);
        conn.send(format!("GET /events{query} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        conn.take_raw_until(b": connected\n\n");
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

#[test]
fn idle_server_shuts_down_promptly() {
    let mut server = InProcess::start();
    let started = std::time::Instant::now();
    server.stop().unwrap();
    // No connections: nothing to wait for, so no grace period is spent.
    assert!(started.elapsed() < Duration::from_millis(900));
}
