//! The `sseloop` command line: options in, a [`Config`] and a log level out.
//! A bad value is an error naming the option and the form it takes; the
//! rules a whole configuration keeps are `Config::validate`'s, said here
//! with the options' names (`values`: reading each value, saying each
//! error).

mod lab;
#[cfg(test)]
mod tests;
mod values;

pub use self::lab::{LabCommand, parse_lab};

use std::fmt;

use sseloop::MAX_TOPIC_LEN;
use sseloop::config::{self, Config, Framing};

use self::values::{
    duration, invalid, loops, nonzero, not_a_host, parsed, positive, retry, size, usage,
};

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's configuration.
    pub config: Config,
    /// How much to log.
    pub log_level: log::LevelFilter,
    /// `--stdin [TOPIC]`: publish each line of standard input, to the topic
    /// when one is given (`Some(None)`: broadcast).
    pub stdin: Option<Option<String>>,
    /// `--demo`: run the render-job simulator on topic `demo`.
    pub demo: bool,
}

/// What to do instead of serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CliError {
    /// `--help`: print this and exit 0.
    Help(String),
    /// `--version`: print this and exit 0.
    Version(String),
    /// A bad option or value: print this line and exit 2.
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help(s) | CliError::Version(s) | CliError::Usage(s) => f.write_str(s),
        }
    }
}

/// The `--help` text.
pub const USAGE: &str = "\
sseloop: a Server-Sent Events server on single-threaded poll loops (one, or --loops N)

usage: sseloop [OPTIONS]
       sseloop lab LESSON [--addr ADDR] [--rate N] [--size SIZE] [--count N] [--cause | --fix]

  --listen ADDR           address to bind (default 127.0.0.1:8080; port 0 picks one)
  --heartbeat DUR         heartbeat to idle subscribers at least this often (default 20s; 0: off)
  --retry DUR             start each stream with `retry: <ms>` (default: not sent; at most 10m)
  --framing MODE          chunked or close: body framing of HTTP/1.1 streams (default chunked)
  --history N             events kept for Last-Event-ID replay (default 1024; 0: none)
  --max-connections N     connections served at once (default 10000)
  --queue-limit SIZE      unsent bytes per subscriber before it is cut off (default 1MiB)
  --max-event-size SIZE   largest publish body (default 64KiB)
  --header-timeout DUR    time to send a whole request (default 10s)
  --max-topics N          most topics one subscriber may name (default 64)
  --send-buffer SIZE      kernel send buffer of each stream (default 256KiB; 0: the kernel's
                          autotuning, which lets a stalled subscriber hold several MiB)
  --loops N|auto          poll loops, each on its own thread and SO_REUSEPORT listener
                          (default 1; auto: one per available CPU, but one on a machine
                          of 2 CPUs or fewer; at most 256)
  --busy-poll DUR         after activity, poll without sleeping this long, in each loop:
                          lower latency, a busy core while events flow (default 0: off; at most 1s)
  --redis URL             be a node of a cluster sharing its events through Redis:
                          redis://[user:password@]host[:port][/db], or through the primary
                          Sentinels name: redis+sentinel://[user:password@]host[:port][,host…]
                          /service[/db][?sentinel_username=U&sentinel_password=P];
                          rediss:// and rediss+sentinel:// for TLS (built with --features tls)
  --redis-ca FILE         with TLS: trust the CA certificates in this PEM file, not the public CAs
  --redis-key NAME        prefix of the cluster's keys in Redis (default sseloop)
  --redis-replicas N      acknowledge a publish only once N replicas have it (default 0; at most 16)
  --publish-timeout DUR   longest a publish waits for Redis, then 503 (default 2s; at most 60s)
  --publish-token TOKEN   publishing needs `Authorization: Bearer TOKEN` (or env SSELOOP_PUBLISH_TOKEN)
  --jwt-key KEY           private topics: subscribing needs an HS256 JWT signed with KEY, at least
                          32 bytes (or env SSELOOP_JWT_KEY); publishing needs a token too
  --public-topic NAME     with --jwt-key: a topic anyone may subscribe to (repeatable; * = all)
  --hub-url URL           the Mercure hub's URL as clients reach it: topics and URL patterns resolve
                          against it; the default token audience
                          (default http://<listen address>/.well-known/mercure)
  --jwt-issuer ISS        with --jwt-key: the iss an RFC 9068 (at+jwt) token must name (default: any)
  --jwt-audience AUD      with --jwt-key: the aud an at+jwt token must hold (default: the hub URL)
  --anonymous             with --jwt-key: serve Mercure subscribers without a token (public updates)
  --allow-origin ORIGIN   CORS: allow this origin (or *) and answer preflights; its pages may publish
  --allow-host NAME       repeatable: answer requests for Host NAME (any port) besides the loopback names
  --insecure-open-publish allow a non-loopback --listen with no publish token
  --stdin [TOPIC]         publish each line of standard input (to TOPIC, or broadcast)
  --demo                  simulate render jobs publishing progress on topic `demo` (and --lab)
  --lab                   serve the failure lab at /lab: each cause of late events, made for real
  --log-level LEVEL       error, warn, info, debug or trace (default info)
  --help, --version

DUR: a number with ms, s or m (bare: seconds). SIZE: a number with B, KiB or MiB (bare: bytes).

`sseloop lab LESSON` runs a lesson of the failure lab (unflushed, proxy, compression, heartbeat,
nagle) with its cause, then with its fix, against the server at --addr (started with --lab) or
one of its own, and prints each event's delay and a summary.
";

/// Parses the arguments after the program name; `env_token` is the value
/// of `SSELOOP_PUBLISH_TOKEN`, which `--publish-token` overrides.
#[cfg(test)]
pub fn parse<I, S>(args: I, env_token: Option<String>) -> Result<Options, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    parse_with_env(args, env_token, None)
}

/// `parse`, and `env_jwt_key` is the value of `SSELOOP_JWT_KEY`, which
/// `--jwt-key` overrides.
pub fn parse_with_env<I, S>(
    args: I,
    env_token: Option<String>,
    env_jwt_key: Option<String>,
) -> Result<Options, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut config = Config {
        publish_token: env_token.filter(|t| !t.is_empty()),
        jwt_key: env_jwt_key.filter(|k| !k.is_empty()),
        ..Config::default()
    };
    let mut jwt_key_from = "SSELOOP_JWT_KEY";
    let mut log_level = log::LevelFilter::Info;
    let mut stdin = None;
    let mut demo = false;
    let mut redis_url = None;
    let mut redis_key = None;
    let mut redis_replicas = None;
    let mut publish_timeout = None;
    #[cfg(feature = "tls")]
    let mut redis_ca = None;
    let mut args = args.into_iter().map(Into::into).peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "--help" | "-h" => return Err(CliError::Help(USAGE.to_owned())),
            "--version" | "-V" => {
                return Err(CliError::Version(format!(
                    "sseloop {}",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            _ => {}
        }
        match name.as_str() {
            "--insecure-open-publish" => {
                config.insecure_open_publish = true;
                continue;
            }
            "--demo" => {
                demo = true;
                config.lab = true;
                continue;
            }
            "--lab" => {
                config.lab = true;
                continue;
            }
            "--anonymous" => {
                config.anonymous = true;
                continue;
            }
            "--stdin" => {
                // The topic is optional: take the next word unless it is an option.
                let topic = match inline.clone() {
                    Some(t) => Some(t),
                    None => args.next_if(|a| !a.starts_with("--")),
                };
                if let Some(t) = &topic
                    && !sseloop::valid_topic(t)
                {
                    return Err(usage(
                        &name,
                        &format!(
                            "takes a topic of 1 to {MAX_TOPIC_LEN} bytes with no control characters"
                        ),
                    ));
                }
                stdin = Some(topic);
                continue;
            }
            _ => {}
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(&name, "needs a value"))
        };
        match name.as_str() {
            "--listen" => {
                config.listen = parsed(&name, &value()?, "an address like 127.0.0.1:8080")?
            }
            "--heartbeat" => config.heartbeat = nonzero(duration(&name, &value()?)?),
            "--retry" => {
                let text = value()?;
                config.retry = Some(retry(&name, &text, duration(&name, &text)?)?);
            }
            "--framing" => {
                config.framing = match value()?.as_str() {
                    "chunked" => Framing::Chunked,
                    "close" => Framing::Close,
                    _ => return Err(usage(&name, "takes chunked or close")),
                }
            }
            "--history" => config.history = parsed(&name, &value()?, "a whole number")?,
            "--max-connections" => {
                config.max_connections =
                    positive(&name, parsed(&name, &value()?, "a whole number")?)?
            }
            "--queue-limit" => config.queue_limit = positive(&name, size(&name, &value()?)?)?,
            "--max-event-size" => config.max_event_size = positive(&name, size(&name, &value()?)?)?,
            "--max-topics" => {
                config.max_topics = positive(&name, parsed(&name, &value()?, "a whole number")?)?
            }
            "--send-buffer" => config.send_buffer = size(&name, &value()?)?,
            "--header-timeout" => {
                config.header_timeout = positive(&name, duration(&name, &value()?)?)?
            }
            "--loops" => config.loops = loops(&name, &value()?)?,
            "--redis" => {
                let url = value()?;
                // The URL may hold a password: the error names only what is wrong.
                let redis = config::RedisTarget::parse(&url).map_err(|why| usage(&name, &why))?;
                redis_url = Some(redis);
            }
            "--redis-key" => redis_key = Some(value()?),
            #[cfg(feature = "tls")]
            "--redis-ca" => redis_ca = Some(std::path::PathBuf::from(value()?)),
            #[cfg(not(feature = "tls"))]
            "--redis-ca" => return Err(usage(&name, config::NO_TLS)),
            "--redis-replicas" => {
                redis_replicas = Some(parsed(&name, &value()?, "a whole number")?);
            }
            "--publish-timeout" => publish_timeout = Some(duration(&name, &value()?)?),
            "--busy-poll" => {
                let d = duration(&name, &value()?)?;
                if d > config::MAX_BUSY_POLL {
                    return Err(usage(&name, "must be at most 1s"));
                }
                config.busy_poll = d;
            }
            "--publish-token" => {
                let token = value()?;
                if token.is_empty() || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(usage(&name, "takes a non-empty token without spaces"));
                }
                config.publish_token = Some(token);
            }
            "--jwt-key" => {
                config.jwt_key = Some(value()?);
                jwt_key_from = "--jwt-key";
            }
            "--public-topic" => config.public_topics.push(value()?),
            "--hub-url" => config.hub_url = Some(value()?),
            "--jwt-issuer" => config.jwt_issuer = Some(value()?),
            "--jwt-audience" => config.jwt_audience = Some(value()?),
            "--allow-origin" => config.allow_origin = Some(value()?),
            "--allow-host" => {
                let text = value()?;
                let Some(host) = config::parse_host_name(&text) else {
                    return Err(not_a_host(&text));
                };
                if !config.allow_hosts.contains(&host) {
                    config.allow_hosts.push(host);
                }
            }
            "--log-level" => {
                log_level = match value()?.to_ascii_lowercase().as_str() {
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    "trace" => log::LevelFilter::Trace,
                    _ => return Err(usage(&name, "takes error, warn, info, debug or trace")),
                }
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "sseloop: unknown option {arg:?} (see --help)"
                )));
            }
        }
    }
    config.cluster = match redis_url {
        Some(redis) => {
            let mut cluster = config::Cluster::new(redis);
            cluster.key = redis_key.unwrap_or(cluster.key);
            cluster.replicas = redis_replicas.unwrap_or(cluster.replicas);
            cluster.publish_timeout = publish_timeout.unwrap_or(cluster.publish_timeout);
            #[cfg(feature = "tls")]
            {
                cluster.redis_ca = redis_ca;
            }
            Some(cluster)
        }
        None => {
            let given = [
                ("--redis-key", redis_key.is_some()),
                ("--redis-replicas", redis_replicas.is_some()),
                ("--publish-timeout", publish_timeout.is_some()),
                #[cfg(feature = "tls")]
                ("--redis-ca", redis_ca.is_some()),
            ];
            if let Some((option, _)) = given.iter().find(|(_, given)| *given) {
                return Err(usage(option, "needs --redis"));
            }
            None
        }
    };
    // The library's rules, said with the options that broke them.
    config
        .validate()
        .map_err(|broken| invalid(broken, jwt_key_from))?;
    Ok(Options {
        config,
        log_level,
        stdin,
        demo,
    })
}
