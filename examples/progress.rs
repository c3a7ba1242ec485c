//! Embeds sseloop: a worker thread reports progress through a `Publisher`
//! while the server runs on the main thread.
//!
//! Run it, then watch the stream:
//!
//! ```text
//! cargo run --example progress
//! curl -N 'http://127.0.0.1:8080/events?topic=job'
//! ```

use std::thread;
use std::time::Duration;

use sseloop::{Config, Event, Server};

fn main() -> std::io::Result<()> {
    let server = Server::bind(Config::default())?;
    println!("serving on http://{}/events?topic=job", server.local_addr());
    let publisher = server.publisher();
    thread::spawn(move || {
        for job in 1.. {
            for percent in (0..=100).step_by(5) {
                let data = format!("{{\"job\":{job},\"percent\":{percent}}}");
                let event = Event::new(data).with_type("progress").with_topic("job");
                if publisher.publish(event).is_err() {
                    return; // the server stopped
                }
                thread::sleep(Duration::from_millis(100));
            }
            let done = Event::new(format!("{{\"job\":{job}}}"))
                .with_type("complete")
                .with_topic("job");
            if publisher.publish(done).is_err() {
                return;
            }
        }
    });
    server.run()
}
