//! The `sseloop` command line: options in, a [`Config`] and a log level out.
//! A bad value is an error naming the option and the form it takes.

use std::fmt;
use std::str::FromStr;

use crate::config::{self, Config, Framing};

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's configuration.
    pub config: Config,
    /// How much to log.
    pub log_level: log::LevelFilter,
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

  --listen ADDR           address to bind (default 127.0.0.1:8080; port 0 picks one)
  --heartbeat DUR         heartbeat to idle subscribers at least this often (default 20s; 0: off)
  --retry DUR             start each stream with `retry: <ms>` (default: not sent)
  --framing MODE          chunked or close: body framing of HTTP/1.1 streams (default chunked)
  --history N             events kept for Last-Event-ID replay (default 1024; 0: none)
  --max-connections N     connections served at once (default 10000)
  --queue-limit SIZE      unsent bytes per subscriber before it is cut off (default 1MiB)
  --max-event-size SIZE   largest publish body (default 64KiB)
  --header-timeout DUR    time to send a whole request (default 10s)
  --log-level LEVEL       error, warn, info, debug or trace (default info)
  --help, --version

DUR: a number with ms, s or m (bare: seconds). SIZE: a number with B, KiB or MiB (bare: bytes).
";

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut config = Config::default();
    let mut log_level = log::LevelFilter::Info;
    let mut args = args.into_iter().map(Into::into);
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
            "--retry" => config.retry = Some(duration(&name, &value()?)?),
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
            "--header-timeout" => {
                let d = duration(&name, &value()?)?;
                if d.is_zero() {
                    return Err(usage(&name, "must be more than 0"));
                }
                config.header_timeout = d;
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
    Ok(Options { config, log_level })
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
        parse(args.iter().copied()).unwrap()
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
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
    }
}
