//! What `swarm config check` can tell about a start without making anything:
//! the files `serve` reads are there and are files, the places it writes are
//! directories or can be made. A check that passed a config `serve` then
//! refused at start (a missing keyring, a database path that is a directory;
//! h13) was no check.

use std::path::{Path, PathBuf};
use swarm_net::settings::Settings;

/// Each thing `serve` would refuse at start, in words that name the key.
pub(crate) fn problems(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(path) = &s.binpkg_keyring {
        if let Err(why) = swarm_net::binpkg::signature::Keyring::open(path) {
            out.push(why);
        }
    }
    if let Some(path) = &s.binhost_header_from {
        if let Err(why) = swarm_net::binhost::index::header_from_file(path) {
            out.push(format!("binhost_header_from {}: {why}", path.display()));
        }
    }
    if s.admin_token.is_none() {
        out.extend(file_problem("admin_token_file", &s.admin_token_file));
    }
    out.extend(file_problem("db_path", &s.db_path));
    let binhost = s
        .binhost_path
        .clone()
        .unwrap_or_else(|| s.data_dir.join("binhost"));
    for (key, dir) in [
        ("data_dir", &s.data_dir),
        ("staging_path", &s.staging_path),
        ("binhost_path", &binhost),
    ] {
        out.extend(dir_problem(key, dir));
    }
    out
}

/// A file `serve` opens or makes: a file where it is, or a directory to
/// make it in.
fn file_problem(key: &str, path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!("{key} {} is not a regular file", path.display())),
        Err(_) => makeable(key, path),
    }
}

/// A directory `serve` uses or makes.
fn dir_problem(key: &str, path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some(format!("{key} {} is not a directory", path.display())),
        Err(_) => makeable(key, path),
    }
}

/// Whether `path` can be made: its nearest existing ancestor is a directory.
fn makeable(key: &str, path: &Path) -> Option<String> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    let ancestor = absolute.ancestors().skip(1).find(|a| a.exists())?;
    (!ancestor.is_dir()).then(|| {
        format!(
            "{key} {} cannot be made: {} is not a directory",
            path.display(),
            ancestor.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::settings::{ConfigFile, LoadRequest};

    fn settings(toml: &str, dir: &Path) -> Settings {
        let file = dir.join("swarm.toml");
        std::fs::write(&file, toml).expect("write");
        let mut req = LoadRequest::new(None, std::iter::empty());
        req.config = ConfigFile::Explicit(file);
        req.running_as_root = false;
        Settings::load(&req).expect("loads").settings
    }

    #[test]
    fn what_serve_would_refuse_at_start_is_found_beforehand() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().display();
        let a_file = dir.path().join("a-file");
        std::fs::write(&a_file, "x").expect("write");
        let good = format!("data_dir = \"{d}/data\"\n");
        assert_eq!(problems(&settings(&good, dir.path())), Vec::<String>::new());
        for (toml, says) in [
            (
                "binpkg_keyring = \"/nonexistent/keyring\"\nrequire_signed = false\n",
                "binpkg_keyring",
            ),
            (
                "binhost_header_from = \"/nonexistent/Packages\"\n",
                "binhost_header_from",
            ),
            (
                "binhost_header_from = \"/dev/zero\"\n",
                "not a regular file",
            ),
            ("admin_token_file = \"{d}\"\n", "admin_token_file"),
            ("db_path = \"{d}\"\n", "db_path"),
            ("staging_path = \"{d}/a-file/staging\"\n", "staging_path"),
            ("binhost_path = \"{d}/a-file\"\n", "binhost_path"),
        ] {
            let toml = good.clone() + &toml.replace("{d}", &d.to_string());
            let found = problems(&settings(&toml, dir.path()));
            assert!(
                found.len() == 1 && found[0].contains(says),
                "{toml}: {found:?}"
            );
        }
    }
}
