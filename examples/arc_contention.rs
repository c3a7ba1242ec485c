//! What two loops on two cores pay for sharing an event's frame: every
//! loop clones the same `Arc` once per subscriber it queues the event for
//! and drops it once written, so with two loops on two cores the cache line
//! of its reference count moves between the cores. This measures a clone
//! and a drop of one `Arc` shared by two threads pinned to CPUs 0 and 1,
//! against each thread with an `Arc` of its own, with some work of its own
//! between them (as a loop writes a socket between two deliveries), and
//! gives the difference per clone and drop: the most a loop-local handle
//! per event could save per delivery.
//!
//! ```text
//! cargo run --release --example arc_contention
//! ```

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Clones and drops per thread and run.
const OPS: usize = 2_000_000;
/// Local work between two clones, in rounds of a small loop (about 50 ns:
/// far less than a write to a socket, so the shared line is contended far
/// more often than in a server).
const WORK: u64 = 16;
const RUNS: usize = 5;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; the call reads it only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU nanoseconds per clone, work and drop, averaged over both threads;
/// `shared`: both threads use one `Arc`.
fn run(shared: bool) -> f64 {
    let one = Arc::new([0u64; 8]);
    let other = Arc::new([0u64; 8]);
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|cpu| {
            let frame = if shared || cpu == 0 {
                Arc::clone(&one)
            } else {
                Arc::clone(&other)
            };
            let start = Arc::clone(&start);
            thread::spawn(move || {
                pin(cpu);
                start.wait();
                let began = thread_cpu();
                let mut acc = 0u64;
                for i in 0..OPS as u64 {
                    let queued = black_box(Arc::clone(&frame));
                    for j in 0..WORK {
                        acc = black_box(acc.wrapping_mul(31).wrapping_add(i ^ j));
                    }
                    drop(queued);
                }
                black_box(acc);
                (thread_cpu() - began).as_nanos() as f64 / OPS as f64
            })
        })
        .collect();
    let ns: Vec<f64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (ns[0] + ns[1]) / 2.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut own, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        own.push(run(false));
        shared.push(run(true));
    }
    let (own, shared) = (median(own), median(shared));
    println!("an Arc of its own per thread: {own:.1} ns per clone, work and drop");
    println!("one Arc shared by CPUs 0 and 1: {shared:.1} ns");
    println!(
        "sharing costs {:.1} ns per clone and drop (medians of {RUNS} runs)",
        shared - own
    );
}
