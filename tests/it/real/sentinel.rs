//! Redis with failover, for the cluster tests: a primary, replicas and
//! three Sentinels (Debian's `redis-server` and `redis-sentinel`), each on
//! a free loopback port with its own dir and writable config file in a
//! temp dir, each in a process group of its own that is killed when
//! dropped, also when the test fails.
//!
//! The Sentinels monitor the primary as [`SERVICE`] with quorum 2,
//! `down-after-milliseconds 1000`, `failover-timeout 5000` and
//! `parallel-syncs 1`; every server has `repl-diskless-sync-delay 0` (Redis
//! 7 would delay each full sync by 5 s). [`RedisHa::start`] returns once
//! the replicas are in sync and every Sentinel knows the replicas and the
//! two other Sentinels and says `SENTINEL CKQUORUM` is fine: a primary lost
//! before that may never be replaced (the Sentinels take about 2 s to find
//! each other).
//!
//! What a test does to the primary: [`RedisHa::kill_primary`] (SIGKILL),
//! [`RedisHa::freeze_primary`] and [`RedisHa::thaw`] (SIGSTOP, SIGCONT);
//! [`RedisHa::watch`] subscribes to every Sentinel's `+switch-master`
//! before that, and [`Watch::wait`] awaits the Sentinels' answer (never a
//! sleep): when the first and when the last of them named the new primary.
//!
//! Facts measured with this set-up are in the notes on Redis Sentinel:
//! a SIGKILL is followed by `+switch-master` after about 2.2 s, a SIGSTOP
//! after about 3 s; a thawed old primary stays writable for about 10 s.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::redis::{Client, Persistence, Redis, Reply, command_at, redis_program};
use super::{ProcGroup, TempDir, tail};

/// The name the Sentinels monitor the primary under.
pub const SERVICE: &str = "mymaster";
/// How many Sentinels run; a failover needs 2 of them.
pub const SENTINELS: usize = 3;
/// How long the set-up may take to be ready: replicas in sync, Sentinels
/// that found each other (about 2 s when idle).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take: about 2.2 s after a SIGKILL, 3 s after
/// a SIGSTOP, when idle; a busy 2-core machine is slower.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A primary, its replicas and three Sentinels watching them.
pub struct RedisHa {
    // Field order: the Sentinels go first, so that none starts a failover
    // while the servers are being killed.
    sentinels: Vec<Sentinel>,
    /// The primary first, as started; a failover changes which is which.
    servers: Vec<Redis>,
}

/// When the Sentinels named a new primary, and which.
#[derive(Clone, Copy, Debug)]
pub struct Switch {
    pub from: SocketAddr,
    pub to: SocketAddr,
    /// The first Sentinel's `+switch-master`.
    pub first: Instant,
    /// The last one's.
    pub all: Instant,
}

impl RedisHa {
    /// A primary with `replicas` replicas and three Sentinels, ready for a
    /// failover.
    pub fn start(persistence: Persistence, replicas: usize) -> RedisHa {
        let common = ["repl-diskless-sync-delay 0"];
        let primary = Redis::start_with(persistence, &common);
        let replica_of = format!("replicaof 127.0.0.1 {}", primary.addr().port());
        let mut servers = vec![primary];
        for _ in 0..replicas {
            servers.push(Redis::start_with(
                persistence,
                &[common[0], replica_of.as_str()],
            ));
        }
        let end = Instant::now() + READY_TIMEOUT;
        for replica in &servers[1..] {
            await_condition(end, "a replica in sync", || {
                let link = replica.info_field("replication", "master_link_status");
                (link.as_deref() == Some("up")).then_some(())
            });
        }
        let sentinels = (0..SENTINELS)
            .map(|_| Sentinel::start(servers[0].addr()))
            .collect();
        let ha = RedisHa { sentinels, servers };
        ha.await_quorum(end, replicas);
        ha
    }

    /// Waits until every Sentinel knows `replicas` replicas, the other
    /// Sentinels, and that a failover can be authorised.
    fn await_quorum(&self, end: Instant, replicas: usize) {
        for sentinel in &self.sentinels {
            await_condition(end, "the Sentinels ready", || {
                let known = |what: &str| match sentinel.command(&["SENTINEL", what, SERVICE]) {
                    Reply::Array(items) => items.len(),
                    _ => 0,
                };
                let ok = matches!(
                    sentinel.command(&["SENTINEL", "CKQUORUM", SERVICE]),
                    Reply::Simple(text) if text.starts_with(&format!("OK {SENTINELS} usable"))
                );
                (ok && known("REPLICAS") == replicas && known("SENTINELS") == SENTINELS - 1)
                    .then_some(())
            });
        }
    }

    /// The Sentinels' URL, as `--redis` takes it:
    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| s.addr().to_string())
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// What Sentinel `index` names as the primary now
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn ask(&self, index: usize) -> SocketAddr {
        self.sentinels[index].primary()
    }

    /// The server the first Sentinel names as the primary.
    pub fn primary(&self) -> &Redis {
        self.server(self.ask(0))
    }

    /// The server at `addr`.
    pub fn server(&self, addr: SocketAddr) -> &Redis {
        self.servers
            .iter()
            .find(|s| s.addr() == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    fn server_mut(&mut self, addr: SocketAddr) -> &mut Redis {
        self.servers
            .iter_mut()
            .find(|s| s.addr() == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    /// Every server, primary and replicas, as started.
    pub fn servers(&self) -> &[Redis] {
        &self.servers
    }

    /// Subscribes to every Sentinel's `+switch-master`: call it before
    /// doing anything to the primary.
    pub fn watch(&self) -> Watch {
        let (tx, rx) = mpsc::channel();
        for sentinel in &self.sentinels {
            let mut client = Client::connect(sentinel.addr());
            client.send(&["SUBSCRIBE", "+switch-master"]);
            match client.read(Duration::from_secs(5)) {
                Ok(Reply::Array(items)) if items.first() == Some(&bulk("subscribe")) => {}
                other => panic!("SUBSCRIBE +switch-master answered {other:?}"),
            }
            let tx = tx.clone();
            // One thread each, so that each switch is timed as it comes.
            thread::spawn(move || {
                let end = Instant::now() + FAILOVER_TIMEOUT;
                loop {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    // Reply: ["message", "+switch-master", "NAME IP PORT IP PORT"].
                    // An error is the end of the wait, or of the Sentinel.
                    let Ok(reply) = client.read(left) else {
                        return;
                    };
                    let Reply::Array(items) = reply else {
                        continue;
                    };
                    if let [_, _, Reply::Bulk(Some(text))] = &items[..]
                        && let Some(addrs) = parse_switch(text)
                    {
                        let _ = tx.send((Instant::now(), addrs));
                        return;
                    }
                }
            });
        }
        Watch { answers: rx }
    }

    /// SIGKILL to the primary, with every process it forked; its address.
    pub fn kill_primary(&mut self) -> SocketAddr {
        let addr = self.ask(0);
        self.server_mut(addr).stop(false);
        addr
    }

    /// SIGSTOP to the primary: its sockets stay open, commands sent to it
    /// wait in them and run when it is thawed. Its address.
    pub fn freeze_primary(&self) -> SocketAddr {
        let addr = self.ask(0);
        self.server(addr).signal(libc::SIGSTOP);
        addr
    }

    /// SIGCONT to the server at `addr`.
    pub fn thaw(&self, addr: SocketAddr) {
        self.server(addr).signal(libc::SIGCONT);
    }
}

/// One Sentinel that needs `password`, watching `primary`, which needs
/// `primary_password`: its URL, `redis+sentinel://:PRIMARY@…/mymaster
/// ?sentinel_password=PASSWORD`, and its process (ended when dropped).
pub struct GuardedSentinel {
    sentinel: Sentinel,
}

impl GuardedSentinel {
    /// Starts it.
    pub fn start(primary: SocketAddr, primary_password: &str, password: &str) -> GuardedSentinel {
        let settings = [
            format!("sentinel auth-pass {SERVICE} {primary_password}"),
            format!("requirepass {password}"),
        ];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        GuardedSentinel {
            sentinel: Sentinel::start_with(primary, &settings),
        }
    }

    /// The URL `--redis` takes, with the passwords given.
    pub fn url(&self, primary_password: &str, password: &str) -> String {
        format!(
            "redis+sentinel://:{primary_password}@{}/{SERVICE}?sentinel_password={password}",
            self.sentinel.addr()
        )
    }
}

/// One Sentinel watching `primary`, with more lines of its config file
/// (the TLS tests' `tls-port` and certificates): its process, ended when
/// dropped.
// Used by the TLS tests only, which need the feature `tls`.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub struct SentinelWith {
    _sentinel: Sentinel,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl SentinelWith {
    /// Starts it (answering on its plain port too, asked there whether it
    /// is up).
    pub fn start(primary: SocketAddr, settings: &[&str]) -> SentinelWith {
        SentinelWith {
            _sentinel: Sentinel::start_with(primary, settings),
        }
    }
}

/// The `+switch-master` of every Sentinel, awaited.
pub struct Watch {
    answers: mpsc::Receiver<(Instant, (SocketAddr, SocketAddr))>,
}

impl Watch {
    /// Waits until every Sentinel has announced the same new primary, and
    /// until that primary says `ROLE` master; panics after `timeout`.
    pub fn wait(self, timeout: Duration) -> Switch {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while seen.len() < SENTINELS {
            let left = end.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) => seen.push(answer),
                Err(_) => panic!(
                    "{} of {SENTINELS} Sentinels announced a new primary within {timeout:?}: {seen:?}",
                    seen.len()
                ),
            }
        }
        let (first, (from, to)) = seen[0];
        for (_, addrs) in &seen {
            assert_eq!(*addrs, (from, to), "the Sentinels disagree: {seen:?}");
        }
        let all = seen.iter().map(|(at, _)| *at).max().unwrap_or(first);
        await_condition(
            end,
            "the new primary to say ROLE master",
            || match command_at(to, &["ROLE"]) {
                Ok(Reply::Array(items)) if items.first() == Some(&bulk("master")) => Some(()),
                _ => None,
            },
        );
        Switch {
            from,
            to,
            first,
            all,
        }
    }
}

/// One `redis-sentinel`.
struct Sentinel {
    // Field order: the process is killed before its dir is removed.
    group: ProcGroup,
    _dir: TempDir,
    port: u16,
}

impl Sentinel {
    /// Starts a Sentinel on a free port, monitoring `primary`.
    fn start(primary: SocketAddr) -> Sentinel {
        Sentinel::start_with(primary, &[])
    }

    /// `start`, with more lines of its config file (after the `monitor`).
    fn start_with(primary: SocketAddr, settings: &[&str]) -> Sentinel {
        let program = redis_program("redis-sentinel", "redis-sentinel");
        let mut failures = String::new();
        // The port is chosen before the Sentinel binds it: try again
        // should another process take it meanwhile.
        for _ in 0..3 {
            let dir = TempDir::new("sentinel");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let config = dir.join("sentinel.conf");
            let text = [
                format!("port {port}"),
                "bind 127.0.0.1".into(),
                format!("dir {}", dir.path().display()),
                "daemonize no".into(),
                "protected-mode no".into(),
                "logfile \"\"".into(),
                format!(
                    "sentinel monitor {SERVICE} {} {} 2",
                    primary.ip(),
                    primary.port()
                ),
                format!("sentinel down-after-milliseconds {SERVICE} 1000"),
                format!("sentinel failover-timeout {SERVICE} 5000"),
                format!("sentinel parallel-syncs {SERVICE} 1"),
            ]
            .into_iter()
            .chain(settings.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
            .join("\n");
            // Writable: the Sentinel rewrites it at start and on every
            // change it learns of.
            std::fs::write(&config, text + "\n").expect("write sentinel.conf");
            let mut command = std::process::Command::new(&program);
            command.arg(&config);
            let log = dir.join("sentinel.log");
            let mut group = ProcGroup::spawn("redis-sentinel", command, &log);
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = group.exited() {
                    failures.push_str(&format!(
                        "redis-sentinel exited ({status}): {}\n",
                        tail(&log, 2000)
                    ));
                    break;
                }
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                // With `requirepass`, NOAUTH is the answer of a Sentinel up.
                let answered = match command_at(addr, &["PING"]) {
                    Ok(Reply::Simple(pong)) => pong == "PONG",
                    Ok(Reply::Error(e)) => e.starts_with("NOAUTH"),
                    _ => false,
                };
                if answered {
                    return Sentinel {
                        group,
                        _dir: dir,
                        port,
                    };
                }
                if Instant::now() >= end {
                    failures.push_str(&format!(
                        "redis-sentinel did not answer PING: {}\n",
                        tail(&log, 2000)
                    ));
                    break;
                }
                // A starting process offers nothing to block on: ask again.
                thread::sleep(Duration::from_millis(20));
            }
            drop(group);
        }
        panic!("redis-sentinel did not start:\n{failures}");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn command(&self, args: &[&str]) -> Reply {
        command_at(self.addr(), args).unwrap_or_else(|e| {
            panic!(
                "sentinel {args:?}: {e}; its log:\n{}",
                self.group.log_tail(2000)
            )
        })
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    fn primary(&self) -> SocketAddr {
        match self.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]) {
            Reply::Array(items) => match &items[..] {
                [Reply::Bulk(Some(ip)), Reply::Bulk(Some(port))] => format!("{ip}:{port}")
                    .parse()
                    .unwrap_or_else(|_| panic!("a Sentinel named {ip}:{port}")),
                other => panic!("GET-MASTER-ADDR-BY-NAME answered {other:?}"),
            },
            other => panic!("GET-MASTER-ADDR-BY-NAME answered {other:?}"),
        }
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(text.to_string()))
}

/// `NAME OLD-IP OLD-PORT NEW-IP NEW-PORT` of a `+switch-master` message.
fn parse_switch(text: &str) -> Option<(SocketAddr, SocketAddr)> {
    let parts: Vec<&str> = text.split(' ').collect();
    let [name, old_ip, old_port, new_ip, new_port] = parts[..] else {
        return None;
    };
    if name != SERVICE {
        return None;
    }
    let old = format!("{old_ip}:{old_port}").parse().ok()?;
    let new = format!("{new_ip}:{new_port}").parse().ok()?;
    Some((old, new))
}

/// Asks `check` until it finds what it looks for; panics after `end`.
fn await_condition<T>(end: Instant, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < end, "waited in vain for {what}");
        // Servers' states have no change notification to block on.
        thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the primary with SIGKILL: every Sentinel names the same replica
/// within the bound, it says it is the master and takes writes, the other
/// replica follows it, and it holds what the old primary had replicated.
/// Pins down that the harness makes a real failover happen (and what it
/// takes on this machine, printed).
#[test]
fn a_killed_primary_is_replaced_by_a_replica() {
    let mut ha = RedisHa::start(Persistence::None, 2);
    let old = ha.primary().addr();
    assert_eq!(
        ha.primary().command(&["SET", "before", "1"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        ha.primary().command(&["WAIT", "2", "5000"]),
        Reply::Integer(2),
        "both replicas have it"
    );
    let watch = ha.watch();
    let killed_at = Instant::now();
    assert_eq!(ha.kill_primary(), old);
    let switch = watch.wait(FAILOVER_TIMEOUT);
    assert_eq!(switch.from, old);
    assert_ne!(switch.to, old);
    for index in 0..SENTINELS {
        assert_eq!(ha.ask(index), switch.to, "sentinel {index}");
    }
    let primary = ha.server(switch.to);
    assert_eq!(primary.role(), "master");
    assert_eq!(
        primary.command(&["GET", "before"]),
        Reply::Bulk(Some("1".into()))
    );
    assert_eq!(
        primary.command(&["SET", "after", "1"]),
        Reply::Simple("OK".into())
    );
    eprintln!(
        "SIGKILL: first Sentinel named {} after {:?}, all three after {:?}",
        switch.to,
        switch.first - killed_at,
        switch.all - killed_at
    );
    // The other replica follows the new primary.
    let other = ha
        .servers()
        .iter()
        .find(|s| s.is_running() && s.addr() != switch.to)
        .expect("the other replica");
    await_condition(
        Instant::now() + FAILOVER_TIMEOUT,
        "the other replica to follow",
        || {
            let port = other.info_field("replication", "master_port");
            let up = other.info_field("replication", "master_link_status");
            (port == Some(switch.to.port().to_string()) && up.as_deref() == Some("up"))
                .then_some(())
        },
    );
}

/// Freezes the primary (SIGSTOP) past the down-after time: the Sentinels
/// promote a replica. Thawed, the old primary still says it is the master
/// and takes a write (the Sentinels demote it only later): the reason a
/// node must trust the Sentinels and not a server because it answers.
#[test]
fn a_frozen_primary_is_replaced_and_answers_as_master_when_thawed() {
    let ha = RedisHa::start(Persistence::None, 1);
    let watch = ha.watch();
    let frozen_at = Instant::now();
    let old = ha.freeze_primary();
    let switch = watch.wait(FAILOVER_TIMEOUT);
    assert_eq!((switch.from, ha.ask(1)), (old, switch.to));
    eprintln!(
        "SIGSTOP: first Sentinel named {} after {:?}, all three after {:?}",
        switch.to,
        switch.first - frozen_at,
        switch.all - frozen_at
    );
    ha.thaw(old);
    let stale = ha.server(old);
    assert_eq!(stale.role(), "master", "right after SIGCONT");
    assert_eq!(
        stale.command(&["SET", "written-to-the-old-primary", "1"]),
        Reply::Simple("OK".into()),
        "the old primary takes writes for a while"
    );
    // Until a Sentinel tells it to follow the new primary.
    await_condition(
        Instant::now() + FAILOVER_TIMEOUT,
        "the old primary demoted",
        || {
            let synced = stale.info_field("replication", "master_link_status");
            (stale.role() == "slave" && synced.as_deref() == Some("up")).then_some(())
        },
    );
    assert_eq!(
        stale.command(&["GET", "written-to-the-old-primary"]),
        Reply::Bulk(None),
        "what it took meanwhile is gone"
    );
}
