//! Bounds on what a drone claims about itself. Cores decide a drone's slots
//! and so how much of the queue it may hold; a drone claiming four billion
//! cores could hoard every package. Absurd values are refused with a 400
//! that names the field; percentages, which v3 drones compute loosely, are
//! clamped to 0–100 (refused only when not a number at all or far out).

use super::http::ApiError;
use crate::wire::{CompleteRequest, RegisterRequest};

/// Most cores a drone may claim (the largest machines have a few hundred).
pub(crate) const MAX_CORES: u32 = 1024;
/// Most RAM a drone may claim, in GB (64 TiB).
pub(crate) const MAX_RAM_GB: f64 = 65_536.0;
/// Longest free-text field a drone sends (version, arch, Portage timestamp, machine id).
pub(crate) const MAX_TEXT: usize = 256;
/// Most lease ids a heartbeat may list.
pub(crate) const MAX_LEASES: usize = 4096;
/// Longest build a report may claim: 30 days, in seconds.
pub(crate) const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// Highest load average taken as real.
pub(crate) const MAX_LOAD: f64 = 100_000.0;
/// A percentage beyond this is not a percentage (v3 may send a little over 100).
const MAX_PERCENT: f64 = 1_000.0;
/// Longest error detail kept from a report (the rest is cut, not refused).
pub(crate) const MAX_DETAIL: usize = 64 * 1024;
/// Most artifacts a report may list (the agent uploads at most 512 per build).
const MAX_ARTIFACTS: usize = 512;

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
    text
}

/// Why a drone handed a lease back, as the core keeps it: cut like an error
/// detail, since it goes into the durable input log.
pub(crate) fn returned_reason(reason: Option<String>) -> String {
    reason.map_or_else(|| "returned by the drone".into(), |r| cut(r, MAX_DETAIL))
}

fn refuse(field: &str, why: String) -> ApiError {
    ApiError::field(400, field, why)
}

fn text(field: &str, v: Option<&str>) -> Result<(), ApiError> {
    match v {
        Some(s) if s.len() > MAX_TEXT => Err(refuse(
            field,
            format!(
                "`{field}` is {} bytes; at most {MAX_TEXT} are accepted",
                s.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn percent(field: &str, v: Option<f64>) -> Result<(), ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=MAX_PERCENT).contains(&x) => Err(refuse(
            field,
            format!("`{field}` = {x} is not a percentage (0 to 100)"),
        )),
        _ => Ok(()),
    }
}

/// Refuses a name that would not read as what it is.
fn name(field: &str, v: Option<&str>) -> Result<(), ApiError> {
    match v.and_then(swarm_core::DroneName::hidden_char) {
        Some(c) => Err(refuse(
            field,
            format!(
                "`{field}` holds U+{:04X}, a character that shows as nothing or reverses the \
                 text around it; use a name that reads as what it is",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a control character (a NUL, a newline...): an id is matched and logged as text,
/// and `node_name` refused them while `id` took them (h110).
fn no_control(field: &str, v: Option<&str>) -> Result<(), ApiError> {
    match v.and_then(|s| s.chars().find(|c| c.is_control())) {
        Some(c) => Err(refuse(
            field,
            format!(
                "`{field}` holds the control character U+{:04X}; an id is printable text",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// Checks a registration (or heartbeat) before anything of it is used.
pub(crate) fn check_register(r: &RegisterRequest) -> Result<(), ApiError> {
    name("name", r.name.as_deref())?;
    name("node_name", r.node_name.as_deref())?;
    name("id", r.id.as_deref())?;
    no_control("id", r.id.as_deref())?;
    text("id", r.id.as_deref())?;
    text("version", r.version.as_deref())?;
    text("ip", r.ip.as_deref())?;
    if let Some(caps) = &r.capabilities {
        if let Some(c) = caps.cores {
            if c > MAX_CORES {
                return Err(refuse(
                    "capabilities.cores",
                    format!("`capabilities.cores` = {c} is not a real machine; at most {MAX_CORES} cores are accepted"),
                ));
            }
        }
        if let Some(g) = caps.ram_gb {
            if !g.is_finite() || !(0.0..=MAX_RAM_GB).contains(&g) {
                return Err(refuse(
                    "capabilities.ram_gb",
                    format!("`capabilities.ram_gb` = {g} is not a real amount of RAM (0 to {MAX_RAM_GB} GB)"),
                ));
            }
        }
        text("capabilities.arch", caps.arch.as_deref())?;
        text(
            "capabilities.portage_timestamp",
            caps.portage_timestamp.as_deref(),
        )?;
    }
    if let Some(m) = &r.metrics {
        percent("metrics.cpu_percent", m.cpu_percent)?;
        percent("metrics.ram_percent", m.ram_percent)?;
        percent("metrics.disk_percent", m.disk_percent)?;
        if let Some(l) = m.load_1m {
            if !l.is_finite() || !(0.0..=MAX_LOAD).contains(&l) {
                return Err(refuse(
                    "metrics.load_1m",
                    format!("`metrics.load_1m` = {l} is not a load average (0 to {MAX_LOAD})"),
                ));
            }
        }
    }
    percent("disk_percent", r.disk_percent)?;
    for (field, list) in [("leases", &r.leases), ("started", &r.started)] {
        if let Some(l) = list {
            if l.len() > MAX_LEASES {
                return Err(refuse(
                    field,
                    format!(
                        "`{field}` lists {} leases; at most {MAX_LEASES} are accepted",
                        l.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a build report's claims.
pub(crate) fn check_complete(r: &CompleteRequest) -> Result<(), ApiError> {
    for (field, v) in [
        ("build_duration_s", r.build_duration_s),
        ("duration", r.duration),
    ] {
        if let Some(d) = v {
            if !d.is_finite() || !(0.0..=MAX_DURATION_S).contains(&d) {
                return Err(refuse(
                    field,
                    format!("`{field}` = {d} is not a build duration (0 to {MAX_DURATION_S} s)"),
                ));
            }
        }
    }
    for (field, v) in [("sha256", &r.sha256), ("farm_id", &r.farm_id)] {
        if let Some(long) = v.as_ref().filter(|t| t.len() > MAX_TEXT) {
            return Err(refuse(
                field,
                format!("`{field}` is {} bytes; at most {MAX_TEXT}", long.len()),
            ));
        }
    }
    if let Some(a) = &r.artifacts {
        if a.len() > MAX_ARTIFACTS {
            return Err(refuse(
                "artifacts",
                format!(
                    "`artifacts` lists {}; at most {MAX_ARTIFACTS} are accepted",
                    a.len()
                ),
            ));
        }
        if let Some(long) = a.iter().find(|s| s.len() > MAX_TEXT) {
            return Err(refuse(
                "artifacts",
                format!(
                    "an artifact name is {} bytes; at most {MAX_TEXT}",
                    long.len()
                ),
            ));
        }
    }
    Ok(())
}

/// `free_slots` of a work request: more than any drone may have is refused.
pub(crate) fn check_free_slots(n: u64) -> Result<u32, ApiError> {
    match u32::try_from(n) {
        Ok(n) if n <= MAX_CORES => Ok(n),
        _ => Err(refuse(
            "free_slots",
            format!("`free_slots` = {n} is more than any drone has (at most {MAX_CORES})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(v: serde_json::Value) -> Result<(), ApiError> {
        check_register(&serde_json::from_value(v).expect("a registration"))
    }

    #[test]
    fn a_reports_free_texts_are_bounded() {
        let complete = |v: serde_json::Value| {
            check_complete(&serde_json::from_value(v).expect("a report"))
                .err()
                .and_then(|e| e.body.field)
        };
        for field in ["sha256", "farm_id"] {
            assert_eq!(
                complete(json!({ field: "0".repeat(MAX_TEXT + 1) })).as_deref(),
                Some(field)
            );
            assert_eq!(complete(json!({ field: "0".repeat(64) })), None);
        }
        let long = "r".repeat(3 * MAX_DETAIL);
        assert!(returned_reason(Some(long)).len() <= MAX_DETAIL + " [cut]".len());
        assert_eq!(returned_reason(None), "returned by the drone");
    }

    #[test]
    fn absurd_claims_are_refused_by_field_and_real_ones_pass() {
        let field = |r: Result<(), ApiError>| r.expect_err("refused").body.field;
        assert_eq!(
            field(reg(json!({"capabilities": {"cores": 4_294_967_295u32}}))).as_deref(),
            Some("capabilities.cores")
        );
        assert_eq!(
            field(reg(json!({"capabilities": {"ram_gb": 1e12}}))).as_deref(),
            Some("capabilities.ram_gb")
        );
        assert_eq!(
            field(reg(json!({"metrics": {"load_1m": -1.0}}))).as_deref(),
            Some("metrics.load_1m")
        );
        assert_eq!(
            field(reg(json!({"version": "v".repeat(300)}))).as_deref(),
            Some("version")
        );
        assert_eq!(
            field(reg(json!({"name": "build-\u{202E}1pr"}))).as_deref(),
            Some("name")
        );
        assert_eq!(
            field(reg(json!({"node_name": "a\u{200B}b"}))).as_deref(),
            Some("node_name")
        );
        assert_eq!(field(reg(json!({"id": "x\u{0}y"}))).as_deref(), Some("id"));
        assert!(reg(json!({"name": "drone-ä-01", "id": "0f3c"})).is_ok());
        assert!(reg(json!({"capabilities": {"cores": 384, "ram_gb": 1536.0},
            "metrics": {"cpu_percent": 101.5, "load_1m": 380.2}}))
        .is_ok());
        let c: CompleteRequest =
            serde_json::from_value(json!({"build_duration_s": 1e300})).expect("report");
        assert_eq!(
            check_complete(&c)
                .expect_err("refused")
                .body
                .field
                .as_deref(),
            Some("build_duration_s")
        );
    }
}
