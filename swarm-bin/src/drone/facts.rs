//! What the drone knows about its machine: memory, load, CPU, disk, cores,
//! kind (LXC, QEMU or bare metal), OOM kills and the Portage timestamp.
//!
//! Parsers are pure functions over the text of a `/proc` file so they are
//! tested on fixed input; the `read_*` wrappers do the IO and turn a missing
//! file into `None`, because a drone that cannot read one figure must still
//! heartbeat with the others.

use std::path::Path;
use swarm_core::DroneKind;

/// Memory figures from `/proc/meminfo`, in kB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memory {
    pub(crate) total_kb: u64,
    pub(crate) available_kb: u64,
}

impl Memory {
    /// Percent in use, as the health thresholds read it.
    pub(crate) fn used_percent(&self) -> f64 {
        if self.total_kb == 0 {
            return 0.0;
        }
        let used = self.total_kb.saturating_sub(self.available_kb);
        used as f64 * 100.0 / self.total_kb as f64
    }

    /// Total RAM in GB, one decimal, as v3 reported it.
    pub(crate) fn total_gb(&self) -> f64 {
        (self.total_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0
    }
}

/// Parses `/proc/meminfo`. Kernels older than 3.14 have no `MemAvailable`;
/// then free + buffers + cached stands in for it.
pub(crate) fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total_kb = field("MemTotal")?;
    let available_kb = field("MemAvailable").or_else(|| {
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    })?;
    Some(Memory {
        total_kb,
        available_kb,
    })
}

/// The 1-minute load average from `/proc/loadavg`.
pub(crate) fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Cumulative CPU time from the `cpu` line of `/proc/stat`: (busy, total) in ticks.
pub(crate) fn parse_stat_cpu(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU use in percent between two `/proc/stat` readings.
pub(crate) fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let busy = after.0.checked_sub(before.0)?;
    let total = after.1.checked_sub(before.1)?;
    (total > 0).then(|| busy as f64 * 100.0 / total as f64)
}

/// The OOM kills the kernel counts while a build runs, read from one place before and after it
/// (read from two, their difference meant nothing: h50 F3): the drone's own memory cgroup (the
/// agent and its builders, and in a container the whole container), else the whole machine.
/// The machine's count took another service's OOM kill during a long build for the build's
/// (h48: a cgroup's OOM kill relabelled a build as `oom`, and an `oom` failure sets the
/// package's learned memory above the drone's, which can block it farm-wide).
pub(crate) struct OomCount {
    file: String,
    before: Option<u64>,
}

impl OomCount {
    /// Before the build.
    pub(crate) fn start() -> OomCount {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let (file, before) = oom_count_files(&own)
            .into_iter()
            .chain(["/proc/vmstat".to_owned()])
            .find_map(|f| read_with(&f, parse_vmstat_oom_kills).map(|n| (f, Some(n))))
            .unwrap_or_else(|| ("/proc/vmstat".to_owned(), None));
        OomCount { file, before }
    }

    /// How many since [`OomCount::start`] (0 when either read failed).
    pub(crate) fn since(&self) -> u64 {
        match (self.before, read_with(&self.file, parse_vmstat_oom_kills)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        }
    }
}

/// Where the kernel counts this process's memory cgroup's OOM kills, from `/proc/self/cgroup`:
/// cgroup v2's `memory.events` (hierarchical: a build in a child cgroup counts too) and v1's
/// `memory.oom_control` (only the cgroup's own processes: a build stays in the agent's cgroup),
/// each with an `oom_kill` line. Not v1's root memory cgroup, whose count the kernel never
/// raises; v2's root has no such file, and in a container's cgroup namespace `/` is the
/// container's own cgroup.
fn oom_count_files(proc_self_cgroup: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            files.push(format!("/sys/fs/cgroup{path}/memory.events"));
        } else if controllers.split(',').any(|c| c == "memory") && !path.is_empty() {
            files.push(format!("/sys/fs/cgroup/memory{path}/memory.oom_control"));
        }
    }
    files
}

/// The kernel's running count of OOM kills: the `oom_kill` line of `/proc/vmstat` (Linux ≥
/// 4.13), of a cgroup's `memory.events` or of v1's `memory.oom_control`.
pub(crate) fn parse_vmstat_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// What kind detection looks at; gathered by [`kind_evidence`], judged by [`detect_kind`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindEvidence {
    /// `/proc/1/environ` (NUL-separated), if readable (root only).
    pub(crate) init_environ: Option<String>,
    /// `/run/systemd/container`, if present.
    pub(crate) systemd_container: Option<String>,
    /// Output of `systemd-detect-virt`, if installed.
    pub(crate) detect_virt: Option<String>,
    /// `/sys/class/dmi/id/sys_vendor` and `product_name`, joined.
    pub(crate) dmi: Option<String>,
    /// Whether `/proc/cpuinfo` flags include `hypervisor`.
    pub(crate) cpu_hypervisor_flag: bool,
}

/// Decides the machine kind: containers first (an LXC guest sees its host's
/// DMI), then `systemd-detect-virt`, then DMI. Bare metal needs positive
/// evidence, because a guess of bare metal is only safe (never rebooted),
/// while a wrong "qemu" could reboot real hardware; so when in doubt, Unknown.
pub(crate) fn detect_kind(e: &KindEvidence) -> DroneKind {
    let container_lxc = e
        .init_environ
        .as_deref()
        .is_some_and(|env| env.split('\0').any(|kv| kv == "container=lxc"))
        || e.systemd_container.as_deref().map(str::trim) == Some("lxc");
    if container_lxc {
        return DroneKind::Lxc;
    }
    if let Some(virt) = e.detect_virt.as_deref().map(str::trim) {
        match virt {
            "lxc" | "lxc-libvirt" => return DroneKind::Lxc,
            "qemu" | "kvm" => return DroneKind::Qemu,
            "none" => return DroneKind::BareMetal,
            "" => {}
            _ => return DroneKind::Unknown,
        }
    }
    if let Some(dmi) = e.dmi.as_deref() {
        let dmi = dmi.to_ascii_lowercase();
        if dmi.contains("qemu") || dmi.contains("kvm") {
            return DroneKind::Qemu;
        }
        let hypervisors = [
            "vmware",
            "virtualbox",
            "innotek",
            "xen",
            "microsoft",
            "bochs",
        ];
        if !e.cpu_hypervisor_flag && !hypervisors.iter().any(|h| dmi.contains(h)) {
            return DroneKind::BareMetal;
        }
    }
    DroneKind::Unknown
}

/// Reads what [`detect_kind`] needs from this machine.
pub(crate) fn kind_evidence() -> KindEvidence {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let dmi = match (
        read("/sys/class/dmi/id/sys_vendor"),
        read("/sys/class/dmi/id/product_name"),
    ) {
        (None, None) => None,
        (a, b) => Some(format!(
            "{} {}",
            a.unwrap_or_default().trim(),
            b.unwrap_or_default().trim()
        )),
    };
    let detect_virt = std::process::Command::new("systemd-detect-virt")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        // It exits 1 with "none" on bare metal; any output is the answer.
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    KindEvidence {
        init_environ: std::fs::read("/proc/1/environ")
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        systemd_container: read("/run/systemd/container"),
        detect_virt,
        dmi,
        cpu_hypervisor_flag: read("/proc/cpuinfo").is_some_and(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
        }),
    }
}

/// How full a build volume is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DiskUsage {
    /// Percent in use, as `df` computes it (blocks reserved for root count as unavailable).
    pub(crate) percent: f64,
    /// Space an unprivileged build may still use, MiB.
    pub(crate) free_mib: u64,
}

impl DiskUsage {
    /// The fuller of two volumes on each measure: the build needs both.
    pub(crate) fn worst(self, other: DiskUsage) -> DiskUsage {
        DiskUsage {
            percent: self.percent.max(other.percent),
            free_mib: self.free_mib.min(other.free_mib),
        }
    }
}

/// The usage of the filesystem holding `path` (or its nearest existing ancestor).
pub(crate) fn disk_usage(path: &Path) -> Option<DiskUsage> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    let used = s.f_blocks.saturating_sub(s.f_bfree);
    let denom = used + s.f_bavail;
    (denom > 0).then(|| DiskUsage {
        percent: used as f64 * 100.0 / denom as f64,
        free_mib: s.f_bavail.saturating_mul(s.f_frsize) / (1024 * 1024),
    })
}

/// The fullest of the volumes a build writes to (work dir, PKGDIR): it needs them all.
pub(crate) fn build_volumes(paths: &[&Path]) -> Option<DiskUsage> {
    paths
        .iter()
        .filter_map(|p| disk_usage(p))
        .reduce(DiskUsage::worst)
}

/// CPU cores this process may use.
pub(crate) fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Reads and parses one `/proc` file.
pub(crate) fn read_with<T>(path: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
    std::fs::read_to_string(path).ok().and_then(|t| parse(&t))
}

/// The Portage timestamp in the form v3 drones send (`2026-02-16 00:00`, UTC).
///
/// `timestamp.chk` holds an RFC 2822 date (`Mon, 16 Feb 2026 00:45:01 +0000`);
/// a file in another form is sent as it is, trimmed, so the server can still
/// compare it with what it expects.
pub(crate) fn portage_timestamp(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(parse_rfc2822(text).unwrap_or_else(|| text.to_string()))
}

/// `Mon, 16 Feb 2026 00:45:01 +0000` → `2026-02-16 00:45` (converted to UTC).
pub(crate) fn parse_rfc2822(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(text, &Rfc2822).ok()?;
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]"
        ))
        .ok()
}

/// The local address the kernel would use to reach `server_url`: what the
/// control plane's prober should dial. No packet is sent (UDP connect only
/// picks a route).
pub(crate) fn route_ip(server_url: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let rest = server_url.split_once("://").map_or(server_url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let target = with_port.to_socket_addrs().ok()?.next()?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16303428 kB\nMemFree:         1013060 kB\n\
        MemAvailable:    9782464 kB\nBuffers:          402396 kB\nCached:          7722260 kB\n";

    #[test]
    fn meminfo_gives_total_and_use() {
        let m = parse_meminfo(MEMINFO).expect("parses");
        assert_eq!(m.total_kb, 16_303_428);
        assert_eq!(m.available_kb, 9_782_464);
        assert!(
            (m.used_percent() - 40.0).abs() < 0.1,
            "{}",
            m.used_percent()
        );
        assert_eq!(m.total_gb(), 15.5);
    }

    #[test]
    fn meminfo_without_memavailable_falls_back_to_free_buffers_cached() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        let m = parse_meminfo(text).expect("parses");
        assert_eq!(m.available_kb, 400);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn loadavg_reads_the_one_minute_figure() {
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Some(0.52));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn cpu_use_is_the_busy_share_between_two_readings() {
        let a = parse_stat_cpu("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("a");
        let b = parse_stat_cpu("cpu  200 0 200 800 100 0 0 0 0 0\n").expect("b");
        assert_eq!(a, (200, 1000));
        assert_eq!(cpu_percent(a, b), Some(200.0 * 100.0 / 300.0));
        assert_eq!(cpu_percent(b, b), None);
    }

    #[test]
    fn vmstat_gives_the_oom_kill_count() {
        let text = "pgfault 123\noom_kill 3\nnr_free_pages 5\n";
        assert_eq!(parse_vmstat_oom_kills(text), Some(3));
        assert_eq!(parse_vmstat_oom_kills("pgfault 1\n"), None);
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n";
        assert_eq!(parse_vmstat_oom_kills(v1), Some(4));
    }

    #[test]
    fn oom_kills_are_counted_in_the_drone_s_own_memory_cgroup() {
        let v2 = "0::/system.slice/swarm-drone.service\n";
        assert_eq!(
            oom_count_files(v2),
            ["/sys/fs/cgroup/system.slice/swarm-drone.service/memory.events"]
        );
        // A container's namespace: `/` is its own cgroup, whose file is there to read.
        assert_eq!(oom_count_files("0::/\n"), ["/sys/fs/cgroup/memory.events"]);
        let v1 = "4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";
        assert_eq!(
            oom_count_files(v1),
            [
                "/sys/fs/cgroup/memory/process_api/abc/memory.oom_control",
                "/sys/fs/cgroup/memory.events"
            ]
        );
        // v1's root memory cgroup never counts: the machine's count is read instead.
        assert!(oom_count_files("4:memory:/\n").is_empty());
        assert!(oom_count_files("garbage\n").is_empty());
        // Whatever this machine has, a count is read, and none came meanwhile.
        let count = OomCount::start();
        assert!(count.before.is_some(), "{}", count.file);
        assert_eq!(count.since(), 0);
    }

    #[test]
    fn kind_is_lxc_when_init_says_so_even_on_a_qemu_host() {
        let e = KindEvidence {
            init_environ: Some("PATH=/bin\0container=lxc\0".into()),
            dmi: Some("QEMU Standard PC".into()),
            ..KindEvidence::default()
        };
        assert_eq!(detect_kind(&e), DroneKind::Lxc);
        let e = KindEvidence {
            systemd_container: Some("lxc\n".into()),
            ..KindEvidence::default()
        };
        assert_eq!(detect_kind(&e), DroneKind::Lxc);
    }

    #[test]
    fn kind_follows_systemd_detect_virt_then_dmi() {
        let virt = |v: &str| KindEvidence {
            detect_virt: Some(v.into()),
            ..KindEvidence::default()
        };
        assert_eq!(detect_kind(&virt("kvm")), DroneKind::Qemu);
        assert_eq!(detect_kind(&virt("none")), DroneKind::BareMetal);
        assert_eq!(detect_kind(&virt("docker")), DroneKind::Unknown);
        let dmi = |v: &str, flag| KindEvidence {
            dmi: Some(v.into()),
            cpu_hypervisor_flag: flag,
            ..KindEvidence::default()
        };
        assert_eq!(detect_kind(&dmi("QEMU Standard PC", true)), DroneKind::Qemu);
        assert_eq!(
            detect_kind(&dmi("Dell Inc. PowerEdge", false)),
            DroneKind::BareMetal
        );
        assert_eq!(
            detect_kind(&dmi("Dell Inc. PowerEdge", true)),
            DroneKind::Unknown
        );
        assert_eq!(detect_kind(&dmi("VMware, Inc.", false)), DroneKind::Unknown);
        assert_eq!(detect_kind(&KindEvidence::default()), DroneKind::Unknown);
    }

    #[test]
    fn portage_timestamps_are_sent_in_v3_form_in_utc() {
        assert_eq!(
            parse_rfc2822("Mon, 16 Feb 2026 00:45:01 +0000").as_deref(),
            Some("2026-02-16 00:45")
        );
        assert_eq!(
            parse_rfc2822("Mon, 16 Feb 2026 00:45:01 +0200").as_deref(),
            Some("2026-02-15 22:45")
        );
        assert_eq!(
            parse_rfc2822("Thu, 31 Dec 2026 23:30:00 -0100").as_deref(),
            Some("2027-01-01 00:30")
        );
        assert_eq!(parse_rfc2822("2026-02-16 00:00"), None);
    }

    #[test]
    fn a_timestamp_file_in_another_form_is_sent_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("timestamp.chk");
        std::fs::write(&p, "2026-02-16 00:00\n").expect("write");
        assert_eq!(portage_timestamp(&p).as_deref(), Some("2026-02-16 00:00"));
        std::fs::write(&p, "Mon, 16 Feb 2026 00:45:01 +0000\n").expect("write");
        assert_eq!(portage_timestamp(&p).as_deref(), Some("2026-02-16 00:45"));
        assert_eq!(portage_timestamp(&dir.path().join("none")), None);
    }

    #[test]
    fn this_machine_has_readable_figures() {
        assert!(cores() >= 1);
        assert!(read_with("/proc/meminfo", parse_meminfo).is_some());
        assert!(read_with("/proc/loadavg", parse_loadavg).is_some());
        let d = disk_usage(Path::new("/tmp/does/not/exist/yet")).expect("statvfs of /tmp");
        assert!((0.0..=100.0).contains(&d.percent));
        let df = std::process::Command::new("df")
            .args(["--output=avail", "-B1M", "/tmp"])
            .output()
            .expect("df runs");
        let avail: u64 = String::from_utf8_lossy(&df.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free MiB");
        // Other processes write meanwhile; agreeing within 1 GiB shows the unit is right.
        assert!(
            d.free_mib.abs_diff(avail) < 1024,
            "{} vs df {avail}",
            d.free_mib
        );
    }

    #[test]
    fn the_route_to_a_loopback_server_is_loopback() {
        assert_eq!(
            route_ip("http://127.0.0.1:8100").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(route_ip("not a url"), None);
    }
}
