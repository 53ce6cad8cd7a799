//! The ureq client the CLI and the drone agent talk to the server with.
//!
//! One place turns transport failures into sentences an operator can act on
//! ("cannot reach http://127.0.0.1:8100: connection refused — is `swarm serve`
//! running?") and 4xx/5xx bodies into [`ClientError::Server`] with the
//! server's own words.

pub mod admin;
pub mod drone;
pub mod enroll;
pub mod logs;
pub mod tls;

use crate::wire::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
pub use tls::{CaFileError, TlsClient};

/// Where the server is and how to prove who we are.
#[derive(Clone)]
pub struct Client {
    base: String,
    admin_token: Option<String>,
    /// Shared by the clones of one client, and replaceable while it is in use: an agent
    /// takes up a token rotated into its token file without a restart.
    drone_token: Arc<RwLock<Option<String>>>,
    /// Sent on reads (`Auth::None`), for a server with a `read_token`.
    read_token: Option<String>,
    /// Sent on a read only once the server asked for a token (401), when
    /// there is no read token: the admin token an operator has at hand.
    read_fallback: Option<String>,
    agent: ureq::Agent,
    /// For request bodies of any size (artifacts): bounded per read and
    /// write instead of overall (see [`bulk_agent`]).
    bulk: ureq::Agent,
    timeout: Duration,
    /// The largest JSON reply read (`with_reply_cap`).
    reply_cap: u64,
}

/// The largest JSON reply a client reads by default: room for the
/// operator's biggest listings, and a bound on what a server (or whoever
/// answers in its place) can make it hold.
pub const DEFAULT_REPLY_CAP: u64 = 64 << 20;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never in logs.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No HTTP answer at all.
    #[error("cannot reach {url}: {cause}{hint}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport's words (without the URL again).
        cause: String,
        /// What to check, for the causes that have an obvious next step
        /// (" — is `swarm serve` running?" only when the connection was refused).
        hint: &'static str,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {}{}", body.error, body.field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Server {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error body.
        body: ErrorBody,
    },
    /// The answer was not the JSON we expected.
    #[error("{url}: unexpected answer: {cause}")]
    Decode {
        /// The URL.
        url: String,
        /// What did not parse.
        cause: String,
    },
}

impl ClientError {
    /// True when the server was not reached (worth retrying with backoff).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// An error status without swarm's JSON error body: something between
    /// us and swarm's handlers (a proxy, a connection torn mid-request)
    /// answered, not swarm's judgement of the request, so it is worth a retry.
    pub fn is_bare(&self) -> bool {
        matches!(self, ClientError::Server { body, .. } if body.field.is_none() && body.error == NO_DETAILS)
    }

    /// Whether the call is worth making again: nobody answered, something
    /// other than swarm answered (a bare error status, a redirect from a
    /// proxy, a success whose body is not the JSON swarm sends: a proxy's
    /// maintenance page), or swarm said it is busy or failing (408, 429,
    /// 5xx). The rest is swarm's judgement of the call. h36 saw finished
    /// builds reported as failed uploads, or dropped, for a 200 with an HTML
    /// page and for a reply cut off after the server had stored the upload.
    pub fn is_worth_retrying(&self) -> bool {
        self.is_transport()
            || self.is_bare()
            || matches!(self, ClientError::Decode { .. })
            || self
                .status()
                .is_some_and(|s| (300..400).contains(&s) || s >= 500 || s == 429 || s == 408)
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which credential a call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No credential but the read token, if set (read endpoints).
    None,
    /// The drone token, if configured.
    Drone,
    /// The admin token.
    Admin,
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:8100`, or `https://` checked
    /// against the system's CA store), with a per-request timeout.
    pub fn new(base: impl Into<String>, timeout: Duration) -> Client {
        let base = base.into().trim_end_matches('/').to_string();
        Client {
            agent: agent(timeout, &TlsClient::system()),
            bulk: bulk_agent(timeout, &TlsClient::system()),
            base,
            admin_token: None,
            drone_token: Arc::default(),
            read_token: None,
            read_fallback: None,
            timeout,
            reply_cap: DEFAULT_REPLY_CAP,
        }
    }

    /// Reads JSON replies of at most `bytes` (a drone's are small: its
    /// agent takes a few MiB, not the default's 64).
    pub fn with_reply_cap(mut self, bytes: u64) -> Client {
        self.reply_cap = bytes;
        self
    }

    /// Checks https servers against `tls` (a private CA: [`TlsClient::from_ca_file`]).
    pub fn with_tls(mut self, tls: &TlsClient) -> Client {
        self.agent = agent(self.timeout, tls);
        self.bulk = bulk_agent(self.timeout, tls);
        self
    }

    /// Sets the admin token for admin calls.
    pub fn with_admin_token(mut self, token: Option<String>) -> Client {
        self.admin_token = trimmed(token);
        self
    }

    /// Sets the token sent on reads, for a server whose reads need one.
    pub fn with_read_token(mut self, token: Option<String>) -> Client {
        self.read_token = trimmed(token);
        self
    }

    /// Sets a token sent on a read only after the server answered 401 to
    /// it without one: sent with every read, an operator's admin token went
    /// to whatever `--server` named, a mistyped one too (h10).
    pub fn with_read_fallback(mut self, token: Option<String>) -> Client {
        self.read_fallback = trimmed(token);
        self
    }

    /// Sets the drone token for drone calls.
    pub fn with_drone_token(mut self, token: Option<String>) -> Client {
        self.drone_token = Arc::new(RwLock::new(trimmed(token)));
        self
    }

    /// Replaces the drone token for every later call of this client and its clones;
    /// true when it changed.
    pub fn replace_drone_token(&self, token: Option<String>) -> bool {
        let token = trimmed(token);
        let mut held = self
            .drone_token
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *held == token {
            return false;
        }
        *held = token;
        true
    }

    /// The drone token calls carry now (a goodbye sent by a client of its own must carry
    /// the one in use, not the one the agent started with).
    pub fn drone_token(&self) -> Option<String> {
        self.drone_token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn request(&self, method: &str, path: &str, auth: Auth) -> ureq::Request {
        self.request_on(&self.agent, method, path, auth)
    }

    fn request_on(&self, on: &ureq::Agent, method: &str, path: &str, auth: Auth) -> ureq::Request {
        let mut req = on.request(method, &self.url(path));
        let token = match auth {
            Auth::None => self.read_token.clone(),
            Auth::Drone => self.drone_token(),
            Auth::Admin => self.admin_token.clone(),
        };
        if let Some(token) = token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        req
    }

    /// GET a JSON document.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str, auth: Auth) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.get(path, auth);
        decode(&url, resp, self.reply_cap)
    }

    /// A GET, asked again with [`Client::with_read_fallback`]'s token when
    /// a read without a token was refused for the want of one.
    // ureq's own result, passed straight on to `decode` and `error_of`.
    #[allow(clippy::result_large_err)]
    fn get(&self, path: &str, auth: Auth) -> Result<ureq::Response, ureq::Error> {
        let first = self.request("GET", path, auth).call();
        match (&first, auth, &self.read_token, &self.read_fallback) {
            (Err(ureq::Error::Status(401, _)), Auth::None, None, Some(token)) => self
                .agent
                .request("GET", &self.url(path))
                .set("Authorization", &format!("Bearer {token}"))
                .call(),
            _ => first,
        }
    }

    /// POST a JSON body and read a JSON answer.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        auth: Auth,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.request("POST", path, auth).send_json(body);
        decode(&url, resp, self.reply_cap)
    }

    /// PUT raw bytes (artifacts) and read a JSON answer. The body may take
    /// as long as it takes to send, as long as it moves (see [`bulk_agent`]).
    pub fn put_reader<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl std::io::Read,
        auth: Auth,
    ) -> Result<T, ClientError> {
        self.put_on(&self.bulk, path, headers, body, auth, None)
    }

    /// PUT a body too small for the bulk agent's waits (an upload check, a build log of at most
    /// a few MiB): answered within the client's timeout, or retried. On the bulk agent one
    /// stalled check held a drone's delivery for its ten-minute answer wait after the server
    /// had recovered (h36 F3), and so did each stalled log upload.
    pub fn put_small<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        auth: Auth,
    ) -> Result<T, ClientError> {
        // The call's timeout, plus the time the body takes at the slowest rate the server
        // accepts: a 1 MiB log over a link of 20 KiB/s timed out at every try (30 s) and was
        // retried for ever, holding its build's report (h40). An empty body (a check) keeps
        // the plain timeout.
        let sending = Duration::from_secs_f64(body.len() as f64 / SLOWEST_BODY_RATE as f64);
        let timeout = Some(self.timeout + sending);
        self.put_on(&self.agent, path, headers, body, auth, timeout)
    }

    fn put_on<T: DeserializeOwned>(
        &self,
        agent: &ureq::Agent,
        path: &str,
        headers: &[(&str, &str)],
        body: impl std::io::Read,
        auth: Auth,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut req = self.request_on(agent, "PUT", path, auth);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let resp = req.send(body);
        decode(&url, resp, self.reply_cap)
    }

    /// GET plain text (metrics).
    pub fn get_text(&self, path: &str, auth: Auth) -> Result<String, ClientError> {
        let url = self.url(path);
        match self.get(path, auth) {
            Ok(r) => match redirected(&url, &r) {
                Some(e) => Err(e),
                None => r.into_string().map_err(|e| cut_off(&url, &e)),
            },
            Err(e) => Err(error_of(&url, e)),
        }
    }
}

/// The host a plain-http `url` names when it is not this machine: what a
/// credential sent there crosses a network in clear text to reach. `None`
/// for https and for loopback. Read with the parser ureq connects with: a
/// hand split missed that `http://remote\\@127.0.0.1` goes to `remote`
/// (a backslash ends the host in an http URL; h13). `localhost.` is not
/// loopback here: it is not in `/etc/hosts`, so a resolver may ask DNS.
pub fn clear_text_host(url: &str) -> Option<String> {
    use url::Host;
    let Ok(parsed) = url::Url::parse(url) else {
        // Never sent anywhere; named as it was given.
        return url.starts_with("http:").then(|| url.to_string());
    };
    if parsed.scheme() != "http" {
        return None;
    }
    match parsed.host() {
        Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => None,
        Some(Host::Ipv4(ip)) if ip.is_loopback() => None,
        Some(Host::Ipv6(ip))
            if ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) =>
        {
            None
        }
        Some(host) => Some(host.to_string()),
        None => Some(String::new()),
    }
}

/// `raw` as a server URL the clients can use, or why not: `HOST:PORT` means
/// http://, the scheme is http or https, there is a host and a valid port,
/// and no user or password (never sent; the token is). An agent given a URL
/// that could never work retried it for ever (h13).
pub fn server_url(raw: &str) -> Result<String, String> {
    let given = raw.trim();
    let raw = &without_userinfo(given);
    let with_scheme = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    let parsed =
        url::Url::parse(&with_scheme).map_err(|e| format!("server {raw:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("server {raw:?} is not an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("server {raw:?} names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "server {raw:?} holds a user name or password, which is never sent: give the host \
             alone, and the token with --token-file"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || given.contains('\\') {
        return Err(format!(
            "server {raw:?} is not a plain server address (a query, a fragment or a backslash)"
        ));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// `url` with what comes before an `@` in its authority shown as `***`, so
/// an error never repeats a password.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    if scheme.is_empty() {
        format!("{authority}{tail}")
    } else {
        format!("{scheme}://{authority}{tail}")
    }
}

/// The longest token swarm accepts: generated ones are 64 characters.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why `token` can never be sent in an `Authorization` header, if it cannot:
/// a header carries printable ASCII, spaces and tabs only, so a token with a
/// control character or a non-ASCII letter failed every call (an agent
/// retried such a call for ever; h12). Said at start instead, naming the
/// character's place but not the token.
pub fn unsendable_token(token: &str) -> Option<String> {
    // A 100,000-character admin token was kept, and every call then got 431
    // from the server's 16 KiB header limit (h13).
    if token.len() > MAX_TOKEN_BYTES {
        return Some(format!(
            "is {} bytes long, more than the {MAX_TOKEN_BYTES} a token may be (requests carry \
             at most 16 KiB of headers)",
            token.len()
        ));
    }
    let (at, c) = token
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))?;
    Some(format!(
        "holds {} at character {} of {}: an HTTP header cannot carry it",
        if c.is_control() {
            format!("a control character (U+{:04X})", u32::from(c))
        } else {
            format!("a non-ASCII character (U+{:04X})", u32::from(c))
        },
        at + 1,
        token.chars().count()
    ))
}

/// A token as the server reads one: trimmed (`SWARM_DRONE_TOKEN` ending in
/// a newline made every call fail, and the error printed the whole header,
/// token and all; h11), and none when blank.
fn trimmed(token: Option<String>) -> Option<String> {
    token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn agent(timeout: Duration, tls: &TlsClient) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .tls_config(tls.config())
        // A redirect is answered, not followed (see `redirected`).
        .redirects(0)
        .build()
}

/// The longest a body's send may stall (no byte taken) before the call
/// fails: the server itself cuts a sender slower than its `min_body_rate`.
const BODY_STALL: Duration = Duration::from_secs(60);
/// The slowest body the server takes by default (`min_body_rate`, 16 KiB/s): a small
/// body's call may last as long as it takes to send at that rate, plus the call's timeout.
const SLOWEST_BODY_RATE: u64 = 16 * 1024;
/// The longest the answer to a body may be waited for once it is sent: the
/// server validates a package (decompressing all of it) before it answers.
const ANSWER_WAIT: Duration = Duration::from_secs(600);

/// An agent for bodies of any size. An overall timeout (`agent`'s) failed
/// every upload that took longer to send, even one the server then stored,
/// and retried it for ever (h21: 48 MiB at 0.7 MB/s against 30 s); each
/// read and write is bounded instead, so a stalled connection still fails.
fn bulk_agent(timeout: Duration, tls: &TlsClient) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout.min(Duration::from_secs(5)))
        .timeout_write(BODY_STALL.max(timeout))
        .timeout_read(ANSWER_WAIT.max(timeout))
        .tls_config(tls.config())
        .redirects(0)
        .build()
}

/// A 3xx as an error that names where it points. Followed, a redirect
/// turned a drone's POST into a GET to whatever the Location named (without
/// its token), and a `{"status":"ok"}` there read as "registered"; swarm
/// serves no redirects itself, so one comes from a proxy or a wrong address,
/// and the operator is told which address to give instead.
fn redirected(url: &str, r: &ureq::Response) -> Option<ClientError> {
    let status = r.status();
    if !(300..400).contains(&status) {
        return None;
    }
    let to = r.header("Location").unwrap_or("nowhere (no Location)");
    let to: String = to
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Some(ClientError::Server {
        url: url.to_string(),
        status,
        body: ErrorBody {
            error: format!(
                "redirected to {to}; swarm follows no redirects: give the server's own address \
                 (for a proxy that moved to https, the https:// one)"
            ),
            field: None,
        },
    })
}

fn decode<T: DeserializeOwned>(
    url: &str,
    resp: Result<ureq::Response, ureq::Error>,
    cap: u64,
) -> Result<T, ClientError> {
    let decode_error = |cause: String| ClientError::Decode {
        url: url.to_string(),
        cause,
    };
    match resp {
        Ok(r) => {
            use std::io::Read;
            if let Some(e) = redirected(url, &r) {
                return Err(e);
            }
            let mut body = Vec::new();
            r.into_reader()
                .take(cap.saturating_add(1))
                .read_to_end(&mut body)
                .map_err(|e| cut_off(url, &e))?;
            if body.len() as u64 > cap {
                return Err(decode_error(format!(
                    "the reply is over {cap} bytes, more than this client reads"
                )));
            }
            serde_json::from_slice(&body).map_err(|e| decode_error(e.to_string()))
        }
        Err(e) => Err(error_of(url, e)),
    }
}

/// A reply whose body broke off (the connection closed or reset before all of it came): the
/// transport failed, whatever the status said, so it is retried as one; the server may well
/// have done what was asked (an upload stored), which a retry finds.
fn cut_off(url: &str, e: &std::io::Error) -> ClientError {
    ClientError::Unreachable {
        url: url.to_string(),
        cause: format!("the reply was cut off: {e}"),
        hint: "",
    }
}

/// What an error status without a body is reported as.
const NO_DETAILS: &str = "no details";

fn error_of(url: &str, e: ureq::Error) -> ClientError {
    match e {
        ureq::Error::Status(status, resp) => {
            let text = resp.into_string().unwrap_or_default();
            let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
                error: if text.is_empty() {
                    NO_DETAILS.into()
                } else {
                    text
                },
                field: None,
            });
            ClientError::Server {
                url: url.to_string(),
                status,
                body,
            }
        }
        // Its message quotes the header, a token with it: never shown.
        ureq::Error::Transport(t) if t.kind() == ureq::ErrorKind::BadHeader => {
            ClientError::Unreachable {
                url: url.to_string(),
                cause: "a request header could not be sent: a token holds a character no HTTP \
                        header may (a control or non-ASCII character)"
                    .into(),
                hint: "",
            }
        }
        ureq::Error::Transport(t) => {
            // `Transport`'s Display repeats the URL; build the cause from its
            // parts so the operator reads the URL once.
            let kind = t.kind().to_string();
            let mut cause = match t.message() {
                Some(m) if m.to_lowercase().starts_with(&kind.to_lowercase()) => m.to_string(),
                Some(m) => format!("{kind}: {m}"),
                None => kind,
            };
            let mut refused = false;
            let mut src = std::error::Error::source(&t);
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
                    // rustls's error rides inside an io::Error (which hides
                    // it from `source()`): say what it means instead.
                    if let Some(e) = io
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    {
                        return ClientError::Unreachable {
                            url: url.to_string(),
                            cause: tls::explain(e, url),
                            hint: "",
                        };
                    }
                }
                let text = s.to_string();
                if !cause.contains(&text) {
                    cause = format!("{cause}: {text}");
                }
                src = s.source();
            }
            let cause = cause.to_lowercase();
            refused |= cause.contains("connection refused");
            let hint = match t.kind() {
                _ if refused => " — is `swarm serve` running?",
                ureq::ErrorKind::Dns => " — check the host name in the URL",
                ureq::ErrorKind::UnknownScheme | ureq::ErrorKind::InvalidUrl => {
                    " — the URL must look like http://HOST:PORT or https://HOST:PORT"
                }
                _ => "",
            };
            ClientError::Unreachable {
                url: url.to_string(),
                cause,
                hint,
            }
        }
    }
}
