//! A publish request's form body (the draft's "Publication") into an
//! [`Update`], with every 400 and 413 of the draft:
//!
//! - 400: no `topic`; a topic, `id` or `type` with a control or format
//!   character; a topic in the hub's reserved namespace (resolved against
//!   the hub URL, dot segments removed, unreserved escapes decoded); a
//!   topic exactly `*`; an `id` starting with `#` or equal to `earliest`;
//!   a `type` equal to `mercure`; a `retry` that is not all ASCII digits; a
//!   name or value that is not UTF-8.
//! - 413: a body over the hub's size limit, a `topic` longer than
//!   [`MAX_TOPIC_LEN`] (sseloop's topics, `/events`' included), an `id`,
//!   `type` or `retry` longer than [`MAX_FIELD_LEN`], more topics than the
//!   limit.
//!
//! `topic` repeats (the first is the canonical topic, the others alternate
//! topics, in order, repeats kept); `private` marks the update private by
//! its presence alone, whatever its value. `data`, `id`, `type` and
//! `retry` are single-valued: the first occurrence counts (as
//! `URLSearchParams.get` and the reference hub read them), and an empty
//! `id`, `type` or `retry` is no value. Unknown fields are ignored, as the
//! draft requires. Topics and lengths are checked as the fields come, then
//! `id`, `type` and `retry`: a request with two faults gets one answer.
//! [`Update::once_key`] names an update for exactly-once publishing.

use std::fmt;

use sha2::{Digest, Sha256};

use super::chars;
use super::form;
use super::url::HubUrl;
pub use crate::sse::MAX_TOPIC_LEN;

/// Longest `id`, `type` or `retry`, in bytes.
pub const MAX_FIELD_LEN: usize = super::matcher::MAX_MATCHER_LEN;

/// What a publish carries, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The canonical topic, then the alternate topics.
    pub topics: Vec<Box<str>>,
    /// The data, as sent (the SSE encoder writes one `data:` line per
    /// line).
    pub data: String,
    /// Whether only subscribers allowed one of its topics may receive it.
    pub private: bool,
    /// The publisher's id, when it gave one: the hub makes one otherwise.
    pub id: Option<Box<str>>,
    /// The SSE event type.
    pub event_type: Option<Box<str>>,
    /// The SSE reconnection time, in milliseconds.
    pub retry: Option<u64>,
}

impl Update {
    /// Its exactly-once key, when its publisher named it with an `id`: a
    /// digest of the id and every field, so that a retry of the same
    /// update (a publisher that lost the answer) makes no second event,
    /// while another update under a used id is an update of its own, as
    /// the draft has it (an id SHOULD be unique, and a reused one resumes
    /// after its earliest use, later uses included). The `·` keeps these
    /// keys apart from `Idempotency-Key`s, which are ASCII.
    pub fn once_key(&self) -> Option<Box<str>> {
        let id = self.id.as_deref()?;
        let mut digest = Sha256::new();
        let mut field = |tag: u8, value: &[u8]| {
            digest.update([tag]);
            digest.update((value.len() as u64).to_le_bytes());
            digest.update(value);
        };
        field(b'i', id.as_bytes());
        for topic in &self.topics {
            field(b't', topic.as_bytes());
        }
        field(b'd', self.data.as_bytes());
        if self.private {
            field(b'p', b"");
        }
        if let Some(t) = &self.event_type {
            field(b'e', t.as_bytes());
        }
        if let Some(r) = self.retry {
            field(b'r', &r.to_le_bytes());
        }
        let mut key = String::from("mercure\u{b7}");
        for b in digest.finalize() {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 15)]));
        }
        Some(key.into())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A publish's limits (the hub's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body: usize,
    /// Most `topic` fields.
    pub max_topics: usize,
}

/// Why a publish was refused: [`PublishError::status`] says 400 or 413.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// A name or value is not UTF-8 once decoded.
    NotUtf8,
    /// No `topic` field.
    NoTopic,
    /// A topic with a control or format character.
    TopicCharacters,
    /// A topic in the hub's reserved namespace.
    ReservedTopic,
    /// A topic that is exactly `*`.
    WildcardTopic,
    /// An `id` starting with `#`.
    IdFragment,
    /// An `id` equal to `earliest`.
    IdEarliest,
    /// An `id` with a control or format character.
    IdCharacters,
    /// A `type` with a control or format character.
    TypeCharacters,
    /// A `type` equal to `mercure`.
    TypeReserved,
    /// A `retry` that is not all ASCII digits.
    RetryNotDigits,
    /// A `retry` past `u64::MAX`.
    RetryTooLarge,
    /// The body is over the limit.
    BodyTooLarge,
    /// A field is over [`MAX_FIELD_LEN`].
    FieldTooLong,
    /// More `topic` fields than the limit.
    TooManyTopics,
}

impl PublishError {
    /// The HTTP status: 413 for a limit, 400 for the rest.
    pub fn status(self) -> u16 {
        match self {
            PublishError::BodyTooLarge
            | PublishError::FieldTooLong
            | PublishError::TooManyTopics => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::NotUtf8 => "a form field is not UTF-8 once percent-decoded",
            PublishError::NoTopic => "missing topic field",
            PublishError::TopicCharacters => {
                "a topic has a control character (C0, C1, DEL) or a format character (Cf)"
            }
            PublishError::ReservedTopic => {
                "a topic addresses the hub's reserved namespace (the hub URL's path and below)"
            }
            PublishError::WildcardTopic => {
                "a topic is *, which is reserved for the wildcard matcher"
            }
            PublishError::IdFragment => "the id must not start with #",
            PublishError::IdEarliest => "the id must not be earliest, which is reserved",
            PublishError::IdCharacters => {
                "the id has a control character (C0, C1, DEL) or a format character (Cf)"
            }
            PublishError::TypeCharacters => {
                "the type has a control character (C0, C1, DEL) or a format character (Cf)"
            }
            PublishError::TypeReserved => {
                "the type must not be mercure, which is reserved for the hub"
            }
            PublishError::RetryNotDigits => "retry must be ASCII digits only",
            PublishError::RetryTooLarge => "retry must be at most 18446744073709551615",
            PublishError::BodyTooLarge => "the publish body is too large",
            PublishError::FieldTooLong => {
                "a topic is longer than 128 bytes, or an id, type or retry longer than 1024"
            }
            PublishError::TooManyTopics => "too many topic fields",
        })
    }
}

impl std::error::Error for PublishError {}

/// Parses and checks a publish body against the hub at `hub`.
pub fn parse(body: &[u8], hub: &HubUrl, limits: Limits) -> Result<Update, PublishError> {
    if body.len() > limits.max_body {
        return Err(PublishError::BodyTooLarge);
    }
    let mut update = Update {
        topics: Vec::new(),
        data: String::new(),
        private: false,
        id: None,
        event_type: None,
        retry: None,
    };
    let (mut data, mut id, mut event_type, mut retry) = (None, None, None, None);
    for pair in form::pairs(body) {
        let (name, value) = pair.map_err(|_| PublishError::NotUtf8)?;
        let bounded = |v: &str| {
            if v.len() > MAX_FIELD_LEN || name == "topic" && v.len() > MAX_TOPIC_LEN {
                Err(PublishError::FieldTooLong)
            } else {
                Ok(())
            }
        };
        match &*name {
            "topic" => {
                if update.topics.len() == limits.max_topics {
                    return Err(PublishError::TooManyTopics);
                }
                bounded(&value)?;
                check_topic(&value, hub)?;
                update.topics.push(value.into());
            }
            "data" => {
                data.get_or_insert(value);
            }
            "private" => update.private = true,
            "id" if id.is_none() => {
                bounded(&value)?;
                id = Some(value);
            }
            "type" if event_type.is_none() => {
                bounded(&value)?;
                event_type = Some(value);
            }
            "retry" if retry.is_none() => {
                bounded(&value)?;
                retry = Some(value);
            }
            _ => {}
        }
    }
    if update.topics.is_empty() {
        return Err(PublishError::NoTopic);
    }
    update.data = data.map(|d| d.into_owned()).unwrap_or_default();
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        if id.starts_with('#') {
            return Err(PublishError::IdFragment);
        }
        if id == "earliest" {
            return Err(PublishError::IdEarliest);
        }
        if !chars::is_valid(&id) {
            return Err(PublishError::IdCharacters);
        }
        update.id = Some(id.into());
    }
    if let Some(t) = event_type.filter(|t| !t.is_empty()) {
        if !chars::is_valid(&t) {
            return Err(PublishError::TypeCharacters);
        }
        if t == "mercure" {
            return Err(PublishError::TypeReserved);
        }
        update.event_type = Some(t.into());
    }
    if let Some(r) = retry.filter(|r| !r.is_empty()) {
        if !r.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PublishError::RetryNotDigits);
        }
        update.retry = Some(r.parse().map_err(|_| PublishError::RetryTooLarge)?);
    }
    Ok(update)
}

/// The draft's rules for one published topic.
pub fn check_topic(topic: &str, hub: &HubUrl) -> Result<(), PublishError> {
    if !chars::is_valid(topic) {
        return Err(PublishError::TopicCharacters);
    }
    if topic == "*" {
        return Err(PublishError::WildcardTopic);
    }
    if hub.reserves(topic) {
        return Err(PublishError::ReservedTopic);
    }
    Ok(())
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
