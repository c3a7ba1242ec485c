//! The command line: `--help`'s text, [`Options`] and their defaults, and
//! [`parse_args`]. Durations and sizes are read with the server's own
//! grammar ([`sseloop::config::parse_duration`] and
//! [`sseloop::config::parse_size`]), so a value one command line takes the
//! other takes too.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use sseloop::config::{parse_duration, parse_size};

pub(crate) const HELP: &str = "\
sseloop-bench: load and latency client for Server-Sent Events servers

USAGE: sseloop-bench [OPTIONS]

Subscribes N streams to GET /events?topic=T, publishes M events with
POST /publish?topic=T over keep-alive connections, and reports deliveries
(expected, received, missing, duplicate, out of order, to the wrong topic),
publish->receive latency, publishes and deliveries a second and, with --pid,
the server's RSS and CPU time (in total, per publish, per delivery and per
thread).

Many small streams: with --topics K the subscribers are spread over K topics
(subscriber i on topic T-(i mod K)), event s goes to topic T-(s mod K), and
with --publishers P over connection (s mod K) mod P, so each topic's events
go over one connection, in order, and each stream is checked for its own
topic's events in order.

OPTIONS:
  --addr HOST:PORT     server address                          [127.0.0.1:8080]
  --subscribers N      subscriber streams                      [1]
  --events M           events to publish                       [1000]
  --rate R             events per second; 0 = closed loop      [1000]
  --window W           closed loop: events outstanding at most [32]
  --pipeline N         publishes sent before their answers     [1]
                       (at a rate, 100000 makes the load open-loop)
  --topic T            topic to subscribe and publish to       [bench]
  --mercure MODE       subscribe on sseloop's Mercure hub: exact (match=T) or
                       urlpattern (match_urlpattern=https://bench.example/T/:id,
                       events published to https://bench.example/T/1)
  --topics K           topics the subscribers are spread over, named T-0
                       .. T-(K-1); events go round them     [1: T alone]
  --publishers P       publishing connections, at most K       [1]
  --size SIZE          padding added to each event's data      [0]
  --pid PID            server process: report its RSS and CPU time, in total
                       and per thread; given several times, the processes'
                       RSS and CPU are summed (a master and its workers)
  --publish-addr HOST:PORT  publish here instead of --addr (a cluster: publish
                       on one node, subscribe on another)
  --redis-pid PID      a cluster's Redis: report its RSS and CPU time apart
  --json               print one JSON object instead of text
  --idle DUR           idle mode: connect, publish nothing, hold for DUR
  --connect-batch N    connections being opened at once        [64]
  --timeout DUR        longest wait for a response head, for the server to
                       answer publishes, and (closed loop) for one event's
                       deliveries before it counts as missing  [10s]
  --drain-timeout DUR  wait for deliveries after the last publish [5s]
  --max-time DUR       bound on the publish phase              [10m]
  --http10             subscribe with HTTP/1.0 (close-delimited streams)
  --no-spread          do not spread source addresses over 127.0.0.x
  --spin               poll without sleeping: keeps the client's own wake-up
                       time out of latencies, at the cost of a busy core
  -h, --help           print this text

DUR: a whole number with ms, s or m (bare: seconds); SIZE: a whole number with
B, KiB or MiB (bare: bytes): the forms sseloop's own options take.
Exit status: 0 done, 1 run failed (a stream did not connect, publishing was
aborted, or a delivery was missing, repeated or out of order: the report
says which), 2 bad option.
";

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    /// HOST:PORT as given, for the Host header.
    pub(crate) host: String,
    pub(crate) subscribers: usize,
    pub(crate) events: u64,
    /// Events per second; 0 means closed loop.
    pub(crate) rate: f64,
    pub(crate) window: u64,
    /// Unanswered publishes allowed.
    pub(crate) pipeline: usize,
    pub(crate) topic: String,
    /// Topics the subscribers and events are spread over.
    pub(crate) topics: usize,
    /// Publishing connections.
    pub(crate) publishers: usize,
    pub(crate) size: usize,
    /// Server processes whose RSS and CPU are summed, in the order given.
    pub(crate) pids: Vec<u32>,
    /// Where the publisher connects, when not `addr`.
    pub(crate) publish_addr: Option<SocketAddr>,
    /// A cluster's Redis, reported apart.
    pub(crate) redis_pid: Option<u32>,
    pub(crate) json: bool,
    pub(crate) idle: Option<Duration>,
    pub(crate) connect_batch: usize,
    pub(crate) timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_time: Duration,
    pub(crate) http10: bool,
    pub(crate) spread: bool,
    pub(crate) spin: bool,
    /// Where subscribers subscribe (`--mercure`).
    pub(crate) mercure: crate::mercure::Mode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            host: "127.0.0.1:8080".into(),
            subscribers: 1,
            events: 1000,
            rate: 1000.0,
            // Enough to keep a fan-out server busy between deliveries, few
            // enough that queueing inside the server does not swamp latency.
            window: 32,
            pipeline: 1,
            topic: "bench".into(),
            topics: 1,
            publishers: 1,
            size: 0,
            pids: Vec::new(),
            publish_addr: None,
            redis_pid: None,
            json: false,
            idle: None,
            // Half of 128, the smallest listen backlog in common use (axum's).
            connect_batch: 64,
            timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            max_time: Duration::from_secs(600),
            http10: false,
            spread: true,
            spin: false,
            mercure: crate::mercure::Mode::Events,
        }
    }
}

const MAX_EVENTS: u64 = 100_000_000;
/// Two requests' worth of bytes per topic are kept: bound them.
const MAX_TOPICS: u64 = 1_000_000;
/// Each is a socket and a few buffers.
const MAX_PUBLISHERS: u64 = 10_000;

/// Parses the arguments (without the program name); `Ok(None)` means `--help`.
/// An error names the option and the accepted form.
pub(crate) fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        let (name, mut inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || {
            let v = inline.take().or_else(|| args.next());
            v.ok_or_else(|| format!("{name}: missing value"))
        };
        let n = &name;
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => o.json = true,
            "--http10" => o.http10 = true,
            "--no-spread" => o.spread = false,
            "--spin" => o.spin = true,
            "--addr" => {
                let v = value()?;
                o.addr = resolve(&v).ok_or_else(|| bad(n, &v, "HOST:PORT"))?;
                o.host = v;
            }
            "--subscribers" => o.subscribers = count(n, &value()?)? as usize,
            "--events" => {
                // Twelve bytes of bookkeeping per event: bound the allocation.
                let v = value()?;
                o.events = count(n, &v)?;
                if o.events > MAX_EVENTS {
                    return Err(bad(n, &v, &format!("at most {MAX_EVENTS} events")));
                }
            }
            "--rate" => {
                let v = value()?;
                o.rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(|| bad(n, &v, "events per second >= 0 (0 = closed loop)"))?;
            }
            "--window" => o.window = count(n, &value()?)?,
            "--pipeline" => o.pipeline = count(n, &value()?)? as usize,
            "--topic" => {
                o.topic = value()?;
                if o.topic.is_empty() {
                    return Err(bad(n, "", "a non-empty topic"));
                }
            }
            "--topics" => {
                let v = value()?;
                o.topics = count(n, &v)? as usize;
                if o.topics as u64 > MAX_TOPICS {
                    return Err(bad(n, &v, &format!("at most {MAX_TOPICS} topics")));
                }
            }
            "--publishers" => {
                let v = value()?;
                o.publishers = count(n, &v)? as usize;
                if o.publishers as u64 > MAX_PUBLISHERS {
                    return Err(bad(n, &v, &format!("at most {MAX_PUBLISHERS} connections")));
                }
            }
            "--size" => {
                let v = value()?;
                o.size = parse_size(&v).ok_or_else(|| bad(n, &v, "a size such as 100, 4KiB"))?;
            }
            "--pid" => {
                let v = value()?;
                let pid = v.parse().map_err(|_| bad(n, &v, "a process id"))?;
                // Counted twice, its CPU would be too.
                if o.pids.contains(&pid) {
                    return Err(format!("{name}: {pid} given twice"));
                }
                o.pids.push(pid);
            }
            "--redis-pid" => {
                let v = value()?;
                o.redis_pid = Some(v.parse().map_err(|_| bad(n, &v, "a process id"))?);
            }
            "--publish-addr" => {
                let v = value()?;
                o.publish_addr = Some(resolve(&v).ok_or_else(|| bad(n, &v, "HOST:PORT"))?);
            }
            "--mercure" => {
                let v = value()?;
                o.mercure = crate::mercure::Mode::parse(&v)
                    .ok_or_else(|| bad(n, &v, "exact or urlpattern"))?;
            }
            "--idle" => o.idle = Some(duration(n, &value()?)?),
            "--connect-batch" => o.connect_batch = count(n, &value()?)? as usize,
            "--timeout" => o.timeout = duration(n, &value()?)?.max(Duration::from_millis(1)),
            "--drain-timeout" => o.drain_timeout = duration(n, &value()?)?,
            "--max-time" => o.max_time = duration(n, &value()?)?,
            _ => return Err(format!("{name}: unknown option (see --help)")),
        }
        if inline.is_some() {
            return Err(format!("{name}: takes no value"));
        }
    }
    // A topic's events go over one connection, so that their order is the
    // server's to keep: more connections than topics would stay idle.
    if o.publishers > o.topics {
        let (p, k) = (o.publishers, o.topics);
        return Err(format!("--publishers {p}: at most --topics ({k})"));
    }
    Ok(Some(o))
}

fn bad(name: &str, value: &str, form: &str) -> String {
    format!("{name}: expected {form}, got '{value}'")
}

fn count(name: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| bad(name, v, "an integer >= 1"))
}

fn duration(name: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v).ok_or_else(|| bad(name, v, "a duration such as 500ms, 10s, 2m"))
}

/// Resolves HOST:PORT, preferring IPv4 (where source spreading works).
fn resolve(s: &str) -> Option<SocketAddr> {
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_errors_name_the_option() {
        let args = |s: &str| {
            s.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        let o = parse_args(args("--rate=0 --window 8 --idle 2m --size 1KiB --json"))
            .unwrap()
            .unwrap();
        assert_eq!((o.rate, o.window, o.size, o.json), (0.0, 8, 1024, true));
        assert_eq!(o.idle, Some(Duration::from_secs(120)));
        let o = parse_args(args(
            "--pid 7 --pid 8 --redis-pid 9 --publish-addr 127.0.0.1:9000",
        ))
        .unwrap()
        .unwrap();
        assert_eq!((o.pids, o.redis_pid), (vec![7, 8], Some(9)));
        assert_eq!(
            o.publish_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        let o = parse_args(args("--topics 100 --publishers=8"))
            .unwrap()
            .unwrap();
        assert_eq!((o.topics, o.publishers), (100, 8));
        let o = parse_args(args("--timeout 1500ms --drain-timeout 0")).unwrap();
        let o = o.unwrap();
        assert_eq!(o.timeout, Duration::from_millis(1500));
        assert_eq!(o.drain_timeout, Duration::ZERO);
        assert!(o.pids.is_empty());
        let o = parse_args(args("--pid 30 --pid=4 --pid 12"))
            .unwrap()
            .unwrap();
        assert_eq!(o.pids, [30, 4, 12]);
        for bad in [
            "--rate x",
            "--subscribers 0",
            "--drain-timeout 5h",
            "--bogus 1",
            "--events",
            "--json=1",
            // The server's grammar: whole numbers only, no spaces.
            "--timeout 1.5s",
            "--size 1.5KiB",
            "--pid x",
            "--pid 4 --pid 4",
            "--mercure regexp",
            "--topics 0",
            "--topics 1000001",
            "--publishers 2",
            "--publishers 3 --topics 2",
        ] {
            let err = parse_args(args(bad)).expect_err(bad);
            assert!(
                err.starts_with(bad.split([' ', '=']).next().unwrap()),
                "{err}"
            );
        }
    }
}
