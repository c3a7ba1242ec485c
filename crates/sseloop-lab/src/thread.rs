//! The lab's thread: one `mio::Poll` of its own, like a loop's, for the
//! connections the loops hand over (the viewers' sockets), the lab's
//! subscriptions to the hub, the Nagle lesson's publishing connections and
//! the short answers it gives (204, 400, 429, 503). Runs, viewers and
//! answers are few and bounded (see the module's bounds), so the nearest
//! deadline is found by looking at each.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::answer::{
    Answer, FULL_RUN, OVER, TOO_LARGE, TOO_MANY, UNAVAILABLE, UNAVAILABLE_PRIVATE,
};
use super::lesson::{Lesson, MAX_VIEWERS, Spec, StreamRequest};
use super::nagle::{Answered, TcpPublisher};
use super::pipeline::Tick;
use super::run::{END_TYPE, Phase, Schedule, Step, epoch_ms, event_data};
use super::viewer::Viewer;
use super::{Handed, Inbox, LabDoor, MAX_RUNS, Publish, Refused, Settings};

/// The waker's token.
pub(super) const WAKER: Token = Token(usize::MAX);

/// Token kinds, in a token's two low bits; the key is above them.
pub(super) const DOWN: usize = 0;
pub(super) const UP: usize = 1;
pub(super) const PUBLISHER: usize = 2;
pub(super) const ANSWER: usize = 3;

/// Most viewers one run may have had, reconnects included.
const MAX_JOINS: u32 = 32;
/// Bytes a viewer's client may send after its request before it is cut
/// off (it has nothing to say).
pub(super) const MAX_DISCARD: usize = 64 << 10;

pub(super) fn token(kind: usize, key: usize) -> Token {
    Token(key << 2 | kind)
}

/// A lab whose thread has not started yet.
pub struct Lab {
    poll: Poll,
    inbox: Inbox,
    settings: Settings,
}

impl Lab {
    /// A lab for a server configured so, and the door the loops reach it
    /// through.
    // Not inlined into the server's code: compiled here, for size.
    #[inline(never)]
    pub fn new(settings: Settings) -> io::Result<(Lab, LabDoor)> {
        let poll = Poll::new()?;
        let (door, inbox) = super::channel(&poll)?;
        let lab = Lab {
            poll,
            inbox,
            settings,
        };
        Ok((lab, door))
    }

    /// Starts the lab's thread for the server at `hub`, which it
    /// publishes into through `publisher`.
    // Not inlined into the server's code: compiled here, for size.
    #[inline(never)]
    pub fn spawn(self, publisher: Box<dyn Publish>, hub: SocketAddr) -> io::Result<JoinHandle<()>> {
        let hub = match hub.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from(([127, 0, 0, 1], hub.port()))
            }
            ip if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, hub.port()))
            }
            _ => hub,
        };
        let mut room = Room {
            poll: self.poll,
            inbox: self.inbox,
            publisher,
            hub,
            token: self.settings.token,
            private: self.settings.private,
            max_data: self.settings.max_data,
            send_buffer: self.settings.send_buffer,
            linger: self.settings.linger,
            runs: Slab::new(),
            viewers: Slab::new(),
            answers: Slab::new(),
            scratch: vec![0; 16 << 10],
            seed: epoch_ms().to_bits() | 1,
        };
        std::thread::Builder::new()
            .name("sseloop-lab".into())
            .spawn(move || room.run())
    }
}

/// The lab at work.
pub(super) struct Room {
    pub(super) poll: Poll,
    pub(super) inbox: Inbox,
    pub(super) publisher: Box<dyn Publish>,
    pub(super) hub: SocketAddr,
    pub(super) token: Option<String>,
    /// `--jwt-key`: the lab's subscriptions would need tokens.
    pub(super) private: bool,
    pub(super) max_data: usize,
    pub(super) send_buffer: usize,
    /// How long a closed answer or viewer lingers for the client's FIN.
    pub(super) linger: Duration,
    pub(super) runs: Slab<Run>,
    pub(super) viewers: Slab<Viewer>,
    pub(super) answers: Slab<Answer>,
    pub(super) scratch: Vec<u8>,
    pub(super) seed: u64,
}

pub(super) struct Run {
    pub(super) name: String,
    pub(super) spec: Spec,
    pub(super) topic: String,
    pub(super) schedule: Schedule,
    pub(super) viewers: Vec<usize>,
    pub(super) joined: u32,
    /// The Nagle lesson's publishing connection.
    pub(super) tcp: Option<TcpPublisher>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").finish_non_exhaustive()
    }
}

impl Room {
    fn run(&mut self) {
        debug!("lab: serving, the hub at {}", self.hub);
        let mut events = Events::with_capacity(256);
        while !self.inbox.stopped() {
            let timeout = self
                .deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = poll(&mut self.poll, &mut events, timeout) {
                warn!("lab: poll failed: {e}; the lab stops");
                break;
            }
            let now = Instant::now();
            for event in events.iter() {
                let Token(t) = event.token();
                if event.token() == WAKER {
                    continue;
                }
                let key = t >> 2;
                match t & 3 {
                    DOWN => self.on_down(key, event),
                    UP => self.on_up(key, now),
                    PUBLISHER => self.on_publisher(key, now),
                    _ => self.on_answer(key),
                }
            }
            for handed in self.inbox.take() {
                self.admit(handed, now);
            }
            self.expire(now);
        }
        // Lab connections still on their way close with the rest.
        self.inbox.close();
        debug!("lab: stopped");
    }

    fn deadline(&self) -> Option<Instant> {
        let runs = self.runs.iter().map(|(_, run)| match &run.tcp {
            // Waiting for the hub's answer, which wakes the poll.
            Some(tcp) if !tcp.idle() => run.schedule.give_up(),
            _ => run.schedule.deadline(),
        });
        let viewers = self.viewers.iter().filter_map(|(_, v)| v.deadline());
        let answers = self.answers.iter().map(|(_, a)| a.until);
        runs.chain(viewers).chain(answers).min()
    }

    // A connection comes in.

    fn admit(&mut self, handed: Handed, now: Instant) {
        let Handed {
            socket,
            request,
            unsent,
            place,
        } = handed;
        let found = self.runs.iter().find(|(_, r)| r.name == request.run);
        let refusal = match found {
            _ if self.private => Some(UNAVAILABLE_PRIVATE),
            // A new viewer of a run that is over would see nothing; one
            // coming back with Last-Event-ID still gets what it missed
            // (the end included) from the hub's history.
            Some((_, run))
                if matches!(run.schedule.phase(), Phase::Ended(_))
                    && request.last_event_id.is_none() =>
            {
                Some(OVER)
            }
            Some((_, run))
                if run.viewers.len() >= usize::from(MAX_VIEWERS) || run.joined >= MAX_JOINS =>
            {
                Some(FULL_RUN)
            }
            Some(_) => None,
            // A browser coming back to a run the lab has forgotten.
            None if request.last_event_id.is_some() => Some(OVER),
            None if self.active_runs() >= MAX_RUNS || self.runs.len() >= 2 * MAX_RUNS => {
                Some(TOO_MANY)
            }
            None if request.spec.pace.size > self.max_data => Some(TOO_LARGE),
            None => None,
        };
        if let Some(answer) = refusal {
            return self.answer(socket, place, unsent, answer, now);
        }
        let run = match found {
            Some((key, _)) => key,
            None => match self.start_run(&request, now) {
                Ok(key) => key,
                Err(e) => {
                    warn!("lab: cannot start a run: {e}");
                    return self.answer(socket, place, unsent, UNAVAILABLE, now);
                }
            },
        };
        let up = match TcpStream::connect(self.hub) {
            Ok(up) => up,
            Err(e) => {
                warn!("lab: cannot subscribe to the hub: {e}");
                return self.answer(socket, place, unsent, UNAVAILABLE, now);
            }
        };
        self.attach(run, socket, place, unsent, up, &request, now);
    }

    fn active_runs(&self) -> usize {
        let active = |r: &&Run| !matches!(r.schedule.phase(), Phase::Ended(_));
        self.runs.iter().map(|(_, r)| r).filter(active).count()
    }

    fn start_run(&mut self, request: &StreamRequest, now: Instant) -> io::Result<usize> {
        let spec = request.spec;
        let entry = self.runs.vacant_entry();
        let key = entry.key();
        let tcp = match spec.lesson {
            Lesson::Nagle => {
                let mut tcp = TcpPublisher::connect(self.hub, spec.fix, self.token.as_deref())?;
                self.poll.registry().register(
                    tcp.socket(),
                    token(PUBLISHER, key),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Some(tcp)
            }
            _ => None,
        };
        debug!(
            "lab: run {} starts: {} with the {}",
            request.run,
            spec.lesson,
            if spec.fix { "fix" } else { "cause" }
        );
        entry.insert(Run {
            name: request.run.clone(),
            spec,
            topic: format!("lab-{}", request.run),
            schedule: Schedule::new(spec, now),
            viewers: Vec::new(),
            joined: 0,
            tcp,
        });
        Ok(key)
    }

    // Readiness.

    fn on_publisher(&mut self, run_key: usize, now: Instant) {
        let Some(tcp) = self.runs.get_mut(run_key).and_then(|r| r.tcp.as_mut()) else {
            return;
        };
        match tcp.on_ready(&mut self.scratch) {
            Answered::Nothing => {}
            Answered::Id(_) => {}
            Answered::Failed(why) => {
                // After its end, the connection closing is no news.
                match self.runs[run_key].schedule.phase() {
                    Phase::Ended(_) => debug!("lab: {why}"),
                    _ => warn!("lab: {why}"),
                }
                self.runs[run_key].tcp = None;
                self.runs[run_key].schedule.ended(now);
            }
        }
        self.step_run(run_key, now);
    }

    // What viewers and runs do.

    /// A viewer's subscription opened: its run may begin.
    pub(super) fn check_start(&mut self, run_key: usize, now: Instant) {
        let Some(run) = self.runs.get_mut(run_key) else {
            return;
        };
        let open = run
            .viewers
            .iter()
            .filter(|&&v| {
                self.viewers
                    .get(v)
                    .and_then(|v| v.up.as_ref())
                    .is_some_and(|up| up.open)
            })
            .count();
        run.schedule.viewers_ready(open, now);
        self.step_run(run_key, now);
    }

    /// Does what the run's schedule says is due.
    fn step_run(&mut self, run_key: usize, now: Instant) {
        while let Some(run) = self.runs.get_mut(run_key) {
            if run.tcp.as_ref().is_some_and(|tcp| !tcp.idle()) {
                return; // its answer, or its connection, comes first
            }
            let (topic, size) = (run.topic.clone(), run.spec.pace.size);
            match run.schedule.due(now) {
                Step::Wait => return,
                Step::Publish(n) => {
                    let data = event_data(n, epoch_ms(), size, &mut self.seed);
                    if self.publish(run_key, None, data).is_err() {
                        return self.runs[run_key].schedule.ended(now);
                    }
                    self.runs[run_key].schedule.published(n, now);
                }
                Step::End => {
                    let data = format!("{{\"n\":{}}}", run.spec.pace.count);
                    let _ = self.publish(run_key, Some(END_TYPE), data);
                    self.runs[run_key].schedule.ended(now);
                    debug!("lab: run {} ended: {topic}", self.runs[run_key].name);
                }
                Step::Forget => return self.forget(run_key),
            }
        }
    }

    /// Publishes on the run's topic: through the server's `Publisher`, or
    /// the Nagle lesson's connection.
    fn publish(
        &mut self,
        run_key: usize,
        event_type: Option<&str>,
        data: String,
    ) -> Result<(), ()> {
        let run = &mut self.runs[run_key];
        if let Some(tcp) = &mut run.tcp {
            return tcp.publish(&run.topic, event_type, &data).map_err(|e| {
                warn!("lab: publish: {e}");
            });
        }
        match self.publisher.publish(&run.topic, event_type, data) {
            Ok(()) => Ok(()),
            // Redis away: this event is lost to the run, the next may not be.
            Err(Refused::Unavailable) => Ok(()),
            Err(Refused::Other(e)) => {
                warn!("lab: publish: {e}");
                Err(())
            }
        }
    }

    /// The run is over and remembered no longer; what still watches it
    /// is closed.
    fn forget(&mut self, run_key: usize) {
        let viewers = self.runs[run_key].viewers.clone();
        for key in viewers {
            self.close_viewer(key, "the run is over");
        }
        let mut run = self.runs.remove(run_key);
        if let Some(tcp) = &mut run.tcp {
            let _ = self.poll.registry().deregister(tcp.socket());
        }
    }

    /// Fires what is due: runs' schedules, heartbeats and read timeouts,
    /// lingering connections.
    fn expire(&mut self, now: Instant) {
        let runs: Vec<usize> = self.runs.iter().map(|(key, _)| key).collect();
        for key in runs {
            self.step_run(key, now);
        }
        let due: Vec<usize> = self
            .viewers
            .iter()
            .filter(|(_, v)| v.deadline().is_some_and(|at| at <= now))
            .map(|(key, _)| key)
            .collect();
        for key in due {
            let Some(viewer) = self.viewers.get_mut(key) else {
                continue;
            };
            if viewer.finished {
                self.close_viewer(key, "done");
                continue;
            }
            match viewer.pipeline.on_deadline(now, &mut viewer.out) {
                Tick::Wrote => self.flush_down(key, now),
                Tick::Cut => self.close_viewer(key, "cut by the proxy's read timeout"),
            }
        }
        self.answers.retain(|_, a| a.until > now);
    }
}

/// Waits for readiness, retrying when a signal interrupted the wait.
fn poll(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
