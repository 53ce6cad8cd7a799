//! Admin endpoints need the admin token (never open by default). Drone
//! endpoints are `identity.rs`.

use super::front::Request;
use super::http::{header, ApiError};
use std::io::Write;
use std::path::Path;

/// The token a request carries: `Authorization: Bearer …` or v3's `X-Admin-Key`.
fn presented<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    if let Some(v) = header(req, "Authorization") {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim());
        }
    }
    header(req, "X-Admin-Key").map(str::trim)
}

fn matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| constant_time_eq::constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

pub(crate) fn require_admin(req: &Request, token: &str) -> Result<(), ApiError> {
    match presented(req) {
        None => Err(ApiError::new(
            401,
            "admin endpoint: send `Authorization: Bearer <token>` (the token is in the server's admin.token file)",
        )),
        Some(_) if !matches(presented(req), token) => {
            Err(ApiError::new(403, "admin token does not match"))
        }
        Some(_) => Ok(()),
    }
}

/// A read when the operator set `read_token`: that token or the admin
/// token (an operator's CLI and dashboard hold the latter).
pub(crate) fn require_reader(
    req: &Request,
    read_token: Option<&str>,
    admin: &str,
) -> Result<(), ApiError> {
    let Some(read) = read_token else {
        return Ok(());
    };
    let given = presented(req);
    if given.is_none() {
        return Err(ApiError::new(
            401,
            "this server's reads need a token (read_token is set): send `Authorization: Bearer \
             <read token or admin token>` (the CLI sends $SWARM_READ_TOKEN)",
        ));
    }
    if matches(given, read) || matches(given, admin) {
        Ok(())
    } else {
        Err(ApiError::new(403, "read token does not match"))
    }
}

/// The admin token in force: the configured one, else the one in `file`,
/// else a new random one written to `file` with mode 0600.
pub fn resolve_admin_token(
    configured: Option<&str>,
    file: &Path,
) -> std::io::Result<(String, TokenSource)> {
    if let Some(t) = configured.filter(|t| !t.trim().is_empty()) {
        return Ok((t.trim().to_string(), TokenSource::Configured));
    }
    let mut empty = false;
    match crate::regular_file::read_small_text(file, crate::regular_file::MAX_TOKEN_FILE_BYTES) {
        Ok(text) if !text.trim().is_empty() => {
            let token = text.trim();
            if let Some(why) = crate::client::unsendable_token(token) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the admin token there {why}"),
                ));
            }
            return Ok((token.to_string(), TokenSource::File));
        }
        // Missing or empty: generate one below.
        Ok(_) => empty = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Unreadable (another user's data dir): say so, never "file exists".
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token = hex::encode(bytes);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    if empty {
        opts.write(true).truncate(true);
    } else {
        opts.write(true).create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(file)?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    Ok((token, TokenSource::Generated))
}

/// Where the admin token came from, for the startup log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// From the configuration or environment.
    Configured,
    /// Read from the token file.
    File,
    /// Generated now and written to the token file.
    Generated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_token_file_is_reported_as_such_not_as_file_exists() {
        // Root reads every file, so stand in for another user's 0600 file
        // with one that cannot be read for another reason: the read error
        // comes back as it is, and nothing tries to create the file over it
        // (which said "File exists (os error 17)").
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("admin.token");
        std::fs::create_dir(&file).expect("a directory where the file goes");
        let e = resolve_admin_token(None, &file).expect_err("unreadable");
        assert_ne!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert!(!e.to_string().contains("os error 17"), "{e}");
    }

    #[test]
    fn generated_token_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("admin.token");
        let (t1, s1) = resolve_admin_token(None, &file).expect("generate");
        assert_eq!(s1, TokenSource::Generated);
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, s2) = resolve_admin_token(None, &file).expect("read");
        assert_eq!((t2.as_str(), s2), (t1.as_str(), TokenSource::File));
        let (t3, s3) = resolve_admin_token(Some("x"), &file).expect("configured");
        assert_eq!((t3.as_str(), s3), ("x", TokenSource::Configured));
        assert!(matches(Some("abc"), "abc"));
        assert!(!matches(Some("abd"), "abc"));
        assert!(!matches(None, "abc"));
    }

    #[test]
    fn a_hand_edited_token_no_client_can_send_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "adm\x08in-secret\n").expect("write");
        let e = resolve_admin_token(None, &file).expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("U+0008"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        // Not replaced by a generated one: the operator's file is theirs.
        let kept = std::fs::read_to_string(&file).expect("read");
        assert_eq!(kept, "adm\x08in-secret\n");
    }
}
