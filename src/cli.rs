//! The `sseloop` command line: options in, a [`Config`] and a log level out.
//! A bad value is an error naming the option and the form it takes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sseloop::config::{self, Config, Framing, MIN_JWT_KEY_LEN as MIN_KEY_LEN};

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
sseloop: a Server-Sent Events server on one poll loop

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
                          (default 1; auto: one per available CPU; at most 256)
  --busy-poll DUR         after activity, poll without sleeping this long, in each loop:
                          lower latency, a busy core while events flow (default 0: off; at most 1s)
  --redis URL             be a node of a cluster sharing its events through Redis:
                          redis://[user:password@]host[:port][/db]
  --redis-key NAME        prefix of the cluster's keys in Redis (default sseloop)
  --publish-token TOKEN   publishing needs `Authorization: Bearer TOKEN` (or env SSELOOP_PUBLISH_TOKEN)
  --jwt-key KEY           private topics: subscribing needs an HS256 JWT signed with KEY, at least
                          32 bytes (or env SSELOOP_JWT_KEY); publishing needs a token too
  --public-topic NAME     with --jwt-key: a topic anyone may subscribe to (repeatable; * = all)
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

/// What `sseloop lab LESSON` asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct LabCommand {
    /// The server to run it on; `None`: one of its own.
    pub addr: Option<std::net::SocketAddr>,
    /// The lesson and its pace (`fix` is set per run).
    pub options: sseloop::lab::Options,
    /// Run with the cause, with the fix, or both (in that order).
    pub runs: Vec<bool>,
}

/// Parses the arguments after `lab`.
pub fn parse_lab<I, S>(args: I) -> Result<LabCommand, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let lessons = || {
        let names: Vec<&str> = sseloop::lab::Lesson::ALL.iter().map(|l| l.name()).collect();
        names.join(", ")
    };
    let lesson = match args.next() {
        Some(help) if help == "--help" || help == "-h" => {
            return Err(CliError::Help(USAGE.to_owned()));
        }
        Some(name) => sseloop::lab::Lesson::parse(&name).ok_or_else(|| {
            CliError::Usage(format!(
                "sseloop lab: no lesson {name:?}; the lessons: {}",
                lessons()
            ))
        })?,
        None => {
            return Err(CliError::Usage(format!(
                "sseloop lab: name a lesson: {}",
                lessons()
            )));
        }
    };
    let mut command = LabCommand {
        addr: None,
        options: sseloop::lab::Options {
            lesson,
            fix: false,
            rate: None,
            size: None,
            count: None,
        },
        runs: vec![false, true],
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(&name, "needs a value"))
        };
        match name.as_str() {
            "--addr" => {
                command.addr = Some(parsed(&name, &value()?, "an address like 127.0.0.1:8080")?)
            }
            "--rate" => {
                let rate = sseloop::lab::parse_rate(&value()?);
                let rate =
                    rate.ok_or_else(|| usage(&name, "takes events per second, 0.1 to 50"))?;
                command.options.rate = Some(rate);
            }
            "--size" => {
                let bytes = size(&name, &value()?)?;
                if bytes > 16 << 10 {
                    return Err(usage(&name, "takes at most 16KiB"));
                }
                command.options.size = Some(bytes);
            }
            "--count" => {
                let count: u32 = parsed(&name, &value()?, "a number of events, 1 to 500")?;
                if !(1..=500).contains(&count) {
                    return Err(usage(&name, "takes a number of events, 1 to 500"));
                }
                command.options.count = Some(count);
            }
            "--cause" => command.runs = vec![false],
            "--fix" => command.runs = vec![true],
            _ => {
                return Err(CliError::Usage(format!(
                    "sseloop lab: unknown option {arg:?} (see sseloop --help)"
                )));
            }
        }
    }
    Ok(command)
}

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
                        "takes a topic of 1 to 128 bytes with no control characters",
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
                let d = duration(&name, &value()?)?;
                if d.is_zero() {
                    return Err(usage(&name, "must be more than 0"));
                }
                config.header_timeout = d;
            }
            "--loops" => config.loops = loops(&name, &value()?)?,
            "--redis" => {
                let url = value()?;
                // The URL may hold a password: the error names only what is wrong.
                let redis = config::RedisUrl::parse(&url).map_err(|why| usage(&name, &why))?;
                redis_url = Some(redis);
            }
            "--redis-key" => {
                let key = value()?;
                if !config::valid_redis_key(&key) {
                    return Err(usage(
                        &name,
                        &format!(
                            "takes 1 to {} letters, digits or _-.:{{}}, not {key:?}",
                            config::MAX_REDIS_KEY_LEN
                        ),
                    ));
                }
                redis_key = Some(key);
            }
            "--busy-poll" => {
                let d = duration(&name, &value()?)?;
                if d > Duration::from_secs(1) {
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
            "--public-topic" => {
                let topic = value()?;
                if !sseloop::valid_topic(&topic) {
                    return Err(usage(
                        &name,
                        "takes * or a topic of 1 to 128 bytes with no control characters",
                    ));
                }
                config.public_topics.push(topic);
            }
            "--allow-origin" => {
                let origin = value()?;
                if origin != "*" && !config::valid_origin(&origin) {
                    return Err(usage(
                        &name,
                        &format!(
                            "takes * or an origin like https://app.example.com, not {origin:?}"
                        ),
                    ));
                }
                config.allow_origin = Some(origin);
            }
            "--allow-host" => {
                let text = value()?;
                let Some(host) = config::parse_host_name(&text) else {
                    return Err(usage(
                        &name,
                        &format!(
                            "takes a host name or IP address without a port, like app.example.com, not {text:?}"
                        ),
                    ));
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
    // The library refuses a short key too; the command line says how long.
    if let Some(key) = &config.jwt_key
        && key.len() < MIN_KEY_LEN
    {
        return Err(usage(
            jwt_key_from,
            &format!(
                "is {} bytes: a JWT key must be at least {MIN_KEY_LEN} bytes (e.g. `openssl rand -base64 32`)",
                key.len()
            ),
        ));
    }
    if config.jwt_key.is_none() && !config.public_topics.is_empty() {
        return Err(usage(
            "--public-topic",
            "needs --jwt-key (without it every topic is public)",
        ));
    }
    config.cluster = match (redis_url, redis_key) {
        (Some(redis), key) => Some(config::Cluster {
            redis,
            key: key.unwrap_or_else(|| config::DEFAULT_REDIS_KEY.to_owned()),
        }),
        (None, Some(_)) => return Err(usage("--redis-key", "needs --redis")),
        (None, None) => None,
    };
    // The library refuses it too; the command line says it in its own words.
    if config.exposes_open_publish() {
        return Err(CliError::Usage(format!(
            "sseloop: --listen {} is reachable from the network and anyone could publish: \
             set --publish-token TOKEN (or SSELOOP_PUBLISH_TOKEN), or pass --insecure-open-publish",
            config.listen
        )));
    }
    Ok(Options {
        config,
        log_level,
        stdin,
        demo,
    })
}

fn usage(option: &str, what: &str) -> CliError {
    CliError::Usage(format!("sseloop: {option} {what}"))
}

fn parsed<T: FromStr>(option: &str, text: &str, form: &str) -> Result<T, CliError> {
    text.parse()
        .map_err(|_| usage(option, &format!("takes {form}, not {text:?}")))
}

fn duration(option: &str, text: &str) -> Result<std::time::Duration, CliError> {
    config::parse_duration(text).ok_or_else(|| {
        usage(
            option,
            &format!("takes a duration like 500ms, 20s or 2m, not {text:?}"),
        )
    })
}

/// The longest `--retry` taken: a reconnect delay beyond it is almost
/// always milliseconds written as a bare number, which means seconds.
const MAX_RETRY: Duration = Duration::from_secs(10 * 60);

/// `d`, unless it is over `MAX_RETRY`: then an error that says what the
/// value means and, where the text is a number of seconds, the `ms` form.
fn retry(option: &str, text: &str, d: Duration) -> Result<Duration, CliError> {
    if d <= MAX_RETRY {
        return Ok(d);
    }
    let secs = d.as_secs();
    let (min, sec) = (secs / 60, secs % 60);
    let seconds = match d.subsec_millis() {
        0 => secs.to_string(),
        ms => format!("{secs}.{ms:03}"),
    };
    let length = if sec == 0 {
        format!("{min} min")
    } else {
        format!("{min} min {sec} s")
    };
    let mut line = format!("{text} is {seconds} seconds ({length}), more than the 10 min allowed");
    let number = text.strip_suffix('s').unwrap_or(text);
    if number.bytes().all(|b| b.is_ascii_digit()) {
        line.push_str(&format!("; for milliseconds write {option} {number}ms"));
    }
    Err(usage(option, &line))
}

fn size(option: &str, text: &str) -> Result<usize, CliError> {
    config::parse_size(text).ok_or_else(|| {
        usage(
            option,
            &format!("takes a size like 512B, 64KiB or 1MiB, not {text:?}"),
        )
    })
}

fn nonzero(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

/// Most poll loops: far more than cores anyone runs sseloop on, few enough
/// that a typo cannot start thousands of threads.
const MAX_LOOPS: usize = 256;

fn loops(option: &str, text: &str) -> Result<usize, CliError> {
    if text == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LOOPS)));
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LOOPS).contains(&n) => Ok(n),
        _ => Err(usage(
            option,
            &format!("takes a number of loops from 1 to {MAX_LOOPS}, or auto, not {text:?}"),
        )),
    }
}

fn positive(option: &str, n: usize) -> Result<usize, CliError> {
    if n == 0 {
        Err(usage(option, "must be more than 0"))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok(args: &[&str]) -> Options {
        parse(args.iter().copied(), None).unwrap()
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied(), None) {
            Err(CliError::Usage(s)) => s,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = ok(&[]);
        assert_eq!(o.config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(o.config.heartbeat, Some(Duration::from_secs(20)));
        assert_eq!(o.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn values_in_both_forms() {
        let o = ok(&[
            "--listen",
            "127.0.0.1:0",
            "--heartbeat=250ms",
            "--queue-limit",
            "64KiB",
        ]);
        assert_eq!(o.config.listen.port(), 0);
        assert_eq!(o.config.heartbeat, Some(Duration::from_millis(250)));
        assert_eq!(o.config.queue_limit, 64 << 10);
        assert_eq!(ok(&["--heartbeat", "0"]).config.heartbeat, None);
        assert_eq!(ok(&["--framing", "close"]).config.framing, Framing::Close);
        assert_eq!(
            ok(&["--retry", "2s"]).config.retry,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        assert!(err(&["--heartbeat", "abc"]).contains("--heartbeat"));
        assert!(err(&["--queue-limit", "12XB"]).contains("--queue-limit"));
        assert!(err(&["--framing", "foo"]).contains("--framing"));
        assert!(err(&["--listen", "nowhere"]).contains("--listen"));
        assert!(err(&["--listen"]).contains("needs a value"));
        assert!(err(&["--max-event-size", "0"]).contains("--max-event-size"));
        assert!(err(&["--bogus"]).contains("--bogus"));
        assert!(err(&["--allow-origin", "evil\r\nX: y"]).contains("--allow-origin"));
        assert!(err(&["--publish-token", ""]).contains("--publish-token"));
    }

    /// A bare number is seconds: `--retry 1500` (meant as milliseconds)
    /// would make browsers wait 25 minutes, so values over 10 minutes are
    /// refused with what they mean and the `ms` form.
    #[test]
    fn retry_over_ten_minutes_is_refused_with_the_ms_form() {
        assert_eq!(
            err(&["--retry", "1500"]),
            "sseloop: --retry 1500 is 1500 seconds (25 min), more than the 10 min allowed; \
             for milliseconds write --retry 1500ms"
        );
        assert_eq!(
            err(&["--retry=601s"]),
            "sseloop: --retry 601s is 601 seconds (10 min 1 s), more than the 10 min allowed; \
             for milliseconds write --retry 601ms"
        );
        assert!(err(&["--retry", "600001ms"]).contains("is 600.001 seconds (10 min)"));
        // Minutes are not a slip of the unit: no ms form offered.
        assert_eq!(
            err(&["--retry", "11m"]),
            "sseloop: --retry 11m is 660 seconds (11 min), more than the 10 min allowed"
        );
        assert_eq!(
            ok(&["--retry", "600"]).config.retry,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            ok(&["--retry", "10m"]).config.retry,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            ok(&["--retry", "1500ms"]).config.retry,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn allow_host_is_repeatable_canonical_and_has_no_port() {
        let o = ok(&[
            "--allow-host",
            "App.Example.",
            "--allow-host=::1",
            "--allow-host",
            "app.example",
            "--allow-host",
            "10.0.0.7",
        ]);
        assert_eq!(o.config.allow_hosts, ["app.example", "[::1]", "10.0.0.7"]);
        assert!(ok(&[]).config.allow_hosts.is_empty());
        for bad in [
            "",
            "app.example:8080",
            "[::1]:80",
            "a b",
            "a/b",
            "http://a",
            "h\u{e9}",
        ] {
            assert!(
                err(&["--allow-host", bad]).contains("--allow-host"),
                "{bad:?}"
            );
        }
        assert!(err(&["--allow-host"]).contains("needs a value"));
    }

    #[test]
    fn allow_origin_is_an_origin() {
        for good in ["*", "https://app.example", "http://127.0.0.1:8080"] {
            assert_eq!(
                ok(&["--allow-origin", good]).config.allow_origin.as_deref(),
                Some(good)
            );
        }
        for bad in [
            "https://app.example/",
            "https://app.example/x",
            "app.example",
            "null",
        ] {
            assert!(
                err(&["--allow-origin", bad]).contains("--allow-origin"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn network_listen_needs_a_token_or_the_insecure_flag() {
        let refused = err(&["--listen", "0.0.0.0:8080"]);
        assert!(refused.contains("--publish-token") && refused.contains("--insecure-open-publish"));
        assert!(parse(["--listen", "0.0.0.0:8080", "--publish-token", "t"], None).is_ok());
        assert!(parse(["--listen", "0.0.0.0:8080"], Some("from-env".into())).is_ok());
        assert!(
            parse(
                ["--listen", "0.0.0.0:8080", "--insecure-open-publish"],
                None
            )
            .is_ok()
        );
        assert!(parse(["--listen", "[::1]:8080"], None).is_ok());
    }

    #[test]
    fn token_from_env_and_flag() {
        let o = parse(["--log-level", "warn"], Some("env".into())).unwrap();
        assert_eq!(o.config.publish_token.as_deref(), Some("env"));
        let o = parse(["--publish-token", "flag"], Some("env".into())).unwrap();
        assert_eq!(o.config.publish_token.as_deref(), Some("flag"));
    }

    #[test]
    fn loops_take_a_count_or_auto() {
        assert_eq!(ok(&[]).config.loops, 1);
        assert_eq!(ok(&["--loops", "4"]).config.loops, 4);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(ok(&["--loops", "auto"]).config.loops, cpus);
        for bad in ["0", "257", "-1", "two", ""] {
            assert!(err(&["--loops", bad]).contains("--loops"), "{bad:?}");
        }
    }

    #[test]
    fn jwt_key_from_env_and_flag_at_least_32_bytes() {
        let key = "k".repeat(32);
        let o = parse_with_env(["--public-topic", "news"], None, Some(key.clone())).unwrap();
        assert_eq!(o.config.jwt_key.as_deref(), Some(key.as_str()));
        assert_eq!(o.config.public_topics, ["news"]);
        let flag = "f".repeat(40);
        let o = parse_with_env(["--jwt-key", &flag], None, Some(key.clone())).unwrap();
        assert_eq!(o.config.jwt_key, Some(flag));
        let short = parse_with_env(["--jwt-key", "short"], None, None).unwrap_err();
        assert!(
            short.to_string().contains("--jwt-key is 5 bytes"),
            "{short}"
        );
        let short = parse_with_env::<[&str; 0], &str>([], None, Some("x".into())).unwrap_err();
        assert!(
            short.to_string().contains("SSELOOP_JWT_KEY is 1 bytes"),
            "{short}"
        );
        assert!(err(&["--public-topic", "news"]).contains("needs --jwt-key"));
        assert!(err(&["--jwt-key", &key, "--public-topic", "a\u{7}"]).contains("--public-topic"));
        // Publishing needs a token with a key, so a network address may be bound.
        assert!(parse(["--listen", "0.0.0.0:8080", "--jwt-key", &key], None).is_ok());
    }

    #[test]
    fn redis_url_and_key() {
        assert_eq!(ok(&[]).config.cluster, None);
        let cluster = ok(&["--redis", "redis://:pw@127.0.0.1:6380/2"])
            .config
            .cluster
            .unwrap();
        assert_eq!((cluster.redis.port, cluster.redis.db), (6380, 2));
        assert_eq!(cluster.key, "sseloop");
        let keyed = ok(&["--redis-key", "app:1", "--redis", "redis://h"]);
        assert_eq!(keyed.config.cluster.unwrap().key, "app:1");
        let refused = err(&["--redis", "redis://:secret@h:x"]);
        assert!(
            refused.contains("--redis") && refused.contains("port"),
            "{refused}"
        );
        assert!(!refused.contains("secret"), "{refused}");
        assert!(err(&["--redis", "h:6379"]).contains("redis://"));
        assert!(err(&["--redis-key", "a b", "--redis", "redis://h"]).contains("--redis-key"));
        assert!(err(&["--redis-key", "k"]).contains("needs --redis"));
    }

    #[test]
    fn the_lab_is_on_with_lab_or_demo() {
        assert!(!ok(&[]).config.lab);
        assert!(ok(&["--lab"]).config.lab);
        assert!(ok(&["--demo"]).config.lab);
    }

    #[test]
    fn the_lab_command_takes_a_lesson_and_its_pace() {
        let c = parse_lab([
            "proxy",
            "--addr",
            "127.0.0.1:9",
            "--rate=20",
            "--size",
            "2KiB",
            "--fix",
        ])
        .unwrap();
        assert_eq!(c.addr, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(c.options.lesson, sseloop::lab::Lesson::Proxy);
        assert_eq!(
            (c.options.rate, c.options.size, c.options.count),
            (Some(20_000), Some(2048), None)
        );
        assert_eq!(c.runs, [true]);
        assert_eq!(parse_lab(["nagle"]).unwrap().runs, [false, true]);
        let lab_err = |args: &[&str]| match parse_lab(args.iter().copied()) {
            Err(CliError::Usage(line)) => line,
            other => panic!("{args:?}: {other:?}"),
        };
        assert!(lab_err(&[]).contains("unflushed, proxy, compression, heartbeat, nagle"));
        assert!(lab_err(&["gzip"]).contains("no lesson \"gzip\""));
        assert!(lab_err(&["proxy", "--rate", "500"]).contains("--rate"));
        assert!(lab_err(&["proxy", "--size", "1MiB"]).contains("--size"));
        assert!(lab_err(&["proxy", "--count", "0"]).contains("--count"));
        assert!(lab_err(&["proxy", "--addr"]).contains("needs a value"));
        assert!(lab_err(&["proxy", "--bogus"]).contains("--bogus"));
    }

    #[test]
    fn stdin_topic_is_optional() {
        assert_eq!(ok(&["--stdin"]).stdin, Some(None));
        assert_eq!(ok(&["--stdin", "logs"]).stdin, Some(Some("logs".into())));
        let o = ok(&["--stdin", "--demo"]);
        assert_eq!((o.stdin, o.demo), (Some(None), true));
        assert!(err(&["--stdin="]).contains("--stdin"));
    }
}
