//! How each option's value is read, and each broken rule said with the
//! option that broke it: one line naming the option and the form it takes.

use std::str::FromStr;
use std::time::Duration;

use sseloop::MAX_TOPIC_LEN;
use sseloop::config::{self, ConfigError, MAX_LOOPS, MAX_RETRY, MIN_JWT_KEY_LEN as MIN_KEY_LEN};

use super::CliError;

/// The error line for `option`: `sseloop: <option> <what>`.
pub(super) fn usage(option: &str, what: &str) -> CliError {
    CliError::Usage(format!("sseloop: {option} {what}"))
}

/// A rule of `Config::validate` broken, said with the option that broke it
/// (`jwt_key_from`: where the JWT key came from).
pub(super) fn invalid(broken: ConfigError, jwt_key_from: &str) -> CliError {
    match broken {
        ConfigError::AllowOrigin(origin) => usage(
            "--allow-origin",
            &format!("takes * or an origin like https://app.example.com, not {origin:?}"),
        ),
        ConfigError::AllowHost(host) => not_a_host(&host),
        ConfigError::PublicTopic(_) => usage(
            "--public-topic",
            &format!("takes * or a topic of 1 to {MAX_TOPIC_LEN} bytes with no control characters"),
        ),
        ConfigError::RedisKey(key) => usage(
            "--redis-key",
            &format!(
                "takes 1 to {} letters, digits or _-.:{{}}, not {key:?}",
                config::MAX_REDIS_KEY_LEN
            ),
        ),
        ConfigError::RedisReplicas(n) => usage(
            "--redis-replicas",
            &format!(
                "takes a number of replicas from 0 to {}, not {n}",
                config::MAX_REDIS_REPLICAS
            ),
        ),
        ConfigError::PublishTimeout(d) => usage(
            "--publish-timeout",
            &format!(
                "must be more than 0 and at most {}s, not {}ms",
                config::MAX_PUBLISH_TIMEOUT.as_secs(),
                d.as_millis()
            ),
        ),
        ConfigError::ClusterEventSize(size) => usage(
            "--max-event-size",
            &format!(
                "is at most 1MiB with --redis (every node must read what any node stores), not {size} bytes"
            ),
        ),
        ConfigError::ClusterTopics(n) => usage(
            "--max-topics",
            &format!(
                "is at most {} with --redis (every node must read what any node stores), not {n}",
                config::MAX_CLUSTER_TOPICS
            ),
        ),
        #[cfg(feature = "tls")]
        ConfigError::RedisCaWithoutTls => usage(
            "--redis-ca",
            "needs a rediss:// or rediss+sentinel:// --redis URL",
        ),
        ConfigError::ShortJwtKey(len) => usage(
            jwt_key_from,
            &format!(
                "is {len} bytes: a JWT key must be at least {MIN_KEY_LEN} bytes (e.g. `openssl rand -base64 32`)"
            ),
        ),
        ConfigError::PublicTopicsWithoutKey => usage(
            "--public-topic",
            "needs --jwt-key (without it every topic is public)",
        ),
        ConfigError::HubUrl(url) => usage(
            "--hub-url",
            &format!("takes an absolute http:// or https:// URL, not {url:?}"),
        ),
        ConfigError::TokenClaim(name, _) => usage(
            if name == "issuer" {
                "--jwt-issuer"
            } else {
                "--jwt-audience"
            },
            "takes a non-empty value without control characters",
        ),
        ConfigError::NeedsJwtKey(what) => {
            let option = match what {
                "a token issuer" => "--jwt-issuer",
                "a token audience" => "--jwt-audience",
                _ => "--anonymous",
            };
            usage(option, "needs --jwt-key (without it there are no tokens)")
        }
        ConfigError::OpenPublish(listen) => CliError::Usage(format!(
            "sseloop: --listen {listen} is reachable from the network and anyone could publish: \
             set --publish-token TOKEN (or SSELOOP_PUBLISH_TOKEN), or pass --insecure-open-publish"
        )),
        // Each setting is the option of its name.
        ConfigError::Setting(name, rule) => usage(&format!("--{}", name.replace('_', "-")), rule),
        other => CliError::Usage(format!("sseloop: {other}")),
    }
}

pub(super) fn not_a_host(text: &str) -> CliError {
    usage(
        "--allow-host",
        &format!(
            "takes a host name or IP address without a port, like app.example.com, not {text:?}"
        ),
    )
}

pub(super) fn parsed<T: FromStr>(option: &str, text: &str, form: &str) -> Result<T, CliError> {
    text.parse()
        .map_err(|_| usage(option, &format!("takes {form}, not {text:?}")))
}

pub(super) fn duration(option: &str, text: &str) -> Result<Duration, CliError> {
    config::parse_duration(text).ok_or_else(|| {
        usage(
            option,
            &format!("takes a duration like 500ms, 20s or 2m, not {text:?}"),
        )
    })
}

/// `d`, unless it is over `MAX_RETRY`: then an error that says what the
/// value means and, where the text is a number of seconds, the `ms` form.
pub(super) fn retry(option: &str, text: &str, d: Duration) -> Result<Duration, CliError> {
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

pub(super) fn size(option: &str, text: &str) -> Result<usize, CliError> {
    config::parse_size(text).ok_or_else(|| {
        usage(
            option,
            &format!("takes a size like 512B, 64KiB or 1MiB, not {text:?}"),
        )
    })
}

pub(super) fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// What `--loops auto` runs with `cpus` available: one loop per CPU, but
/// one on a machine of 2 CPUs or fewer. There a second loop shares a core
/// with whatever else the machine runs (the kernel's network work, local
/// clients, a proxy), and the loop that has a core to itself writes each
/// event on its own instead of several to a write: measured on a 2-CPU
/// machine (README, Two loops on a small machine), two loops delivered 2
/// to 5 times fewer events to 1 000 subscribers than one, and published
/// no more to many small streams.
pub(super) fn auto_loops(cpus: usize) -> usize {
    if cpus <= 2 { 1 } else { cpus.min(MAX_LOOPS) }
}

pub(super) fn loops(option: &str, text: &str) -> Result<usize, CliError> {
    if text == "auto" {
        return Ok(auto_loops(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LOOPS).contains(&n) => Ok(n),
        _ => Err(usage(
            option,
            &format!("takes a number of loops from 1 to {MAX_LOOPS}, or auto, not {text:?}"),
        )),
    }
}

/// `n`, unless it is zero (a count, a size or a duration).
pub(super) fn positive<T: Default + PartialEq>(option: &str, n: T) -> Result<T, CliError> {
    if n == T::default() {
        Err(usage(option, "must be more than 0"))
    } else {
        Ok(n)
    }
}
