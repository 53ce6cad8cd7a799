use super::*;
use crate::heal::parse_figures;
use std::path::Path;

const SAMPLE: &str = include_str!("../../../dist/swarm.toml");

fn request(env: &[(&str, &str)]) -> LoadRequest {
    LoadRequest {
        config: ConfigFile::None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        listen: None,
        data_dir: None,
        running_as_root: false,
    }
}

/// A request reading `text` as its config file; the directory lives as long as the guard.
fn with_file(text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, LoadRequest) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("swarm.toml");
    std::fs::write(&path, text).expect("the config file is written");
    let mut req = request(env);
    req.config = ConfigFile::Explicit(path.clone());
    (dir, path, req)
}

fn load_ok(req: &LoadRequest) -> Loaded {
    match Settings::load(req) {
        Ok(loaded) => loaded,
        Err(e) => panic!("settings should load: {e}"),
    }
}

fn load_err(req: &LoadRequest) -> String {
    match Settings::load(req) {
        Ok(loaded) => panic!("settings should not load: {:?}", loaded.settings),
        Err(e) => e.to_string(),
    }
}

fn file(path: &Path) -> Source {
    Source::File(path.to_owned())
}

fn env(name: &str) -> Source {
    Source::Env(name.to_owned())
}

#[test]
fn defaults_need_no_file_and_no_environment() {
    let loaded = load_ok(&request(&[("HOME", "/home/op")]));
    let s = &loaded.settings;
    let dir = PathBuf::from("/home/op/.local/share/swarm");
    assert_eq!(*s, Settings::with_data_dir(&dir));
    assert_eq!(s.listen.to_string(), "127.0.0.1:8100");
    assert_eq!(s.db_path, dir.join("swarm.db"));
    assert_eq!(s.staging_path, dir.join("staging"));
    assert_eq!(s.admin_token_file, dir.join("admin.token"));
    assert_eq!(s.admin_token, None);
    assert_eq!(s.synchronous, Synchronous::Full);
    assert_eq!(s.max_body_bytes, 1 << 20);
    assert_eq!(s.max_artifact_bytes, 2 << 30);
    assert_eq!(s.http.max_connections, 1024);
    assert_eq!(s.probe, ProbeSettings::default());
    assert_eq!(
        (s.probe.interval_s, s.probe.timeout_s, s.probe.parallel),
        (60, 10, 8)
    );
    assert_eq!(s.escalation.reboot, None);
    assert_eq!(s.escalation.timeout_s, 120);
    assert_eq!(s.policy, Config::default());
    assert_eq!(loaded.file, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded
        .sources
        .values()
        .all(|s| matches!(s, Source::Default | Source::Derived("data_dir"))));
}

#[test]
fn the_default_data_dir_depends_on_the_user() {
    let mut req = request(&[("HOME", "/home/op"), ("XDG_DATA_HOME", "/data/op")]);
    assert_eq!(load_ok(&req).settings.data_dir, Path::new("/data/op/swarm"));
    req.running_as_root = true;
    assert_eq!(load_ok(&req).settings.data_dir, Path::new("/var/lib/swarm"));
    let bare = request(&[("XDG_DATA_HOME", "relative/dir")]);
    assert_eq!(load_ok(&bare).settings.data_dir, Path::new("swarm-data"));
    let service = request(&[
        ("STATE_DIRECTORY", "/var/lib/swarm:/var/lib/other"),
        ("HOME", "/home/swarm"),
    ]);
    assert_eq!(
        load_ok(&service).settings.data_dir,
        Path::new("/var/lib/swarm")
    );
}

#[test]
fn an_absent_default_file_is_fine_but_an_absent_explicit_file_is_not() {
    let mut req = request(&[]);
    req.config = ConfigFile::IfExists(PathBuf::from("/nonexistent/swarm.toml"));
    assert_eq!(load_ok(&req).file, None);
    req.config = ConfigFile::Explicit(PathBuf::from("/nonexistent/swarm.toml"));
    let err = load_err(&req);
    assert!(
        err.starts_with("cannot read config file /nonexistent/swarm.toml: "),
        "{err}"
    );
}

#[test]
fn reads_every_section_of_the_file_and_skips_the_drone_table() {
    let (_dir, path, req) = with_file(
        r#"
listen = "0.0.0.0:9100"
data_dir = "/srv/swarm"
binhost_path = "/var/cache/binpkgs"
admin_token = "0123456789abcdef-admin"
synchronous = "normal"

[http]
max_connections = 16
idle_timeout_s = 5

[probe]
enabled = false
command = "check-drone {drone} {address}"
timeout_s = 3

[escalation]
reboot = "ssh root@{address} reboot"
timeout_s = 30

[policy]
max_prefetch = 3
ordering = "fifo"
escalation_cooldowns_ms = [1000, 2000, 3000]

[drone]
server = "http://10.0.0.1:8100"
name = "drone-alpha"
anything = { goes = true }
"#,
        &[],
    );
    let loaded = load_ok(&req);
    let s = &loaded.settings;
    assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
    assert_eq!(s.listen.to_string(), "0.0.0.0:9100");
    assert_eq!(s.data_dir, Path::new("/srv/swarm"));
    assert_eq!(s.db_path, Path::new("/srv/swarm/swarm.db"));
    assert_eq!(
        s.binhost_path.as_deref(),
        Some(Path::new("/var/cache/binpkgs"))
    );
    assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef-admin"));
    assert_eq!(s.synchronous, Synchronous::Normal);
    assert_eq!(s.http.max_connections, 16);
    assert_eq!(s.http.idle_timeout, std::time::Duration::from_secs(5));
    assert!(!s.probe.enabled);
    assert_eq!(s.probe.command.text(), "check-drone {drone} {address}");
    assert_eq!(s.probe.timeout_s, 3);
    assert_eq!(s.probe.interval_s, 60);
    assert_eq!(
        s.escalation.reboot.as_ref().map(|t| t.text()),
        Some("ssh root@{address} reboot")
    );
    assert_eq!(s.escalation.restart_service, None);
    assert_eq!(s.escalation.timeout_s, 30);
    assert_eq!(s.policy.max_prefetch, 3);
    assert_eq!(s.policy.ordering, swarm_core::Ordering::Fifo);
    assert_eq!(s.policy.escalation_cooldowns_ms, [1000, 2000, 3000]);
    assert_eq!(s.policy.max_attempts, Config::default().max_attempts);
    assert_eq!(loaded.source("policy.max_prefetch"), &file(&path));
    assert_eq!(loaded.source("probe.timeout_s"), &file(&path));
    assert_eq!(loaded.source("db_path"), &Source::Derived("data_dir"));
    assert_eq!(loaded.source("policy.max_attempts"), &Source::Default);
}

#[test]
fn the_environment_overrides_the_file() {
    let (_dir, path, req) = with_file(
        "data_dir = \"/srv/a\"\n[policy]\nmax_prefetch = 3\nmax_attempts = 7\n[probe]\ntimeout_s = 4\n",
        &[
            ("SWARM_DATA_DIR", "/srv/b"),
            ("MAX_PREFETCH_PER_DRONE", "4"),
            ("SWARM_PROBE_TIMEOUT_S", "6"),
            ("SWARM_ESCALATION_MANUAL", "page-admins {drone}"),
            ("SWARM_DRONE_TOKEN", "drone-secret"),
            ("SWARM_URL", "http://ignored"),
            ("SWARM_SIM_SEED", "7"),
            ("BINHOST_PATH", ""),
        ],
    );
    let loaded = load_ok(&req);
    let s = &loaded.settings;
    assert_eq!(s.data_dir, Path::new("/srv/b"));
    assert_eq!(s.db_path, Path::new("/srv/b/swarm.db"));
    assert_eq!(s.policy.max_prefetch, 4);
    assert_eq!(s.policy.max_attempts, 7);
    assert_eq!(s.probe.timeout_s, 6);
    assert_eq!(
        s.escalation.manual.as_ref().map(|t| t.text()),
        Some("page-admins {drone}")
    );
    assert_eq!(s.drone_token.as_deref(), Some("drone-secret"));
    assert_eq!(s.binhost_path, None, "an empty variable counts as unset");
    assert_eq!(loaded.source("data_dir"), &env("SWARM_DATA_DIR"));
    assert_eq!(
        loaded.source("policy.max_prefetch"),
        &env("MAX_PREFETCH_PER_DRONE")
    );
    assert_eq!(loaded.source("policy.max_attempts"), &file(&path));
}

#[test]
fn swarm_names_win_over_v3_names() {
    let loaded = load_ok(&request(&[
        ("MAX_PREFETCH_PER_DRONE", "4"),
        ("SWARM_POLICY_MAX_PREFETCH", "5"),
        ("ADMIN_SECRET", "v3-secret-v3-secret"),
        ("SWARM_ADMIN_TOKEN", "swarm-secret-swarm-secret"),
    ]));
    assert_eq!(loaded.settings.policy.max_prefetch, 5);
    assert_eq!(
        loaded.settings.admin_token.as_deref(),
        Some("swarm-secret-swarm-secret")
    );
    assert_eq!(
        loaded.source("policy.max_prefetch"),
        &env("SWARM_POLICY_MAX_PREFETCH")
    );
}

#[test]
fn v3_names_are_read_in_v3_units() {
    let loaded = load_ok(&request(&[
        ("CONTROL_PLANE_PORT", "9000"),
        ("SWARM_DB_PATH", "/v3/swarm.db"),
        ("MAX_DRONE_FAILURES", "5"),
        ("GROUNDING_TIMEOUT", "7"),
        ("FAILURE_AGE_MINUTES", "45"),
        ("NODE_TIMEOUT", "40"),
        ("CORES_PER_SLOT", "6"),
        ("MAX_UPLOAD_FAILURES", "4"),
        ("UPLOAD_RETRY_INTERVAL_M", "12"),
        ("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "20"),
        ("MAX_PREFETCH_PER_DRONE", "3"),
        ("ADMIN_SECRET", "0123456789abcdef"),
        ("STAGING_PATH", "/v3/staging"),
        ("BINHOST_PATH", "/v3/binhost"),
        ("SELF_HEAL_ENABLED", "false"),
        ("SELF_HEAL_INTERVAL", "30"),
        ("SELF_HEAL_TIMEOUT", "5"),
        ("SELF_HEAL_MIN_CONSECUTIVE_FAILURES", "4"),
        ("SELF_HEAL_MIN_FAILURE_WINDOW_SECONDS", "240"),
        ("SELF_HEAL_REBOOT_COMMAND", "ssh root@{address} reboot"),
    ]));
    let s = &loaded.settings;
    assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(s.db_path, Path::new("/v3/swarm.db"));
    assert_eq!(s.policy.max_drone_failures, 5);
    // Minutes where v3 says minutes (GROUNDING_TIMEOUT is GROUNDING_TIMEOUT_MINUTES
    // in v3), seconds where it says seconds.
    assert_eq!(s.policy.grounding_timeout_ms, 7 * 60_000);
    assert_eq!(s.policy.failure_age_ms, 45 * 60_000);
    assert_eq!(s.policy.heartbeat_grace_ms, 40_000);
    assert_eq!(s.policy.cores_per_slot, 6);
    assert_eq!(s.policy.upload_failure_limit, 4);
    assert_eq!(s.policy.upload_failure_window_ms, 12 * 60_000);
    assert_eq!(s.policy.offline_timeout_ms, 20 * 60_000);
    assert_eq!(s.policy.max_prefetch, 3);
    assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(s.staging_path, Path::new("/v3/staging"));
    assert_eq!(s.binhost_path.as_deref(), Some(Path::new("/v3/binhost")));
    assert!(!s.probe.enabled);
    assert_eq!((s.probe.interval_s, s.probe.timeout_s), (30, 5));
    assert_eq!(s.policy.min_consecutive_failures, 4);
    assert_eq!(s.policy.min_failure_window_ms, 240_000);
    assert!(s.escalation.reboot.is_some());
    assert_eq!(loaded.source("listen"), &env("CONTROL_PLANE_PORT"));
    assert_eq!(
        loaded.source("policy.grounding_timeout_ms"),
        &env("GROUNDING_TIMEOUT")
    );
    assert_eq!(
        loaded.source("policy.heartbeat_grace_ms"),
        &env("NODE_TIMEOUT")
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn v3_seconds_and_minutes_are_not_confused() {
    // The same number means different durations under different v3 names.
    let s = load_ok(&request(&[
        ("GROUNDING_TIMEOUT", "5"),
        ("NODE_TIMEOUT", "5"),
    ]))
    .settings;
    assert_eq!(s.policy.grounding_timeout_ms, 300_000);
    assert_eq!(s.policy.heartbeat_grace_ms, 5_000);
    let s = load_ok(&request(&[
        ("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "2"),
        ("SELF_HEAL_MIN_FAILURE_WINDOW_SECONDS", "2"),
    ]))
    .settings;
    assert_eq!(s.policy.offline_timeout_ms, 120_000);
    assert_eq!(s.policy.min_failure_window_ms, 2_000);
    // A swarm name in swarm's unit still wins over the v3 name.
    let s = load_ok(&request(&[
        ("FAILURE_AGE_MINUTES", "10"),
        ("SWARM_POLICY_FAILURE_AGE_MS", "1000"),
    ]))
    .settings;
    assert_eq!(s.policy.failure_age_ms, 1000);
    assert_eq!(
        load_err(&request(&[("FAILURE_AGE_MINUTES", "99999999999999999")])),
        "env FAILURE_AGE_MINUTES=\"99999999999999999\": is too large"
    );
}

#[test]
fn every_v3_setting_swarm_does_not_use_is_named_in_a_warning() {
    let names = [
        "RECLAIM_LEASE_SECONDS",
        "ASSIGNMENT_LEASE_SECONDS",
        "STALE_TIMEOUT",
        "QUEUE_TARGET",
        "SWEEPER_THRESHOLD",
        "LOG_FILE",
        "ADMIN_PORT",
        "RELEASES_BASE_PATH",
        "BINHOST_SYMLINK_PATH",
        "PROFILES_DIR",
        "PORTAGE_SNAPSHOTS_DIR",
        "PROTECTED_HOSTS",
        "REPORT_IP",
        "BINHOST_PRIMARY_IP",
        "BINHOST_SECONDARY_PORT",
        "V2_GATEWAY_URL",
        "V2_SWARM_CONFIG",
        "SWARMV3_URL",
    ];
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "1")).collect();
    let loaded = load_ok(&request(&pairs));
    for name in names {
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with(&format!("env {name} has no effect: "))),
            "no warning names {name}: {:?}",
            loaded.warnings
        );
    }
    assert_eq!(loaded.warnings.len(), names.len());
    // v3's default sweeper prefix is what swarm does: nothing to warn about.
    assert!(load_ok(&request(&[("SWEEPER_PREFIX", "sweeper-")]))
        .warnings
        .is_empty());
    let w = load_ok(&request(&[("SWEEPER_PREFIX", "sw-")])).warnings;
    assert!(
        w[0].starts_with("env SWEEPER_PREFIX has no effect"),
        "{w:?}"
    );
}

#[test]
fn control_plane_port_keeps_the_configured_host() {
    let (_dir, _path, req) = with_file(
        "listen = \"0.0.0.0:8100\"\n",
        &[("CONTROL_PLANE_PORT", "9000")],
    );
    assert_eq!(load_ok(&req).settings.listen.to_string(), "0.0.0.0:9000");
}

#[test]
fn v3_variables_without_meaning_warn_and_two_disagreeing_ones_fail() {
    let loaded = load_ok(&request(&[("RECLAIM_LEASE_SECONDS", "600")]));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].starts_with("env RECLAIM_LEASE_SECONDS has no effect"));
    let err = load_err(&request(&[
        ("SELF_HEAL_INTERVAL", "30"),
        ("SELF_HEAL_PROBE_INTERVAL_SECONDS", "45"),
    ]));
    assert_eq!(
        err,
        "env SELF_HEAL_INTERVAL and env SELF_HEAL_PROBE_INTERVAL_SECONDS both set \
         probe.interval_s to different values; unset one"
    );
    load_ok(&request(&[
        ("SELF_HEAL_INTERVAL", "30"),
        ("SELF_HEAL_PROBE_INTERVAL_SECONDS", "30"),
    ]));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let (_dir, path, req) = with_file("[polcy]\nmax_prefetch = 3\n", &[]);
    assert_eq!(
        load_err(&req),
        format!(
            "unknown key \"polcy.max_prefetch\" in {} (did you mean \"policy.max_prefetch\"?)",
            path.display()
        )
    );
    let (_dir, path, req) = with_file("[policy]\nmax_prefech = 3\n", &[]);
    assert!(load_err(&req).starts_with(&format!(
        "unknown key \"policy.max_prefech\" in {}",
        path.display()
    )));
    let (_dir, _path, req) = with_file("colour = \"blue\"\n", &[]);
    assert!(load_err(&req).contains("unknown key \"colour\""));
    let (_dir, _path, req) = with_file("[probe]\nintervall_s = 5\n", &[]);
    assert!(load_err(&req).contains("did you mean \"probe.interval_s\"?"));
}

#[test]
fn unknown_variables_in_swarm_and_v3_namespaces_are_errors() {
    let err = load_err(&request(&[("SELF_HEAL_FROBNICATE", "1")]));
    assert!(
        err.starts_with(
            "unknown environment variable SELF_HEAL_FROBNICATE; swarm reads SELF_HEAL_ENABLED"
        ),
        "{err}"
    );
    let err = load_err(&request(&[("SWARM_POLICY_MAX_PREFECH", "1")]));
    assert_eq!(
        err,
        "unknown environment variable SWARM_POLICY_MAX_PREFECH \
         (did you mean SWARM_POLICY_MAX_PREFETCH?); unset it"
    );
    assert!(load_err(&request(&[("SWARM_PROBE_COLOUR", "1")])).contains("SWARM_PROBE_COLOUR"));
}

#[test]
fn bad_values_name_the_key_and_the_source() {
    assert_eq!(
        load_err(&request(&[("MAX_PREFETCH_PER_DRONE", "abc")])),
        "env MAX_PREFETCH_PER_DRONE=\"abc\": not a number"
    );
    assert_eq!(
        load_err(&request(&[("GROUNDING_TIMEOUT", "5m")])),
        "env GROUNDING_TIMEOUT=\"5m\": not a number"
    );
    assert_eq!(
        load_err(&request(&[("SWARM_LISTEN", "localhost")])),
        "env SWARM_LISTEN=\"localhost\": expected IP:PORT such as 127.0.0.1:8100 or [::1]:8100"
    );
    assert_eq!(
        load_err(&request(&[("SELF_HEAL_ENABLED", "maybe")])),
        "env SELF_HEAL_ENABLED=\"maybe\": not a boolean (use true or false)"
    );
    assert_eq!(
        load_err(&request(&[("CONTROL_PLANE_PORT", "70000")])),
        "env CONTROL_PLANE_PORT=\"70000\": not a port number (1-65535)"
    );
    assert_eq!(
        load_err(&request(&[("SWARM_POLICY_MAX_PREFETCH", "99999999999")])),
        "env SWARM_POLICY_MAX_PREFETCH=\"99999999999\": is too large"
    );

    let (_dir, path, req) = with_file("[policy]\nmax_prefetch = 0\n", &[]);
    assert_eq!(
        load_err(&req),
        format!(
            "policy.max_prefetch must be greater than zero (from {})",
            path.display()
        )
    );
    let (_dir, path, req) = with_file("[policy]\nmax_prefetch = \"two\"\n", &[]);
    assert_eq!(
        load_err(&req),
        format!(
            "policy.max_prefetch = \"two\" in {}: expected a whole number",
            path.display()
        )
    );
    let (_dir, _path, req) = with_file("[policy]\nordering = \"random\"\n", &[]);
    assert!(load_err(&req).contains("unknown variant `random`"));
    let (_dir, _path, req) = with_file("listen = 8100\n", &[]);
    assert!(load_err(&req).contains("listen = 8100 in"));
    let (_dir, _path, req) = with_file("synchronous = \"sometimes\"\n", &[]);
    assert!(load_err(&req).ends_with(": expected \"normal\" or \"full\""));
    let (_dir, _path, req) = with_file("[probe]\nparallel = 0\n", &[]);
    assert!(load_err(&req).ends_with(": must be between 1 and 256"));
    let (_dir, _path, req) = with_file("admin_token = \"\"\n", &[]);
    assert!(load_err(&req).contains("admin_token = \"(hidden)\""));
    let (_dir, path, req) = with_file("listen = \n", &[]);
    assert!(load_err(&req).starts_with(&format!("{} is not valid TOML", path.display())));
}

#[test]
fn allowed_hosts_are_host_names_from_the_file_or_the_environment() {
    let (_dir, _path, req) = with_file("allowed_hosts = [\"Swarm.Example.org\", \"*.lan\"]\n", &[]);
    assert_eq!(
        load_ok(&req).settings.allowed_hosts,
        ["swarm.example.org", "*.lan"]
    );
    let loaded = load_ok(&request(&[("SWARM_ALLOWED_HOSTS", "a.example, *")]));
    assert_eq!(loaded.settings.allowed_hosts, ["a.example", "*"]);
    assert!(load_ok(&request(&[])).settings.allowed_hosts.is_empty());
    let err = load_err(&request(&[("SWARM_ALLOWED_HOSTS", "http://x.example")]));
    assert!(err.starts_with("env SWARM_ALLOWED_HOSTS="), "{err}");
    assert!(err.contains("is not a host name"), "{err}");
    let (_dir, _path, req) = with_file("allowed_hosts = \"x.example\"\n", &[]);
    assert!(
        load_err(&req).contains("expected a list"),
        "{}",
        load_err(&req)
    );
    let many = (0..65)
        .map(|i| format!("h{i}.example"))
        .collect::<Vec<_>>()
        .join(",");
    let err = load_err(&request(&[("SWARM_ALLOWED_HOSTS", &many)]));
    assert!(err.contains("65 names; at most 64"), "{err}");
}

#[test]
fn policy_combinations_name_where_each_value_came_from() {
    let (_dir, path, req) = with_file(
        "[policy]\nheartbeat_grace_ms = 600000\n",
        &[("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "5")],
    );
    let err = load_err(&req);
    assert!(
        err.starts_with("policy.heartbeat_grace_ms (600000 ms) must be shorter than offline_timeout_ms (300000 ms)"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "(from heartbeat_grace_ms: {}; offline_timeout_ms: env RECLAIM_OFFLINE_TIMEOUT_MINUTES)",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn an_unset_confirmed_dead_wait_follows_a_shorter_v3_offline_timeout() {
    // v3's shortest offline timeout, with the grace under it (h14's F4).
    let loaded = load_ok(&request(&[
        ("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "1"),
        ("NODE_TIMEOUT", "30"),
    ]));
    assert_eq!(loaded.settings.policy.offline_timeout_ms, 60_000);
    assert_eq!(loaded.settings.policy.confirmed_dead_after_ms, 60_000);
    assert!(
        loaded.warnings.iter().any(|w| w.starts_with(
            "policy.confirmed_dead_after_ms follows offline_timeout_ms (60000 ms, env RECLAIM_OFFLINE_TIMEOUT_MINUTES)"
        )),
        "{:?}",
        loaded.warnings
    );
    // At or under the offline timeout it is left alone, and said nothing of.
    let loaded = load_ok(&request(&[("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "2")]));
    assert_eq!(loaded.settings.policy.confirmed_dead_after_ms, 120_000);
    assert!(!loaded.warnings.iter().any(|w| w.contains("confirmed_dead")));
    // Set by the operator, it is checked as given.
    let (_dir, path, req) = with_file(
        "[policy]\nconfirmed_dead_after_ms = 90000\n",
        &[
            ("RECLAIM_OFFLINE_TIMEOUT_MINUTES", "1"),
            ("NODE_TIMEOUT", "30"),
        ],
    );
    let err = load_err(&req);
    assert!(
        err.starts_with("policy.confirmed_dead_after_ms (90000 ms) must be at most offline_timeout_ms (60000 ms)"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn templates_may_only_use_their_placeholders() {
    let (_dir, path, req) = with_file("[probe]\ncommand = \"ssh root@{host}\"\n", &[]);
    assert_eq!(
        load_err(&req),
        format!(
            "probe.command = \"ssh root@{{host}}\" in {}: unknown placeholder {{host}}; this command \
             may use {{drone}}, {{address}} (write {{{{host}}}} for a literal {{host}})",
            path.display()
        )
    );
    let (_dir, _path, req) = with_file("[probe]\ncommand = \"check {action}\"\n", &[]);
    assert!(load_err(&req).contains("unknown placeholder {action}"));
    let (_dir, _path, req) = with_file("[escalation]\nreboot = \"notify {action} {drone}\"\n", &[]);
    load_ok(&req);
    let err = load_err(&request(&[("SELF_HEAL_REBOOT_COMMAND", "ssh 'unbalanced")]));
    assert!(
        err.starts_with("env SELF_HEAL_REBOOT_COMMAND=\"ssh 'unbalanced\": cannot split"),
        "{err}"
    );
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let (_dir, path, mut req) = with_file(
        "listen = \"127.0.0.1:1111\"\ndata_dir = \"/from/file\"\n[probe]\nparallel = 2\n",
        &[
            ("SWARM_LISTEN", "127.0.0.1:2222"),
            ("SWARM_DATA_DIR", "/from/env"),
        ],
    );
    let loaded = load_ok(&req);
    assert_eq!(loaded.settings.listen.port(), 2222);
    assert_eq!(loaded.settings.data_dir, Path::new("/from/env"));
    assert_eq!(loaded.settings.probe.parallel, 2);

    req.listen = Some(SocketAddr::from(([0, 0, 0, 0], 3333)));
    req.data_dir = Some(PathBuf::from("/from/flag"));
    let loaded = load_ok(&req);
    assert_eq!(loaded.settings.listen.to_string(), "0.0.0.0:3333");
    assert_eq!(loaded.settings.data_dir, Path::new("/from/flag"));
    assert_eq!(loaded.settings.db_path, Path::new("/from/flag/swarm.db"));
    assert_eq!(loaded.source("listen"), &Source::Flag("--listen"));
    assert_eq!(loaded.source("data_dir"), &Source::Flag("--data-dir"));
    assert_eq!(loaded.source("probe.parallel"), &file(&path));
}

#[test]
fn show_lists_every_key_with_its_source_and_hides_tokens() {
    let loaded = load_ok(&request(&[
        ("ADMIN_SECRET", "0123456789abcdef-secret"),
        ("SWARM_POLICY_MAX_PREFETCH", "3"),
    ]));
    let entries = loaded.entries();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), keys::all_keys().len());
    assert!(keys.contains(&"escalation.timeout_s") && keys.contains(&"policy.brake_enabled"));
    let find = |key: &str| entries.iter().find(|e| e.key == key).cloned();
    let token = find("admin_token").expect("admin_token is listed");
    assert_eq!(token.value, serde_json::json!("(hidden)"));
    assert_eq!(token.source.to_string(), "env ADMIN_SECRET");
    let prefetch = find("policy.max_prefetch").expect("max_prefetch is listed");
    assert_eq!(prefetch.value, serde_json::json!(3));
    assert_eq!(prefetch.source.to_string(), "env SWARM_POLICY_MAX_PREFETCH");
    let db = find("db_path").expect("db_path is listed");
    assert_eq!(db.source.to_string(), "default, under data_dir");
    assert_eq!(
        find("drone_token").map(|e| e.value),
        Some(serde_json::Value::Null)
    );
    assert!(!format!("{:?}", loaded.settings).contains("0123456789abcdef-secret"));
}

#[test]
fn the_sample_config_parses_and_documents_the_real_defaults() {
    let path = Path::new("dist/swarm.toml");
    file::parse(SAMPLE, path).expect("the sample parses as shipped");
    // Uncomment every `#key = value` and `#[table]` line: still valid, and the
    // values shown are the built-in defaults.
    let uncommented: String = SAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let values = match file::parse(&uncommented, path) {
        Ok(values) => values,
        Err(e) => panic!("the uncommented sample must parse: {e}"),
    };
    let mut layers = Layers::default();
    for (key, typed) in values {
        layers.set(key, typed, Source::File(path.to_owned()));
    }
    assert_eq!(policy(&layers).ok(), Some(Config::default()));
    let defaults = ProbeSettings::default();
    assert_eq!(
        layers.template("probe.command", None),
        Some(defaults.command)
    );
    assert_eq!(layers.int("probe.interval_s", 0), defaults.interval_s);
    assert_eq!(layers.int("probe.timeout_s", 0), defaults.timeout_s);
    assert_eq!(layers.size("probe.parallel", 0), defaults.parallel);
    assert_eq!(layers.int("max_body_bytes", 0), 1 << 20);
    assert_eq!(layers.int("max_artifact_bytes", 0), 2 << 30);
    assert_eq!(layers.get("listen"), Some(&Typed::Addr(DEFAULT_LISTEN)));
    let documented: std::collections::BTreeSet<&String> = layers.values.keys().collect();
    for key in keys::all_keys() {
        assert!(
            documented.contains(&key),
            "dist/swarm.toml does not document {key}"
        );
    }
}

#[test]
fn the_default_probe_prints_figures_the_prober_understands() {
    let command = ProbeSettings::default().command;
    let argv = command.render(&[("drone", "d1"), ("address", "10.0.0.5")]);
    assert_eq!(argv[0], "ssh");
    assert!(argv.contains(&"root@10.0.0.5".to_owned()));
    // Run the remote half here, as the drone's shell would.
    let script = argv.last().expect("a remote script");
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = parse_figures(&swarm_core::DroneName::new("d1").expect("name"), &stdout);
    assert!(report.service_up.is_some(), "{stdout}");
    assert!(report.load_centi.is_some(), "{stdout}");
    assert!(report.cores.is_some(), "{stdout}");
    assert!(report.disk_percent.is_some(), "{stdout}");
    assert!(report.mem_percent.is_some(), "{stdout}");
}

/// Every whole-number server key has an upper bound (a new key without one
/// fails here), and one past it is refused naming the variable.
#[test]
fn every_numeric_server_key_has_an_upper_bound_that_is_enforced() {
    let mut checked = 0;
    for (key, kind) in keys::SERVER_KEYS {
        let keys::Kind::Int { max, .. } = *kind else {
            continue;
        };
        assert!(max < u64::MAX / 2, "{key} has no real upper bound");
        let name = env::env_name(key);
        let past = (max + 1).to_string();
        let err = load_err(&request(&[(name.as_str(), past.as_str())]));
        assert!(
            err.starts_with(&format!("env {name}=\"{past}\"")) && err.contains(&max.to_string()),
            "{key}: {err}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} numeric keys");
}

#[test]
fn a_network_listen_address_without_tls_or_a_proxy_note_is_warned_about() {
    let warned = |loaded: &Loaded| loaded.warnings.iter().any(|w| w.contains("plain http"));
    let (_d, _p, req) = with_file("listen = \"0.0.0.0:8100\"\n", &[]);
    let loaded = load_ok(&req);
    assert!(warned(&loaded), "{:?}", loaded.warnings);
    let (_d, _p, req) = with_file("listen = \"0.0.0.0:8100\"\ntls_proxy = true\n", &[]);
    assert!(!warned(&load_ok(&req)));
    let (_d, _p, req) = with_file("listen = \"127.0.0.1:8100\"\n", &[]);
    assert!(!warned(&load_ok(&req)));
}

#[test]
fn tls_needs_both_files_and_files_that_load() {
    let (_d, _p, req) = with_file("tls_cert = \"/etc/swarm/tls/cert.pem\"\n", &[]);
    let e = load_err(&req);
    assert!(e.contains("tls_key is not"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, "not a certificate\n").expect("write");
    std::fs::write(&key, "not a key\n").expect("write");
    let text = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (_d, _p, req) = with_file(&text, &[]);
    let e = load_err(&req);
    assert!(e.contains("c.pem") && e.contains("no CERTIFICATE"), "{e}");
    // A real pair loads, and a key of another certificate does not.
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.key_pair.serialize_pem()).expect("write");
    use std::os::unix::fs::PermissionsExt;
    let key_warned = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let loaded = load_ok(&with_file(&text, &[]).2);
        assert_eq!(loaded.settings.tls_cert.as_deref(), Some(cert.as_path()));
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("readable by every user"))
    };
    assert!(key_warned(0o644), "a key every user reads (h11)");
    assert!(!key_warned(0o640) && !key_warned(0o600));
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).expect("cert");
    std::fs::write(&key, other.key_pair.serialize_pem()).expect("write");
    let e = load_err(&with_file(&text, &[]).2);
    assert!(e.contains("tls_cert") && e.contains("tls_key"), "{e}");
}

#[test]
fn a_short_read_token_or_one_equal_to_the_admin_token_is_warned_about() {
    let warned = |env: &[(&str, &str)], what: &str| {
        load_ok(&request(env))
            .warnings
            .iter()
            .any(|w| w.contains(what))
    };
    assert!(warned(
        &[("SWARM_READ_TOKEN", "short")],
        "read_token (env SWARM_READ_TOKEN) is shorter"
    ));
    let long = "0123456789abcdef-long-enough";
    assert!(!warned(&[("SWARM_READ_TOKEN", long)], "read_token"));
    assert!(warned(
        &[("SWARM_READ_TOKEN", long), ("SWARM_ADMIN_TOKEN", long)],
        "read_token equals admin_token"
    ));
    assert_eq!(
        load_ok(&request(&[("SWARM_READ_TOKEN", long)]))
            .settings
            .read_token
            .as_deref(),
        Some(long)
    );
    // Tokens are trimmed, as presented ones are (h10): a newline no longer
    // refuses every reader, nor do blanks hide that two tokens are one.
    let padded = format!(" {long}\n");
    assert_eq!(
        load_ok(&request(&[("SWARM_READ_TOKEN", &padded)]))
            .settings
            .read_token
            .as_deref(),
        Some(long)
    );
    assert!(warned(
        &[("SWARM_READ_TOKEN", long), ("SWARM_ADMIN_TOKEN", &padded)],
        "read_token equals admin_token"
    ));
    assert!(warned(
        &[("SWARM_READ_TOKEN", long), ("SWARM_DRONE_TOKEN", long)],
        "read_token equals drone_token"
    ));
    assert!(warned(
        &[("SWARM_READ_TOKEN", "   ")],
        "SWARM_READ_TOKEN holds only blanks"
    ));
    let (_dir, _, file) = with_file(&format!("admin_token = \"{long} \"\n"), &[]);
    assert_eq!(
        load_ok(&file).settings.admin_token.as_deref(),
        Some(long),
        "a file's tokens too"
    );
    // One no client can send is refused, naming where it came from and the
    // character, never the token (h12: an agent retried it for ever).
    let env_err = load_err(&request(&[("SWARM_DRONE_TOKEN", "drone\u{1}secret")]));
    assert!(env_err.contains("SWARM_DRONE_TOKEN"), "{env_err}");
    assert!(env_err.contains("control character (U+0001)"), "{env_err}");
    assert!(!env_err.contains("secret"), "{env_err}");
    assert!(
        env_err.starts_with("env SWARM_DRONE_TOKEN=(hidden): "),
        "{env_err}"
    );
    let (_dir, _, file) = with_file("read_token = \"r\\u00e9ader\"\n", &[]);
    let file_err = load_err(&file);
    assert!(file_err.contains("read_token"), "{file_err}");
    assert!(
        file_err.contains("non-ASCII character (U+00E9)"),
        "{file_err}"
    );
    assert!(!file_err.contains("r\u{e9}ader"), "{file_err}");
}

#[test]
fn a_config_file_is_a_regular_file_of_a_bounded_size() {
    // A FIFO was waited on for ever, /dev/zero read until memory ran out (h13).
    let (dir, _, mut req) = with_file("", &[]);
    let fifo = dir.path().join("fifo.toml");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    req.config = ConfigFile::Explicit(fifo);
    let e = load_err(&req);
    assert!(
        e.contains("fifo.toml") && e.contains("not a regular file"),
        "{e}"
    );
    req.config = ConfigFile::Explicit(PathBuf::from("/dev/zero"));
    assert!(load_err(&req).contains("not a regular file"));
    // The usual "no file" still is one.
    req.config = ConfigFile::Explicit(PathBuf::from("/dev/null"));
    load_ok(&req);
    let big = dir.path().join("big.toml");
    let line = "# a comment line of some length, repeated\n";
    std::fs::write(&big, line.repeat((5 << 20) / line.len())).expect("write");
    req.config = ConfigFile::Explicit(big);
    let e = load_err(&req);
    assert!(e.contains("bytes, more than the 4194304"), "{e}");
}

#[test]
fn a_near_miss_of_a_setting_in_the_environment_is_warned_about() {
    let warned = |name: &str, says: &str| {
        load_ok(&request(&[(name, "x")]))
            .warnings
            .iter()
            .any(|w| w.contains(says))
    };
    // A misspelt read token left the reads open without a word (h13).
    assert!(warned(
        "SWARM_READ_TOKNE",
        "SWARM_READ_TOKNE is no setting and is ignored (did you mean SWARM_READ_TOKEN?)"
    ));
    assert!(warned("SWARM_LISTN", "did you mean SWARM_LISTEN?"));
    // The CLI's, the agent's and the builds' own are not taken for one.
    for other in [
        "SWARM_URL",
        "SWARM_DATA_DIR",
        "SWARM_DRONE_NAME",
        "SWARM_CONFIG",
    ] {
        assert!(!warned(other, "is no setting"), "{other}");
    }
    // A v3 name of blanks is said too, as a SWARM_ one is.
    assert!(load_ok(&request(&[("ADMIN_SECRET", "  ")]))
        .warnings
        .iter()
        .any(|w| w == "ADMIN_SECRET holds only blanks: treated as unset"));
    // Nor is a name like no setting at all.
    assert!(!warned("SWARM_SOMETHING_ELSE_ENTIRELY", "is no setting"));
}

#[test]
fn a_syntax_error_never_quotes_a_line_with_a_token() {
    // The parser quotes the offending line: a duplicate admin_token, or a
    // stray character after one, printed the token (h15).
    for text in [
        "admin_token = \"GOODSECRET-1\"\nadmin_token = \"GOODSECRET-2\"\n",
        "read_token = \"GOODSECRET\" x\n",
        "drone_token = \"GOOD\u{7}SECRET\"\n",
    ] {
        let (_dir, _, req) = with_file(text, &[]);
        let e = load_err(&req);
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("line ") && e.contains("column "), "{e}");
    }
    // Any other line is still shown, to find the mistake by.
    let (_dir, _, req) = with_file("listen = \"127.0.0.1:8100\" x\n", &[]);
    let e = load_err(&req);
    assert!(e.contains("1 | listen = \"127.0.0.1:8100\" x"), "{e}");
}
