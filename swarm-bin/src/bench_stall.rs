//! The hostile side of `swarm bench http`: connections held open in a
//! stalled state (`--stalled N`), and a monitor asking `/api/v1/health` on a
//! fresh connection ten times a second, so a run shows whether the server
//! keeps its throughput and answers its health check while being jammed.
//!
//! A stalled connection is what issue 11's attacker sent: half of them a
//! request head and 3 bytes of a 100 KB body, the other half a request line
//! and one header, never finished. When the server times one out and closes
//! it, it is opened again at once, so N stay open throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stalled connections being held open.
pub(crate) struct Stallers {
    threads: Vec<JoinHandle<()>>,
    /// Times the server closed a stalled connection and it was reopened.
    pub(crate) reopened: Arc<AtomicU64>,
    /// Connections that could not be opened at all.
    pub(crate) failed: Arc<AtomicU64>,
}

impl Stallers {
    /// Opens `n` stalled connections to `addr` and keeps them open until `stop`.
    pub(crate) fn start(addr: SocketAddr, n: usize, stop: &Arc<AtomicBool>) -> Stallers {
        let reopened = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..n)
            .filter_map(|i| {
                let (stop, reopened, failed) = (stop.clone(), reopened.clone(), failed.clone());
                std::thread::Builder::new()
                    .name("bench-stall".into())
                    .stack_size(64 * 1024)
                    .spawn(move || hold(addr, i % 2 == 0, &stop, &reopened, &failed))
                    .ok()
            })
            .collect();
        Stallers {
            threads,
            reopened,
            failed,
        }
    }

    /// Waits for every holder to notice `stop` (within about a second).
    pub(crate) fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Keeps one stalled connection open, reopening it whenever the server closes it.
fn hold(addr: SocketAddr, body: bool, stop: &AtomicBool, reopened: &AtomicU64, failed: &AtomicU64) {
    let stall: &[u8] = if body {
        b"POST /api/v1/register HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"n"
    } else {
        b"GET /api/v1/status HTTP/1.1\r\nHost: bench\r\n"
    };
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
            s.write_all(stall)?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            Ok(s)
        });
        let mut sock = match sock {
            Ok(s) => s,
            Err(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if !first {
            reopened.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let mut sink = [0u8; 512];
        // Hold until the server gives up on it (an answer or a close).
        while !stop.load(Ordering::Relaxed) {
            match sock.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

/// `/api/v1/health` latencies on fresh connections.
pub(crate) struct HealthProbe {
    thread: JoinHandle<()>,
    samples: Arc<Mutex<Vec<u32>>>,
    failures: Arc<AtomicU64>,
}

/// What the health probe saw.
pub(crate) struct HealthSeen {
    /// Latencies in microseconds, sorted.
    pub(crate) samples: Vec<u32>,
    /// Probes with no 200 within 2 s.
    pub(crate) failures: u64,
}

impl HealthProbe {
    /// Asks for `/api/v1/health` every 100 ms on a new connection while
    /// `measuring` is set, until `stop`.
    pub(crate) fn start(
        addr: SocketAddr,
        measuring: &Arc<AtomicBool>,
        stop: &Arc<AtomicBool>,
    ) -> HealthProbe {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = {
            let (samples, failures, measuring, stop) = (
                samples.clone(),
                failures.clone(),
                measuring.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let ok = health_once(addr);
                    let took = t0.elapsed();
                    if measuring.load(Ordering::Relaxed) {
                        if ok {
                            if let Ok(mut s) = samples.lock() {
                                s.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                            }
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(took));
                }
            })
        };
        HealthProbe {
            thread,
            samples,
            failures,
        }
    }

    /// Stops (once `stop` is set) and returns what was seen.
    pub(crate) fn finish(self) -> HealthSeen {
        let _ = self.thread.join();
        let mut samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples.sort_unstable();
        HealthSeen {
            samples,
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// One health check on a new connection: true for a 200 within 2 s.
fn health_once(addr: SocketAddr) -> bool {
    let run = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    run().unwrap_or(false)
}
