//! Reads the hub's event stream as the lab's application receives it: an
//! HTTP/1.0 response from `GET /events` (so its body ends with the
//! connection), its head, then events and comments. Pure and bounded: a
//! line longer than the limit is an error, not memory.

/// Something the stream said.
#[derive(Debug, PartialEq, Eq)]
pub enum Said {
    /// The head came with `200`: the subscription is live.
    Open,
    /// An event.
    Event(Received),
}

/// One event as the hub sent it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Its `id:`.
    pub id: Option<String>,
    /// Its `event:`.
    pub event_type: Option<String>,
    /// Its `data:` lines, joined with LF.
    pub data: String,
}

/// The parser of one response.
#[derive(Debug)]
pub struct Upstream {
    head_done: bool,
    pending: Vec<u8>,
    event: Received,
    has_data: bool,
    max_line: usize,
}

/// What cannot be read as the hub's stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken(pub &'static str);

impl Upstream {
    /// A parser whose lines (and head) may be up to `max_line` bytes.
    pub fn new(max_line: usize) -> Upstream {
        Upstream {
            head_done: false,
            pending: Vec::new(),
            event: Received::default(),
            has_data: false,
            max_line,
        }
    }

    /// Takes `bytes`; appends what they completed to `said`.
    pub fn feed(&mut self, bytes: &[u8], said: &mut Vec<Said>) -> Result<(), Broken> {
        self.pending.extend_from_slice(bytes);
        if !self.head_done {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.pending) {
                Ok(httparse::Status::Complete(n)) => {
                    if response.code != Some(200) {
                        return Err(Broken("the hub refused the subscription"));
                    }
                    self.pending.drain(..n);
                    self.head_done = true;
                    said.push(Said::Open);
                }
                Ok(httparse::Status::Partial) if self.pending.len() <= self.max_line => {
                    return Ok(());
                }
                _ => return Err(Broken("the hub's answer is not an HTTP response")),
            }
        }
        let mut used = 0;
        while let Some(end) = self.pending[used..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[used..used + end];
            used += end + 1;
            let line =
                String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned();
            self.line(&line, said);
        }
        self.pending.drain(..used);
        if self.pending.len() > self.max_line {
            return Err(Broken("a line from the hub is too long"));
        }
        Ok(())
    }

    fn line(&mut self, line: &str, said: &mut Vec<Said>) {
        if line.is_empty() {
            if self.has_data {
                self.has_data = false;
                said.push(Said::Event(std::mem::take(&mut self.event)));
            }
            return;
        }
        if line.starts_with(':') {
            return; // a comment: the hub's greeting or heartbeat
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.event.id = Some(value.to_owned()),
            "event" => self.event.event_type = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_events_and_comments_in_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: connected\n\
            id: r-1\nevent: lab\ndata: {\"n\":1}\n\n: heartbeat\n\nid: r-2\ndata: a\ndata: b\n\n";
        for split in 1..wire.len() {
            let mut up = Upstream::new(1024);
            let mut said = Vec::new();
            up.feed(&wire[..split], &mut said).unwrap();
            up.feed(&wire[split..], &mut said).unwrap();
            assert_eq!(
                said,
                [
                    Said::Open,
                    Said::Event(Received {
                        id: Some("r-1".into()),
                        event_type: Some("lab".into()),
                        data: "{\"n\":1}".into()
                    }),
                    Said::Event(Received {
                        id: Some("r-2".into()),
                        event_type: None,
                        data: "a\nb".into()
                    }),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_refusal_or_an_endless_line_is_an_error() {
        let mut said = Vec::new();
        let refused = Upstream::new(64).feed(b"HTTP/1.1 503 Busy\r\n\r\n", &mut said);
        assert_eq!(refused, Err(Broken("the hub refused the subscription")));
        let mut up = Upstream::new(64);
        up.feed(b"HTTP/1.1 200 OK\r\n\r\n", &mut said).unwrap();
        assert!(up.feed(&[b'x'; 65], &mut said).is_err());
        assert!(Upstream::new(8).feed(&[b'x'; 9], &mut said).is_err());
    }
}
