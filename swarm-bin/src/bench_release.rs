//! `swarm bench release`: binhost releases at scale. Writes N synthetic but
//! valid gpkgs (`binpkg::write_gpkg`, each inspected like an upload) into a
//! temporary staging, then times `release create` cold (every package
//! inspected and hashed) and warm (the inspect cache hits), and `publish`.

use anyhow::Context;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;
use swarm_core::release_gate::GateVerdict;
use swarm_net::binhost::{BinhostOptions, Releases};
use swarm_net::binpkg::write_gpkg;

/// Flags of `swarm bench release`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReleaseBenchArgs {
    /// Packages in staging.
    #[arg(long, default_value_t = 20_000)]
    packages: u32,
    /// Work in this directory (default: a temporary one, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub(crate) fn run(a: ReleaseBenchArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("swarm-bench-release-{}", std::process::id()));
            tmp
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(&a, &dir);
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(a: &ReleaseBenchArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let staging = dir.join("staging");
    let t = Instant::now();
    let categories = [
        "app-misc",
        "dev-libs",
        "dev-lang",
        "sys-libs",
        "x11-libs",
        "net-misc",
        "media-libs",
        "dev-python",
    ];
    for i in 0..a.packages {
        let cat = categories[i as usize % categories.len()];
        let cpv = format!("{cat}/pkg{i}-1.{}", i % 7);
        let mut meta = BTreeMap::new();
        for (k, v) in [
            ("EAPI", "8"),
            ("SLOT", "0/1"),
            ("KEYWORDS", "amd64"),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("repository", "gentoo"),
            ("BUILD_ID", "1"),
            ("IUSE", "+ssl debug test"),
            ("USE", "amd64 elibc_glibc kernel_linux ssl"),
            ("LICENSE", "GPL-2+"),
            ("DEFINED_PHASES", "compile configure install prepare"),
        ] {
            meta.insert(k.to_string(), v.to_string());
        }
        meta.insert(
            "RDEPEND".into(),
            format!(">=dev-libs/pkg{}-1:0/1= virtual/libc", i / 2),
        );
        meta.insert(
            "BUILD_TIME".into(),
            (1_796_000_000 + u64::from(i)).to_string(),
        );
        let pf = cpv.split_once('/').map(|x| x.1).unwrap_or("");
        let body = format!("{cpv}\n").repeat(64);
        write_gpkg(
            &cpv,
            &meta,
            &[("usr/share/bench/file", body.as_bytes())],
            &staging.join(cat).join(format!("{pf}-1.gpkg.tar")),
        )
        .with_context(|| format!("writing {cpv}"))?;
    }
    let write_ms = ms(t);
    let releases = Releases::open(BinhostOptions::under(dir), &staging)?;
    let none = |_: &str| (None, None);
    let env = swarm_net::binhost::header::HeaderEnv::NONE;
    let now = crate::cli::fmt::now_ms();
    let t = Instant::now();
    let cold = releases.create(Some("cold"), now, 1, &none, &env)?;
    let cold_ms = ms(t);
    let t = Instant::now();
    let warm = releases.create(Some("warm"), now + 1000, 1, &none, &env)?;
    let warm_ms = ms(t);
    let t = Instant::now();
    releases.publish("cold", now + 2000, GateVerdict::default(), None)?;
    let publish_ms = ms(t);
    let t = Instant::now();
    releases.publish("warm", now + 3000, GateVerdict::default(), None)?;
    let republish_ms = ms(t);
    let index_bytes = std::fs::metadata(releases.root().join("Packages"))
        .map(|m| m.len())
        .unwrap_or(0);
    if a.json {
        println!(
            "{}",
            json!({
                "packages": a.packages,
                "staging_bytes": cold.release.bytes,
                "index_bytes": index_bytes,
                "write_staging_ms": write_ms,
                "create_cold_ms": cold_ms,
                "create_warm_ms": warm_ms,
                "warm_cache_hits": warm.cached,
                "publish_ms": publish_ms,
                "publish_again_ms": republish_ms,
            })
        );
    } else {
        println!(
            "staging: {} valid gpkgs, {:.1} MiB, written in {:.0} ms\n\
             release create, cold (inspect + hash every package, hardlink, index): {:.0} ms\n\
             release create, warm (inspect cache, {} hits): {:.0} ms\n\
             publish ({:.1} MiB index, fsync + rename): {:.1} ms; again: {:.1} ms",
            a.packages,
            cold.release.bytes as f64 / 1048576.0,
            write_ms,
            cold_ms,
            warm.cached,
            warm_ms,
            index_bytes as f64 / 1048576.0,
            publish_ms,
            republish_ms
        );
    }
    Ok(())
}
