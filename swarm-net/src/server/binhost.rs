//! `GET`/`HEAD /binhost/<path>`: the published binhost tree, read-only, as a
//! plain static web server would serve it (`Content-Length`, `Last-Modified`,
//! `If-Modified-Since`, one byte range), so `PORTAGE_BINHOST` can point at
//! swarm itself. No listings, no dot files, no symlinks, no `..`.

use super::front::Request;
use super::http::{header, ApiError, Reply};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Maps the part of the URL after `/binhost/` to a file under `root`.
pub(crate) fn resolve(root: &Path, rest: &str) -> Result<PathBuf, ApiError> {
    let not_found = || ApiError::new(404, format!("no file /binhost/{rest}"));
    if rest.is_empty() {
        return Err(ApiError::new(
            404,
            "the binhost has no listing: Portage reads /binhost/Packages",
        ));
    }
    let mut path = root.to_path_buf();
    for seg in rest.split('/') {
        if seg.is_empty()
            || seg.starts_with('.')
            || seg.contains('\\')
            || seg.contains('\0')
            || seg.len() > 255
        {
            return Err(not_found());
        }
        path.push(seg);
    }
    Ok(path)
}

pub(crate) fn get(root: &Path, req: &Request<'_>, rest: &str) -> Result<Reply, ApiError> {
    let path = resolve(root, rest)?;
    let not_found = || ApiError::new(404, format!("no file /binhost/{rest}"));
    // Every component must be a real directory or file: no symlink leads out.
    let mut walk = root.to_path_buf();
    for c in path
        .strip_prefix(root)
        .map_err(|_| not_found())?
        .components()
    {
        walk.push(c);
        let m = std::fs::symlink_metadata(&walk).map_err(|_| not_found())?;
        if m.file_type().is_symlink() {
            return Err(not_found());
        }
    }
    // Never blocking on a FIFO planted in the tree (it would hold this
    // connection and its thread until a writer came).
    let (mut file, len) =
        crate::regular_file::open_regular_not_linked(&path).map_err(|_| not_found())?;
    let meta = file.metadata().map_err(|_| not_found())?;
    let mtime = meta.mtime();
    let modified = time::OffsetDateTime::from_unix_timestamp(mtime)
        .ok()
        .and_then(|t| t.format(HTTP_DATE).ok());
    let ctype = if rest.ends_with("Packages") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let mut headers: Vec<(&'static str, String)> = vec![("Accept-Ranges", "bytes".into())];
    if let Some(m) = &modified {
        headers.push(("Last-Modified", m.clone()));
    }
    if let Some(since) = header(req, "If-Modified-Since").and_then(parse_http_date) {
        if mtime <= since && header(req, "Range").is_none() {
            return Ok(Reply::File {
                content_type: ctype,
                status: 304,
                headers,
                body: Box::new(std::io::empty()),
                len: 0,
            });
        }
    }
    let range = match header(req, "Range") {
        None => None,
        Some(r) => match parse_range(r, len) {
            RangeAsk::Whole => None,
            RangeAsk::Part(a, b) => Some((a, b)),
            RangeAsk::Unsatisfiable => {
                headers.push(("Content-Range", format!("bytes */{len}")));
                return Ok(Reply::File {
                    content_type: ctype,
                    status: 416,
                    headers,
                    body: Box::new(std::io::empty()),
                    len: 0,
                });
            }
        },
    };
    match range {
        None => Ok(Reply::File {
            content_type: ctype,
            status: 200,
            headers,
            body: Box::new(file),
            len,
        }),
        Some((a, b)) => {
            file.seek(SeekFrom::Start(a)).map_err(|e| {
                ApiError::internal(format!("cannot seek in {}: {e}", path.display()))
            })?;
            headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            Ok(Reply::File {
                content_type: ctype,
                status: 206,
                headers,
                body: Box::new(file.take(b - a + 1)),
                len: b - a + 1,
            })
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No usable range (another unit, several ranges): send the whole file.
    Whole,
    /// Inclusive byte positions.
    Part(u64, u64),
    /// Starts past the end.
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 §14.1.2); anything else gets the whole file.
fn parse_range(h: &str, len: u64) -> RangeAsk {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match num(b) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(n) if len > 0 => RangeAsk::Part(len.saturating_sub(n), len - 1),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeAsk::Whole;
            };
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            let end = if b.is_empty() { Some(len - 1) } else { num(b) };
            match end {
                Some(e) if e >= start => RangeAsk::Part(start, e.min(len - 1)),
                _ => RangeAsk::Whole,
            }
        }
        (true, true) => RangeAsk::Whole,
    }
}

fn parse_http_date(s: &str) -> Option<i64> {
    time::PrimitiveDateTime::parse(s.trim(), HTTP_DATE)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeAsk::Part(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeAsk::Part(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeAsk::Part(900, 999));
        assert_eq!(
            parse_range("bytes=990-5000", 1000),
            RangeAsk::Part(990, 999)
        );
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 1000), RangeAsk::Whole);
    }

    #[test]
    fn no_path_leaves_the_tree() {
        let root = Path::new("/srv/binhost");
        assert!(resolve(root, "Packages").is_ok());
        assert!(resolve(root, "r1/dev-libs/foo/foo-1-1.gpkg.tar").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "r1/../../x",
            ".hidden",
            "r1//x",
            "a\\b",
            "r1/.creating-x/y",
        ] {
            assert!(resolve(root, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_dates_round_trip() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_210_073).expect("time");
        let s = t.format(HTTP_DATE).expect("format");
        assert_eq!(parse_http_date(&s), Some(1_796_210_073));
    }
}
