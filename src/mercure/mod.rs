//! The Mercure hub (draft-dunglas-mercure-08): the pure parts of
//! `/.well-known/mercure`, free of sockets, the loop and the bus.
//!
//! | module | owns |
//! |---|---|
//! | `chars` | the draft's character rule: no C0, C1, DEL or `Cf` (Unicode 17.0.0 table) |
//! | `form` | `application/x-www-form-urlencoded` parsing (WHATWG URL), UTF-8 or an error |
//! | `url`, `url_parser`, `host` | the WHATWG URL parser: topics and patterns resolved against the hub URL; the reserved hub namespace |
//! | `urlpattern` | WHATWG URL Pattern: constructor strings, components, an automaton per component (no backtracking) |
//! | `matcher` | topic matchers (`*`, exact, URL pattern), patterns interned per loop, one event's topics with a memo |
//! | `index` | per loop: the wildcard and URL-pattern subscribers, each distinct pattern once, with a small cache |
//! | `selector` | the subscribe query (and `QUERY` body): `match`, `match_exact`, `match_urlpattern`, `last_event_id` |
//! | `publish` | the form publish → an `Update`, with every 400 and 413 of the draft |
//! | `token` | a verified token's header and claims → grants (RFC 9068, `authorization_details`, the old `mercure` claim) |
//! | `bearer` | token carriers (header, then cookie) and RFC 6750 answers (`WWW-Authenticate`) |

pub mod bearer;
pub mod chars;
pub mod form;
pub mod host;
pub mod index;
pub mod matcher;
pub mod publish;
pub mod selector;
pub mod token;
pub mod url;
mod url_parser;
pub mod urlpattern;
