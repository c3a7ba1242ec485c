//! What to answer: a pure function of the parsed request and the little
//! state it depends on ([`Context`]), returning an [`Action`] for the loop
//! to carry out. No sockets, no connections, no bus: unit-tested on its own.

use std::time::Duration;

use crate::auth::{Access, Grant};
use crate::config::Framing;
use crate::http::{self, Head, Reject, Route, Status};
use crate::sse::Event;

/// The wire inspector served at `GET /`: one self-contained page.
pub const INSPECTOR_PAGE: &str = include_str!("inspector.html");

/// `retry:` sent with a stream refused for now, when `--retry` is not set.
const RETRY_LATER: Duration = Duration::from_secs(1);

/// What an answer depends on besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// A shutdown has begun: nothing new starts, nothing is kept alive.
    pub shutting_down: bool,
    /// The connection was accepted past `--max-connections`.
    pub over_capacity: bool,
    /// `--allow-origin`.
    pub allow_origin: Option<&'a str>,
    /// `--retry`.
    pub retry: Option<Duration>,
    /// `--framing`, for HTTP/1.1 streams.
    pub framing: Framing,
    /// `--max-topics`.
    pub max_topics: usize,
    /// With `--jwt-key`: who may subscribe to what.
    pub access: Option<&'a Access>,
    /// The Unix time tokens are checked at (only read with `access`).
    pub unix_now: i64,
    /// `--lab`: the failure lab's page and streams are served.
    pub lab: bool,
}

/// How a subscriber's stream begins.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamStart {
    /// The response head with the first body bytes.
    pub head: Vec<u8>,
    /// How the body is framed.
    pub framing: Framing,
    /// Topics subscribed to (none: broadcasts only).
    pub topics: Vec<String>,
    /// Where to resume from, if the client said.
    pub last_event_id: Option<String>,
    /// What its token allows, when it came with one (and `--jwt-key` is
    /// set).
    pub grant: Option<Grant>,
}

/// What the loop should do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue this whole answer; keep the connection for the next request
    /// when `keep_alive`.
    Answer {
        /// The answer's bytes.
        bytes: Vec<u8>,
        /// The connection stays open.
        keep_alive: bool,
    },
    /// Answer with the counters (the loop holds them; see [`metrics`]).
    Metrics {
        /// The connection stays open.
        keep_alive: bool,
        /// A `HEAD`: the head alone.
        head_only: bool,
    },
    /// Refuse with this error answer, then close.
    Reject(Reject),
    /// Queue this "come back later" stream, then close.
    RefuseStream(Vec<u8>),
    /// Publish the event, then answer with its id (see [`published`]).
    Publish {
        /// What to publish.
        event: Event,
        /// The connection stays open after the answer.
        keep_alive: bool,
    },
    /// Start streaming to this connection.
    Subscribe(StreamStart),
    /// Hand the connection over to the failure lab, which serves it.
    Lab(crate::lab::StreamRequest),
}

/// Chooses the action for a request whose head and body have arrived.
pub fn respond(head: Head, body: Vec<u8>, ctx: &Context) -> Action {
    let route = match head.route {
        Ok(route) => route,
        Err(reject) => return Action::Reject(reject),
    };
    let refusal = if ctx.shutting_down {
        Some("server shutting down")
    } else if ctx.over_capacity {
        Some("server at capacity")
    } else {
        None
    };
    if let Some(why) = refusal {
        // An EventSource gives up for good on a 503, so a subscribe is told
        // to come back instead; anything else gets the 503.
        return match route {
            Route::Subscribe { .. } => {
                let chunked = stream_framing(head.http11, ctx) == Framing::Chunked;
                let retry = ctx.retry.unwrap_or(RETRY_LATER);
                Action::RefuseStream(http::refused_stream(chunked, retry, why, ctx.allow_origin))
            }
            _ => Action::Reject(Reject::new(Status::UNAVAILABLE, why)),
        };
    }
    let keep_alive = head.keep_alive && !ctx.shutting_down;
    let head_only = head.head_only;
    match route {
        Route::Preflight { allow } => match ctx.allow_origin {
            Some(origin) => Action::Answer {
                bytes: http::preflight_response(allow, origin, keep_alive),
                keep_alive,
            },
            None => Action::Reject(Reject {
                status: Status::METHOD_NOT_ALLOWED,
                reason: "method not allowed (CORS is off)",
                allow: Some(allow),
            }),
        },
        Route::Health => ok(
            "text/plain; charset=utf-8",
            "ok",
            keep_alive,
            head_only,
            ctx,
        ),
        Route::Index => ok(
            "text/html; charset=utf-8",
            INSPECTOR_PAGE,
            keep_alive,
            head_only,
            ctx,
        ),
        Route::Metrics => Action::Metrics {
            keep_alive,
            head_only,
        },
        Route::Lab | Route::LabStream(_) if !ctx.lab => Action::Reject(Reject::new(
            Status::NOT_FOUND,
            "no such path (the lab needs --lab)",
        )),
        Route::Lab => ok(
            "text/html; charset=utf-8",
            crate::lab::PAGE,
            keep_alive,
            head_only,
            ctx,
        ),
        Route::LabStream(request) => Action::Lab(request),
        Route::Publish { topics, event_type } => {
            let Ok(data) = String::from_utf8(body) else {
                return Action::Reject(Reject::new(Status::BAD_REQUEST, "event data is not UTF-8"));
            };
            let mut event = Event::new(data);
            if let Some(t) = event_type {
                event = event.with_type(t);
            }
            for t in topics {
                event = event.with_topic(t);
            }
            Action::Publish { event, keep_alive }
        }
        Route::Subscribe { topics, .. } if topics.len() > ctx.max_topics => Action::Reject(
            Reject::new(Status::BAD_REQUEST, "too many topics for one subscriber"),
        ),
        Route::Subscribe {
            topics,
            last_event_id,
        } => {
            let grant = match ctx.access {
                None => None,
                Some(access) => {
                    let token = head.credentials.subscribe_token();
                    match access.subscribe(token, &topics, ctx.unix_now) {
                        Ok(grant) => grant,
                        Err(refusal) => {
                            return Action::Reject(Reject::refusal(refusal));
                        }
                    }
                }
            };
            let framing = stream_framing(head.http11, ctx);
            let head = http::stream_head(framing == Framing::Chunked, ctx.retry, ctx.allow_origin);
            Action::Subscribe(StreamStart {
                head,
                framing,
                topics,
                last_event_id,
                grant,
            })
        }
    }
}

/// HTTP/1.0 streams end with the connection; HTTP/1.1 ones as configured.
fn stream_framing(http11: bool, ctx: &Context) -> Framing {
    if http11 { ctx.framing } else { Framing::Close }
}

fn text_answer(body: &str, keep_alive: bool, ctx: &Context) -> Action {
    Action::Answer {
        bytes: http::text_response(body, keep_alive, ctx.allow_origin),
        keep_alive,
    }
}

/// A `200` with `body`, or for a `HEAD` its head alone (with the length
/// the body would have).
fn ok(content_type: &str, body: &str, keep_alive: bool, head_only: bool, ctx: &Context) -> Action {
    let bytes = if head_only {
        http::head_response(content_type, body, keep_alive, ctx.allow_origin)
    } else {
        http::ok_response(content_type, body, keep_alive, ctx.allow_origin)
    };
    Action::Answer { bytes, keep_alive }
}

/// The bytes of an error answer.
pub fn reject_bytes(reject: &Reject, ctx: &Context) -> Vec<u8> {
    http::error_response(reject, ctx.allow_origin)
}

/// The answer to a publish: its id.
pub fn published(id: &str, keep_alive: bool, ctx: &Context) -> Action {
    text_answer(id, keep_alive && !ctx.shutting_down, ctx)
}

/// The answer to a publish the hub could not take now.
pub fn unavailable() -> Action {
    Action::Reject(Reject::new(
        Status::UNAVAILABLE,
        "events cannot be stored now; retry later",
    ))
}

/// The `/metrics` answer with the counters' text.
pub fn metrics(text: &str, keep_alive: bool, head_only: bool, ctx: &Context) -> Action {
    ok(
        "text/plain; version=0.0.4; charset=utf-8",
        text,
        keep_alive,
        head_only,
        ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadParse, Policy, parse_head};

    const CTX: Context = Context {
        shutting_down: false,
        over_capacity: false,
        allow_origin: None,
        retry: None,
        framing: Framing::Chunked,
        max_topics: 3,
        access: None,
        unix_now: 0,
        lab: false,
    };

    /// The head of `raw`, given a `Host` (which HTTP/1.1 requires).
    fn head(raw: &str) -> Head {
        let policy = Policy {
            max_head_size: 8192,
            max_headers: 64,
            max_body: 1024,
            publish_token: None,
            loopback_hosts: true,
            allow_hosts: Vec::new(),
            allow_origin: None,
            access: None,
        };
        let raw = raw.replacen("\r\n", "\r\nHost: localhost\r\n", 1);
        match parse_head(raw.as_bytes(), &policy) {
            HeadParse::Complete(head, _) => head,
            other => panic!("{other:?}"),
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn health_and_index_are_answered_and_kept_alive() {
        let Action::Answer { bytes, keep_alive } =
            respond(head("GET /health HTTP/1.1\r\n\r\n"), vec![], &CTX)
        else {
            panic!()
        };
        assert!(keep_alive && text(&bytes).ends_with("\r\n\r\nok"));
        let Action::Answer { bytes, .. } = respond(head("GET / HTTP/1.1\r\n\r\n"), vec![], &CTX)
        else {
            panic!()
        };
        assert!(text(&bytes).contains("text/html"));
        let action = respond(head("GET /metrics HTTP/1.0\r\n\r\n"), vec![], &CTX);
        assert_eq!(
            action,
            Action::Metrics {
                keep_alive: false,
                head_only: false
            }
        );
        let Action::Answer { bytes, .. } =
            respond(head("HEAD /health HTTP/1.1\r\n\r\n"), vec![], &CTX)
        else {
            panic!()
        };
        assert!(
            text(&bytes).ends_with(
                "Content-Length: 2\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n"
            ),
            "{:?}",
            text(&bytes)
        );
    }

    #[test]
    fn publish_builds_the_event_or_refuses_bad_data() {
        let h = head("POST /publish?topic=a&topic=b&event=progress HTTP/1.1\r\n\r\n");
        let want = Event::new("50")
            .with_type("progress")
            .with_topic("a")
            .with_topic("b");
        assert_eq!(
            respond(h.clone(), b"50".to_vec(), &CTX),
            Action::Publish {
                event: want,
                keep_alive: true
            }
        );
        let Action::Reject(reject) = respond(h.clone(), vec![0xff], &CTX) else {
            panic!()
        };
        assert_eq!(reject.status, Status::BAD_REQUEST);
        let Action::Answer { bytes, keep_alive } = published("r-1", true, &CTX) else {
            panic!()
        };
        assert!(keep_alive && text(&bytes).ends_with("\r\n\r\nr-1"));
    }

    #[test]
    fn subscribe_picks_the_framing() {
        let Action::Subscribe(start) = respond(
            head("GET /events?topic=t HTTP/1.1\r\nLast-Event-ID: x-1\r\n\r\n"),
            vec![],
            &CTX,
        ) else {
            panic!()
        };
        assert_eq!(start.framing, Framing::Chunked);
        assert_eq!(start.topics, ["t"]);
        assert_eq!(start.last_event_id.as_deref(), Some("x-1"));
        assert!(text(&start.head).contains("Transfer-Encoding: chunked"));
        let Action::Subscribe(start) = respond(head("GET /events HTTP/1.0\r\n\r\n"), vec![], &CTX)
        else {
            panic!()
        };
        assert_eq!(start.framing, Framing::Close);
        let close = Context {
            framing: Framing::Close,
            ..CTX
        };
        let Action::Subscribe(start) =
            respond(head("GET /events HTTP/1.1\r\n\r\n"), vec![], &close)
        else {
            panic!()
        };
        assert!(!text(&start.head).contains("chunked"));
    }

    #[test]
    fn a_subscriber_names_at_most_max_topics() {
        let three = respond(
            head("GET /events?topic=a&topic=b&topic=c HTTP/1.1\r\n\r\n"),
            vec![],
            &CTX,
        );
        assert!(matches!(three, Action::Subscribe(_)));
        let Action::Reject(reject) = respond(
            head("GET /events?topic=a&topic=b&topic=c&topic=d HTTP/1.1\r\n\r\n"),
            vec![],
            &CTX,
        ) else {
            panic!()
        };
        assert_eq!(
            reject,
            Reject::new(Status::BAD_REQUEST, "too many topics for one subscriber")
        );
    }

    #[test]
    fn over_capacity_and_shutdown_refuse() {
        for ctx in [
            Context {
                over_capacity: true,
                ..CTX
            },
            Context {
                shutting_down: true,
                ..CTX
            },
        ] {
            let Action::RefuseStream(bytes) =
                respond(head("GET /events HTTP/1.1\r\n\r\n"), vec![], &ctx)
            else {
                panic!()
            };
            assert!(text(&bytes).contains("retry: 1000\n"));
            let Action::Reject(reject) =
                respond(head("POST /publish HTTP/1.1\r\n\r\n"), vec![], &ctx)
            else {
                panic!()
            };
            assert_eq!(reject.status, Status::UNAVAILABLE);
        }
    }

    #[test]
    fn private_topics_need_a_token_that_covers_them() {
        let key = "k".repeat(32);
        let access = Access::new(key.as_bytes(), &["news"]).unwrap();
        let policy = Policy {
            max_head_size: 8192,
            max_headers: 64,
            max_body: 1024,
            publish_token: None,
            loopback_hosts: true,
            allow_hosts: Vec::new(),
            allow_origin: None,
            access: Some(std::sync::Arc::new(access.clone())),
        };
        let token = crate::auth::sign_for_tests(
            r#"{"alg":"HS256"}"#,
            r#"{"mercure":{"subscribe":["user/1"]},"exp":2000}"#,
            key.as_bytes(),
        );
        // What a subscribe to `query` with `token` (may be empty) gets at
        // Unix time `now`: a status, and the grant's end when served.
        let ask = |query: &str, token: &str, now: i64| {
            let auth = if token.is_empty() {
                String::new()
            } else {
                format!("Authorization: Bearer {token}\r\n")
            };
            let raw = format!("GET /events?{query} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n");
            let HeadParse::Complete(h, _) = parse_head(raw.as_bytes(), &policy) else {
                panic!("{raw}")
            };
            let ctx = Context {
                access: Some(&access),
                unix_now: now,
                ..CTX
            };
            match respond(h, vec![], &ctx) {
                Action::Reject(reject) => {
                    let bytes = reject_bytes(&reject, &ctx);
                    let text = text(&bytes);
                    assert!(
                        !text.contains(&token[token.len().saturating_sub(20)..])
                            || token.is_empty()
                    );
                    if text.starts_with("HTTP/1.1 401") {
                        assert!(text.contains("WWW-Authenticate: Bearer\r\n"), "{text}");
                    }
                    text[9..12].to_string()
                }
                Action::Subscribe(start) => {
                    format!("200 {:?}", start.grant.and_then(|g| g.refused_from))
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ask("topic=news", "", 1_000), "200 None");
        assert_eq!(ask("", "", 1_000), "200 None");
        assert_eq!(ask("topic=user/1", "", 1_000), "401");
        assert_eq!(
            ask("topic=user/1&topic=news", &token, 1_000),
            "200 Some(2005)"
        );
        assert_eq!(ask("topic=user/2", &token, 1_000), "403");
        assert_eq!(ask("topic=user/1", &token, 2_005), "401");
    }

    #[test]
    fn the_lab_is_there_only_when_asked_for() {
        let page = || head("GET /lab HTTP/1.1\r\n\r\n");
        let stream = || head("GET /lab/stream?run=a&lesson=nagle HTTP/1.1\r\n\r\n");
        for request in [page(), stream()] {
            let Action::Reject(reject) = respond(request, vec![], &CTX) else {
                panic!()
            };
            assert_eq!(reject.status, Status::NOT_FOUND);
        }
        let lab = Context { lab: true, ..CTX };
        let Action::Answer { bytes, .. } = respond(page(), vec![], &lab) else {
            panic!()
        };
        assert!(text(&bytes).contains("text/html"));
        assert!(matches!(respond(stream(), vec![], &lab), Action::Lab(_)));
        // Refused for now like any stream: the lab is not asked.
        let full = Context {
            over_capacity: true,
            ..lab
        };
        assert!(matches!(
            respond(stream(), vec![], &full),
            Action::Reject(_)
        ));
    }

    #[test]
    fn preflight_needs_an_allowed_origin() {
        let h = head("OPTIONS /publish HTTP/1.1\r\n\r\n");
        let Action::Reject(reject) = respond(h.clone(), vec![], &CTX) else {
            panic!()
        };
        assert_eq!(reject.allow, Some("POST"));
        let cors = Context {
            allow_origin: Some("https://app.example"),
            ..CTX
        };
        let Action::Answer { bytes, .. } = respond(h.clone(), vec![], &cors) else {
            panic!()
        };
        assert!(text(&bytes).starts_with("HTTP/1.1 204"));
    }
}
