//! TLS to Redis (`rediss://`, the cargo feature `tls`): real nodes on a
//! real Redis (Debian's `redis-server`, built with TLS) that takes TLS on a
//! port of its own, its certificate signed by a CA the test makes with the
//! `openssl` program in a temp dir. Run by `./test.sh` as
//! `cargo test --features tls --test it tls::`.

use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{events_through, node_on};
use crate::real::redis::{Persistence, Redis};
use crate::real::sentinel::{SERVICE, SentinelWith};
use crate::real::{ProcGroup, TempDir, require_program, tail};
use crate::support::{IO_TIMEOUT, proc_stat};

/// A CA, a server certificate it signed for the IP address 127.0.0.1
/// (`server.pem`) and one for the name `redis.test` (`named.pem`), and
/// another CA that signed nothing (`other.pem`): PEM files in a temp dir.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        let openssl = require_program(&["openssl"], "openssl");
        let dir = TempDir::new("tls");
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for (name, subject) in [("ca", "/CN=sseloop test CA"), ("other", "/CN=another CA")] {
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem]);
            run(&args);
        }
        let mut request = vec!["req", "-subj", "/CN=redis", "-keyout", "server.key"];
        request.extend(ec);
        request.extend(["-out", "server.csr"]);
        run(&request);
        // The one the tests connect with, and one for a name they do not.
        for (pem, names) in [
            ("server.pem", "IP:127.0.0.1"),
            ("named.pem", "DNS:redis.test"),
        ] {
            let san = format!("{pem}.cnf");
            std::fs::write(dir.join(&san), format!("subjectAltName={names}\n")).unwrap();
            run(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &san,
                "-out",
                pem,
            ]);
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A Redis that also takes TLS, on the port returned, with the
    /// certificate for 127.0.0.1.
    fn redis(&self) -> (Redis, u16) {
        self.redis_with("server.pem")
    }

    /// A Redis that also takes TLS, with the certificate `pem`.
    fn redis_with(&self, pem: &str) -> (Redis, u16) {
        let (settings, port) = self.settings(pem);
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        (Redis::start_with(Persistence::None, &settings), port)
    }

    /// A Sentinel watching the primary at TLS port `primary` over TLS, and
    /// taking TLS itself on the port returned.
    fn sentinel(&self, primary: u16) -> (SentinelWith, u16) {
        let (mut settings, port) = self.settings("server.pem");
        // Sentinel speaks TLS to the servers it watches.
        settings.push("tls-replication yes".into());
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let primary = SocketAddr::from(([127, 0, 0, 1], primary));
        (SentinelWith::start(primary, &settings), port)
    }

    /// The config lines of a server taking TLS on a free port with the
    /// certificate `pem` (clients need none), and that port.
    fn settings(&self, pem: &str) -> (Vec<String>, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let settings = vec![
            format!("tls-port {port}"),
            format!("tls-cert-file {}", self.path(pem)),
            format!("tls-key-file {}", self.path("server.key")),
            format!("tls-ca-cert-file {}", self.path("ca.pem")),
            "tls-auth-clients no".to_string(),
        ];
        (settings, port)
    }
}

/// Two nodes on one Redis over TLS, each checking its certificate against
/// the CA of `--redis-ca` and the IP address in the URL: an event published
/// on one reaches a subscriber of the other.
#[test]
fn two_nodes_share_an_event_over_tls() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = certs.path("ca.pem");
    let a = node_on(&url, &["--redis-ca", &ca]);
    let b = node_on(&url, &["--redis-ca", &ca, "--loops", "2"]);
    let mut sub = b.subscribe_ready("?topic=t");
    let id = a.publisher().publish_ok("?topic=t", b"over TLS");
    let seen = events_through(&mut sub, &id);
    assert_eq!(seen, [(id.clone(), "over TLS".to_string())]);
    // Stored in Redis, which the nodes reach only through its TLS port.
    assert_eq!(redis.stream_seqs(crate::cluster::STREAM), [1]);
}

/// `rediss+sentinel://`: TLS to the Sentinel, and to the primary it
/// names (checked against the address it gives): an event published on
/// the node reaches its subscriber through that primary.
#[test]
fn a_node_finds_the_primary_through_a_sentinel_over_tls() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    let (_sentinel, sentinel_port) = certs.sentinel(port);
    let url = format!("rediss+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}");
    let node = node_on(&url, &["--redis-ca", &certs.path("ca.pem")]);
    let mut sub = node.subscribe_ready("?topic=t");
    let id = node.publisher().publish_ok("?topic=t", b"via Sentinel");
    let seen = events_through(&mut sub, &id);
    assert_eq!(seen, [(id.clone(), "via Sentinel".to_string())]);
    assert_eq!(redis.stream_seqs(crate::cluster::STREAM), [1]);
}

/// A node on `port` of `redis` over TLS with `args` besides, left to be
/// refused until Redis has logged `attempts` refused handshakes (each
/// ends with the node's alert); its log then, its CPU time in
/// milliseconds, and how long that took.
fn refused(redis: &Redis, port: u16, args: &[&str], attempts: usize) -> (String, u64, Duration) {
    let dir = TempDir::new("tls-node");
    let log = dir.join("node.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sseloop"));
    let url = format!("rediss://127.0.0.1:{port}");
    command.args(["--listen", "127.0.0.1:0", "--redis", &url]);
    command.args(args);
    let started = Instant::now();
    let node = ProcGroup::spawn("sseloop", command, &log);
    let end = Instant::now() + IO_TIMEOUT;
    let refusals = || {
        redis
            .log()
            .matches("Error accepting a client connection")
            .count()
    };
    while refusals() < attempts {
        assert!(
            Instant::now() < end,
            "Redis saw {} refused handshakes, not {attempts}; node log:\n{}",
            refusals(),
            tail(&log, 4000)
        );
        // A log file offers nothing to block on: look again soon.
        thread::sleep(Duration::from_millis(20));
    }
    let waited = started.elapsed();
    let fields = proc_stat(node.pid()).expect("the node runs on");
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("listening on"),
        "served without Redis:\n{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    (text, ticks * 1000 / per_second, waited)
}

/// Asserts that `log` tells `why` once for each of the node's two
/// connections (loop 0's publishing one and the reader), however many
/// times they tried.
fn told_once_per_connection(log: &str, why: &str) {
    let told = log.lines().filter(|line| line.contains(why)).count();
    assert_eq!(told, 2, "{why:?} told once per connection:\n{log}");
}

/// A node that trusts another CA refuses the server's certificate: it
/// says so once for each connection, and tries again with its backoff,
/// not in a tight loop: its CPU time stays small while Redis counts the
/// attempts.
#[test]
fn a_certificate_from_another_ca_is_refused_without_spinning() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    const ATTEMPTS: usize = 14;
    let (log, cpu_ms, waited) = refused(
        &redis,
        port,
        &["--redis-ca", &certs.path("other.pem")],
        ATTEMPTS,
    );
    told_once_per_connection(&log, "TLS: invalid peer certificate: UnknownIssuer");
    assert!(redis.log().contains("unknown ca"), "{}", redis.log());
    // 7 attempts on each connection are 6 backoffs, 2.5 s of wall time
    // (50 ms doubling to 1 s, give or take a quarter)...
    assert!(
        waited >= Duration::from_secs(1),
        "{ATTEMPTS} attempts in {waited:?}: no backoff"
    );
    // ...which a loop spinning meanwhile would burn most of; waiting, the
    // handshakes use milliseconds.
    assert!(
        cpu_ms < 300,
        "the node used {cpu_ms} ms of CPU while refused"
    );
}

/// A certificate the CA signed for another name than the URL's host is
/// refused too.
#[test]
fn a_certificate_for_another_name_is_refused() {
    let certs = Certs::new();
    let (redis, port) = certs.redis_with("named.pem");
    let (log, _, _) = refused(&redis, port, &["--redis-ca", &certs.path("ca.pem")], 2);
    told_once_per_connection(&log, "certificate not valid for name \"127.0.0.1\"");
}

/// Without `--redis-ca` the public CAs are trusted, and the test's CA is
/// none of them: refused, as browsers would.
#[test]
fn the_public_cas_do_not_trust_a_private_one() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    let (log, _, _) = refused(&redis, port, &[], 2);
    told_once_per_connection(&log, "TLS: invalid peer certificate: UnknownIssuer");
}

/// A CA file that holds no certificate stops the node at start, saying
/// which file.
#[test]
fn a_ca_file_without_certificates_is_refused_at_start() {
    let certs = Certs::new();
    let key = certs.path("ca.key");
    let out = Command::new(env!("CARGO_BIN_EXE_sseloop"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "rediss://127.0.0.1:1",
            "--redis-ca",
            &key,
        ])
        .output()
        .expect("run sseloop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&key) && stderr.contains("no CERTIFICATE"),
        "{stderr}"
    );
}
