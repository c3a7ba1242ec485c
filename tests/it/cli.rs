//! The command line: bad values exit with status 2 and one line naming the
//! option; good values in every documented form start the server.

use crate::support::{TestServer, run_cli};

/// Runs with `--listen 127.0.0.1:0` (so a wrongly started server binds no
/// fixed port) plus `args`, and checks the bad-value contract.
fn assert_rejected(args: &[&str], option: &str) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let output = run_cli(&all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} exited with {:?}; stderr: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(
        lines[0].contains(option),
        "{args:?}: message does not name {option}: {stderr:?}"
    );
}

#[test]
fn bad_durations_are_rejected() {
    assert_rejected(&["--heartbeat", "abc"], "--heartbeat");
    assert_rejected(&["--heartbeat", "-1s"], "--heartbeat");
    assert_rejected(&["--heartbeat", "10xs"], "--heartbeat");
    assert_rejected(&["--retry", "soon"], "--retry");
    assert_rejected(&["--header-timeout", "ms"], "--header-timeout");
    assert_rejected(&["--busy-poll", "2s"], "--busy-poll");
}

#[test]
fn bad_sizes_are_rejected() {
    assert_rejected(&["--queue-limit", "12XB"], "--queue-limit");
    assert_rejected(&["--queue-limit", "lots"], "--queue-limit");
    assert_rejected(&["--max-event-size", "-5"], "--max-event-size");
    assert_rejected(&["--max-event-size", "1.5.KiB"], "--max-event-size");
}

#[test]
fn bad_framing_log_level_and_listen_are_rejected() {
    assert_rejected(&["--framing", "foo"], "--framing");
    assert_rejected(&["--log-level", "loud"], "--log-level");
    assert_rejected(&["--listen", "not-an-address"], "--listen");
}

#[test]
fn unknown_option_is_rejected() {
    assert_rejected(&["--bogus"], "--bogus");
    assert_rejected(
        &["--heartbeat", "1s", "--no-such-thing", "3"],
        "--no-such-thing",
    );
}

#[test]
fn missing_value_is_rejected() {
    assert_rejected(&["--heartbeat"], "--heartbeat");
    assert_rejected(&["--queue-limit"], "--queue-limit");
}

#[test]
fn every_documented_form_is_accepted() {
    // Each form of DUR and SIZE and both framings; a server that starts has
    // parsed them all. (Log levels above info would hide the listening line.)
    let _server = TestServer::start(&[
        "--heartbeat",
        "1500ms",
        "--retry",
        "2",
        "--header-timeout",
        "1m",
        "--queue-limit",
        "2MiB",
        "--max-event-size",
        "1000",
        "--framing",
        "close",
        "--log-level",
        "info",
    ]);
    let _server = TestServer::start(&[
        "--heartbeat",
        "20s",
        "--queue-limit",
        "100KiB",
        "--max-event-size",
        "512B",
        "--framing",
        "chunked",
        "--log-level",
        "debug",
    ]);
}
