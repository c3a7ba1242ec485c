//! `sseloop-bench` end to end. Against sseloop its counts add up and its
//! figures are in order, in each mode (at a rate, closed loop over HTTP/1.0,
//! idle). Against a server that drops, repeats and swaps deliveries on
//! purpose it counts exactly those faults and fails the run; against one
//! that answers publishes late, the latency from the schedule charges it.
//!
//! The bench is the workspace's `crates/sseloop-bench`, another package, for
//! which Cargo sets no `CARGO_BIN_EXE_` path here: [`bench_exe`] builds it.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::real::LoopbackServer;
use crate::support::{TestServer, read_request, wait_child};

/// Longest the build of the bench may take: a cold debug build is seconds.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The `sseloop-bench` executable, up to date with its sources: `cargo build
/// -p sseloop-bench` runs once per test process (nothing to do after
/// `cargo test --workspace`, which built it; the build under `cargo test
/// --test it`), and its messages name the file. Cargo releases the build
/// directory's lock before it runs test binaries, so this build cannot wait
/// on the `cargo test` that started it; it is bounded all the same.
fn bench_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "sseloop-bench", "--bin", "sseloop-bench"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The profile the tests were built with, so that `cargo test
        // --release --workspace` finds its own build too.
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let mut child = build.spawn().expect("spawn cargo build -p sseloop-bench");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let status = wait_child(&mut child, BUILD_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo build -p sseloop-bench took over {BUILD_TIMEOUT:?}")
        });
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        assert!(
            status.success(),
            "cargo build -p sseloop-bench: {status}\n{stderr}"
        );
        let exe = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "sseloop-bench"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from));
        exe.unwrap_or_else(|| panic!("cargo build named no sseloop-bench executable:\n{stderr}"))
    })
}

/// Runs the bench with `--json` and `args` (split at spaces); returns its
/// report and whether it exited 0.
fn bench(addr: &str, args: &str) -> (Value, bool) {
    let output = Command::new(bench_exe())
        .args([
            "--addr",
            addr,
            "--json",
            "--timeout",
            "5s",
            "--max-time",
            "60s",
        ])
        .args(args.split_whitespace())
        .output()
        .expect("run sseloop-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

fn int(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{key} is not a count: {report}"))
}

fn num(report: &Value, section: &str, key: &str) -> f64 {
    report[section][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{section}.{key} is not a number: {report}"))
}

/// Every delivery made once and in order, and the figures consistent.
fn assert_complete(report: &Value, streams: u64, events: u64) {
    assert_eq!(int(report, "connect", "streams"), streams, "{report}");
    assert_eq!(int(report, "connect", "failed"), 0, "{report}");
    assert_eq!(int(report, "publish", "events"), events, "{report}");
    assert_eq!(int(report, "publish", "errors"), 0, "{report}");
    assert_eq!(int(report, "deliveries", "expected"), streams * events);
    assert_eq!(int(report, "deliveries", "received"), streams * events);
    for fault in ["missing", "duplicate", "out_of_order", "streams_incomplete"] {
        assert_eq!(int(report, "deliveries", fault), 0, "{fault}: {report}");
    }
    assert!(num(report, "deliveries", "per_second") > 0.0, "{report}");
    let quantiles = ["min", "p50", "p90", "p99", "p99_9", "max"]
        .map(|q| num(report, "latency", &format!("{q}_us")));
    assert!(quantiles[0] > 0.0, "{report}");
    // The histogram's buckets are within 1%: allow that between neighbours.
    for pair in quantiles.windows(2) {
        assert!(
            pair[0] <= pair[1] * 1.01,
            "quantiles out of order: {report}"
        );
    }
}

#[test]
fn at_a_rate_every_delivery_is_counted_and_the_server_measured() {
    let server = TestServer::start(&[]);
    let pid = server.pid().to_string();
    let began = Instant::now();
    let (report, ok) = bench(
        &server.addr().to_string(),
        "--subscribers 50 --events 200 --rate 2000",
    );
    let wall = began.elapsed();
    let (report_with_pid, _) = bench(
        &server.addr().to_string(),
        &format!("--subscribers 50 --events 20 --pid {pid}"),
    );
    assert!(ok, "{report}");
    assert_complete(&report, 50, 200);
    assert_eq!(num(&report, "run", "rate"), 2000.0);
    // Nothing is sent before it is due, so each delivery's latency from the
    // schedule is at least its latency from the send.
    for q in ["p50", "p99", "max"] {
        let key = format!("{q}_us");
        let (scheduled, sent) = (
            num(&report, "scheduled", &key),
            num(&report, "latency", &key),
        );
        assert!(scheduled >= sent * 0.99, "{q}: {report}");
    }
    assert!(
        report.get("server").is_none(),
        "no --pid, no server section"
    );
    // Steal is a share of the machine's CPU time over the run: at most the
    // run's wall time on every CPU (plus a 10 ms tick of rounding each).
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let most = (wall.as_secs_f64() + 0.01) * cpus * 1e6;
    let steal = num(&report, "machine", "steal_us");
    assert!((0.0..=most).contains(&steal), "steal {steal} µs: {report}");
    // What else ran meanwhile: likewise bounded by the machine's CPUs.
    let others = num(&report, "machine", "others_cpu_us");
    assert!(
        (0.0..=most).contains(&others),
        "others {others} µs: {report}"
    );
    // The same as a share of one CPU over the run (of which there are
    // `cpus`; ticks round up by 10 ms a CPU).
    let share = num(&report, "machine", "others_percent");
    assert!(
        (0.0..=cpus * 100.0 + 10.0).contains(&share),
        "{share} %: {report}"
    );
    let server_section = &report_with_pid["server"];
    assert_eq!(
        server_section["pid"].as_u64(),
        Some(u64::from(server.pid()))
    );
    assert!(int(&report_with_pid, "server", "rss_after_kib") > 0);
    assert!(num(&report_with_pid, "server", "cpu_per_delivery_us") > 0.0);
}

/// A server's threads as the report lists them: (pid, name, CPU over the
/// run in µs, share of the run in %), in the report's order.
fn threads(report: &Value) -> Vec<(u64, String, f64, f64)> {
    let threads = report["server"]["threads"].as_array();
    let threads = threads.unwrap_or_else(|| panic!("no server.threads: {report}"));
    let field = |t: &Value, key: &str| {
        t[key]
            .as_f64()
            .unwrap_or_else(|| panic!("thread {key} is not a number: {t}"))
    };
    threads
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_else(|| panic!("no name: {t}"));
            let pid = t["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {t}"));
            (
                pid,
                name.to_string(),
                field(t, "cpu_run_us"),
                field(t, "run_share_percent"),
            )
        })
        .collect()
}

/// Asks `server` for `/health` over one connection until `stop` is set
/// (or 100 000 times): work that takes CPU and keeps no state.
fn keep_busy(server: &TestServer, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    let mut conn = server.http();
    thread::spawn(move || {
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) && answered < 100_000 {
            conn.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
            let response = conn.read_response(Instant::now() + Duration::from_secs(5));
            assert_eq!(response.head.status, 200, "{}", response.text());
            answered += 1;
        }
        answered
    })
}

/// Under load, a `--loops 2` server's report lists both loop threads by
/// name (loop 0 on the main thread `sseloop`, loop 1 on `sseloop-loop`),
/// each with CPU time and a real share of the run; with a second `--pid`
/// (a server kept busy meanwhile), the second process's threads are listed
/// too, and the server's RSS and CPU are the sums over both processes.
#[test]
fn two_loops_show_their_threads_and_two_pids_are_summed() {
    let server = TestServer::start(&["--loops", "2"]);
    let other = TestServer::start(&[]);
    let (a, b) = (u64::from(server.pid()), u64::from(other.pid()));
    // Both idle: their RSS holds still until the bench connects (the
    // health checks below keep nothing).
    let idle_rss = (server.rss_kib(), other.rss_kib());
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(&other, Arc::clone(&stop));
    let (report, ok) = bench(
        &server.addr().to_string(),
        &format!("--subscribers 200 --events 300 --rate 0 --pid {a} --pid {b}"),
    );
    stop.store(true, Ordering::Relaxed);
    assert!(busy.join().expect("health checks") > 0);
    assert!(ok, "{report}");
    assert_complete(&report, 200, 300);
    assert_eq!(
        report["server"]["pids"],
        serde_json::json!([a, b]),
        "{report}"
    );
    assert_eq!(int(&report, "server", "pid"), a, "{report}");
    let threads = threads(&report);
    let names = |pid| {
        let mut names: Vec<&str> = threads
            .iter()
            .filter(|t| t.0 == pid)
            .map(|t| t.1.as_str())
            .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(names(a), ["signals", "sseloop", "sseloop-loop"], "{report}");
    assert_eq!(names(b), ["signals", "sseloop"], "{report}");
    // The kernel spreads 200 streams over both listeners, so each loop
    // writes to about half of them: both take a real share of the CPU.
    for loop_thread in ["sseloop", "sseloop-loop"] {
        let (_, _, cpu, share) = threads
            .iter()
            .find(|t| t.0 == a && t.1 == loop_thread)
            .unwrap();
        assert!(*cpu > 0.0 && *share >= 5.0, "{loop_thread}: {report}");
    }
    // The other server answered health checks on its main thread.
    let other_main = threads.iter().find(|t| t.0 == b && t.1 == "sseloop");
    assert!(other_main.unwrap().2 > 0.0, "{report}");
    // The total is the sum over both processes' threads (each rounded to
    // a nanosecond in the report) ...
    let threads_cpu: f64 = threads.iter().map(|t| t.2).sum();
    let cpu_run = num(&report, "server", "cpu_run_us");
    assert!((cpu_run - threads_cpu).abs() < 0.01, "{report}");
    let shares: f64 = threads.iter().map(|t| t.3).sum();
    assert!((shares - 100.0).abs() < 0.5, "{report}");
    // ... and so is the RSS before connecting: the two idle servers'.
    let sum = idle_rss.0 + idle_rss.1;
    let before = int(&report, "server", "rss_before_kib");
    assert!(
        before.abs_diff(sum) <= idle_rss.1 / 4,
        "{before} KiB, {idle_rss:?}: {report}"
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A thread of this test process that spins during a run is neither the
/// server nor the bench: the report's machine section counts it in what
/// else ran (a busy build would be counted alike).
#[test]
fn the_machine_section_counts_what_else_ran() {
    let server = TestServer::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let began = thread_cpu();
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            thread_cpu() - began
        })
    };
    let (report, ok) = bench(
        &server.addr().to_string(),
        &format!(
            "--subscribers 5 --events 1500 --rate 1000 --pid {}",
            server.pid()
        ),
    );
    stop.store(true, Ordering::Relaxed);
    let spun = spinner.join().unwrap();
    assert!(ok, "{report}");
    // The spinner ran before and after the run too, and on a machine this
    // busy it may have had half a core: a third of its time is a loose
    // floor (clock ticks are 10 ms).
    let others = num(&report, "machine", "others_cpu_us");
    assert!(
        others >= spun.as_micros() as f64 / 3.0 && spun > Duration::from_millis(300),
        "others {others} µs, the spinner {spun:?}: {report}"
    );
}

#[test]
fn closed_loop_over_http_1_0_reads_close_delimited_streams() {
    let server = TestServer::start(&[]);
    let (report, ok) = bench(
        &server.addr().to_string(),
        "--subscribers 30 --events 500 --rate 0 --http10",
    );
    assert!(ok, "{report}");
    assert_complete(&report, 30, 500);
    assert_eq!(int(&report, "run", "window"), 32);
    assert!(
        report.get("scheduled").is_none(),
        "a closed loop has no schedule"
    );
}

/// `--mercure`: the streams subscribe on sseloop's Mercure hub, by exact
/// matcher or URL pattern, and every event published on `/publish` is
/// counted as it is on `/events`.
#[test]
fn mercure_subscribers_are_counted_as_events_subscribers() {
    let server = TestServer::start(&[]);
    for mode in ["exact", "urlpattern"] {
        let (report, ok) = bench(
            &server.addr().to_string(),
            &format!("--subscribers 20 --events 200 --rate 0 --mercure {mode}"),
        );
        assert!(ok, "{mode}: {report}");
        assert_complete(&report, 20, 200);
        assert_eq!(
            report["run"]["subscribe"],
            format!("mercure-{mode}"),
            "{report}"
        );
    }
}

#[test]
fn idle_mode_sees_every_stream_get_heartbeats() {
    let server = TestServer::start(&["--heartbeat", "200ms"]);
    let (report, ok) = bench(&server.addr().to_string(), "--subscribers 40 --idle 1s");
    assert!(ok, "{report}");
    assert_eq!(int(&report, "idle", "streams_with_comment"), 40, "{report}");
    // At 200 ms, a stream held 1 s gets about 5; at least 2 each is loose.
    assert!(int(&report, "idle", "comments") >= 80, "{report}");
    assert_eq!(int(&report, "idle", "events"), 0, "{report}");
    // Under twice the interval: the bench measures the gaps it was sent.
    assert!(
        num(&report, "idle", "longest_silence_us") < 400_000.0,
        "{report}"
    );
}

/// What a faulty server does to the first stream of a topic, by event
/// number within the topic: it drops number 3, sends number 5 twice and
/// sends number 8 before number 7.
fn faulty_sends(number: u64) -> Vec<u64> {
    match number {
        3 => vec![],
        5 => vec![5, 5],
        7 => vec![],
        8 => vec![8, 7],
        n => vec![n],
    }
}

/// How a fake server misbehaves.
#[derive(Clone, Copy)]
struct Faults {
    /// Garble the first stream of this topic as `faulty_sends` says.
    garble: Option<&'static str>,
    /// Send event number 2 of the first topic also to the first stream of
    /// the second, which did not subscribe to it.
    misroute: Option<(&'static str, &'static str)>,
    /// Deliver at once but answer each publish this late.
    answer_after: Duration,
}

const NO_FAULTS: Faults = Faults {
    garble: None,
    misroute: None,
    answer_after: Duration::ZERO,
};

/// The `topic` query parameter of a request line (the bench's names need
/// no decoding).
fn topic_of(request_line: &str) -> String {
    let query = request_line.split(['?', ' ']).nth(2).unwrap_or_default();
    let topic = query.split('&').find_map(|p| p.strip_prefix("topic="));
    topic.unwrap_or_default().to_string()
}

/// Open streams, with the topic each subscribed to, in subscribing order.
type Streams = Mutex<Vec<(String, TcpStream)>>;

/// A thread per connection: `GET /events?topic=T` streams (close-delimited)
/// the events published to T; every other request is a publish, to the
/// topic it names, answered `200` on a kept-alive connection.
fn start_fake_server(faults: Faults) -> LoopbackServer {
    let streams: Arc<Streams> = Arc::default();
    LoopbackServer::start("fake bench server", move |conn| {
        serve_fake(conn, &streams, faults)
    })
}

fn serve_fake(conn: TcpStream, streams: &Streams, faults: Faults) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    // Each topic's events come over one connection, so this thread sees
    // all of a topic's publishes it sees any of, in order.
    let mut numbers: HashMap<String, u64> = HashMap::new();
    let mut held_back: HashMap<(String, u64), String> = HashMap::new();
    loop {
        let Ok(Some((request_line, body))) = read_request(&mut reader) else {
            return;
        };
        let topic = topic_of(&request_line);
        if request_line.starts_with("GET /events") {
            let mut stream = conn.try_clone().unwrap();
            // Listed before its head goes out: the bench publishes as soon
            // as it has every head, and this stream must not miss that.
            let mut streams = streams.lock().unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
                .unwrap();
            streams.push((topic, stream));
            return;
        }
        let counter = numbers.entry(topic.clone()).or_default();
        let number = *counter;
        *counter += 1;
        held_back.insert((topic.clone(), number), String::from_utf8(body).unwrap());
        let mut streams = streams.lock().unwrap();
        let mut firsts = HashMap::new();
        for (stream_topic, stream) in streams.iter_mut() {
            let first = firsts.insert(stream_topic.clone(), ()).is_none();
            let misrouted = faults
                .misroute
                .is_some_and(|(from, to)| from == topic && to == stream_topic);
            if misrouted && first && number == 2 {
                let _ = write!(stream, "data: {}\n\n", held_back[&(topic.clone(), 2)]);
            }
            if *stream_topic != topic {
                continue;
            }
            let sends = if first && faults.garble == Some(&topic) {
                faulty_sends(number)
            } else {
                vec![number]
            };
            for n in sends {
                let _ = write!(stream, "data: {}\n\n", held_back[&(topic.clone(), n)]);
            }
        }
        drop(streams);
        // The misbehaviour under test, not a wait for anything.
        thread::sleep(faults.answer_after);
        let mut answer = &conn;
        answer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    }
}

#[test]
fn a_faulty_server_is_caught_missing_repeating_and_reordering() {
    let fake = start_fake_server(Faults {
        garble: Some("bench"),
        ..NO_FAULTS
    });
    let (report, ok) = bench(
        &fake.addr().to_string(),
        "--subscribers 2 --events 12 --rate 1000 --drain-timeout 300ms --no-spread",
    );
    assert!(!ok, "a run with faulty deliveries must fail: {report}");
    assert_eq!(int(&report, "deliveries", "expected"), 24, "{report}");
    // 11 unique on the first stream plus one repeat, 12 on the second.
    assert_eq!(int(&report, "deliveries", "received"), 24, "{report}");
    assert_eq!(int(&report, "deliveries", "missing"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "duplicate"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "out_of_order"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "streams_incomplete"), 1);
}

#[test]
fn a_server_that_answers_late_is_charged_from_the_schedule() {
    let fake = start_fake_server(Faults {
        answer_after: Duration::from_millis(20),
        ..NO_FAULTS
    });
    let (report, ok) = bench(
        &fake.addr().to_string(),
        "--subscribers 2 --events 20 --rate 1000 --no-spread",
    );
    assert!(ok, "{report}");
    assert_complete(&report, 2, 20);
    // Each publish waits for the previous answer, so event n goes out about
    // 20n ms late while it is delivered at once after its send.
    assert!(
        num(&report, "publish", "max_lag_us") >= 300_000.0,
        "{report}"
    );
    assert!(num(&report, "scheduled", "p50_us") >= 150_000.0, "{report}");
    assert!(num(&report, "latency", "p50_us") < 150_000.0, "{report}");
}

/// Many small streams: 60 streams on 20 topics (3 each), 400 events over
/// 4 connections, closed loop and then at a rate with pipelining. Each
/// event reaches its topic's 3 streams only, and the server's CPU is
/// reported per publish.
#[test]
fn many_topics_over_several_connections_are_counted_per_topic() {
    let server = TestServer::start(&[]);
    let addr = server.addr().to_string();
    let pid = server.pid();
    for mode in ["--rate 0 --window 16", "--rate 4000 --pipeline 8"] {
        let (report, ok) = bench(
            &addr,
            &format!("--subscribers 60 --topics 20 --publishers 4 --events 400 {mode} --pid {pid}"),
        );
        assert!(ok, "{mode}: {report}");
        assert_eq!(int(&report, "run", "topics"), 20, "{report}");
        assert_eq!(int(&report, "run", "publishers"), 4, "{report}");
        assert_eq!(int(&report, "connect", "streams"), 60, "{report}");
        assert_eq!(int(&report, "publish", "events"), 400, "{report}");
        // 400 events, each to the 3 streams of its topic.
        assert_eq!(int(&report, "deliveries", "expected"), 1200, "{report}");
        assert_eq!(int(&report, "deliveries", "received"), 1200, "{report}");
        for fault in ["missing", "duplicate", "out_of_order", "misrouted"] {
            assert_eq!(int(&report, "deliveries", fault), 0, "{fault}: {report}");
        }
        assert!(num(&report, "publish", "per_second") > 0.0, "{report}");
        assert!(num(&report, "latency", "p50_us") > 0.0, "{report}");
        // Three deliveries a publish: the CPU per publish is three times
        // the CPU per delivery (each rounded to a nanosecond).
        let per_publish = num(&report, "server", "cpu_per_publish_us");
        let per_delivery = num(&report, "server", "cpu_per_delivery_us");
        assert!(per_publish > 0.0, "{report}");
        assert!(
            (per_publish - 3.0 * per_delivery).abs() <= 0.01,
            "{per_publish} against 3 × {per_delivery}: {report}"
        );
    }
}

/// Against a server that garbles one topic's events on one of its streams
/// and sends another topic's event to a stream that did not ask for it,
/// the bench counts exactly those faults and fails the run; events of
/// different topics interleaved any way (three connections served by
/// three threads) are no fault.
#[test]
fn a_faulty_server_is_caught_per_topic() {
    let fake = start_fake_server(Faults {
        garble: Some("bench-1"),
        misroute: Some(("bench-2", "bench-0")),
        ..NO_FAULTS
    });
    let (report, ok) = bench(
        &fake.addr().to_string(),
        "--subscribers 6 --topics 3 --publishers 3 --events 30 --rate 1000 \
         --drain-timeout 300ms --no-spread",
    );
    assert!(!ok, "a run with faulty deliveries must fail: {report}");
    assert_eq!(int(&report, "publish", "errors"), 0, "{report}");
    // 10 events on each topic, each to its 2 streams.
    assert_eq!(int(&report, "deliveries", "expected"), 60, "{report}");
    // One dropped and one repeated on bench-1's first stream; one of
    // bench-2's events also on bench-0's first stream.
    assert_eq!(int(&report, "deliveries", "received"), 61, "{report}");
    assert_eq!(int(&report, "deliveries", "missing"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "duplicate"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "out_of_order"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "misrouted"), 1, "{report}");
    assert_eq!(int(&report, "deliveries", "streams_incomplete"), 1);
    // The same server without the faults passes.
    let fair = start_fake_server(NO_FAULTS);
    let (report, ok) = bench(
        &fair.addr().to_string(),
        "--subscribers 6 --topics 3 --publishers 3 --events 30 --rate 1000 --no-spread",
    );
    assert!(ok, "{report}");
    assert_eq!(int(&report, "deliveries", "received"), 60, "{report}");
}
