//! The names a browser may reach the server under.
//!
//! A page on another site cannot drive the API (`Origin`, `Sec-Fetch-Site`), but a page whose
//! own name resolves to this server (DNS rebinding: `evil.example` answered first with the
//! attacker's address, then with 127.0.0.1 or the farm's) is same-origin to the browser, and
//! could read whatever reads are open, from the browser of anyone on the farm's network or of
//! the build host's own desktop (h30 F4). So a browser's request must name the server by an
//! address, `localhost`, this machine's host name, or a name the operator allowed
//! (`allowed_hosts`). Drones and the CLI are not browsers and are not asked.

use std::net::IpAddr;

/// The most `allowed_hosts` entries: names an operator opens the dashboard under, not a zone.
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// One `allowed_hosts` entry, lowercased: `*` (any name), `*.example.org` (its subdomains), or
/// a host name.
pub fn check_entry(entry: &str) -> Result<String, String> {
    if entry.trim() == "*" {
        return Ok("*".into());
    }
    let e = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = e.strip_prefix("*.").unwrap_or(&e);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{entry:?} is not a host name: use names such as \"swarm.example.org\", \
             \"*.lan\" for every name under lan, or \"*\" for any"
        ));
    }
    Ok(e)
}

/// This machine's host name, which a browser on the network may use for it.
pub fn machine_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    check_entry(name.trim()).ok().filter(|n| n != "*")
}

/// The names a browser's request may carry in `Host`.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    any: bool,
    names: Vec<String>,
    suffixes: Vec<String>,
}

impl AllowedHosts {
    /// `configured` (checked entries) and this machine's name with its `.local` (mDNS: a
    /// name no site on the Internet can hold).
    pub fn new(configured: &[String], machine: Option<&str>) -> AllowedHosts {
        let mut allowed = AllowedHosts::default();
        for e in configured {
            match e.strip_prefix("*.") {
                _ if e == "*" => allowed.any = true,
                Some(suffix) => allowed.suffixes.push(format!(".{suffix}")),
                None => allowed.names.push(e.clone()),
            }
        }
        if let Some(m) = machine {
            allowed.names.push(m.to_owned());
            allowed.names.push(format!("{m}.local"));
        }
        allowed
    }

    /// Whether `host` (a `Host` header's host part, without its port) names this server: an
    /// address (no one's DNS answers for it), `localhost` and its subdomains (browsers resolve
    /// them to loopback themselves), or an allowed name.
    pub fn admits(&self, host: &str) -> bool {
        let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        self.any
            || bare.parse::<IpAddr>().is_ok()
            || h == "localhost"
            || h.ends_with(".localhost")
            || self.names.contains(&h)
            || self.suffixes.iter().any(|s| h.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_allowed_names_pass_and_other_names_do_not() {
        let allowed = AllowedHosts::new(
            &["swarm.example.org".into(), "*.lan".into()],
            Some("buildhost"),
        );
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "localhost",
            "dash.localhost",
            "SWARM.example.org.",
            "farm.lan",
            "a.b.lan",
            "buildhost",
            "buildhost.local",
        ] {
            assert!(allowed.admits(ok), "{ok} refused");
        }
        for no in [
            "evil.example",
            "lan",
            "evilan",
            "swarm.example.org.evil.example",
            "buildhost.evil.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!allowed.admits(no), "{no} admitted");
        }
        assert!(AllowedHosts::new(&["*".into()], None).admits("anything.example"));
        assert!(!AllowedHosts::new(&[], None).admits("buildhost"));
    }

    #[test]
    fn entries_are_host_names_or_patterns() {
        assert_eq!(
            check_entry(" Swarm.Example.org. "),
            Ok("swarm.example.org".into())
        );
        assert_eq!(check_entry("*.lan"), Ok("*.lan".into()));
        assert_eq!(check_entry("*"), Ok("*".into()));
        for bad in [
            "", "*.", "a b", "http://x", "x:8100", "-x.lan", "*.*.lan", "é.lan",
        ] {
            let e = check_entry(bad).expect_err(bad);
            assert!(e.contains("is not a host name"), "{e}");
        }
    }
}
