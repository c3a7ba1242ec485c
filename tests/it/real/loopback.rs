//! A server on a port-0 loopback address, for the test's own helpers (the
//! collector, the forwarder): an accept thread hands each connection to a
//! thread of its own running the helper's handler. Stopping it (or dropping
//! it) ends all of them: the accept thread is woken and joined, every
//! connection still served is shut down and its thread joined.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// One connection being served: a handle on its socket, to shut it down,
/// and the thread serving it.
struct Served {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

pub struct LoopbackServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    served: Arc<Mutex<Vec<Served>>>,
}

impl LoopbackServer {
    /// Listens on `127.0.0.1:0` and runs `handle` on each connection, in a
    /// thread of its own. `handle` must return once its connection is shut
    /// down (a helper with more sockets than this one shuts those itself
    /// before `stop`).
    pub fn start(what: &str, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> LoopbackServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Vec::<Served>::new()));
        let accept = {
            let stop = Arc::clone(&stop);
            let served = Arc::clone(&served);
            let handle = Arc::new(handle);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    // Checked before anything is done with the connection:
                    // the one `stop` makes to wake this loop (and any after
                    // it) is never handled, so the forwarder never dials
                    // upstream for it.
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Ok(clone) = stream.try_clone() else {
                        continue;
                    };
                    let handle = Arc::clone(&handle);
                    let thread = thread::spawn(move || handle(stream));
                    let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
                    // Finished ones go here, so a long test does not pile
                    // up a socket per connection it ever had.
                    served.retain(|s| !s.thread.is_finished());
                    served.push(Served {
                        stream: clone,
                        thread,
                    });
                }
            })
        };
        LoopbackServer {
            addr,
            stop,
            accept: Some(accept),
            served,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, shuts down every connection still served and waits
    /// for its thread. Later calls do nothing.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that its thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        let _ = accept.join();
        let served =
            std::mem::take(&mut *self.served.lock().unwrap_or_else(PoisonError::into_inner));
        for s in &served {
            let _ = s.stream.shutdown(Shutdown::Both);
        }
        for s in served {
            let _ = s.thread.join();
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop();
    }
}
