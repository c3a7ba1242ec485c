//! Arbitrary bytes, in arbitrary splits, through the connection's request
//! handling (`read_in_pieces`), with and without a publish
//! token.
//!
//! Input layout (so that the fuzzer's byte mutations of an HTTP request stay
//! meaningful):
//!
//! ```text
//! byte 0        flags: bit 0 publish token set; bit 1 small limits;
//!               bits 2..=5 how many split sizes follow (0..=15); bit 6 a
//!               non-loopback address with `--allow-host fuzz.example`
//!               (else loopback); bit 7 `--allow-origin http://fuzz.example`
//! next k bytes  split sizes: b < 0xC0 is b + 1 bytes, else (b - 0xBF) * 512
//! the rest      what the client sends; after the sizes, it comes in one piece
//! ```
//!
//! Checked: nothing panics (read_in_pieces itself panics when the bytes it
//! keeps between reads break their bound); every request body is within the
//! body limit, and a Content-Length body is exactly that long; nothing comes
//! after a rejection; the requests read do not depend on how the input was
//! split (compared with the input delivered whole); every refusal has one
//! of the statuses a request can get, and its error answer is a
//! well-formed response whose body is its fixed reason.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sseloop::_internals::http::{BodyLength, Policy, error_response};
use sseloop::_internals::request::{Step, read_in_pieces};

fn policy(flags: u8) -> Policy {
    let publish_token = (flags & 1 != 0).then(|| "fuzz-token".to_string());
    let (max_head_size, max_headers, max_body) = if flags & 2 != 0 {
        (256, 8, 64)
    } else {
        (8192, 64, 65536)
    };
    let network = flags & 0x40 != 0;
    Policy {
        max_head_size,
        max_headers,
        max_body,
        publish_token,
        loopback_hosts: !network,
        allow_hosts: if network {
            vec!["fuzz.example".to_string()]
        } else {
            Vec::new()
        },
        allow_origin: (flags & 0x80 != 0).then(|| "http://fuzz.example".to_string()),
        access: None,
    }
}

/// Every status a request can be refused with.
const REFUSALS: &[u16] = &[400, 401, 403, 404, 405, 413, 421, 431, 501];

fn piece_size(b: u8) -> usize {
    if b < 0xC0 {
        usize::from(b) + 1
    } else {
        usize::from(b - 0xBF) * 512
    }
}

/// What a run read: the whole requests, and whether it ended in a refusal.
fn outcome(steps: &[Step]) -> (Vec<&Step>, bool) {
    let requests = steps
        .iter()
        .filter(|s| matches!(s, Step::Request(..)))
        .collect();
    let rejected = matches!(steps.last(), Some(Step::Reject(_)));
    (requests, rejected)
}

fn check(steps: &[Step], policy: &Policy) {
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Request(head, body) => {
                assert!(
                    body.len() <= policy.max_body,
                    "body of {} bytes over the limit {}",
                    body.len(),
                    policy.max_body
                );
                if let (Ok(_), BodyLength::Length(n)) = (&head.route, head.body) {
                    assert_eq!(body.len(), n, "Content-Length body of the wrong size");
                }
                if head.body == BodyLength::Empty || head.route.is_err() {
                    assert!(body.is_empty(), "a body where none is read");
                }
                if let Err(reject) = &head.route {
                    assert!(REFUSALS.contains(&reject.status.0), "{reject:?}");
                }
            }
            Step::Reject(reject) => {
                assert_eq!(i + 1, steps.len(), "steps after a rejection");
                assert!(REFUSALS.contains(&reject.status.0), "{reject:?}");
                let answer = error_response(reject, None);
                let text = std::str::from_utf8(&answer).expect("error answers are UTF-8");
                let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
                let length = format!("\r\nContent-Length: {}\r\n", body.len());
                assert!(head.contains(&length), "Content-Length matches: {text:?}");
                assert_eq!(body, format!("{}\n", reject.reason));
            }
            Step::Continue | Step::NeedMore => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from((flags >> 2) & 0x0f).min(rest.len());
    let (sizes, input) = rest.split_at(count);
    let pieces: Vec<usize> = sizes.iter().copied().map(piece_size).collect();
    let policy = policy(flags);

    let split = read_in_pieces(input, &pieces, &policy);
    check(&split, &policy);
    let whole = read_in_pieces(input, &[], &policy);
    check(&whole, &policy);

    let (split_requests, split_rejected) = outcome(&split);
    let (whole_requests, whole_rejected) = outcome(&whole);
    assert_eq!(
        split_requests, whole_requests,
        "requests depend on the split {pieces:?}"
    );
    assert_eq!(
        split_rejected, whole_rejected,
        "refusal depends on the split {pieces:?}"
    );
});
