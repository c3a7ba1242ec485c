//! Encoder and request-parsing throughput: what one publish costs before
//! any socket is touched.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sseloop::_internals::Frame;
use sseloop::_internals::http::{Policy, parse_head};
use sseloop::_internals::request::{RequestReader, Step};

fn encoder(c: &mut Criterion) {
    let cases = [
        (
            "small",
            "{\"job\":7,\"percent\":42,\"ts\":1795317274375}".to_owned(),
        ),
        ("large_16KiB", "x".repeat(16 << 10)),
        ("multiline_100", "a line of log output\n".repeat(100)),
    ];
    let mut group = c.benchmark_group("encode");
    for (name, data) in &cases {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                Frame::event(
                    black_box("5cceb5575ee8-42"),
                    Some("progress"),
                    black_box(data),
                )
            })
        });
    }
    group.finish();
}

const POLICY: Policy = Policy {
    max_head_size: 8 << 10,
    max_headers: 64,
    max_body: 64 << 10,
    publish_token: None,
    loopback_hosts: true,
    allow_hosts: Vec::new(),
    allow_origin: None,
    access: None,
};

fn parsing(c: &mut Criterion) {
    let subscribe = b"GET /events?topic=build&topic=deploy HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
        Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 5cceb5575ee8-41\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n\r\n";
    let body = r#"{"job":7,"percent":42,"ts":1795317274375}"#;
    let publish = format!(
        "POST /publish?topic=build&event=progress HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let publish = publish.as_bytes();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(subscribe.len() as u64));
    group.bench_function("subscribe_head", |b| {
        b.iter(|| parse_head(black_box(subscribe), &POLICY))
    });
    group.throughput(Throughput::Bytes(publish.len() as u64));
    let mut patterns =
        sseloop::_internals::mercure::patterns("http://localhost/.well-known/mercure");
    group.bench_function("publish_request", |b| {
        b.iter(|| {
            let mut reader = RequestReader::default();
            let (_, step) = reader.next_request(black_box(publish), &POLICY, 0, &mut patterns);
            assert!(matches!(step, Step::Request(..)));
            step
        })
    });
    group.finish();
}

criterion_group!(benches, encoder, parsing);
criterion_main!(benches);
