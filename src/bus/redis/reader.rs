//! The node's reader of the stream, as decisions: given what it knows
//! (where it read up to, the epoch it hands events out in, the epoch the
//! last check named) and one decoded reply, what to hand out to the loops,
//! what to ask Redis next and what to log. No I/O and no shared state: a
//! new epoch goes out as a [`Step`], so every case (a gap, a new epoch, a
//! failover, trimmed entries, an entry of another epoch or not an event at
//! all) is a unit test.
//!
//! The reader reads from the last entry it read, each entry becoming a
//! [`Delivery`] numbered `base + seq` in the node's order ([`Era`]). At
//! the node's start it reads the last `history` entries of the current
//! epoch already there (a gap before them is nobody's news); later,
//! entries trimmed before it got to them become one `reset` (`stale`) in
//! their place.
//!
//! A new epoch (see `epoch`) begins with a `reset` (`other-run`) in the
//! order, named by the new epoch's id of the entry it began after. One
//! that begins the stream anew does so at once. One that continues the
//! stream (Redis restored an older copy, or a failover) does so once the
//! reader has read the old epoch's entries up to where the new one began,
//! and at once if it had read past that: those entries are gone (the new
//! primary never had them), and the reader reads on from where the new
//! epoch began, so that every id it hands out names one event only.
//!
//! No entry stops it. One that is not an event, is over the bound of an
//! entry, or is numbered past [`MAX_SEQ`], is skipped: counted, logged, and a `reset` (`stale`) in its
//! place for the subscribers of its topics (everyone's, when it has none
//! that can be read). One of another epoch (or none) sends it to the
//! epoch check first: if the epoch is still the same, the entry is
//! another program's, and skipped. One whose id sseloop does not number
//! is counted and the epoch check, which removes such entries, runs
//! before the next read. A reply it could not read (over the limits of a
//! reply) makes its next read a careful one, which hands over entries over
//! the bound as stubs and leaves out fields sseloop does not use.

use std::sync::Arc;

use log::Level;

use super::entry::{Entry, Item, Read, Synced};
use super::epoch::{Current, Era};
use crate::bus::Delivery;
use crate::bus::id::{Epoch, ResetReason, Run};

/// Highest stream sequence number the reader hands out as an event: the
/// scripts' Lua numbers (doubles) hold integers exactly up to 2^53, and
/// the node's order, numbered from it, stays far from `u64`'s end. An
/// entry numbered past it (another program's `XADD 0-<n>`) is skipped.
pub const MAX_SEQ: u64 = 1 << 53;

/// What the reader decided, in order.
#[derive(Debug)]
pub enum Step {
    /// The epoch check named this epoch: publishes go in it.
    Current(Current),
    /// The order enters this era: deliveries from its start on are its.
    Era(Era),
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
    /// An entry was skipped (counted; logged within a bound): why.
    Skipped(String),
    /// An entry with an id sseloop does not number was found (logged within
    /// a bound); the epoch check removes it, and the node whose script
    /// removes it counts it, so each is counted once in the cluster.
    Foreign(String),
    /// This node's epoch check removed that many foreign entries: counted.
    Removed(u64),
    /// Ask for the epoch check next.
    Sync,
    /// Read the entries after `after` next.
    Read {
        /// The last entry read.
        after: u64,
        /// With the careful read ([`super::scripts::READ_SCRIPT`]): the
        /// last read's reply could not be read.
        careful: bool,
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
    /// Events each loop keeps for replay: how far back the start reads.
    history: u64,
    /// The epoch whose entries it hands out, numbered in the order.
    reading: Option<Epoch>,
    /// The epoch the last check named, and the stream's sequence number
    /// it began after.
    current: Option<(Run, u64)>,
    /// The last sequence number read; `None` before the first epoch check.
    position: Option<u64>,
    /// Entries missing before the next ones are not news (the start).
    quiet_gap: bool,
    /// The entry the start must read up to (the stream's last when the
    /// node started), and whether it has.
    target: u64,
    caught_up: bool,
    /// The newest sequence number in the order handed out.
    handed_out: u64,
    /// An entry of another epoch was read here: the epoch check runs
    /// before it is taken for another program's.
    suspect: Option<u64>,
    /// The epoch check found the epoch unchanged since `suspect` was
    /// read: an entry of another epoch here is skipped.
    confirmed: Option<u64>,
    /// The last foreign id counted, so that one read again (before the
    /// check removed it) is counted once.
    foreign: Option<String>,
    /// The last read's reply could not be read: read carefully next.
    careful: bool,
}

impl Reader {
    /// The reader of a node starting now, whose loops keep `history`
    /// events.
    pub fn new(history: usize) -> Reader {
        Reader {
            history: history as u64,
            reading: None,
            current: None,
            position: None,
            quiet_gap: true,
            target: 0,
            caught_up: false,
            handed_out: 0,
            suspect: None,
            confirmed: None,
            foreign: None,
            careful: false,
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

    /// The connection ended on a reply it could not read while a read
    /// was asked: the next read is a careful one.
    pub fn on_unreadable(&mut self) {
        self.careful = true;
    }

    /// The connection is up: check the epoch first.
    pub fn on_connected(&self, out: &mut Vec<Step>) {
        out.push(Step::Sync);
    }

    /// The next read, after the last entry read.
    fn read_next(&self, out: &mut Vec<Step>) {
        out.push(Step::Read {
            after: self.position(),
            careful: self.careful,
        });
    }

    /// The epoch check answered.
    pub fn on_sync(&mut self, reply: Synced, out: &mut Vec<Step>) {
        let (value, run, from, last) = match reply {
            Synced::Epoch {
                value,
                run,
                from,
                last,
                removed,
            } => {
                if removed > 0 {
                    out.push(Step::Log(
                        Level::Warn,
                        format!(
                            "Redis: removed {removed} entries with ids sseloop does not number \
                             (another program's XADD *) from the stream"
                        ),
                    ));
                    out.push(Step::Removed(removed));
                }
                (value, run, from, last)
            }
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
        out.push(Step::Current(Current {
            value,
            run,
            from,
            known: last,
        }));
        match self.current {
            None => {
                // The node's start: the history is the stream's last
                // entries of this epoch.
                out.push(Step::Log(
                    Level::Info,
                    format!("cluster on Redis: epoch {run}, {last} events so far"),
                ));
                let epoch = Epoch::new(run, 0);
                out.push(Step::Era(Era {
                    epoch,
                    start: 0,
                    before_valid: None,
                }));
                self.reading = Some(epoch);
                self.current = Some((run, from));
                let position = last.saturating_sub(self.history).max(from);
                self.position = Some(position);
                self.target = last;
                self.caught_up = position >= last;
            }
            // Reconnected, or idle: read on from where the reader was.
            Some((known, _)) if known == run => {
                out.push(Step::Stored { run, seq: last });
                self.confirmed = self.suspect.take();
            }
            Some((old, _)) => {
                let how = if from == 0 {
                    "Redis lost this cluster's events"
                } else {
                    "Redis's primary changed, or it went back to an older copy"
                };
                out.push(Step::Log(
                    Level::Warn,
                    format!(
                        "{how}: epoch {run} begins after event {from} (was {old}); \
                         ids of {old} after {from} get reset"
                    ),
                ));
                self.current = Some((run, from));
                self.suspect = None;
                self.confirmed = None;
                // What the new epoch lacks was read already: begin it now.
                // Else the old epoch's entries up to `from` come first.
                if from == 0 || self.position() > from {
                    self.switch(run, from, out);
                }
            }
        }
        self.read_next(out);
    }

    /// The order enters epoch `run`, which began after stream entry
    /// `from`: a `reset` (`other-run`) first, named by its id of `from`;
    /// the reader reads on after `from`.
    fn switch(&mut self, run: Run, from: u64, out: &mut Vec<Step>) {
        let start = self.handed_out.saturating_add(1).max(from);
        let epoch = Epoch::new(run, start - from);
        let before_valid = (from > 0).then(|| from.min(self.position()));
        out.push(Step::Era(Era {
            epoch,
            start,
            before_valid,
        }));
        out.push(Step::HandOut(reset(epoch, start, ResetReason::OtherRun)));
        self.reading = Some(epoch);
        self.handed_out = start;
        self.position = Some(from);
        self.quiet_gap = false;
    }

    /// A read answered.
    pub fn on_read(&mut self, reply: Read, out: &mut Vec<Step>) {
        self.careful = false;
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
        let (Some((run, from)), Some(_)) = (self.current, self.reading) else {
            debug_assert!(false, "a read before the first epoch check");
            return out.push(Step::Sync);
        };
        for item in entries {
            let entry = match item {
                Item::Event(entry) if entry.seq > MAX_SEQ => {
                    if entry.seq > self.position() {
                        let why = format!("numbered past {MAX_SEQ}, which the hub does not count");
                        self.skip(entry.seq, Arc::from([]), &why, out);
                    }
                    continue;
                }
                Item::Event(entry) => entry,
                Item::Unreadable { seq, why } => {
                    if seq > self.position() {
                        self.skip(seq, Arc::from([]), &why, out);
                    }
                    continue;
                }
                Item::Foreign(id) => {
                    // The epoch check removes it: nothing after it can be
                    // read before that.
                    if self.foreign.as_ref() != Some(&id) {
                        out.push(Step::Foreign(format!(
                            "entry {id}: an id sseloop does not number (another program's XADD *)"
                        )));
                        self.foreign = Some(id);
                    }
                    self.stored(out);
                    return out.push(Step::Sync);
                }
            };
            if entry.seq <= self.position() {
                continue; // read already
            }
            let reading = self.reading.map(|e| e.run());
            let of_current = entry.epoch == Some(run) && entry.seq > from;
            if of_current && reading != Some(run) {
                // The first entry of the epoch it was waiting for.
                self.stored(out);
                self.switch(run, from, out);
            }
            let of_reading = entry.epoch.is_some() && entry.epoch == reading;
            if of_current || (of_reading && entry.seq <= from) {
                self.hand_out(entry, out);
                continue;
            }
            if self.confirmed == Some(entry.seq) {
                // The epoch is the same as before it was read: it is not
                // one of this hub's events.
                let why = match entry.epoch {
                    Some(other) => format!("of epoch {other}, not {run}"),
                    None => "no epoch".into(),
                };
                self.skip(entry.seq, entry.topics, &why, out);
                continue;
            }
            // Another epoch's entry: the epoch may have changed under this
            // reader. The check finds out which, and where to read from.
            self.suspect = Some(entry.seq);
            self.stored(out);
            return out.push(Step::Sync);
        }
        self.stored(out);
        self.quiet_gap = false;
        self.caught_up |= self.position() >= self.target;
        self.read_next(out);
    }

    /// Entries of the current epoch up to the position are stored.
    fn stored(&self, out: &mut Vec<Step>) {
        if let (Some((run, from)), Some(reading)) = (self.current, self.reading)
            && reading.run() == run
            && self.position() > from
        {
            out.push(Step::Stored {
                run,
                seq: self.position(),
            });
        }
    }

    /// Skips entry `seq`: counted and logged, and a `reset` (`stale`) in
    /// its place for the subscribers of `topics` (everyone, when none).
    fn skip(&mut self, seq: u64, topics: Arc<[Box<str>]>, why: &str, out: &mut Vec<Step>) {
        let Some(epoch) = self.reading else {
            return;
        };
        out.push(Step::Skipped(format!("entry 0-{seq}: {why}")));
        // Past MAX_SEQ the reset takes the next place: the order's numbers
        // stay as far from u64's end as the stream's sequence numbers.
        let at = epoch
            .base()
            .saturating_add(seq.min(MAX_SEQ))
            .max(self.handed_out.saturating_add(1));
        let mut reset = reset(epoch, at, ResetReason::Stale);
        reset.topics = topics;
        out.push(Step::HandOut(reset));
        self.position = Some(seq);
        self.handed_out = at;
    }

    /// Hands out one entry, after a `reset` (`stale`) when entries before
    /// it were trimmed away unread.
    fn hand_out(&mut self, entry: Entry, out: &mut Vec<Step>) {
        let Some(epoch) = self.reading else {
            return;
        };
        let position = self.position();
        debug_assert!(entry.seq > position);
        if entry.seq - 1 > position && !self.quiet_gap {
            out.push(Step::Log(
                Level::Warn,
                format!(
                    "Redis reader: events {}..{} left the stream before this node read them",
                    position + 1,
                    entry.seq - 1
                ),
            ));
            let at = epoch.base().saturating_add(entry.seq - 1);
            out.push(Step::HandOut(reset(epoch, at, ResetReason::Stale)));
        }
        let at = epoch.base().saturating_add(entry.seq);
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789ab";
    const B: &str = "ba5eba5eba5e";

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    fn reader(history: usize) -> Reader {
        Reader::new(history)
    }

    fn event(epoch: &str, seq: u64) -> Item {
        Item::Event(Entry {
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

    /// The node's state as the glue keeps it: the current epoch and the
    /// newest stored in it, and the eras begun, applied from the steps.
    #[derive(Default)]
    struct Node {
        current: Option<Current>,
        eras: Vec<Era>,
    }

    impl Node {
        /// Applies what the node keeps; returns the rest, written short:
        /// `id`s of what is handed out (`reset:why` for resets), `sync`,
        /// `read N`, `reset`, `refuse`, `log:level`.
        fn apply(&mut self, steps: Vec<Step>) -> Vec<String> {
            let mut shown = Vec::new();
            for step in steps {
                match step {
                    Step::Current(current) => self.current = Some(current),
                    Step::Era(era) => self.eras.push(era),
                    Step::Stored { run, seq } => {
                        let current = self.current.as_mut().unwrap();
                        assert_eq!(current.run, run);
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
                    Step::Skipped(_) => shown.push("skipped".into()),
                    Step::Foreign(_) => shown.push("foreign".into()),
                    Step::Removed(n) => shown.push(format!("removed {n}")),
                    Step::Sync => shown.push("sync".into()),
                    Step::Read {
                        after,
                        careful: false,
                    } => shown.push(format!("read {after}")),
                    Step::Read {
                        after,
                        careful: true,
                    } => shown.push(format!("careful read {after}")),
                    Step::Reset(_) => shown.push("reset".into()),
                    Step::Refuse(_) => shown.push("refuse".into()),
                }
            }
            shown
        }

        fn sync(&mut self, reader: &mut Reader, epoch: &str, last: u64) -> Vec<String> {
            self.sync_from(reader, epoch, 0, last)
        }

        /// The check names `epoch`, begun after entry `from`.
        fn sync_from(
            &mut self,
            reader: &mut Reader,
            epoch: &str,
            from: u64,
            last: u64,
        ) -> Vec<String> {
            let mut out = Vec::new();
            let reply = Synced::Epoch {
                value: format!("{epoch} {from}").into(),
                run: run(epoch),
                from,
                last,
                removed: 0,
            };
            reader.on_sync(reply, &mut out);
            self.apply(out)
        }

        fn read(&mut self, reader: &mut Reader, reply: Read) -> Vec<String> {
            let mut out = Vec::new();
            reader.on_read(reply, &mut out);
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
        assert_eq!(node.current.as_ref().unwrap().known, 5);
        assert_eq!(
            node.eras,
            [Era {
                epoch: Epoch::new(run(A), 0),
                start: 0,
                before_valid: None
            }]
        );
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
    fn an_entry_that_is_not_an_event_is_skipped_with_a_reset_in_its_place() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let unreadable = Item::Unreadable {
            seq: 2,
            why: "over the bound".into(),
        };
        let got = node.read(
            &mut r,
            Read::Entries(vec![event(A, 1), unreadable, event(A, 3)]),
        );
        assert_eq!(
            got,
            [
                format!("1 {A}-1"),
                "skipped".into(),
                format!("2 {A}-2reset:stale"),
                format!("3 {A}-3"),
                "read 3".into()
            ]
        );
    }

    /// An entry numbered past what the hub counts (`0-18446744073709551615`
    /// from another program) is skipped like one that is not an event,
    /// its reset placed without overflow, and the reader reads on after
    /// it, in a later epoch too (whose base is not 0).
    #[test]
    fn an_entry_numbered_past_what_the_hub_counts_is_skipped() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let got = node.read(
            &mut r,
            Read::Entries(vec![
                event(A, 1),
                event(A, MAX_SEQ + 1),
                event(A, MAX_SEQ + 2),
            ]),
        );
        let (top, past) = (MAX_SEQ, MAX_SEQ + 1);
        assert_eq!(
            got,
            [
                format!("1 {A}-1"),
                "skipped".into(),
                format!("{top} {A}-{top}reset:stale"),
                "skipped".into(),
                format!("{past} {A}-{past}reset:stale"),
                format!("read {}", MAX_SEQ + 2),
            ]
        );
        // A new epoch that begins the stream anew, then u64's last id,
        // as an event and as an entry that is not one.
        assert_eq!(
            node.sync(&mut r, B, 0),
            [
                "log:WARN".to_string(),
                format!("{} {B}-0reset:other-run", past + 1),
                "read 0".into()
            ]
        );
        let unreadable = Item::Unreadable {
            seq: u64::MAX,
            why: "not an event".into(),
        };
        let got = node.read(
            &mut r,
            Read::Entries(vec![event(B, 1), event(B, u64::MAX), unreadable]),
        );
        let base = past + 1;
        assert_eq!(
            got,
            [
                format!("{} {B}-1", base + 1),
                "skipped".into(),
                format!("{} {B}-{}reset:stale", base + MAX_SEQ, MAX_SEQ),
                format!("read {}", u64::MAX),
            ]
        );
        let got = node.read(&mut r, Read::Entries(vec![event(B, u64::MAX)]));
        assert_eq!(got, [format!("read {}", u64::MAX)]);
        assert_eq!(r.started_through(), Some(base + MAX_SEQ));
    }

    #[test]
    fn an_entry_of_another_epoch_sends_the_reader_to_the_epoch_check() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let got = node.read(
            &mut r,
            Read::Entries(vec![event(A, 1), event(B, 2), event(A, 3)]),
        );
        assert_eq!(got, [format!("1 {A}-1"), "sync".into()]);
        assert_eq!(node.current.as_ref().unwrap().known, 1);
        // The epoch is still A: entry 2 is not one of this hub's events.
        assert_eq!(node.sync(&mut r, A, 3), ["read 1"]);
        let mut no_epoch = event(A, 2);
        if let Item::Event(e) = &mut no_epoch {
            e.epoch = None;
        }
        for bad in [event(B, 2), no_epoch] {
            let mut r = reader(8);
            let mut node = Node::default();
            node.sync(&mut r, A, 0);
            node.read(&mut r, Read::Entries(vec![event(A, 1)]));
            let suspect = node.read(&mut r, Read::Entries(vec![bad.clone()]));
            assert_eq!(suspect, ["sync"]);
            node.sync(&mut r, A, 3);
            let got = node.read(&mut r, Read::Entries(vec![bad, event(A, 3)]));
            assert_eq!(
                got,
                [
                    "skipped".to_string(),
                    format!("2 {A}-2reset:stale"),
                    format!("3 {A}-3"),
                    "read 3".into()
                ]
            );
        }
    }

    #[test]
    fn a_foreign_id_is_counted_where_it_is_removed_and_sends_the_reader_to_the_epoch_check() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let foreign = || Item::Foreign("1712345678901-0".into());
        let got = node.read(&mut r, Read::Entries(vec![event(A, 1), foreign()]));
        assert_eq!(got, [format!("1 {A}-1"), "foreign".into(), "sync".into()]);
        // Read again before the check removed it: not said again.
        assert_eq!(node.read(&mut r, Read::Entries(vec![foreign()])), ["sync"]);
        let mut out = Vec::new();
        let removed = Synced::Epoch {
            value: A.into(),
            run: run(A),
            from: 0,
            last: 1,
            removed: 1,
        };
        r.on_sync(removed, &mut out);
        // Counted where it is removed.
        assert_eq!(node.apply(out), ["log:WARN", "removed 1", "read 1"]);
    }

    #[test]
    fn a_reply_that_could_not_be_read_is_read_again_carefully() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.read(&mut r, Read::Entries(vec![event(A, 1)]));
        r.on_unreadable();
        // The connection came back: the epoch check, then the careful read.
        assert_eq!(node.sync(&mut r, A, 2), ["careful read 1"]);
        let got = node.read(&mut r, Read::Entries(vec![event(A, 2)]));
        assert_eq!(got, [format!("2 {A}-2"), "read 2".into()]);
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
        let era = node.eras.last().unwrap();
        assert_eq!(
            (era.epoch, era.start, era.before_valid),
            (Epoch::new(run(B), 3), 3, None)
        );
        assert_eq!(node.current.as_ref().unwrap().run, run(B));
        let got = node.read(&mut r, Read::Entries(vec![event(B, 1)]));
        assert_eq!(got, [format!("4 {B}-1"), "read 1".into()]);
        // The same epoch again (a reconnect): read on from where it was.
        assert_eq!(node.sync(&mut r, B, 1), ["read 1"]);
    }

    /// A failover to a primary that lacks entries 4 and 5, which this
    /// node read: the new epoch begins at once, after 3, and the reader
    /// reads on from there; ids of A after 3 are another run's.
    #[test]
    fn an_epoch_that_continues_before_what_was_read_begins_at_once() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        let five = (1..=5).map(|n| event(A, n)).collect();
        node.read(&mut r, Read::Entries(five));
        let got = node.sync_from(&mut r, B, 3, 3);
        assert_eq!(
            got,
            [
                "log:WARN".to_string(),
                format!("6 {B}-3reset:other-run"),
                "read 3".into()
            ]
        );
        let era = *node.eras.last().unwrap();
        assert_eq!(
            (era.epoch, era.start, era.before_valid),
            (Epoch::new(run(B), 3), 6, Some(3))
        );
        let got = node.read(&mut r, Read::Entries(vec![event(B, 4)]));
        assert_eq!(got, [format!("7 {B}-4"), "read 4".into()]);
        assert_eq!(node.current.as_ref().unwrap().known, 4);
    }

    /// A new epoch that continues after entry 4 when this node has read
    /// only 2: entries 3 and 4 of A come first, then the reset, then B's.
    #[test]
    fn an_epoch_that_continues_after_what_was_read_begins_with_its_first_entry() {
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.read(&mut r, Read::Entries(vec![event(A, 1), event(A, 2)]));
        assert_eq!(node.sync_from(&mut r, B, 4, 5), ["log:WARN", "read 2"]);
        let got = node.read(
            &mut r,
            Read::Entries(vec![event(A, 3), event(A, 4), event(B, 5)]),
        );
        assert_eq!(
            got,
            [
                format!("3 {A}-3"),
                format!("4 {A}-4"),
                format!("5 {B}-4reset:other-run"),
                format!("6 {B}-5"),
                "read 5".into()
            ]
        );
        let era = *node.eras.last().unwrap();
        assert_eq!(
            (era.epoch, era.start, era.before_valid),
            (Epoch::new(run(B), 1), 5, Some(4))
        );
        // An entry of A past where B began is not A's to hand out.
        let mut r = reader(8);
        let mut node = Node::default();
        node.sync(&mut r, A, 0);
        node.sync_from(&mut r, B, 1, 2);
        let got = node.read(&mut r, Read::Entries(vec![event(A, 1), event(A, 2)]));
        assert_eq!(got, [format!("1 {A}-1"), "sync".into()]);
    }

    #[test]
    fn a_start_after_a_failover_reads_only_the_current_epoch() {
        let mut r = reader(8);
        let mut node = Node::default();
        assert_eq!(node.sync_from(&mut r, B, 10, 12), ["log:INFO", "read 10"]);
        let got = node.read(&mut r, Read::Entries(vec![event(B, 11), event(B, 12)]));
        assert_eq!(
            got,
            [format!("11 {B}-11"), format!("12 {B}-12"), "read 12".into()]
        );
        assert_eq!(r.started_through(), Some(12));
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
        r.on_sync(busy(), &mut out);
        assert_eq!(node.apply(out), ["log:WARN", "reset"]);
        let mut out = Vec::new();
        r.on_sync(refused(), &mut out);
        assert_eq!(node.apply(out), ["refuse"]);
        node.sync(&mut r, A, 0);
        let mut out = Vec::new();
        r.on_sync(refused(), &mut out);
        assert_eq!(node.apply(out), ["log:WARN", "reset"]);
        assert_eq!(
            node.read(&mut r, Read::Failed("read: ERR".into())),
            ["reset"]
        );
    }
}
