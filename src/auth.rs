//! Tokens and who may receive what: HS256 JSON Web Tokens verified into
//! Mercure's [`Grants`], the private topics (`--public-topic`), and the
//! one rule that says whether an event reaches a subscriber
//! ([`Audience`]). Pure (the time is a parameter): `http` takes the
//! tokens out of requests, `app` asks who may subscribe and publish,
//! `conn` and the history filter deliveries with [`Audience`].
//!
//! A token is `base64url(header).base64url(claims).base64url(signature)`.
//! Only `{"alg":"HS256"}` is accepted: `none`, every other algorithm, a
//! missing `alg` and a `crit` header are refused before the signature is
//! looked at, so no token can choose how it is checked. The signature is an
//! HMAC-SHA-256 of the first two parts with the server's key, compared in
//! constant time (`hmac`'s `verify_slice`); only then are the claims parsed
//! (with `serde_json`) and checked by `mercure::token`: an RFC 9068
//! `at+jwt` with `authorization_details` (`iss`, `aud` and `exp` checked),
//! or the older `mercure` claim:
//!
//! ```json
//! {"mercure": {"subscribe": ["user/42", "news"], "publish": ["user/42"]}, "exp": 1767225600}
//! ```
//!
//! A selector is an exact topic, `*` (every topic) or, in either form, a
//! `{"match": …, "match_type": "urlpattern"}` URL pattern. An old-claim
//! token's `exp`, and any `nbf`, are honoured with [`LEEWAY_SECS`] of
//! slack for clocks that differ a little; an `at+jwt` ends at its `exp`.
//!
//! What reaches whom, one rule for every event and every subscriber
//! (`/events` or the Mercure hub, live or replayed; [`Audience`]): the
//! subscriber's token must allow *every* private topic the event names
//! (with `--jwt-key`, every topic not made public by `--public-topic`),
//! and, when the event is private (Mercure's `private`), *one* of its
//! topics. Neither rule can leak: no one sees an event who could not
//! subscribe to each of its private topics, nor a private update whose
//! topics its token does not name. Broadcasts of public events stay
//! public.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::mercure::matcher::{EventTopics, Patterns};
use crate::mercure::token::{self, TokenError};
use crate::mercure::url::Url;

pub use crate::mercure::token::Grants;

/// Shortest key accepted: HS256's own output size (RFC 7518, 3.2).
pub const MIN_KEY_LEN: usize = 32;
/// Seconds of slack on an old-claim token's `exp`, and on `nbf`, for
/// clocks a little apart.
pub const LEEWAY_SECS: i64 = 5;
/// The cookie that carries a token to `/events`.
pub const COOKIE: &str = "sseloop_token";
/// The query parameter that carries a token to `/events`.
pub const QUERY_PARAM: &str = "access_token";
/// Longest token looked at; a request head bounds it anyway.
const MAX_TOKEN_LEN: usize = 16 << 10;

/// Why a token or a request was refused. Every reason is fixed text: none
/// repeats what the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A private topic was asked for without a token.
    Missing,
    /// Two tokens in one carrier (two `Authorization` headers, two cookies,
    /// two query parameters): which one is meant cannot be told.
    Several,
    /// Not three base64url parts, or a part is not JSON of the right shape.
    Malformed,
    /// Not signed with HS256 (`none`, another algorithm, no `alg`, `crit`).
    Algorithm,
    /// The signature does not verify with the server's key.
    Signature,
    /// Its claims fail a check (expired, not yet valid, the wrong shape,
    /// an `at+jwt`'s type, issuer or audience).
    Token(TokenError),
    /// A valid token that does not cover every private topic asked for.
    NotCovered,
    /// A publish without the publish token or a JWT.
    PublishMissing,
    /// A valid token whose `publish` claim does not cover every topic named.
    PublishNotCovered,
    /// A broadcast publish by a token whose `publish` claim is not `*`.
    BroadcastNotCovered,
}

impl Refusal {
    /// A valid token that does not allow this (403), rather than a missing
    /// or bad one (401).
    pub fn forbidden(self) -> bool {
        matches!(
            self,
            Refusal::NotCovered | Refusal::PublishNotCovered | Refusal::BroadcastNotCovered
        )
    }

    /// The answer's text.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this topic is private: send a token (Authorization: Bearer, the sseloop_token cookie or access_token)"
            }
            Refusal::Several => "more than one token in one place",
            Refusal::Malformed => "the token is not a well-formed JWT",
            Refusal::Algorithm => "the token is not signed with HS256",
            Refusal::Signature => "the token's signature does not verify",
            Refusal::Token(TokenError::Claims(_)) => "the token's claims are malformed",
            Refusal::Token(e) => e.reason(),
            Refusal::NotCovered => "the token does not allow subscribing to every topic asked for",
            Refusal::PublishMissing => {
                "publishing needs Authorization: Bearer <publish token or JWT>"
            }
            Refusal::PublishNotCovered => {
                "the token does not allow publishing to every topic named"
            }
            Refusal::BroadcastNotCovered => {
                "a broadcast needs the publish token or a JWT whose publish claim is *"
            }
        }
    }
}

/// The topics anyone may subscribe to: exact names, or every topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    every: bool,
    names: Vec<Box<str>>,
}

impl Selectors {
    /// From selector strings (`*`: every topic).
    pub fn new<S: AsRef<str>>(selectors: &[S]) -> Selectors {
        let every = selectors.iter().any(|s| s.as_ref() == "*");
        let names = if every {
            Vec::new()
        } else {
            selectors.iter().map(|s| s.as_ref().into()).collect()
        };
        Selectors { every, names }
    }

    /// Whether `topic` is selected.
    pub fn covers(&self, topic: &str) -> bool {
        self.every || self.names.iter().any(|n| **n == *topic)
    }
}

/// What an `at+jwt` is checked against: the hub's audience and, when
/// configured, its issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The resource identifier `aud` must hold (`--jwt-audience`, by
    /// default the hub URL).
    pub audience: String,
    /// The issuer `iss` must equal (`--jwt-issuer`); `None`: any.
    pub issuer: Option<String>,
    /// Mercure subscribers without a token are served (`--anonymous`).
    pub anonymous: bool,
}

/// The server's side of tokens: the key they are checked with, the topics
/// that stay public, and what an `at+jwt` must say. Its `Debug` shows no
/// key.
#[derive(Clone)]
pub struct Access {
    mac: Hmac<Sha256>,
    public: Selectors,
    policy: TokenPolicy,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("key", &"<hidden>")
            .field("public", &self.public)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The key is shorter than [`MIN_KEY_LEN`] bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ShortKey;

impl fmt::Display for ShortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the JWT key must be at least {MIN_KEY_LEN} bytes")
    }
}

impl std::error::Error for ShortKey {}

impl Access {
    /// Checks tokens with `key` by `policy`; `public` topics (`*`: all)
    /// need none.
    pub fn new<S: AsRef<str>>(
        key: &[u8],
        public: &[S],
        policy: TokenPolicy,
    ) -> Result<Access, ShortKey> {
        if key.len() < MIN_KEY_LEN {
            return Err(ShortKey);
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| ShortKey)?;
        Ok(Access {
            mac,
            public: Selectors::new(public),
            policy,
        })
    }

    /// The access a server with this `key` (none: no tokens) applies.
    pub fn configured(
        key: Option<&str>,
        public: &[String],
        policy: TokenPolicy,
    ) -> Result<Option<std::sync::Arc<Access>>, ShortKey> {
        key.map(|k| Access::new(k.as_bytes(), public, policy.clone()).map(std::sync::Arc::new))
            .transpose()
    }

    /// Whether Mercure subscribers without a token are served.
    pub fn anonymous(&self) -> bool {
        self.policy.anonymous
    }

    /// Whether anyone may subscribe to `topic`.
    pub fn is_public(&self, topic: &str) -> bool {
        self.public.covers(topic)
    }

    /// Verifies `token` at Unix time `now` (seconds) into what it allows;
    /// its URL patterns are interned in `patterns`.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        patterns: &mut Patterns,
    ) -> Result<Grants, Refusal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let header_json = decode_json(header)?;
        check_header(&header_json)?;
        let signature = base64url_decode(signature.as_bytes()).ok_or(Refusal::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&token.as_bytes()[..header.len() + 1 + claims.len()]);
        mac.verify_slice(&signature)
            .map_err(|_| Refusal::Signature)?;
        let policy = token::Policy {
            audience: &self.policy.audience,
            issuer: self.policy.issuer.as_deref(),
            legacy_claim: true,
            now,
            leeway: LEEWAY_SECS,
        };
        token::validate(&header_json, &decode_json(claims)?, &policy, patterns)
            .map_err(Refusal::Token)
    }

    /// Decides a subscribe to `topics` by the request's token (or why it
    /// has none that can be used): every topic must be public or covered.
    /// A token, when given, must be valid even if every topic is public: a
    /// client is told its token is bad rather than served as if it had none.
    pub fn subscribe(
        &self,
        token: Result<Option<&str>, Refusal>,
        topics: &[String],
        now: i64,
        patterns: &mut Patterns,
    ) -> Result<Option<Grants>, Refusal> {
        let Some(token) = token? else {
            return if topics.iter().all(|t| self.is_public(t)) {
                Ok(None)
            } else {
                Err(Refusal::Missing)
            };
        };
        let grants = self.verify(token, now, patterns)?;
        let boxed: Vec<Box<str>> = topics.iter().map(|t| t.as_str().into()).collect();
        let mut event = EventTopics::new(&boxed, patterns.hub());
        if (0..boxed.len()).all(|i| self.is_public(&boxed[i]) || grants.covers(&mut event, i)) {
            Ok(Some(grants))
        } else {
            Err(Refusal::NotCovered)
        }
    }

    /// Decides a publish to `topics` (none: a broadcast, which needs `*`)
    /// by a bearer token that is not the publish token.
    pub fn publish(
        &self,
        bearer: Result<Option<&str>, Refusal>,
        topics: &[String],
        now: i64,
        patterns: &mut Patterns,
    ) -> Result<(), Refusal> {
        let token = bearer?.ok_or(Refusal::PublishMissing)?;
        let grants = self.verify(token, now, patterns)?;
        if topics.is_empty() {
            return match grants.publishes_everything() {
                true => Ok(()),
                false => Err(Refusal::BroadcastNotCovered),
            };
        }
        let boxed: Vec<Box<str>> = topics.iter().map(|t| t.as_str().into()).collect();
        if grants.may_publish(&mut EventTopics::new(&boxed, patterns.hub())) {
            Ok(())
        } else {
            Err(Refusal::PublishNotCovered)
        }
    }
}

/// Who an event may reach, worked out once per event: the rule of this
/// module's docs. [`Audience::admits`] asks it of one subscriber's grants
/// (`None`: it has no token); patterns in grants are evaluated once per
/// event, whoever holds them.
#[derive(Debug)]
pub struct Audience<'e> {
    event: EventTopics<'e>,
    /// Which of its topics are private (`--jwt-key`, not public).
    private_topics: Vec<usize>,
    /// Mercure's `private`: a grant must match one of its topics.
    private_update: bool,
}

impl<'e> Audience<'e> {
    /// The audience of an event on `topics` (resolved against `hub` for
    /// URL patterns), `private_update` or not, under `access` (none: no
    /// private topics, and no subscriber has a token).
    pub fn of(
        access: Option<&Access>,
        topics: &'e [Box<str>],
        private_update: bool,
        hub: &'e Url,
    ) -> Audience<'e> {
        let private_topics = match access {
            Some(access) => (0..topics.len())
                .filter(|&i| !access.is_public(&topics[i]))
                .collect(),
            None => Vec::new(),
        };
        Audience {
            event: EventTopics::new(topics, hub),
            private_topics,
            private_update,
        }
    }

    /// The event's topics as matchers see them: one cache of parsed topic
    /// URLs and pattern answers per event, for the audience's grants and
    /// the loop's pattern subscribers alike.
    pub fn event_mut(&mut self) -> &mut EventTopics<'e> {
        &mut self.event
    }

    /// Whether every subscriber may receive it.
    pub fn is_everyone(&self) -> bool {
        self.private_topics.is_empty() && !self.private_update
    }

    /// Whether a subscriber with `grants` may receive it.
    pub fn admits(&mut self, grants: Option<&Grants>) -> bool {
        if self.is_everyone() {
            return true;
        }
        let Some(grants) = grants else {
            return false;
        };
        let event = &mut self.event;
        self.private_topics.iter().all(|&i| grants.covers(event, i))
            && (!self.private_update || grants.may_receive(event))
    }
}

/// When a stream opened with `grants` must end: its token's expiry, on
/// the loop's clock (`now` is the wall clock's present); none without
/// `exp` or too far off for the clock to hold.
pub fn stream_end(grants: &Grants, now: Instant) -> Option<Instant> {
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(grants.expires()?).ok()?))?;
    now.checked_add(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn decode_json(part: &str) -> Result<Value, Refusal> {
    let bytes = base64url_decode(part.as_bytes()).ok_or(Refusal::Malformed)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Refusal::Malformed)
    }
}

/// Only `alg: HS256`, exactly; and no `crit`, whose extensions a verifier
/// must understand (RFC 7515, 4.1.11) and this one understands none.
fn check_header(header: &Value) -> Result<(), Refusal> {
    if header.get("crit").is_some() {
        return Err(Refusal::Algorithm);
    }
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => Ok(()),
        _ => Err(Refusal::Algorithm),
    }
}

/// Decodes unpadded base64url (RFC 4648, 5), strictly: only the alphabet,
/// no padding, and the unused bits of the last character zero, so that each
/// byte string has exactly one encoding.
pub fn base64url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Six bits left over: a length of 4n + 1, which no byte string has.
    (bits < 6 && acc == 0).then_some(out)
}

/// The tokens a request carries, one slot per carrier, filled by `http`.
/// Its `Debug` says which carriers hold a token, never the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    header: Slot,
    query: Slot,
    cookie: Slot,
}

#[derive(Clone, Default, PartialEq, Eq)]
enum Slot {
    #[default]
    Empty,
    One(Box<str>),
    Several,
}

impl Slot {
    fn put(&mut self, token: &str) {
        *self = match self {
            Slot::Empty => Slot::One(token.into()),
            _ => Slot::Several,
        };
    }

    fn get(&self) -> Result<Option<&str>, Refusal> {
        match self {
            Slot::Empty => Ok(None),
            Slot::One(token) => Ok(Some(token)),
            Slot::Several => Err(Refusal::Several),
        }
    }

    fn shown(&self) -> &'static str {
        match self {
            Slot::Empty => "none",
            Slot::One(_) => "one",
            Slot::Several => "several",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("header", &self.header.shown())
            .field("query", &self.query.shown())
            .field("cookie", &self.cookie.shown())
            .finish()
    }
}

impl Credentials {
    /// An `Authorization` field: a `Bearer` token is kept; another scheme
    /// (a proxy's `Basic`, say) is none of sseloop's business.
    pub fn authorization(&mut self, value: &[u8]) {
        if let Some(token) = bearer(value) {
            self.header.put(&String::from_utf8_lossy(token));
        }
    }

    /// A `Cookie` field: the `sseloop_token` cookie, if among its pairs.
    pub fn cookies(&mut self, value: &[u8]) {
        for (name, value) in crate::mercure::bearer::cookies(value) {
            if name == COOKIE.as_bytes() {
                self.cookie.put(&String::from_utf8_lossy(value));
            }
        }
    }

    /// An `access_token` query parameter, decoded.
    pub fn query(&mut self, value: &str) {
        self.query.put(value);
    }

    /// Whether any carrier holds a token.
    pub fn any(&self) -> bool {
        [&self.header, &self.query, &self.cookie]
            .iter()
            .any(|s| **s != Slot::Empty)
    }

    /// The token for a subscribe: the header's, else the query's, else the
    /// cookie's (what the client sent on purpose before what its browser
    /// sends on its own).
    pub fn subscribe_token(&self) -> Result<Option<&str>, Refusal> {
        for slot in [&self.header, &self.query, &self.cookie] {
            if let Some(token) = slot.get()? {
                return Ok(Some(token));
            }
        }
        Ok(None)
    }

    /// The token for a publish: the `Authorization` header's only. A
    /// cookie goes along with any request a browser makes, a cross-site
    /// form's included, so it never authorizes a publish.
    pub fn publish_token(&self) -> Result<Option<&str>, Refusal> {
        self.header.get()
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// An HS256 token of `claims` (JSON text) signed with `key`, for the unit
/// tests of the modules that ask the policy.
#[cfg(test)]
pub fn sign_for_tests(header: &str, claims: &str, key: &[u8]) -> String {
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
    let input = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(claims.as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", encode(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key the vectors below were minted with, by PyJWT 2.15.1
    /// (`jwt.encode(claims, KEY, algorithm=...)`): tokens this code did not
    /// write.
    const KEY: &str = "sseloop-unit-test-key-0123456789abcdef";
    /// `{"mercure":{"subscribe":["user/1","news"]},"exp":2000000000}`
    const SUB: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyJ1c2VyLzEiLCJuZXdzIl19LCJleHAiOjIwMDAwMDAwMDB9.h6mjjLlcwC5KlE7jzza_vDtlBTp5eOszJ1lBOnUS7EM";
    /// `{"mercure":{"subscribe":["*"],"publish":["*"]}}`
    const ALL: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl0sInB1Ymxpc2giOlsiKiJdfX0.njClHDNnYq9HwG785_mBpJq9vz4MLJtSThtZvhRdjTY";
    /// `{"mercure":{"subscribe":["a"]},"nbf":1900000000,"exp":2000000000}`
    const NBF: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyJhIl19LCJuYmYiOjE5MDAwMDAwMDAsImV4cCI6MjAwMDAwMDAwMH0.7xJJYaXql2-teMP3-s2rcx-M_paA-T6TC7nf6qtbxQQ";
    /// `{"mercure":{"publish":["user/1"]},"exp":2000000000.75}`
    const PUB: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsidXNlci8xIl19LCJleHAiOjIwMDAwMDAwMDAuNzV9.PgUd5uG4StaRuJsbxhtqghbUREJjT4r0Ll3n9r_WaO8";
    /// `{"mercure":{"subscribe":["*"]}}` with HS512, HS384, `none`, RS256,
    /// and HS256 under another key.
    const HS512: &str = "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.FcYeLRW25ApM2EkwIMuj2Ebf09CPdNvXMAwkrTHlDUJ7hTKhBls4aKO7egJGaL0_hFhBsWkDZCKk_YuXElLcJA";
    const HS384: &str = "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.7A-RV6OnL7GL4_N7ymOxmre7beJsIztTlqv6BxG31o9Sph0UbXS5Len7cvUaI4aT";
    const NONE: &str =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.";
    const RS256: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.Nx3CvCgfWWE5j8j-J_e1PL2mplJJQhBAi9lhKTpT0YHLRDTkIq7wIHdzoa_Kv6BMSVXhKTceXSDCpNGZe7EXDIVSDDABesLqJmdFa7dEXLK1p0FYeHnHYPrESpq0r09TXiNTceCO_ycIEunDVV04giVDFC4HrrBMG47vjrCIVrF-GU8vAdJiUNWGdWvx_j8H3Dcj1KIDYRUykhqhQLZwj5JVDmjApAymDlyISYY_641DqSMpe-CNDOJp6BRetQziPOLGOoN_YYW-GhcYbfRzH4nsuSFdfZf3JA6uR9zLPPrfat75VAFNAVhgaUGwCMrjR1RsDmM4ee8aPt5_NycesQ";
    const OTHER_KEY: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.ilT-TbN7CiuQoxtvnAx4LJwJgUfRf6ZGXSiaE5XKkFE";
    /// `{"mercure":{"subscribe":"user/1"}}`: a string, not a list.
    const BAD_CLAIMS: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6InVzZXIvMSJ9fQ.Rd_nN3MAoGfhANqlUttK2fM81rR3mituOy758DjaZzU";
    /// HS256 with `"crit":["exp"]` in the header.
    const CRIT: &str = "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiZXhwIl0sInR5cCI6IkpXVCJ9.eyJtZXJjdXJlIjp7InN1YnNjcmliZSI6WyIqIl19fQ.Nv4JK8j7Lb7kK-2S76Krymww_W0xVTj4BwzfTGmAYxk";

    /// A time before every vector's `exp` and after its `nbf`.
    const NOW: i64 = 1_950_000_000;

    fn access(public: &[&str]) -> Access {
        Access::new(KEY.as_bytes(), public, policy()).unwrap()
    }

    fn policy() -> TokenPolicy {
        TokenPolicy {
            audience: HUB.into(),
            issuer: None,
            anonymous: false,
        }
    }

    const HUB: &str = "https://hub.example/.well-known/mercure";

    fn patterns() -> Patterns {
        Patterns::new(Url::parse(HUB, None).unwrap())
    }

    /// `Access::verify` with a loop's patterns.
    trait Verify {
        fn check(&self, token: &str, now: i64) -> Result<Grants, Refusal>;
    }

    impl Verify for Access {
        fn check(&self, token: &str, now: i64) -> Result<Grants, Refusal> {
            self.verify(token, now, &mut patterns())
        }
    }

    /// Whether `grants` cover `topic` (a subscribe detail matches it).
    fn covers(grants: &Grants, topic: &str) -> bool {
        let t = boxed(&[topic]);
        let hub = Url::parse(HUB, None).unwrap();
        grants.covers(&mut EventTopics::new(&t, &hub), 0)
    }

    fn publishes(grants: &Grants, topic: &str) -> bool {
        let t = boxed(&[topic]);
        let hub = Url::parse(HUB, None).unwrap();
        grants.may_publish(&mut EventTopics::new(&t, &hub))
    }

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn boxed(t: &[&str]) -> Vec<Box<str>> {
        t.iter().map(|&s| s.into()).collect()
    }

    /// Signs `header.claims` (JSON text) with `key`, for hand-made cases
    /// PyJWT would not write.
    fn sign(header: &str, claims: &str, key: &[u8]) -> String {
        sign_for_tests(header, claims, key)
    }

    #[test]
    fn pyjwt_tokens_verify_into_their_grants() {
        let a = access(&[]);
        let grants = a.check(SUB, NOW).unwrap();
        assert!(covers(&grants, "user/1") && covers(&grants, "news"));
        assert!(!covers(&grants, "user/2") && !covers(&grants, "user/"));
        assert!(!publishes(&grants, "user/1"));
        assert_eq!(grants.expires(), Some(2_000_000_000 + LEEWAY_SECS));
        let all = a.check(ALL, NOW).unwrap();
        assert!(covers(&all, "anything") && all.publishes_everything());
        assert_eq!(all.expires(), None);
        // A fractional exp counts from its whole second.
        assert_eq!(a.check(PUB, NOW).unwrap().expires(), Some(2_000_000_005));
        let now = Instant::now();
        assert!(stream_end(&all, now).is_none());
        let end = stream_end(&grants, now).unwrap();
        assert!(end > now + Duration::from_secs(3600), "{:?}", end - now);
    }

    /// RFC 7515, appendix A.1: an HS256 JWS with a 64-byte key and CRLFs in
    /// its JSON, whose exp (1300819380) has long passed.
    #[test]
    fn rfc7515_example_verifies_before_its_exp() {
        let key = base64url_decode(
            b"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let a = Access::new(&key, &[] as &[&str], policy()).unwrap();
        // Its signature verifies; with no Mercure claim it is an RFC 9068
        // token, refused for its typ (JWT, not at+jwt).
        assert_eq!(
            a.check(token, 1_300_819_379).unwrap_err(),
            Refusal::Token(TokenError::Type)
        );
    }

    #[test]
    fn only_hs256_with_the_key_is_accepted() {
        let a = access(&[]);
        assert_eq!(a.check(HS512, NOW), Err(Refusal::Algorithm));
        assert_eq!(a.check(HS384, NOW), Err(Refusal::Algorithm));
        assert_eq!(a.check(NONE, NOW), Err(Refusal::Algorithm));
        assert_eq!(a.check(RS256, NOW), Err(Refusal::Algorithm));
        assert_eq!(a.check(CRIT, NOW), Err(Refusal::Algorithm));
        assert_eq!(a.check(OTHER_KEY, NOW), Err(Refusal::Signature));
        let key = KEY.as_bytes();
        let claims = r#"{"mercure":{"subscribe":["*"]}}"#;
        for header in [
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS256 "}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"alg":null}"#,
            r#"{"alg":"none"}"#,
        ] {
            assert_eq!(
                a.check(&sign(header, claims, key), NOW),
                Err(Refusal::Algorithm),
                "{header}"
            );
        }
        // The last of two alg members counts (RFC 7515, 4), as serde_json reads it.
        assert_eq!(
            a.check(&sign(r#"{"alg":"HS256","alg":"none"}"#, claims, key), NOW),
            Err(Refusal::Algorithm)
        );
        assert!(
            a.check(&sign(r#"{"alg":"HS256"}"#, claims, key), NOW)
                .is_ok()
        );
        // alg none with the signature left off, or an HS256 header with none.
        let unsigned = &ALL[..ALL.rfind('.').unwrap() + 1];
        assert_eq!(a.check(unsigned, NOW), Err(Refusal::Signature));
    }

    #[test]
    fn any_change_to_a_token_breaks_it() {
        let a = access(&[]);
        for i in 0..SUB.len() {
            for b in [b'A', b'z', b'0', b'-', b'_', b'.', b'='] {
                let mut t = SUB.as_bytes().to_vec();
                if t[i] == b {
                    continue;
                }
                t[i] = b;
                let t = String::from_utf8(t).unwrap();
                // A change in the last character's unused bits is refused
                // by the strict decoder, not accepted as the same token.
                assert!(a.check(&t, NOW).is_err(), "{t}");
            }
        }
        let mut longer = SUB.to_string();
        longer.push('A');
        assert!(a.check(&longer, NOW).is_err());
        assert!(a.check(&SUB[..SUB.len() - 1], NOW).is_err());
    }

    #[test]
    fn malformed_tokens() {
        let a = access(&[]);
        for t in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "a.b.c",
            &format!("{SUB}.{SUB}"),
            &format!(" {SUB}"),
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(a.check(t, NOW), Err(Refusal::Malformed), "{t:?}");
        }
        // A well-formed header and no signature: the signature is wrong.
        assert_eq!(
            a.check("eyJhbGciOiJIUzI1NiJ9..", NOW),
            Err(Refusal::Signature)
        );
        let key = KEY.as_bytes();
        assert_eq!(
            a.check(&sign("[]", "{}", key), NOW),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            a.check(&sign(r#"{"alg":"HS256"}"#, "[1]", key), NOW),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            a.check(&sign(r#"{"alg":"HS256"}"#, "{", key), NOW),
            Err(Refusal::Malformed)
        );
        assert!(matches!(
            a.check(BAD_CLAIMS, NOW),
            Err(Refusal::Token(TokenError::Claims(_)))
        ));
        for claims in [
            r#"{"mercure":{},"exp":"2000000000"}"#,
            r#"{"mercure":{},"nbf":true}"#,
            r#"{"mercure":[]}"#,
            r#"{"mercure":{"publish":[1]}}"#,
            r#"{"mercure":{"subscribe":null}}"#,
        ] {
            let refused = a.check(&sign(r#"{"alg":"HS256"}"#, claims, key), NOW);
            assert!(
                matches!(refused, Err(Refusal::Token(TokenError::Claims(_)))),
                "{claims}: {refused:?}"
            );
            assert_eq!(
                refused.unwrap_err().reason(),
                "the token's claims are malformed"
            );
        }
    }

    #[test]
    fn exp_and_nbf_with_the_leeway() {
        let a = access(&[]);
        let exp = 2_000_000_000;
        assert!(a.check(SUB, exp - 1).is_ok());
        assert!(a.check(SUB, exp + LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            a.check(SUB, exp + LEEWAY_SECS),
            Err(Refusal::Token(TokenError::Expired))
        );
        let nbf = 1_900_000_000;
        assert_eq!(
            a.check(NBF, nbf - LEEWAY_SECS - 1),
            Err(Refusal::Token(TokenError::NotYetValid))
        );
        assert!(a.check(NBF, nbf - LEEWAY_SECS).is_ok());
        // Out-of-range dates saturate instead of wrapping.
        let key = KEY.as_bytes();
        let h = r#"{"alg":"HS256"}"#;
        let huge = a.check(&sign(h, r#"{"mercure":{},"exp":1e300}"#, key), NOW);
        assert_eq!(huge.unwrap().expires(), Some(i64::MAX));
        assert_eq!(
            a.check(&sign(h, r#"{"mercure":{},"exp":-1e300}"#, key), NOW),
            Err(Refusal::Token(TokenError::Expired))
        );
        assert_eq!(
            a.check(&sign(h, r#"{"mercure":{},"nbf":1e300}"#, key), NOW),
            Err(Refusal::Token(TokenError::NotYetValid))
        );
        assert!(
            a.check(&sign(h, r#"{"mercure":{},"nbf":-1e300}"#, key), NOW)
                .is_ok()
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            Access::new(&[7; 31], &[] as &[&str], policy()).unwrap_err(),
            ShortKey
        );
        assert!(Access::new(&[7; 32], &[] as &[&str], policy()).is_ok());
        let shown = format!("{:?}", access(&["news"]));
        assert!(!shown.contains(KEY) && shown.contains("news"), "{shown}");
    }

    #[test]
    fn subscribe_needs_every_private_topic_covered() {
        let a = access(&["news"]);
        let sub = |token, t: &[&str]| {
            a.subscribe(Ok(token), &topics(t), NOW, &mut patterns())
                .map(|g| g.is_some())
        };
        assert_eq!(sub(None, &[]), Ok(false));
        assert_eq!(sub(None, &["news"]), Ok(false));
        assert_eq!(sub(None, &["news", "user/1"]), Err(Refusal::Missing));
        assert_eq!(sub(Some(SUB), &["user/1", "news"]), Ok(true));
        assert_eq!(
            sub(Some(SUB), &["user/1", "user/2"]),
            Err(Refusal::NotCovered)
        );
        assert!(sub(Some(ALL), &["user/2"]).is_ok());
        // A bad token is refused even where none is needed.
        assert_eq!(sub(Some(OTHER_KEY), &["news"]), Err(Refusal::Signature));
        assert_eq!(sub(Some(SUB), &[]), Ok(true));
        assert!(matches!(
            a.subscribe(Err(Refusal::Several), &[], NOW, &mut patterns()),
            Err(Refusal::Several)
        ));
        let everything = access(&["*"]);
        assert!(matches!(
            everything.subscribe(Ok(None), &topics(&["x"]), NOW, &mut patterns()),
            Ok(None)
        ));
    }

    #[test]
    fn publish_needs_every_topic_covered_and_a_broadcast_needs_star() {
        let a = access(&["news"]);
        let publish = |token, t: &[&str]| a.publish(Ok(token), &topics(t), NOW, &mut patterns());
        assert_eq!(publish(None, &["user/1"]), Err(Refusal::PublishMissing));
        assert_eq!(publish(Some(PUB), &["user/1"]), Ok(()));
        assert_eq!(
            publish(Some(PUB), &["user/1", "news"]),
            Err(Refusal::PublishNotCovered)
        );
        assert_eq!(publish(Some(PUB), &[]), Err(Refusal::BroadcastNotCovered));
        // A subscriber's token publishes nothing.
        assert_eq!(
            publish(Some(SUB), &["user/1"]),
            Err(Refusal::PublishNotCovered)
        );
        assert_eq!(publish(Some(ALL), &[]), Ok(()));
        assert_eq!(publish(Some(HS512), &["x"]), Err(Refusal::Algorithm));
        assert!(
            Refusal::PublishNotCovered.forbidden()
                && !Refusal::Token(TokenError::Expired).forbidden()
        );
    }

    /// The leak cases: an event naming a public and a private topic, or two
    /// users' private topics, reaches only those allowed all of them; a
    /// private update only those allowed one of its topics; a public event
    /// on public topics everyone.
    #[test]
    fn the_one_rule_of_who_receives_what() {
        let a = access(&["news"]);
        let key = KEY.as_bytes();
        let h = r#"{"alg":"HS256"}"#;
        let grants = |subscribe: &str| {
            let claims = format!(r#"{{"mercure":{{"subscribe":{subscribe}}}}}"#);
            a.check(&sign(h, &claims, key), NOW).unwrap()
        };
        let user1 = grants(r#"["user/1"]"#);
        let both = grants(r#"["user/1","user/2"]"#);
        let every = grants(r#"["*"]"#);
        let pattern = grants(r#"[{"match":"user/:id","match_type":"urlpattern"}]"#);
        let hub = Url::parse(HUB, None).unwrap();
        let admits = |t: &[&str], private: bool, g: Option<&Grants>| {
            let topics = boxed(t);
            Audience::of(Some(&a), &topics, private, &hub).admits(g)
        };
        assert!(admits(&[], false, None));
        assert!(admits(&["news"], false, None));
        assert!(!admits(&["news", "user/1"], false, None));
        assert!(admits(&["news", "user/1"], false, Some(&user1)));
        assert!(!admits(&["user/1", "user/2"], false, Some(&user1)));
        assert!(admits(&["user/1", "user/2"], false, Some(&both)));
        assert!(admits(&["user/9", "news"], false, Some(&every)));
        assert!(admits(&["user/9", "user/3"], false, Some(&pattern)));
        // A private update: a grant on one of its topics, and still every
        // private topic covered.
        assert!(!admits(&["news"], true, None));
        assert!(!admits(&["news"], true, Some(&user1)));
        assert!(admits(&["news", "user/1"], true, Some(&user1)));
        assert!(!admits(&["user/1", "user/2"], true, Some(&user1)));
        // Without a key nothing is private but private updates, which no
        // one (no token) receives.
        let topics = boxed(&["user/1"]);
        assert!(Audience::of(None, &topics, false, &hub).is_everyone());
        assert!(!Audience::of(None, &topics, true, &hub).admits(None));
    }

    #[test]
    fn credentials_by_carrier_and_never_shown() {
        let mut c = Credentials::default();
        assert!(!c.any());
        assert_eq!(c.subscribe_token(), Ok(None));
        c.cookies(b"theme=dark; sseloop_token=\"from-cookie\"; other=x");
        assert_eq!(c.subscribe_token(), Ok(Some("from-cookie")));
        assert_eq!(c.publish_token(), Ok(None), "a cookie never publishes");
        c.query("from-query");
        assert_eq!(c.subscribe_token(), Ok(Some("from-query")));
        c.authorization(b"Basic dXNlcjpwYXNz");
        assert_eq!(c.subscribe_token(), Ok(Some("from-query")));
        c.authorization(b"bearer  from-header ");
        assert_eq!(c.subscribe_token(), Ok(Some("from-header")));
        assert_eq!(c.publish_token(), Ok(Some("from-header")));
        let shown = format!("{c:?}");
        assert!(!shown.contains("from-"), "{shown}");
        c.authorization(b"Bearer second");
        assert_eq!(c.subscribe_token(), Err(Refusal::Several));
        let mut two = Credentials::default();
        two.cookies(b"sseloop_token=a");
        two.cookies(b"x=1;sseloop_token=b");
        assert_eq!(two.subscribe_token(), Err(Refusal::Several));
        let mut none = Credentials::default();
        none.cookies(b"sseloop_tokens=a; xsseloop_token=b; sseloop_token");
        assert!(!none.any());
    }

    #[test]
    fn base64url_decodes_strictly() {
        assert_eq!(base64url_decode(b"").unwrap(), b"");
        assert_eq!(base64url_decode(b"Zg").unwrap(), b"f");
        assert_eq!(base64url_decode(b"Zm8").unwrap(), b"fo");
        assert_eq!(base64url_decode(b"Zm9v").unwrap(), b"foo");
        assert_eq!(base64url_decode(b"-_8").unwrap(), [0xfb, 0xff]);
        for bad in [
            &b"Zg=="[..],
            b"Z",
            b"Zh",
            b"Zm9",
            b"Zm+v",
            b"Zm/v",
            b"Zm9v\n",
        ] {
            assert_eq!(
                base64url_decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    mod properties {
        use super::*;
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use proptest::prelude::*;

        proptest! {
            /// The decoder agrees with the `base64` crate's strict unpadded
            /// base64url on any string of its alphabet and a few others.
            #[test]
            fn decoder_agrees_with_the_base64_crate(text in "[A-Za-z0-9_=+/.-]{0,64}") {
                prop_assert_eq!(base64url_decode(text.as_bytes()), URL_SAFE_NO_PAD.decode(&text).ok());
            }

            #[test]
            fn decoder_inverts_the_encoder(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                prop_assert_eq!(base64url_decode(URL_SAFE_NO_PAD.encode(&bytes).as_bytes()), Some(bytes));
            }

            /// Whatever the string, verifying it returns (no panic), and only
            /// a token signed with the key is ever accepted.
            #[test]
            fn arbitrary_tokens_are_refused(token in "\\PC{0,200}", dots in "[A-Za-z0-9_.-]{0,200}") {
                let a = access(&[]);
                prop_assert!(a.check(&token, NOW).is_err());
                prop_assert!(a.check(&dots, NOW).is_err());
            }

            /// Claims of any JSON shape signed with the key give a grant or a
            /// refusal, never a panic; a grant only from an object.
            #[test]
            fn signed_claims_of_any_shape(claims in json()) {
                let a = access(&[]);
                let text = claims.to_string();
                let result = a.check(&sign(r#"{"alg":"HS256"}"#, &text, KEY.as_bytes()), NOW);
                if result.is_ok() {
                    prop_assert!(claims.is_object());
                }
            }
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                prop_oneof![
                    Just("*".to_string()),
                    Just("exp".to_string()),
                    "[a-z/]{0,8}"
                ]
                .prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec(
                        (
                            prop_oneof![
                                Just("mercure".to_string()),
                                Just("subscribe".to_string()),
                                Just("publish".to_string()),
                                Just("exp".to_string()),
                                Just("nbf".to_string()),
                                "[a-z]{1,4}"
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
                ]
            })
        }
    }
}
