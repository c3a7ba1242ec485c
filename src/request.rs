//! Turns a connection's input into requests: the head → body state machine
//! and the bytes kept between reads. Free of sockets, so it is unit-tested
//! and fuzzed with arbitrary splits of arbitrary input. As soon as a head is
//! here it asks `app` whether the request may publish, so that a refused
//! publish is answered without its body being read.

use crate::app;
use crate::http::{self, BodyLength, ChunkedDecoder, Head, HeadParse, Policy, Reject, Status};
use crate::mercure::matcher::Patterns;

/// What the next bytes of input made.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A whole request: its head and body.
    Request(Head, Vec<u8>),
    /// The head asked for `100 Continue` and its body has not started: send
    /// it, then call again.
    Continue,
    /// A request to refuse; the connection closes after the answer.
    Reject(Reject),
    /// Nothing complete yet.
    NeedMore,
}

/// Reads requests one after another from a connection's input.
#[derive(Debug, Default)]
pub struct RequestReader {
    state: State,
    /// Input that did not make a whole request yet, kept by the caller
    /// between reads: at most an incomplete head or chunk-size line, since
    /// body bytes are moved into the body as they arrive.
    pub pending: Vec<u8>,
}

#[derive(Debug, Default)]
enum State {
    /// Waiting for (the rest of) a request head.
    #[default]
    Head,
    /// Reading the body of a request whose head has arrived: boxed, so
    /// that every connection (an idle stream too) does not carry a head's
    /// room, and only a body that spans reads pays for it.
    Body(Box<BodyState>),
}

/// A request whose head has arrived and whose body is on its way.
#[derive(Debug)]
struct BodyState {
    head: Head,
    body: Vec<u8>,
    reader: BodyReader,
}

/// How the rest of a body is read.
#[derive(Debug)]
enum BodyReader {
    /// This many bytes still to come.
    Length(usize),
    /// A chunked body.
    Chunked(ChunkedDecoder),
}

impl RequestReader {
    /// True when part of a request has arrived.
    pub fn in_progress(&self) -> bool {
        !self.pending.is_empty() || matches!(self.state, State::Body(_))
    }

    /// Takes the next request out of `input` (the unconsumed bytes, in
    /// order), a publish's tokens checked at Unix time `unix_now` (their URL
    /// patterns interned in `patterns`). Returns
    /// how many bytes it used and what they made; the bytes left over after
    /// `NeedMore` must be offered again with more input.
    pub fn next_request(
        &mut self,
        input: &[u8],
        policy: &Policy,
        unix_now: i64,
        patterns: &mut Patterns,
    ) -> (usize, Step) {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::Head => match http::parse_head(&input[used..], policy) {
                    HeadParse::Incomplete => return (used, Step::NeedMore),
                    HeadParse::Invalid(reject) => return (used, Step::Reject(reject)),
                    HeadParse::Complete(mut head, len) => {
                        used += len;
                        if let Err(reject) = app::may_publish(&head, policy, unix_now, patterns) {
                            head.route = Err(reject);
                        }
                        let reader = match head.body {
                            BodyLength::Empty => return (used, Step::Request(head, Vec::new())),
                            // Refused anyway: answered without reading the body.
                            _ if head.route.is_err() => {
                                return (used, Step::Request(head, Vec::new()));
                            }
                            BodyLength::Length(n) if n > policy.max_body => {
                                return (used, Step::Reject(too_large()));
                            }
                            BodyLength::Length(n) => BodyReader::Length(n),
                            BodyLength::Chunked => BodyReader::Chunked(ChunkedDecoder::default()),
                        };
                        let capacity = match reader {
                            // The usual publish: its whole body came with
                            // its head, and is taken at once.
                            BodyReader::Length(n) if input.len() - used >= n => {
                                let body = input[used..used + n].to_vec();
                                return (used + n, Step::Request(head, body));
                            }
                            BodyReader::Length(n) => n,
                            BodyReader::Chunked(_) => 0,
                        };
                        let wants_continue = head.expect_continue && used == input.len();
                        self.state = State::Body(Box::new(BodyState {
                            head,
                            body: Vec::with_capacity(capacity),
                            reader,
                        }));
                        if wants_continue {
                            return (used, Step::Continue);
                        }
                    }
                },
                State::Body(state) => {
                    let BodyState { body, reader, .. } = &mut **state;
                    let rest = &input[used..];
                    let done = match reader {
                        BodyReader::Length(left) => {
                            let take = (*left).min(rest.len());
                            body.extend_from_slice(&rest[..take]);
                            used += take;
                            *left -= take;
                            *left == 0
                        }
                        BodyReader::Chunked(decoder) => match decoder.decode(rest, body, policy) {
                            Ok((n, done)) => {
                                used += n;
                                done
                            }
                            Err(reject) => return (used, Step::Reject(reject)),
                        },
                    };
                    if !done {
                        return (used, Step::NeedMore);
                    }
                    if let State::Body(state) = std::mem::take(&mut self.state) {
                        let BodyState { head, body, .. } = *state;
                        return (used, Step::Request(head, body));
                    }
                }
            }
        }
    }
}

fn too_large() -> Reject {
    Reject::new(Status::PAYLOAD_TOO_LARGE, "event too large")
}

/// Feeds `input` to a fresh reader in pieces of the given sizes (the rest in
/// one piece), the way reads would deliver it, keeping leftovers as the
/// server does. Returns every step taken. For tests and fuzzing: it checks
/// the bound on kept bytes and panics if it is broken.
pub fn read_in_pieces(input: &[u8], pieces: &[usize], policy: &Policy) -> Vec<Step> {
    let unix_now = crate::auth::unix_now();
    let hub = crate::mercure::url::Url::parse("http://localhost/.well-known/mercure", None);
    let mut patterns = Patterns::new(hub.expect("a URL"));
    let mut reader = RequestReader::default();
    let mut steps = Vec::new();
    let mut rest = input;
    let mut sizes = pieces.iter().copied().chain(std::iter::once(usize::MAX));
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        let (piece, after) = rest.split_at(size);
        rest = after;
        let mut buf = std::mem::take(&mut reader.pending);
        buf.extend_from_slice(piece);
        let mut used = 0;
        loop {
            let (n, step) = reader.next_request(&buf[used..], policy, unix_now, &mut patterns);
            used += n;
            let stop = matches!(step, Step::NeedMore | Step::Reject(_));
            let rejected = matches!(step, Step::Reject(_));
            steps.push(step);
            if rejected {
                return steps;
            }
            if stop {
                break;
            }
        }
        buf.drain(..used);
        let bound = policy.max_head_size + size.max(1) + 1024;
        assert!(
            buf.len() <= bound,
            "kept {} bytes, more than the bound {bound}",
            buf.len()
        );
        reader.pending = buf;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Route;

    const POLICY: Policy = Policy {
        max_head_size: 8192,
        max_headers: 64,
        max_body: 64,
        publish_token: None,
        loopback_hosts: true,
        allow_hosts: Vec::new(),
        allow_origin: None,
        access: None,
    };

    fn bodies(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Request(_, body) => Some(String::from_utf8(body.clone()).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pipelined_requests_in_every_split() {
        let input = b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc\
                      POST /publish HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
                      GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
        for size in 1..input.len() {
            let pieces = vec![size; input.len()];
            let steps = read_in_pieces(input, &pieces, &POLICY);
            assert_eq!(bodies(&steps), ["abc", "de", ""], "pieces of {size}");
        }
    }

    #[test]
    fn continue_only_when_the_body_has_not_started() {
        let head = b"POST /publish HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let steps = read_in_pieces(head, &[], &POLICY);
        assert_eq!(steps, [Step::Continue, Step::NeedMore]);
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"hi");
        let steps = read_in_pieces(&whole, &[], &POLICY);
        assert_eq!(bodies(&steps), ["hi"]);
        assert!(!steps.contains(&Step::Continue));
    }

    #[test]
    fn oversized_bodies_are_refused_before_reading() {
        let steps = read_in_pieces(
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 65\r\n\r\n",
            &[],
            &POLICY,
        );
        assert!(
            matches!(steps.last(), Some(Step::Reject(r)) if r.status == Status::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn a_refused_route_skips_its_body() {
        let steps = read_in_pieces(
            b"POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
            &[],
            &POLICY,
        );
        match &steps[0] {
            Step::Request(head, body) => {
                assert!(body.is_empty());
                assert_eq!(head.route.as_ref().unwrap_err().status, Status::NOT_FOUND);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn in_progress_tracks_partial_requests() {
        let hub = crate::mercure::url::Url::parse("http://localhost/.well-known/mercure", None);
        let mut patterns = Patterns::new(hub.unwrap());
        let mut reader = RequestReader::default();
        assert!(!reader.in_progress());
        let (used, step) = reader.next_request(
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nab",
            &POLICY,
            0,
            &mut patterns,
        );
        assert_eq!(step, Step::NeedMore);
        assert_eq!(used, 64);
        assert!(reader.in_progress());
        let (_, step) = reader.next_request(b"cd", &POLICY, 0, &mut patterns);
        assert!(
            matches!(step, Step::Request(ref h, ref b) if b == b"abcd" && matches!(h.route, Ok(Route::Publish { .. })))
        );
        assert!(!reader.in_progress());
    }
}
