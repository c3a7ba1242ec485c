//! One viewer of a run, on the lab's thread: the client's socket (handed
//! over by a loop), the lab's subscription to the hub for it, and the
//! lesson's stages between them; what their readiness does.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use log::{debug, warn};
use mio::Interest;
use mio::event::Event as Readiness;
use mio::net::TcpStream;

use super::lesson::StreamRequest;
use super::pipeline::Pipeline;
use super::run::END_TYPE;
use super::thread::{DOWN, MAX_DISCARD, Room, UP, token};
use super::upstream::{Said, Upstream};
use super::{MAX_VIEWER_QUEUE, Place};

/// One viewer: the client's socket, the lab's subscription to the hub for
/// it, and the lesson's stages between them.
pub(super) struct Viewer {
    pub(super) run: usize,
    pub(super) down: TcpStream,
    pub(super) _place: Place,
    pub(super) out: Vec<u8>,
    pub(super) discarded: usize,
    pub(super) up: Option<Up>,
    pub(super) pipeline: Pipeline,
    /// The application ended the response: the client's socket closes
    /// once `out` is written (and, after our FIN, it closes or lingers out).
    pub(super) finished: bool,
    pub(super) linger: Option<Instant>,
}

pub(super) struct Up {
    pub(super) socket: TcpStream,
    pub(super) request: Vec<u8>,
    pub(super) reader: Upstream,
    pub(super) open: bool,
}

impl Viewer {
    /// When it next needs the thread: the end of its linger once its
    /// response is over; before that, a heartbeat or the read timeout.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.finished {
            true => self.linger,
            false => self.pipeline.deadline(),
        }
    }
}

impl Room {
    #[allow(clippy::too_many_arguments)] // the parts of a handed-over connection
    pub(super) fn attach(
        &mut self,
        run_key: usize,
        mut down: TcpStream,
        place: Place,
        mut out: Vec<u8>,
        mut up: TcpStream,
        request: &StreamRequest,
        now: Instant,
    ) {
        let entry = self.viewers.vacant_entry();
        let key = entry.key();
        let registry = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = registry
            .register(&mut down, token(DOWN, key), both)
            .and_then(|()| registry.register(&mut up, token(UP, key), both))
        {
            warn!("lab: register: {e}");
            return;
        }
        if self.send_buffer > 0
            && let Err(e) = socket2::SockRef::from(&down).set_send_buffer_size(self.send_buffer)
        {
            debug!("lab: SO_SNDBUF: {e}");
        }
        let run = &mut self.runs[run_key];
        run.joined += 1;
        run.viewers.push(key);
        let spec = run.spec;
        let last_id = request.last_event_id.as_deref();
        // Numbers, not booleans, so that every viewer's greeting of a run
        // has the same length (and its blocks the same boundaries) until
        // the tenth viewer or a reconnect.
        let hello = format!(
            "event: lab\ndata: {{\"run\":\"{}\",\"lesson\":\"{}\",\"fix\":{},\"relay\":{},\"viewer\":{},\"lastEventId\":{}}}\n\n",
            run.name,
            spec.lesson,
            u8::from(spec.fix),
            u8::from(request.relay),
            run.joined,
            last_id.map_or_else(|| "null".into(), json_string)
        );
        let mut pipeline = Pipeline::new(&spec, request.relay, now);
        pipeline.start(&spec, hello.as_bytes(), &mut out);
        let resume = last_id.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
        let subscribe = format!(
            "GET /events?topic={} HTTP/1.0\r\nHost: localhost\r\n{resume}\r\n",
            run.topic
        );
        debug!("lab: run {}: viewer {} joins", run.name, run.joined);
        entry.insert(Viewer {
            run: run_key,
            down,
            _place: place,
            out,
            discarded: 0,
            up: Some(Up {
                socket: up,
                request: subscribe.into_bytes(),
                reader: Upstream::new(self.max_data + 1024),
                open: false,
            }),
            pipeline,
            finished: false,
            linger: None,
        });
        self.flush_down(key, now);
    }

    pub(super) fn on_down(&mut self, key: usize, event: &Readiness) {
        let now = Instant::now();
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let Some(viewer) = self.viewers.get_mut(key) else {
                return;
            };
            loop {
                match viewer.down.read(&mut self.scratch) {
                    Ok(0) => return self.close_viewer(key, "the client closed"),
                    Ok(n) => {
                        viewer.discarded += n;
                        if viewer.discarded > MAX_DISCARD {
                            return self.close_viewer(key, "the client sent too much");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.close_viewer(key, "the client's connection failed"),
                }
            }
        }
        self.flush_down(key, now);
    }

    pub(super) fn on_up(&mut self, key: usize, now: Instant) {
        let Some(viewer) = self.viewers.get_mut(key) else {
            return;
        };
        let Some(up) = &mut viewer.up else {
            return;
        };
        let mut said = Vec::new();
        let mut ended = write_some(&mut up.socket, &mut up.request).is_err();
        while !ended {
            match up.socket.read(&mut self.scratch) {
                Ok(0) => ended = true,
                Ok(n) => ended = up.reader.feed(&self.scratch[..n], &mut said).is_err(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => ended = true,
            }
        }
        let mut opened = false;
        for item in said {
            match item {
                Said::Open => {
                    up.open = true;
                    opened = true;
                }
                Said::Event(e) => {
                    let end = e.event_type.as_deref() == Some(END_TYPE);
                    let mut bytes = Vec::with_capacity(e.data.len() + 64);
                    if let Some(id) = &e.id {
                        bytes.extend_from_slice(format!("id: {id}\n").as_bytes());
                    }
                    if let Some(t) = &e.event_type {
                        bytes.extend_from_slice(format!("event: {t}\n").as_bytes());
                    }
                    for line in e.data.split('\n') {
                        bytes.extend_from_slice(format!("data: {line}\n").as_bytes());
                    }
                    bytes.push(b'\n');
                    viewer.pipeline.event(&bytes, now, &mut viewer.out);
                    ended |= end;
                }
            }
        }
        if ended {
            self.finish(key);
        }
        if opened {
            self.check_start(self.viewers[key].run, now);
        }
        self.flush_down(key, now);
    }

    /// Writes what the viewer's client is owed; closes the viewer when
    /// its response has ended and is written, or when it holds too much.
    pub(super) fn flush_down(&mut self, key: usize, now: Instant) {
        let Some(viewer) = self.viewers.get_mut(key) else {
            return;
        };
        if write_some(&mut viewer.down, &mut viewer.out).is_err() {
            return self.close_viewer(key, "the client's connection failed");
        }
        if viewer.out.len() > MAX_VIEWER_QUEUE {
            return self.close_viewer(key, "the client does not read");
        }
        if viewer.finished && viewer.out.is_empty() && viewer.linger.is_none() {
            // Our FIN ends the close-delimited body; the client's closes.
            if viewer.down.shutdown(Shutdown::Write).is_err() {
                return self.close_viewer(key, "done");
            }
            viewer.linger = Some(now + self.linger);
        }
    }

    /// The application ends the viewer's response (its run ended, or the
    /// hub ended the subscription): every stage lets go of what it holds.
    pub(super) fn finish(&mut self, key: usize) {
        let Some(viewer) = self.viewers.get_mut(key) else {
            return;
        };
        if let Some(mut up) = viewer.up.take() {
            let _ = self.poll.registry().deregister(&mut up.socket);
        }
        if !viewer.finished {
            viewer.finished = true;
            viewer.pipeline.finish(&mut viewer.out);
        }
    }

    pub(super) fn close_viewer(&mut self, key: usize, why: &str) {
        let Some(mut viewer) = self.viewers.try_remove(key) else {
            return;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut viewer.down);
        if let Some(up) = &mut viewer.up {
            let _ = registry.deregister(&mut up.socket);
        }
        if let Some(run) = self.runs.get_mut(viewer.run) {
            run.viewers.retain(|&v| v != key);
            debug!("lab: run {}: a viewer leaves: {why}", run.name);
        }
    }
}

/// Writes from the front of `out` until it is empty or the kernel refuses.
pub(super) fn write_some(socket: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    while !out.is_empty() {
        match socket.write(out) {
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Control characters (Cc) are all below U+0100.
            c if c.is_control() => {
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[n >> 4 & 15]));
                out.push(char::from(b"0123456789abcdef"[n & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let text = "a\"b\\c\td\u{e9}\u{85}\u{1}";
        let json = json_string(text);
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
    }
}
