//! The command line's unit tests: values in both forms, the errors that
//! name their option, the rules `Config::validate` keeps said in the
//! options' words.

use super::lab::parse_lab;
use super::values::auto_loops;
use super::*;
use sseloop::config::MAX_LOOPS;
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
    assert!(err(&["--header-timeout", "0"]).contains("--header-timeout must be more than 0"));
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
    assert_eq!(ok(&["--loops", "auto"]).config.loops, auto_loops(cpus));
    // One per CPU, but one on a machine of 2 CPUs or fewer.
    let picks = [1, 2, 3, 4, 64, 1000].map(auto_loops);
    assert_eq!(picks, [1, 1, 3, 4, 64, MAX_LOOPS]);
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
fn mercure_options() {
    let key = "k".repeat(32);
    let o = ok(&[
        "--jwt-key",
        &key,
        "--hub-url",
        "https://hub.example/.well-known/mercure",
        "--jwt-issuer",
        "https://app.example",
        "--jwt-audience=https://hub.example",
        "--anonymous",
    ]);
    assert_eq!(
        o.config.hub_url.as_deref(),
        Some("https://hub.example/.well-known/mercure")
    );
    assert_eq!(o.config.jwt_issuer.as_deref(), Some("https://app.example"));
    assert_eq!(
        o.config.jwt_audience.as_deref(),
        Some("https://hub.example")
    );
    assert!(o.config.anonymous);
    assert_eq!(ok(&[]).config.hub_url, None);
    for bad in ["/.well-known/mercure", "ftp://hub/", "http://", "not a url"] {
        let e = err(&["--hub-url", bad]);
        assert!(e.contains("--hub-url takes an absolute http"), "{bad}: {e}");
    }
    for option in ["--jwt-issuer", "--jwt-audience"] {
        assert!(err(&[option, "x"]).contains(&format!("{option} needs --jwt-key")));
        assert!(err(&["--jwt-key", &key, option, ""]).contains(option));
    }
    assert!(err(&["--anonymous"]).contains("--anonymous needs --jwt-key"));
    assert!(USAGE.contains("--hub-url URL") && USAGE.contains("--anonymous"));
}

#[test]
fn redis_url_and_key() {
    assert_eq!(ok(&[]).config.cluster, None);
    let cluster = ok(&["--redis", "redis://:pw@127.0.0.1:6380/2"])
        .config
        .cluster
        .unwrap();
    let config::RedisTarget::Direct(url) = &cluster.redis else {
        panic!("{:?}", cluster.redis);
    };
    assert_eq!((url.port, url.db), (6380, 2));
    assert_eq!(cluster.key, "sseloop");
    assert_eq!(cluster.replicas, 0);
    assert_eq!(cluster.publish_timeout, config::DEFAULT_PUBLISH_TIMEOUT);
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
fn a_redis_ca_needs_a_tls_url() {
    let alone = err(&["--redis-ca", "ca.pem"]);
    if cfg!(feature = "tls") {
        assert!(alone.contains("--redis-ca needs --redis"), "{alone}");
    } else {
        assert!(alone.contains("--features tls"), "{alone}");
    }
    let plain = err(&["--redis-ca", "ca.pem", "--redis", "redis://h"]);
    assert!(
        plain.contains("--redis-ca") && plain.contains("rediss://"),
        "{plain}"
    );
    let tls = ["--redis", "rediss://h", "--redis-ca", "ca.pem"];
    #[cfg(feature = "tls")]
    {
        let cluster = ok(&tls).config.cluster.unwrap();
        assert!(cluster.redis.tls());
        assert_eq!(cluster.redis_ca, Some("ca.pem".into()));
    }
    #[cfg(not(feature = "tls"))]
    assert!(err(&tls).contains("--features tls"));
}

#[test]
fn sentinels_replicas_and_the_publish_timeout() {
    let cluster = ok(&[
        "--redis",
        "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster?sentinel_password=s",
        "--redis-replicas",
        "1",
        "--publish-timeout",
        "500ms",
    ])
    .config
    .cluster
    .unwrap();
    let config::RedisTarget::Sentinel(url) = &cluster.redis else {
        panic!("{:?}", cluster.redis);
    };
    assert_eq!((url.sentinels.len(), url.service.as_str()), (2, "mymaster"));
    assert_eq!(cluster.replicas, 1);
    assert_eq!(cluster.publish_timeout, Duration::from_millis(500));
    let refused = err(&["--redis", "redis+sentinel://:secret@h/m?db=1"]);
    assert!(refused.contains("unknown parameter"), "{refused}");
    assert!(!refused.contains("secret"), "{refused}");
    for (args, says) in [
        (
            &["--redis-replicas", "1"][..],
            "--redis-replicas needs --redis",
        ),
        (
            &["--publish-timeout", "1s"],
            "--publish-timeout needs --redis",
        ),
        (
            &["--redis", "redis://h", "--redis-replicas", "17"],
            "--redis-replicas",
        ),
        (
            &["--redis", "redis://h", "--redis-replicas", "x"],
            "--redis-replicas",
        ),
        (
            &["--redis", "redis://h", "--publish-timeout", "0"],
            "--publish-timeout",
        ),
        (
            &["--redis", "redis://h", "--publish-timeout", "61s"],
            "--publish-timeout",
        ),
        (
            &["--redis", "redis://h", "--max-event-size", "2MiB"],
            "--max-event-size",
        ),
    ] {
        let refused = err(args);
        assert!(refused.contains(says), "{args:?}: {refused}");
    }
    // Without --redis, events may be larger.
    assert_eq!(
        ok(&["--max-event-size", "2MiB"]).config.max_event_size,
        2 << 20
    );
}

#[test]
fn stdin_topic_is_optional() {
    assert_eq!(ok(&["--stdin"]).stdin, Some(None));
    assert_eq!(ok(&["--stdin", "logs"]).stdin, Some(Some("logs".into())));
    let o = ok(&["--stdin", "--demo"]);
    assert_eq!((o.stdin, o.demo), (Some(None), true));
    assert!(err(&["--stdin="]).contains("--stdin"));
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
