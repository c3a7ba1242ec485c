//! Processes besides a running server: the binary run to its exit on a
//! command line (and the contract for refused values), waiting for a child
//! with a bound, and the fields of /proc/PID/stat.

use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::deadline;

/// Runs the binary with the given arguments, expecting it to exit on its
/// own; kills it after `IO_TIMEOUT` so a server that starts anyway fails the
/// test instead of hanging it.
pub fn run_cli(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sseloop");
    let end = deadline();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "sseloop {args:?} did not exit; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Polling a child process has no blocking-with-timeout form in std.
        thread::sleep(Duration::from_millis(10));
    }
}

/// The bad-value contract: `sseloop --listen 127.0.0.1:0 ARGS…` exits with
/// status 2 and one line naming each of `names`. (The leading listen keeps
/// a wrongly started server off fixed ports; a `--listen` in `args` wins.)
pub fn assert_cli_rejected(args: &[&str], names: &[&str]) {
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
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
    for name in names {
        assert!(
            lines[0].contains(name),
            "{args:?}: {name} not in {stderr:?}"
        );
    }
}

/// Waits up to `wait` for `child` to exit; `None` if it still runs then.
pub fn wait_child(child: &mut Child, wait: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        // Polling a child process has no blocking-with-timeout form in std.
        thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of /proc/PID/stat after "pid (comm)", from the state on
/// (the command name may hold spaces and parentheses, so the split is at
/// the last ')'); `None` when the process is gone.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
