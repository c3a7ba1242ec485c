//! The node's reader of the stream, as decisions: given what it knows
//! (where it read up to, whether it caught up with the start) and one
//! decoded reply, what to hand out to the loops, what to ask Redis next
//! and what to log. No I/O and no shared state: the current epoch comes
//! in as an argument and a new one goes out as a [`Step`], so every case
//! (a gap, a new epoch, trimmed entries, an entry of another epoch or not
//! an event at all) is a unit test.
//!
//! The reader reads from the last entry it read, each entry becoming a
//! [`Delivery`] numbered `base + seq` in the node's order. At the node's
//! start it reads the last `history` entries already there (a gap before
//! them is nobody's news); later, entries trimmed before it got to them
//! become one `reset` (`stale`) in their place, and a new epoch begins
//! with a `reset` (`other-run`) at its base.

use std::net::SocketAddr;
use std::sync::Arc;

use log::Level;

use super::entry::{Entry, Read, Synced};
use super::epoch::Current;
use crate::bus::Delivery;
use crate::bus::id::{Epoch, ResetReason, Run};

/// What the reader decided, in order.
#[derive(Debug)]
pub enum Step {
    /// An epoch begins, with entries up to `known` stored in it.
    Begin {
        /// The epoch.
        epoch: Epoch,
        /// The stream's last entry.
        known: u64,
    },
    /// Hand this to every loop.
    HandOut(Delivery),
    /// Entries of epoch `run` up to `seq` are stored.
    Stored {
        /// The epoch's run.
        run: Run,
        /// The newest entry read.
        seq: u64,
    },
    /// Log this.
    Log(Level, String),
    /// Ask for the epoch check next.
    Sync,
    /// Read the entries after `after` next.
    Read {
        /// The last entry read.
        after: u64,
    },
    /// End the connection: the reply cannot be used. It connects again
    /// and checks the epoch.
    Reset(String),
    /// Redis refused what this node is configured with (at its start):
    /// it cannot serve.
    Refuse(String),
}

/// What the reader knows.
#[derive(Debug)]
pub struct Reader {
    /// Redis's address, for the log.
    addr: SocketAddr,
    /// Events each loop keeps for replay: how far back the start reads.
    history: u64,
    /// The last sequence number read, in the current epoch; `None` before
    /// the first epoch check.
    position: Option<u64>,
    /// Entries missing before the next ones are not news (the start).
    quiet_gap: bool,
    /// The entry the start must read up to (the stream's last when the
    /// node started), and whether it has.
    target: u64,
    caught_up: bool,
    /// The newest sequence number in the order handed out.
    handed_out: u64,
}

impl Reader {
    /// The reader of a node starting now, whose loops keep `history`
    /// events.
    pub fn new(addr: SocketAddr, history: usize) -> Reader {
        Reader {
            addr,
            history: history as u64,
            position: None,
            quiet_gap: true,
            target: 0,
            caught_up: false,
            handed_out: 0,
        }
    }

    /// Where the next read starts: after the last entry read.
    pub fn position(&self) -> u64 {
        self.position.unwrap_or(0)
    }

    /// Once the node has read what the stream held at its start: the
    /// sequence number in the order it has handed out through.
    pub fn started_through(&self) -> Option<u64> {
        self.caught_up.then_some(self.handed_out)
    }

    /// The connection is up: check the epoch first.
    pub fn on_connected(&self, out: &mut Vec<Step>) {
        out.push(Step::Sync);
    }

    /// The epoch check answered; `current` is the epoch the node is in.
    pub fn on_sync(&mut self, current: Option<Current>, reply: Synced, out: &mut Vec<Step>) {
        let (run, last) = match reply {
            Synced::Epoch { run, last } => (run, last),
            Synced::Failed { why, transient } => {
                if !transient && self.position.is_none() {
                    // At start: the configuration is wrong, say so and stop.
                    out.push(Step::Refuse(why));
                } else {
                    out.push(Step::Log(Level::Warn, format!("Redis reader: {why}")));
                    out.push(Step::Reset(why));
                }
                return;
            }
        };
        match current {
            None => {
                // The node's start: the history is the stream's last entries.
                out.push(Step::Log(
                    Level::Info,
                    format!(
                        "cluster on Redis at {}: epoch {run}, {last} events so far",
                        self.addr
                    ),
                ));
                out.push(Step::Begin {
                    epoch: Epoch::new(run, 0),
                    known: last,
                });
                let position = last.saturating_sub(self.history);
                self.position = Some(position);
                self.target = last;
                self.caught_up = position >= last;
            }
            // Reconnected, or idle: read on from where the reader was.
            Some(current) if current.epoch.run() == run => {
                out.push(Step::Stored { run, seq: last });
            }
            Some(current) => {
                let old = current.epoch.run();
                out.push(Step::Log(
                    Level::Warn,
                    format!(
                        "Redis lost this cluster's events (its epoch is now {run}, was {old}): \
                         ids of {old} get reset"
                    ),
                ));
                let epoch = Epoch::new(run, current.issued() + 1);
                out.push(Step::Begin { epoch, known: last });
                out.push(Step::HandOut(reset(
                    epoch,
                    epoch.base(),
                    ResetReason::OtherRun,
                )));
                self.handed_out = epoch.base();
                self.position = Some(0);
                self.quiet_gap = false;
            }
        }
        out.push(Step::Read {
            after: self.position(),
        });
    }

    /// A read answered; `current` is the epoch the node is in.
    pub fn on_read(&mut self, current: Option<Current>, reply: Read, out: &mut Vec<Step>) {
        let entries = match reply {
            Read::Entries(entries) => entries,
            Read::Idle => {
                // Nothing for a whole block: what the start wanted was
                // trimmed, if anything. Check the epoch, then read on.
                self.caught_up = true;
                self.quiet_gap = false;
                out.push(Step::Sync);
                return;
            }
            Read::Failed(why) => {
                out.push(Step::Reset(why));
                return;
            }
        };
        let Some(current) = current else {
            debug_assert!(false, "a read before the first epoch check");
            return out.push(Step::Sync);
        };
        let epoch = current.epoch;
        let mut newest = None;
        for entry in entries {
            let Some(entry) = entry else {
                out.push(Step::Log(
                    Level::Warn,
                    "Redis reader: an entry that is not an event; skipped".into(),
                ));
                continue;
            };
            if entry.epoch != Some(epoch.run()) {
                // Another epoch's entry: the epoch changed under this
                // reader. The check finds out which, and where to read from.
                stored(epoch, newest, out);
                return out.push(Step::Sync);
            }
            if self.position.is_some_and(|p| entry.seq <= p) {
                continue; // read already
            }
            self.hand_out(epoch, entry, out);
            newest = Some(self.position());
        }
        stored(epoch, newest, out);
        self.quiet_gap = false;
        self.caught_up |= self.position() >= self.target;
        out.push(Step::Read {
            after: self.position(),
        });
    }

    /// Hands out one entry, after a `reset` (`stale`) when entries before
    /// it were trimmed away unread.
    fn hand_out(&mut self, epoch: Epoch, entry: Entry, out: &mut Vec<Step>) {
        let position = self.position();
        debug_assert!(entry.seq > position);
        if entry.seq > position + 1 && !self.quiet_gap {
            out.push(Step::Log(
                Level::Warn,
                format!(
                    "Redis reader: events {}..{} left the stream before this node read them",
                    position + 1,
                    entry.seq - 1
                ),
            ));
            let at = epoch.base() + entry.seq - 1;
            out.push(Step::HandOut(reset(epoch, at, ResetReason::Stale)));
        }
        let at = epoch.base() + entry.seq;
        let frame = entry.frame(&entry.id(epoch.id(at)));
        out.push(Step::HandOut(Delivery {
            seq: at,
            frame: Arc::new(frame),
            topics: entry.topics,
            name: entry.name,
            private: entry.private,
        }));
        self.position = Some(entry.seq);
        self.handed_out = at;
    }
}

/// The `reset` at `seq` of the order, for everyone.
fn reset(epoch: Epoch, seq: u64, reason: ResetReason) -> Delivery {
    Delivery::plain(seq, Arc::new(epoch.id(seq).reset(reason)), Arc::from([]))
}

/// Entries of `epoch` up to `newest`, if any was read, are stored.
fn stored(epoch: Epoch, newest: Option<u64>, out: &mut Vec<Step>) {
    if let Some(seq) = newest {
        out.push(Step::Stored {
            run: epoch.run(),
            seq,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789ab";
    const B: &str = "ba5eba5eba5e";

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    fn reader(history: usize) -> Reader {
        Reader::new("127.0.0.1:6379".parse().unwrap(), history)
    }

    fn event(epoch: &str, seq: u64) -> Option<Entry> {
        Some(Entry {
            seq,
            epoch: Some(run(epoch)),
            data: format!("e{seq}"),
            event_type: None,
            topics: Arc::from([]),
            name: None,
            retry: None,
            private: false,
        })
    }

    /// The node's state as the glue keeps it: the epochs begun and the
    /// newest stored, applied from the steps.
    #[derive(Default)]
    struct Node {
        current: Option<Current>,
    }

    impl Node {
        /// Applies what the node keeps; returns the rest, written short:
        /// `id`s of what is handed out (`reset:why` for resets), `sync`,
        /// `read N`, `reset`, `refuse`, `log:level`.
        fn apply(&mut self, steps: Vec<Step>) -> Vec<String> {
            let mut shown = Vec::new();
            for step in steps {
                match step {
                    Step::Begin { epoch, known } => {
                        self.current = Some(Current { epoch, known });
                    }
                    Step::Stored { run, seq } => {
                        let current = self.current.as_mut().unwrap();
                        assert_eq!(current.epoch.run(), run);
                        current.known = current.known.max(seq);
                    }
                    Step::HandOut(d) => {
                        let text = String::from_utf8(d.frame.payload().to_vec()).unwrap();
                        let id = text.lines().next().unwrap().trim_start_matches("id: ");
                        let id = id.trim_start_matches(crate::bus::id::HUB_PREFIX);
                        let shown_as = match text.lines().nth(1) {
                            Some("event: reset") if text.contains("\"stale\"") => "reset:stale",
                            Some("event: reset") => "reset:other-run",
                            _ => "",
                        };
                        shown.push(format!("{} {id}{shown_as}", d.seq).trim().to_string());
                    }
                    Step::Log(level, _) => shown.push(format!("log:{level}")),
                    Step::Sync => shown.push("sync".into()),
                    Step::Read { after } => shown.push(format!("read {after}")),
                    Step::Reset(_) => shown.push("reset".into()),
                    Step::Refuse(_) => shown.push("refuse".into()),
                }
            }
            shown
        }

        fn sync(&mut self, reader: &mut Reader, epoch: &str, last: u64) -> Vec<String> {
            let mut out = Vec::new();
            let reply = Synced::Epoch {
                run: run(epoch),
                last,
            };
            reader.on_sync(self.current, reply, &mut out);
            self.apply(out)
        }

        fn read(&mut self, reader: &mut Reader, reply: Read) -> Vec<String> {
            let mut out = Vec::new();
            reader.on_read(self.current, reply, &mut out);
            self.apply(out)
        }
    }

    #[test]
    fn the_start_reads_the_last_history_entries_without_a_reset() {
        let mut r = reader(3);
        let mut node = Node::default();
        assert_eq!(node.sync(&mut r, A, 5), ["log:INFO", "read 2"]);
        assert_eq!(r.started_through(), None);
        // Entry 3 was trimmed meanwhile: a gap at the start is no news.
        let got = node.read(&mut r, Read::Entries(vec![event(A, 4), event(A, 5)]));
        assert_eq!(
            got,
            [format!("4 {A}-4"), format!("5 {A}-5"), "read 5".into()]
        );
        assert_eq!(r.started_through(), Some(5));
        assert_eq!(node.current.unwrap().known, 5);
    }

    #[test]
    fn an_empty_stream_is_caught_up_at_once() {
        let mut r = reader(1024);
        let mut node = Node::default();
        assert_eq!(node.sync(&mut r, A, 0), ["log:INFO", "read 0"]);
        assert_eq!(r.started_through(), Some(0));
    }

    #[test]
    fn entries_trimmed_unread_become_one_stale_reset_in_their_place() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 2);
        node.read(&mut r, Read::Entries(vec![event(A, 1), event(A, 2)]));
        let got = node.read(&mut r, Read::Entries(vec![event(A, 6), event(A, 7)]));
        assert_eq!(
            got,
            [
                "log:WARN".to_string(),
                format!("5 {A}-5reset:stale"),
                format!("6 {A}-6"),
                format!("7 {A}-7"),
                "read 7".into()
            ]
        );
    }

    #[test]
    fn entries_read_already_are_skipped() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.read(&mut r, Read::Entries(vec![event(A, 1), event(A, 2)]));
        let got = node.read(&mut r, Read::Entries(vec![event(A, 2), event(A, 3)]));
        assert_eq!(got, [format!("3 {A}-3"), "read 3".into()]);
    }

    #[test]
    fn an_entry_that_is_not_an_event_does_not_stop_the_ones_after_it() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let got = node.read(&mut r, Read::Entries(vec![event(A, 1), None, event(A, 2)]));
        assert_eq!(
            got,
            [
                format!("1 {A}-1"),
                "log:WARN".into(),
                format!("2 {A}-2"),
                "read 2".into()
            ]
        );
    }

    #[test]
    fn an_entry_of_another_epoch_sends_the_reader_to_the_epoch_check() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let got = node.read(
            &mut r,
            Read::Entries(vec![event(A, 1), event(B, 1), event(A, 2)]),
        );
        assert_eq!(got, [format!("1 {A}-1"), "sync".into()]);
        assert_eq!(node.current.unwrap().known, 1);
    }

    #[test]
    fn a_new_epoch_begins_after_the_old_one_with_an_other_run_reset() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.read(&mut r, Read::Entries(vec![event(A, 1), event(A, 2)]));
        // Redis lost the stream: a new epoch, its ids counting from 1 again.
        let got = node.sync(&mut r, B, 0);
        assert_eq!(
            got,
            [
                "log:WARN".to_string(),
                format!("3 {B}-0reset:other-run"),
                "read 0".into()
            ]
        );
        let current = node.current.unwrap();
        assert_eq!((current.epoch.run(), current.epoch.base()), (run(B), 3));
        let got = node.read(&mut r, Read::Entries(vec![event(B, 1)]));
        assert_eq!(got, [format!("4 {B}-1"), "read 1".into()]);
        // The same epoch again (a reconnect): read on from where it was.
        assert_eq!(node.sync(&mut r, B, 1), ["read 1"]);
    }

    #[test]
    fn a_gap_in_a_new_epoch_is_news() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.sync(&mut r, B, 3);
        let got = node.read(&mut r, Read::Entries(vec![event(B, 3)]));
        assert_eq!(
            got,
            [
                "log:WARN".to_string(),
                format!("3 {B}-2reset:stale"),
                format!("4 {B}-3"),
                "read 3".into()
            ]
        );
    }

    #[test]
    fn an_idle_read_catches_up_the_start_and_checks_the_epoch() {
        let mut r = reader(2);
        let mut node = Node::default();
        assert_eq!(node.sync(&mut r, A, 10), ["log:INFO", "read 8"]);
        // Everything the start wanted was trimmed before it read.
        assert_eq!(node.read(&mut r, Read::Idle), ["sync"]);
        assert_eq!(r.started_through(), Some(0), "nothing handed out");
        // The gap after is news now.
        let got = node.read(&mut r, Read::Entries(vec![event(A, 12)]));
        assert_eq!(
            got[..2],
            ["log:WARN".to_string(), format!("11 {A}-11reset:stale")]
        );
    }

    #[test]
    fn a_refusal_stops_the_start_and_only_resets_later() {
        let refused = || Synced::Failed {
            why: "SSELOOP-FOREIGN".into(),
            transient: false,
        };
        let busy = || Synced::Failed {
            why: "LOADING".into(),
            transient: true,
        };
        let mut r = reader(8);
        let mut node = Node::default();
        let mut out = Vec::new();
        r.on_sync(None, busy(), &mut out);
        assert_eq!(node.apply(out), ["log:WARN", "reset"]);
        let mut out = Vec::new();
        r.on_sync(None, refused(), &mut out);
        assert_eq!(node.apply(out), ["refuse"]);
        node.sync(&mut r, A, 0);
        let mut out = Vec::new();
        r.on_sync(node.current, refused(), &mut out);
        assert_eq!(node.apply(out), ["log:WARN", "reset"]);
        assert_eq!(
            node.read(&mut r, Read::Failed("read: ERR".into())),
            ["reset"]
        );
    }
}
