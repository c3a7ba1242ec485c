//! What one small write to a loopback TCP socket costs the writer's CPU on
//! this machine, with no server logic around it: the floor under any
//! server's CPU per delivery when each event is written as it comes.
//!
//! 1 000 connected pairs on 127.0.0.1; a reader thread drains every client
//! end; the writer writes 64 bytes to each server end, round after round,
//! and divides its own thread CPU time by the writes.
//!
//! ```text
//! cargo run --release --example write_cost
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PAIRS: usize = 1000;
const ROUNDS: usize = 200;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(PAIRS);
    let mut servers = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        clients.push(TcpStream::connect(addr)?);
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        servers.push(server);
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            // Sweeping non-blocking reads keeps every receive buffer from
            // filling, which would turn the writes into refusals.
            let mut buf = vec![0u8; 64 << 10];
            for c in &clients {
                c.set_nonblocking(true).expect("nonblocking");
            }
            while !done.load(Ordering::Relaxed) {
                for mut c in &clients {
                    match c.read(&mut buf) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        })
    };
    let message = [b'x'; 64];
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for _ in 0..ROUNDS {
        for mut s in &servers {
            s.write_all(&message)?;
        }
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    done.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    let writes = (PAIRS * ROUNDS) as f64;
    println!(
        "{} writes of 64 bytes to {PAIRS} loopback sockets: {:.2} µs of writer CPU \
         and {:.2} µs of wall time per write",
        PAIRS * ROUNDS,
        cpu.as_secs_f64() * 1e6 / writes,
        wall.as_secs_f64() * 1e6 / writes,
    );
    Ok(())
}
