//! What the Mercure endpoint (`/.well-known/mercure`) answers: a
//! subscription's matchers from its query (and a `QUERY`'s form body),
//! where it resumes from; a publish's form body as an event. Pure, as the
//! rest of `app`: the loop's URL patterns are interned in the
//! [`Patterns`] it is given.

use std::sync::Arc;

use super::{Action, Context, StreamStart, stream_framing};
use crate::http::{self, Reject, Status};
use crate::mercure::matcher::Patterns;
use crate::mercure::publish::{self, Limits};
use crate::mercure::selector;
use crate::mercure::urlpattern::UrlPattern;
use crate::sse::Event;

/// A Mercure subscriber's matchers, for the loop's topic index.
#[derive(Debug, PartialEq, Eq)]
pub struct Matchers {
    /// Exact topics, without repeats: the topic index takes them as
    /// `/events` topics.
    pub exact: Vec<Box<str>>,
    /// `*`: every event, broadcasts included.
    pub wildcard: bool,
    /// Distinct URL patterns.
    pub patterns: Vec<Arc<UrlPattern>>,
}

/// A subscription: `query` (and `body`, a `QUERY` request's) parsed into
/// matchers; the `Last-Event-ID` header beats the parameters'
/// `last_event_id`.
pub fn subscribe(
    query: &str,
    body: Option<&[u8]>,
    last_event_id: Option<String>,
    http11: bool,
    ctx: &Context,
    patterns: &mut Patterns,
) -> Action {
    let selection = match selector::parse(query.as_bytes(), body, patterns) {
        Ok(selection) => selection,
        Err(e) => return Action::Reject(Reject::bad_request(e.to_string())),
    };
    let framing = stream_framing(http11, ctx);
    let head = http::stream_head(
        framing == crate::sse::Framing::Chunked,
        ctx.retry,
        ctx.allow_origin,
    );
    Action::Subscribe(StreamStart {
        head,
        framing,
        topics: Vec::new(),
        last_event_id: last_event_id.or(selection.last_event_id),
        grant: None,
        matchers: Some(Matchers {
            exact: selection.exact,
            wildcard: selection.wildcard,
            patterns: selection.patterns,
        }),
    })
}

/// A publish: its form body as an event (its topics without repeats, the
/// canonical one first). The publisher's `id` is the event's id and its
/// exactly-once key; the answer is the id (see [`super::published`]).
pub fn publish(body: &[u8], form_body: bool, keep_alive: bool, ctx: &Context) -> Action {
    if !form_body {
        return Action::Reject(Reject::new(
            Status::BAD_REQUEST,
            "a publish body must be application/x-www-form-urlencoded",
        ));
    }
    let limits = Limits {
        max_body: usize::MAX, // the request reader bounded it: --max-event-size
        max_topics: ctx.max_topics,
    };
    let update = match publish::parse(body, ctx.hub, limits) {
        Ok(update) => update,
        Err(e) if e.status() == 413 => {
            return Action::Reject(Reject {
                status: Status::PAYLOAD_TOO_LARGE,
                ..Reject::bad_request(e.to_string())
            });
        }
        Err(e) => return Action::Reject(Reject::bad_request(e.to_string())),
    };
    let mut event = Event::new(update.data);
    let mut seen: Vec<&str> = Vec::with_capacity(update.topics.len());
    for topic in &update.topics {
        if !seen.contains(&&**topic) {
            seen.push(topic);
            event = event.with_topic(&**topic);
        }
    }
    if let Some(t) = update.event_type {
        event = event.with_type(t);
    }
    if let Some(ms) = update.retry {
        event = event.with_retry(std::time::Duration::from_millis(ms));
    }
    if update.private {
        event = event.private();
    }
    let key: Option<Arc<str>> = update.id.map(Arc::from);
    if let Some(id) = &key {
        event = event.with_id(&**id);
    }
    Action::Publish {
        event,
        keep_alive,
        key,
    }
}

/// Where a Mercure subscriber resumes, and what `Mercure-Last-Event-ID`
/// says: `earliest` replays every kept event; an id the history can place
/// resumes after it (the field repeats it); any other (unknown, another
/// run's, left the history) resumes nowhere: the stream goes live and the
/// field says `earliest`, the draft's way of saying there is no event
/// before the first one sent.
pub fn resume(last_event_id: &str, earliest: u64, placed: Option<u64>) -> (Option<u64>, &str) {
    if last_event_id == "earliest" {
        return (Some(earliest), "earliest");
    }
    match placed {
        Some(after) => (Some(after), last_event_id),
        None => (None, "earliest"),
    }
}

/// The `Mercure-Last-Event-ID` field added to a stream's head.
pub fn with_last_event_id(head: &mut Vec<u8>, value: &str) {
    http::insert_field(head, "Mercure-Last-Event-ID", value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_mercure_subscriber_resumes() {
        assert_eq!(resume("earliest", 3, Some(9)), (Some(3), "earliest"));
        assert_eq!(resume("urn:uuid:1", 3, Some(7)), (Some(7), "urn:uuid:1"));
        assert_eq!(resume("unknown", 3, None), (None, "earliest"));
        let mut head = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n: connected\n".to_vec();
        with_last_event_id(&mut head, "urn:x");
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nA: b\r\nMercure-Last-Event-ID: urn:x\r\n\r\n: connected\n"
        );
    }
}
