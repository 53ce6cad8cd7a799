//! Request plumbing: capped bodies, JSON with the offending field named,
//! query strings, and the one error type every handler returns.

use super::front::{Request, Response, ResponseBody};
use crate::wire::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;

/// A handler's failure: becomes a JSON error body with this status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) body: ErrorBody,
}

/// The longest error text a reply carries: many errors quote the bad value, and a 100 KB
/// atom came back whole (h110).
const MAX_ERROR_TEXT: usize = 4 * 1024;

/// `text`, cut to [`MAX_ERROR_TEXT`] at a character boundary, saying how much was cut.
fn bounded(mut text: String) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text;
    }
    let mut at = MAX_ERROR_TEXT;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let cut = text.len() - at;
    text.truncate(at);
    text.push_str(&format!("… ({cut} more bytes)"));
    text
}

impl ApiError {
    pub(crate) fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: bounded(error.into()),
                field: None,
            },
        }
    }

    pub(crate) fn field(status: u16, field: &str, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: bounded(error.into()),
                field: Some(field.to_string()),
            },
        }
    }

    pub(crate) fn bad(error: impl Into<String>) -> ApiError {
        ApiError::new(400, error)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(500, format!("internal error: {error}"))
    }
}

/// What a handler answers.
pub(crate) enum Reply {
    Json(u16, serde_json::Value),
    Text(u16, &'static str, String),
    /// A long-lived or large body (events, downloads), sent chunked as read.
    #[allow(dead_code)] // the endpoints that stream arrive with the dashboard
    Stream(u16, &'static str, Box<dyn std::io::Read + Send>),
    /// A file (or part of one) with its length and extra headers (`/binhost/`).
    File {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Box<dyn std::io::Read + Send>,
        len: u64,
    },
}

impl Reply {
    pub(crate) fn ok<T: Serialize>(body: &T) -> Result<Reply, ApiError> {
        Reply::with_status(200, body)
    }

    pub(crate) fn with_status<T: Serialize>(status: u16, body: &T) -> Result<Reply, ApiError> {
        serde_json::to_value(body)
            .map(|v| Reply::Json(status, v))
            .map_err(ApiError::internal)
    }

    pub(crate) fn status(&self) -> u16 {
        match self {
            Reply::Json(s, _) | Reply::Text(s, _, _) | Reply::Stream(s, _, _) => *s,
            Reply::File { status, .. } => *status,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        let body = serde_json::to_value(&e.body).unwrap_or(serde_json::Value::Null);
        Reply::Json(e.status, body)
    }
}

/// The reply on the wire.
pub(crate) fn into_response(reply: Reply) -> Response {
    let (status, content_type, body) = match reply {
        Reply::File {
            status,
            content_type,
            headers,
            body,
            len,
        } => {
            return Response {
                status,
                content_type,
                headers,
                body: ResponseBody::Sized(body, len),
            }
        }
        Reply::Json(status, v) => (
            status,
            "application/json",
            ResponseBody::Bytes(v.to_string().into_bytes()),
        ),
        Reply::Text(status, ctype, text) => (status, ctype, ResponseBody::Bytes(text.into_bytes())),
        Reply::Stream(status, ctype, reader) => (status, ctype, ResponseBody::Stream(reader)),
    };
    Response {
        status,
        content_type,
        headers: Vec::new(),
        body,
    }
}

/// Reads the body, refusing more than `cap` bytes.
pub(crate) fn read_body(req: &mut Request, cap: u64) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req.body_length() {
        if len as u64 > cap {
            return Err(too_large(cap));
        }
    }
    let mut buf = Vec::new();
    req.as_reader()
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(body_error)?;
    if buf.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(buf)
}

/// A body that could not be read: 408 when the client was too slow.
pub(crate) fn body_error(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ApiError::new(408, format!("request body timed out: {e}"))
    } else {
        ApiError::bad(format!("could not read the request body: {e}"))
    }
}

pub(crate) fn too_large(cap: u64) -> ApiError {
    ApiError::new(
        413,
        format!("request body is larger than the {cap}-byte limit"),
    )
}

/// Parses a JSON body, naming the field that did not fit.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("empty body: expected a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            format!("invalid value: {inner}")
        };
        if path == "." || path.is_empty() {
            ApiError::bad(msg)
        } else {
            ApiError::field(400, &path, msg)
        }
    })?;
    // Only whitespace may follow the value: `{...} garbage` or `{...}{...}`
    // is a client bug (or a smuggled second body), not the first object.
    de.end().map_err(|e| {
        ApiError::bad(format!(
            "malformed JSON: trailing characters after the JSON value ({e})"
        ))
    })?;
    Ok(value)
}

/// The decoded query string.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(url: &str) -> Query {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn number(&self, key: &str, default: u64, max: u64) -> Result<u64, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().map(|n| n.min(max)).map_err(|_| {
                ApiError::field(
                    400,
                    key,
                    format!("`{key}` must be a whole number, got {v:?}"),
                )
            }),
        }
    }
}

/// Percent-decoding of one query component (`+` is a space).
pub(crate) fn decode(s: &str) -> String {
    decode_with(s, true)
}

/// Percent-decoding of a URL path: `+` stays `+` (`x11-libs/gtk+-3.24`).
pub(crate) fn decode_path(s: &str) -> String {
    decode_with(s, false)
}

fn decode_with(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a header, if present.
pub(crate) fn header<'r>(req: &'r Request<'_>, name: &str) -> Option<&'r str> {
    req.header(name)
}

/// Why a request a browser sent from another site is refused, if it is:
/// a web page must not drive the API with the browser's position (a loopback
/// caller needs no credentials) or its cookies. Drones and the CLI send no
/// `Origin` and no `Sec-Fetch-Site`, so they pass; the dashboard is served
/// by this server, so its `Origin` is the address the request went to.
///
/// `Origin`, when present, must name the host (and port, when `Host` has
/// one) of the `Host` header. A reverse proxy that passes nginx's `$host`
/// (no port) is compared by host name only; the scheme is not compared, as
/// behind a TLS proxy the browser's `https` reaches this server as `http`.
pub(crate) fn cross_site_refusal(
    origin: Option<&str>,
    host: Option<&str>,
    sec_fetch_site: Option<&str>,
) -> Option<String> {
    // `same-site` is another port or another subdomain: a page there is no
    // more this server's than one on another site (one on 127.0.0.1:8999
    // could take leases for loopback's credential-less drones with `<img>`).
    if let Some(site) = sec_fetch_site
        .map(str::trim)
        .filter(|s| s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site"))
    {
        return Some(format!(
            "request from another site refused (Sec-Fetch-Site: {site}): \
             the API takes requests from drones, the CLI and this server's own dashboard"
        ));
    }
    let origin = origin?.trim();
    let refuse = |why: &str| {
        Some(format!(
            "cross-origin request refused: Origin {origin:?} {why}; \
             the API takes requests from drones, the CLI and this server's own dashboard"
        ))
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return refuse("is not a web origin");
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return refuse("is not an http(s) origin"),
    };
    let Some(host) = host else {
        return refuse("cannot be checked: the request has no Host header");
    };
    let (o_host, o_port) = split_authority(authority);
    let (h_host, h_port) = split_authority(host.trim());
    let same_host = o_host.eq_ignore_ascii_case(h_host);
    let same_port = h_port.is_none_or(|p| p == o_port.unwrap_or(default_port));
    if same_host && same_port {
        None
    } else {
        refuse(&format!("is not this server's (Host {host:?})"))
    }
}

/// Why a browser's request naming this server by a name it does not answer browsers under
/// (`Host`) is refused, if it is: DNS rebinding (see [`crate::host_names`]). A browser is told
/// by what browsers send and drones and the CLI do not: a `Mozilla/` User-Agent, `Origin`,
/// `Sec-Fetch-*`, or `Accept-Language`, which a page may set but not take away (Firefox lets a
/// page set the User-Agent, and sends no `Sec-Fetch-*` to plain http: h35 F2).
pub(crate) fn rebinding_refusal(
    req: &Request<'_>,
    allowed: &crate::host_names::AllowedHosts,
) -> Option<String> {
    let browser = header(req, "User-Agent")
        .is_some_and(|ua| ua.trim_start().starts_with("Mozilla/"))
        || [
            "Origin",
            "Sec-Fetch-Site",
            "Sec-Fetch-Mode",
            "Accept-Language",
        ]
        .iter()
        .any(|h| header(req, h).is_some());
    let host = header(req, "Host").filter(|_| browser)?;
    let (name, _) = split_authority(host.trim());
    if allowed.admits(name) {
        return None;
    }
    // Suggested only where it would be taken (not an address with a typo, not a list).
    let add = match crate::host_names::check_entry(name) {
        Ok(entry) if entry != "*" => format!(" (swarm.toml, or SWARM_ALLOWED_HOSTS={entry})"),
        _ => String::new(),
    };
    Some(format!(
        "a browser reached this server under the name {name:?}, which is not one of its names: \
         a page whose own name points at this server (DNS rebinding) may not use it. If you \
         open swarm under that name, add it to allowed_hosts{add}; addresses, localhost and \
         this machine's host name need nothing"
    ))
}

/// A request with two `Host` headers is refused (RFC 9110 asks for a 400): which one a proxy
/// or this server read could differ.
pub(crate) fn several_hosts(req: &Request<'_>) -> bool {
    req.header_count("Host") > 1
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_authority(a: &str) -> (&str, Option<&str>) {
    let after_literal = a.rfind(']').map_or(0, |i| i + 1);
    match a[after_literal..].rfind(':') {
        Some(i) => (&a[..after_literal + i], Some(&a[after_literal + i + 1..])),
        None => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quoting_a_huge_value_is_cut_and_says_so() {
        let e = ApiError::field(400, "package", format!("bad atom {:?}", "é".repeat(60_000)));
        assert!(
            e.body.error.len() <= MAX_ERROR_TEXT + 32,
            "{}",
            e.body.error.len()
        );
        assert!(e.body.error.ends_with("more bytes)"), "{}", e.body.error);
        assert_eq!(ApiError::bad("short").body.error, "short");
    }

    #[test]
    fn a_browser_request_from_another_origin_is_refused() {
        let ok = |o, h, s| cross_site_refusal(o, h, s).is_none();
        // Drones and the CLI: no Origin.
        assert!(ok(None, Some("127.0.0.1:7777"), None));
        // The dashboard, same origin.
        assert!(ok(
            Some("http://127.0.0.1:7777"),
            Some("127.0.0.1:7777"),
            Some("same-origin")
        ));
        assert!(ok(Some("http://[::1]:7777"), Some("[::1]:7777"), None));
        assert!(ok(
            Some("https://Swarm.example"),
            Some("swarm.example:443"),
            None
        ));
        // Behind nginx passing $host (no port) and TLS.
        assert!(ok(
            Some("https://swarm.example:8443"),
            Some("swarm.example"),
            None
        ));
        // Refused: another site, another port, a sandboxed page, no Host.
        assert!(!ok(
            Some("http://evil.example"),
            Some("127.0.0.1:7777"),
            None
        ));
        assert!(!ok(
            Some("http://127.0.0.1:8000"),
            Some("127.0.0.1:7777"),
            None
        ));
        assert!(!ok(Some("http://127.0.0.1"), Some("127.0.0.1:7777"), None));
        assert!(!ok(Some("null"), Some("127.0.0.1:7777"), None));
        assert!(!ok(Some("http://127.0.0.1:7777"), None, None));
        assert!(!ok(None, Some("127.0.0.1:7777"), Some("cross-site")));
        // Another port of the same host: `same-site`, and no Origin on a GET.
        assert!(!ok(None, Some("127.0.0.1:7777"), Some("same-site")));
        // Typed into the address bar.
        assert!(ok(None, Some("127.0.0.1:7777"), Some("none")));
        let why =
            cross_site_refusal(Some("http://evil.example"), Some("h:1"), None).expect("refused");
        assert!(why.starts_with("cross-origin request refused"), "{why}");
    }

    #[test]
    fn query_decodes() {
        let q = Query::parse("/x?package=%3Ddev-libs%2Ffoo-1.0&a=b+c&bad=%zz&end=%4");
        assert_eq!(q.get("package"), Some("=dev-libs/foo-1.0"));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("end"), Some("%4"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(
            decode_path("x11-libs/gtk+-3.24.gpkg.tar"),
            "x11-libs/gtk+-3.24.gpkg.tar"
        );
        assert_eq!(decode_path("x11-libs/gtk%2B-3"), "x11-libs/gtk+-3");
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let e = parse_json::<T>(br#"{"a":"x"}"#).expect_err("wrong type");
        assert_eq!(e.body.field.as_deref(), Some("a"));
        let e = parse_json::<T>(b"{").expect_err("malformed");
        assert!(
            e.body.error.starts_with("malformed JSON"),
            "{}",
            e.body.error
        );
        let e = parse_json::<T>(b"").expect_err("empty");
        assert!(e.body.error.contains("empty body"));
    }

    #[test]
    fn json_followed_by_anything_but_whitespace_is_refused() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            id: String,
        }
        for body in [
            &br#"{"id":"m1","name":"drone-a"} garbage"#[..],
            br#"{"id":"m1"}{"x":1}"#,
            br#"{"id":"m1"},"#,
        ] {
            let e = parse_json::<T>(body).expect_err("trailing characters");
            assert_eq!(e.status, 400);
            assert!(
                e.body
                    .error
                    .contains("trailing characters after the JSON value"),
                "{}",
                e.body.error
            );
        }
        parse_json::<T>(b" {\"id\":\"m1\"} \r\n\t").expect("whitespace after the value");
    }
}
