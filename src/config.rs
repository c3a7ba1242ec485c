//! `Config`: every limit and timeout the server applies, each default a named
//! constant, plus the parsers for the values the command line takes
//! (durations, sizes; host names and origins with `http`'s grammar).

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
pub const MIN_JWT_KEY_LEN: usize = 32;
/// After an error answer the connection reads and discards what the client
/// still sends for at most this long, so the answer is not lost to a reset.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Body framing of HTTP/1.1 event streams (HTTP/1.0 is always close-delimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`: the stream can end cleanly on a kept-alive socket.
    Chunked,
    /// The body ends when the connection closes.
    Close,
}

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
        }
    }
}

impl Config {
    /// True when anyone on a network could publish: a listen address off
    /// loopback, no publish token, no JWT key, and no
    /// `insecure_open_publish`.
    pub fn exposes_open_publish(&self) -> bool {
        !self.listen.ip().is_loopback()
            && self.publish_token.is_none()
            && self.jwt_key.is_none()
            && !self.insecure_open_publish
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
fn parse_plain_number(digits: &str) -> Option<u64> {
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
}
