//! The failure lab (`--lab`): its streams, bounds and refusals over raw
//! TCP (`streams`), the terminal command `sseloop lab` (`terminal`), each
//! lesson through the page in headless Chromium (`browsers`), and the
//! proxy lesson through a real nginx beside the lab's own relay (`nginx`).
//! The last two are real-client tests: `SSELOOP_SKIP_REAL_CLIENTS=1
//! ./test.sh` leaves them out (its `browsers::` and `nginx::` filters).

mod browsers;
mod nginx;
mod streams;
mod terminal;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::support::{HttpConn, Item, Next, Subscriber, connect, deadline};

/// A run name no other test uses.
pub fn run_name(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{what}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `GET /lab/stream?QUERY` to `addr`; the connection, to read the answer.
pub fn request(addr: SocketAddr, query: &str, last_event_id: Option<&str>) -> HttpConn {
    let mut conn = HttpConn::new(connect(addr));
    let resume = last_event_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    conn.send(
        format!("GET /lab/stream?{query} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{resume}\r\n")
            .as_bytes(),
    );
    conn
}

/// One event of a lab run as a plain client saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub n: u64,
    pub id: String,
    /// Milliseconds from its publish to its arrival.
    pub delay_ms: f64,
    pub at: Instant,
}

/// Reads a lab stream (not deflated) to its `lab-end` or its close: the
/// greeting's data, and each event with its delay.
pub fn read_run(mut stream: Subscriber) -> (serde_json::Value, Vec<Seen>) {
    let mut hello = serde_json::Value::Null;
    let mut seen = Vec::new();
    let end = deadline() + std::time::Duration::from_secs(60);
    loop {
        match stream.poll(end) {
            Next::Item(Item::Event(event)) => match event.event.as_deref() {
                Some("lab") => hello = serde_json::from_str(&event.data).unwrap(),
                Some("lab-end") => return (hello, seen),
                _ => {
                    let arrived = epoch_ms();
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    seen.push(Seen {
                        n: data["n"].as_u64().unwrap(),
                        id: event.id.unwrap_or_default(),
                        delay_ms: arrived - data["t"].as_f64().unwrap(),
                        at: Instant::now(),
                    });
                }
            },
            Next::Item(_) => {}
            Next::End(_) => return (hello, seen),
        }
    }
}

/// Milliseconds since the Unix epoch, the clock the lab stamps events with.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The median of `delays`.
pub fn median(delays: impl IntoIterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = delays.into_iter().collect();
    assert!(!sorted.is_empty(), "no delays");
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
