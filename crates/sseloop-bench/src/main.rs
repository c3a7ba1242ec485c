//! `sseloop-bench`: the load and latency client of sseloop.
//!
//! It measures how fast a Server-Sent Events server delivers and what that
//! costs it, against any server with sseloop's interface
//! (`GET /events?topic=T`, `POST /publish?topic=T`), in three phases:
//!
//! 1. **Connect.** Opens N subscriber streams, at most `--connect-batch` at a
//!    time so the server's listen backlog (128 for some servers) is never
//!    overrun, and waits until each has sent its `200` head. The open-file
//!    soft limit is raised to the hard limit, and on loopback each socket is
//!    bound to a source address in 127.0.0.2–127.0.0.251, so tens of
//!    thousands of connections to one port do not run out of ephemeral ports.
//! 2. **Publish.** Sends M events over keep-alive connections (one by
//!    default), each request when the previous one on its connection is
//!    answered, as a simple publisher does (and as the peers' reference
//!    figures were measured): at a rate, when it is also due, and the
//!    report's `max_lag` is the most any send went out late against its
//!    schedule. A timerfd wakes the client on time (to within its own
//!    wake-up, which `--spin` removes), so beyond some tens of microseconds
//!    a server that answered slowly held the schedule back.
//!    `latency` runs from the actual send and leaves that slip out;
//!    `scheduled` gives the latency from when each event was due, which
//!    counts it, so a server that falls behind cannot look fast by
//!    slowing its publisher down.
//!    Closed-loop (`--rate 0`), as long as fewer
//!    than W events are outstanding, an event being outstanding until every
//!    open stream of its topic has it or `--timeout` gives up on it, so a
//!    server that answers before it delivers cannot make the client queue
//!    without bound. `--pipeline N` lets N requests go unanswered on each
//!    connection: at a rate, a large N makes the load open-loop, offered in
//!    full however slowly the server answers.
//!    Each event's data is `SEQ MONOTONIC_NS [padding]`, the time read from
//!    CLOCK_MONOTONIC just before the request is composed.
//!    **Many small streams:** with `--topics K` the subscribers are spread
//!    over K topics (`T-0` … `T-(K-1)`, subscriber i on `T-(i mod K)`),
//!    event s goes to `T-(s mod K)`, and with `--publishers P` over
//!    connection `(s mod K) mod P`: a topic's events all go over one
//!    connection, so their order is the server's to keep, and each stream
//!    is checked against its own topic's events (a delivery of another
//!    topic's event counts as `misrouted`). The events due at one wake-up
//!    are composed first and each connection then written once.
//! 3. **Drain.** Waits until every stream has every event, or
//!    `--drain-timeout`.
//!
//! Each delivery is checked per subscriber by sequence number (missing,
//! duplicate, out of order) and its latency, from the publish stamp to the
//! `read` that brought the event's end, goes into a log-linear histogram with
//! under 1 % error. Throughput is unique deliveries over the time from the
//! first publish to the last delivery. Given `--pid`, the server's RSS and
//! CPU time are read from /proc before connecting, after connecting and at
//! the end, so CPU per delivery and per publish can be compared between
//! servers even when this client caps throughput. `--pid` may be given several times (nginx's
//! master and workers): RSS and CPU are then summed over the processes, so
//! a constant share such as the master's cancels out of the growth per
//! stream. The CPU time of every thread is reported too, by name (from
//! /proc/PID/task/TID/comm), with its share of the run, so that the work of
//! each of a server's loops or workers shows even where this client shares
//! a core with one of them. A cluster's Redis is reported apart with
//! `--redis-pid`, and `--publish-addr` publishes to another address than
//! the streams' (one node of a cluster, the streams on another). `--idle`
//! replaces phases 2–3 by holding the
//! streams open, to measure idle memory, idle CPU and heartbeats.
//!
//! The client must not be the bottleneck: one thread multiplexes every socket
//! with mio, every socket is read into one large shared buffer, and bodies are
//! decoded incrementally (chunked, content-length or close-delimited framing,
//! then SSE lines ending in CR, LF or CRLF) with about a hundred bytes of
//! parser state per stream and no allocation per delivery.
//!
//! The report has the sections run, connect, publish, deliveries, latency,
//! scheduled, idle, streams, server, client and machine (the time the
//! hypervisor stole from this VM's CPUs during the run, and the CPU time
//! everything but this client and the server took meanwhile, a build or a
//! browser that disturbed the run, from /proc/stat):
//! as text by default, or with `--json` as
//! one object of objects with the same names, times in microseconds (keys
//! ending `_us`) and memory in KiB (`_kib`). The server section's `pids`
//! and `threads` are lists (in the text, a line per thread): each thread
//! with its `pid`, `tid`, `name`, `cpu_connecting`, `cpu_run` and
//! `run_share_percent` (of every listed thread's CPU over the run).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`options`] | the command line: `--help`, [`Options`], parsing |
//! | [`mercure`] | `--mercure`: subscribers on sseloop's Mercure hub |
//! | [`client`] | the poll loop and its phases: subscribers, publisher, timer, the tally |
//! | [`wire`] | response heads, chunked/length/close framing, the SSE parser |
//! | [`histogram`] | the latency histogram |
//! | [`report`] | the report's sections, as text or JSON |
//! | [`stats`] | process and machine figures from /proc |
//! | [`clock`] | CLOCK_MONOTONIC, the time stamped into events |
//!
//! This file runs the phases and puts their figures into the report.

mod client;
mod clock;
mod histogram;
mod mercure;
mod options;
mod report;
mod stats;
mod wire;

use std::io;
use std::process::ExitCode;

use client::{Bench, raise_nofile_limit};
use clock::{now_ns, ns};
use options::{HELP, Options, parse_args};
use report::{Report, Section, Val, text};
use stats::{ProcSample, machine_cpu, sample_proc, sample_procs, thread_runs};

/// Runs the phases and reports; `Err` for a run that could not start, and
/// the flag says whether the run failed (streams, publishing or deliveries
/// did).
fn run(opts: Options) -> io::Result<(Report, bool)> {
    use Val::{Int, Kib, List, Null, Num, Obj, Text, Time};
    let limit = raise_nofile_limit();
    let need = opts.subscribers as u64 + 16;
    if limit < need {
        let n = opts.subscribers;
        let msg = format!("--subscribers {n}: needs {need} open files, the limit is {limit}");
        return Err(io::Error::other(msg));
    }
    for p in opts.pids.iter().chain(&opts.redis_pid) {
        if sample_proc(&p.to_string()).is_none() {
            return Err(io::Error::other(format!("pid {p}: cannot read /proc/{p}")));
        }
    }
    let server = || {
        (!opts.pids.is_empty())
            .then(|| sample_procs(&opts.pids))
            .flatten()
    };
    let redis = || opts.redis_pid.and_then(|p| sample_proc(&p.to_string()));
    let client = || sample_proc("self");
    let mut bench = Bench::new(opts.clone())?;
    let (server_before, redis_before) = (server(), redis());
    let connect_time = bench.connect_phase()?;
    let streams = bench.live;
    let streams_by_topic = bench.live_by_topic.clone();
    let (server_connected, client_connected, run_start) = (server(), client(), now_ns());
    let redis_connected = redis();
    let machine_before = machine_cpu();

    let mut r = Report::default();
    let s = r.section("run");
    s.put("addr", Text(opts.host.clone()));
    s.put("topic", Text(opts.topic.clone()));
    s.put("subscribe", Text(opts.mercure.name().into()));
    s.put("topics", Int(opts.topics as u64));
    s.put("subscribers", Int(opts.subscribers as u64));
    if let Some(hold) = opts.idle {
        s.put("idle", Time(ns(hold)));
    } else if opts.rate > 0.0 {
        s.put("events", Int(opts.events))
            .put("rate", Num(opts.rate, 0));
    } else {
        s.put("events", Int(opts.events))
            .put("window", Int(opts.window));
    }
    if opts.idle.is_none() {
        s.put("publishers", Int(opts.publishers as u64))
            .put("pipeline", Int(opts.pipeline as u64));
    }
    if opts.size > 0 {
        s.put("size", Int(opts.size as u64));
    }
    r.section("connect")
        .put("streams", Int(streams as u64))
        .put("failed", Int(bench.connect_failures as u64))
        .put("time", Time(ns(connect_time)))
        .put("first_error", text(&bench.first_connect_error));

    let (mut deliveries, mut publishes) = (0, 0);
    let mut failed = bench.connect_failures > 0 || streams == 0;
    if streams == 0 {
        // Nothing to measure: the connect section says why.
    } else if let Some(hold) = opts.idle {
        let (gap, with_comment) = bench.idle_phase(hold)?;
        r.section("idle")
            .put("comments", Int(bench.tally.comments))
            .put("streams_with_comment", Int(with_comment as u64))
            .put("longest_silence", Time(ns(gap)))
            .put("events", Int(bench.tally.other));
    } else {
        let publish_time = bench.publish_phase()?;
        let t = &bench.tally;
        publishes = bench.published - bench.publish_errors;
        let by_topic = bench.published_by_topic();
        let expected = bench.expected(&by_topic, &streams_by_topic);
        deliveries = t.received - t.duplicate - t.misrouted;
        let per_second = bench.published as f64 / publish_time.as_secs_f64();
        r.section("publish")
            .put("events", Int(bench.published))
            .put("time", Time(ns(publish_time)))
            .put("per_second", Num(per_second, 0))
            .put(
                "max_lag",
                if opts.rate > 0.0 {
                    Time(bench.max_lag_ns)
                } else {
                    Null
                },
            )
            .put("errors", Int(bench.publish_errors))
            .put("first_error", text(&bench.first_publish_error))
            .put("aborted", text(&bench.abort));
        failed |= bench.abort.is_some();
        let incomplete = bench.streams_incomplete(&by_topic);
        // A figure from a run that lost or garbled deliveries is no figure.
        failed |= deliveries < expected || t.duplicate > 0 || t.out_of_order > 0;
        failed |= t.misrouted > 0;
        // From the first publish to the last delivery (0 when none came).
        let span = t.last_delivery_ns.saturating_sub(bench.first_sent_ns);
        r.section("deliveries")
            .put("expected", Int(expected))
            .put("received", Int(t.received))
            .put("missing", Int(expected.saturating_sub(deliveries)))
            .put("duplicate", Int(t.duplicate))
            .put("out_of_order", Int(t.out_of_order))
            .put("misrouted", Int(t.misrouted))
            .put("streams_incomplete", Int(incomplete as u64))
            .put(
                "per_second",
                Num(deliveries as f64 * 1e9 / span.max(1) as f64, 0),
            )
            .put("over", Time(span));
        let h = &t.latency;
        let s = r.section("latency");
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
            s.put(name, Time(h.quantile(q)));
        }
        s.put("max", Time(h.max))
            .put("min", Time(h.min.min(h.max)))
            .put("mean", Time(h.mean()));
        if t.schedule.is_some() {
            let h = &t.from_schedule;
            let s = r.section("scheduled");
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)] {
                s.put(name, Time(h.quantile(q)));
            }
            s.put("max", Time(h.max));
        }
    }
    if bench.streams_closed > 0 || bench.tally.other > 0 {
        r.section("streams")
            .put("closed_early", Int(bench.streams_closed as u64))
            .put("first_reason", text(&bench.first_close_reason))
            .put("other_events", Int(bench.tally.other));
    }
    let run_ns = now_ns() - run_start;
    // The server's CPU over the run, when measured, for the machine section.
    let mut server_run_s = None;
    if let (Some(a), Some(b), Some(c)) = (server_before, server_connected, server()) {
        let rss = |s: &[ProcSample]| s.iter().map(|p| p.rss_kib).sum::<u64>();
        let cpu = |s: &[ProcSample]| s.iter().map(|p| p.cpu_s).sum::<f64>();
        let (a_rss, b_rss, c_rss) = (rss(&a), rss(&b), rss(&c));
        let growth = (b_rss as f64 - a_rss as f64) * 1024.0 / streams.max(1) as f64;
        let (connecting, running) = (cpu(&b) - cpu(&a), cpu(&c) - cpu(&b));
        server_run_s = Some(running);
        let per_delivery = running * 1e9 / deliveries as f64;
        let runs = thread_runs(&a, &b, &c);
        let threads_run: u64 = runs.iter().map(|t| t.run_ns).sum();
        let threads = runs.into_iter().map(|t| {
            let mut s = Section::default();
            s.put("pid", Int(u64::from(t.pid)))
                .put("tid", Int(u64::from(t.tid)))
                .put("name", Text(t.name))
                .put("cpu_connecting", t.connecting_ns.map_or(Null, Time))
                .put("cpu_run", Time(t.run_ns))
                .put(
                    "run_share_percent",
                    if threads_run > 0 {
                        Num(t.run_ns as f64 * 100.0 / threads_run as f64, 1)
                    } else {
                        Null
                    },
                );
            Obj(s)
        });
        r.section("server")
            .put("pid", Int(u64::from(opts.pids[0])))
            .put(
                "pids",
                List(opts.pids.iter().map(|&p| Int(u64::from(p))).collect()),
            )
            .put("rss_before", Kib(a_rss))
            .put("rss_connected", Kib(b_rss))
            .put("rss_after", Kib(c_rss))
            .put("rss_bytes_per_stream", Num(growth, 0))
            .put("cpu_connecting", Time((connecting * 1e9).round() as u64))
            .put("cpu_run", Time((running * 1e9).round() as u64))
            .put(
                "cpu_per_delivery",
                if deliveries > 0 {
                    Time(per_delivery.round() as u64)
                } else {
                    Null
                },
            )
            .put(
                "cpu_per_publish",
                if publishes > 0 {
                    Time((running * 1e9 / publishes as f64).round() as u64)
                } else {
                    Null
                },
            )
            .put("threads", List(threads.collect()));
    }
    if let (Some(a), Some(b), Some(c)) = (redis_before, redis_connected, redis()) {
        let running = c.cpu_s - b.cpu_s;
        r.section("redis")
            .put("pid", Int(u64::from(opts.redis_pid.unwrap_or(0))))
            .put("rss_before", Kib(a.rss_kib))
            .put("rss_after", Kib(c.rss_kib))
            .put("cpu_run", Time((running * 1e9).round() as u64))
            .put(
                "cpu_per_delivery",
                if deliveries > 0 {
                    Time((running * 1e9 / deliveries as f64).round() as u64)
                } else {
                    Null
                },
            );
    }
    let client_run = client_connected
        .zip(client())
        .map(|(b, c)| c.cpu_s - b.cpu_s);
    if let Some(run_s) = client_run {
        let busy = run_s * 1e11 / run_ns.max(1) as f64;
        r.section("client")
            .put("cpu_run", Time((run_s * 1e9).round() as u64))
            .put("core_busy_percent", Num(busy, 0));
    }
    if let (Some(a), Some(b)) = (machine_before, machine_cpu()) {
        let stolen = ((b.steal_s - a.steal_s) * 1e9).round() as u64;
        // Whatever ran besides this client and the server: other processes
        // (a build, a browser) and the kernel's work for them. Clock ticks,
        // so within some tens of milliseconds.
        let others = b.busy_s - a.busy_s - server_run_s.unwrap_or(0.0) - client_run.unwrap_or(0.0);
        let others = others.max(0.0);
        r.section("machine")
            .put("steal", Time(stolen))
            .put("others_cpu", Time((others * 1e9).round() as u64))
            .put(
                "others_percent",
                Num(others * 1e11 / run_ns.max(1) as f64, 0),
            );
    }
    Ok((r, failed))
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sseloop-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let json = opts.json;
    match run(opts) {
        Ok((report, failed)) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::from(u8::from(failed))
        }
        Err(e) => {
            eprintln!("sseloop-bench: {e}");
            ExitCode::from(1)
        }
    }
}
