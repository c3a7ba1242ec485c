//! `Config`: every limit and timeout the server applies, each default a named
//! constant; the rules a configuration must keep ([`Config::validate`],
//! which the library and the command line share); and the parsers for the
//! values the command line takes (durations, sizes; host names and origins
//! with `http`'s grammar).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

/// Address bound when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// An idle subscriber gets `: heartbeat` at least this often.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(20);
/// Published events kept for `Last-Event-ID` replay.
pub const DEFAULT_HISTORY: usize = 1024;
/// Open connections (of any kind) served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Unsent bytes one connection may hold before it is cut off.
pub const DEFAULT_QUEUE_LIMIT: usize = 1 << 20;
/// Largest publish body.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 64 << 10;
/// Time a client has to send a whole request (head and body) once it began,
/// or its first request after connecting.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request in progress is closed after this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a shutdown request, queued bytes get this long to be written.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Largest request head (request line and headers).
pub const DEFAULT_MAX_HEAD_SIZE: usize = 8 << 10;
/// Most header fields in one request.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Most topics one subscriber may name: a resume compares each kept event
/// with each of them, and each costs memory for as long as it streams.
pub const DEFAULT_MAX_TOPICS: usize = 64;
/// The kernel send buffer of each stream (`SO_SNDBUF`; Linux keeps twice
/// this for its bookkeeping). Without it the kernel grows a stalled
/// subscriber's buffer to several MiB; this keeps a subscriber on a
/// gigabit LAN fast (about 8 ms of data at full speed) and bounds what a
/// stalled one holds.
pub const DEFAULT_SEND_BUFFER: usize = 256 << 10;
/// Bytes a closing connection's client may still send, read and dropped
/// so that the last answer is not lost to a reset; past this it is closed.
pub const LINGER_DISCARD_LIMIT: usize = 1 << 20;
/// Connections accepted beyond `max_connections` only to be told to come
/// back later (a retry stream or a 503); past these, new ones are closed at
/// once without an answer.
pub const OVERFLOW_CONNECTIONS: usize = 64;
/// Time an over-capacity connection has to send its request.
pub const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest `jwt_key` accepted: HS256's own output size (RFC 7518, 3.2).
pub const MIN_JWT_KEY_LEN: usize = crate::auth::MIN_KEY_LEN;
/// After an error answer the connection reads and discards what the client
/// still sends for at most this long, so the answer is not lost to a reset.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::sse::Framing;
pub use redis::{
    DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT, MAX_SENTINELS, NO_TLS, RedisTarget, RedisUrl,
    SentinelUrl,
};

mod limits;
mod redis;

pub use limits::{MAX_BUSY_POLL, MAX_LOOPS, MAX_RETRY};

/// Everything the server needs to know; `Config::default()` is what the
/// binary runs with when given no options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; port 0 picks a free port (see `Server::local_addr`).
    pub listen: SocketAddr,
    /// Heartbeat interval for idle subscribers; `None` sends none.
    pub heartbeat: Option<Duration>,
    /// When set, each new stream starts with `retry: <ms>`.
    pub retry: Option<Duration>,
    /// Body framing of HTTP/1.1 streams.
    pub framing: Framing,
    /// Published events kept for replay; 0 keeps none.
    pub history: usize,
    /// Open connections served at once.
    pub max_connections: usize,
    /// Unsent bytes one connection may hold.
    pub queue_limit: usize,
    /// Largest publish body in bytes.
    pub max_event_size: usize,
    /// Time allowed for a request to arrive whole.
    pub header_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Duration,
    /// Time queued bytes get to be written after a shutdown request.
    pub shutdown_grace: Duration,
    /// Largest request head in bytes.
    pub max_head_size: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Most topics one subscriber may name.
    pub max_topics: usize,
    /// Kernel send buffer of each stream (`SO_SNDBUF`); 0 leaves it to the
    /// kernel's autotuning.
    pub send_buffer: usize,
    /// When set, publishing needs `Authorization: Bearer <token>`.
    pub publish_token: Option<String>,
    /// CORS: the origin (or `*`) allowed to use the endpoints from a page;
    /// `None` sends no CORS header and refuses preflights. Pages of this
    /// origin may also publish; pages of other origins may not.
    pub allow_origin: Option<String>,
    /// Host names (or IP addresses, IPv6 in brackets), without a port,
    /// answered besides the loopback ones; requests for other names get 421
    /// on a loopback `listen`, and on any other once this is not empty.
    pub allow_hosts: Vec<String>,
    /// After any activity, poll without sleeping for this long before
    /// blocking again: trades a busy core while traffic flows for the
    /// scheduler's wake-up time on each event. Zero (the default) never spins.
    pub busy_poll: Duration,
    /// Allows a `listen` address off loopback with no `publish_token`,
    /// which `Server::bind` refuses otherwise: for a network where an open
    /// publish endpoint is really wanted.
    pub insecure_open_publish: bool,
    /// Poll loops, each a single-threaded mio loop on its own thread with
    /// its own `SO_REUSEPORT` listener on `listen`: the kernel spreads
    /// connections over them, and every event reaches every loop in one
    /// order. At least 1.
    pub loops: usize,
    /// Private topics: when set, a topic not in `public_topics` is served
    /// only to a subscriber whose HS256 JWT, signed with this key (at least
    /// 32 bytes; `Server::bind` refuses a shorter one), allows it, and
    /// publishing needs `publish_token` or a JWT allowed to publish.
    pub jwt_key: Option<String>,
    /// With `jwt_key`: the topics anyone may subscribe to (`*`: all).
    pub public_topics: Vec<String>,
    /// The Mercure hub's URL, as its clients reach it: topics and
    /// relative URL patterns resolve against it, and it is the default
    /// token audience. `None`: `http://<listen address>/.well-known/mercure`
    /// (the bound address, so the port port 0 picked).
    pub hub_url: Option<String>,
    /// With `jwt_key`: the issuer (`iss`) an RFC 9068 token must name;
    /// `None` takes any issuer (whoever holds the key issues tokens).
    pub jwt_issuer: Option<String>,
    /// With `jwt_key`: the audience (`aud`) an RFC 9068 token must hold;
    /// `None`: the hub URL.
    pub jwt_audience: Option<String>,
    /// With `jwt_key`: Mercure subscribers without a token are served (the
    /// public updates only) instead of refused with 401. With no
    /// `public_topics`, every topic is public, as in Mercure, where
    /// privacy is per update (see [`Config::public_topics_in_effect`]).
    pub anonymous: bool,
    /// When set, this server is a node of a cluster sharing one hub
    /// through Redis (see [`Cluster`]).
    pub cluster: Option<Cluster>,
    /// The failure lab: `GET /lab` and its streams (see [`crate::lab`]),
    /// served by a thread of its own.
    pub lab: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("default address parses"),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            retry: None,
            framing: Framing::Chunked,
            history: DEFAULT_HISTORY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_topics: DEFAULT_MAX_TOPICS,
            send_buffer: DEFAULT_SEND_BUFFER,
            publish_token: None,
            allow_origin: None,
            allow_hosts: Vec::new(),
            busy_poll: Duration::ZERO,
            insecure_open_publish: false,
            loops: 1,
            jwt_key: None,
            public_topics: Vec::new(),
            hub_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            anonymous: false,
            cluster: None,
            lab: false,
        }
    }
}

impl Config {
    /// The topics anyone may subscribe to: `public_topics`, or every
    /// topic (`*`) when `anonymous` names none, so that `--jwt-key
    /// --anonymous` is Mercure's model (updates public unless marked
    /// private) without more options.
    pub fn public_topics_in_effect(&self) -> &[String] {
        static EVERY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        if self.anonymous && self.public_topics.is_empty() {
            return EVERY.get_or_init(|| vec!["*".to_owned()]);
        }
        &self.public_topics
    }

    /// True when anyone on a network could publish: a listen address off
    /// loopback, no publish token, no JWT key, and no
    /// `insecure_open_publish`.
    pub fn exposes_open_publish(&self) -> bool {
        !self.listen.ip().is_loopback()
            && self.publish_token.is_none()
            && self.jwt_key.is_none()
            && !self.insecure_open_publish
    }

    /// Checks the rules every server applies before it binds: values of
    /// the right form, a JWT key long enough, no open publish endpoint on a
    /// network unless asked for. The first rule broken is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(origin) = &self.allow_origin
            && origin != "*"
            && !valid_origin(origin)
        {
            return Err(ConfigError::AllowOrigin(origin.clone()));
        }
        if let Some(host) = self
            .allow_hosts
            .iter()
            .find(|h| parse_host_name(h).is_none())
        {
            return Err(ConfigError::AllowHost(host.clone()));
        }
        if let Some(topic) = self
            .public_topics
            .iter()
            .find(|t| *t != "*" && !crate::sse::valid_topic(t))
        {
            return Err(ConfigError::PublicTopic(topic.clone()));
        }
        if let Some(cluster) = &self.cluster {
            if !valid_redis_key(&cluster.key) {
                return Err(ConfigError::RedisKey(cluster.key.clone()));
            }
            if cluster.replicas > MAX_REDIS_REPLICAS {
                return Err(ConfigError::RedisReplicas(cluster.replicas));
            }
            if cluster.publish_timeout.is_zero() || cluster.publish_timeout > MAX_PUBLISH_TIMEOUT {
                return Err(ConfigError::PublishTimeout(cluster.publish_timeout));
            }
            if self.max_event_size > MAX_CLUSTER_EVENT_SIZE {
                return Err(ConfigError::ClusterEventSize(self.max_event_size));
            }
            if self.max_topics > MAX_CLUSTER_TOPICS {
                return Err(ConfigError::ClusterTopics(self.max_topics));
            }
            #[cfg(feature = "tls")]
            if cluster.redis_ca.is_some() && !cluster.redis.tls() {
                return Err(ConfigError::RedisCaWithoutTls);
            }
        }
        if let Some(key) = &self.jwt_key
            && key.len() < MIN_JWT_KEY_LEN
        {
            return Err(ConfigError::ShortJwtKey(key.len()));
        }
        if self.jwt_key.is_none() && !self.public_topics.is_empty() {
            return Err(ConfigError::PublicTopicsWithoutKey);
        }
        if let Some(url) = &self.hub_url
            && !valid_hub_url(url)
        {
            return Err(ConfigError::HubUrl(url.clone()));
        }
        for (name, value) in [
            ("issuer", &self.jwt_issuer),
            ("audience", &self.jwt_audience),
        ] {
            if let Some(value) = value
                && (value.is_empty() || value.chars().any(char::is_control))
            {
                return Err(ConfigError::TokenClaim(name, value.clone()));
            }
        }
        if self.jwt_key.is_none() {
            let needing = [
                (self.jwt_issuer.is_some(), "a token issuer"),
                (self.jwt_audience.is_some(), "a token audience"),
                (self.anonymous, "anonymous subscribers"),
            ];
            if let Some((_, what)) = needing.iter().find(|(set, _)| *set) {
                return Err(ConfigError::NeedsJwtKey(what));
            }
        }
        if self.loops == 0 {
            return Err(ConfigError::NoLoops);
        }
        limits::check(self)?;
        if self.exposes_open_publish() {
            return Err(ConfigError::OpenPublish(self.listen));
        }
        Ok(())
    }
}

/// A rule of [`Config::validate`] that a configuration breaks. Its
/// `Display` says what is wrong in the library's words; the `sseloop`
/// binary names its options instead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `allow_origin` is neither `*` nor an origin (see [`valid_origin`]).
    AllowOrigin(String),
    /// An `allow_hosts` entry is not a host name or IP address without a
    /// port (see [`parse_host_name`]).
    AllowHost(String),
    /// A `public_topics` entry is neither `*` nor a topic name
    /// ([`crate::valid_topic`]).
    PublicTopic(String),
    /// The cluster's key is not one [`valid_redis_key`] takes.
    RedisKey(String),
    /// The cluster waits for more than [`MAX_REDIS_REPLICAS`] replicas.
    RedisReplicas(usize),
    /// The cluster's `publish_timeout` is 0 or over [`MAX_PUBLISH_TIMEOUT`].
    PublishTimeout(Duration),
    /// A cluster node's `max_event_size` is over
    /// [`MAX_CLUSTER_EVENT_SIZE`].
    ClusterEventSize(usize),
    /// A cluster node's `max_topics` is over [`MAX_CLUSTER_TOPICS`].
    ClusterTopics(usize),
    /// The cluster names a CA file (`redis_ca`) but Redis is not reached
    /// over TLS. Only with the cargo feature `tls`.
    #[cfg(feature = "tls")]
    RedisCaWithoutTls,
    /// `jwt_key` is this many bytes, fewer than [`MIN_JWT_KEY_LEN`].
    ShortJwtKey(usize),
    /// `public_topics` without `jwt_key`, where every topic is public.
    PublicTopicsWithoutKey,
    /// `hub_url` is not an absolute `http://` or `https://` URL.
    HubUrl(String),
    /// `jwt_issuer` or `jwt_audience` (named) is empty or holds a
    /// control character.
    TokenClaim(&'static str, String),
    /// This setting (named) means something only with `jwt_key`.
    NeedsJwtKey(&'static str),
    /// `loops` is 0.
    NoLoops,
    /// A numeric setting (named) is out of its bounds (said how).
    Setting(&'static str, &'static str),
    /// `listen` is reachable from the network and anyone could publish
    /// (see [`Config::exposes_open_publish`]).
    OpenPublish(SocketAddr),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::AllowOrigin(origin) => write!(
                f,
                "the allowed origin {origin:?} is neither * nor an origin like https://app.example.com"
            ),
            ConfigError::AllowHost(host) => write!(
                f,
                "the allowed host {host:?} is not a host name or IP address without a port"
            ),
            ConfigError::PublicTopic(topic) => write!(
                f,
                "the public topic {topic:?} is neither * nor a topic of 1 to {} bytes with no control characters",
                crate::sse::MAX_TOPIC_LEN
            ),
            ConfigError::RedisKey(key) => write!(
                f,
                "the Redis key {key:?} is not 1 to {MAX_REDIS_KEY_LEN} letters, digits or _-.:{{}}"
            ),
            ConfigError::RedisReplicas(n) => write!(
                f,
                "a publish may wait for at most {MAX_REDIS_REPLICAS} replicas, not {n}"
            ),
            ConfigError::PublishTimeout(d) => write!(
                f,
                "the publish timeout must be more than 0 and at most {MAX_PUBLISH_TIMEOUT:?}, not {d:?}"
            ),
            ConfigError::ClusterEventSize(size) => write!(
                f,
                "a cluster node's largest event is at most {MAX_CLUSTER_EVENT_SIZE} bytes (1MiB), not {size}: \
                 every node must read what any node stores"
            ),
            ConfigError::ClusterTopics(n) => write!(
                f,
                "a cluster node's --max-topics is at most {MAX_CLUSTER_TOPICS}, not {n}: \
                 every node must read what any node stores"
            ),
            #[cfg(feature = "tls")]
            ConfigError::RedisCaWithoutTls => {
                f.write_str("a CA file for Redis needs Redis over TLS (rediss://)")
            }
            ConfigError::ShortJwtKey(len) => write!(
                f,
                "the JWT key is {len} bytes: it must be at least {MIN_JWT_KEY_LEN} bytes"
            ),
            ConfigError::PublicTopicsWithoutKey => {
                f.write_str("public topics need a JWT key (without one every topic is public)")
            }
            ConfigError::HubUrl(url) => write!(
                f,
                "the hub URL {url:?} is not an absolute http:// or https:// URL"
            ),
            ConfigError::TokenClaim(name, value) => write!(
                f,
                "the token {name} {value:?} is empty or holds a control character"
            ),
            ConfigError::NeedsJwtKey(what) => {
                write!(f, "{what} need a JWT key (without one there are no tokens)")
            }
            ConfigError::NoLoops => f.write_str("a server needs at least one loop"),
            ConfigError::Setting(name, rule) => write!(f, "{name} {rule}"),
            ConfigError::OpenPublish(listen) => write!(
                f,
                "{listen} is reachable from the network and anyone could publish: set a publish \
                 token, or allow an open publish endpoint explicitly"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for std::io::Error {
    /// An open publish endpoint is `PermissionDenied`; any other broken
    /// rule `InvalidInput`.
    fn from(e: ConfigError) -> std::io::Error {
        let kind = match e {
            ConfigError::OpenPublish(_) => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

/// The canonical form of a host name an `allow_hosts` entry may hold: a
/// name or an IP address (IPv6 with or without brackets), without a port;
/// `None` when it is not one.
pub fn parse_host_name(text: &str) -> Option<String> {
    crate::http::canonical_host(text)
}

/// True for an origin as browsers send it in `Origin` (`http://` or
/// `https://`, a host, an optional port, nothing else), the form
/// `allow_origin` takes besides `*`.
pub fn valid_origin(text: &str) -> bool {
    crate::http::valid_origin(text)
}

/// True for a hub URL `hub_url` takes: an absolute `http://` or
/// `https://` URL, as the WHATWG URL parser reads it.
pub fn valid_hub_url(text: &str) -> bool {
    crate::mercure::url::HubUrl::parse(text)
        .is_ok_and(|hub| matches!(hub.url().scheme(), "http" | "https"))
}

/// The hub URL of a server whose configured one is `configured`, bound to
/// `local`: the configured one, or `http://<local>/.well-known/mercure`.
pub fn hub_url(configured: Option<&str>, local: SocketAddr) -> String {
    match configured {
        Some(url) => url.to_owned(),
        None => format!("http://{local}/.well-known/mercure"),
    }
}

/// Prefix of a cluster's keys in Redis when none is given.
pub const DEFAULT_REDIS_KEY: &str = "sseloop";

/// Longest `--redis-key`.
pub const MAX_REDIS_KEY_LEN: usize = 64;

/// Longest a publish waits for Redis by default (to reach it, to store
/// the event and, with replicas asked for, for them to have it) before it
/// is refused with 503.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `publish_timeout` taken.
pub const MAX_PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Most replicas a publish may wait for.
pub const MAX_REDIS_REPLICAS: usize = 16;
/// Largest `max_event_size` a cluster node takes. Every node reads every
/// entry any node stored, up to one bound for all of them (this plus room
/// for the entry's other fields): so no node's own limit can make it
/// refuse what another node was allowed to store.
pub const MAX_CLUSTER_EVENT_SIZE: usize = 1 << 20;
/// Largest `max_topics` a cluster node takes, and most topics an event
/// stored in a cluster may carry, for the same reason.
pub const MAX_CLUSTER_TOPICS: usize = 1024;

/// A node's place in a cluster: the Redis every node shares, the prefix of
/// the hub's keys there (`<key>:events`, the stream of events,
/// `<key>:epoch`, the run part of the ids, and `<key>:keys`, the keys
/// publishers gave their events), and how publishes wait for Redis. Nodes
/// with the same Redis and key share one hub; another key is another hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Where Redis is (one server, or the Sentinels that name the
    /// primary) and how to log in.
    pub redis: RedisTarget,
    /// The prefix of the hub's keys.
    pub key: String,
    /// A publish is acknowledged only once this many replicas of the
    /// primary have it (`WAIT`); 0 acknowledges once the primary has it.
    pub replicas: usize,
    /// Longest a publish waits for Redis before it gets 503.
    pub publish_timeout: Duration,
    /// With TLS: a PEM file of the CA certificates Redis's certificate is
    /// checked against, instead of the public CAs (a private CA). Only
    /// with the cargo feature `tls`.
    #[cfg(feature = "tls")]
    pub redis_ca: Option<std::path::PathBuf>,
}

impl Cluster {
    /// A cluster on `redis` with the default key, acknowledging once the
    /// primary has an event, waiting [`DEFAULT_PUBLISH_TIMEOUT`].
    pub fn new(redis: RedisTarget) -> Cluster {
        Cluster {
            redis,
            key: DEFAULT_REDIS_KEY.to_owned(),
            replicas: 0,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            #[cfg(feature = "tls")]
            redis_ca: None,
        }
    }
}

/// True when `key` can prefix a cluster's keys: 1 to 64 bytes of letters,
/// digits and `_ - . : { }` (braces: a Redis Cluster hash tag).
pub fn valid_redis_key(key: &str) -> bool {
    (1..=MAX_REDIS_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:{}".contains(&b))
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not
/// UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    crate::percent::decode_str(text, false, crate::percent::Broken::Refused).map(Cow::into_owned)
}

/// Parses a duration: a number with `ms`, `s` or `m`; a bare number is seconds.
/// `sseloop-bench` reads its durations and sizes with this and
/// [`parse_size`], so that both command lines take the same values.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1000)
    };
    let n = parse_plain_number(digits)?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

/// Parses a size: a number with `B`, `KiB` or `MiB`; a bare number is bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = if let Some(n) = text.strip_suffix("KiB") {
        (n, 1 << 10)
    } else if let Some(n) = text.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = text.strip_suffix('B') {
        (n, 1)
    } else {
        (text, 1)
    };
    let n = usize::try_from(parse_plain_number(digits)?).ok()?;
    n.checked_mul(unit)
}

/// ASCII digits only: no sign, no spaces, no empty string.
pub(crate) fn parse_plain_number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("20s", Some(20_000)),
            ("20", Some(20_000)),
            ("150ms", Some(150)),
            ("2m", Some(120_000)),
            ("0", Some(0)),
            ("", None),
            ("s", None),
            ("-1s", None),
            ("1.5s", None),
            ("1h", None),
            (" 1s", None),
            ("99999999999999999999s", None),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                ms.map(Duration::from_millis),
                "{text:?}"
            );
        }
    }

    #[test]
    fn redis_urls() {
        let url = |text| RedisUrl::parse(text);
        let plain = url("redis://localhost").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db),
            ("localhost", 6379, 0)
        );
        assert_eq!((plain.user, plain.password), (None, None));
        let full = url("redis://app:s%40cr%3At@10.0.0.5:6380/3").unwrap();
        assert_eq!(full.host, "10.0.0.5");
        assert_eq!((full.port, full.db), (6380, 3));
        assert_eq!(full.user.as_deref(), Some("app"));
        assert_eq!(full.password.as_deref(), Some("s@cr:t"));
        let password_only = url("redis://:pw@h:1/").unwrap();
        assert_eq!(
            (password_only.user, password_only.password.as_deref()),
            (None, Some("pw"))
        );
        let v6 = url("redis://[::1]:7000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7000));
        assert_eq!(url("REDIS://h").unwrap().host, "h");
        // The password never shows.
        assert_eq!(full.to_string(), "redis://app:***@10.0.0.5:6380/3");
        assert!(!format!("{full:?}").contains("s@cr"));
        assert_eq!(v6.to_string(), "redis://[::1]:7000");
        for bad in [
            "localhost:6379",
            "http://h",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:x",
            "redis://h/x",
            "redis://h?db=1",
            "redis://user@h",
            "redis://u:%zz@h",
            "redis://[::1",
            "redis://h :1",
        ] {
            assert!(url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn redis_keys() {
        for good in ["sseloop", "app:prod", "{hub}.1", "a-b_c"] {
            assert!(valid_redis_key(good), "{good:?}");
        }
        let long = "k".repeat(MAX_REDIS_KEY_LEN + 1);
        for bad in ["", "a b", "a\nb", "ü", long.as_str()] {
            assert!(!valid_redis_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn validate_says_which_rule_is_broken() {
        let check = |change: fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate()
        };
        assert_eq!(Config::default().validate(), Ok(()));
        let key = "k".repeat(MIN_JWT_KEY_LEN);
        assert_eq!(
            check(|c| c.allow_origin = Some("https://a.example/".into())),
            Err(ConfigError::AllowOrigin("https://a.example/".into()))
        );
        assert_eq!(check(|c| c.allow_origin = Some("*".into())), Ok(()));
        assert_eq!(
            check(|c| c.allow_hosts = vec!["App.Example.".into(), "a:80".into()]),
            Err(ConfigError::AllowHost("a:80".into()))
        );
        assert_eq!(
            check(|c| c.public_topics = vec!["*".into(), "a\u{7}".into()]),
            Err(ConfigError::PublicTopic("a\u{7}".into()))
        );
        assert_eq!(
            check(|c| c.public_topics = vec!["news".into()]),
            Err(ConfigError::PublicTopicsWithoutKey)
        );
        let mut keyed = Config {
            jwt_key: Some(key.clone()),
            public_topics: vec!["news".into()],
            ..Config::default()
        };
        assert_eq!(keyed.validate(), Ok(()));
        keyed.jwt_key = Some(key[1..].to_owned());
        assert_eq!(
            keyed.validate(),
            Err(ConfigError::ShortJwtKey(MIN_JWT_KEY_LEN - 1))
        );
        let redis = RedisTarget::parse("redis://h").unwrap();
        let mut clustered = Config {
            cluster: Some(Cluster::new(redis)),
            ..Config::default()
        };
        assert_eq!(clustered.validate(), Ok(()));
        let cluster = clustered.cluster.clone().unwrap();
        let broken = |change: &dyn Fn(&mut Config)| {
            let mut config = Config {
                cluster: Some(cluster.clone()),
                ..Config::default()
            };
            change(&mut config);
            config.validate()
        };
        assert_eq!(
            broken(&|c| c.max_event_size = MAX_CLUSTER_EVENT_SIZE),
            Ok(())
        );
        assert_eq!(
            broken(&|c| c.max_event_size = MAX_CLUSTER_EVENT_SIZE + 1),
            Err(ConfigError::ClusterEventSize(MAX_CLUSTER_EVENT_SIZE + 1))
        );
        assert_eq!(broken(&|c| c.max_topics = MAX_CLUSTER_TOPICS), Ok(()));
        assert_eq!(
            broken(&|c| c.max_topics = MAX_CLUSTER_TOPICS + 1),
            Err(ConfigError::ClusterTopics(MAX_CLUSTER_TOPICS + 1))
        );
        assert_eq!(
            broken(&|c| c.cluster.as_mut().unwrap().replicas = MAX_REDIS_REPLICAS + 1),
            Err(ConfigError::RedisReplicas(MAX_REDIS_REPLICAS + 1))
        );
        for timeout in [
            Duration::ZERO,
            MAX_PUBLISH_TIMEOUT + Duration::from_millis(1),
        ] {
            assert_eq!(
                broken(&|c| c.cluster.as_mut().unwrap().publish_timeout = timeout),
                Err(ConfigError::PublishTimeout(timeout))
            );
        }
        clustered.cluster.as_mut().unwrap().key = "a b".into();
        assert_eq!(
            clustered.validate(),
            Err(ConfigError::RedisKey("a b".into()))
        );
        assert_eq!(check(|c| c.loops = 0), Err(ConfigError::NoLoops));
        // What the binary's options refuse, the library refuses too.
        let zero = "must be more than 0";
        assert_eq!(
            check(|c| c.queue_limit = 0),
            Err(ConfigError::Setting("queue_limit", zero))
        );
        assert_eq!(
            check(|c| c.header_timeout = Duration::ZERO),
            Err(ConfigError::Setting("header_timeout", zero))
        );
        assert!(check(|c| c.loops = MAX_LOOPS).is_ok());
        assert!(check(|c| c.loops = MAX_LOOPS + 1).is_err());
        assert!(check(|c| c.busy_poll = MAX_BUSY_POLL + Duration::from_millis(1)).is_err());
        assert!(check(|c| c.retry = Some(MAX_RETRY)).is_ok());
        assert!(check(|c| c.retry = Some(MAX_RETRY * 2)).is_err());
    }

    #[test]
    fn an_open_publish_endpoint_needs_a_token_a_key_or_the_flag() {
        let open = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let refused = open.validate().unwrap_err();
        assert_eq!(refused, ConfigError::OpenPublish(open.listen));
        let io = std::io::Error::from(refused);
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(io.to_string().contains("anyone could publish"), "{io}");
        let allowed = [
            Config {
                publish_token: Some("t".into()),
                ..open.clone()
            },
            Config {
                jwt_key: Some("k".repeat(MIN_JWT_KEY_LEN)),
                ..open.clone()
            },
            Config {
                insecure_open_publish: true,
                ..open.clone()
            },
        ];
        for config in allowed {
            assert_eq!(config.validate(), Ok(()));
        }
        let io = std::io::Error::from(ConfigError::NoLoops);
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sizes() {
        let cases = [
            ("1MiB", Some(1 << 20)),
            ("64KiB", Some(64 << 10)),
            ("100B", Some(100)),
            ("100", Some(100)),
            ("1KB", None),
            ("KiB", None),
            ("12XB", None),
            ("+5", None),
        ];
        for (text, n) in cases {
            assert_eq!(parse_size(text), n, "{text:?}");
        }
    }
    #[test]
    fn anonymous_subscribers_alone_make_every_topic_public() {
        let mut c = Config {
            anonymous: true,
            ..Config::default()
        };
        assert_eq!(c.public_topics_in_effect(), ["*"]);
        c.public_topics = vec!["news".into()];
        assert_eq!(c.public_topics_in_effect(), ["news"]);
        c.anonymous = false;
        c.public_topics.clear();
        assert!(c.public_topics_in_effect().is_empty());
    }
}
