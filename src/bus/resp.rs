//! RESP2, the Redis protocol, without I/O: commands are encoded into a
//! caller's buffer, and replies are decoded from the bytes read so far.
//! Pure: no sockets, no clock.
//!
//! Decoding is in two steps so that a large reply arriving in many reads
//! is looked at once, not once per read: a resumable [`Scanner`] finds
//! where the next whole value ends, keeping its place between calls (it
//! re-reads at most one header line), then [`parse`] builds that value in
//! one pass. The scanner enforces [`Limits`] before anything is buffered
//! past them: a bulk string, an array, the nesting and the whole value
//! each have a bound, so a broken or hostile peer costs bounded memory and
//! gets a [`DecodeError`].

use std::fmt;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a simple string.
    Simple(Vec<u8>),
    /// `-ERR …`: an error reply.
    Error(Vec<u8>),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`: a bulk string.
    Bulk(Vec<u8>),
    /// `*2\r\n…`: an array.
    Array(Vec<Value>),
    /// `$-1` or `*-1`: no value.
    Nil,
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array, taken.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The text of an error reply.
    pub fn error(&self) -> Option<&[u8]> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Bounds on what one reply may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string.
    pub bulk: usize,
    /// Most elements of one array.
    pub array: usize,
    /// Deepest nesting of arrays.
    pub depth: usize,
    /// Most bytes of one whole value on the wire.
    pub value: usize,
}

/// Longest header or simple line (`+…`, `-…`, `:…`, `$n`, `*n`).
pub const MAX_LINE: usize = 64 << 10;

/// Why input is not RESP2 within the limits. The connection it came from
/// cannot be read on: its replies can no longer be told apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte that starts no RESP2 value.
    UnknownType(u8),
    /// A length or integer that is not a number, or a missing CRLF.
    Malformed,
    /// Past one of the [`Limits`] (or [`MAX_LINE`]).
    TooLarge,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            DecodeError::Malformed => f.write_str("malformed RESP"),
            DecodeError::TooLarge => f.write_str("RESP value over the limits"),
        }
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Finds where the next whole value in a buffer ends, keeping its place
/// between calls while the buffer grows (the start must stay the same
/// until a value is found; then [`Scanner::reset`] for the next).
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    /// Bytes of the buffer known to hold whole elements of the value.
    scanned: usize,
    /// For each open array, the elements still to come.
    open: Vec<usize>,
}

impl Scanner {
    /// A scanner enforcing `limits`.
    pub fn new(limits: Limits) -> Scanner {
        Scanner {
            limits,
            scanned: 0,
            open: Vec::new(),
        }
    }

    /// Forgets the value being scanned: the next call starts a new one.
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.open.clear();
    }

    /// The length of the whole value at the start of `buf`, or `None`
    /// while more bytes are needed.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        loop {
            let at = self.scanned;
            let Some((line, next)) = line(buf, at)? else {
                return Ok(None);
            };
            let Some(&kind) = line.first() else {
                return Err(DecodeError::Malformed);
            };
            let rest = &line[1..];
            let end = match kind {
                b'+' | b'-' => next,
                b':' => {
                    integer(rest)?;
                    next
                }
                b'$' => match length(rest)? {
                    None => next,
                    Some(n) if n > self.limits.bulk => return Err(DecodeError::TooLarge),
                    Some(n) => {
                        let end = next + n + 2;
                        if end > self.limits.value {
                            return Err(DecodeError::TooLarge);
                        }
                        if buf.len() < end {
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(DecodeError::Malformed);
                        }
                        end
                    }
                },
                b'*' => match length(rest)? {
                    None | Some(0) => next,
                    Some(n) if n > self.limits.array => return Err(DecodeError::TooLarge),
                    Some(_) if self.open.len() >= self.limits.depth => {
                        return Err(DecodeError::TooLarge);
                    }
                    Some(n) => {
                        self.open.push(n);
                        self.scanned = next;
                        continue;
                    }
                },
                other => return Err(DecodeError::UnknownType(other)),
            };
            if end > self.limits.value {
                return Err(DecodeError::TooLarge);
            }
            self.scanned = end;
            // One element done: close every array it completes.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(end)),
                    Some(left) if *left > 1 => {
                        *left -= 1;
                        break;
                    }
                    Some(_) => {
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// The line starting at `at` (without its CRLF) and where the next begins.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let rest = &buf[at.min(buf.len())..];
    // Looked for within the longest a line may be, not the whole buffer.
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(n) if n > MAX_LINE => Err(DecodeError::TooLarge),
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() > MAX_LINE => Err(DecodeError::TooLarge),
        None => Ok(None),
    }
}

fn integer(text: &[u8]) -> Result<i64, DecodeError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::Malformed);
    }
    let magnitude = digits
        .iter()
        .try_fold(0i64, |n, &d| {
            n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
        .ok_or(DecodeError::Malformed)?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// A `$` or `*` length: `None` for -1 (no value).
fn length(text: &[u8]) -> Result<Option<usize>, DecodeError> {
    match integer(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(DecodeError::Malformed),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| DecodeError::TooLarge),
    }
}

/// Builds the value that `Scanner::scan` found to fill `buf` exactly.
pub fn parse(buf: &[u8]) -> Result<Value, DecodeError> {
    let (value, end) = parse_at(buf, 0)?;
    if end != buf.len() {
        return Err(DecodeError::Malformed);
    }
    Ok(value)
}

fn parse_at(buf: &[u8], at: usize) -> Result<(Value, usize), DecodeError> {
    let (line, next) = line(buf, at)?.ok_or(DecodeError::Malformed)?;
    let (&kind, rest) = line.split_first().ok_or(DecodeError::Malformed)?;
    match kind {
        b'+' => Ok((Value::Simple(rest.to_vec()), next)),
        b'-' => Ok((Value::Error(rest.to_vec()), next)),
        b':' => Ok((Value::Integer(integer(rest)?), next)),
        b'$' => match length(rest)? {
            None => Ok((Value::Nil, next)),
            Some(n) => {
                let body = buf.get(next..next + n).ok_or(DecodeError::Malformed)?;
                Ok((Value::Bulk(body.to_vec()), next + n + 2))
            }
        },
        b'*' => match length(rest)? {
            None => Ok((Value::Nil, next)),
            Some(n) => {
                // The scanner bounded `n` and the depth before this runs.
                let mut items = Vec::with_capacity(n);
                let mut at = next;
                for _ in 0..n {
                    let (item, end) = parse_at(buf, at)?;
                    items.push(item);
                    at = end;
                }
                Ok((Value::Array(items), at))
            }
        },
        other => Err(DecodeError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        bulk: 1 << 20,
        array: 1 << 16,
        depth: 8,
        value: 4 << 20,
    };

    /// Scans and parses the first value of `input`, fed in pieces of `step`
    /// bytes: the value and its length.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<Option<(Value, usize)>, DecodeError> {
        let mut scanner = Scanner::new(LIMITS);
        let mut fed = 0;
        loop {
            fed = (fed + step).min(input.len());
            if let Some(n) = scanner.scan(&input[..fed])? {
                return Ok(Some((parse(&input[..n])?, n)));
            }
            if fed == input.len() {
                return Ok(None);
            }
        }
    }

    fn decode(input: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        decode_in_steps(input, input.len().max(1))
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

    #[test]
    fn replies_redis_sends() {
        let cases: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (
                b"-ERR unknown command\r\n",
                Value::Error(b"ERR unknown command".to_vec()),
            ),
            (b":-42\r\n", Value::Integer(-42)),
            (b"$5\r\n0-1\r\n\r\n", Value::Bulk(b"0-1\r\n".to_vec())),
            (b"$0\r\n\r\n", Value::Bulk(Vec::new())),
            (b"$-1\r\n", Value::Nil),
            (b"*-1\r\n", Value::Nil),
            (b"*0\r\n", Value::Array(Vec::new())),
            (
                // An XREAD reply: [[stream, [[id, [field, value]]]]].
                b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n0-7\r\n*2\r\n$4\r\ndata\r\n$2\r\nhi\r\n",
                Value::Array(vec![Value::Array(vec![
                    Value::Bulk(b"s".to_vec()),
                    Value::Array(vec![Value::Array(vec![
                        Value::Bulk(b"0-7".to_vec()),
                        Value::Array(vec![
                            Value::Bulk(b"data".to_vec()),
                            Value::Bulk(b"hi".to_vec()),
                        ]),
                    ])]),
                ])]),
            ),
            (
                b"*3\r\n:1\r\n*-1\r\n$-1\r\n",
                Value::Array(vec![Value::Integer(1), Value::Nil, Value::Nil]),
            ),
        ];
        for (wire, want) in cases {
            for step in 1..=wire.len() {
                assert_eq!(
                    decode_in_steps(wire, step),
                    Ok(Some((want.clone(), wire.len()))),
                    "{:?} in steps of {step}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    #[test]
    fn a_value_ends_where_the_next_begins() {
        let wire = b"+OK\r\n:1\r\n";
        assert_eq!(decode(wire), Ok(Some((Value::Simple(b"OK".to_vec()), 5))));
        assert_eq!(decode(&wire[5..]), Ok(Some((Value::Integer(1), 4))));
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        for wire in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$5\r\nab",
            b"$5\r\nabcde\r",
            b"*2\r\n:1\r\n",
            b"*1\r\n*1\r\n",
        ] {
            assert_eq!(
                decode(wire),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for (wire, want) in [
            (&b"?x\r\n"[..], DecodeError::UnknownType(b'?')),
            (b"\r\n", DecodeError::Malformed),
            (b":12a\r\n", DecodeError::Malformed),
            (b":\r\n", DecodeError::Malformed),
            (b":-\r\n", DecodeError::Malformed),
            (b":99999999999999999999\r\n", DecodeError::Malformed),
            (b"$-2\r\n", DecodeError::Malformed),
            (b"$3\r\nabcde", DecodeError::Malformed),
            (b"*1\r\n!\r\n", DecodeError::UnknownType(b'!')),
        ] {
            assert_eq!(
                decode(wire),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_anything_is_buffered() {
        let limits = Limits {
            bulk: 10,
            array: 3,
            depth: 2,
            value: 50,
        };
        let too_large = |wire: &[u8]| Scanner::new(limits).scan(wire);
        // Refused on the header alone, before the body arrived.
        assert_eq!(too_large(b"$11\r\n"), Err(DecodeError::TooLarge));
        assert_eq!(too_large(b"*4\r\n"), Err(DecodeError::TooLarge));
        assert_eq!(too_large(b"*1\r\n*1\r\n*1\r\n"), Err(DecodeError::TooLarge));
        // The third string would end past 50 bytes: refused on its header.
        assert_eq!(
            too_large(b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n"),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(too_large(b"*2\r\n$10\r\n0123456789\r\n$10\r\n"), Ok(None));
        // A line with no end, past the longest a line may be.
        let long = vec![b'+'; MAX_LINE + 2];
        assert_eq!(too_large(&long), Err(DecodeError::TooLarge));
        // Within the limits.
        assert_eq!(too_large(b"*1\r\n*1\r\n:1\r\n"), Ok(Some(12)));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"XADD", b"k", b"0-*", b"data", b"a\r\nb"]);
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$3\r\n0-*\r\n$4\r\ndata\r\n$4\r\na\r\nb\r\n"
        );
        let args: Vec<Value> = [&b"XADD"[..], b"k", b"0-*", b"data", b"a\r\nb"]
            .iter()
            .map(|a| Value::Bulk(a.to_vec()))
            .collect();
        assert_eq!(decode(&out), Ok(Some((Value::Array(args), out.len()))));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[^\r\n]{0,20}".prop_map(|s| Value::Simple(s.into_bytes())),
            "[^\r\n]{0,20}".prop_map(|s| Value::Error(s.into_bytes())),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bulk),
            Just(Value::Nil),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            proptest::collection::vec(inner, 0..8).prop_map(Value::Array)
        })
    }

    proptest! {
        /// Whatever the pieces the bytes arrive in, every value comes back
        /// whole, and a stream of values splits where they meet.
        #[test]
        fn values_round_trip_in_any_pieces(values in proptest::collection::vec(value(), 1..4), step in 1usize..64) {
            let mut wire = Vec::new();
            for v in &values {
                encode(v, &mut wire);
            }
            let mut at = 0;
            for v in &values {
                let (got, n) = decode_in_steps(&wire[at..], step).unwrap().expect("whole");
                prop_assert_eq!(&got, v);
                at += n;
            }
            prop_assert_eq!(at, wire.len());
        }

        /// Any bytes: an error, a request for more, or a value no longer
        /// than the input; never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), step in 1usize..32) {
            if let Ok(Some((_, n))) = decode_in_steps(&bytes, step) {
                prop_assert!(n <= bytes.len());
            }
        }
    }
}
