//! In-process fan-out: one event encoded once and queued to 1, 100 and
//! 10 000 subscriber queues, each then written with one vectored write (to
//! a sink, so no socket cost). The time per subscriber stays the same for a
//! 64-byte and a 16 KiB event: a queue entry is a pointer to the shared
//! frame, not a copy.

use std::hint::black_box;
use std::io;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sseloop::_internals::Frame;
use sseloop::_internals::WriteQueue;
use sseloop::Framing;

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for (label, data) in [("64B", "p".repeat(64)), ("16KiB", "p".repeat(16 << 10))] {
        for subscribers in [1usize, 100, 10_000] {
            let mut queues: Vec<WriteQueue> =
                (0..subscribers).map(|_| WriteQueue::default()).collect();
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_with_input(BenchmarkId::new(label, subscribers), &data, |b, data| {
                b.iter(|| {
                    let frame = Arc::new(Frame::event("5cceb5575ee8-1", None, data));
                    for queue in &mut queues {
                        queue.push_frame(&frame, Framing::Chunked);
                    }
                    for queue in &mut queues {
                        // io::sink takes everything: one write empties the queue.
                        black_box(queue.write_once(&mut io::sink()).unwrap());
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
