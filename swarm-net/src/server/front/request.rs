//! What a handler sees of one request: method, URL, headers (valid UTF-8,
//! checked before any handler runs), the peer address, and the body as a
//! reader that enforces the body timeouts; and what it answers.

use super::limits::BodyLimits;
use super::socket::Conn;
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The request method. Unknown methods keep their name for the 405/501 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other(String),
}

impl Method {
    pub(super) fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other(s) => s,
        })
    }
}

/// How the body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
}

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Next comes a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last chunk and its trailers were read.
    Done,
}

/// One parsed request head plus its body on the connection.
pub(crate) struct Request<'c> {
    pub(super) method: Method,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) remote: SocketAddr,
    pub(super) body: Body<'c>,
}

impl Request<'_> {
    /// The method.
    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The request target as sent (path and query).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The first value of a header, by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times a header was sent.
    pub(crate) fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    /// The last value of a header sent on several lines (or the last of
    /// one line's comma-separated list): what a proxy appended last.
    pub(crate) fn last_listed(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.rsplit(',').next())
            .map(str::trim)
    }

    /// Who connected (the TCP peer; a proxy's address behind one).
    pub(crate) fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// What tells a streaming reply that its client has gone (see [`super::socket::Hangup`]).
    pub(crate) fn hangup(&self) -> Option<super::socket::Hangup> {
        self.body.conn.hangup()
    }

    /// The declared body length, when the body has a `Content-Length`.
    pub(crate) fn body_length(&self) -> Option<usize> {
        match self.body.framing {
            Framing::Length(n) => usize::try_from(n).ok(),
            Framing::Chunked(_) => None,
        }
    }

    /// The body. Reads fail with `TimedOut` when the client stalls longer
    /// than the body idle timeout or sends slower than the minimum rate.
    pub(crate) fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }
}

/// The body of one request, read straight off the connection.
pub(super) struct Body<'c> {
    pub(super) conn: &'c mut Conn,
    pub(super) framing: Framing,
    pub(super) limits: BodyLimits,
    pub(super) started: Instant,
    pub(super) received: u64,
    /// `Expect: 100-continue` still to be answered before the first read.
    pub(super) expect_continue: bool,
    /// A read failed: the connection's framing is lost.
    pub(super) broken: bool,
}

/// Longest chunk-size line or trailer block accepted.
const CHUNK_LINE_MAX: usize = 4096;

impl Body<'_> {
    pub(super) fn complete(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Chunked(Chunk::Done)
        )
    }

    /// When the next byte must have arrived: the idle timeout, and the
    /// average-rate deadline (a grace of one idle timeout, then `min_rate`).
    fn deadline(&self) -> io::Result<Instant> {
        let now = Instant::now();
        let by_rate = self.started
            + self.limits.idle
            + Duration::from_secs_f64(self.received as f64 / self.limits.min_rate.max(1) as f64);
        if now >= by_rate {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "request body arrived slower than {} bytes/s",
                    self.limits.min_rate
                ),
            ));
        }
        Ok(by_rate.min(now + self.limits.idle))
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.expect_continue {
            self.expect_continue = false;
            let by = Instant::now() + self.limits.idle;
            self.conn
                .write_by(&mut &b"HTTP/1.1 100 Continue\r\n\r\n"[..], by)?;
        }
        loop {
            match self.framing {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => return Ok(0),
                Framing::Length(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.conn.read_some(&mut out[..want], self.deadline()?)?;
                    if n == 0 {
                        return Err(eof());
                    }
                    self.framing = Framing::Length(left - n as u64);
                    self.received += n as u64;
                    return Ok(n);
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.conn.read_some(&mut out[..want], self.deadline()?)?;
                    if n == 0 {
                        return Err(eof());
                    }
                    let left = left - n as u64;
                    self.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    self.received += n as u64;
                    return Ok(n);
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    self.conn.fill_to(2, CHUNK_LINE_MAX, self.deadline()?)?;
                    if !self.conn.unread().starts_with(b"\r\n") {
                        return Err(bad("chunk data is not followed by CRLF"));
                    }
                    self.conn.consume(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Size) => {
                    let size = loop {
                        match httparse::parse_chunk_size(self.conn.unread()) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                self.conn.consume(used);
                                break size;
                            }
                            Ok(httparse::Status::Partial) => {
                                let have = self.conn.unread().len();
                                self.conn
                                    .fill_to(have + 1, CHUNK_LINE_MAX, self.deadline()?)?;
                            }
                            Err(_) => return Err(bad("malformed chunk size")),
                        }
                    };
                    if size == 0 {
                        self.read_trailers()?;
                        self.framing = Framing::Chunked(Chunk::Done);
                    } else {
                        self.framing = Framing::Chunked(Chunk::Data(size));
                    }
                }
            }
        }
    }

    /// Skips the trailer section up to its empty line.
    fn read_trailers(&mut self) -> io::Result<()> {
        loop {
            let unread = self.conn.unread();
            if unread.starts_with(b"\r\n") {
                self.conn.consume(2);
                return Ok(());
            }
            if let Some(end) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
                self.conn.consume(end + 4);
                return Ok(());
            }
            let have = unread.len();
            self.conn
                .fill_to(have + 1, CHUNK_LINE_MAX, self.deadline()?)?;
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.broken {
            return Err(bad("the request body could not be read"));
        }
        if out.is_empty() {
            return Ok(0);
        }
        let r = self.read_inner(out);
        if r.is_err() {
            self.broken = true;
        }
        r
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the client closed the connection before the whole body arrived",
    )
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// What a handler answers, on the wire.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    /// Extra headers (`Cache-Control`, ...).
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: ResponseBody,
}

/// A response body: bytes known up front, or a stream (server-sent events,
/// long downloads) written chunked as the reader yields.
pub(crate) enum ResponseBody {
    Bytes(Vec<u8>),
    Stream(Box<dyn Read + Send>),
    /// A body of known length read as it is sent (a file, a byte range).
    Sized(Box<dyn Read + Send>, u64),
}

impl Response {
    /// A JSON body.
    pub(crate) fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: ResponseBody::Bytes(body.into_bytes()),
        }
    }
}

/// The reason phrase of a status code.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}
