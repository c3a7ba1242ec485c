//! Mercure 1.0 authorization on a token whose signature `auth` has already
//! verified: the draft's "Token Validation" on the decoded header and
//! claims, and its `authorization_details` as grants (may this token
//! publish an update; may it receive a private one).
//!
//! A token with `authorization_details`, or without the old `mercure`
//! claim, is an RFC 9068 access token and is checked as the draft says:
//! `typ` is `at+jwt` (or `application/at+jwt`, any case), `alg` on the
//! allow-list ([`ALGORITHMS`]: HS256, never `none`), `iss` present and, when
//! the hub has one configured, equal to it, `aud` (a string or an array)
//! holding the hub's audience, `exp` present and not reached (no leeway:
//! the draft has the stream end at `exp`), `nbf` not ahead by more than the
//! leeway. Its Mercure details are all checked, and one bad one refuses the
//! whole token (no partial acceptance).
//!
//! A token with the old `mercure` claim and no `authorization_details` is
//! taken as the reference hub's compatibility mode takes it (its
//! `deprecated_claim` build with `protocol_version_compatibility 8`): no
//! `typ`, `aud` or `iss` check and `exp` optional (enforced when present,
//! with the leeway sseloop always gave it, as `nbf`). Its `publish` and `subscribe` lists (or those of the namespaced
//! `https://mercure.rocks/` claim, which wins when both are there) hold
//! strings, an exact topic or `*`, or `{match, match_type}` objects. A 0.x
//! URI Template string is no template here: it matches only its own text.
//! [`Policy::legacy_claim`] turns the old claim off.

use std::fmt;

use serde_json::{Map, Value};

use super::chars;
use super::matcher::{EventTopics, MAX_MATCHER_LEN, MatchType, Matcher, Patterns};

/// The Mercure authorization detail type, compared byte for byte.
pub const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// Accepted signature algorithms (the signature itself is `auth`'s).
pub const ALGORITHMS: &[&str] = &["HS256"];
/// Most Mercure authorization details in a token.
pub const MAX_DETAILS: usize = 64;
/// Most topic matchers in a token's details (or old claim) together.
pub const MAX_TOPICS: usize = 64;

/// What the hub checks a token against.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// The hub's resource identifier, which `aud` must hold
    /// (`--jwt-audience`, by default the hub URL).
    pub audience: &'a str,
    /// The issuer `iss` must equal (`--jwt-issuer`); without one, any
    /// `iss` is taken (the key's holder is the issuer).
    pub issuer: Option<&'a str>,
    /// Whether the old `mercure` claim is accepted.
    pub legacy_claim: bool,
    /// The time, in Unix seconds.
    pub now: i64,
    /// Seconds `nbf` may be ahead (clocks a little apart).
    pub leeway: i64,
}

/// Why a token was refused: always a 401 `invalid_token` (the draft asks
/// not to tell which check failed); the text is for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// `alg` not on the allow-list.
    Algorithm,
    /// `typ` is not `at+jwt`.
    Type,
    /// `iss` missing, or not the configured issuer.
    Issuer,
    /// `aud` missing, or without the hub's audience.
    Audience,
    /// No `exp`.
    NoExpiry,
    /// `exp` reached.
    Expired,
    /// `nbf` ahead.
    NotYetValid,
    /// A claim of the wrong shape, or over a limit.
    Claims(&'static str),
}

impl TokenError {
    /// What was wrong, in fixed words.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Algorithm => "the token's alg is not allowed",
            TokenError::Type => "the token's typ is not at+jwt",
            TokenError::Issuer => "the token's iss is missing or not the hub's issuer",
            TokenError::Audience => "the token's aud does not hold the hub",
            TokenError::NoExpiry => "the token has no exp",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet (nbf)",
            TokenError::Claims(why) => why,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let TokenError::Claims(_) = self {
            f.write_str("the token's claims are malformed: ")?;
        }
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Detail {
    publish: bool,
    subscribe: bool,
    topics: Vec<Matcher>,
}

/// What a valid token allows, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    details: Vec<Detail>,
    expires: Option<i64>,
    legacy: bool,
}

impl Grants {
    /// The Unix second at which the token stops being valid and a stream
    /// it opened must end (`None`: an old-claim token without `exp`).
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }

    /// Whether it came with the old `mercure` claim.
    #[cfg(test)]
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Whether it may publish an update on these topics: a `publish`
    /// detail must match every one (canonical and alternates).
    pub fn may_publish(&self, event: &mut EventTopics<'_>) -> bool {
        (0..event.topics().len()).all(|i| {
            self.details
                .iter()
                .filter(|d| d.publish)
                .any(|d| d.topics.iter().any(|m| m.matches_at(event, i)))
        })
    }

    /// Whether it may publish to every topic, a broadcast's (a `publish`
    /// detail with `*`).
    pub fn publishes_everything(&self) -> bool {
        self.details
            .iter()
            .any(|d| d.publish && d.topics.iter().any(|m| matches!(m, Matcher::Any)))
    }

    /// Whether a `subscribe` detail matches the event's topic `i` (a
    /// private topic's test: each must be covered).
    pub fn covers(&self, event: &mut EventTopics<'_>, i: usize) -> bool {
        self.details
            .iter()
            .filter(|d| d.subscribe)
            .any(|d| d.topics.iter().any(|m| m.matches_at(event, i)))
    }

    /// Whether it may receive a private update on these topics: a
    /// `subscribe` detail must match at least one of them.
    pub fn may_receive(&self, event: &mut EventTopics<'_>) -> bool {
        self.details
            .iter()
            .filter(|d| d.subscribe)
            .any(|d| d.topics.iter().any(|m| m.matches(event)))
    }
}

/// Checks a verified token's decoded `header` and `claims` and returns
/// what it allows.
pub fn validate(
    header: &Value,
    claims: &Value,
    policy: &Policy<'_>,
    patterns: &mut Patterns,
) -> Result<Grants, TokenError> {
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if ALGORITHMS.contains(&alg) => {}
        _ => return Err(TokenError::Algorithm),
    }
    let claims = claims
        .as_object()
        .ok_or(TokenError::Claims("not an object"))?;
    let details = claims.get("authorization_details");
    let legacy = details.is_none()
        && policy.legacy_claim
        && (claims.contains_key("mercure") || claims.contains_key("https://mercure.rocks/"));
    if !legacy {
        check_type(header)?;
        check_issuer(claims, policy)?;
        check_audience(claims, policy)?;
    }
    // An old-claim token keeps the leeway sseloop always gave its `exp`;
    // an RFC 9068 one has none: the stream must end by `exp`.
    let leeway = if legacy { policy.leeway } else { 0 };
    let expires = date(claims, "exp")?.map(|e| (e.floor() as i64).saturating_add(leeway));
    match expires {
        None if !legacy => return Err(TokenError::NoExpiry),
        Some(exp) if policy.now >= exp => return Err(TokenError::Expired),
        _ => {}
    }
    if let Some(nbf) = date(claims, "nbf")?
        && (policy.now.saturating_add(policy.leeway) as f64) < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    let details = if legacy {
        let claim = claims
            .get("https://mercure.rocks/")
            .or_else(|| claims.get("mercure"));
        legacy_details(claim.unwrap_or(&Value::Null), patterns)?
    } else {
        match details {
            None => Vec::new(),
            Some(d) => mercure_details(d, patterns)?,
        }
    };
    Ok(Grants {
        details,
        expires,
        legacy,
    })
}

fn check_type(header: &Value) -> Result<(), TokenError> {
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    let typ = match typ.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    if typ.eq_ignore_ascii_case("at+jwt") {
        Ok(())
    } else {
        Err(TokenError::Type)
    }
}

fn check_issuer(claims: &Map<String, Value>, policy: &Policy<'_>) -> Result<(), TokenError> {
    match (claims.get("iss").and_then(Value::as_str), policy.issuer) {
        (Some(iss), Some(want)) if iss == want => Ok(()),
        (Some(_), None) => Ok(()),
        _ => Err(TokenError::Issuer),
    }
}

fn check_audience(claims: &Map<String, Value>, policy: &Policy<'_>) -> Result<(), TokenError> {
    let held = match claims.get("aud") {
        Some(Value::String(a)) => a == policy.audience,
        Some(Value::Array(list)) => {
            let mut held = false;
            for a in list {
                held |= a
                    .as_str()
                    .ok_or(TokenError::Claims("aud holds a non-string"))?
                    == policy.audience;
            }
            held
        }
        Some(_) => return Err(TokenError::Claims("aud is neither a string nor an array")),
        None => false,
    };
    if held {
        Ok(())
    } else {
        Err(TokenError::Audience)
    }
}

fn date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(TokenError::Claims("a date claim is not a number")),
    }
}

/// The Mercure entries of `authorization_details`; others are ignored.
fn mercure_details(details: &Value, patterns: &mut Patterns) -> Result<Vec<Detail>, TokenError> {
    let list = details
        .as_array()
        .ok_or(TokenError::Claims("authorization_details is not an array"))?;
    let mut out = Vec::new();
    let mut topics_seen = 0;
    for entry in list {
        let entry = entry.as_object().ok_or(TokenError::Claims(
            "an authorization detail is not an object",
        ))?;
        if entry.get("type").and_then(Value::as_str) != Some(DETAIL_TYPE) {
            continue;
        }
        if out.len() == MAX_DETAILS {
            return Err(TokenError::Claims("too many Mercure authorization details"));
        }
        let actions = entry
            .get("actions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or(TokenError::Claims("actions is not a non-empty array"))?;
        let (mut publish, mut subscribe) = (false, false);
        for a in actions {
            match a.as_str() {
                Some("publish") => publish = true,
                Some("subscribe") => subscribe = true,
                // Actions of later specifications grant nothing here.
                Some(_) => {}
                None => return Err(TokenError::Claims("an action is not a string")),
            }
        }
        let topics = entry
            .get("topics")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Claims("topics is not a non-empty array"))?;
        topics_seen += topics.len();
        if topics_seen > MAX_TOPICS {
            return Err(TokenError::Claims("too many topic matchers"));
        }
        let topics = topics
            .iter()
            .map(|t| topic_matcher(t, false, patterns))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Detail {
            publish,
            subscribe,
            topics,
        });
    }
    Ok(out)
}

/// One `{match, match_type?}` object (or, in the old claim, a string).
fn topic_matcher(t: &Value, legacy: bool, patterns: &mut Patterns) -> Result<Matcher, TokenError> {
    let (value, kind) = match t {
        Value::String(s) if legacy => (s.as_str(), MatchType::Exact),
        Value::Object(o) => {
            let value = o
                .get("match")
                .and_then(Value::as_str)
                .ok_or(TokenError::Claims("a topic matcher has no string match"))?;
            let kind = match o.get("match_type") {
                None | Some(Value::Null) => MatchType::Exact,
                Some(Value::String(name)) => MatchType::from_name(name)
                    .ok_or(TokenError::Claims("a match_type this hub does not support"))?,
                Some(_) => return Err(TokenError::Claims("match_type is not a string")),
            };
            (value, kind)
        }
        _ => return Err(TokenError::Claims("a topic matcher is not an object")),
    };
    if value.is_empty() {
        return Err(TokenError::Claims("an empty topic matcher"));
    }
    if value.len() > MAX_MATCHER_LEN || !chars::is_valid(value) {
        return Err(TokenError::Claims(
            "a topic matcher too long or with control or format characters",
        ));
    }
    Matcher::compile(kind, value, patterns)
        .map_err(|_| TokenError::Claims("an invalid URL pattern"))
}

/// The old claim, `{publish: [...], subscribe: [...]}`, as details.
fn legacy_details(claim: &Value, patterns: &mut Patterns) -> Result<Vec<Detail>, TokenError> {
    let claim = claim
        .as_object()
        .ok_or(TokenError::Claims("the mercure claim is not an object"))?;
    let mut list = |name: &str| -> Result<Vec<Matcher>, TokenError> {
        match claim.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_TOPICS => items
                .iter()
                .map(|t| topic_matcher(t, true, patterns))
                .collect(),
            Some(Value::Array(_)) => Err(TokenError::Claims("too many topic matchers")),
            Some(_) => Err(TokenError::Claims("a mercure claim list is not an array")),
        }
    };
    let publish = list("publish")?;
    let subscribe = list("subscribe")?;
    Ok(vec![
        Detail {
            publish: true,
            subscribe: false,
            topics: publish,
        },
        Detail {
            publish: false,
            subscribe: true,
            topics: subscribe,
        },
    ])
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
