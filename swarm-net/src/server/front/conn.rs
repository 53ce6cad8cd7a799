//! One connection: read a request head under a deadline, check it, hand it
//! to the handler, write the answer, and keep the connection only while the
//! client keeps to the protocol and the timeouts.

use super::ctx::{Ctx, Phase};
use super::limits::{HttpLimits, ONE_WRITE_MAX};
use super::pace::Pace;
use super::reply_budget;
use super::request::{reason, Body, Chunk, Framing, Method, Request, Response, ResponseBody};
use super::socket::{Conn, Stream};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most headers one request may carry (beyond: 431).
const MAX_HEADERS: usize = 64;

/// An unread rest of a body up to this size is drained to keep the
/// connection; a larger one closes it.
const DRAIN_MAX: u64 = 64 * 1024;

/// A request head, owned, checked.
struct Head {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    http11: bool,
    framing: Framing,
    expect_continue: bool,
    keep_alive: bool,
}

/// Why no request could be read.
enum NoHead {
    /// The peer closed, went idle past the timeout, or the server stops: close quietly.
    Gone,
    /// Answer this status and close.
    Refuse(u16, String),
}

/// Serves requests on one connection until it closes, breaks a rule, or
/// (`one_shot`) after the first answer.
pub(super) fn serve(
    stream: Stream,
    peer: SocketAddr,
    ctx: &Ctx,
    limits: &HttpLimits,
    id: u64,
    one_shot: bool,
) {
    let _ = stream.tcp().set_write_timeout(Some(limits.write_timeout));
    let mut conn = Conn::new(stream);
    let mut pace = Pace::new(limits);
    // A client behind on its replies may make room for a newcomer (h111 F2).
    let mut behind = |behind: bool| {
        ctx.enter(id, if behind { Phase::Behind } else { Phase::Busy });
    };
    let mut first = true;
    loop {
        let head = match read_head(&mut conn, ctx, limits, id, first) {
            Ok(h) => h,
            Err(NoHead::Gone) => return,
            Err(NoHead::Refuse(status, why)) => {
                ctx.stats.refused(status);
                tracing::debug!(%peer, status, error = %why, "request refused before routing");
                let body = serde_json::json!({ "error": why }).to_string();
                let refusal = Response::json(status, body);
                let mut out = Out {
                    conn: &mut conn,
                    pace: &mut pace,
                    behind: &mut behind,
                    said_behind: false,
                };
                let _ = write_response(&mut out, refusal, false, false, true);
                linger(&mut conn);
                return;
            }
        };
        first = false;
        let head_only = head.method == Method::Head;
        let mut keep = head.keep_alive && !one_shot && !ctx.stopping();
        let http11 = head.http11;
        let mut req = Request {
            method: head.method,
            url: head.url,
            headers: head.headers,
            remote: peer,
            body: Body {
                conn: &mut conn,
                framing: head.framing,
                limits: limits.body(),
                started: Instant::now(),
                received: 0,
                expect_continue: head.expect_continue,
                broken: false,
            },
        };
        let resp = if one_shot && !(ctx.always_open)(req.url.split('?').next().unwrap_or("")) {
            ctx.stats.refused(503);
            busy()
        } else {
            (ctx.handler)(&mut req)
        };
        // Whatever of the body the handler left must go, or the connection must.
        let body = &mut req.body;
        if !body.complete() {
            if body.broken || body.expect_continue {
                keep = false;
            } else if matches!(body.framing, Framing::Length(n) if n <= DRAIN_MAX)
                || body.framing == Framing::Chunked(Chunk::Size)
            {
                let mut sink = [0u8; 4096];
                let mut drained = 0u64;
                loop {
                    match body.read(&mut sink) {
                        Ok(0) => break,
                        Ok(n) => {
                            drained += n as u64;
                            if drained > DRAIN_MAX {
                                keep = false;
                                break;
                            }
                        }
                        Err(_) => {
                            keep = false;
                            break;
                        }
                    }
                }
            } else {
                keep = false;
            }
        }
        if let ResponseBody::Stream(_) = resp.body {
            // HTTP/1.0 has no chunks: the end of the stream is the close.
            keep = keep && http11;
        }
        let budget = &ctx.stats.reply_bytes;
        let (resp, _held) = match reply_budget::hold(budget, reply_budget::REPLY_BYTES_MAX, &resp) {
            Ok(held) => (resp, held),
            Err(busy) => {
                ctx.stats.refused(503);
                (busy, None)
            }
        };
        let mut out = Out {
            conn: &mut conn,
            pace: &mut pace,
            behind: &mut behind,
            said_behind: false,
        };
        match write_response(&mut out, resp, keep, head_only, http11) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                ctx.stats.reply_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "a reply was not read by its deadline: connection reset");
                conn.reset();
                return;
            }
            Err(_) => return,
            Ok(()) if !keep => {
                linger(&mut conn);
                return;
            }
            Ok(()) => {}
        }
    }
}

fn busy() -> Response {
    Response::json(
        503,
        serde_json::json!({
            "error": "server busy: too many open connections; retry shortly (only /api/v1/health is answered now)"
        })
        .to_string(),
    )
}

/// Reads and checks one request head. The first byte must come within the
/// idle timeout (the header timeout on a new connection); the whole head
/// within the header timeout of its first byte. Tells the registry when the
/// connection is idle, sending a head, and serving (when it may no longer
/// be evicted); an evicted one ends here, before any handler runs.
fn read_head(
    conn: &mut Conn,
    ctx: &Ctx,
    limits: &HttpLimits,
    id: u64,
    first: bool,
) -> Result<Head, NoHead> {
    let cap = limits.max_header_bytes;
    if conn.unread().is_empty() {
        if !first && !ctx.enter(id, Phase::Idle) {
            return Err(NoHead::Gone);
        }
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        let until = Instant::now() + wait;
        // Wake up now and then to notice a shutdown.
        loop {
            if ctx.stopping() {
                return Err(NoHead::Gone);
            }
            let step = until.min(Instant::now() + Duration::from_millis(500));
            match conn.fill(cap, step) {
                Ok(0) => return Err(NoHead::Gone),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < until => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && first => {
                    return Err(NoHead::Refuse(
                        408,
                        format!(
                            "no request within {} s of connecting",
                            limits.header_timeout.as_secs()
                        ),
                    ))
                }
                Err(_) => return Err(NoHead::Gone),
            }
        }
    }
    if !ctx.enter(id, Phase::Head) {
        return Err(NoHead::Gone);
    }
    let deadline = Instant::now() + limits.header_timeout;
    loop {
        match head_of(conn.unread(), limits)? {
            Some((head, used)) => {
                if !ctx.enter(id, Phase::Busy) {
                    return Err(NoHead::Gone);
                }
                conn.consume(used);
                return Ok(head);
            }
            None => match conn.fill(cap, deadline) {
                Ok(0) => return Err(NoHead::Gone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(NoHead::Refuse(
                        408,
                        format!(
                            "request headers not complete within {} s",
                            limits.header_timeout.as_secs()
                        ),
                    ))
                }
                Err(_) => return Err(NoHead::Gone),
            },
        }
    }
}

/// What the bytes so far make of a request head: complete (with the bytes
/// it took), not yet (`None`), or a refusal. No IO, so it can be fuzzed.
fn head_of(buf: &[u8], limits: &HttpLimits) -> Result<Option<(Head, usize)>, NoHead> {
    let cap = limits.max_header_bytes;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => {
            let head = check_head(&parsed, limits.max_url_bytes)?;
            Ok(Some((head, used)))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() >= cap {
                return Err(too_big(buf, limits.max_url_bytes, cap));
            }
            Ok(None)
        }
        Err(httparse::Error::TooManyHeaders) => Err(NoHead::Refuse(
            431,
            format!("more than {MAX_HEADERS} request headers"),
        )),
        Err(httparse::Error::Version) => Err(NoHead::Refuse(
            400,
            "unsupported HTTP version: this server speaks HTTP/1.0 and HTTP/1.1".into(),
        )),
        Err(e) => {
            let line = buf.split(|b| *b == b'\n').next().unwrap_or(b"");
            let why = if std::str::from_utf8(line).is_err() {
                "the request line is not valid UTF-8".to_string()
            } else {
                format!("malformed request: {e}")
            };
            Err(NoHead::Refuse(400, why))
        }
    }
}

/// [`head_of`] for the fuzz target: the bytes a complete head took, `None`
/// for a partial one, or the refusal's status and reason.
pub(crate) fn parse_head(buf: &[u8], limits: &HttpLimits) -> Result<Option<usize>, (u16, String)> {
    match head_of(buf, limits) {
        Ok(h) => Ok(h.map(|(_, used)| used)),
        Err(NoHead::Refuse(status, why)) => Err((status, why)),
        Err(NoHead::Gone) => Err((0, "gone".into())),
    }
}

/// 414 when the request line alone is past the URL limit, else 431.
fn too_big(unread: &[u8], max_url: usize, cap: usize) -> NoHead {
    let line_done = unread.contains(&b'\n');
    if !line_done || unread.iter().position(|b| *b == b'\n').unwrap_or(0) > max_url {
        NoHead::Refuse(414, format!("request URL longer than {max_url} bytes"))
    } else {
        NoHead::Refuse(431, format!("request headers larger than {cap} bytes"))
    }
}

fn check_head(p: &httparse::Request<'_, '_>, max_url: usize) -> Result<Head, NoHead> {
    let bad = |why: String| NoHead::Refuse(400, why);
    let method = Method::parse(p.method.unwrap_or(""));
    let url = p.path.unwrap_or("");
    if url.len() > max_url {
        return Err(NoHead::Refuse(
            414,
            format!("request URL longer than {max_url} bytes"),
        ));
    }
    let http11 = p.version == Some(1);
    let mut headers = Vec::with_capacity(p.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = !http11;
    let mut expect_continue = false;
    for h in p.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(bad(format!("header {} is not valid UTF-8", h.name)));
        };
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(bad("more than one Content-Length header".into()));
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("Content-Length {value:?} is not a number")));
            }
            length = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("Content-Length {value:?} is too large")))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(NoHead::Refuse(
                    501,
                    format!("Transfer-Encoding {value:?} is not supported (only chunked)"),
                ));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case("100-continue") {
                expect_continue = http11;
            } else {
                return Err(NoHead::Refuse(
                    417,
                    format!("Expect {value:?} is not supported"),
                ));
            }
        }
        headers.push((h.name.to_string(), value.to_string()));
    }
    if chunked && length.is_some() {
        return Err(bad(
            "both Content-Length and Transfer-Encoding: a request must have one framing".into(),
        ));
    }
    let framing = if chunked {
        Framing::Chunked(Chunk::Size)
    } else {
        Framing::Length(length.unwrap_or(0))
    };
    Ok(Head {
        method,
        url: url.to_string(),
        headers,
        http11,
        expect_continue: expect_continue && framing != Framing::Length(0),
        framing,
        keep_alive: !close,
    })
}

/// Where a connection's replies are written: its socket, its pace, and what
/// to do once it falls behind (mark it as one that may make room).
struct Out<'a> {
    conn: &'a mut Conn,
    pace: &'a mut Pace,
    /// Tells the registry the client fell behind (true) or caught up (false).
    behind: &'a mut dyn FnMut(bool),
    said_behind: bool,
}

impl Out<'_> {
    /// Writes `bytes` in pieces, each by the deadline the connection's pace
    /// gives it; a piece that blocks long enough to put the client behind
    /// marks it so then, while it goes on waiting (h112 M1), and a client
    /// that catches up is marked back (M2).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(ONE_WRITE_MAX) {
            let began = Instant::now();
            let by = self.pace.deadline(piece.len(), began);
            let mut rest = piece;
            let mut wrote = if self.said_behind {
                self.conn.write_by(&mut rest, by)
            } else {
                let at = self.pace.behind_at(began, by);
                self.conn.write_by(&mut rest, at)
            };
            if !self.said_behind
                && matches!(&wrote, Err(e) if e.kind() == io::ErrorKind::TimedOut)
                && Instant::now() < by
            {
                self.mark(true);
                wrote = self.conn.write_by(&mut rest, by);
            }
            self.pace.spent(began, Instant::now());
            if self.pace.behind() != self.said_behind {
                self.mark(self.pace.behind());
            }
            wrote?;
        }
        Ok(())
    }

    fn mark(&mut self, behind: bool) {
        self.said_behind = behind;
        (self.behind)(behind);
    }
}

/// Writes one response: a fixed body with its length, or a stream as chunks
/// flushed as they come, each write held to the connection's pace.
fn write_response(
    w: &mut Out<'_>,
    resp: Response,
    keep: bool,
    head_only: bool,
    http11: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    // `nosniff` on every reply: a browser never runs a body a drone or an
    // upload controls (a log, a binary package) as a script, which the
    // dashboard's `script-src 'self'` alone would allow.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type
    );
    for (k, v) in &resp.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    match resp.body {
        ResponseBody::Bytes(body) => {
            let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
            let body: &[u8] = if head_only { &[] } else { &body };
            if body.len() <= ONE_WRITE_MAX {
                out.extend_from_slice(body);
                return w.send(&out);
            }
            w.send(&out)?;
            w.send(body)
        }
        ResponseBody::Sized(reader, len) => {
            let _ = write!(out, "Content-Length: {len}\r\n\r\n");
            w.send(&out)?;
            if head_only {
                return Ok(());
            }
            let mut reader = reader.take(len);
            let mut buf = vec![0u8; ONE_WRITE_MAX];
            let mut sent = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                w.send(&buf[..n])?;
                sent += n as u64;
            }
            if sent < len {
                // The file shrank under us: the promised length cannot be kept.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than its Content-Length",
                ));
            }
            Ok(())
        }
        ResponseBody::Stream(mut reader) => {
            if http11 {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            // A stream is never cached, unless its reply says more itself.
            if !resp
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("Cache-Control"))
            {
                out.extend_from_slice(b"Cache-Control: no-cache\r\n");
            }
            out.extend_from_slice(b"\r\n");
            w.send(&out)?;
            // A reply to HEAD ends with its head: a last chunk sent after
            // it was read as the start of the next reply on the connection.
            if head_only {
                return Ok(());
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if !http11 {
                    w.send(&buf[..n])?;
                    continue;
                }
                let mut chunk = Vec::with_capacity(n + 16);
                let _ = write!(chunk, "{n:x}\r\n");
                chunk.extend_from_slice(&buf[..n]);
                chunk.extend_from_slice(b"\r\n");
                w.send(&chunk)?;
            }
            if http11 {
                w.send(b"0\r\n\r\n")
            } else {
                Ok(())
            }
        }
    }
}

/// Before closing after an answer: stop writing, then read and discard what
/// the client still sends for a moment, so it sees the answer instead of a
/// reset.
fn linger(conn: &mut Conn) {
    let _ = conn.stream.shutdown_write();
    let until = Instant::now() + Duration::from_millis(300);
    let mut sink = [0u8; 8192];
    let mut total = 0usize;
    while total < 1 << 20 {
        match conn.read_some(&mut sink, until) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
