//! The socket under a connection (plain or TLS) and the connection's read
//! buffer, where every read has a deadline.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 16 * 1024;

/// The socket under a connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            // Tell the client the answer is complete (no truncation attack).
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection with its read buffer; `buf[start..]` is not yet consumed.
pub(crate) struct Conn {
    pub(super) stream: Stream,
    buf: Vec<u8>,
    start: usize,
}

impl Conn {
    pub(super) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
        }
    }

    pub(super) fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    pub(super) fn set_deadline(&self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        self.stream.tcp().set_read_timeout(Some(left))
    }

    /// Reads once more into the buffer (at most `cap` unread bytes in all).
    /// `Ok(0)`: the peer closed.
    pub(super) fn fill(&mut self, cap: usize, deadline: Instant) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let room = cap.saturating_sub(self.buf.len()).min(READ_CHUNK);
        if room == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "buffer full"));
        }
        self.set_deadline(deadline)?;
        let old = self.buf.len();
        self.buf.resize(old + room, 0);
        let r = self.stream.read(&mut self.buf[old..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        r.map_err(as_timeout)
    }

    /// Reads until at least `want` bytes are unread (never past `cap`).
    pub(super) fn fill_to(&mut self, want: usize, cap: usize, deadline: Instant) -> io::Result<()> {
        while self.unread().len() < want {
            if self.fill(cap, deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection mid-request",
                ));
            }
        }
        Ok(())
    }

    /// Body bytes: from the buffer first, else straight from the socket
    /// (never more than asked, so a pipelined next request stays unread).
    pub(super) fn read_some(&mut self, out: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let unread = self.unread();
        if !unread.is_empty() {
            let n = unread.len().min(out.len());
            out[..n].copy_from_slice(&unread[..n]);
            self.consume(n);
            return Ok(n);
        }
        self.set_deadline(deadline)?;
        self.stream.read(out).map_err(as_timeout)
    }

    pub(super) fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// A blocking socket with a read timeout reports `WouldBlock` on Unix.
fn as_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        timed_out()
    } else {
        e
    }
}
