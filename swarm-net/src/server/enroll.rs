//! `POST /api/v1/nodes/<name>/enroll` and `/revoke` (admin): issue a drone
//! its credential (shown once) or take it away.

use super::http::{decode_path, ApiError, Reply};
use super::shared::Shared;
use serde_json::json;
use swarm_core::DroneName;

/// Whether `path` is one of the two credential endpoints.
pub(crate) fn is_credential_path(path: &str) -> bool {
    path.starts_with("/api/v1/nodes/") && (path.ends_with("/enroll") || path.ends_with("/revoke"))
}

pub(crate) fn credentials(sh: &Shared, path: &str) -> Result<Reply, ApiError> {
    let rest = path.strip_prefix("/api/v1/nodes/").unwrap_or_default();
    let Some((name, action)) = rest.rsplit_once('/') else {
        return Err(ApiError::new(404, format!("no endpoint POST {path}")));
    };
    let name = decode_path(name);
    let name = DroneName::new(name.clone())
        .map_err(|e| ApiError::field(400, "name", format!("bad drone name {name:?}: {e}")))?;
    let store_err =
        |e: std::io::Error| ApiError::new(507, format!("cannot store the drone credentials: {e}"));
    match action {
        "enroll" => {
            let token = sh
                .creds
                .enroll(name.as_str(), (sh.clock)().0)
                .map_err(store_err)?;
            tracing::info!(drone = %name, "drone enrolled: a new credential was issued (any earlier one is void)");
            Reply::ok(&json!({ "name": name.as_str(), "token": token }))
        }
        _ => {
            let had = sh
                .creds
                .revoke(name.as_str(), (sh.clock)().0)
                .map_err(store_err)?;
            if !had {
                return Err(ApiError::field(
                    404,
                    "name",
                    format!("drone {name} has no credential to revoke"),
                ));
            }
            tracing::warn!(drone = %name, "drone credential revoked: no one may act as this drone until it is enrolled again");
            Reply::ok(&json!({ "name": name.as_str(), "revoked": true }))
        }
    }
}
