//! What a node asks Redis: the two Lua scripts that keep the epoch and
//! the stream in step, and the commands that run them and read the
//! stream, each handed to a sender as its arguments.
//!
//! Both checks run in Lua, so that a check and what follows it are one
//! step for Redis: [`SYNC_SCRIPT`], which a node's reader runs on every
//! (re)connect and every idle second, and [`PUBLISH_SCRIPT`], which adds
//! an event only if the epoch and the stream are still those the node
//! knows.

use std::time::Duration;

use super::entry::stream_id;
use crate::bus::id::Run;
use crate::sse::Event;

/// Run on each (re)connect of a node's reader and whenever it has been
/// idle for a read's block: the epoch and the stream's last sequence
/// number. A new epoch begins (and the stream, stale, is deleted) when
/// there is none, or when the stream is behind what the node read from
/// it. KEYS: the epoch, the stream; ARGV: a fresh epoch, the epoch the
/// node knows (empty at its start), the newest sequence number it knows
/// there.
pub const SYNC_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[1])
local last = 0
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  last = tonumber(string.match(top[1][1], '^0%-(%d+)$'))
  if not last then
    return redis.error_reply('SSELOOP-FOREIGN ' .. KEYS[2] .. ' holds entries sseloop did not add')
  end
end
if (not epoch) or (epoch == ARGV[2] and last < tonumber(ARGV[3])) then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], epoch)
  last = 0
end
return {epoch, last}
"#;

/// Adds one event, only if the epoch is still the one the node publishes
/// in and the stream holds at least what the node knows was stored; the
/// entry names its epoch (a reader still on an older one, whose `XREAD`
/// waits on the key that a new epoch made anew, must not take the new
/// epoch's entries for its own). The reply is the entry's id. KEYS: the
/// epoch, the stream; ARGV: the epoch, the newest sequence number the
/// node knows, the stream's cap, then the entry's fields and values.
pub const PUBLISH_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SSELOOP-EPOCH the epoch has changed')
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = 0
if top[1] then last = tonumber(string.match(top[1][1], '^0%-(%d+)$')) or 0 end
if last < tonumber(ARGV[2]) then
  return redis.error_reply('SSELOOP-BEHIND the stream lost events')
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-*', 'epoch', ARGV[1], unpack(ARGV, 4))
"#;

/// The commands of one hub: its keys in Redis, and the cap of its stream.
#[derive(Debug)]
pub struct Commands {
    /// `<prefix>:epoch`.
    epoch: Vec<u8>,
    /// `<prefix>:events`.
    stream: Vec<u8>,
    /// The stream's cap, in decimal.
    cap: String,
}

impl Commands {
    /// The keys of the hub named `prefix`, its stream capped at `cap`.
    pub fn new(prefix: &str, cap: usize) -> Commands {
        Commands {
            epoch: format!("{prefix}:epoch").into_bytes(),
            stream: format!("{prefix}:events").into_bytes(),
            cap: cap.to_string(),
        }
    }

    /// The epoch check, with a `fresh` epoch to begin if one must, and the
    /// epoch and newest sequence number the node knows, if any.
    pub fn sync<R>(
        &self,
        fresh: Run,
        known: Option<(Run, u64)>,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let (run, seq) = known.unzip();
        let run = run.as_ref().map_or("", Run::as_str);
        let seq = seq.unwrap_or(0).to_string();
        send(&[
            b"EVAL",
            SYNC_SCRIPT.as_bytes(),
            b"2",
            &self.epoch,
            &self.stream,
            fresh.as_str().as_bytes(),
            run.as_bytes(),
            seq.as_bytes(),
        ])
    }

    /// Loading [`PUBLISH_SCRIPT`], for its SHA.
    pub fn load_publish<R>(send: impl FnOnce(&[&[u8]]) -> R) -> R {
        send(&[b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.as_bytes()])
    }

    /// Adding `event` in epoch `run`, where entries up to `known` are
    /// stored, by the loaded script `sha`.
    pub fn publish<R>(
        &self,
        sha: &[u8],
        run: Run,
        known: u64,
        event: &Event,
        send: impl FnOnce(&[&[u8]]) -> R,
    ) -> R {
        let known = known.to_string();
        let topics = event.topics().join("\n");
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            sha,
            b"2",
            &self.epoch,
            &self.stream,
            run.as_str().as_bytes(),
            known.as_bytes(),
            self.cap.as_bytes(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(args: &[&[u8]]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn commands_name_the_hubs_keys() {
        let keys = Commands::new("hub", 2048);
        let fresh = Run::parse(b"0123456789ab").unwrap();
        let sync = keys.sync(fresh, None, texts);
        assert_eq!(sync[0], "EVAL");
        assert_eq!(
            sync[2..],
            ["2", "hub:epoch", "hub:events", "0123456789ab", "", "0"]
        );
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
        let publish = keys.publish(b"sha", fresh, 7, &event, texts);
        assert_eq!(
            publish[1..],
            [
                "sha",
                "2",
                "hub:epoch",
                "hub:events",
                "0123456789ab",
                "7",
                "2048",
                "data",
                "d",
                "event",
                "t",
                "topics",
                "a\nb"
            ]
        );
        let broadcast = keys.publish(b"sha", fresh, 7, &Event::new("d"), texts);
        assert_eq!(broadcast.len(), 10, "no type, no topics: {broadcast:?}");
    }
}
