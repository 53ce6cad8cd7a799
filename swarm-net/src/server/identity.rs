//! Who is calling a drone endpoint. An enrolled drone is whoever its
//! credential says, and acts only as itself; a credential-less (v3) drone is
//! accepted only from the `legacy_drones` networks and never under the name
//! of an enrolled drone. Refusals are 403 and logged, at most once per
//! caller per `ratelog::LOG_EVERY`.

use super::front::Request;
use super::http::{header, ApiError};
use super::shared::Shared;
use std::net::IpAddr;
use swarm_core::DroneName;

/// The caller of a drone endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Proved to be this enrolled drone.
    Drone(DroneName),
    /// A credential-less drone from a legacy network (or one with the
    /// shared `drone_token`): trusted for names no one has enrolled.
    Legacy(IpAddr),
}

fn bearer<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let v = header(req, "Authorization")?.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// The address a request comes from. Behind a reverse proxy on this host
/// (`tls_proxy`, the TLS proxy of dist/nginx/), a request from loopback that
/// carries `X-Forwarded-For` came through it: the proxy appends the address
/// it saw last, so that entry is the caller, not loopback, which would
/// otherwise pass every proxied v3 drone as local. Headers from elsewhere,
/// or from loopback with no proxy declared, are ignored (anyone can write
/// them; h10 took every event stream place and could claim a
/// `legacy_drones` address); an entry that does not parse counts as unknown.
pub(crate) fn effective_peer(sh: &Shared, req: &Request<'_>) -> IpAddr {
    let peer = req.remote_addr().ip();
    if !peer.is_loopback() || !sh.behind_proxy {
        return peer;
    }
    // The last entry of the last line: a proxy that adds a line of its own
    // (HAProxy's `option forwardfor`) put the caller's own line first, and
    // the first line was believed (h11).
    let Some(last) = req.last_listed("X-Forwarded-For") else {
        return peer;
    };
    last.parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Establishes the caller of a drone endpoint, or refuses (401/403).
pub(crate) fn drone_caller(sh: &Shared, req: &Request<'_>) -> Result<Caller, ApiError> {
    let peer = effective_peer(sh, req);
    let token = bearer(req);
    if let Some(t) = token {
        if let Some(name) = sh.creds.who(t) {
            let name = DroneName::new(name)
                .map_err(|e| ApiError::internal(format!("enrolled name is invalid: {e}")))?;
            return Ok(Caller::Drone(name));
        }
    }
    let shared_ok = match (&sh.drone_token, token) {
        // A credential that matches no one is refused, never downgraded.
        (None, Some(_)) => false,
        (None, None) => true,
        (Some(want), Some(t)) => constant_time_eq::constant_time_eq(want.as_bytes(), t.as_bytes()),
        (Some(_), None) => false,
    };
    if !shared_ok {
        return Err(ApiError::new(
            401,
            if token.is_some() {
                "unknown or revoked drone credential: enroll the drone with `swarm node enroll NAME` and give the agent the token with --token-file"
            } else {
                "this server requires a drone credential: send `Authorization: Bearer <token>` (`swarm node enroll NAME` issues one)"
            },
        ));
    }
    // A browser is never a credential-less drone: to a plain-http host name
    // (`http://farmhost:8100`) it sends no Sec-Fetch-Site and, on a GET, no
    // Origin, so a page anywhere could otherwise take leases as a loopback
    // drone with an `<img>`. Every browser's User-Agent starts so. Firefox
    // lets a page set it, but only in a `fetch`, which another origin cannot
    // send with that header without a preflight this server never answers,
    // and a page under a rebound name fails the Host check first.
    if token.is_none()
        && header(req, "User-Agent").is_some_and(|ua| ua.trim_start().starts_with("Mozilla/"))
    {
        return Err(ApiError::new(
            403,
            "a browser cannot act as a drone: drones without a credential are programs (a v3 agent, \
             swarm drone), and a page's request is refused",
        ));
    }
    if !sh.legacy_allowed(peer) {
        sh.refusals.note(&peer.to_string(), || {
            format!("credential-less drone from {peer} refused: not in legacy_drones")
        });
        return Err(ApiError::new(
            403,
            format!(
                "drones without a credential are accepted only from the legacy_drones networks, and {peer} is not in them: enroll this drone (`swarm node enroll NAME`, then `swarm drone --token-file FILE`)"
            ),
        ));
    }
    Ok(Caller::Legacy(peer))
}

/// The drone a request acts as, checked against the caller. `claimed` is
/// the name or machine id the request carries; an enrolled caller that
/// omits it acts as itself.
pub(crate) fn act_as(
    sh: &Shared,
    caller: &Caller,
    claimed: Option<&str>,
    what: &str,
) -> Result<Option<DroneName>, ApiError> {
    match caller {
        Caller::Drone(me) => match claimed {
            None => Ok(Some(me.clone())),
            Some(c) if c == me.as_str() || sh.resolve(c).as_ref() == Some(me) => {
                Ok(Some(me.clone()))
            }
            Some(c) => Err(forbid(
                sh,
                caller,
                format!("drone {me} may {what} only as itself, not as {c:?}"),
            )),
        },
        Caller::Legacy(_) => {
            let Some(c) = claimed else { return Ok(None) };
            let name = sh.resolve(c);
            let enrolled = name.as_ref().map_or(sh.creds.is_enrolled(c), |n| {
                sh.creds.is_enrolled(n.as_str())
            });
            if enrolled {
                return Err(forbid(
                    sh,
                    caller,
                    format!("{c:?} is an enrolled drone: to {what} as it, send its credential"),
                ));
            }
            Ok(name)
        }
    }
}

/// A refusal for acting on another drone's behalf: 403, logged (rate-limited).
pub(crate) fn forbid(sh: &Shared, caller: &Caller, why: String) -> ApiError {
    let who = match caller {
        Caller::Drone(n) => n.as_str().to_string(),
        Caller::Legacy(ip) => ip.to_string(),
    };
    sh.refusals
        .note(&who, || format!("refused drone request from {who}: {why}"));
    ApiError::new(403, why)
}
