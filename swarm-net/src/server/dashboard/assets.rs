//! The dashboard's files, embedded in the binary: no build step, no CDN, the
//! same page on every install. Served with a strong ETag (a 304 for a fresh
//! copy), gzip when the browser takes it (compressed once, on first use),
//! and a Content-Security-Policy that allows only this origin's scripts.

use super::super::front::{Request, Response, ResponseBody};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    path: &'static str,
    ctype: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ctype:expr, $file:literal) => {
        Asset {
            path: $path,
            ctype: $ctype,
            body: include_bytes!($file),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the dashboard serves, by URL path. `/` is the page itself.
static ASSETS: [Asset; 16] = [
    asset!("/", "text/html; charset=utf-8", "assets/index.html"),
    asset!("/ui/style.css", CSS, "assets/style.css"),
    asset!("/ui/app.js", JS, "assets/app.js"),
    asset!("/ui/api.js", JS, "assets/api.js"),
    asset!("/ui/util.js", JS, "assets/util.js"),
    asset!("/ui/overview.js", JS, "assets/overview.js"),
    asset!("/ui/fleet.js", JS, "assets/fleet.js"),
    asset!("/ui/profiles.js", JS, "assets/profiles.js"),
    asset!("/ui/queue.js", JS, "assets/queue.js"),
    asset!("/ui/builds.js", JS, "assets/builds.js"),
    asset!("/ui/events.js", JS, "assets/events.js"),
    asset!("/ui/releases.js", JS, "assets/releases.js"),
    asset!("/ui/sql.js", JS, "assets/sql.js"),
    asset!(
        "/ui/vendor/uPlot.iife.min.js",
        JS,
        "assets/vendor/uplot/uPlot.iife.min.js"
    ),
    asset!(
        "/ui/vendor/uPlot.min.css",
        CSS,
        "assets/vendor/uplot/uPlot.min.css"
    ),
    asset!(
        "/ui/vendor/uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        "assets/vendor/uplot/LICENSE"
    ),
];

/// The policy every dashboard file is served with. Scripts and connections
/// only to this origin; no frames; inline styles for the chart library.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Whether `path` is a dashboard file.
#[cfg(test)]
fn is_asset(path: &str) -> bool {
    find(path).is_some()
}

fn find(path: &str) -> Option<(usize, &'static Asset)> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().enumerate().find(|(_, a)| a.path == path)
}

/// ETag and gzip body of each asset, computed once.
fn derived(i: usize) -> &'static (String, Vec<u8>) {
    static CACHE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let tag = hex::encode(&Sha256::digest(a.body)[..12]);
                let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
                let gz = match gz.write_all(a.body).and_then(|()| gz.finish()) {
                    Ok(b) if b.len() < a.body.len() => b,
                    _ => Vec::new(),
                };
                (format!("\"{tag}\""), gz)
            })
            .collect()
    });
    &all[i]
}

/// The reply for a dashboard file (`None`: not one), honouring
/// `If-None-Match` and `Accept-Encoding`.
pub(crate) fn serve(req: &Request<'_>, path: &str) -> Option<Response> {
    let (i, asset) = find(path)?;
    let (etag, gz) = derived(i);
    let mut headers = vec![
        ("ETag", etag.clone()),
        ("Cache-Control", "no-cache".to_string()),
        ("Content-Security-Policy", CSP.to_string()),
        ("Referrer-Policy", "no-referrer".to_string()),
        ("Vary", "Accept-Encoding".to_string()),
    ];
    if req
        .header("If-None-Match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Some(Response {
            status: 304,
            content_type: asset.ctype,
            headers,
            body: ResponseBody::Bytes(Vec::new()),
        });
    }
    let takes_gzip = req.header("Accept-Encoding").is_some_and(|v| {
        v.split(',')
            .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
    });
    let body = if takes_gzip && !gz.is_empty() {
        headers.push(("Content-Encoding", "gzip".to_string()));
        gz.clone()
    } else {
        asset.body.to_vec()
    };
    Some(Response {
        status: 200,
        content_type: asset.ctype,
        headers,
        body: ResponseBody::Bytes(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_paths_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for a in &ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(seen.insert(a.path), "{} twice", a.path);
            assert!(a.ctype == JS || a.ctype == CSS || a.ctype.starts_with("text/"));
        }
        assert!(is_asset("/") && is_asset("/index.html") && is_asset("/ui/app.js"));
        assert!(!is_asset("/ui/../swarm.db") && !is_asset("/api/v1/status"));
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        // A module import of a file that is not embedded is a blank page.
        for a in ASSETS.iter().filter(|a| a.ctype == JS) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let path = format!("/ui/{}", spec.trim_start_matches("./"));
                assert!(
                    is_asset(&path),
                    "{} imports {spec}, which is not embedded",
                    a.path
                );
            }
        }
    }
}
