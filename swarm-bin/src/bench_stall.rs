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
    probes: Arc<Mutex<Vec<Probe>>>,
    failures: Arc<AtomicU64>,
}

/// One health check that answered 200.
#[derive(Clone, Copy)]
struct Probe {
    began: Instant,
    /// Until the TCP handshake was done: a SYN the server's listen queue
    /// dropped shows here as a retransmit a second later.
    connect: Duration,
    /// Until the status line arrived.
    total: Duration,
}

/// What the health probe saw.
pub(crate) struct HealthSeen {
    /// Latencies in microseconds, sorted.
    pub(crate) samples: Vec<u32>,
    /// Probes with no 200 within 2 s.
    pub(crate) failures: u64,
    /// The slowest probes, slowest first: (seconds into the measurement it
    /// began, connect ms, total ms). Tells a dropped SYN (connect ≈ 1 s)
    /// from a slow answer, and when in the run it happened.
    pub(crate) slowest: Vec<(f64, f64, f64)>,
    /// The longest TCP handshake, ms.
    pub(crate) connect_max_ms: f64,
}

impl HealthSeen {
    /// Probes that took longer than `ms` (failures included).
    pub(crate) fn over_ms(&self, ms: u32) -> u64 {
        self.samples.iter().filter(|&&us| us > ms * 1000).count() as u64 + self.failures
    }
}

impl HealthProbe {
    /// Asks for `/api/v1/health` every 100 ms on a new connection until
    /// `stop`; a probe counts when it both began and ended while
    /// `measuring` was set (one begun in the warm-up is not the run's).
    pub(crate) fn start(
        addr: SocketAddr,
        measuring: &Arc<AtomicBool>,
        stop: &Arc<AtomicBool>,
    ) -> HealthProbe {
        let probes = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = {
            let (probes, failures, measuring, stop) = (
                probes.clone(),
                failures.clone(),
                measuring.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let counts = measuring.load(Ordering::Relaxed);
                    let began = Instant::now();
                    let seen = health_once(addr);
                    let total = began.elapsed();
                    if counts && measuring.load(Ordering::Relaxed) {
                        match seen {
                            Some(connect) => {
                                if let Ok(mut p) = probes.lock() {
                                    p.push(Probe {
                                        began,
                                        connect,
                                        total,
                                    });
                                }
                            }
                            None => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(total));
                }
            })
        };
        HealthProbe {
            thread,
            probes,
            failures,
        }
    }

    /// Stops (once `stop` is set) and returns what was seen; `measured`
    /// is when the measurement began.
    pub(crate) fn finish(self, measured: Instant) -> HealthSeen {
        let _ = self.thread.join();
        let mut probes = self.probes.lock().map(|p| p.clone()).unwrap_or_default();
        let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut samples: Vec<u32> = probes.iter().map(|p| us(p.total)).collect();
        samples.sort_unstable();
        let connect_max_ms = probes.iter().map(|p| ms(p.connect)).fold(0.0, f64::max);
        probes.sort_by_key(|p| std::cmp::Reverse(p.total));
        let slowest = probes
            .iter()
            .take(3)
            .map(|p| {
                let at = p.began.saturating_duration_since(measured).as_secs_f64();
                (at, ms(p.connect), ms(p.total))
            })
            .collect();
        HealthSeen {
            samples,
            failures: self.failures.load(Ordering::Relaxed),
            slowest,
            connect_max_ms,
        }
    }
}

/// One health check on a new connection: the time its TCP handshake took,
/// if a 200 came within 2 s.
fn health_once(addr: SocketAddr) -> Option<Duration> {
    let run = || -> std::io::Result<Option<Duration>> {
        let began = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        let connect = began.elapsed();
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200").then_some(connect))
    };
    run().ok().flatten()
}

/// The kernel's count of connections dropped because a listen queue was
/// full (`TcpExt: ListenOverflows`, the whole machine; Linux only). A
/// dropped SYN costs its client a 1 s retransmit.
pub(crate) fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
}
