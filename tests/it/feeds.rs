//! The binary's own event sources: `--stdin [TOPIC]` and `--demo`.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::TestServer;

#[test]
fn each_stdin_line_is_published_as_it_arrives_and_serving_outlives_the_input() {
    let (server, mut stdin) = TestServer::start_piped(&["--stdin", "logs"]);
    let mut sub = server.subscribe_ready("?topic=logs");
    // Each line is awaited before the next is written: a server that held
    // lines until end of input would time out here.
    for (n, end) in ["\n", "\r\n", "\n"].iter().enumerate() {
        write!(stdin, "line {n}{end}").unwrap();
        stdin.flush().unwrap();
        let event = sub.next_event();
        assert_eq!(event.data, format!("line {n}"));
        assert_eq!(event.event, None);
    }
    drop(stdin);
    let logged = server.await_log(&["stdin: end of input after 3 lines"]);
    assert!(
        logged.is_some(),
        "end of input not logged:\n{}",
        server.log()
    );
    let mut publisher = server.publisher();
    publisher.publish_ok("?topic=logs", b"after the input ended");
    assert_eq!(sub.next_event().data, "after the input ended");
}

#[test]
fn an_over_long_stdin_line_is_published_in_pieces_with_a_warning() {
    let (server, mut stdin) = TestServer::start_piped(&["--stdin", "--max-event-size", "16"]);
    // No topic: lines are broadcast, which a topic-less stream receives.
    let mut sub = server.subscribe_ready("");
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
    let pieces: Vec<String> = (0..3).map(|_| sub.next_event().data).collect();
    assert_eq!(pieces, [&line[..16], &line[16..32], &line[32..]]);
    assert!(
        server.await_log(&["WARN", "published in pieces"]).is_some(),
        "no warning:\n{}",
        server.log()
    );
}

/// The whole-number field `key` of a demo event's JSON data.
fn field(data: &serde_json::Value, key: &str) -> u64 {
    data[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no whole number {key} in {data}"))
}

#[test]
fn demo_jobs_report_rising_progress_then_complete() {
    let server = TestServer::start(&["--demo"]);
    let mut sub = server.subscribe_ready("?topic=demo");
    // A job finishes within 100 steps of 100 ms and one in four fails;
    // jobs start every 3 s, so a completed one comes well within this.
    let end = Instant::now() + Duration::from_secs(30);
    // Per job: the last percent and how many progress events it sent.
    let mut jobs: HashMap<u64, (u64, usize)> = HashMap::new();
    loop {
        let event = sub.next_event_by(end);
        let data: serde_json::Value = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("demo data {:?} is not JSON: {e}", event.data));
        let (job, p, ts) = (
            field(&data, "job"),
            field(&data, "percent"),
            field(&data, "ts"),
        );
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            ts <= now_ms && now_ms - ts < 5_000,
            "ts {ts} is not a recent publish time (now {now_ms})"
        );
        let (last, progressed) = jobs.entry(job).or_insert((0, 0));
        assert!(*last <= p, "job {job} went back from {last} to {p}");
        *last = p;
        match event.event.as_deref() {
            Some("progress") => {
                assert!(p < 100, "progress at {p}");
                *progressed += 1;
            }
            Some("complete") => {
                assert_eq!(p, 100, "job {job} completed at {p}%");
                assert!(
                    *progressed >= 2,
                    "job {job} completed after {progressed} progress events"
                );
                return;
            }
            // A failed job is allowed; keep waiting for one that completes.
            Some("error") => {}
            other => panic!("unexpected event type {other:?}"),
        }
    }
}
