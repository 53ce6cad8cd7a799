//! `swarm node enroll NAME` and `swarm node revoke NAME`: a drone's own
//! credential, issued once and shown once (the server keeps only its hash).

use super::conn::{admin_error, AdminArgs};
use super::fmt::{emit, emit_json};

/// Flags of `swarm node enroll`.
#[derive(clap::Args, Debug)]
pub(crate) struct EnrollArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The drone's name: the credential lets its holder act as this drone only.
    #[arg(value_name = "NAME")]
    name: String,
    /// Write the token to this file (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// Print `{"name": ..., "token": ...}`.
    #[arg(long)]
    json: bool,
}

/// Flags of `swarm node revoke`.
#[derive(clap::Args, Debug)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The drone whose credential stops working.
    #[arg(value_name = "NAME")]
    name: String,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.trim().is_empty() && !name.contains('/'),
        "{name:?} is not a drone name"
    );
    Ok(())
}

pub(crate) fn enroll(a: EnrollArgs) -> anyhow::Result<()> {
    check_name(&a.name)?;
    let c = a.admin.client()?;
    let got = c
        .client
        .enroll(&a.name)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if let Some(path) = &a.out {
        write_private(path, &got.token)?;
    }
    if a.json {
        return emit_json(&serde_json::to_value(&got)?);
    }
    match &a.out {
        Some(path) => emit(&format!(
            "drone {} enrolled; its token is in {} (any earlier token no longer works)\nstart the agent with: swarm drone --name {} --token-file {}\n",
            got.name,
            path.display(),
            got.name,
            path.display()
        )),
        None => emit(&format!(
            "drone {} enrolled (any earlier token no longer works). Its token, shown only now:\n{}\nput it in a file readable only by the agent and start it with: swarm drone --name {} --token-file FILE\n",
            got.name, got.token, got.name
        )),
    }
}

pub(crate) fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    check_name(&a.name)?;
    let c = a.admin.client()?;
    let answer = c
        .client
        .revoke_credential(&a.name)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if a.json {
        return emit_json(&answer);
    }
    emit(&format!(
        "drone {}: credential revoked; its agent is refused from now on\n",
        a.name
    ))
}

fn write_private(path: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write the token to {}", path.display()))?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    Ok(())
}
