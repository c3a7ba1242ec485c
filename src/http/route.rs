//! What a request asks for: the path and method, the query's topics, event
//! type and last event id, percent-decoded and validated.

use std::borrow::Cow;

use super::{Reject, Status};
use crate::percent::{self, Broken};

pub use crate::sse::{MAX_TOPIC_LEN, valid_topic};

/// What a request asks for, once routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /events`: stream the events of these topics (and broadcasts).
    Subscribe {
        /// Decoded, validated, without repeats.
        topics: Vec<String>,
        /// From the `Last-Event-ID` header or one of the query forms.
        last_event_id: Option<String>,
    },
    /// `GET /.well-known/mercure` (or `QUERY`, with the parameters in a
    /// form body too): a Mercure subscription. The query is parsed by
    /// `mercure::selector`, which needs the loop's URL patterns.
    MercureSubscribe {
        /// The raw query (after `?`).
        query: String,
        /// The `Last-Event-ID` header, which beats the query's
        /// `last_event_id`.
        last_event_id: Option<String>,
        /// A `QUERY` request: the body holds parameters too.
        in_body: bool,
    },
    /// `POST /.well-known/mercure`: a Mercure publish, its form body
    /// parsed by `mercure::publish`.
    MercurePublish,
    /// `POST /publish`: the body becomes an event.
    Publish {
        /// Decoded, validated, without repeats; empty for a broadcast.
        topics: Vec<String>,
        /// The `event` query parameter, when given and not empty.
        event_type: Option<String>,
    },
    /// `GET /health` (or `HEAD`).
    Health,
    /// `GET /` (or `HEAD`): the wire inspector page.
    Index,
    /// `GET /metrics` (or `HEAD`): Prometheus text.
    Metrics,
    /// `GET /lab` (or `HEAD`): the failure lab's page, with `--lab`.
    Lab,
    /// `GET /lab/stream`: a stream of the failure lab, with `--lab`.
    LabStream(sseloop_lab::StreamRequest),
    /// `OPTIONS` on a known path: a CORS preflight, answered only when an
    /// origin is allowed.
    Preflight {
        /// The methods the path takes.
        allow: &'static str,
    },
}

/// The Mercure hub's path (the draft's well-known URI).
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// Chooses what a request gets from its method and target.
pub fn route(method: &str, target: &str, last_event_id: Option<String>) -> Result<Route, Reject> {
    let target = strip_absolute_form(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // HEAD where a GET has a fixed answer; a stream has no head of its own
    // to give, so /events takes GET alone.
    let allowed = match path {
        "/health" | "/" | "/metrics" | "/lab" => "GET, HEAD",
        "/events" | "/lab/stream" => "GET",
        "/publish" => "POST",
        MERCURE_PATH => "GET, POST, QUERY",
        _ => return Err(Reject::new(Status::NOT_FOUND, "no such path")),
    };
    if method == "OPTIONS" {
        return Ok(Route::Preflight { allow: allowed });
    }
    if !allowed.split(", ").any(|m| m == method) {
        return Err(Reject::method("method not allowed", allowed));
    }
    match path {
        "/health" => Ok(Route::Health),
        "/" => Ok(Route::Index),
        "/metrics" => Ok(Route::Metrics),
        "/lab" => Ok(Route::Lab),
        "/lab/stream" => {
            sseloop_lab::StreamRequest::from_query(&query_pairs(query)?, last_event_id)
                .map(Route::LabStream)
                .map_err(Reject::bad)
        }
        MERCURE_PATH if method == "POST" => Ok(Route::MercurePublish),
        MERCURE_PATH => Ok(Route::MercureSubscribe {
            query: query.to_owned(),
            last_event_id,
            in_body: method == "QUERY",
        }),
        "/events" => {
            let mut topics = Vec::new();
            let mut query_id = None;
            for pair in pairs(query) {
                let (key, value) = pair?;
                match &*key {
                    "topic" => add_topic(&mut topics, value.into_owned())?,
                    "lastEventId" | "lastEventID" | "last_event_id" => {
                        query_id = Some(value.into_owned());
                    }
                    _ => {}
                }
            }
            Ok(Route::Subscribe {
                topics,
                // The header is what a browser sends on its own reconnect, so
                // it wins over an id fixed in the URL.
                last_event_id: last_event_id.or(query_id),
            })
        }
        _ => {
            let mut topics = Vec::new();
            let mut event_type = None;
            for pair in pairs(query) {
                let (key, value) = pair?;
                match &*key {
                    "topic" => add_topic(&mut topics, value.into_owned())?,
                    "event" if value.is_empty() => event_type = None,
                    "event" if !crate::sse::valid_event_type(&value) => {
                        return Err(Reject::bad("event type must not contain CR, LF or NUL"));
                    }
                    "event" => event_type = Some(value.into_owned()),
                    _ => {}
                }
            }
            Ok(Route::Publish { topics, event_type })
        }
    }
}

/// Whether `target` is the Mercure hub's (its tokens are the hub's).
pub fn is_mercure(target: &str) -> bool {
    let target = strip_absolute_form(target);
    target.split_once('?').map_or(target, |(path, _)| path) == MERCURE_PATH
}

/// `http://host:port/path` (as a proxy may send) becomes `/path`.
fn strip_absolute_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

fn add_topic(topics: &mut Vec<String>, topic: String) -> Result<(), Reject> {
    if !valid_topic(&topic) {
        return Err(Reject::bad(
            "topic must be 1 to 128 bytes with no control characters",
        ));
    }
    if !topics.contains(&topic) {
        topics.push(topic);
    }
    Ok(())
}

/// Splits a query string into decoded key/value pairs (`+` is a space, as
/// browsers' forms and `URLSearchParams` encode it).
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Reject> {
    pairs(query)
        .map(|pair| pair.map(|(k, v)| (k.into_owned(), v.into_owned())))
        .collect()
}

/// [`query_pairs`] one at a time, each part borrowed from `query` unless
/// decoding changed it: routing a publish allocates only the topic names
/// it keeps (a list and a string for every key and value made three
/// allocations of a publish's thirteen).
fn pairs(query: &str) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), Reject>> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(k)?, decode(v)?))
        })
}

/// Decodes `%XX` escapes and `+`; the result must be UTF-8.
pub fn percent_decode(text: &str) -> Result<String, Reject> {
    decode(text).map(Cow::into_owned)
}

/// [`percent_decode`], borrowing `text` when there is nothing to decode.
fn decode(text: &str) -> Result<Cow<'_, str>, Reject> {
    match percent::decode(text.as_bytes(), true, Broken::Refused)
        .ok_or(Reject::bad("bad percent-encoding in the query"))?
    {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(text)),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| Reject::bad("query is not UTF-8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::*;

    /// Request vectors: request text → the route it must give.
    macro_rules! routes {
        ($($name:ident: $raw:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(head($raw).route, $want);
            }
        )*};
    }

    fn sub(topics: &[&str], id: Option<&str>) -> Result<Route, Reject> {
        Ok(Route::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            last_event_id: id.map(str::to_owned),
        })
    }

    fn publ(topics: &[&str], ty: Option<&str>) -> Result<Route, Reject> {
        Ok(Route::Publish {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            event_type: ty.map(str::to_owned),
        })
    }

    fn status(raw: &str) -> Status {
        head(raw).route.unwrap_err().status
    }

    routes! {
        subscribe_no_topic: "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&[], None);
        subscribe_topics: "GET /events?topic=a&topic=b%20c&topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&["a", "b c"], None);
        subscribe_plus_is_space: "GET /events?topic=x+y HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&["x y"], None);
        subscribe_header_id: "GET /events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: r-5\r\n\r\n" => sub(&[], Some("r-5"));
        subscribe_query_id: "GET /events?lastEventId=r-6 HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&[], Some("r-6"));
        subscribe_query_id_alt: "GET /events?last_event_id=r-7&topic=t HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&["t"], Some("r-7"));
        subscribe_header_wins: "GET /events?lastEventID=q HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: h\r\n\r\n" => sub(&[], Some("h"));
        subscribe_absolute_form: "GET http://localhost:8080/events?topic=a HTTP/1.1\r\nHost: localhost\r\n\r\n" => sub(&["a"], None);
        publish_broadcast: "POST /publish HTTP/1.1\r\nHost: localhost\r\n\r\n" => publ(&[], None);
        publish_typed: "POST /publish?topic=a&event=progress HTTP/1.1\r\nHost: localhost\r\n\r\n" => publ(&["a"], Some("progress"));
        publish_empty_type: "POST /publish?event= HTTP/1.1\r\nHost: localhost\r\n\r\n" => publ(&[], None);
        health: "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" => Ok(Route::Health);
        lab_page: "GET /lab HTTP/1.1\r\nHost: localhost\r\n\r\n" => Ok(Route::Lab);
        mercure_subscribe: "GET /.well-known/mercure?match=a%20b HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: x\r\n\r\n" => Ok(Route::MercureSubscribe { query: "match=a%20b".into(), last_event_id: Some("x".into()), in_body: false });
        mercure_query: "QUERY /.well-known/mercure HTTP/1.1\r\nHost: localhost\r\n\r\n" => Ok(Route::MercureSubscribe { query: String::new(), last_event_id: None, in_body: true });
        mercure_publish: "POST /.well-known/mercure?ignored HTTP/1.1\r\nHost: localhost\r\n\r\n" => Ok(Route::MercurePublish);
    }

    #[test]
    fn lab_streams_are_read_or_refused_here() {
        let ok = head(
            "GET /lab/stream?run=r1&lesson=proxy&fix=1 HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: x-3\r\n\r\n",
        );
        let Ok(Route::LabStream(request)) = ok.route else {
            panic!("{:?}", ok.route)
        };
        assert_eq!((request.run.as_str(), request.spec.fix), ("r1", true));
        assert_eq!(request.last_event_id.as_deref(), Some("x-3"));
        let bad = head(
            "GET /lab/stream?run=r1&lesson=proxy&rate=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        );
        assert_eq!(bad.route.unwrap_err().status, Status::BAD_REQUEST);
        assert_eq!(
            status("POST /lab/stream HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn rejected_routes() {
        assert_eq!(
            status("GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::NOT_FOUND
        );
        assert_eq!(
            status("GET /events/ HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::NOT_FOUND
        );
        let r = head("POST /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .route
            .unwrap_err();
        assert_eq!(
            (r.status, r.allow),
            (Status::METHOD_NOT_ALLOWED, Some("GET"))
        );
        let r = head("GET /publish HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .route
            .unwrap_err();
        assert_eq!(r.allow, Some("POST"));
        let r = head("PUT /.well-known/mercure HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .route
            .unwrap_err();
        assert_eq!(r.allow, Some("GET, POST, QUERY"));
        assert_eq!(
            status("GET /.well-known/mercure/subscriptions HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::NOT_FOUND
        );
        assert_eq!(
            status("GET /events?topic= HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%0A HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%zz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("GET /events?topic=%ff HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
        let long = format!(
            "GET /events?topic={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a".repeat(129)
        );
        assert_eq!(status(&long), Status::BAD_REQUEST);
        let max = format!(
            "GET /events?topic={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a".repeat(128)
        );
        assert!(head(&max).route.is_ok());
        assert_eq!(
            status("POST /publish?event=a%0Db HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
        assert_eq!(
            status("POST /publish?event=a%00b HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            Status::BAD_REQUEST
        );
    }
}
