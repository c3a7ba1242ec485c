//! The proxy lesson through a real nginx with its default configuration (a
//! bare `proxy_pass`, so `proxy_buffering on`) beside the lab's own relay,
//! as two viewers of one run: the lab's application answers nginx without
//! its relay (`relay=0`), and the other viewer directly through the relay.
//! Both see the same bytes published at the same moments, so each event
//! must reach both at about the same time: held until 4 KiB pile up with
//! the cause (the application forgot `X-Accel-Buffering: no`), passed at
//! once with the fix. This is what makes the relay a faithful copy of
//! nginx's default buffering and not a guess.

use std::thread;
use std::time::Duration;

use super::{Seen, median, read_run, request, run_name};
use crate::nginx::Nginx;
use crate::support::{Subscriber, TestServer, deadline};

/// How far apart the two paths may deliver one event. nginx may hold one
/// for a delayed ACK (40 ms) on its side to the client, whose socket keeps
/// Nagle's algorithm until nginx turns `TCP_NODELAY` on (seen once, with
/// the fix: 56 ms).
const SAME_TIME: Duration = Duration::from_millis(100);
/// Events released in one block arrive together; two blocks are at least
/// an event's interval (50 ms) apart.
const TOGETHER: Duration = Duration::from_millis(20);

#[test]
fn nginx_and_the_labs_relay_release_each_event_at_the_same_moment() {
    let server = TestServer::start(&["--lab"]);
    let nginx = Nginx::start(&format!(
        "        location / {{\n            proxy_pass http://{};\n        }}",
        server.addr()
    ));
    for fix in [false, true] {
        let run = run_name("nginx");
        // Small events, some 24 to a block: where the first block ends
        // (nginx counts the upstream's head into it) decides which event
        // completes each block.
        let query = |relay: u8| {
            format!(
                "run={run}&lesson=proxy&fix={}&relay={relay}&viewers=2&rate=20&size=100&count=100",
                u8::from(fix)
            )
        };
        let through = nginx.get(&format!("/lab/stream?{}", query(0)));
        let direct = request(server.addr(), &query(1), None);
        let read = |mut conn: crate::support::HttpConn| {
            thread::spawn(move || {
                // With the cause nginx holds the head too, up to the
                // first 4 KiB.
                let head = conn.read_head(deadline());
                assert_eq!(head.status, 200, "{head:?}");
                read_run(Subscriber::from_head(conn, head)).1
            })
        };
        let (through, direct) = (read(through), read(direct));
        let (through, direct): (Vec<Seen>, Vec<Seen>) =
            (through.join().unwrap(), direct.join().unwrap());
        let numbers = |seen: &[Seen]| seen.iter().map(|s| s.n).collect::<Vec<_>>();
        assert_eq!(
            numbers(&through),
            (1..=100).collect::<Vec<_>>(),
            "through nginx"
        );
        assert_eq!(numbers(&direct), numbers(&through), "through the relay");
        let delays = |seen: &[Seen]| seen.iter().map(|s| s.delay_ms).collect::<Vec<_>>();
        let table: Vec<String> = through
            .iter()
            .zip(&direct)
            .map(|(a, b)| {
                format!(
                    "{}: nginx {:.1} ms, relay {:.1} ms",
                    a.n, a.delay_ms, b.delay_ms
                )
            })
            .collect();
        let context = format!("fix {fix}:\n{}", table.join("\n"));
        eprintln!("{context}");
        for (a, b) in through.iter().zip(&direct) {
            let apart = if a.at > b.at {
                a.at - b.at
            } else {
                b.at - a.at
            };
            assert!(
                apart <= SAME_TIME,
                "event {} {apart:?} apart; {context}",
                a.n
            );
        }
        if fix {
            assert!(median(delays(&through)) <= 30.0, "{context}");
        } else {
            // The same events released together, block by block.
            assert_eq!(blocks(&through), blocks(&direct), "{context}");
            assert!(blocks(&through).len() >= 4, "{context}");
            assert!(median(delays(&through)) >= 100.0, "{context}");
        }
    }
}

/// The last event of each group that arrived together.
fn blocks(seen: &[Seen]) -> Vec<u64> {
    let mut ends = Vec::new();
    for pair in seen.windows(2) {
        if pair[1].at - pair[0].at > TOGETHER {
            ends.push(pair[0].n);
        }
    }
    ends.extend(seen.last().map(|s| s.n));
    ends
}
