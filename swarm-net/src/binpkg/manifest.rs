//! A gpkg's Manifest: `DATA <file> <size> <HASH> <hex> ...` per member, possibly inside an
//! OpenPGP clear-signed message. Checked as Portage's `_load_manifest` and
//! `_verify_binpkg` check it.

use super::model::BinPkgError;
use std::collections::BTreeSet;

/// One `DATA` line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) name: String,
    pub(super) size: u64,
    /// `(HASH, hex)` pairs in the order written.
    pub(super) hashes: Vec<(String, String)>,
}

/// A parsed Manifest.
pub(super) struct Parsed {
    pub(super) records: Vec<Record>,
    /// Whether it was clear-signed (the signature is not verified here).
    pub(super) signed: bool,
}

pub(super) const SIGNED_HEAD: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_HEAD: &str = "-----BEGIN PGP SIGNATURE-----";

pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, BinPkgError> {
    let bad = |m: String| BinPkgError::Manifest(m);
    let text = std::str::from_utf8(bytes).map_err(|_| bad("is not UTF-8 text".into()))?;
    let (body, signed) = match text.find(SIGNED_HEAD) {
        Some(at) => (clear_signed_body(&text[at..])?, true),
        None => (text.to_string(), false),
    };
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, line) in body.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let line_no = n + 1;
        let [kind, name, size, hashes @ ..] = fields.as_slice() else {
            return Err(bad(format!(
                "line {line_no} is not `DATA <file> <size> <HASH> <hex>...`"
            )));
        };
        if *kind != "DATA" {
            return Err(bad(format!(
                "line {line_no} starts with {kind:?}, not DATA"
            )));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| bad(format!("line {line_no}: size {size:?} is not a number")))?;
        if hashes.len() % 2 != 0 {
            return Err(bad(format!(
                "line {line_no}: digests must come in <HASH> <hex> pairs"
            )));
        }
        if !seen.insert(name.to_string()) {
            return Err(bad(format!("lists {name} twice")));
        }
        records.push(Record {
            name: name.to_string(),
            size,
            hashes: hashes
                .chunks(2)
                .map(|p| (p[0].to_string(), p[1].to_ascii_lowercase()))
                .collect(),
        });
    }
    Ok(Parsed { records, signed })
}

/// The text the records of a clear-signed Manifest are read from (what its
/// signature must cover).
pub(super) fn signed_body(text: &str) -> Result<String, BinPkgError> {
    let at = text
        .find(SIGNED_HEAD)
        .ok_or_else(|| BinPkgError::Manifest("the Manifest is not clear-signed".into()))?;
    clear_signed_body(&text[at..])
}

/// The signed text of a clear-signed message: after the armour headers' blank line, up to
/// the signature, with dash-escaping (`- `) undone.
fn clear_signed_body(text: &str) -> Result<String, BinPkgError> {
    let mut lines = text.lines().skip(1);
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
    }
    let mut body = String::new();
    let mut closed = false;
    for line in lines {
        if line.starts_with(SIGNATURE_HEAD) {
            closed = true;
            break;
        }
        body.push_str(line.strip_prefix("- ").unwrap_or(line));
        body.push('\n');
    }
    if !closed {
        return Err(BinPkgError::Manifest(
            "a signed Manifest without its signature block".into(),
        ));
    }
    Ok(body)
}

/// Checks every member against its record, and every record against a member: sizes
/// equal, each BLAKE2B/SHA512 digest given equal, at least one of them given.
pub(super) fn check(
    records: &[Record],
    members: &[super::digest::Hashed],
) -> Result<(), BinPkgError> {
    let bad = |m: String| BinPkgError::Manifest(m);
    for (name, size, digests) in members {
        let record = records
            .iter()
            .find(|r| r.name == *name)
            .ok_or_else(|| bad(format!("does not list the member {name}")))?;
        if record.size != *size {
            return Err(bad(format!(
                "says {name} is {} bytes, but it is {size}",
                record.size
            )));
        }
        let mut verified = 0;
        for (hash, hex) in &record.hashes {
            if let Some((_, actual)) = digests.iter().find(|(h, _)| *h == hash.as_str()) {
                if actual != hex {
                    return Err(bad(format!(
                        "{hash} of {name} does not match: the Manifest says {hex}, the member hashes to {actual}"
                    )));
                }
                verified += 1;
            }
        }
        if verified == 0 {
            return Err(bad(format!(
                "gives no BLAKE2B or SHA512 digest for {name}, so Portage cannot check it"
            )));
        }
    }
    if let Some(extra) = records
        .iter()
        .find(|r| !members.iter().any(|(n, _, _)| *n == r.name))
    {
        return Err(bad(format!(
            "lists {}, which the package does not contain",
            extra.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_signed_manifest_yields_its_records() {
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nDATA gpkg-1 0 BLAKE2B ab SHA512 CD\n- DATA x 1 SHA512 ee\n-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n";
        let p = parse(text.as_bytes()).expect("parses");
        assert!(p.signed);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].hashes[1], ("SHA512".into(), "cd".into()));
        assert_eq!(p.records[1].name, "x");
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        for (text, why) in [
            ("MISC x 1 SHA512 aa\n", "not DATA"),
            ("DATA x one SHA512 aa\n", "not a number"),
            ("DATA x 1 SHA512\n", "pairs"),
            ("DATA x 1 SHA512 aa\nDATA x 1 SHA512 aa\n", "twice"),
            ("DATA x\n", "is not `DATA"),
        ] {
            let e = parse(text.as_bytes()).err().expect(text);
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
    }
}
