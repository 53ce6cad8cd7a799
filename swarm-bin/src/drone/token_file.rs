//! The drone token file: read at start, and again when the server refuses the token, so a
//! token rotated with `swarm node enroll` reaches a running agent without a restart (its
//! spooled builds wait meanwhile, as they do for any refused credential).

use anyhow::{bail, Context};
use std::path::Path;

/// The token in `path`, trimmed; an error that names the file and the fix otherwise.
pub(crate) fn read(path: &Path) -> anyhow::Result<String> {
    let text = swarm_net::regular_file::read_small_text(
        path,
        swarm_net::regular_file::MAX_TOKEN_FILE_BYTES,
    )
    .with_context(|| format!("reading the drone token from {}", path.display()))?;
    let token = text.trim();
    // Named on purpose: an empty one is a rollout gone wrong, not "no
    // credential" (the agent ran without one; h13).
    if token.is_empty() {
        bail!(
            "the drone token file {} is empty: write the token `swarm node enroll NAME` printed \
             into it, or leave --token-file out for a farm without drone credentials",
            path.display()
        );
    }
    if let Some(why) = swarm_net::client::unsendable_token(token) {
        bail!(
            "the drone token ({}) {why}; issue a new one with `swarm node enroll NAME`",
            path.display()
        );
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn a_token_file_is_trimmed_and_an_empty_or_unsendable_one_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  tok-1\n").expect("write");
        assert_eq!(read(&path).expect("token"), "tok-1");
        std::fs::write(&path, "\n \n").expect("write");
        let e = format!("{:#}", read(&path).expect_err("empty"));
        assert!(e.contains("is empty") && e.contains("token"), "{e}");
        std::fs::write(&path, "tok\u{7}en").expect("write");
        let e = format!("{:#}", read(&path).expect_err("unsendable"));
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(!e.contains("tok\u{7}en"), "the token is not shown: {e}");
    }
}
