//! Finding the server and the admin token without flags on the server's own
//! host, and turning client errors into sentences with the next step in them.

use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_net::client::{Client, ClientError, TlsClient};

/// Where `swarm serve` listens unless told otherwise.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8100";

/// The token file's name inside a data directory.
const TOKEN_FILE_NAME: &str = "admin.token";

/// `--server` and `--timeout-s`, shared by every command that talks to the server.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServerArgs {
    /// The server's URL [default: $SWARM_URL, else v3's $SWARMV3_URL, else http://127.0.0.1:8100].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Give up on an answer after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub(crate) timeout_s: u64,
    /// For an https:// server: trust only the CA certificate(s) in this PEM
    /// file (a private CA) instead of the system's CA store [env: SWARM_CA].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
}

/// The server plus the admin token, for commands that change things.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// The admin token (visible in `ps`: prefer --token-file or $SWARM_ADMIN_TOKEN)
    /// [default: $SWARM_ADMIN_TOKEN, else the server's admin.token file on this host].
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub(crate) token: Option<String>,
    /// Read the admin token from this file [env: SWARM_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The server's data directory (`swarm serve --data-dir DIR`): admin
    /// commands read DIR/admin.token; `swarm sql` reads DIR/swarm.db directly
    /// [env: SWARM_DATA_DIR].
    #[arg(long, value_name = "DIR", conflicts_with = "token_file")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// The variables the CLI reads for a server and its tokens.
const CLI_VARS: [&str; 8] = [
    "SWARM_URL",
    "SWARMV3_URL",
    "SWARM_CA",
    "SWARM_READ_TOKEN",
    "SWARM_ADMIN_TOKEN",
    "ADMIN_SECRET",
    "SWARM_TOKEN_FILE",
    "SWARM_DATA_DIR",
];

/// The server URL: the flag, then `SWARM_URL`, then `SWARMV3_URL`, then the
/// default. A bare `host:port` gets `http://`.
pub(crate) fn server_url(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    let raw = flag
        .map(str::to_owned)
        .or_else(|| env("SWARM_URL"))
        .or_else(|| env("SWARMV3_URL"))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let raw = raw.trim();
    let url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    url.trim_end_matches('/').to_owned()
}

impl ServerArgs {
    /// The resolved server URL.
    pub(crate) fn url(&self) -> String {
        server_url(self.server.as_deref(), &crate::process_env::var)
    }

    /// A client without credentials, for the read endpoints; an error when
    /// the CA file cannot be used.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        crate::process_env::require_text(&CLI_VARS)?;
        let ca = self
            .ca
            .clone()
            .or_else(|| crate::process_env::var("SWARM_CA").map(PathBuf::from));
        let tls = TlsClient::load(ca.as_deref())?;
        // Reads carry a token only when the operator gave one for that
        // purpose: a token file found on this host is not sent to whatever
        // server `--server` names, and the admin token only to a server that
        // asked for a token (401).
        Ok(
            Client::new(self.url(), Duration::from_secs(self.timeout_s.max(1)))
                .with_tls(&tls)
                .with_read_token(crate::process_env::var("SWARM_READ_TOKEN"))
                .with_read_fallback(crate::process_env::var("SWARM_ADMIN_TOKEN")),
        )
    }
}

/// An admin client and where its token came from, so a refusal can say which
/// token was wrong.
pub(crate) struct AdminClient {
    pub(crate) client: Client,
    pub(crate) token_source: String,
}

impl AdminArgs {
    /// A client carrying the admin token, or an error listing where it looked.
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        crate::process_env::require_text(&CLI_VARS)?;
        let file = self
            .token_file
            .clone()
            .or_else(|| self.data_dir.as_ref().map(|d| d.join(TOKEN_FILE_NAME)));
        let (token, token_source) = find_token(
            self.token.as_deref(),
            file.as_deref(),
            &crate::process_env::var,
        )?;
        if let Some(why) = swarm_net::client::unsendable_token(token.trim()) {
            anyhow::bail!("the admin token from {token_source} {why}");
        }
        if let Some(warning) = clear_text_warning(&self.server.url()) {
            eprintln!("{warning}");
        }
        Ok(AdminClient {
            // The admin token passes where a read token is asked for too.
            client: self
                .server
                .client()?
                .with_admin_token(Some(token.clone()))
                .with_read_token(Some(token)),
            token_source,
        })
    }
}

/// What to say before the admin token goes over plain http to another
/// machine. Warned, not refused: v3 farms speak plain http on their LAN,
/// but the operator should know (h11; the agent refuses unless told).
fn clear_text_warning(url: &str) -> Option<String> {
    swarm_net::client::clear_text_host(url).map(|host| {
        format!(
            "warning: the admin token goes over plain http to {host}: anyone on the network can \
             read it and run admin actions. Use an https:// server URL (tls_cert, or a TLS proxy) \
             with --ca FILE for a private CA"
        )
    })
}

/// Where `swarm serve` keeps its token on this host, in the order it is
/// looked for: the data dir named by `$SWARM_DATA_DIR`, the system data dir,
/// the user's data dir, and `./swarm-data` (a server started here by hand).
pub(crate) fn token_candidates(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = env("SWARM_DATA_DIR") {
        paths.push(PathBuf::from(dir).join(TOKEN_FILE_NAME));
    }
    paths.push(PathBuf::from("/var/lib/swarm").join(TOKEN_FILE_NAME));
    if let Some(xdg) = env("XDG_DATA_HOME") {
        paths.push(PathBuf::from(xdg).join("swarm").join(TOKEN_FILE_NAME));
    } else if let Some(home) = env("HOME") {
        paths.push(
            PathBuf::from(home)
                .join(".local/share/swarm")
                .join(TOKEN_FILE_NAME),
        );
    }
    paths.push(PathBuf::from("swarm-data").join(TOKEN_FILE_NAME));
    paths
}

/// The admin token and a description of its source: `--token`, then
/// `--token-file` (or `--data-dir`), then `$SWARM_ADMIN_TOKEN` (or v3's
/// `$ADMIN_SECRET`), then `$SWARM_TOKEN_FILE`, then the first token file
/// that exists among [`token_candidates`].
pub(crate) fn find_token(
    flag: Option<&str>,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, String)> {
    if let Some(token) = flag {
        let token = token.trim();
        anyhow::ensure!(!token.is_empty(), "--token is empty");
        return Ok((token.to_owned(), "--token".to_owned()));
    }
    if let Some(path) = file {
        return read_token(path).map(|t| (t, format!("--token-file {}", path.display())));
    }
    for var in ["SWARM_ADMIN_TOKEN", "ADMIN_SECRET"] {
        if let Some(token) = env(var) {
            return Ok((token.trim().to_owned(), format!("${var}")));
        }
    }
    if let Some(path) = env("SWARM_TOKEN_FILE") {
        let path = PathBuf::from(path);
        return read_token(&path).map(|t| (t, format!("$SWARM_TOKEN_FILE ({})", path.display())));
    }
    let candidates = token_candidates(env);
    for path in &candidates {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                return read_token(path).map(|t| (t, path.display().to_string()));
            }
            _ => continue,
        }
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    anyhow::bail!(
        "no admin token found (looked for {}).\n\
         `swarm serve` writes admin.token into its data directory on first start: if it runs \
         with `--data-dir DIR`, pass `--data-dir DIR` here, or set SWARM_DATA_DIR=DIR \
         (or SWARM_TOKEN_FILE=DIR/admin.token) once in your shell; \
         a configured token goes in SWARM_ADMIN_TOKEN",
        looked.join(", ")
    )
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = swarm_net::regular_file::read_small_text(
        path,
        swarm_net::regular_file::MAX_TOKEN_FILE_BYTES,
    )
    .map_err(|e| token_read_error(path, e))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the admin token file {} is empty",
        path.display()
    );
    Ok(token.to_owned())
}

/// A token file that cannot be read, in words that lead to the fix.
fn token_read_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "permission denied reading the admin token file {}: run this as the user that \
             runs `swarm serve` (or root), or pass the token with --token-file or SWARM_ADMIN_TOKEN",
            path.display()
        ),
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "no admin token file at {}: is that the server's data directory? \
             (`swarm serve` logs where it wrote admin.token at start)",
            path.display()
        ),
        _ => anyhow::Error::new(e)
            .context(format!("cannot read the admin token file {}", path.display())),
    }
}

/// A read call's error, as is: the client's message already names the URL,
/// the cause and, when nothing answered, asks whether `swarm serve` runs.
pub(crate) fn read_error(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// An admin call's error; a refused token names where it came from.
pub(crate) fn admin_error(e: ClientError, token_source: &str) -> anyhow::Error {
    match e.status() {
        Some(401 | 403) => anyhow::Error::new(e).context(format!(
            "the server refused the admin token from {token_source}"
        )),
        _ => anyhow::Error::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_over_plain_http_to_another_machine_is_warned_about() {
        let warned = |url: &str| clear_text_warning(url).is_some();
        assert!(warned("http://10.0.0.5:8100"));
        assert!(warned("http://binhost.lan:8100/"));
        assert!(warned("http://127.0.0.1.evil.example:8100"));
        assert!(!warned("http://127.0.0.1:8100"));
        assert!(!warned("http://localhost:8100"));
        assert!(!warned("http://[::1]:8100"));
        assert!(!warned("https://binhost.lan"));
        let text = clear_text_warning("http://10.0.0.5:8100").unwrap_or_default();
        assert!(text.contains("to 10.0.0.5:"), "{text}");
    }
    use std::collections::BTreeMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_flag_beats_swarm_url_which_beats_the_v3_name() {
        let env = env_of(&[("SWARM_URL", "http://a:1"), ("SWARMV3_URL", "http://b:2")]);
        assert_eq!(server_url(Some("http://c:3/"), &env), "http://c:3");
        assert_eq!(server_url(None, &env), "http://a:1");
        let env = env_of(&[("SWARMV3_URL", "http://b:2")]);
        assert_eq!(server_url(None, &env), "http://b:2");
        assert_eq!(server_url(None, &env_of(&[])), DEFAULT_URL);
    }

    #[test]
    fn a_bare_host_and_port_gets_a_scheme() {
        assert_eq!(
            server_url(Some("build-host:8100"), &env_of(&[])),
            "http://build-host:8100"
        );
    }

    #[test]
    fn token_files_are_looked_for_where_the_server_writes_them() {
        let env = env_of(&[("SWARM_DATA_DIR", "/srv/swarm"), ("HOME", "/home/op")]);
        let paths = token_candidates(&env);
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "/srv/swarm/admin.token",
                "/var/lib/swarm/admin.token",
                "/home/op/.local/share/swarm/admin.token",
                "swarm-data/admin.token",
            ]
        );
        let env = env_of(&[("XDG_DATA_HOME", "/x"), ("HOME", "/home/op")]);
        assert!(token_candidates(&env).contains(&PathBuf::from("/x/swarm/admin.token")));
    }

    #[test]
    fn a_token_is_taken_from_the_flag_the_file_then_the_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("t");
        std::fs::write(&file, "  s3cret\n").expect("write");
        let env = env_of(&[("SWARM_ADMIN_TOKEN", "from-env")]);
        let (t, src) = find_token(Some("flag"), None, &env).expect("flag");
        assert_eq!((t.as_str(), src.as_str()), ("flag", "--token"));
        let (t, _) = find_token(None, Some(&file), &env).expect("file");
        assert_eq!(t, "s3cret");
        let (t, src) = find_token(None, None, &env).expect("env");
        assert_eq!(
            (t.as_str(), src.as_str()),
            ("from-env", "$SWARM_ADMIN_TOKEN")
        );
    }

    #[test]
    fn the_data_dir_token_file_is_found_without_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("admin.token"), "abc\n").expect("write");
        let data = dir.path().to_str().expect("utf-8").to_owned();
        let env = env_of(&[("SWARM_DATA_DIR", &data)]);
        let (t, src) = find_token(None, None, &env).expect("found");
        assert_eq!(t, "abc");
        assert!(src.ends_with("admin.token"), "{src}");
    }

    #[test]
    fn an_unreadable_token_file_says_permission_denied_and_what_to_do() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = token_read_error(Path::new("/srv/x/admin.token"), e).to_string();
        assert!(text.contains("permission denied"), "{text}");
        assert!(text.contains("/srv/x/admin.token"), "{text}");
        assert!(text.contains("user that runs `swarm serve`"), "{text}");
    }

    #[test]
    fn no_token_anywhere_says_how_to_point_at_the_data_dir() {
        let err =
            find_token(None, None, &env_of(&[("HOME", "/nonexistent-home")])).expect_err("none");
        let text = err.to_string();
        assert!(text.contains("--data-dir DIR"), "{text}");
        assert!(text.contains("SWARM_TOKEN_FILE"), "{text}");
    }

    #[test]
    fn swarm_token_file_names_the_token_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("t");
        std::fs::write(&file, "tok\n").expect("write");
        let f = file.to_str().expect("utf-8").to_owned();
        let (t, src) = find_token(None, None, &env_of(&[("SWARM_TOKEN_FILE", &f)])).expect("found");
        assert_eq!(t, "tok");
        assert!(src.contains("SWARM_TOKEN_FILE"), "{src}");
    }

    #[test]
    fn an_empty_token_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("empty.token");
        std::fs::write(&file, "\n").expect("write");
        let err = find_token(None, Some(&file), &env_of(&[])).expect_err("empty");
        assert!(err.to_string().contains("empty.token is empty"), "{err}");
    }
}
