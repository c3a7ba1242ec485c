//! Shared machinery of the real-client tests (browsers, nginx, library
//! clients): finding the programs, the opt-out, process groups that are
//! always ended, fresh temp dirs that are always removed, the delivery bound
//! and its rounds, and small helpers.
//!
//! These tests must never pass without running: a missing program fails the
//! test with what to install. `SSELOOP_SKIP_REAL_CLIENTS=1 ./test.sh` leaves
//! them out with cargo's `--skip`, so they are counted as filtered out, never
//! as passed.

pub mod browser;
pub mod collector;
pub mod dialect;
pub mod drivers;
pub mod forwarder;
pub mod loopback;
pub mod redis;
pub mod scenario;
pub mod sentinel;

pub use loopback::LoopbackServer;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{proc_stat, wait_child};

/// The opt-out test.sh reads (CI never sets it).
pub const SKIP_VAR: &str = "SSELOOP_SKIP_REAL_CLIENTS";

/// The one command that installs every program these tests drive.
pub const INSTALL_HINT: &str = "run ./test.sh (it installs what is missing), or \
     `apt-get update && apt-get install -y --no-install-recommends chromium firefox-esr nginx` \
     and `npm ci` in tests/clients";

/// The path of the first of `names` found on `PATH` (or in the sbin
/// directories, where Debian puts nginx); fails the test with what to
/// install when none is there.
pub fn require_program(names: &[&str], package: &str) -> PathBuf {
    find_program(names).unwrap_or_else(|| {
        panic!(
            "{} not found: install the Debian package `{package}` ({INSTALL_HINT}); \
             or run `{SKIP_VAR}=1 ./test.sh` to leave the real-client tests out",
            names.join(" or ")
        )
    })
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// The package dir of the Node clients, `tests/clients`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The installed version of an npm package under `tests/clients`; fails
/// the test with what to run when it is not installed.
pub fn npm_package_version(name: &str) -> String {
    let manifest = clients_dir()
        .join("node_modules")
        .join(name)
        .join("package.json");
    let text = fs::read_to_string(&manifest).unwrap_or_else(|_| {
        panic!(
            "the npm package `{name}` is not installed in tests/clients: run `npm ci` there \
             ({INSTALL_HINT}); or run `{SKIP_VAR}=1 ./test.sh` to leave the real-client tests out"
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", manifest.display()));
    json["version"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no version string", manifest.display()))
        .to_string()
}

// ---------------------------------------------------------------------------
// The delivery bound

/// Publish to delivery, per event: what users of progress bars need.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

/// Timed rounds a delivery test may take: a late event fails the round, and
/// only a late event in every round fails the test. One stall of a busy
/// 2-core machine (the rest of the suite runs alongside) can hold a client
/// past `MAX_DELAY` once; a real delay (a buffer, Nagle's algorithm against
/// delayed ACKs, a proxy's buffering) is there in every round.
pub const ROUNDS: usize = 3;

/// Runs `round` until one returns `Ok`, at most `ROUNDS` times; panics
/// with every round's `Err` (which late event) when none did.
pub fn in_rounds(who: &str, mut round: impl FnMut() -> Result<(), String>) {
    let mut late = Vec::new();
    for n in 1..=ROUNDS {
        match round() {
            Ok(()) => return,
            Err(why) => {
                eprintln!("{who}: round {n} of {ROUNDS} had a late event: {why}");
                late.push(format!("round {n}: {why}"));
            }
        }
    }
    panic!(
        "{who}: a late event in every one of {ROUNDS} rounds:\n{}",
        late.join("\n")
    );
}

/// The index of the first delay (in ms) at or over `MAX_DELAY`.
pub fn first_late(delays_ms: &[f64]) -> Option<usize> {
    let limit = ms(MAX_DELAY);
    delays_ms.iter().position(|delay| *delay >= limit)
}

/// `min … median … max … ms` of delays in ms.
pub fn summary(delays_ms: &[f64]) -> String {
    let mut sorted = delays_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return "no delays".to_string();
    }
    format!(
        "min {:.1} median {:.1} max {:.1} ms",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Milliseconds since the Unix epoch, the clock a browser's `Date.now()`
/// reads, so delays can be computed across the two processes.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

/// Only one browser runs at a time: two browsers starting on a 2-core
/// machine would measure each other rather than sseloop.
pub fn browser_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decodes `application/x-www-form-urlencoded` (what `URLSearchParams`
/// sends) into its pairs, in order.
pub fn form_decode(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("report is not UTF-8: {e}"))
}

// ---------------------------------------------------------------------------
// Temp dirs

/// A fresh directory under the system temp dir, removed with everything in
/// it when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "sseloop-{what}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------
// Process groups

/// A program started in a process group of its own (`setsid`-like
/// `process_group(0)`), so that it and every process it forks (browser
/// renderers, nginx workers) can be ended together. Dropping it kills the
/// whole group and waits for it, also when the test panicked.
pub struct ProcGroup {
    name: String,
    child: Child,
    pgid: i32,
    log: PathBuf,
}

impl ProcGroup {
    /// Starts `command` in its own process group with stdout and stderr
    /// going to `log` (a file the caller keeps, e.g. in its temp dir).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> ProcGroup {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If the test binary itself dies, the program's main process gets
        // SIGKILL rather than living on (the rest of its group notices).
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", command.get_program()));
        let pgid = i32::try_from(child.id()).expect("pid fits i32");
        ProcGroup {
            name: name.to_string(),
            child,
            pgid,
            log: log.to_path_buf(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The main process's id.
    // Used by the TLS tests only, which need the feature `tls`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the main process only (not the group): SIGSTOP
    /// freezes a server while a child it forked for a sync goes on.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a process this program started and has not
        // reaped (dropping the group reaps it).
        let rc = unsafe { libc::kill(self.pgid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) of {}: {}",
            self.pgid,
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Whether the main process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the main process to exit; `None` if it
    /// still runs then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// The last `max` bytes of what the program printed.
    pub fn log_tail(&self, max: u64) -> String {
        tail(&self.log, max)
    }

    /// Kills the whole group, and any descendant that left it (Chromium's
    /// crash handler starts a session of its own), and waits until none of
    /// them is left (bounded; a survivor is reported, not waited for).
    fn kill_group(&mut self) {
        let root = self.pgid;
        let mut family = descendants(root);
        // SAFETY: plain syscalls; a negative pid names our own process
        // group, the others are processes this program started.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
            for &pid in &family {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = processes();
            family.retain(|pid| procs.iter().any(|p| p.pid == *pid && p.live));
            let mut alive: Vec<i32> = procs
                .iter()
                .filter(|p| p.live && p.pgrp == self.pgid)
                .map(|p| p.pid)
                .collect();
            alive.extend(&family);
            if alive.is_empty() {
                return;
            }
            if Instant::now() >= end {
                eprintln!(
                    "{}: processes {alive:?} of group {} still alive after SIGKILL",
                    self.name, self.pgid
                );
                return;
            }
            // A killed grandchild has no waitable handle here; /proc is all
            // there is to watch, so poll it briefly.
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProcGroup {
    fn drop(&mut self) {
        self.kill_group();
        if thread::panicking() {
            eprintln!(
                "---- {} output (tail) ----\n{}",
                self.name,
                self.log_tail(6000)
            );
        }
    }
}

/// One process as /proc shows it.
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    /// Neither a zombie nor dead.
    live: bool,
}

fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut procs = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // From the state on: state ppid pgrp ...
        let Some(fields) = proc_stat(pid as u32) else {
            continue;
        };
        let [state, ppid, pgrp, ..] = &fields[..] else {
            continue;
        };
        let (Ok(ppid), Ok(pgrp)) = (ppid.parse(), pgrp.parse()) else {
            continue;
        };
        procs.push(Proc {
            pid,
            ppid,
            pgrp,
            live: state != "Z" && state != "X",
        });
    }
    procs
}

/// Every live descendant of `root`, whatever its process group.
fn descendants(root: i32) -> Vec<i32> {
    let procs = processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|p| p.ppid == parent && p.live)
                .map(|p| p.pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The last `max` bytes of a file, lossily decoded.
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no {})", path.display());
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A command for `program` with a clean, fresh home under `home`, so no
/// state of the machine's user leaks in or out.
pub fn command_in(program: impl AsRef<OsStr>, home: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY");
    command
}

#[test]
fn form_decode_handles_escapes() {
    assert_eq!(
        form_decode("a=1&b=x+y%0A%F0%9F%9A%80&c=&d"),
        [("a", "1"), ("b", "x y\n\u{1F680}"), ("c", ""), ("d", "")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[test]
#[should_panic(expected = "install the Debian package `no-such-package`")]
fn a_missing_client_fails_the_test_with_what_to_install() {
    require_program(&["sseloop-no-such-client"], "no-such-package");
}
