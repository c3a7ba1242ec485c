//! A real Redis (Debian's `redis-server`) for the cluster tests: started on
//! a free loopback port with its own dir in a temp dir (its data files,
//! its log), in a process group of its own that is killed when dropped,
//! also when the test fails; stopped and started again on the same port
//! and dir where a test needs it. `command` talks RESP to it for what the
//! tests do behind the nodes' backs (FLUSHALL, SAVE, XRANGE).
//!
//! `./test.sh` installs `redis-server` when it is missing; a test that
//! finds none fails, saying so.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
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
    starts: u32,
}

impl Redis {
    /// Starts a Redis on a free port.
    pub fn start(persistence: Persistence) -> Redis {
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
        let mut command = Command::new(program);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--logfile",
                "",
            ])
            .args(["--save", ""]);
        match self.persistence {
            Persistence::None | Persistence::Snapshot => {
                command.args(["--appendonly", "no"]);
            }
            Persistence::Aof => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
        }
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
            if let Ok(Reply::Simple(pong)) = self.try_command(&["PING"])
                && pong == "PONG"
            {
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

    /// Runs one command; panics when Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> Result<Reply, String> {
        let stream =
            TcpStream::connect_timeout(&self.addr(), IO_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        (&stream)
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        read_reply(&mut BufReader::new(&stream))
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

fn program() -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = PathBuf::from(dir).join("redis-server");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "redis-server not found: install the Debian package `redis-server` \
         (./test.sh installs it when missing)"
    );
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
