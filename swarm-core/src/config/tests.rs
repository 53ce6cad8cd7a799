//! `Config::validate` refuses nonsense by name; the digest ignores thresholds at their defaults.

use super::*;

#[test]
fn defaults_are_valid() {
    assert_eq!(Config::default().validate(), Ok(()));
    assert_eq!(Config::v3().validate(), Ok(()));
}

#[test]
fn zero_prefetch_is_rejected_by_name() {
    let c = Config {
        max_prefetch: 0,
        ..Config::default()
    };
    assert_eq!(
        c.validate(),
        Err(ConfigError::Zero {
            field: "max_prefetch"
        })
    );
}

#[test]
fn brake_ratio_above_a_hundred_percent_is_rejected() {
    let c = Config {
        brake_ratio_percent: 120,
        ..Config::default()
    };
    let err = c.validate().err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("brake_ratio_percent is 120 %, but must be between 1 and 100")
    );
}

#[test]
fn offline_timeout_shorter_than_grace_is_rejected() {
    let c = Config {
        offline_timeout_ms: 10_000,
        ..Config::default()
    };
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Order {
            field: "heartbeat_grace_ms",
            ..
        })
    ));
}

/// Every numeric field of the policy, found from the type itself (so a
/// new field without a bound fails here), refuses an absurd value by name.
#[test]
fn every_numeric_policy_field_refuses_an_absurd_value_by_name() {
    let serde_json::Value::Object(defaults) =
        serde_json::to_value(Config::default()).expect("serialisable")
    else {
        panic!("a config is an object");
    };
    let mut checked = 0;
    for (field, value) in &defaults {
        // `u32::MAX` drones is how "never" is spelt (`Config::v3`).
        if field == "block_after_drones" {
            continue;
        }
        let slots = match value {
            serde_json::Value::Number(_) => vec![None],
            serde_json::Value::Array(a) => (0..a.len()).map(Some).collect(),
            _ => continue,
        };
        for slot in slots {
            let name = match slot {
                Some(i) => format!("{field}[{i}]"),
                None => field.clone(),
            };
            let err = [u64::MAX, u64::from(u32::MAX)]
                .into_iter()
                .find_map(|absurd| {
                    let mut json = serde_json::Value::Object(defaults.clone());
                    match slot {
                        Some(i) => json[field][i] = absurd.into(),
                        None => json[field] = absurd.into(),
                    }
                    serde_json::from_value::<Config>(json).ok()
                })
                .unwrap_or_else(|| panic!("{name} takes neither u64 nor u32"))
                .validate()
                .expect_err(&name)
                .to_string();
            assert!(err.starts_with(&name), "{name}: {err}");
            checked += 1;
        }
    }
    assert!(checked >= 29, "only {checked} fields checked");
}

#[test]
fn a_value_at_its_bound_is_accepted() {
    let c = Config {
        failure_memory_ms: MAX_CONFIG_MS,
        max_attempts: MAX_CONFIG_COUNT,
        max_prefetch: MAX_SLOT_COUNT,
        ..Config::default()
    };
    assert_eq!(c.validate(), Ok(()));
    let c = Config {
        failure_memory_ms: MAX_CONFIG_MS + 1,
        ..Config::default()
    };
    assert_eq!(
        c.validate().map_err(|e| e.to_string()),
        Err(format!(
            "failure_memory_ms is {}, but must be at most {MAX_CONFIG_MS} ms",
            MAX_CONFIG_MS + 1
        ))
    );
}

#[test]
fn slots_follow_cores_with_a_floor_of_one() {
    let c = Config::default();
    assert_eq!(c.slots_for(2), 1);
    assert_eq!(c.slots_for(24), 6);
}

#[test]
fn probe_thresholds_are_validated_by_name() {
    let c = Config {
        probe_disk_critical_percent: 101,
        ..Config::default()
    };
    assert_eq!(
        c.validate().map_err(|e| e.to_string()),
        Err("probe_disk_critical_percent is 101 %, but must be between 1 and 100".into())
    );
    let c = Config {
        probe_disk_warning_percent: 96,
        ..Config::default()
    };
    assert_eq!(
        c.validate().map_err(|e| e.to_string()),
        Err(
            "probe_disk_warning_percent (96 %) must be at most probe_disk_critical_percent (95 %)"
                .into()
        )
    );
    let c = Config {
        probe_overload_per_core_centi: 0,
        ..Config::default()
    };
    assert_eq!(
        c.validate(),
        Err(ConfigError::Zero {
            field: "probe_overload_per_core_centi"
        })
    );
}

/// Stored configs and snapshots from before the probe thresholds parse, and
/// the thresholds at their defaults leave the digest where it was.
#[test]
fn a_config_without_probe_thresholds_parses_to_the_defaults_and_hashes_as_before() {
    use crate::stable_hash::stable_hash;
    let mut json = serde_json::to_value(Config::default()).expect("serialisable");
    let serde_json::Value::Object(fields) = &mut json else {
        panic!("a config is an object");
    };
    fields.retain(|k, _| !k.starts_with("probe_"));
    let old: Config = serde_json::from_value(json).expect("an old config parses");
    assert_eq!(old, Config::default());
    // The hash of `Config::default()` under `#[derive(Hash)]` before the probe fields
    // (the golden log under tests/golden pins the same through its digest).
    assert_eq!(stable_hash(&old), 0x4961_a572_f33c_ad8e_u64);
    for changed in [
        Config {
            probe_disk_warning_percent: 80,
            ..Config::default()
        },
        Config {
            probe_overload_per_core_centi: 300,
            ..Config::default()
        },
    ] {
        assert_ne!(stable_hash(&changed), stable_hash(&old), "{changed:?}");
    }
    let a = Config {
        probe_disk_warning_percent: 90,
        ..Config::default()
    };
    let b = Config {
        probe_disk_critical_percent: 90,
        probe_disk_warning_percent: 85,
        ..Config::default()
    };
    assert_ne!(stable_hash(&a), stable_hash(&b));
}
