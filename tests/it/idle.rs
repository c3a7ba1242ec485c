//! An idle server sleeps: with no connection it has no deadline, so its
//! poll waits forever and its threads make no context switch at all. With a
//! subscriber, heartbeat deadlines wake it, which shows the probe can see
//! wake-ups.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::TestServer;

/// Context switches (voluntary and not) of every thread of process `pid`.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().unwrap();
            }
        }
    }
    total
}

/// Switches made during `window`, measured after the server settled.
fn switches_during(server: &TestServer, window: Duration) -> u64 {
    let before = context_switches(server.pid());
    let end = Instant::now() + window;
    while Instant::now() < end {
        std::thread::sleep(end - Instant::now());
    }
    context_switches(server.pid()) - before
}

#[test]
fn idle_server_never_wakes_up() {
    // A short heartbeat: if an idle server woke for it, it would show.
    let server = TestServer::start(&["--heartbeat", "50ms"]);
    // A request answered and closed first, so the loop has run and gone idle.
    let (response, _) = server.request(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(response.head.status, 200);
    // Wait until a 100 ms window passes without a switch (start-up done).
    let settled = (0..50).any(|_| switches_during(&server, Duration::from_millis(100)) == 0);
    assert!(settled, "server never settled");
    let idle = switches_during(&server, Duration::from_secs(1));
    assert_eq!(idle, 0, "an idle server woke up {idle} times in 1 s");
}

#[test]
fn a_subscriber_with_heartbeats_does_wake_it() {
    let server = TestServer::start(&["--heartbeat", "50ms"]);
    let mut sub = server.subscribe("");
    sub.expect_connected();
    let busy = switches_during(&server, Duration::from_secs(1));
    // About 20 heartbeats in a second; at least a few wake-ups must show.
    assert!(
        busy >= 5,
        "only {busy} context switches with a heartbeating subscriber"
    );
}
