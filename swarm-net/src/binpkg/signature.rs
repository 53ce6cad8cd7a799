//! A gpkg's OpenPGP signature checked against the operator's keyring
//! (`binpkg_keyring`), for drones that build with `FEATURES=binpkg-signing`.
//!
//! Portage clear-signs a gpkg's Manifest, and the Manifest holds the size and
//! digests of every other member (the metadata and image archives and their
//! detached `.sig` files). [`inspect`](super::inspect) already checks every
//! member against the Manifest, so a Manifest whose signature verifies, and
//! whose signed text is the text the records were read from, authenticates the
//! whole package.
//!
//! The signature itself is checked by GnuPG's `gpgv` (a verify-only tool that
//! trusts exactly the keys of the keyring it is given), run with a deadline,
//! never by OpenPGP code of our own.

use super::manifest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most Manifest bytes read: Portage's are a few KiB.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// `gpgv` on one small Manifest takes milliseconds; a stuck one is killed.
const GPGV_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a package's signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The package carries no signature at all.
    #[error(
        "the package is not signed (require_signed = true; build with FEATURES=binpkg-signing)"
    )]
    Unsigned,
    /// `gpgv` said no.
    #[error("its signature does not verify against binpkg_keyring {keyring}: {why}")]
    Rejected {
        /// The configured keyring.
        keyring: PathBuf,
        /// gpgv's verdict in words.
        why: String,
    },
    /// The signed text is not the text the Manifest's records were read from.
    #[error("its Manifest has text outside the signed part ({0})")]
    UnsignedText(String),
    /// Something on the server side failed (gpgv missing, a temp file).
    #[error("cannot check the signature: {0}")]
    Check(String),
}

impl SignatureError {
    /// The HTTP status of an upload refused for this reason.
    pub fn status(&self) -> u16 {
        match self {
            SignatureError::Check(_) => 500,
            _ => 422,
        }
    }
}

/// The operator's keyring and the `gpgv` that checks against it.
#[derive(Clone, Debug)]
pub struct Keyring {
    keyring: PathBuf,
    gpgv: PathBuf,
}

/// Who signed a package that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The signing key's fingerprint (`VALIDSIG`).
    pub fingerprint: String,
}

impl Keyring {
    /// Checks the keyring is readable and `gpgv` is installed, so a bad
    /// configuration fails at start rather than at the first upload.
    pub fn open(keyring: &Path) -> Result<Keyring, String> {
        let keyring = std::path::absolute(keyring)
            .map_err(|e| format!("binpkg_keyring {}: {e}", keyring.display()))?;
        let meta = std::fs::metadata(&keyring)
            .map_err(|e| format!("binpkg_keyring {}: {e}", keyring.display()))?;
        if !meta.is_file() || meta.len() == 0 {
            return Err(format!(
                "binpkg_keyring {} is not a keyring file (make one with `gpg --export KEYID > FILE`)",
                keyring.display()
            ));
        }
        let gpgv = find_in_path("gpgv").ok_or_else(|| {
            "binpkg_keyring is set but `gpgv` is not installed (Debian: apt install gpgv; Gentoo: app-crypt/gnupg)"
                .to_string()
        })?;
        Ok(Keyring { keyring, gpgv })
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.keyring
    }

    /// Verifies the signed Manifest of the gpkg at `path` (already validated
    /// by `inspect`). `Ok(None)`: the package is not signed.
    pub fn verify(&self, path: &Path) -> Result<Option<Signer>, SignatureError> {
        let Some(text) = read_manifest(path)? else {
            return Ok(None);
        };
        if !text.contains(manifest::SIGNED_HEAD) {
            return Ok(None);
        }
        let scratch = tempfile::tempdir().map_err(|e| SignatureError::Check(e.to_string()))?;
        let input = scratch.path().join("Manifest");
        let output = scratch.path().join("signed");
        std::fs::write(&input, &text).map_err(|e| SignatureError::Check(e.to_string()))?;
        let argv: Vec<String> = vec![
            self.gpgv.to_string_lossy().into_owned(),
            "--homedir".into(),
            scratch.path().to_string_lossy().into_owned(),
            "--keyring".into(),
            self.keyring.to_string_lossy().into_owned(),
            "--status-fd".into(),
            "1".into(),
            "--output".into(),
            output.to_string_lossy().into_owned(),
            input.to_string_lossy().into_owned(),
        ];
        let run = crate::heal::run::run(&argv, GPGV_TIMEOUT, None);
        let verdict = status_verdict(&run.stdout);
        match (&run.ended, verdict) {
            (crate::heal::run::Ended::Exited(Some(0)), Ok(signer)) => {
                let signed = std::fs::read_to_string(&output)
                    .map_err(|e| SignatureError::Check(format!("gpgv wrote no output: {e}")))?;
                let ours = manifest::signed_body(&text)
                    .map_err(|e| SignatureError::UnsignedText(e.to_string()))?;
                if signed.trim_end_matches('\n') != ours.trim_end_matches('\n') {
                    return Err(SignatureError::UnsignedText(
                        "the records read are not the text gpgv verified".into(),
                    ));
                }
                Ok(Some(signer))
            }
            (crate::heal::run::Ended::SpawnFailed(e), _) => {
                Err(SignatureError::Check(format!("cannot run gpgv: {e}")))
            }
            (crate::heal::run::Ended::TimedOut, _) => Err(SignatureError::Check(format!(
                "gpgv took over {} s",
                GPGV_TIMEOUT.as_secs()
            ))),
            (_, Err(why)) => Err(SignatureError::Rejected {
                keyring: self.keyring.clone(),
                why,
            }),
            (_, Ok(_)) => Err(SignatureError::Rejected {
                keyring: self.keyring.clone(),
                why: format!("gpgv failed: {}", run.stderr.trim()),
            }),
        }
    }
}

/// What the server asks of an uploaded package's signature.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Signed packages are verified against it; `None`: signatures are not checked.
    pub keyring: Option<Keyring>,
    /// Unsigned packages are refused (needs a keyring).
    pub require_signed: bool,
}

impl Policy {
    /// The signer of the package at `path`, `None` when it is unsigned and
    /// that is allowed; an error when it must not be staged.
    pub fn check(&self, path: &Path) -> Result<Option<Signer>, SignatureError> {
        let signer = match &self.keyring {
            Some(k) => k.verify(path)?,
            None => None,
        };
        if signer.is_none() && self.require_signed {
            return Err(SignatureError::Unsigned);
        }
        Ok(signer)
    }
}

/// Reads gpgv's `--status-fd` lines: a `VALIDSIG` and no complaint is a
/// signer; anything else is the reason in words.
fn status_verdict(status: &str) -> Result<Signer, String> {
    let mut valid = None;
    let mut unchecked = None;
    for line in status.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("[GNUPG:]") {
            continue;
        }
        let what = words.next().unwrap_or_default();
        let key = words.next().unwrap_or_default();
        match what {
            "VALIDSIG" => valid = Some(key.to_string()),
            "BADSIG" => {
                return Err(format!(
                    "BAD signature by key {key}: the Manifest was changed after signing"
                ))
            }
            "NO_PUBKEY" => return Err(format!("signed by key {key}, which is not in the keyring")),
            "EXPKEYSIG" => return Err(format!("signed by key {key}, which has expired")),
            "REVKEYSIG" => return Err(format!("signed by key {key}, which was revoked")),
            "EXPSIG" => return Err("the signature has expired".into()),
            // NO_PUBKEY follows with the better reason when that is why.
            "ERRSIG" => unchecked = Some(format!("the signature by key {key} cannot be checked")),
            _ => {}
        }
    }
    if let Some(why) = unchecked {
        return Err(why);
    }
    valid
        .map(|fingerprint| Signer { fingerprint })
        .ok_or_else(|| "gpgv found no valid signature".into())
}

/// The Manifest member of a gpkg (`<basename>/Manifest`), bounded; `None` for
/// a package without one (a `.tbz2`).
fn read_manifest(path: &Path) -> Result<Option<String>, SignatureError> {
    let file = std::fs::File::open(path)
        .map_err(|e| SignatureError::Check(format!("{}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(file);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(_) => return Ok(None),
    };
    for entry in entries {
        let Ok(entry) = entry else { return Ok(None) };
        let is_manifest = entry.path().ok().is_some_and(|p| {
            p.file_name().is_some_and(|n| n == "Manifest") && p.components().count() == 2
        });
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        entry
            .take(MAX_MANIFEST_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| SignatureError::UnsignedText(format!("Manifest is not text: {e}")))?;
        return Ok(Some(text));
    }
    Ok(None)
}

/// `name` on `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_decide() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 62D4 swarm\n[GNUPG:] VALIDSIG 001BB8C3 2026-12-02 1 0 4 0 22 10 01 001BB8C3\n";
        assert_eq!(
            status_verdict(good),
            Ok(Signer {
                fingerprint: "001BB8C3".into()
            })
        );
        for (status, why) in [
            ("[GNUPG:] BADSIG 62D4 x\n", "BAD signature"),
            (
                "[GNUPG:] ERRSIG 62D4 22 10 01 1 9 -\n[GNUPG:] NO_PUBKEY 62D4\n",
                "not in the keyring",
            ),
            ("[GNUPG:] ERRSIG 62D4 1 10 01 1 4 -\n", "cannot be checked"),
            ("[GNUPG:] NO_PUBKEY 62D4\n", "not in the keyring"),
            (
                "[GNUPG:] EXPKEYSIG 62D4 x\n[GNUPG:] VALIDSIG 1\n",
                "expired",
            ),
            ("[GNUPG:] REVKEYSIG 62D4 x\n", "revoked"),
            ("", "no valid signature"),
        ] {
            let err = status_verdict(status).expect_err(status);
            assert!(err.contains(why), "{status:?}: {err}");
        }
    }
}
