//! TLS on the front door: `swarm serve` terminates TLS itself (`tls_cert`,
//! `tls_key`) with rustls over the same blocking connection threads, so the
//! limits and timeouts of plain HTTP hold over TLS too.
//!
//! The handshake runs on the connection's own thread (never the acceptor's)
//! under the header timeout: a client that connects and sends nothing, or
//! trickles its hello, is dropped like one that trickles its headers. A
//! client that speaks plain HTTP to the TLS port gets a plain-text 400 that
//! says to use https, not a TLS alert it cannot read.

use super::socket::{Stream, TlsSocket};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A certificate and key, loaded and checked, ready to serve TLS with.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs.
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The file could not be read or holds no PEM item of the kind needed.
    #[error("{what} {}: {cause}", path.display())]
    File {
        /// `tls_cert` or `tls_key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, an
    /// unsupported key type).
    #[error("tls_cert {} with tls_key {}: {cause}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's words.
        cause: String,
    },
}

impl TlsServer {
    /// Loads a PEM certificate chain (the server's certificate first, then
    /// intermediates) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsServer, TlsSetupError> {
        let file_err = |what, path: &Path, cause: String| TlsSetupError::File {
            what,
            path: path.to_path_buf(),
            cause,
        };
        // Read first so a missing file says so, not "no certificate found".
        // Operators' files: a FIFO held the start, /dev/zero filled memory (h15).
        let pem = |path: &Path| {
            crate::regular_file::read_small_text(path, crate::regular_file::MAX_PEM_BYTES)
                .map(String::into_bytes)
                .map_err(|e| e.to_string())
        };
        let cert_pem = pem(cert).map_err(|e| file_err("tls_cert", cert, e))?;
        let key_pem = pem(key).map_err(|e| file_err("tls_key", key, e))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| file_err("tls_cert", cert, format!("not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(file_err(
                "tls_cert",
                cert,
                "no CERTIFICATE block in it (expected a PEM certificate chain, server certificate first)".into(),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            file_err(
                "tls_key",
                key,
                format!("no private key in it (expected a PEM PKCS#8, RSA or EC private key): {e}"),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
            .map_err(|e| TlsSetupError::Pair {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                cause: e.to_string(),
            })?;
        Ok(TlsServer {
            config: Arc::new(config),
        })
    }
}

/// Why a connection ended before its handshake did.
pub(super) enum NoHandshake {
    /// The client closed, or broke the protocol: nothing to answer.
    Gone(String),
    /// The deadline passed.
    TimedOut,
    /// The client spoke plain HTTP; it was told to use https.
    PlainHttp,
}

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Runs the server side of the handshake on `sock` until `deadline`.
pub(super) fn accept(
    sock: TcpStream,
    tls: &TlsServer,
    deadline: Instant,
) -> Result<Stream, NoHandshake> {
    let set_deadline = |sock: &TcpStream| -> Result<(), NoHandshake> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NoHandshake::TimedOut);
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| NoHandshake::Gone(e.to_string()))
    };
    set_deadline(&sock)?;
    let mut first = [0u8; 1];
    match sock.peek(&mut first) {
        Ok(0) => return Err(NoHandshake::Gone("closed before a handshake".into())),
        Ok(_) if first[0] != HANDSHAKE_RECORD => {
            tell_plain_client(sock);
            return Err(NoHandshake::PlainHttp);
        }
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(NoHandshake::TimedOut),
        Err(e) => return Err(NoHandshake::Gone(e.to_string())),
    }
    let conn = ServerConnection::new(tls.config.clone())
        .map_err(|e| NoHandshake::Gone(format!("cannot start TLS: {e}")))?;
    // The handshake's writes are small; its reads end by the deadline.
    sock.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now())))
        .map_err(|e| NoHandshake::Gone(e.to_string()))?;
    let sock = TlsSocket {
        sock,
        deadline: Some(deadline),
        write_deadline: None,
        write_armed: None,
    };
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        match stream.conn.complete_io(&mut stream.sock) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(NoHandshake::TimedOut),
            Err(e) => return Err(NoHandshake::Gone(e.to_string())),
        }
    }
    Ok(Stream::Tls(Box::new(stream)))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A plain-HTTP request on the TLS port: a readable 400, then close.
fn tell_plain_client(mut sock: TcpStream) {
    let body = r#"{"error":"this server speaks https: use an https:// URL (with --ca FILE if its certificate is from a private CA)"}"#;
    let _ = write!(
        sock,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.flush();
    let _ = sock.shutdown(Shutdown::Write);
    // Read what the client still sends for a moment, so it sees the answer
    // instead of a reset.
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_millis(300)));
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while total < 64 * 1024 {
        match io::Read::read(&mut sock, &mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
