//! What a node asks Redis: the Lua scripts that keep the epoch, the
//! stream and the publishers' keys in step, and the commands that run them
//! and read the stream, each handed to a sender as its arguments.
//!
//! The checks run in Lua, so that a check and what follows it are one
//! step for Redis (and one step on every replica, which gets a script's
//! writes together): [`SYNC_SCRIPT`], which a node's reader runs on every
//! (re)connect and every idle second; [`PUBLISH_SCRIPT`], which adds an
//! event only if the epoch and the stream are still those the node knows,
//! and adds nothing for a key it has seen; and [`READ_SCRIPT`], the
//! reader's careful read after a reply it could not read, which hands
//! over an entry over [`MAX_ENTRY_BYTES`] as a stub and leaves out fields
//! sseloop does not use.
//!
//! Entries another program added with ids sseloop does not number
//! (`XADD … *`: time-based ids, which sort after every `0-<n>`) would stop
//! every later `XADD … 0-*`; both the epoch check and a publish remove
//! them (at most 1 000 a call, bounding the script's time) and set the
//! stream's last id back, and say how many they removed.

use std::time::Duration;

use std::net::SocketAddr;

use super::entry::stream_id;
use super::epoch::Current;
use crate::bus::Publish;
use crate::bus::id::Run;
use crate::config::MAX_CLUSTER_EVENT_SIZE;

/// The most bytes one stream entry may hold, its field names and values
/// together: the largest event a node takes, plus room for its other
/// fields. A publish over it is refused; an entry over it (another
/// program's) is read as a stub and skipped, so no node ever needs more
/// to read any entry.
pub const MAX_ENTRY_BYTES: usize = MAX_CLUSTER_EVENT_SIZE + (64 << 10);
/// Most topics one stream entry may carry. A publish with more is refused
/// before it is sent; an entry with more (another program's) is skipped
/// unread, so that no entry makes a node allocate for millions. No HTTP
/// publish comes near: `/publish`'s 8 KiB head holds fewer, and a
/// cluster node's `--max-topics` is at most this.
pub const MAX_ENTRY_TOPICS: usize = crate::config::MAX_CLUSTER_TOPICS;
/// The fields of an entry sseloop reads; the careful read leaves out the
/// rest.
pub const ENTRY_FIELDS: [&str; 7] = ["epoch", "data", "event", "topics", "id", "retry", "private"];

/// Lua shared by the scripts (the scripts' text is in the binary, so
/// their comments are here): `seq_of`, the sequence number of an id
/// `0-<n>`; `clear_foreign`, which removes entries with ids sseloop does
/// not number from the top of a stream (they sort after every `0-<n>`),
/// at most 1 000 a call, and sets its last id back to the last `0-<n>`
/// (never below `known`, the newest the caller knows), so that `XADD 0-*`
/// works again (with `force`, also when none was found: another program's
/// `XADD *` left the last id past every entry), returning how many it
/// removed; `last_of`, the stream's last entry's sequence number (0:
/// none) and how many foreign entries were removed to find it.
macro_rules! lua_prelude {
    () => {
        r#"
local function seq_of(id)
  return tonumber(string.match(id, '^0%-(%d+)$'))
end
local function clear_foreign(stream, known, force)
  local removed, kept = 0, 0
  repeat
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 100)
    local done = #top < 100
    for _, e in ipairs(top) do
      local seq = seq_of(e[1])
      if seq then kept = seq; done = true; break end
      redis.call('XDEL', stream, e[1])
      removed = removed + 1
    end
  until done or removed >= 1000
  if removed > 0 or force then
    redis.pcall('XSETID', stream, '0-' .. math.max(kept, known))
  end
  return removed
end
local function last_of(stream, known)
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if not top[1] then return 0, 0 end
  local seq = seq_of(top[1][1])
  if seq then return seq, 0 end
  local removed = clear_foreign(stream, known, false)
  top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  return (top[1] and seq_of(top[1][1])) or 0, removed
end
"#
    };
}

/// Run on each (re)connect of a node's reader and whenever it has been
/// idle for a read's block: the epoch's value, the stream's last sequence
/// number, and how many foreign entries were removed. A new epoch begins
/// when there is none (the stream and keys, stale, are deleted: it begins
/// after 0), when the stream is behind what the node read from it (Redis
/// restored an older copy), or, with Sentinel, when the epoch began on
/// another primary than the one the node reads from (a failover): these
/// two continue the stream, beginning after its last entry, so that no
/// number another node handed out is given again under the same epoch.
/// The value is `<run>[ <from>[ <primary>]]` (see `epoch`). KEYS:
/// the epoch, the stream, the keys; ARGV: a fresh run, the epoch value the
/// node knows (empty at its start), the newest sequence number it knows
/// there, the primary's address (empty without Sentinel).
pub const SYNC_SCRIPT: &str = concat!(
    lua_prelude!(),
    r#"
local value = redis.call('GET', KEYS[1])
local known = tonumber(ARGV[3])
local last, removed = last_of(KEYS[2], known)
local from = nil
if not value then
  redis.call('DEL', KEYS[2], KEYS[3])
  last = 0
  from = 0
elseif value == ARGV[2] and last < known then
  from = last
elseif ARGV[4] ~= '' and string.match(value, '^%S+ %d+ (%S+)$') ~= ARGV[4] then
  from = last
end
if from then
  value = ARGV[1]
  if from > 0 or ARGV[4] ~= '' then value = value .. ' ' .. from end
  if ARGV[4] ~= '' then value = value .. ' ' .. ARGV[4] end
  redis.call('SET', KEYS[1], value)
end
return {value, last, removed}
"#
);

/// Adds one event, only if the epoch is still the one the node publishes
/// in (and, with Sentinel, began on the primary the node writes to) and
/// the stream holds at least what the node knows was stored; the entry
/// names its epoch's run (a reader still on an older one, whose `XREAD`
/// waits on the key that a new epoch made anew, must not take the new
/// epoch's entries for its own). With a key (not empty): the keys of
/// events that left the stream are forgotten, and a key still known adds
/// nothing: the reply is the first event's (after a write, the epoch set
/// again, so that a `WAIT` after it waits for the first event too). An
/// `XADD` refused because another program's `XADD *` left the stream's
/// last id past every `0-<n>` is tried again once that is cleared. The
/// stream numbered up to 2^53 by another program (past which readers skip
/// entries, [`MAX_SEQ`](super::reader::MAX_SEQ)) refuses the publish
/// rather than store an event no node would deliver. The
/// reply is `{"stored", id, removed}` (removed: foreign entries cleared
/// first) or `{"again", id, run[, name]}` (name: the first event's `id`
/// field, when its publisher named it). KEYS: the epoch, the stream, the keys; ARGV: the epoch's value,
/// its run, the newest sequence number the node knows, the stream's cap,
/// the key, the most bytes an entry may hold, the primary's address
/// (empty without Sentinel), then the entry's fields and values.
pub const PUBLISH_SCRIPT: &str = concat!(
    lua_prelude!(),
    r#"
local value = redis.call('GET', KEYS[1])
if value ~= ARGV[1] then
  return redis.error_reply('SSELOOP-EPOCH the epoch has changed')
end
if ARGV[7] ~= '' and string.match(value, '^%S+ %d+ (%S+)$') ~= ARGV[7] then
  return redis.error_reply('SSELOOP-MOVED the epoch began on another primary')
end
local known = tonumber(ARGV[3])
local last, removed = last_of(KEYS[2], known)
if last < known then
  return redis.error_reply('SSELOOP-BEHIND the stream lost events')
end
if last >= 9007199254740992 then
  return redis.error_reply('SSELOOP-NUMBERED-OUT the stream is numbered up to 2^53, past which readers skip entries (another program wrote one): delete the stream to go on')
end
local key = ARGV[5]
if key ~= '' then
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  local oldest = first[1] and seq_of(first[1][1])
  if oldest then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
  else
    redis.call('DEL', KEYS[3])
  end
  local seq = redis.call('ZSCORE', KEYS[3], key)
  if seq then
    local id = '0-' .. seq
    local entry = redis.call('XRANGE', KEYS[2], id, id)
    if entry[1] then
      local fields = entry[1][2]
      local run, name = nil, nil
      for i = 1, #fields, 2 do
        if fields[i] == 'epoch' then run = fields[i + 1] end
        if fields[i] == 'id' then name = fields[i + 1] end
      end
      if run then
        redis.call('SET', KEYS[1], value)
        if name then return {'again', id, run, name} end
        return {'again', id, run}
      end
    end
  end
end
local size = 0
for i = 8, #ARGV do size = size + #ARGV[i] end
if size > tonumber(ARGV[6]) then
  return redis.error_reply('SSELOOP-TOO-LARGE the event is over the cluster bound')
end
local id = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'epoch', ARGV[2], unpack(ARGV, 8))
if type(id) == 'table' then
  removed = removed + clear_foreign(KEYS[2], known, true)
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-*', 'epoch', ARGV[2], unpack(ARGV, 8))
end
if key ~= '' then
  redis.call('ZADD', KEYS[3], seq_of(id), key)
end
return {'stored', id, removed}
"#
);

/// The reader's careful read, after a reply it could not read: the
/// entries after `ARGV[1]` (at most `ARGV[2]`) in `XREAD`'s shape, each
/// over `ARGV[3]` bytes as a stub `{sseloop-skip, "<n> bytes"}`, the
/// others with only the fields named in the rest of `ARGV`; nil when
/// there is none. KEYS: the stream.
pub const READ_SCRIPT: &str = r#"
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
if #entries == 0 then return false end
local keep = {}
for i = 4, #ARGV do keep[ARGV[i]] = true end
local out = {}
for i, e in ipairs(entries) do
  local size = 0
  for _, v in ipairs(e[2]) do size = size + #v end
  if size > tonumber(ARGV[3]) then
    out[i] = {e[1], {'sseloop-skip', size .. ' bytes'}}
  else
    local fields = {}
    for j = 1, #e[2], 2 do
      if keep[e[2][j]] then
        fields[#fields + 1] = e[2][j]
        fields[#fields + 1] = e[2][j + 1]
      end
    end
    out[i] = {e[1], fields}
  end
end
return {{KEYS[1], out}}
"#;

/// The commands of one hub: its keys in Redis, and the cap of its stream.
#[derive(Debug)]
pub struct Commands {
    /// `<prefix>:epoch`.
    epoch: Vec<u8>,
    /// `<prefix>:events`.
    stream: Vec<u8>,
    /// `<prefix>:keys`: the publishers' keys, by sequence number.
    keys: Vec<u8>,
    /// The stream's cap, in decimal.
    cap: String,
}

impl Commands {
    /// The keys of the hub named `prefix`, its stream capped at `cap`.
    pub fn new(prefix: &str, cap: usize) -> Commands {
        Commands {
            epoch: format!("{prefix}:epoch").into_bytes(),
            stream: format!("{prefix}:events").into_bytes(),
            keys: format!("{prefix}:keys").into_bytes(),
            cap: cap.to_string(),
        }
    }

    /// The epoch check, with a `fresh` run to begin an epoch with if one
    /// must, the epoch's value and newest sequence number the node knows,
    /// if any, and the primary it reads from (with Sentinel).
    pub fn sync<R>(
        &self,
        fresh: Run,
        known: Option<(&str, u64)>,
        primary: Option<SocketAddr>,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let (value, seq) = known.unzip();
        let seq = seq.unwrap_or(0).to_string();
        let primary = primary.map_or_else(String::new, |p| p.to_string());
        send(&[
            b"EVAL",
            SYNC_SCRIPT.as_bytes(),
            b"3",
            &self.epoch,
            &self.stream,
            &self.keys,
            fresh.as_str().as_bytes(),
            value.unwrap_or("").as_bytes(),
            seq.as_bytes(),
            primary.as_bytes(),
        ])
    }

    /// Loading [`PUBLISH_SCRIPT`], for its SHA.
    pub fn load_publish<R>(send: impl FnOnce(&[&[u8]]) -> R) -> R {
        send(&[b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.as_bytes()])
    }

    /// Adding `publish` in the epoch `current`, by the loaded script
    /// `sha`, on the primary at `primary` (with Sentinel).
    pub fn publish<R>(
        &self,
        sha: &[u8],
        current: &Current,
        publish: &Publish,
        primary: Option<SocketAddr>,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let event = &publish.event;
        let known = current.known.to_string();
        let bound = MAX_ENTRY_BYTES.to_string();
        let primary = primary.map_or_else(String::new, |p| p.to_string());
        let topics = event.topics().join("\n");
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            sha,
            b"3",
            &self.epoch,
            &self.stream,
            &self.keys,
            current.value.as_bytes(),
            current.run.as_str().as_bytes(),
            known.as_bytes(),
            self.cap.as_bytes(),
            publish.key.as_deref().unwrap_or("").as_bytes(),
            bound.as_bytes(),
            primary.as_bytes(),
            b"data",
            event.data().as_bytes(),
        ];
        if let Some(t) = event.event_type() {
            args.extend([&b"event"[..], t.as_bytes()]);
        }
        if !topics.is_empty() {
            args.extend([&b"topics"[..], topics.as_bytes()]);
        }
        let retry = event.retry().map(|r| (r.as_millis() as u64).to_string());
        if let Some(id) = event.id() {
            args.extend([&b"id"[..], id.as_bytes()]);
        }
        if let Some(retry) = &retry {
            args.extend([&b"retry"[..], retry.as_bytes()]);
        }
        if event.is_private() {
            args.extend([&b"private"[..], &b"1"[..]]);
        }
        send(&args)
    }

    /// Reading at most `count` entries after entry `after`, waiting up to
    /// `block` for the first.
    pub fn read<R>(
        &self,
        after: u64,
        count: usize,
        block: Duration,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let from = stream_id(after);
        let count = count.to_string();
        let block = block.as_millis().to_string();
        send(&[
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            &self.stream,
            from.as_bytes(),
        ])
    }

    /// The careful read ([`READ_SCRIPT`]) of at most `count` entries after
    /// entry `after`, without waiting.
    pub fn read_carefully<R>(
        &self,
        after: u64,
        count: usize,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let from = stream_id(after);
        let count = count.to_string();
        let bound = MAX_ENTRY_BYTES.to_string();
        let mut args: Vec<&[u8]> = vec![
            b"EVAL",
            READ_SCRIPT.as_bytes(),
            b"1",
            &self.stream,
            from.as_bytes(),
            count.as_bytes(),
            bound.as_bytes(),
        ];
        args.extend(ENTRY_FIELDS.iter().map(|f| f.as_bytes()));
        send(&args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Event;

    fn texts(args: &[&[u8]]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn commands_name_the_hubs_keys() {
        let keys = Commands::new("hub", 2048);
        let fresh = Run::parse(b"0123456789ab").unwrap();
        let sync = keys.sync(fresh, None, None, texts);
        assert_eq!(sync[0], "EVAL");
        assert_eq!(
            sync[2..],
            [
                "3",
                "hub:epoch",
                "hub:events",
                "hub:keys",
                "0123456789ab",
                "",
                "0",
                ""
            ]
        );
        let primary = "10.0.0.1:6380".parse().ok();
        let sync = keys.sync(fresh, Some(("ba5eba5eba5e 9", 12)), primary, texts);
        assert_eq!(sync[7..], ["ba5eba5eba5e 9", "12", "10.0.0.1:6380"]);
        let read = keys.read(41, 256, Duration::from_secs(1), texts);
        assert_eq!(
            read,
            [
                "XREAD",
                "COUNT",
                "256",
                "BLOCK",
                "1000",
                "STREAMS",
                "hub:events",
                "0-41"
            ]
        );
        let event = Event::new("d")
            .with_type("t")
            .with_topic("a")
            .with_topic("b");
        let current = Current {
            value: "0123456789ab 5 10.0.0.1:6380".into(),
            run: fresh,
            from: 5,
            known: 7,
        };
        let keyed = Publish::keyed(event, Some("k".into()));
        let publish = keys.publish(b"sha", &current, &keyed, primary, texts);
        let bound = MAX_ENTRY_BYTES.to_string();
        assert_eq!(
            publish[1..],
            [
                "sha",
                "3",
                "hub:epoch",
                "hub:events",
                "hub:keys",
                "0123456789ab 5 10.0.0.1:6380",
                "0123456789ab",
                "7",
                "2048",
                "k",
                &bound,
                "10.0.0.1:6380",
                "data",
                "d",
                "event",
                "t",
                "topics",
                "a\nb"
            ]
        );
        let plain = Publish::new(Event::new("d"));
        let broadcast = keys.publish(b"sha", &current, &plain, None, texts);
        assert_eq!(broadcast.len(), 15, "no type, no topics: {broadcast:?}");
        assert_eq!(
            (&*broadcast[10], &*broadcast[12]),
            ("", ""),
            "no key, no primary"
        );
        let careful = keys.read_carefully(41, 30, texts);
        assert_eq!(careful[2..7], ["1", "hub:events", "0-41", "30", &bound]);
        assert_eq!(careful[7..], ENTRY_FIELDS);
    }
}
