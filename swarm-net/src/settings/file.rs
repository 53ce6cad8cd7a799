//! The TOML file: server keys at the top, `[probe]`, `[escalation]`,
//! `[policy]`, and the drone agent's `[drone]`, which is skipped here.

use super::keys::{self, Typed};
use super::{SettingsError, Source};
use std::path::Path;

/// The file's values with their keys, in file order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Typed)>, SettingsError> {
    let text = crate::regular_file::read_small_text(path, crate::regular_file::MAX_CONFIG_BYTES)
        .map_err(|error| SettingsError::Read {
            path: path.to_owned(),
            error,
        })?;
    parse(&text, path)
}

/// A TOML error as its line, column and reason, with the line itself only
/// when it holds no token: the parser's own text quotes the line, and a
/// duplicate `admin_token` or a stray character after one printed the
/// token (h15).
pub fn toml_error_text(e: &toml::de::Error, text: &str) -> String {
    let reason = e.message().trim();
    let Some(span) = e.span() else {
        return reason.to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let lower = line.to_ascii_lowercase();
    if lower.contains("token") || lower.contains("secret") {
        format!("line {line_no}, column {column}: {reason} (the line is not shown: it may hold a token)")
    } else {
        format!("line {line_no}, column {column}: {reason}\n  {line_no} | {line}")
    }
}

/// Parses file contents; `path` is only for messages.
pub(super) fn parse(text: &str, path: &Path) -> Result<Vec<(String, Typed)>, SettingsError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Syntax {
        path: path.to_owned(),
        message: toml_error_text(&e, text),
    })?;
    let mut values = Vec::new();
    for (name, value) in &table {
        if name == "drone" {
            if !value.is_table() {
                return Err(bad(path, name, value, "expected a table: [drone]".into()));
            }
            continue;
        }
        if keys::TABLES.contains(&name.as_str()) {
            let Some(inner) = value.as_table() else {
                return Err(bad(
                    path,
                    name,
                    value,
                    format!("expected a table: [{name}]"),
                ));
            };
            for (field, v) in inner {
                values.push(entry(path, &format!("{name}.{field}"), v)?);
            }
            continue;
        }
        values.push(entry(path, name, value)?);
    }
    Ok(values)
}

fn entry(path: &Path, key: &str, value: &toml::Value) -> Result<(String, Typed), SettingsError> {
    let Some(kind) = keys::kind_of(key) else {
        // Name the first key inside a misspelled table: "polcy.max_prefetch".
        let key = match value.as_table().and_then(|t| t.keys().next()) {
            Some(inner) if !keys::TABLES.contains(&key) => format!("{key}.{inner}"),
            _ => key.to_owned(),
        };
        return Err(SettingsError::UnknownKey {
            hint: keys::suggest(&key)
                .map(|k| format!(" (did you mean \"{k}\"?)"))
                .unwrap_or_else(|| "; `swarm config show` lists every key".into()),
            key,
            path: path.to_owned(),
        });
    };
    let typed =
        keys::from_toml(key, kind, value).map_err(|reason| bad(path, key, value, reason))?;
    Ok((key.to_owned(), typed))
}

fn bad(path: &Path, key: &str, value: &toml::Value, reason: String) -> SettingsError {
    let shown = match (keys::kind_of(key), value) {
        (Some(keys::Kind::Secret), _) => "\"(hidden)\"".to_owned(),
        (_, toml::Value::Table(_)) => "{...}".to_owned(),
        _ => value.to_string(),
    };
    SettingsError::BadValue {
        key: key.to_owned(),
        origin: Source::File(path.to_owned()),
        value: shown,
        reason,
    }
}
