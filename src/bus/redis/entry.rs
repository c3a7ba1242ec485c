//! Redis's replies, decoded into what a node acts on: the epoch check's
//! answer, a read's stream entries, a publish's stored entry, the loaded
//! script. Pure: values in, decisions' inputs out.
//!
//! A stream entry another writer may have added is taken as far as it is
//! valid: a type or topic an HTTP publish could not have named is left
//! out, and an entry that is not an event at all ([`Item::Unreadable`]),
//! or whose id sseloop does not number ([`Item::Foreign`]), is told apart,
//! so that no entry, whatever it holds, stops the reader.

use std::sync::Arc;

use super::conn;
use super::epoch::parse_value;
use crate::bus::id::{self, EventId, Run};
use crate::bus::resp::Value;
use crate::sse::{Frame, valid_event_type, valid_id, valid_topic};

/// The sequence part of a stream id `0-<seq>`.
pub fn stream_seq(id: &[u8]) -> Option<u64> {
    let digits = id.strip_prefix(b"0-")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The stream id of entry `seq`.
pub fn stream_id(seq: u64) -> String {
    format!("0-{seq}")
}

/// One stream entry, as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the stream.
    pub seq: u64,
    /// The epoch it was added in (`None`: not named, or not one).
    pub epoch: Option<Run>,
    /// Its data.
    pub data: String,
    /// Its type, when valid.
    pub event_type: Option<String>,
    /// Its valid topics.
    pub topics: Arc<[Box<str>]>,
    /// The id its publisher gave it, when valid and not one the hub
    /// reserves (see `id::is_reserved`).
    pub name: Option<Arc<str>>,
    /// Its `retry:`, in milliseconds.
    pub retry: Option<u64>,
    /// Private (Mercure's flag).
    pub private: bool,
}

impl Entry {
    /// Its id: its publisher's, or `hub_id`.
    pub fn id(&self, hub_id: EventId) -> EventId {
        self.name.clone().map_or(hub_id, EventId::named)
    }

    /// The event encoded once, under `id`.
    pub fn frame(&self, id: &EventId) -> Frame {
        Frame::encode(
            &id.text(),
            self.event_type.as_deref(),
            self.retry,
            &self.data,
        )
    }
}

/// One entry of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An event.
    Event(Entry),
    /// Entry `seq` is not an event: fields of the wrong shape, or over the
    /// bound of an entry (the careful read's stub).
    Unreadable {
        /// Its place in the stream.
        seq: u64,
        /// What is wrong with it.
        why: String,
    },
    /// An entry whose id is not `0-<seq>` (another program's `XADD … *`).
    Foreign(String),
}

/// What the epoch check ([`super::scripts::SYNC_SCRIPT`]) answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// The epoch, and the stream's last sequence number.
    Epoch {
        /// The epoch's value in Redis.
        value: Arc<str>,
        /// The epoch's run.
        run: Run,
        /// The stream's sequence number it began after.
        from: u64,
        /// The last entry's sequence number (0: none).
        last: u64,
        /// Foreign entries it removed from the stream.
        removed: u64,
    },
    /// An error or a reply of another shape.
    Failed {
        /// What Redis said.
        why: String,
        /// Redis cannot serve now but will (see [`conn::is_transient`]).
        transient: bool,
    },
}

/// Decodes the epoch check's answer.
pub fn synced(value: Value) -> Synced {
    if let Value::Array(items) = &value
        && let [
            Value::Bulk(text),
            Value::Integer(last),
            Value::Integer(removed),
        ] = &items[..]
        && let (Some((run, from)), Ok(last), Ok(removed)) = (
            parse_value(text),
            u64::try_from(*last),
            u64::try_from(*removed),
        )
    {
        return Synced::Epoch {
            value: Arc::from(String::from_utf8_lossy(text)),
            run,
            from,
            last,
            removed,
        };
    }
    match value.error() {
        Some(e) => Synced::Failed {
            why: String::from_utf8_lossy(e).into_owned(),
            transient: conn::is_transient(e),
        },
        None => Synced::Failed {
            why: format!("unexpected answer to the epoch check: {value:?}"),
            transient: false,
        },
    }
}

/// What a read (`XREAD`, or the careful read) answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The entries after the one asked from, in order.
    Entries(Vec<Item>),
    /// Nothing came for the whole block.
    Idle,
    /// An error, or a reply of another shape.
    Failed(String),
}

/// Decodes a read's answer: the entries of its one stream.
pub fn read(value: Value) -> Read {
    match value {
        Value::Nil => Read::Idle,
        Value::Array(streams) => {
            let entries = streams
                .into_iter()
                .next()
                .and_then(Value::into_array)
                .and_then(|stream| stream.into_iter().nth(1))
                .and_then(Value::into_array)
                .unwrap_or_default();
            Read::Entries(entries.into_iter().map(entry).collect())
        }
        Value::Error(e) => Read::Failed(format!("read: {}", String::from_utf8_lossy(&e))),
        other => Read::Failed(format!("unexpected answer to a read: {other:?}")),
    }
}

/// One entry `[id, [field, value, …]]`, as an event if it is one.
fn entry(value: Value) -> Item {
    let parts = match value {
        Value::Array(parts) if parts.len() == 2 => parts,
        other => return Item::Foreign(format!("{other:?}")),
    };
    let [id, fields] = <[Value; 2]>::try_from(parts).unwrap_or([Value::Nil, Value::Nil]);
    let Some(seq) = id.bytes().and_then(stream_seq) else {
        let shown = id.bytes().map_or_else(
            || format!("{id:?}"),
            |b| String::from_utf8_lossy(b).into_owned(),
        );
        return Item::Foreign(shown);
    };
    let Some(fields) = fields.into_array() else {
        return Item::Unreadable {
            seq,
            why: "its fields are not a list".into(),
        };
    };
    let mut entry = Entry {
        seq,
        epoch: None,
        data: String::new(),
        event_type: None,
        topics: Arc::from([]),
        name: None,
        retry: None,
        private: false,
    };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Some(name), Some(value)) = (name.bytes(), value.bytes()) else {
            continue;
        };
        match name {
            b"sseloop-skip" => {
                let size = String::from_utf8_lossy(value);
                let why = format!(
                    "{size}, over the {} bytes an entry may hold",
                    super::scripts::MAX_ENTRY_BYTES
                );
                return Item::Unreadable { seq, why };
            }
            b"epoch" => entry.epoch = Run::parse(value),
            b"data" => entry.data = String::from_utf8_lossy(value).into_owned(),
            b"event" => {
                let value = String::from_utf8_lossy(value);
                if valid_event_type(&value) && !value.is_empty() {
                    entry.event_type = Some(value.into_owned());
                }
            }
            b"topics" => {
                let max = super::scripts::MAX_ENTRY_TOPICS;
                if value.split(|&b| b == b'\n').nth(max).is_some() {
                    let why = format!("more than {max} topics");
                    return Item::Unreadable { seq, why };
                }
                entry.topics = String::from_utf8_lossy(value)
                    .split('\n')
                    .filter(|t| valid_topic(t))
                    .map(Box::from)
                    .collect();
            }
            b"id" => {
                let value = String::from_utf8_lossy(value);
                if valid_id(&value) && !id::is_reserved(&value) {
                    entry.name = Some(value.into());
                }
            }
            b"retry" => {
                entry.retry = std::str::from_utf8(value).ok().and_then(|r| r.parse().ok());
            }
            b"private" => entry.private = true,
            _ => {}
        }
    }
    Item::Event(entry)
}

/// What a publish ([`super::scripts::PUBLISH_SCRIPT`]) answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Added as this entry, after removing `removed` foreign entries.
    At {
        /// The entry's sequence number.
        seq: u64,
        /// Foreign entries removed first.
        removed: u64,
    },
    /// Its key was known: the first event's entry, in epoch `run`.
    Again {
        /// The first event's sequence number.
        seq: u64,
        /// The epoch the first event was stored in.
        run: Run,
        /// The id the first event's publisher gave it, if any: its id.
        name: Option<Arc<str>>,
    },
    /// Not added: the script's own refusal (the epoch changed, the stream
    /// lost events: expected while Redis recovers) or Redis's.
    Refused {
        /// What Redis said.
        why: String,
        /// The script's own refusal.
        expected: bool,
    },
    /// Redis no longer has the script (flushed): the connection loads it
    /// again when it reconnects.
    ScriptGone,
    /// A reply of another shape.
    Unexpected(String),
}

/// Decodes a publish's answer.
pub fn stored(value: &Value) -> Stored {
    match value {
        Value::Array(items) => match &items[..] {
            [Value::Bulk(kind), Value::Bulk(id), Value::Integer(removed)]
                if kind == b"stored" && stream_seq(id).is_some() =>
            {
                Stored::At {
                    seq: stream_seq(id).unwrap_or(0),
                    removed: u64::try_from(*removed).unwrap_or(0),
                }
            }
            [
                Value::Bulk(kind),
                Value::Bulk(id),
                Value::Bulk(run),
                name @ ..,
            ] if kind == b"again" && name.len() <= 1 => {
                let name = match name {
                    [Value::Bulk(name)] => std::str::from_utf8(name)
                        .ok()
                        .filter(|n| valid_id(n) && !id::is_reserved(n))
                        .map(Arc::from),
                    _ => None,
                };
                match (stream_seq(id), Run::parse(run)) {
                    (Some(seq), Some(run)) => Stored::Again { seq, run, name },
                    _ => Stored::Unexpected(format!("{value:?}")),
                }
            }
            _ => Stored::Unexpected(format!("{value:?}")),
        },
        Value::Error(e) if e.starts_with(b"NOSCRIPT") => Stored::ScriptGone,
        Value::Error(e) => Stored::Refused {
            why: String::from_utf8_lossy(e).into_owned(),
            expected: e.starts_with(b"SSELOOP-"),
        },
        other => Stored::Unexpected(format!("{other:?}")),
    }
}

/// Decodes `SCRIPT LOAD`'s answer: the script's SHA, or why not and
/// whether trying again may help.
pub fn loaded(value: Value) -> Result<Vec<u8>, (String, bool)> {
    match value {
        Value::Bulk(sha) => Ok(sha),
        other => Err((
            format!("cannot load the publish script: {other:?}"),
            other.error().is_some_and(conn::is_transient),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn run(text: &str) -> Run {
        Run::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn stream_ids_carry_the_sequence() {
        assert_eq!(stream_seq(b"0-1"), Some(1));
        assert_eq!(stream_seq(b"0-18446744073709551615"), Some(u64::MAX));
        assert_eq!(stream_seq(stream_id(42).as_bytes()), Some(42));
        for bad in [
            &b"1-1"[..],
            b"0-",
            b"0-x",
            b"0-1-2",
            b"",
            b"0-18446744073709551616",
        ] {
            assert_eq!(stream_seq(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn entry_fields_are_taken_as_far_as_they_are_valid() {
        let full = Value::Array(vec![
            bulk("0-7"),
            Value::Array(vec![
                bulk("epoch"),
                bulk("0123456789ab"),
                bulk("data"),
                bulk("a\nb"),
                bulk("event"),
                bulk("progress"),
                bulk("topics"),
                bulk("job\n\nother"),
                bulk("id"),
                bulk("urn:uuid:1"),
                bulk("retry"),
                bulk("1500"),
                bulk("private"),
                bulk(""),
            ]),
        ]);
        assert_eq!(
            entry(full),
            Item::Event(Entry {
                seq: 7,
                epoch: Some(run("0123456789ab")),
                data: "a\nb".into(),
                event_type: Some("progress".into()),
                topics: Arc::from([Box::from("job"), Box::from("other")]),
                name: Some("urn:uuid:1".into()),
                retry: Some(1500),
                private: true,
            })
        );
        let odd = Value::Array(vec![
            bulk("0-8"),
            Value::Array(vec![
                bulk("event"),
                bulk("bad\rtype"),
                Value::Integer(3),
                bulk("ignored"),
                bulk("epoch"),
                bulk("not-an-epoch"),
                bulk("id"),
                bulk("urn:sseloop:0123456789ab-3"),
                bulk("retry"),
                bulk("soon"),
                bulk("data"),
            ]),
        ]);
        let Item::Event(odd) = entry(odd) else {
            panic!("an event");
        };
        assert_eq!(
            (odd.epoch, odd.data.as_str(), odd.event_type),
            (None, "", None)
        );
        assert!(odd.topics.is_empty());
        // An id in the hub's form is not a name; a retry not a number is none.
        assert_eq!((odd.name, odd.retry, odd.private), (None, None, false));
    }

    /// An entry may carry at most `MAX_ENTRY_TOPICS` topics: one with
    /// more, however many (another program's), is not an event, and is
    /// told apart without a topic list made for them.
    #[test]
    fn an_entry_with_too_many_topics_is_not_an_event() {
        use super::super::scripts::MAX_ENTRY_TOPICS;
        let with_topics = |n: usize| {
            let topics: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
            Value::Array(vec![
                bulk("0-4"),
                Value::Array(vec![bulk("topics"), bulk(&topics.join("\n"))]),
            ])
        };
        let Item::Event(at_most) = entry(with_topics(MAX_ENTRY_TOPICS)) else {
            panic!("an event");
        };
        assert_eq!(at_most.topics.len(), MAX_ENTRY_TOPICS);
        for n in [MAX_ENTRY_TOPICS + 1, 1 << 20] {
            assert!(
                matches!(entry(with_topics(n)), Item::Unreadable { seq: 4, ref why } if why.contains("topics")),
                "{n}"
            );
        }
        // Empty pieces count: what is carried, not what is valid.
        let blank = Value::Array(vec![
            bulk("0-5"),
            Value::Array(vec![bulk("topics"), bulk(&"\n".repeat(1 << 20))]),
        ]);
        assert!(matches!(entry(blank), Item::Unreadable { seq: 5, .. }));
    }

    #[test]
    fn what_is_not_an_event_is_told_apart() {
        for value in [
            bulk("0-1"),
            Value::Array(vec![bulk("0-1")]),
            Value::Array(vec![bulk("1-1"), Value::Array(vec![])]),
            Value::Array(vec![bulk("1712345678901-0"), Value::Array(vec![])]),
        ] {
            assert!(
                matches!(entry(value.clone()), Item::Foreign(_)),
                "{value:?}"
            );
        }
        assert_eq!(
            entry(Value::Array(vec![bulk("1712345678901-0"), Value::Nil])),
            Item::Foreign("1712345678901-0".into())
        );
        assert!(matches!(
            entry(Value::Array(vec![bulk("0-1"), bulk("fields")])),
            Item::Unreadable { seq: 1, .. }
        ));
        // The careful read's stub of an entry over the bound.
        let stub = Value::Array(vec![
            bulk("0-3"),
            Value::Array(vec![bulk("sseloop-skip"), bulk("2000000 bytes")]),
        ]);
        assert!(
            matches!(entry(stub), Item::Unreadable { seq: 3, why } if why.starts_with("2000000 bytes, over"))
        );
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("sseloop:events"),
            Value::Array(vec![
                bulk("junk"),
                Value::Array(vec![bulk("0-2"), Value::Array(vec![])]),
            ]),
        ])]);
        let Read::Entries(entries) = read(reply) else {
            panic!("entries");
        };
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0], Item::Foreign(_)));
        assert!(matches!(&entries[1], Item::Event(e) if e.seq == 2));
        assert_eq!(read(Value::Nil), Read::Idle);
        assert!(matches!(read(Value::Integer(1)), Read::Failed(_)));
        assert!(
            matches!(read(Value::Error(b"ERR x".to_vec())), Read::Failed(why) if why == "read: ERR x")
        );
    }

    #[test]
    fn the_epoch_check_answers_an_epoch_or_why_not() {
        let ok = Value::Array(vec![
            bulk("0123456789ab"),
            Value::Integer(5),
            Value::Integer(2),
        ]);
        assert_eq!(
            synced(ok),
            Synced::Epoch {
                value: "0123456789ab".into(),
                run: run("0123456789ab"),
                from: 0,
                last: 5,
                removed: 2,
            }
        );
        let continued = Value::Array(vec![
            bulk("0123456789ab 3 10.0.0.1:6380"),
            Value::Integer(5),
            Value::Integer(0),
        ]);
        assert!(matches!(
            synced(continued),
            Synced::Epoch { from: 3, last: 5, value, .. } if &*value == "0123456789ab 3 10.0.0.1:6380"
        ));
        let busy = synced(Value::Error(b"LOADING Redis is loading".to_vec()));
        assert!(matches!(
            busy,
            Synced::Failed {
                transient: true,
                ..
            }
        ));
        let foreign = synced(Value::Error(b"SSELOOP-FOREIGN k holds entries".to_vec()));
        assert!(matches!(
            foreign,
            Synced::Failed {
                transient: false,
                ..
            }
        ));
        for odd in [
            Value::Array(vec![bulk("short"), Value::Integer(5), Value::Integer(0)]),
            Value::Array(vec![
                bulk("0123456789ab"),
                Value::Integer(-1),
                Value::Integer(0),
            ]),
            Value::Array(vec![bulk("0123456789ab"), Value::Integer(5)]),
            Value::Nil,
        ] {
            assert!(matches!(
                synced(odd),
                Synced::Failed {
                    transient: false,
                    ..
                }
            ));
        }
    }

    #[test]
    fn a_publish_answers_its_entry_or_why_not() {
        let reply = |items: Vec<Value>| Value::Array(items);
        assert_eq!(
            stored(&reply(vec![bulk("stored"), bulk("0-9"), Value::Integer(0)])),
            Stored::At { seq: 9, removed: 0 }
        );
        assert_eq!(
            stored(&reply(vec![bulk("stored"), bulk("0-9"), Value::Integer(3)])),
            Stored::At { seq: 9, removed: 3 }
        );
        assert_eq!(
            stored(&reply(vec![
                bulk("again"),
                bulk("0-4"),
                bulk("0123456789ab")
            ])),
            Stored::Again {
                seq: 4,
                run: run("0123456789ab"),
                name: None,
            }
        );
        assert_eq!(
            stored(&reply(vec![
                bulk("again"),
                bulk("0-4"),
                bulk("0123456789ab"),
                bulk("order-42"),
            ])),
            Stored::Again {
                seq: 4,
                run: run("0123456789ab"),
                name: Some("order-42".into()),
            }
        );
        assert!(matches!(
            stored(&reply(vec![bulk("again"), bulk("0-4"), bulk("nope")])),
            Stored::Unexpected(_)
        ));
        assert!(matches!(
            stored(&reply(vec![bulk("stored"), bulk("1-1"), Value::Integer(0)])),
            Stored::Unexpected(_)
        ));
        assert_eq!(
            stored(&Value::Error(b"NOSCRIPT No matching script".to_vec())),
            Stored::ScriptGone
        );
        assert!(matches!(
            stored(&Value::Error(
                b"SSELOOP-EPOCH the epoch has changed".to_vec()
            )),
            Stored::Refused { expected: true, .. }
        ));
        assert!(matches!(
            stored(&Value::Error(b"OOM command not allowed".to_vec())),
            Stored::Refused {
                expected: false,
                ..
            }
        ));
        assert!(matches!(stored(&bulk("0-1")), Stored::Unexpected(_)));
        assert!(matches!(stored(&Value::Integer(1)), Stored::Unexpected(_)));
        assert_eq!(loaded(bulk("abc")), Ok(b"abc".to_vec()));
        assert!(matches!(
            loaded(Value::Error(b"BUSY".to_vec())),
            Err((_, true))
        ));
        assert!(matches!(loaded(Value::Nil), Err((_, false))));
    }
}
