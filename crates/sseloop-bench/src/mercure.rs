//! `--mercure`: the subscribers go to sseloop's Mercure hub
//! (`/.well-known/mercure`) instead of `/events`, with an exact matcher of
//! the topic or a URL pattern that matches it, while events are still
//! published on `/publish` (the same hub): what a Mercure subscriber costs
//! against an `/events` one, in one server.

/// How subscribers subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `GET /events?topic=T`.
    Events,
    /// `GET /.well-known/mercure?match=T`.
    Exact,
    /// `GET /.well-known/mercure?match_urlpattern=https://bench.example/T/:id`,
    /// events published to `https://bench.example/T/1`.
    UrlPattern,
}

impl Mode {
    /// `--mercure`'s value.
    pub(crate) fn parse(text: &str) -> Option<Mode> {
        match text {
            "exact" => Some(Mode::Exact),
            "urlpattern" => Some(Mode::UrlPattern),
            _ => None,
        }
    }

    /// The name the report gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Exact => "mercure-exact",
            Mode::UrlPattern => "mercure-urlpattern",
        }
    }

    /// The topic events are published to, for subscribers of `topic`.
    pub(crate) fn published_topic(self, topic: &str) -> String {
        match self {
            Mode::UrlPattern => format!("https://bench.example/{topic}/1"),
            _ => topic.to_owned(),
        }
    }

    /// A subscriber's request target, `topic` percent-encoded by `encode`.
    pub(crate) fn subscribe_target(self, topic: &str, encode: impl Fn(&str) -> String) -> String {
        match self {
            Mode::Events => format!("/events?topic={}", encode(topic)),
            Mode::Exact => format!("/.well-known/mercure?match={}", encode(topic)),
            Mode::UrlPattern => format!(
                "/.well-known/mercure?match_urlpattern={}",
                encode(&format!("https://bench.example/{topic}/:id"))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_topics() {
        let plain = |t: &str| t.replace('/', "%2F").replace(':', "%3A");
        assert_eq!(Mode::parse("exact"), Some(Mode::Exact));
        assert_eq!(Mode::parse("regexp"), None);
        assert_eq!(Mode::Events.subscribe_target("b", plain), "/events?topic=b");
        assert_eq!(
            Mode::Exact.subscribe_target("b", plain),
            "/.well-known/mercure?match=b"
        );
        assert_eq!(
            Mode::UrlPattern.subscribe_target("b", plain),
            "/.well-known/mercure?match_urlpattern=https%3A%2F%2Fbench.example%2Fb%2F%3Aid"
        );
        assert_eq!(
            Mode::UrlPattern.published_topic("b"),
            "https://bench.example/b/1"
        );
        assert_eq!(Mode::Exact.published_topic("b"), "b");
    }
}
