//! What a command swarm starts (a build, the Portage sync, the environment
//! fingerprint) must not inherit from it.

use std::process::Command;

/// Variables that carry a credential swarm was given. A builder runs an
/// ebuild's code, and whatever it prints lands in a build log the server
/// serves to any reader: `SWARM_DRONE_TOKEN` in its environment was a
/// stolen drone.
const SECRETS: [&str; 2] = ["SWARM_DRONE_TOKEN", "SWARM_ADMIN_TOKEN"];

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
}
