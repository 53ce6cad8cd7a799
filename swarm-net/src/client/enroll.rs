//! Drone credentials from the operator's side: `swarm node enroll` and
//! `swarm node revoke` (admin).

use super::admin::encode;
use super::{Auth, Client, ClientError};
use serde::{Deserialize, Serialize};

/// A credential just issued: shown once, stored only hashed by the server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrolled {
    /// The drone it is bound to.
    pub name: String,
    /// The token for the agent's `--token-file`.
    pub token: String,
}

impl Client {
    /// `POST /api/v1/nodes/<name>/enroll` (admin): a new credential for
    /// `name`; any earlier one stops working.
    pub fn enroll(&self, name: &str) -> Result<Enrolled, ClientError> {
        let path = format!("/api/v1/nodes/{}/enroll", encode(name));
        self.post_json(&path, &serde_json::json!({}), Auth::Admin)
    }

    /// `POST /api/v1/nodes/<name>/revoke` (admin): the drone's credential
    /// stops working at once.
    pub fn revoke_credential(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/api/v1/nodes/{}/revoke", encode(name));
        self.post_json(&path, &serde_json::json!({}), Auth::Admin)
    }
}
