//! The drone a probe or an escalation acts on, and the checks its two values
//! pass before they may go into a command (they come from the network).

use swarm_core::DroneName;

/// A drone to probe or act on: what the registration said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The drone.
    pub drone: DroneName,
    /// Its address from registration (v3's `ip`): an IP address or a host name.
    pub address: String,
}

/// A value that may not go into a command, or a thread that would not start.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    /// The drone name has characters that a remote shell would interpret.
    #[error("refusing to put drone name {name:?} into a command: {reason}")]
    BadDrone {
        /// The name as registered.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address is neither an IP address nor a host name.
    #[error("refusing to put address {address:?} of drone {drone} into a command: {reason}")]
    BadAddress {
        /// The drone it belongs to.
        drone: String,
        /// The address as registered.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OS would not give us a thread.
    #[error(
        "cannot start a thread for the {what}: {source}; the system is out of threads or memory"
    )]
    Thread {
        /// What the thread was for.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks the two values a template may receive. Both come from a drone's
/// registration, i.e. from the network, and `ssh` hands its remote arguments
/// to a remote shell: so the name may only hold letters, digits and `._+@-`,
/// the address must be an IP address or a host name, and neither may start
/// with `-` (it would be read as an option).
pub fn check_target(target: &ProbeTarget) -> Result<(), HealError> {
    let name = target.drone.as_str();
    let bad_drone = |reason| HealError::BadDrone {
        name: name.to_owned(),
        reason,
    };
    if DroneName::new(name).is_err() {
        return Err(bad_drone("not a valid drone name"));
    }
    if name.starts_with('-') {
        return Err(bad_drone(
            "it starts with '-' and would be read as an option",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+@-".contains(c))
    {
        return Err(bad_drone(
            "only letters, digits and . _ + @ - may reach a remote shell",
        ));
    }
    check_address(&target.address).map_err(|reason| HealError::BadAddress {
        drone: name.to_owned(),
        address: target.address.clone(),
        reason,
    })
}

fn check_address(address: &str) -> Result<(), &'static str> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if address.is_empty() {
        return Err("it is empty");
    }
    if address.len() > 253 {
        return Err("it is longer than a host name can be");
    }
    if address.starts_with('-') {
        return Err("it starts with '-' and would be read as an option");
    }
    let labels_ok = address.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if labels_ok {
        Ok(())
    } else {
        Err("it is neither an IP address nor a host name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, address: &str) -> Option<ProbeTarget> {
        Some(ProbeTarget {
            drone: DroneName::new(name).ok()?,
            address: address.to_owned(),
        })
    }

    fn accepted(name: &str, address: &str) -> bool {
        target(name, address).is_some_and(|t| check_target(&t).is_ok())
    }

    #[test]
    fn accepts_ordinary_names_and_addresses() {
        assert!(accepted("drone-alpha", "10.0.0.5"));
        assert!(accepted("sweeper-1.lab", "fe80::1"));
        assert!(accepted("d_2", "build-03.lan"));
    }

    #[test]
    fn refuses_values_a_remote_shell_or_ssh_would_interpret() {
        assert!(!accepted("a;reboot", "10.0.0.5"));
        assert!(!accepted("$(id)", "10.0.0.5"));
        assert!(!accepted("-oProxyCommand=x", "10.0.0.5"));
        assert!(!accepted("d1", "-oProxyCommand=touch%20x"));
        assert!(!accepted("d1", "10.0.0.5;reboot"));
        assert!(!accepted("d1", "host name"));
        assert!(!accepted("d1", ""));
        assert!(!accepted("d1", "a..b"));
    }
}
