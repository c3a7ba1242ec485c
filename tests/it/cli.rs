//! The command line: bad values exit with status 2 and one line naming the
//! option; good values in every documented form start the server.

use crate::support::{TestServer, assert_cli_rejected};

#[test]
fn bad_durations_are_rejected() {
    assert_cli_rejected(&["--heartbeat", "abc"], &["--heartbeat"]);
    assert_cli_rejected(&["--heartbeat", "-1s"], &["--heartbeat"]);
    assert_cli_rejected(&["--heartbeat", "10xs"], &["--heartbeat"]);
    assert_cli_rejected(&["--retry", "soon"], &["--retry"]);
    assert_cli_rejected(&["--header-timeout", "ms"], &["--header-timeout"]);
    assert_cli_rejected(&["--busy-poll", "2s"], &["--busy-poll"]);
}

/// A bare number is seconds, so `--retry 1500` (milliseconds meant) would
/// make browsers wait 25 minutes: the binary refuses it with exit 2 and one
/// line saying what the value means and the `ms` form.
#[test]
fn retry_in_seconds_by_mistake_is_refused_with_the_ms_form() {
    assert_cli_rejected(
        &["--retry", "1500"],
        &["--retry 1500 is 1500 seconds (25 min)", "--retry 1500ms"],
    );
    assert_cli_rejected(&["--retry", "11m"], &["--retry 11m", "10 min"]);
    // The limit itself and the ms form start.
    let _server = TestServer::start(&["--retry", "10m"]);
    let _server = TestServer::start(&["--retry", "1500ms"]);
}

#[test]
fn bad_sizes_are_rejected() {
    assert_cli_rejected(&["--queue-limit", "12XB"], &["--queue-limit"]);
    assert_cli_rejected(&["--queue-limit", "lots"], &["--queue-limit"]);
    assert_cli_rejected(&["--max-event-size", "-5"], &["--max-event-size"]);
    assert_cli_rejected(&["--max-event-size", "1.5.KiB"], &["--max-event-size"]);
}

#[test]
fn bad_framing_log_level_and_listen_are_rejected() {
    assert_cli_rejected(&["--framing", "foo"], &["--framing"]);
    assert_cli_rejected(&["--log-level", "loud"], &["--log-level"]);
    assert_cli_rejected(&["--listen", "not-an-address"], &["--listen"]);
}

#[test]
fn unknown_option_is_rejected() {
    assert_cli_rejected(&["--bogus"], &["--bogus"]);
    assert_cli_rejected(
        &["--heartbeat", "1s", "--no-such-thing", "3"],
        &["--no-such-thing"],
    );
}

#[test]
fn missing_value_is_rejected() {
    assert_cli_rejected(&["--heartbeat"], &["--heartbeat"]);
    assert_cli_rejected(&["--queue-limit"], &["--queue-limit"]);
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
