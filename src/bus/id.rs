//! Event ids: the one module that makes, writes, reads and places them.
//!
//! An id the hub assigns is `urn:sseloop:<run>-<seq>`: `run` is 12 hex
//! digits that tell this hub's ids from any other's ([`Run`]: drawn at
//! start-up in process, or the cluster's epoch kept in Redis), `seq` a
//! decimal number that counts from 1 in its run and only grows. So an id
//! from another run (or not ours at all) is told apart from one that can
//! be placed. The `urn:` form makes it an IRI, as Mercure asks of the
//! ids a hub makes; the bare `<run>-<seq>` of earlier versions is still
//! read, so that clients holding one resume.
//!
//! An event its publisher named (Mercure's `id`, `Event::with_id`) has
//! that name as its id ([`EventId::named`]); a name in the hub's own
//! form, or `earliest` ([`is_reserved`]), is never taken, so that no
//! publisher can make an id that reads as a cursor into the order. A name is placed by the
//! history's index of names, not here.
//!
//! An [`Epoch`] is one run as a loop sees it: its ids, and where their
//! numbers start in the hub's order (its base; 0 but for a cluster whose
//! epoch changed while this process ran, where the new epoch's events
//! follow the old ones in the order). Placing a `Last-Event-ID` against
//! an epoch ([`Epoch::place`]) says after which event of the order a
//! subscriber resumes, or why it cannot ([`ResetReason`]); the `reset`
//! event that says so is made here too ([`EventId::reset`]).
//!
//! [`EventId`] keeps its form private. [`IdText`] is an id written out
//! without a heap allocation.

use std::collections::hash_map::RandomState;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasher, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sse::Frame;

/// Hex digits in a run.
const RUN_LEN: usize = 12;
/// What the hub's ids begin with.
pub const HUB_PREFIX: &str = "urn:sseloop:";
/// Longest id the hub writes: the prefix, a run, a dash and a `u64`.
const MAX_HUB_ID: usize = HUB_PREFIX.len() + RUN_LEN + 1 + 20;

/// The run part of the hub's ids: 12 hex digits, kept as written (an
/// epoch read from Redis keeps its letters' case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Run([u8; RUN_LEN]);

impl Run {
    /// No run: what a loop's history names before the cluster's first
    /// epoch is known. [`Run::draw`] never gives it.
    pub const NONE: Run = Run(*b"000000000000");

    /// A fresh run: 48 random bits (std's randomly keyed hasher over the
    /// clock and the pid), never [`Run::NONE`].
    pub fn draw() -> Run {
        let mut h = RandomState::new().build_hasher();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        h.write_u128(now.as_nanos());
        h.write_u32(std::process::id());
        let bits = (h.finish() & 0xffff_ffff_ffff).max(1);
        let mut text = [0; RUN_LEN];
        let mut out = Cursor::new(&mut text);
        // 12 hex digits fill the buffer exactly.
        let _ = write!(out, "{bits:012x}");
        debug_assert_eq!(out.len, RUN_LEN);
        Run(text)
    }

    /// 12 hex digits, either case; `None` for anything else.
    pub fn parse(text: &[u8]) -> Option<Run> {
        let run: [u8; RUN_LEN] = text.try_into().ok()?;
        run.iter().all(u8::is_ascii_hexdigit).then_some(Run(run))
    }

    /// The digits, as sent to Redis and written in ids.
    pub fn as_str(&self) -> &str {
        // Only hex digits get in (`draw`, `parse`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId(Form);

/// The forms an id takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Form {
    /// `urn:sseloop:<run>-<seq>`, assigned by the hub.
    Hub { run: Run, seq: u64 },
    /// The name its publisher gave the event.
    Named(Arc<str>),
}

impl EventId {
    /// The hub's id number `seq` of run `run`.
    pub fn new(run: Run, seq: u64) -> EventId {
        EventId(Form::Hub { run, seq })
    }

    /// The id of an event its publisher named `name` (never one the hub
    /// reserves: see [`is_reserved`]).
    pub fn named(name: Arc<str>) -> EventId {
        debug_assert!(!is_reserved(&name), "{name:?} reads as a hub cursor");
        EventId(Form::Named(name))
    }

    /// Reads an id the hub could have assigned:
    /// `[urn:sseloop:]<12 hex digits>-<digits>`, the number within `u64`.
    #[cfg(test)]
    pub fn parse(text: &str) -> Option<EventId> {
        let (run, digits) = split(text)?;
        Some(EventId::new(run, digits.parse().ok()?))
    }

    /// The run it belongs to.
    #[cfg(test)]
    pub fn run(&self) -> Run {
        match &self.0 {
            Form::Hub { run, .. } => *run,
            Form::Named(_) => Run::NONE,
        }
    }

    /// Its number within its run.
    #[cfg(test)]
    pub fn seq(&self) -> u64 {
        match &self.0 {
            Form::Hub { seq, .. } => *seq,
            Form::Named(_) => 0,
        }
    }

    /// The id as written on the wire, without a heap allocation.
    pub fn text(&self) -> IdText {
        let (run, seq) = match &self.0 {
            Form::Hub { run, seq } => (run, seq),
            Form::Named(name) => return IdText(Text::Named(Arc::clone(name))),
        };
        let mut bytes = [0; MAX_HUB_ID];
        let mut out = Cursor::new(&mut bytes);
        // Never too long: the prefix, a run, a dash and a u64 fit `MAX_HUB_ID`.
        let _ = write!(out, "{HUB_PREFIX}{run}-{seq}");
        let len = out.len as u8;
        IdText(Text::Hub { bytes, len })
    }

    /// The `reset` event named by this id, saying `reason`. A client's
    /// next reconnect resumes from this id instead of asking about the
    /// one it could not resume from again.
    pub fn reset(&self, reason: ResetReason) -> Frame {
        Frame::event(&self.text(), Some("reset"), reason.data())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// An id written out: the hub's on the stack, a name shared; derefs to
/// `str`.
#[derive(Clone)]
pub struct IdText(Text);

#[derive(Clone)]
enum Text {
    Hub { bytes: [u8; MAX_HUB_ID], len: u8 },
    Named(Arc<str>),
}

impl Deref for IdText {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            // Written by `write!`, so UTF-8.
            Text::Hub { bytes, len } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Text::Named(name) => name,
        }
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A fixed buffer that `write!` fills; what does not fit is an error.
struct Cursor<'a, const N: usize> {
    buf: &'a mut [u8; N],
    len: usize,
}

impl<'a, const N: usize> Cursor<'a, N> {
    fn new(buf: &'a mut [u8; N]) -> Self {
        Cursor { buf, len: 0 }
    }
}

impl<const N: usize> fmt::Write for Cursor<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Whether `text` reads as one of the hub's cursors: an id of the hub's
/// (with the `urn:sseloop:` prefix, whatever follows, or in the bare
/// `<run>-<seq>` form), or `earliest`, which on the Mercure endpoint asks
/// for the whole history. A publisher may not name an event so: a client
/// resuming from it would be placed elsewhere in the order.
pub fn is_reserved(text: &str) -> bool {
    text.starts_with(HUB_PREFIX) || text == "earliest" || split(text).is_some()
}

/// The run and the digits of a well-formed id, the number not yet read.
fn split(text: &str) -> Option<(Run, &str)> {
    let text = text.strip_prefix(HUB_PREFIX).unwrap_or(text);
    let (run, digits) = text.split_once('-')?;
    let run = Run::parse(run.as_bytes())?;
    let digits_ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    digits_ok.then_some((run, digits))
}

/// One run as a loop sees it: its ids, and the sequence number in the
/// hub's order its ids count from (event `n` of the run is `base + n` in
/// the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    run: Run,
    base: u64,
}

impl Epoch {
    /// Run `run`, its ids counted from `base`.
    pub fn new(run: Run, base: u64) -> Epoch {
        Epoch { run, base }
    }

    /// Its run.
    pub fn run(&self) -> Run {
        self.run
    }

    /// Where its ids count from in the order.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The id of the event at `seq` in the order (the base itself has
    /// number 0: a new epoch's first `reset` is named by it).
    pub fn id(&self, seq: u64) -> EventId {
        debug_assert!(seq >= self.base, "{seq} is before this epoch");
        EventId::new(self.run, seq.saturating_sub(self.base))
    }

    /// Places a `Last-Event-ID`: the sequence number in the order to
    /// resume after, or why it cannot be resumed from. `newest` is the
    /// newest sequence number this id could name (delivered here, or
    /// known to be on its way), `oldest_kept` the oldest one still kept
    /// for replay (one past the newest delivered when none is).
    pub fn place(&self, text: &str, newest: u64, oldest_kept: u64) -> Result<u64, ResetReason> {
        let (run, digits) = split(text).ok_or(ResetReason::Invalid)?;
        if run != self.run {
            return Err(ResetReason::OtherRun);
        }
        let n: u64 = digits.parse().map_err(|_| ResetReason::Invalid)?;
        let seq = n.checked_add(self.base).ok_or(ResetReason::Invalid)?;
        if seq > newest {
            // An id from the future cannot be ours.
            return Err(ResetReason::Invalid);
        }
        if seq.saturating_add(1) < oldest_kept {
            return Err(ResetReason::Stale);
        }
        Ok(seq)
    }

    /// Places a `Last-Event-ID` of this epoch when it has ended: its ids
    /// up to number `last_valid` still name their events (a cluster's
    /// epoch that the next one continues from); a later one named an
    /// event that is gone, and is `OtherRun` like any other run's id.
    pub fn place_ended(
        &self,
        text: &str,
        last_valid: u64,
        oldest_kept: u64,
    ) -> Result<u64, ResetReason> {
        let (run, digits) = split(text).ok_or(ResetReason::Invalid)?;
        let n: u64 = digits.parse().map_err(|_| ResetReason::Invalid)?;
        if run != self.run || n > last_valid {
            return Err(ResetReason::OtherRun);
        }
        let seq = n.checked_add(self.base).ok_or(ResetReason::Invalid)?;
        if seq.saturating_add(1) < oldest_kept {
            return Err(ResetReason::Stale);
        }
        Ok(seq)
    }
}

/// Why a `Last-Event-ID` cannot be resumed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// Events after it have left the history.
    Stale,
    /// It was issued by an earlier run of the server.
    OtherRun,
    /// It is not an id this server issues.
    Invalid,
}

impl ResetReason {
    /// The `reset` event's data: a JSON object naming the case.
    pub fn data(self) -> &'static str {
        match self {
            ResetReason::Stale => {
                r#"{"reason":"stale","message":"events after this id are no longer retained; re-sync"}"#
            }
            ResetReason::OtherRun => {
                r#"{"reason":"other-run","message":"this id is from an earlier run of the server; re-sync"}"#
            }
            ResetReason::Invalid => {
                r#"{"reason":"invalid","message":"this is not an event id of this server; re-sync"}"#
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_wire_form_is_a_urn_of_the_run_and_the_number() {
        let id = EventId::new(run("0123456789ab"), 42);
        assert_eq!(id.to_string(), "urn:sseloop:0123456789ab-42");
        assert_eq!(&*id.text(), "urn:sseloop:0123456789ab-42");
        let longest = EventId::new(run("ffffffffffff"), u64::MAX);
        assert_eq!(
            &*longest.text(),
            "urn:sseloop:ffffffffffff-18446744073709551615"
        );
        assert_eq!(
            EventId::parse("urn:sseloop:0123456789ab-42"),
            Some(id.clone())
        );
        // The bare form of earlier versions is still read.
        assert_eq!(EventId::parse("0123456789ab-42"), Some(id.clone()));
        assert_eq!((id.run(), id.seq()), (run("0123456789ab"), 42));
    }

    #[test]
    fn a_named_id_is_its_name_and_names_in_the_hubs_form_are_told_apart() {
        let id = EventId::named("urn:uuid:1".into());
        assert_eq!(&*id.text(), "urn:uuid:1");
        assert_eq!(id.to_string(), "urn:uuid:1");
        let long: Arc<str> = "x".repeat(2000).into();
        assert_eq!(&*EventId::named(long.clone()).text(), &*long);
        for hub in [
            "urn:sseloop:0123456789ab-1",
            "urn:sseloop:",
            "urn:sseloop:anything",
            "0123456789ab-1",
            "earliest",
        ] {
            assert!(is_reserved(hub), "{hub}");
        }
        for name in [
            "urn:uuid:1",
            "urn:sseloo:x",
            "0123456789ab",
            "book-1",
            "#1",
            "Earliest",
        ] {
            assert!(!is_reserved(name), "{name}");
        }
    }

    #[test]
    fn drawn_runs_are_12_lowercase_hex_digits_and_differ() {
        let a = Run::draw();
        let b = Run::draw();
        assert_eq!(a.as_str().len(), 12);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, Run::NONE);
        assert_ne!(a, b, "48 random bits twice alike");
    }

    #[test]
    fn only_well_formed_ids_parse() {
        for bad in [
            "",
            "garbage",
            "0123456789ab",
            "0123456789ab-",
            "0123456789ab-x",
            "0123456789a-1",
            "0123456789abc-1",
            "0123456789ag-1",
            "0123456789ab-1-2",
            "0123456789ab-+1",
            "0123456789ab-18446744073709551616",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EventId::parse("urn:sseloop:0123456789ab-x"), None);
        assert_eq!(EventId::parse("URN:SSELOOP:0123456789ab-1"), None);
        // A run's letters keep their case: another case is another run.
        let upper = EventId::parse("0123456789AB-1").unwrap();
        assert_ne!(upper.run(), run("0123456789ab"));
        assert_eq!(upper.to_string(), "urn:sseloop:0123456789AB-1");
    }

    #[test]
    fn placing_an_id_against_an_epoch() {
        let epoch = Epoch::new(run("0123456789ab"), 0);
        // Events 4 and 5 are kept (oldest kept 4, newest 5).
        assert_eq!(epoch.place("0123456789ab-3", 5, 4), Ok(3));
        assert_eq!(epoch.place("urn:sseloop:0123456789ab-3", 5, 4), Ok(3));
        assert_eq!(epoch.place("0123456789ab-5", 5, 4), Ok(5));
        assert_eq!(epoch.place("0123456789ab-2", 5, 4), Err(ResetReason::Stale));
        assert_eq!(
            epoch.place("0123456789ab-6", 5, 4),
            Err(ResetReason::Invalid)
        );
        assert_eq!(
            epoch.place("000000000001-3", 5, 4),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(
            epoch.place("0123456789AB-3", 5, 4),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(epoch.place("garbage", 5, 4), Err(ResetReason::Invalid));
        assert_eq!(
            epoch.place("0123456789ab-99999999999999999999999", 5, 4),
            Err(ResetReason::Invalid)
        );
        // Another run's id is another run's even when its number overflows.
        assert_eq!(
            epoch.place("000000000001-99999999999999999999999", 5, 4),
            Err(ResetReason::OtherRun)
        );
    }

    #[test]
    fn a_later_epoch_counts_its_ids_from_its_base() {
        let epoch = Epoch::new(run("ba5eba5eba5e"), 10);
        assert_eq!(epoch.id(10).to_string(), "urn:sseloop:ba5eba5eba5e-0");
        assert_eq!(epoch.id(11).to_string(), "urn:sseloop:ba5eba5eba5e-1");
        assert_eq!(epoch.place("ba5eba5eba5e-0", 11, 11), Ok(10));
        assert_eq!(epoch.place("ba5eba5eba5e-1", 11, 11), Ok(11));
        assert_eq!(
            epoch.place("ba5eba5eba5e-2", 11, 11),
            Err(ResetReason::Invalid)
        );
        assert_eq!(
            epoch.place(&format!("ba5eba5eba5e-{}", u64::MAX), u64::MAX, 0),
            Err(ResetReason::Invalid)
        );
    }

    #[test]
    fn an_ended_epoch_places_its_ids_up_to_where_the_next_continued() {
        let ended = Epoch::new(run("0123456789ab"), 2);
        // Valid through number 98; order = 2 + n.
        assert_eq!(ended.place_ended("0123456789ab-98", 98, 50), Ok(100));
        assert_eq!(ended.place_ended("0123456789ab-60", 98, 50), Ok(62));
        assert_eq!(
            ended.place_ended("0123456789ab-10", 98, 50),
            Err(ResetReason::Stale)
        );
        // Numbers past it named events the next epoch does not have.
        assert_eq!(
            ended.place_ended("0123456789ab-99", 98, 50),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(
            ended.place_ended("ba5eba5eba5e-60", 98, 50),
            Err(ResetReason::OtherRun)
        );
        assert_eq!(ended.place_ended("junk", 98, 50), Err(ResetReason::Invalid));
    }

    #[test]
    fn a_reset_is_an_event_of_type_reset_named_by_the_id() {
        let frame = EventId::new(run("0123456789ab"), 7).reset(ResetReason::Stale);
        let text = std::str::from_utf8(frame.payload()).unwrap();
        assert_eq!(
            text,
            format!(
                "id: urn:sseloop:0123456789ab-7\nevent: reset\ndata: {}\n\n",
                ResetReason::Stale.data()
            )
        );
        for reason in [
            ResetReason::Stale,
            ResetReason::OtherRun,
            ResetReason::Invalid,
        ] {
            let data: serde_json::Value = serde_json::from_str(reason.data()).unwrap();
            assert!(data["reason"].is_string() && data["message"].is_string());
        }
    }
}
