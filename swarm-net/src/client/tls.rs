//! https for the CLI and the agent: rustls with the system's CA store, or
//! only the CA certificates of `--ca FILE` (a private CA), and TLS failures
//! told in words that lead to the fix.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Why the CA file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("CA file {}: {cause}", path.display())]
pub struct CaFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub cause: String,
}

/// The TLS settings of a client: the system's CA store, or only the CAs
/// of one PEM file.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the system's CA store (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`); where the system has none, Mozilla's bundled roots.
    pub fn system() -> TlsClient {
        static SYSTEM: OnceLock<TlsClient> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::debug!(
                        errors = found.errors.len(),
                        "no CA certificates in the system store; using the bundled Mozilla roots"
                    );
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                TlsClient::with_roots(roots)
            })
            .clone()
    }

    /// Trusts only the CA certificates in `path` (PEM; several may follow
    /// each other), e.g. the private CA that signed `swarm serve`'s
    /// certificate.
    pub fn from_ca_file(path: &Path) -> Result<TlsClient, CaFileError> {
        let err = |cause: String| CaFileError {
            path: path.to_path_buf(),
            cause,
        };
        // An operator's file: a FIFO held the start, /dev/zero filled memory (h15).
        let pem = crate::regular_file::read_small_text(path, crate::regular_file::MAX_PEM_BYTES)
            .map_err(|e| err(e.to_string()))?
            .into_bytes();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(err(
                "no CERTIFICATE block in it (expected the PEM certificate of the CA that signed the server's certificate)".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
        }
        Ok(TlsClient::with_roots(roots))
    }

    /// [`TlsClient::from_ca_file`] when a file is named, else [`TlsClient::system`].
    pub fn load(ca_file: Option<&Path>) -> Result<TlsClient, CaFileError> {
        match ca_file {
            Some(path) => TlsClient::from_ca_file(path),
            None => Ok(TlsClient::system()),
        }
    }

    fn with_roots(roots: RootCertStore) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// The rustls configuration, for ureq.
    pub(crate) fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// Says what a TLS failure means and what to do.
pub(crate) fn explain(e: &rustls::Error, url: &str) -> String {
    let host = host_of(url);
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "the server's TLS certificate is signed by a CA this client does not trust: pass --ca FILE with the certificate of the CA that signed it (the agent: --ca or `ca` in [drone]), or add that CA to the system store".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let presented = match c {
                    CertificateError::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                        format!(" (it names {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "the server's TLS certificate is not valid for {host}{presented}: use a URL with a name the certificate was issued for, or reissue it with {host} in its subjectAltName"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's TLS certificate has expired: renew it (tls_cert) and restart swarm serve".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's TLS certificate is not valid yet: check the clocks of both machines".into()
            }
            other => format!("the server's TLS certificate was refused: {other:?}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "{host} did not answer in TLS; it probably speaks plain http: use an http:// URL, or set tls_cert and tls_key on the server"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the server ended the TLS handshake with the alert {alert:?}")
        }
        rustls::Error::PeerIncompatible(why) => {
            format!("the server's TLS is incompatible with this client: {why:?}")
        }
        other => format!("TLS failed: {other}"),
    }
}

/// The host of a URL, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_ca_says_to_pass_the_ca_file() {
        let text = explain(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "https://binhost:8100",
        );
        assert!(text.contains("--ca FILE"), "{text}");
    }

    #[test]
    fn a_name_mismatch_names_the_host() {
        let text = explain(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "https://binhost.lan:8100/api",
        );
        assert!(text.contains("not valid for binhost.lan"), "{text}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = TlsClient::from_ca_file(&path).expect_err("no certificate");
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        let missing = TlsClient::from_ca_file(&dir.path().join("nope.pem")).expect_err("missing");
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
    }
}
