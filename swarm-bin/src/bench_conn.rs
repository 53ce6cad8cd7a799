//! A lean HTTP/1.1 keep-alive connection for `swarm bench`: a load
//! generator must cost less than the server it measures. ureq spends about
//! as much CPU per request as the server does, which on a 2-core machine
//! halves what the server can show; this writes a fixed request and reads
//! the response by its Content-Length, nothing more. Benchmarks only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One kept-alive connection to the server.
pub(crate) struct BenchConn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl BenchConn {
    pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<BenchConn> {
        let writer = TcpStream::connect(addr)?;
        writer.set_nodelay(true)?;
        writer.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(BenchConn {
            addr,
            reader,
            writer,
            line: String::new(),
        })
    }

    /// Sends one request and returns (status, body). Reconnects once if the
    /// server closed the kept-alive connection.
    pub(crate) fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        match self.call_once(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                *self = BenchConn::connect(self.addr)?;
                self.call_once(method, path, body)
            }
        }
    }

    fn call_once(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.writer.write_all(&req)?;
        self.line.clear();
        self.reader.read_line(&mut self.line)?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {:?}", self.line)))?;
        let mut len = 0usize;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                return Err(std::io::Error::other("connection closed in the headers"));
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut out = vec![0u8; len];
        self.reader.read_exact(&mut out)?;
        Ok((status, out))
    }
}
