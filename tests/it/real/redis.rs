//! A real Redis (Debian's `redis-server`) for the cluster tests: started on
//! a free loopback port with its own dir in a temp dir (its config file,
//! its data files, its log), in a process group of its own that is killed
//! when dropped, also when the test fails; stopped and started again on
//! the same port and dir where a test needs it, frozen (SIGSTOP) and
//! thawed. `command` talks RESP to it for what the tests do behind the
//! nodes' backs (FLUSHALL, SAVE, XRANGE); `Client` keeps one connection
//! open (a subscription, a command sent many times a second).
//!
//! Each Redis runs from a config file of its own in its dir, writable:
//! Sentinel rewrites it (`CONFIG REWRITE`) when it reconfigures the server,
//! and a restart reads what Sentinel wrote, as a real deployment's would.
//!
//! `./test.sh` installs `redis-server` when it is missing; a test that
//! finds none fails, saying so.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{ProcGroup, TempDir, tail};
use crate::support::IO_TIMEOUT;

/// How long Redis gets to start answering.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What persistence a Redis runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// None at all: a restart starts empty.
    None,
    /// The append-only file, written and fsynced on every write: a restart
    /// (graceful or not) keeps everything.
    Aof,
    /// Snapshots only when a test says `SAVE`: a restart goes back to the
    /// last one.
    Snapshot,
}

/// One reply, as a test needs to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

pub struct Redis {
    // Field order: the process is killed before its dir is removed.
    group: Option<ProcGroup>,
    dir: TempDir,
    port: u16,
    persistence: Persistence,
    /// Config-file lines besides the ones every test Redis has.
    settings: Vec<String>,
    starts: u32,
}

impl Redis {
    /// Starts a Redis on a free port.
    pub fn start(persistence: Persistence) -> Redis {
        Redis::start_with(persistence, &[])
    }

    /// Starts a Redis on a free port with `settings`, lines of its config
    /// file (`replicaof 127.0.0.1 6379`, `timeout 1`).
    pub fn start_with(persistence: Persistence, settings: &[&str]) -> Redis {
        let program = program();
        let mut dir = TempDir::new("redis");
        let mut failures = String::new();
        // The port is chosen before Redis binds it: try again should
        // another process take it meanwhile.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut redis = Redis {
                group: None,
                dir,
                port,
                persistence,
                settings: settings.iter().map(|s| s.to_string()).collect(),
                starts: 0,
            };
            match redis.spawn(&program) {
                Ok(()) => return redis,
                Err(why) => {
                    failures.push_str(&format!("{why}\n"));
                    dir = redis.take_dir();
                }
            }
        }
        panic!("redis-server did not start:\n{failures}");
    }

    fn take_dir(self) -> TempDir {
        let Redis { group, dir, .. } = self;
        drop(group);
        dir
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether its process runs (it may be frozen): not stopped, not
    /// killed.
    pub fn is_running(&self) -> bool {
        self.group.is_some()
    }

    /// Sends `signal` to the server process: SIGSTOP freezes it (its
    /// sockets stay open, commands sent to it wait in them), SIGCONT
    /// thaws it.
    pub fn signal(&self, signal: i32) {
        self.group
            .as_ref()
            .expect("redis-server is not running")
            .signal(signal);
    }

    /// What it logged since it last started.
    // Used by the TLS tests only, which need the feature `tls`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("redis-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Its config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    /// What `ROLE` says first: `master` or `slave`.
    pub fn role(&self) -> String {
        match self.command(&["ROLE"]) {
            Reply::Array(items) => match items.first() {
                Some(Reply::Bulk(Some(role))) => role.clone(),
                other => panic!("ROLE begins with {other:?}"),
            },
            other => panic!("ROLE answered {other:?}"),
        }
    }

    /// One field of `INFO section` (`INFO replication`'s
    /// `connected_slaves`), if there.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let Reply::Bulk(Some(text)) = self.command(&["INFO", section]) else {
            panic!("INFO {section} is not a string");
        };
        info_field(&text, field)
    }

    /// Stops it: `SHUTDOWN` when `graceful` (it writes what it persists
    /// first), else SIGKILL. Waits for the process to be gone.
    pub fn stop(&mut self, graceful: bool) {
        let Some(mut group) = self.group.take() else {
            return;
        };
        if graceful {
            // SHUTDOWN answers nothing: the connection just closes.
            let _ = self.try_command(&["SHUTDOWN"]);
            assert!(
                group.wait_exit(IO_TIMEOUT).is_some(),
                "redis-server did not exit on SHUTDOWN"
            );
        }
        drop(group); // kills what is left and waits
    }

    /// Starts it again on the same port and dir (with the same data, as far
    /// as its persistence kept it).
    pub fn start_again(&mut self) {
        assert!(self.group.is_none(), "stop it first");
        let program = program();
        let end = Instant::now() + IO_TIMEOUT;
        loop {
            match self.spawn(&program) {
                Ok(()) => return,
                Err(why) if Instant::now() >= end => {
                    panic!("redis-server did not start again: {why}")
                }
                // The port may still be held a moment after the old
                // process went; the next attempt is a new process.
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn spawn(&mut self, program: &PathBuf) -> Result<(), String> {
        self.starts += 1;
        if self.starts == 1 {
            // Written once: a restart reads what Sentinel may have
            // rewritten since.
            write_config(&self.config_file(), &self.config())?;
        }
        let mut command = Command::new(program);
        command.arg(self.config_file());
        if self.persistence == Persistence::None {
            // Nothing read back at start, whatever a SAVE left.
            command.args(["--dbfilename", &format!("none-{}.rdb", self.starts)]);
        }
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let mut group = ProcGroup::spawn("redis-server", command, &log);
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = group.exited() {
                return Err(format!(
                    "redis-server exited ({status}): {}",
                    tail(&log, 2000)
                ));
            }
            // With `requirepass`, NOAUTH is the answer of a Redis up.
            let answered = match self.try_command(&["PING"]) {
                Ok(Reply::Simple(pong)) => pong == "PONG",
                Ok(Reply::Error(e)) => e.starts_with("NOAUTH"),
                _ => false,
            };
            if answered {
                self.group = Some(group);
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "redis-server did not answer PING in {READY_TIMEOUT:?}: {}",
                    tail(&log, 2000)
                ));
            }
            // A starting process offers nothing to block on: ask again.
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The config file's lines at the first start.
    fn config(&self) -> String {
        let mut lines = vec![
            format!("port {}", self.port),
            "bind 127.0.0.1".to_string(),
            format!("dir {}", self.dir.path().display()),
            "daemonize no".to_string(),
            "protected-mode no".to_string(),
            "logfile \"\"".to_string(),
            "save \"\"".to_string(),
        ];
        match self.persistence {
            Persistence::None | Persistence::Snapshot => lines.push("appendonly no".into()),
            Persistence::Aof => {
                lines.push("appendonly yes".into());
                lines.push("appendfsync always".into());
            }
        }
        lines.extend(self.settings.iter().cloned());
        lines.join("\n") + "\n"
    }

    /// Runs one command; panics when Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> Result<Reply, String> {
        command_at(self.addr(), args)
    }

    /// A connection of its own, kept open.
    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    /// Ends the connections named `name` (`CLIENT SETNAME`), as a broken
    /// network path between that client and Redis would; how many there
    /// were.
    pub fn kill_client(&self, name: &str) -> usize {
        let Reply::Bulk(Some(list)) = self.command(&["CLIENT", "LIST"]) else {
            panic!("CLIENT LIST is not a string");
        };
        let ids: Vec<String> = list
            .lines()
            .filter(|line| line.split(' ').any(|f| f == format!("name={name}")))
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_string)
            .collect();
        for id in &ids {
            assert_eq!(
                self.command(&["CLIENT", "KILL", "ID", id]),
                Reply::Integer(1),
                "CLIENT KILL ID {id}"
            );
        }
        ids.len()
    }

    /// The sequence numbers of the stream's entries, oldest first.
    pub fn stream_seqs(&self, key: &str) -> Vec<u64> {
        let Reply::Array(entries) = self.command(&["XRANGE", key, "-", "+"]) else {
            panic!("XRANGE {key} is not an array");
        };
        entries
            .iter()
            .map(|entry| match entry {
                Reply::Array(parts) => match &parts[0] {
                    Reply::Bulk(Some(id)) => id
                        .strip_prefix("0-")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("stream id {id:?}")),
                    other => panic!("stream id {other:?}"),
                },
                other => panic!("stream entry {other:?}"),
            })
            .collect()
    }
}

/// One connection to a Redis or a Sentinel, kept open: commands one at a
/// time, or a subscription's messages as they come.
pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects; panics when nothing answers at `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to redis at {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            addr,
            reader: BufReader::new(stream),
        }
    }

    /// Sends one command without reading its reply.
    pub fn send(&mut self, args: &[&str]) {
        self.reader
            .get_ref()
            .write_all(&encode(args))
            .unwrap_or_else(|e| panic!("redis at {}: send {args:?}: {e}", self.addr));
    }

    /// Runs one command; panics when the connection fails.
    pub fn command(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("redis at {}: {args:?}: {e}", self.addr))
    }

    /// The next reply (or pushed message) within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<Reply, String> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        read_reply(&mut self.reader)
    }
}

/// Runs one command on a connection of its own.
pub fn command_at(addr: SocketAddr, args: &[&str]) -> Result<Reply, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    (&stream)
        .write_all(&encode(args))
        .map_err(|e| e.to_string())?;
    read_reply(&mut BufReader::new(&stream))
}

/// A command as RESP: an array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    request.into_bytes()
}

/// The value of `field` in `INFO`'s `field:value` lines.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (name, value) = line.trim_end().split_once(':')?;
        (name == field).then(|| value.to_string())
    })
}

fn write_config(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The path of a Redis program (`redis-server`, `redis-sentinel`) from the
/// Debian package `package`; fails the test with what to install.
pub fn redis_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{name} not found: install the Debian package `{package}` \
         (./test.sh installs it when missing)"
    );
}

fn program() -> PathBuf {
    redis_program("redis-server", "redis-server")
}

fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("reply line {line:?}"))?;
    let (kind, rest) = line.split_at(1);
    let number = || rest.parse::<i64>().map_err(|_| format!("number {rest:?}"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(number()?),
        "$" => match number()? {
            -1 => Reply::Bulk(None),
            n => {
                let mut bytes = vec![0; n as usize + 2];
                std::io::Read::read_exact(reader, &mut bytes).map_err(|e| e.to_string())?;
                bytes.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
        },
        "*" => match number()? {
            -1 => Reply::Array(Vec::new()),
            n => (0..n)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()
                .map(Reply::Array)?,
        },
        _ => return Err(format!("reply {line:?}")),
    })
}
