//! What the Mercure endpoint (`/.well-known/mercure`) answers: a
//! subscription's matchers from its query (and a `QUERY`'s form body),
//! where it resumes from; a publish's form body as an event; who may do
//! either, by the draft's rules (a token in `Authorization: Bearer`, else
//! in Mercure's cookie; RFC 6750 answers with their `WWW-Authenticate`
//! challenges). Pure, as the rest of `app`: the loop's URL patterns are
//! interned in the [`Patterns`] it is given.
//!
//! Without `--jwt-key` the hub is as open as `/events` and `/publish`
//! (publishing guarded by `--publish-token` when set). With it, a
//! subscriber needs a token unless `--anonymous`, and a publisher one
//! whose `publish` grants cover every topic (or the publish token).

use std::sync::Arc;

use super::{Action, Context, StreamStart, foreign_origin, stream_framing};
use crate::auth::{Access, Grants};
use crate::http::{self, Head, Policy, Reject, Status};
use crate::mercure::bearer::{AuthError, Carrier};
use crate::mercure::matcher::{EventTopics, Patterns};
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

/// A subscription request, as routed.
#[derive(Debug)]
pub struct Request<'a> {
    /// The query (after `?`).
    pub query: &'a str,
    /// A `QUERY` request's form body.
    pub body: Option<&'a [u8]>,
    /// The `Last-Event-ID` header.
    pub last_event_id: Option<String>,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
}

/// A subscription: the query (and a `QUERY` request's body) parsed into
/// matchers; the `Last-Event-ID` header beats the parameters'
/// `last_event_id`. `grants` are its token's, if it came with one.
pub fn subscribe(
    request: Request<'_>,
    grants: Option<Grants>,
    ctx: &Context,
    patterns: &mut Patterns,
) -> Action {
    let selection = match selector::parse(request.query.as_bytes(), request.body, patterns) {
        Ok(selection) => selection,
        Err(e) => return Action::Reject(Reject::bad_request(e.to_string())),
    };
    let framing = stream_framing(request.http11, ctx);
    let chunked = framing == crate::sse::Framing::Chunked;
    let head = http::stream_head(chunked, ctx.retry, ctx.allow_origin);
    Action::Subscribe(StreamStart {
        head,
        framing,
        topics: Vec::new(),
        last_event_id: request.last_event_id.or(selection.last_event_id),
        grant: grants,
        matchers: Some(Matchers {
            exact: selection.exact,
            wildcard: selection.wildcard,
            patterns: selection.patterns,
        }),
    })
}

/// What a subscriber's token allows: `None` without `--jwt-key` or
/// without a token when `--anonymous` lets it subscribe (it then receives
/// what everyone may); a token that fails is refused, as is the lack of
/// one otherwise.
pub fn grants(
    head: &Head,
    ctx: &Context,
    patterns: &mut Patterns,
) -> Result<Option<Grants>, Reject> {
    let Some(access) = ctx.access else {
        return Ok(None);
    };
    match head.carriers().token() {
        Err(e) => Err(auth_error(e)),
        Ok(None) if access.anonymous() => Ok(None),
        Ok(None) => Err(auth_error(AuthError::Missing)),
        Ok(Some((token, _))) => verify(access, token, ctx, patterns).map(Some),
    }
}

/// What a token that `access` verifies at `ctx.unix_now` allows; one it
/// refuses is answered as invalid (why is logged, not told).
fn verify(
    access: &Access,
    token: &str,
    ctx: &Context,
    patterns: &mut Patterns,
) -> Result<Grants, Reject> {
    access
        .verify(token, ctx.unix_now, patterns)
        .map_err(|refusal| {
            log::debug!("Mercure token refused: {}", refusal.reason());
            auth_error(AuthError::InvalidToken)
        })
}

/// Whether a publish may go on to its body: from a page of another
/// origin, never; open without a publish token or key; with the publish
/// token, yes. Otherwise it must carry a token (checked against its
/// topics once the body is read); one in a cookie only from a request
/// whose `Origin` (or `Referer`) is the server's own or `--allow-origin`'s
/// (the draft's defence against cross-site requests, which carry cookies).
pub fn may_publish(head: &Head, policy: &Policy) -> Result<(), Reject> {
    if head.foreign_origin {
        return Err(foreign_origin());
    }
    if policy.publish_token.is_none() && policy.access.is_none() || head.bears_publish_token {
        return Ok(());
    }
    if policy.access.is_none() {
        return Err(auth_error(AuthError::Missing));
    }
    match head.carriers().token() {
        Err(e) => Err(auth_error(e)),
        Ok(None) => Err(auth_error(AuthError::Missing)),
        Ok(Some((_, Carrier::Cookie))) if !head.same_site_publish => {
            Err(auth_error(AuthError::InvalidRequest))
        }
        Ok(Some(_)) => Ok(()),
    }
}

/// An RFC 6750 refusal, with its challenge.
fn auth_error(e: AuthError) -> Reject {
    let status = match e.status() {
        400 => Status::BAD_REQUEST,
        403 => Status::FORBIDDEN,
        _ => Status::UNAUTHORIZED,
    };
    Reject {
        challenge: Some(e.challenge()),
        ..Reject::new(status, e.reason())
    }
}

/// A publish: its form body as an event (its topics without repeats, the
/// canonical one first), when its token allows publishing to every topic
/// (with `--jwt-key`, unless it bears the publish token). The publisher's
/// `id` is the event's id; it and the update make its exactly-once key
/// ([`Update::once_key`](crate::mercure::publish::Update::once_key)); the
/// answer is the id (see [`super::published`]).
pub fn publish(
    head: &Head,
    body: &[u8],
    keep_alive: bool,
    ctx: &Context,
    patterns: &mut Patterns,
) -> Action {
    if !head.form_body {
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
    if let Some(access) = ctx.access
        && !head.bears_publish_token
    {
        // `may_publish` let it through with a token, to be checked here.
        let Ok(Some((token, _))) = head.carriers().token() else {
            return Action::Reject(auth_error(AuthError::Missing));
        };
        let grants = match verify(access, token, ctx, patterns) {
            Ok(grants) => grants,
            Err(reject) => return Action::Reject(reject),
        };
        let mut event = EventTopics::new(&update.topics, patterns.hub());
        if !grants.may_publish(&mut event) {
            return Action::Reject(auth_error(AuthError::InsufficientScope));
        }
    }
    let key: Option<Arc<str>> = update.once_key().map(Arc::from);
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
    if let Some(id) = update.id {
        event = event.with_id(id);
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
