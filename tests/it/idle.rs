//! An idle server sleeps: with no connection it has no deadline, so its
//! poll waits forever and its threads make no context switch at all. With a
//! subscriber, heartbeat deadlines wake it, which shows the probe can see
//! wake-ups.

use std::fs;
use std::time::Duration;

use crate::support::{TestServer, proc_stat};

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

/// How much `counter` of the server's process grows over `window` (the
/// sleep is the window being observed).
fn growth_during(server: &TestServer, window: Duration, counter: fn(u32) -> u64) -> u64 {
    let before = counter(server.pid());
    std::thread::sleep(window);
    counter(server.pid()) - before
}

/// Switches made during `window`, measured after the server settled.
fn switches_during(server: &TestServer, window: Duration) -> u64 {
    growth_during(server, window, context_switches)
}

#[test]
fn idle_server_never_wakes_up() {
    // A short heartbeat: if an idle server woke for it, it would show.
    let server = TestServer::start(&["--heartbeat", "50ms"]);
    // A request answered and closed first, so the loop has run and gone idle.
    let (response, _) =
        server.request(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
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
    let _sub = server.subscribe_ready("");
    let busy = switches_during(&server, Duration::from_secs(1));
    // About 20 heartbeats in a second; at least a few wake-ups must show.
    assert!(
        busy >= 5,
        "only {busy} context switches with a heartbeating subscriber"
    );
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let fields = proc_stat(pid).expect("server process");
    // From the state on, utime is the 12th field and stime the 13th.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Ticks of CPU used during `window`. (A spinning thread alone on a core
/// makes no context switch, so spinning shows only as CPU time.)
fn ticks_during(server: &TestServer, window: Duration) -> u64 {
    growth_during(server, window, cpu_ticks)
}

#[test]
fn busy_poll_spins_after_activity_then_sleeps_again() {
    let server = TestServer::start(&["--busy-poll", "500ms", "--heartbeat", "0"]);
    let before = cpu_ticks(server.pid());
    let (response, _) =
        server.request(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(response.head.status, 200);
    // The window is open for 500 ms of wall time; a spinning loop uses CPU
    // for a good part of it even on a busy machine (a tick is 10 ms).
    let settled = (0..100).any(|_| ticks_during(&server, Duration::from_millis(200)) == 0);
    assert!(settled, "server never went back to sleep after the window");
    let spent = cpu_ticks(server.pid()) - before;
    assert!(
        spent >= 5,
        "only {spent} ticks of CPU: the window did not spin"
    );
    let idle = ticks_during(&server, Duration::from_secs(1));
    assert_eq!(
        idle, 0,
        "used {idle} ticks of CPU in 1 s after the window closed"
    );
}
