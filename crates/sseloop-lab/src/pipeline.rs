//! What stands between the hub's events and one browser in a lesson: the
//! lab's application (it writes the response head, the events it reads
//! from the hub and, in the heartbeat lesson, heartbeats) and the cause
//! or its fix (a buffer, a relay, a compressor, a proxy's read timeout).
//! Pure: bytes and times in, the bytes that leave for the browser out.

use std::time::Instant;

use super::blocks::Blocks;
use super::deflate::Deflate;
use super::idle::{Due, HEARTBEAT_BYTES, Idle};
use super::lesson::{Lesson, Spec};
use super::relay::Relay;

/// The stages of one lab stream.
#[derive(Debug)]
pub struct Pipeline {
    stage: Stage,
    idle: Option<Idle>,
}

#[derive(Debug)]
enum Stage {
    /// Every write leaves at once.
    Plain,
    /// The application's unflushed 4 KiB buffer: head and body.
    Unflushed(Blocks),
    /// The nginx-like relay.
    Proxy(Relay),
    /// The body deflated, with `Z_SYNC_FLUSH` after each event or not.
    Compressed { deflate: Deflate, flush: bool },
}

/// What a due deadline did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing, or bytes were appended to the output.
    Wrote,
    /// The proxy's read timeout cut the stream: close the browser's
    /// connection without another byte.
    Cut,
}

impl Pipeline {
    /// The stream of `spec` begun at `now`; `relay` puts the lab's proxy
    /// stage in the way (the nginx-like relay, the read timeout).
    pub fn new(spec: &Spec, relay: bool, now: Instant) -> Pipeline {
        let stage = match (spec.lesson, spec.fix) {
            (Lesson::Unflushed, false) => Stage::Unflushed(Blocks::default()),
            (Lesson::Proxy, _) if relay => Stage::Proxy(Relay::new()),
            (Lesson::Compression, flush) => Stage::Compressed {
                deflate: Deflate::default(),
                flush,
            },
            _ => Stage::Plain,
        };
        let idle = (spec.lesson == Lesson::Heartbeat).then(|| Idle::new(spec.fix, relay, now));
        Pipeline { stage, idle }
    }

    /// The application answers: its response head, then `first` (the
    /// lab's greeting event).
    pub fn start(&mut self, spec: &Spec, first: &[u8], out: &mut Vec<u8>) {
        let head = response_head(spec);
        match &mut self.stage {
            Stage::Plain => out.extend_from_slice(head.as_bytes()),
            Stage::Unflushed(blocks) => blocks.push(head.as_bytes(), out),
            Stage::Proxy(relay) => relay.head(head.as_bytes(), out),
            // The head is not compressed, and goes out at once.
            Stage::Compressed { .. } => out.extend_from_slice(head.as_bytes()),
        }
        self.body(first, out);
    }

    /// The application writes an event it read from the hub.
    pub fn event(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<u8>) {
        if let Some(idle) = &mut self.idle {
            idle.wrote(now);
        }
        self.body(bytes, out);
    }

    fn body(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match &mut self.stage {
            Stage::Plain => out.extend_from_slice(bytes),
            Stage::Unflushed(blocks) => blocks.push(bytes, out),
            Stage::Proxy(relay) => relay.body(bytes, out),
            Stage::Compressed { deflate, flush } => {
                deflate.write(bytes, out);
                if *flush {
                    deflate.sync_flush(out);
                }
            }
        }
    }

    /// The application ends the response: what every stage holds leaves.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match &mut self.stage {
            Stage::Plain => {}
            Stage::Unflushed(blocks) => blocks.finish(out),
            Stage::Proxy(relay) => relay.finish(out),
            Stage::Compressed { deflate, .. } => deflate.finish(out),
        }
    }

    /// When a heartbeat or the read timeout is next due, in the heartbeat
    /// lesson.
    pub fn deadline(&self) -> Option<Instant> {
        self.idle.as_ref().map(Idle::deadline)
    }

    /// The deadline came: a heartbeat is written, or the stream is cut.
    pub fn on_deadline(&mut self, now: Instant, out: &mut Vec<u8>) -> Tick {
        let Some(idle) = &mut self.idle else {
            return Tick::Wrote;
        };
        match idle.due(now) {
            Due::Nothing => Tick::Wrote,
            Due::Heartbeat => {
                self.body(HEARTBEAT_BYTES, out);
                Tick::Wrote
            }
            Due::Cut => Tick::Cut,
        }
    }
}

/// The head the lab's application answers with: a close-delimited event
/// stream; `X-Accel-Buffering: no` unless the proxy lesson's cause is the
/// application forgetting it; `Content-Encoding: deflate` in the
/// compression lesson.
pub fn response_head(spec: &Spec) -> String {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n",
    );
    if spec.lesson != Lesson::Proxy || spec.fix {
        head.push_str("X-Accel-Buffering: no\r\n");
    }
    if spec.lesson == Lesson::Compression {
        head.push_str("Content-Encoding: deflate\r\nVary: Accept-Encoding\r\n");
    }
    head.push_str("\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(lesson: Lesson, fix: bool) -> Spec {
        Spec {
            lesson,
            fix,
            pace: lesson.pace(),
            viewers: 1,
        }
    }

    /// Bytes out after the start and each of `n` events of `size` bytes.
    fn outputs(lesson: Lesson, fix: bool, relay: bool, n: usize, size: usize) -> Vec<usize> {
        let spec = spec(lesson, fix);
        let now = Instant::now();
        let mut p = Pipeline::new(&spec, relay, now);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        p.start(&spec, b"event: lab\ndata: {}\n\n", &mut out);
        seen.push(out.len());
        for _ in 0..n {
            out.clear();
            p.event(&vec![b'x'; size], now, &mut out);
            seen.push(out.len());
        }
        seen
    }

    #[test]
    fn each_cause_holds_bytes_and_each_fix_lets_them_go() {
        for lesson in [Lesson::Unflushed, Lesson::Proxy] {
            let cause = outputs(lesson, false, true, 8, 1000);
            assert_eq!(cause[0], 0, "{lesson}: the head is held");
            assert_eq!(
                cause.iter().filter(|&&n| n > 0).count(),
                1,
                "{lesson}: {cause:?}"
            );
            let fix = outputs(lesson, true, true, 8, 1000);
            assert!(fix.iter().all(|&n| n > 0), "{lesson}: {fix:?}");
            assert!(fix[1..].iter().all(|&n| n == 1000), "{lesson}: {fix:?}");
        }
        // Without the relay the proxy lesson's stream passes at once (for
        // a real proxy in front), without the header with the cause.
        assert!(
            outputs(Lesson::Proxy, false, false, 3, 1000)[1..]
                .iter()
                .all(|&n| n == 1000)
        );
        assert!(!response_head(&spec(Lesson::Proxy, false)).contains("X-Accel"));
        assert!(response_head(&spec(Lesson::Proxy, true)).contains("X-Accel-Buffering: no"));
        // The compressor: nothing but its header without the flush, every
        // event with it.
        let cause = outputs(Lesson::Compression, false, true, 5, 1000);
        assert!(cause[1..].iter().all(|&n| n == 0), "{cause:?}");
        let fix = outputs(Lesson::Compression, true, true, 5, 1000);
        assert!(fix[1..].iter().all(|&n| n > 0), "{fix:?}");
        for lesson in [Lesson::Heartbeat, Lesson::Nagle] {
            assert!(
                outputs(lesson, false, true, 3, 100)[1..]
                    .iter()
                    .all(|&n| n == 100)
            );
        }
    }

    #[test]
    fn the_heartbeat_lesson_cuts_or_beats() {
        let now = Instant::now();
        let cause = spec(Lesson::Heartbeat, false);
        let mut p = Pipeline::new(&cause, true, now);
        let mut out = Vec::new();
        p.start(&cause, b"", &mut out);
        p.event(b"data: 1\n\n", now, &mut out);
        assert_eq!(p.deadline(), Some(now + Duration::from_secs(5)));
        assert_eq!(
            p.on_deadline(now + Duration::from_secs(5), &mut out),
            Tick::Cut
        );
        let fix = spec(Lesson::Heartbeat, true);
        let mut p = Pipeline::new(&fix, true, now);
        p.start(&fix, b"", &mut out);
        out.clear();
        let at = p.deadline().unwrap();
        assert_eq!(at, now + Duration::from_secs(2));
        assert_eq!(p.on_deadline(at, &mut out), Tick::Wrote);
        assert_eq!(out, HEARTBEAT_BYTES);
        assert_eq!(
            Pipeline::new(&spec(Lesson::Proxy, false), true, now).deadline(),
            None
        );
    }
}
