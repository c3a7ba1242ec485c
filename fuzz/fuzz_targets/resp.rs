//! The cluster bus's RESP2 decoder on arbitrary bytes, fed in arbitrary
//! pieces, as Redis's replies arrive in reads of any size.
//!
//! Checked, beyond "nothing panics":
//! - the scanner finds the same value, at the same length, however the
//!   bytes are split, and never a length past the input or the limits;
//! - a value it finds parses, and written back out as RESP2 it is the
//!   bytes it came from (for the canonical forms Redis writes: numbers
//!   without leading zeros or plus signs, `$-1` for no value);
//! - values encoded from a structure come back as that structure.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sseloop::_internals::resp::{Limits, Scanner, Value, command, parse};

const LIMITS: Limits = Limits {
    bulk: 4096,
    array: 64,
    depth: 6,
    value: 16 << 10,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    bytes: &'a [u8],
    splits: Vec<u8>,
    args: Vec<&'a [u8]>,
}

fuzz_target!(|input: Input<'_>| {
    decoding(input.bytes, &input.splits);
    commands(&input.args);
});

/// The first value of `bytes`, fed in pieces whose sizes come from `splits`.
fn scan(bytes: &[u8], splits: &[u8]) -> Result<Option<usize>, String> {
    let mut scanner = Scanner::new(LIMITS);
    let mut fed = 0;
    let mut sizes = splits.iter().map(|&s| usize::from(s) + 1).chain(std::iter::repeat(bytes.len().max(1)));
    loop {
        fed = (fed + sizes.next().unwrap()).min(bytes.len());
        match scanner.scan(&bytes[..fed]) {
            Ok(Some(n)) => return Ok(Some(n)),
            Ok(None) if fed == bytes.len() => return Ok(None),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn decoding(bytes: &[u8], splits: &[u8]) {
    let whole = scan(bytes, &[]);
    let pieces = scan(bytes, splits);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "splits change the value found"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?}, in pieces {pieces:?}"),
    }
    let Ok(Some(n)) = whole else {
        return;
    };
    assert!(n <= bytes.len() && n <= LIMITS.value);
    let value = parse(&bytes[..n]).expect("a scanned value parses");
    let mut out = Vec::new();
    encode(&value, &mut out);
    if canonical(&bytes[..n]) {
        assert_eq!(out, &bytes[..n], "{value:?} written back differs");
    }
    let mut scanner = Scanner::new(LIMITS);
    assert_eq!(scanner.scan(&out), Ok(Some(out.len())));
    assert_eq!(parse(&out).as_ref(), Ok(&value));
}

/// Whether every header and integer line is written the one way `encode`
/// writes it.
fn canonical(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let Some(end) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = &bytes[at..at + end];
        at += end + 2;
        match line.first() {
            Some(b':' | b'$' | b'*') => {
                let digits = &line[1..];
                let ok = digits
                    .strip_prefix(b"-")
                    .unwrap_or(digits)
                    .first()
                    .is_some_and(|&d| d != b'0' || digits.len() == 1 || digits == b"-0");
                if !ok || digits == b"-0" || line == b"*-1" {
                    return false;
                }
                if line[0] == b'$'
                    && let Ok(n) = std::str::from_utf8(digits).unwrap_or("").parse::<usize>()
                {
                    at += n + 2; // the string, which may hold anything
                }
            }
            _ => {}
        }
    }
    true
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, kind: u8, text: &[u8]| {
        out.push(kind);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    };
    match value {
        Value::Simple(s) => line(out, b'+', s),
        Value::Error(s) => line(out, b'-', s),
        Value::Integer(n) => line(out, b':', n.to_string().as_bytes()),
        Value::Bulk(b) => {
            line(out, b'$', b.len().to_string().as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Value::Array(items) => {
            line(out, b'*', items.len().to_string().as_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Nil => line(out, b'$', b"-1"),
    }
}

fn commands(args: &[&[u8]]) {
    let mut out = Vec::new();
    command(&mut out, args);
    let fits = args.len() <= LIMITS.array
        && args.iter().all(|a| a.len() <= LIMITS.bulk)
        && out.len() <= LIMITS.value;
    let mut scanner = Scanner::new(LIMITS);
    if !fits {
        return;
    }
    assert_eq!(scanner.scan(&out), Ok(Some(out.len())));
    let want = Value::Array(args.iter().map(|a| Value::Bulk(a.to_vec())).collect());
    assert_eq!(parse(&out), Ok(want));
}
