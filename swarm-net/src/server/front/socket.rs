//! The socket under a connection (plain or TLS) and the connection's read
//! buffer, where every read has a deadline.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 16 * 1024;

/// How long a TLS close alert may take to go out.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// The socket under a connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TlsSocket>>),
}

/// A TLS connection's socket, whose reads end by a deadline. rustls reads
/// the socket until a whole record is in, so a record dripped a byte at a
/// time, each within the socket's timeout, never came back to the
/// connection's deadline: it escaped the header, body and handshake
/// timeouts (h11, h12). Each of those reads checks the deadline instead.
pub(crate) struct TlsSocket {
    pub(super) sock: TcpStream,
    pub(super) deadline: Option<Instant>,
    /// Writes end by this too: rustls writes whole records, as it reads them.
    pub(super) write_deadline: Option<Instant>,
    /// The socket's write timeout now (`None`: not set by this socket).
    pub(super) write_armed: Option<Duration>,
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            if self.sock.read_timeout()?.is_none_or(|t| t > left) {
                self.sock.set_read_timeout(Some(left))?;
            }
        }
        self.sock.read(buf)
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(deadline) = self.write_deadline {
            arm(
                &self.sock,
                &mut self.write_armed,
                deadline,
                TcpStream::set_write_timeout,
            )?;
        }
        self.sock.write(buf).map_err(as_timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

impl Stream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock.sock,
        }
    }

    /// Reads end by `deadline` (a plain socket's timeout does that alone).
    fn read_by_deadline(&mut self, deadline: Instant) {
        if let Stream::Tls(s) = self {
            s.sock.deadline = Some(deadline);
        }
    }

    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            s.sock.write_deadline = Some(Instant::now() + CLOSE_NOTIFY_WAIT);
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

/// Tells whether the client of a reply that streams (the event stream) has gone, while the
/// reply waits for news: a tab closed between keep-alives held its stream's place up to 15 s
/// more (h32), and one address has 16 places.
pub(crate) struct Hangup(TcpStream);

impl Hangup {
    /// Whether the client closed the connection (or sent anything: an event stream's client
    /// sends nothing after its request but, over TLS, the close alert before it goes).
    pub(crate) fn seen(&self) -> bool {
        use rustix::net::RecvFlags;
        let mut byte = [0u8; 1];
        match rustix::net::recv(
            &self.0,
            &mut byte[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Ok(_) => true,
            Err(e) => e != rustix::io::Errno::AGAIN && e != rustix::io::Errno::INTR,
        }
    }
}

impl Conn {
    /// A [`Hangup`] of this connection (a second handle on its socket), if one can be had.
    pub(super) fn hangup(&self) -> Option<Hangup> {
        self.stream.tcp().try_clone().ok().map(Hangup)
    }
}

/// A connection with its read buffer; `buf[start..end]` is read and not yet
/// consumed. The buffer is zeroed once as it grows, not on every read, and
/// the socket's read timeout is set only when the one it has could outlast
/// the deadline (or is far shorter): a keep-alive connection in steady use
/// costs one `recv` per request, not a `setsockopt` and a 16 KiB `memset` too.
pub(crate) struct Conn {
    pub(super) stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The socket's read timeout now (`None`: not set by this connection).
    armed: Option<Duration>,
    /// The same for writes (of a plain socket; a TLS one keeps its own).
    write_armed: Option<Duration>,
}

/// The read timeout to set for `left` until a deadline: rounded down to
/// 100 ms steps from 200 ms on, so the next deadlines of the same length
/// find it already set. A read that times out before its deadline reads
/// again, so rounding down never ends a wait early.
fn timeout_for(left: Duration) -> Duration {
    if left >= Duration::from_millis(200) {
        Duration::from_millis(left.as_millis() as u64 / 100 * 100)
    } else {
        left
    }
}

impl Conn {
    pub(super) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            armed: None,
            write_armed: None,
        }
    }

    pub(super) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once more into the buffer (at most `cap` unread bytes in all).
    /// `Ok(0)`: the peer closed.
    pub(super) fn fill(&mut self, cap: usize, deadline: Instant) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = cap.saturating_sub(self.end).min(READ_CHUNK);
        if room == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "buffer full"));
        }
        if self.buf.len() < self.end + room {
            self.buf.resize(self.end + room, 0);
        }
        let n = read_by(
            &mut self.stream,
            &mut self.armed,
            &mut self.buf[self.end..self.end + room],
            deadline,
        )?;
        self.end += n;
        Ok(n)
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
        read_by(&mut self.stream, &mut self.armed, out, deadline)
    }

    /// Closes the connection with a reset: what its client did not read is
    /// dropped, not left in the kernel's send buffer (up to megabytes) for
    /// a client that reads a trickle.
    pub(super) fn reset(self) {
        let _ = rustix::net::sockopt::set_socket_linger(self.stream.tcp(), Some(Duration::ZERO));
    }

    /// Writes all of `rest` (and flushes it) by `deadline`, however slowly
    /// the client reads: each write's own timeout alone started over with
    /// every partial send, so a client reading a trickle held the connection
    /// as long as it liked (h110). On a timeout `rest` is what is left.
    pub(super) fn write_by(&mut self, rest: &mut &[u8], deadline: Instant) -> io::Result<()> {
        if let Stream::Tls(s) = &mut self.stream {
            s.sock.write_deadline = Some(deadline);
        }
        loop {
            if let Stream::Plain(s) = &self.stream {
                arm(
                    s,
                    &mut self.write_armed,
                    deadline,
                    TcpStream::set_write_timeout,
                )?;
            }
            let done = rest.is_empty();
            let r = if done {
                self.stream.flush().map(|()| 0)
            } else {
                self.stream.write(rest)
            };
            match r.map_err(as_timeout) {
                Ok(_) if done => return Ok(()),
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Sets the socket's read (or write) timeout with `set` unless the one it
/// has (`armed`) already ends a read by `deadline` and is not far shorter
/// than what is left.
fn arm(
    sock: &TcpStream,
    armed: &mut Option<Duration>,
    deadline: Instant,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    if armed.is_some_and(|a| a <= left && a >= left / 2) {
        return Ok(());
    }
    let timeout = timeout_for(left);
    set(sock, Some(timeout))?;
    *armed = Some(timeout);
    Ok(())
}

/// One read that ends with bytes, the peer's close, an error, or `deadline`
/// (a timeout before it, from a shorter armed timeout, reads again).
fn read_by(
    stream: &mut Stream,
    armed: &mut Option<Duration>,
    out: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    stream.read_by_deadline(deadline);
    loop {
        arm(stream.tcp(), armed, deadline, TcpStream::set_read_timeout)?;
        match stream.read(out).map_err(as_timeout) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < deadline => {}
            r => return r,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_timeouts_round_down_to_steps_that_repeat() {
        let ms = Duration::from_millis;
        assert_eq!(timeout_for(ms(499) + Duration::from_micros(990)), ms(400));
        assert_eq!(timeout_for(ms(10_000)), ms(10_000));
        assert_eq!(timeout_for(ms(9_999)), ms(9_900));
        assert_eq!(timeout_for(ms(150)), ms(150));
        // Never longer than what is left.
        for left in [ms(1), ms(199), ms(200), ms(201), ms(60_000)] {
            assert!(timeout_for(left) <= left && !timeout_for(left).is_zero());
        }
    }
}
