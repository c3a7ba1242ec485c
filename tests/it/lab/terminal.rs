//! `sseloop lab LESSON`: the binary runs a lesson with its cause and then
//! its fix, against a running server (`--addr`) or one of its own, reads
//! the streams as a browser's `EventSource` would (inflating, reconnecting
//! with `Last-Event-ID`) and prints each event's delay and a summary, whose
//! medians must say what the measurements say, with tolerances a
//! busy 2-core machine keeps.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{TestServer, wait_child};

/// The summary's line for one run: events, median, max, reconnects.
#[derive(Debug)]
struct Line {
    events: u32,
    median: f64,
    max: f64,
    reconnects: u32,
}

/// Runs `sseloop lab ARGS…`; its output, and the summary's line for the
/// cause and the fix (when run).
fn lab(args: &[&str], timeout: Duration) -> (String, Option<Line>, Option<Line>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .arg("lab")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sseloop lab");
    let mut out = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).ok();
        text
    });
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = reading.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
    assert!(
        status.is_some_and(|s| s.success()),
        "sseloop lab {args:?} ended {status:?}:\n{text}\n{err}"
    );
    let line = |label: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        let fields: Vec<&str> = line[line.find(label).unwrap() + label.len()..]
            .split_whitespace()
            .collect();
        Some(Line {
            events: fields[0].parse().unwrap(),
            median: fields[1].parse().unwrap(),
            max: fields[2].parse().unwrap(),
            reconnects: fields[3].parse().unwrap(),
        })
    };
    let cause = line("with the cause");
    let fix = line("with the fix");
    (text, cause, fix)
}

#[test]
fn the_proxy_lesson_on_a_running_server_holds_events_in_blocks_and_its_fix_does_not() {
    let server = TestServer::start(&["--lab"]);
    let addr = server.addr().to_string();
    let (text, cause, fix) = lab(
        &["proxy", "--addr", &addr, "--count", "20"],
        Duration::from_secs(60),
    );
    let (cause, fix) = (cause.unwrap(), fix.unwrap());
    assert_eq!((cause.events, fix.events), (20, 20), "{text}");
    // 1 KiB at 10/s in 4 KiB blocks: 0.1 to 0.4 s each.
    assert!(cause.median >= 100.0 && cause.max >= 300.0, "{text}");
    assert!(fix.median <= 30.0, "{text}");
    // Each event line says how many reads had come: with the cause, four
    // or so events per read.
    assert!(text.contains("event  20"), "{text}");
}

#[test]
fn the_nagle_lesson_on_its_own_server_waits_for_the_delayed_ack() {
    let (text, cause, fix) = lab(&["nagle"], Duration::from_secs(60));
    assert!(
        text.starts_with("a server of its own on 127.0.0.1:"),
        "{text}"
    );
    let (cause, fix) = (cause.unwrap(), fix.unwrap());
    assert_eq!((cause.events, fix.events), (20, 20), "{text}");
    // Linux delays the ACK by at least 40 ms.
    assert!(cause.median >= 35.0, "{text}");
    assert!(fix.median <= 20.0, "{text}");
}

#[test]
fn the_compression_lesson_is_inflated_and_held_without_a_flush() {
    let (text, cause, fix) = lab(&["compression", "--count", "30"], Duration::from_secs(60));
    let (cause, fix) = (cause.unwrap(), fix.unwrap());
    assert_eq!((cause.events, fix.events), (30, 30), "{text}");
    // A block every 15 or so events of 1 KiB at 10/s.
    assert!(cause.median >= 300.0 && cause.max >= 1000.0, "{text}");
    assert!(fix.median <= 30.0, "{text}");
}

#[test]
fn the_unflushed_lesson_holds_events_until_4_kib_are_written() {
    let (text, cause, fix) = lab(&["unflushed", "--count", "20"], Duration::from_secs(60));
    let (cause, fix) = (cause.unwrap(), fix.unwrap());
    assert!(cause.median >= 100.0, "{text}");
    assert!(fix.median <= 30.0, "{text}");
}

#[test]
fn the_heartbeat_lesson_reconnects_with_last_event_id_with_the_cause_only() {
    // Events 6 s apart: with heartbeats every 10 s the proxy's 5 s read
    // timeout cuts the stream after the first; the client comes back 3 s
    // later with its id, and the second, published meanwhile, is replayed.
    let (text, cause, fix) = lab(&["heartbeat", "--count", "2"], Duration::from_secs(90));
    let (cause, fix) = (cause.unwrap(), fix.unwrap());
    assert_eq!((cause.events, fix.events), (2, 2), "{text}");
    assert_eq!(cause.reconnects, 1, "{text}");
    assert!(
        text.contains("the stream ended before the run: back in 3 s with Last-Event-ID: "),
        "{text}"
    );
    assert!(
        cause.max >= 1000.0,
        "the replayed event was not late: {text}"
    );
    assert_eq!(fix.reconnects, 0, "{text}");
    assert!(fix.max <= 100.0, "{text}");
}

#[test]
fn a_bad_lesson_or_option_exits_2_naming_it() {
    for (args, says) in [
        (&["gzip"][..], "no lesson \"gzip\""),
        (&["proxy", "--rate", "100"][..], "--rate"),
        (&[][..], "name a lesson"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sseloop"))
            .arg("lab")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A server without --lab: the command says what the lab answered.
    let server = TestServer::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args(["lab", "nagle", "--addr", &server.addr().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404") && err.contains("--lab"), "{err}");
}
