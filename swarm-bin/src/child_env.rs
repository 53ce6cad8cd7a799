//! What a command swarm starts (a build, the Portage sync, the environment
//! fingerprint) must not inherit from it.

use std::process::Command;

/// Every variable swarm takes a credential from. A builder runs an
/// ebuild's code, and whatever it prints lands in a build log the server
/// serves to any reader: `SWARM_DRONE_TOKEN` in its environment was a
/// stolen drone. `ADMIN_SECRET` (v3's name for the admin token) and
/// `SWARM_READ_TOKEN` reached builds too (h10): a host that is server and
/// drone, or an operator's shell, has them. `tokens_swarm_reads_are_all_listed`
/// keeps the list whole.
const SECRETS: [&str; 4] = [
    "SWARM_DRONE_TOKEN",
    "SWARM_ADMIN_TOKEN",
    "SWARM_READ_TOKEN",
    "ADMIN_SECRET",
];

/// Removes [`SECRETS`] from what `cmd` inherits.
pub(crate) fn without_secrets(cmd: &mut Command) -> &mut Command {
    for var in SECRETS {
        cmd.env_remove(var);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_are_removed_and_nothing_else() {
        let mut cmd = Command::new("true");
        cmd.env("SWARM_DRONE_TOKEN", "t").env("PKGDIR", "/p");
        without_secrets(&mut cmd);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(
            envs.contains(&("SWARM_DRONE_TOKEN".into(), None)),
            "{envs:?}"
        );
        assert!(
            envs.contains(&("SWARM_ADMIN_TOKEN".into(), None)),
            "{envs:?}"
        );
        assert!(
            envs.contains(&("PKGDIR".into(), Some("/p".into()))),
            "{envs:?}"
        );
    }

    /// Every quoted variable name in the sources that reads like a
    /// credential (`*TOKEN`, `*SECRET`) is in [`SECRETS`]: a new one added
    /// without listing it would reach the builds.
    #[test]
    fn tokens_swarm_reads_are_all_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let mut found = std::collections::BTreeSet::new();
        let mut dirs: Vec<std::path::PathBuf> =
            ["swarm-bin/src", "swarm-net/src", "swarm-store/src"]
                .iter()
                .map(|d| root.join(d))
                .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("source dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // Every `"NAME"`: a quote, capitals and underscores, a quote.
                for (at, _) in text.match_indices('"') {
                    let rest = &text[at + 1..];
                    let len = rest
                        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                        .unwrap_or(rest.len());
                    let word = &rest[..len];
                    let quoted = rest[len..].starts_with('"')
                        && word.starts_with(|c: char| c.is_ascii_uppercase());
                    if quoted && (word.ends_with("_TOKEN") || word.ends_with("_SECRET")) {
                        found.insert(word.to_string());
                    }
                }
            }
        }
        assert!(
            found.contains("SWARM_DRONE_TOKEN"),
            "the walk finds names: {found:?}"
        );
        let missing: Vec<&String> = found
            .iter()
            .filter(|n| !SECRETS.contains(&n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "credentials a child would inherit: {missing:?}"
        );
    }
}
