//! `contrib/systemd/sseloop.service`, checked with systemd's own tools,
//! which need no running systemd (Debian package `systemd`), and against the
//! real server: `systemd-analyze verify`, run on the unit's very text
//! installed under a scratch root as the README installs it, finds nothing
//! wrong with it (and does find the faults of broken copies),
//! `systemd-analyze security` rates
//! its exposure at most 2.0, its `LimitNOFILE=` serves the default
//! `--max-connections`, and the server, traced by `strace` under that limit
//! through subscribes, publishes, a replay, heartbeats, errors and a
//! SIGTERM, makes only the system calls its `SystemCallFilter=` lets
//! through, opens only the socket families `RestrictAddressFamilies=`
//! allows and never asks for memory both writable and executable
//! (`MemoryDenyWriteExecute=`), so the sandbox does not break it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::real::{TempDir, require_program};
use crate::support::{
    BodyEnd, HttpConn, Item, Next, Subscriber, assert_publish_ok, deadline, publish_request,
    wait_child,
};
use crate::support::{connect, wait_until};

/// Where the unit's `ExecStart=` expects the binary (the README's install).
const INSTALLED_BINARY: &str = "/usr/local/bin/sseloop";

/// The highest exposure `systemd-analyze security` may give the unit
/// (its scale: 0 safest to 10; "OK" up to 2.0).
const MAX_EXPOSURE: f64 = 2.0;

/// How long a traced server gets to start (strace slows it down) and to
/// shut down after SIGTERM (1 s of grace for queued bytes, then the exit).
const TRACED_TIMEOUT: Duration = Duration::from_secs(15);

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/sseloop.service")
}

fn unit_text() -> String {
    fs::read_to_string(unit_path()).unwrap_or_else(|e| panic!("read the unit: {e}"))
}

/// The values of every `key=` line of the unit, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim().to_string())
        .collect()
}

/// A scratch root laid out as the README's install leaves a system: the
/// unit, unchanged, in `etc/systemd/system`, the binary under test where
/// its `ExecStart=` expects it, and the host's own units (the targets it
/// refers to) in `usr/lib/systemd/system`. `systemd-analyze --root` then
/// reads the very text of `contrib/systemd/sseloop.service`.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new(what: &str) -> Root {
        let dir = TempDir::new(what);
        let exec = unit_values(&unit_text(), "ExecStart");
        assert!(
            exec.len() == 1 && exec[0].starts_with(&format!("{INSTALLED_BINARY} ")),
            "the unit should start {INSTALLED_BINARY} once: ExecStart={exec:?}"
        );
        let binary = dir.join(INSTALLED_BINARY.trim_start_matches('/'));
        fs::create_dir_all(binary.parent().unwrap()).unwrap();
        let built = env!("CARGO_BIN_EXE_sseloop");
        if fs::hard_link(built, &binary).is_err() {
            fs::copy(built, &binary).expect("copy the binary into the root");
        }
        let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
            .into_iter()
            .map(Path::new)
            .find(|dir| dir.is_dir())
            .expect("the host's systemd units (Debian package systemd)");
        copy_tree(units, &dir.join("usr/lib/systemd/system"));
        fs::create_dir_all(dir.join("etc/systemd/system")).unwrap();
        Root { dir }
    }

    /// `systemd-analyze ARGS… --root=ROOT sseloop.service` with `text` as
    /// the installed unit: whether it exited 0, and what it printed on
    /// stderr and stdout.
    fn analyze(&self, text: &str, args: &[&str]) -> (bool, String, String) {
        let program = require_program(&["systemd-analyze"], "systemd");
        fs::write(self.dir.join("etc/systemd/system/sseloop.service"), text)
            .expect("install the unit");
        let output = Command::new(program)
            .args(args)
            .arg(format!("--root={}", self.dir.path().display()))
            .arg("sseloop.service")
            // No pager, no colours: plain text to read.
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run systemd-analyze");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

/// Copies the directory `from` to `to`: files, and symbolic links as links.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&source, &target);
        } else {
            fs::copy(&source, &target).unwrap();
        }
    }
}

/// `verify` prints a fault in a unit as a line on stderr and exits 0 for
/// many of them (an unknown key, a bad value), so either counts.
#[test]
fn unit_passes_systemd_analyze_verify_and_its_faults_would_show() {
    let root = Root::new("unit-verify");
    let text = unit_text();
    let (ok, stderr, stdout) = root.analyze(&text, &["verify", "--man=no"]);
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify found faults in {}:\n{stderr}{stdout}",
        unit_path().display()
    );

    // The same check on copies broken on purpose must fail, or a pass above
    // says nothing.
    for (fault, from, to) in [
        ("a misspelt key", "\nNoNewPrivileges=", "\nNoNewPrivilege="),
        ("a bad value", "\nLimitNOFILE=", "\nLimitNOFILE=lots #"),
        (
            "a missing binary",
            &format!("\nExecStart={INSTALLED_BINARY} "),
            "\nExecStart=/nonexistent/sseloop ",
        ),
        ("a misspelt section", "\n[Service]", "\n[Servic]"),
    ] {
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "the unit has no {from:?} to break");
        let (ok, stderr, _) = root.analyze(&broken, &["verify", "--man=no"]);
        assert!(
            !ok || !stderr.trim().is_empty(),
            "systemd-analyze verify did not notice {fault} ({from:?} → {to:?})"
        );
    }
}

/// The offline security review (it reads the unit, not a running service)
/// rates the sandbox; the score is printed for the record.
#[test]
fn unit_security_exposure_is_low() {
    let root = Root::new("unit-security");
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0).round() as u32);
    let (ok, stderr, stdout) =
        root.analyze(&unit_text(), &["security", "--offline=yes", &threshold]);
    let exposure = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for sseloop.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}{stderr}"));
    eprintln!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        ok && exposure <= MAX_EXPOSURE,
        "exposure {exposure} (at most {MAX_EXPOSURE} wanted):\n{stdout}{stderr}"
    );
}

/// `LimitNOFILE=` sets the soft and the hard limit; the server raises its
/// soft limit only up to the hard one, and warns when that is short of what
/// the default `--max-connections` needs. One less must bring the warning,
/// so the value is exactly enough, not just big.
#[test]
fn unit_open_file_limit_serves_the_default_max_connections() {
    let limits = unit_values(&unit_text(), "LimitNOFILE");
    assert_eq!(limits.len(), 1, "LimitNOFILE={limits:?}");
    let limit: u64 = limits[0]
        .parse()
        .unwrap_or_else(|_| panic!("LimitNOFILE={} is not one number", limits[0]));

    let server = Daemon::start(&[], &[], limit);
    assert!(
        !server.log().contains("open-file limit"),
        "at LimitNOFILE={limit} the server warns:\n{}",
        server.log()
    );
    drop(server);

    let short = Daemon::start(&[], &[], limit - 1);
    assert!(
        short.log().contains("open-file limit"),
        "at {} the server should warn that the limit is short:\n{}",
        limit - 1,
        short.log()
    );
}

/// The sandbox must not break the server: every system call it makes in a
/// service's life passes the unit's `SystemCallFilter=`, its sockets are
/// of the families `RestrictAddressFamilies=` allows, and no mapping is
/// asked for writable and executable at once.
#[test]
fn server_stays_inside_the_units_sandbox() {
    let strace = require_program(&["strace"], "strace");
    let text = unit_text();
    let allowed = allowed_syscalls(&unit_values(&text, "SystemCallFilter"));
    let families: Vec<String> = unit_values(&text, "RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert!(
        !families.is_empty(),
        "no RestrictAddressFamilies= in the unit"
    );
    let limit: u64 = unit_values(&text, "LimitNOFILE")[0].parse().unwrap();

    let dir = TempDir::new("unit-strace");
    let trace = dir.join("trace");
    let prefix: Vec<OsString> = vec![
        strace.into(),
        "-f".into(),
        "-qq".into(),
        "-o".into(),
        trace.clone().into(),
        "--".into(),
    ];
    // A short heartbeat so the poll timeout's path runs too.
    let mut server = Daemon::start(&prefix, &["--heartbeat", "100ms"], limit);
    let addr = server.addr;

    let subscribe = |extra: &str| {
        let mut conn = HttpConn::new(connect(addr));
        conn.send(
            format!("GET /events?topic=svc HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes(),
        );
        let head = conn.read_head(deadline());
        assert_eq!(head.status, 200, "{head:?}");
        Subscriber::from_head(conn, head)
    };
    let mut live = subscribe("");
    live.expect_connected();
    let mut publisher = HttpConn::new(connect(addr));
    let mut ids = Vec::new();
    for n in 0..3 {
        publisher.send(&publish_request(
            "?topic=svc&event=step",
            n.to_string().as_bytes(),
        ));
        ids.push(assert_publish_ok(&publisher.read_response(deadline())));
    }
    for id in &ids {
        assert_eq!(live.next_event().id.as_deref(), Some(id.as_str()));
    }
    // A resume from history.
    let mut resumed = subscribe(&format!("Last-Event-ID: {}\r\n", ids[0]));
    resumed.expect_connected();
    assert_eq!(resumed.next_event().id.as_deref(), Some(ids[1].as_str()));
    // Heartbeats reach the idle stream.
    let mut idle = HttpConn::new(connect(addr));
    idle.send(b"GET /events?topic=quiet HTTP/1.1\r\nHost: localhost\r\n\r\n");
    idle.take_raw_until(b": heartbeat");
    // The other routes and an error.
    for (request, status) in [
        (
            &b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..],
            200,
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            200,
        ),
        (b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n", 404),
        (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400),
    ] {
        let mut conn = HttpConn::new(connect(addr));
        conn.send(request);
        let response = conn.read_response(deadline());
        assert_eq!(
            response.head.status,
            status,
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }

    // systemd's stop: SIGTERM to the service's main process (strace's child).
    let pid = server.traced_pid();
    // SAFETY: a plain syscall to a process this test started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGTERM) },
        0,
        "SIGTERM {pid}"
    );
    // The stream ends cleanly; heartbeats may come first, but each poll
    // waits for the next item, so the deadline bounds the loop.
    let end = deadline();
    loop {
        match live.poll(end) {
            Next::Item(Item::Comment(_)) => continue,
            Next::End(BodyEnd::Clean) => break,
            other => panic!("expected the stream's clean end after SIGTERM, got {other:?}"),
        }
    }
    let status = wait_child(&mut server.child, TRACED_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the traced server ended with {status:?}:\n{}",
        server.log()
    );

    let trace = fs::read_to_string(&trace).expect("read the trace");
    let calls = traced_calls(&trace);
    assert!(
        calls.iter().any(|(name, _)| name == "accept4")
            && calls.iter().any(|(name, _)| name == "exit_group"),
        "the trace misses the server's life:\n{}",
        &trace[..trace.len().min(4000)]
    );
    let outside: BTreeSet<&str> = calls
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !allowed.contains(*name))
        .collect();
    assert!(
        outside.is_empty(),
        "system calls outside SystemCallFilter= ({} allowed): {outside:?}",
        allowed.len()
    );
    for (name, args) in &calls {
        if name == "socket" || name == "socketpair" {
            let family = args.split(',').next().unwrap_or("").trim();
            assert!(
                families.iter().any(|f| f == family),
                "{name}({args}): {family} is not in RestrictAddressFamilies={families:?}"
            );
        }
        let exec = args.contains("PROT_EXEC");
        let wx = exec && args.contains("PROT_WRITE");
        assert!(
            !(wx && name == "mmap") && !(exec && (name == "mprotect" || name == "pkey_mprotect")),
            "MemoryDenyWriteExecute= would refuse {name}({args})"
        );
    }
}

/// The system calls `SystemCallFilter=` lines allow: the union of the allow
/// lists, less every `~` deny list, with `@groups` expanded by
/// `systemd-analyze syscall-filter` (groups hold groups).
fn allowed_syscalls(filters: &[String]) -> BTreeSet<String> {
    let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
    for filter in filters {
        let (set, names) = match filter.strip_prefix('~') {
            Some(rest) => (&mut deny, rest),
            None => (&mut allow, filter.as_str()),
        };
        for name in names.split_whitespace() {
            set.extend(expand(name));
        }
    }
    assert!(
        !allow.is_empty(),
        "no allow list in SystemCallFilter={filters:?}"
    );
    allow.difference(&deny).cloned().collect()
}

fn expand(name: &str) -> BTreeSet<String> {
    if !name.starts_with('@') {
        return BTreeSet::from([name.to_string()]);
    }
    let program = require_program(&["systemd-analyze"], "systemd");
    let output = Command::new(program)
        .args(["syscall-filter", name])
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect("run systemd-analyze syscall-filter");
    assert!(
        output.status.success(),
        "systemd-analyze syscall-filter {name}: {output:?}"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut names = BTreeSet::new();
    // The first line is the group's own name; then its members, indented,
    // and comments.
    for line in text.lines().skip(1) {
        let member = line.trim();
        if member.is_empty() || member.starts_with('#') {
            continue;
        }
        names.extend(expand(member));
    }
    assert!(!names.is_empty(), "systemd-analyze knows no group {name}");
    names
}

/// `(name, arguments)` of every call in an `strace -f -qq` trace, a
/// call split by a thread switch (`<unfinished ...>`) counted once.
fn traced_calls(trace: &str) -> Vec<(String, String)> {
    trace
        .lines()
        .filter_map(|line| {
            let (_pid, call) = line.split_once(' ')?;
            let call = call.trim_start();
            let open = call.find('(')?;
            let name = &call[..open];
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                // `<... read resumed>`, `--- SIGTERM ---`, `+++ exited +++`
                return None;
            }
            Some((name.to_string(), call[open + 1..].to_string()))
        })
        .collect()
}

/// The server as a service runs it: `[prefix…] sseloop --listen
/// 127.0.0.1:0 ARGS…` with soft and hard `RLIMIT_NOFILE` both at `limit`
/// (what `LimitNOFILE=` does), in a process group of its own that is
/// killed when this is dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
}

impl Daemon {
    fn start(prefix: &[OsString], args: &[&str], limit: u64) -> Daemon {
        let binary = env!("CARGO_BIN_EXE_sseloop");
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: runs in the forked child before exec and calls only
        // setrlimit and prctl, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let both = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &both) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start sseloop");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (text, grown) = &*sink;
                let mut text = text.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
                grown.notify_all();
            }
        });
        let listening = wait_until(&log.0, &log.1, TRACED_TIMEOUT, |text| {
            let rest = text.split_once("listening on http://")?.1;
            rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
        })
        .map_err(|text| text.clone());
        match listening {
            Ok(addr) => Daemon { child, addr, log },
            Err(text) => {
                let mut daemon = Daemon {
                    child,
                    addr: "127.0.0.1:0".parse().unwrap(),
                    log,
                };
                daemon.kill();
                panic!("sseloop did not start within {TRACED_TIMEOUT:?}:\n{text}")
            }
        }
    }

    fn log(&self) -> String {
        self.log
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The process strace started, the server itself: it printed its
    /// listening line, so it is there.
    fn traced_pid(&self) -> i32 {
        let id = self.child.id();
        let children = fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
            .unwrap_or_else(|e| panic!("the children of strace {id}: {e}"));
        let pid = children.split_whitespace().next();
        pid.and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("strace {id} has no child: {children:?}"))
    }

    fn kill(&mut self) {
        let pgid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: a negative pid names the process group this test started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("---- sseloop stderr ----\n{}", self.log());
        }
    }
}
