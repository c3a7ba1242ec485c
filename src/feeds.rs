//! Event sources the binary can run beside the loop, each on its own thread
//! and publishing through a [`Publisher`] like any embedding program would:
//! lines of standard input, and the render-job simulator of `--demo`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, BufRead, Read};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use sseloop::{Event, PublishError, Publisher};

/// Publishes each line read from `input` as one event (to `topic`, or to
/// everyone), as soon as the line is complete. A line longer than
/// `max_line` bytes is published in pieces of at most that size, with a
/// warning, so nothing is buffered without bound. Returns at end of input.
pub fn publish_lines(
    mut input: impl BufRead,
    publisher: &Publisher,
    topic: Option<&str>,
    max_line: usize,
) -> io::Result<u64> {
    let mut line = Vec::with_capacity(1024);
    let mut published = 0;
    loop {
        line.clear();
        let limit = u64::try_from(max_line.max(1)).unwrap_or(u64::MAX);
        let n = Read::by_ref(&mut input)
            .take(limit)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(published);
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if n == max_line.max(1) {
            warn!("stdin: a line longer than {max_line} bytes is published in pieces");
        }
        let mut event = Event::new(String::from_utf8_lossy(&line).into_owned());
        if let Some(t) = topic {
            event = event.with_topic(t);
        }
        if !publish_until_stored(publisher, event) {
            return Ok(published);
        }
        published += 1;
    }
}

/// How often a line is offered again while a cluster's Redis is away.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Publishes `event`, again each second while a cluster's Redis cannot be
/// reached (input waits meanwhile: a line is never dropped). False once
/// the server has stopped.
fn publish_until_stored(publisher: &Publisher, event: Event) -> bool {
    let mut warned = false;
    loop {
        match publisher.publish(event.clone()) {
            Ok(_) => return true,
            Err(PublishError::Unavailable) => {
                if !warned {
                    warn!("stdin: Redis cannot be reached; the line waits until it can");
                    warned = true;
                }
                thread::sleep(UNAVAILABLE_RETRY);
            }
            Err(_) => return false,
        }
    }
}

/// Runs [`publish_lines`] over standard input on a thread.
pub fn spawn_stdin(publisher: Publisher, topic: Option<String>, max_line: usize) -> io::Result<()> {
    spawn(
        "stdin",
        Box::new(move || {
            let stdin = io::stdin().lock();
            match publish_lines(stdin, &publisher, topic.as_deref(), max_line) {
                Ok(n) => info!("stdin: end of input after {n} lines; still serving"),
                Err(e) => warn!("stdin: {e}; still serving"),
            }
        }),
    )?;
    Ok(())
}

/// Starts `work` on a thread named `name`: the binary's threads all go
/// through here, so the standard library's thread start is compiled
/// once for them.
pub fn spawn(name: &str, work: Box<dyn FnOnce() + Send>) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name.into()).spawn(work)
}

/// Topic of the demo's events.
pub const DEMO_TOPIC: &str = "demo";
/// A new render job starts this often.
const JOB_EVERY: Duration = Duration::from_secs(3);
/// A running job reports progress this often.
const STEP: Duration = Duration::from_millis(100);

/// One simulated render job.
struct Job {
    id: u64,
    percent: u64,
    /// Fails when it reaches this percent, for one job in four.
    fails_at: Option<u64>,
}

/// The render-job simulator: a job starts every few seconds on topic
/// `demo`, sends a `progress` event every 100 ms (JSON with `job`,
/// `percent` and `ts`, the publish time in ms since the Unix epoch, so a
/// page can show the delay), then `complete`, or `error` for one in four.
pub fn spawn_demo(publisher: Publisher) -> io::Result<()> {
    spawn(
        "demo",
        Box::new(move || {
            let mut rng = XorShift(RandomState::new().hash_one(0u8) | 1);
            let mut jobs: Vec<Job> = Vec::new();
            let mut next_id = 1;
            let steps_per_job = (JOB_EVERY.as_millis() / STEP.as_millis()) as u64;
            for tick in 0u64.. {
                if tick.is_multiple_of(steps_per_job) {
                    let fails_at = rng.next().is_multiple_of(4).then(|| 20 + rng.next() % 60);
                    jobs.push(Job {
                        id: next_id,
                        percent: 0,
                        fails_at,
                    });
                    next_id += 1;
                }
                let mut alive = true;
                jobs.retain_mut(|job| {
                    job.percent = (job.percent + 1 + rng.next() % 4).min(100);
                    let (kind, done) = match job.fails_at {
                        Some(at) if job.percent >= at => ("error", true),
                        _ if job.percent == 100 => ("complete", true),
                        _ => ("progress", false),
                    };
                    let data = format!(
                        "{{\"job\":{},\"percent\":{},\"ts\":{}}}",
                        job.id,
                        job.percent,
                        unix_millis()
                    );
                    let event = Event::new(data).with_type(kind).with_topic(DEMO_TOPIC);
                    // While a cluster's Redis is away the demo's events are
                    // dropped: it only shows progress.
                    alive &= !matches!(publisher.publish(event), Err(PublishError::Closed));
                    !done
                });
                if !alive {
                    return; // the server stopped
                }
                thread::sleep(STEP);
            }
        }),
    )?;
    Ok(())
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A small generator for the simulation; not for anything secret.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
