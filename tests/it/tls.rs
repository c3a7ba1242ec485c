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

/// A CA, a server certificate it signed (for the IP address 127.0.0.1),
/// and another CA that signed nothing: PEM files in a temp dir.
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
        std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
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
            "san.cnf",
            "-out",
            "server.pem",
        ]);
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A Redis that also takes TLS, on the port returned, with the
    /// certificate the CA signed.
    fn redis(&self) -> (Redis, u16) {
        let (settings, port) = self.settings();
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        (Redis::start_with(Persistence::None, &settings), port)
    }

    /// A Sentinel watching the primary at TLS port `primary` over TLS, and
    /// taking TLS itself on the port returned.
    fn sentinel(&self, primary: u16) -> (SentinelWith, u16) {
        let (mut settings, port) = self.settings();
        // Sentinel speaks TLS to the servers it watches.
        settings.push("tls-replication yes".into());
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let primary = SocketAddr::from(([127, 0, 0, 1], primary));
        (SentinelWith::start(primary, &settings), port)
    }

    /// The config lines of a server taking TLS on a free port (the
    /// certificate the CA signed; clients need none), and that port.
    fn settings(&self) -> (Vec<String>, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let settings = vec![
            format!("tls-port {port}"),
            format!("tls-cert-file {}", self.path("server.pem")),
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

/// A node that trusts another CA refuses the server's certificate: it
/// says so once for each connection, and tries again with its backoff
/// (Redis logs each attempt's alert), not in a tight loop: its CPU time
/// stays small while Redis counts the attempts.
#[test]
fn a_certificate_from_another_ca_is_refused_without_spinning() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    let dir = TempDir::new("tls-node");
    let log = dir.join("node.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sseloop"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &format!("rediss://127.0.0.1:{port}"),
        "--redis-ca",
        &certs.path("other.pem"),
    ]);
    let started = Instant::now();
    let node = ProcGroup::spawn("sseloop", command, &log);
    let pid = node.pid();
    // Each refused handshake ends with the node's alert, which Redis logs.
    const ATTEMPTS: usize = 14;
    let end = Instant::now() + IO_TIMEOUT;
    let refusals = || redis.log().matches("unknown ca").count();
    while refusals() < ATTEMPTS {
        assert!(
            Instant::now() < end,
            "Redis saw {} refused handshakes, not {ATTEMPTS}; node log:\n{}",
            refusals(),
            tail(&log, 4000)
        );
        // A log file offers nothing to block on: look again soon.
        thread::sleep(Duration::from_millis(20));
    }
    // 7 attempts on each connection are 6 backoffs, 2.5 s of wall time
    // (50 ms doubling to 1 s, give or take a quarter).
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "{ATTEMPTS} attempts in {waited:?}: no backoff"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let refused: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("TLS: invalid peer certificate: UnknownIssuer"))
        .collect();
    // loop 0's publishing connection and the node's reader: once each.
    assert_eq!(refused.len(), 2, "told once per connection:\n{text}");
    assert!(
        !text.contains("listening on"),
        "served without Redis:\n{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    let fields = proc_stat(pid).expect("the node runs on");
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    // A loop spinning meanwhile burns most of that time; waiting, the
    // handshakes use milliseconds.
    assert!(
        ticks * 1000 / per_second < 300,
        "the node used {ticks} ticks of CPU while refused"
    );
}

/// Without `--redis-ca` the public CAs are trusted, and the test's CA is
/// none of them: refused, as browsers would.
#[test]
fn the_public_cas_do_not_trust_a_private_one() {
    let certs = Certs::new();
    let (redis, port) = certs.redis();
    let dir = TempDir::new("tls-node");
    let log = dir.join("node.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sseloop"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &format!("rediss://127.0.0.1:{port}"),
    ]);
    let _node = ProcGroup::spawn("sseloop", command, &log);
    let end = Instant::now() + IO_TIMEOUT;
    while !redis.log().contains("unknown ca") {
        assert!(
            Instant::now() < end,
            "Redis saw no refused handshake; node log:\n{}",
            tail(&log, 4000)
        );
        thread::sleep(Duration::from_millis(20));
    }
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
