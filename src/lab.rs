//! The failure lab (`--lab`, on with `--demo`), a crate of the workspace
//! of its own (`crates/sseloop-lab`, optimised for size: nothing of it is
//! on the publish or delivery path), and what ties it to this server: its
//! settings from the [`Config`], the [`Publisher`] it publishes through,
//! and the place against `--max-connections` a handed-over connection
//! holds.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use sseloop_lab::{
    Fixed, Lesson, MAX_COUNT, MAX_RUNS, MAX_SIZE, MAX_VIEWER_QUEUE, MAX_WAITING, Options,
    RECONNECT_DELAY, Sight, StreamRequest, Trial, Watched, parse_rate, print_runs, summary, watch,
};
pub(crate) use sseloop_lab::{Handed, LabDoor};

use crate::config::{Config, LINGER_TIMEOUT};
use crate::process::{Admission, Shared};
use crate::publisher::{PublishError, Publisher};
use crate::sse::Event;

/// A lab whose thread has not started yet.
#[derive(Debug)]
pub(crate) struct Lab(sseloop_lab::Lab);

impl Lab {
    /// A lab for a server configured with `config`, and the door the
    /// loops reach it through.
    pub(crate) fn new(config: &Config) -> io::Result<(Lab, LabDoor)> {
        let settings = sseloop_lab::Settings {
            token: config.publish_token.clone(),
            private: config.jwt_key.is_some(),
            max_data: config.max_event_size,
            send_buffer: config.send_buffer,
            linger: LINGER_TIMEOUT,
        };
        let (lab, door) = sseloop_lab::Lab::new(settings)?;
        Ok((Lab(lab), door))
    }

    /// Starts the lab's thread for the server at `hub`.
    pub(crate) fn spawn(self, shared: Arc<Shared>, hub: SocketAddr) -> io::Result<JoinHandle<()>> {
        self.0.spawn(Box::new(Publisher::new(shared)), hub)
    }
}

impl sseloop_lab::Publish for Publisher {
    fn publish(
        &self,
        topic: &str,
        event_type: Option<&str>,
        data: String,
    ) -> Result<(), sseloop_lab::Refused> {
        let mut event = Event::new(data).with_topic(topic);
        if let Some(t) = event_type {
            event = event.with_type(t);
        }
        match Publisher::publish(self, event) {
            Ok(_) => Ok(()),
            Err(PublishError::Unavailable) => Err(sseloop_lab::Refused::Unavailable),
            Err(e) => Err(sseloop_lab::Refused::Other(e.to_string())),
        }
    }
}

impl sseloop_lab::Seat for Shared {
    fn give_back(&self) {
        self.leave(Admission::Served);
    }
}
