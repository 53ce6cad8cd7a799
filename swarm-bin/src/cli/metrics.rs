//! `swarm metrics`: the server's Prometheus text, as is or as JSON samples.

use super::conn::{read_error, ServerArgs};
use super::fmt::{emit_json, emit_raw};
use serde_json::{json, Map, Value};

#[derive(clap::Args, Debug)]
pub(crate) struct MetricsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the samples as JSON ({"name","labels","value"} objects) instead of the raw text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: MetricsArgs) -> anyhow::Result<()> {
    let text = args.server.client()?.metrics().map_err(read_error)?;
    if args.json {
        return emit_json(&Value::Array(samples(&text)));
    }
    // Prometheus text, as the server wrote it: never re-wrapped.
    emit_raw(&text)
}

/// The samples of Prometheus text format; comments and malformed lines are
/// skipped. A value JSON cannot hold (`NaN`, `+Inf`) stays a string.
pub(crate) fn samples(text: &str) -> Vec<Value> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<Value> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Map::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), Value::String(value));
                }
                other => key.push(other),
            }
        };
        rest = &body[end + 1..];
    }
    let raw = rest.split_whitespace().next()?;
    let value = match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => json!(v),
        _ => Value::String(raw.to_owned()),
    };
    Some(json!({"name": name, "labels": labels, "value": value}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_samples_become_json_objects() {
        let text = "# HELP swarm_queue Packages by state.\n# TYPE swarm_queue gauge\n\
                    swarm_queue{state=\"queued\"} 80\n\
                    swarm_queue{state=\"a \\\"b\\\"\",x=\"1\"} 2.5\n\
                    swarm_up 1 1700000000000\n\
                    swarm_ratio NaN\n\
                    garbage{\n";
        let s = samples(text);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(
            s[0],
            json!({"name": "swarm_queue", "labels": {"state": "queued"}, "value": 80.0})
        );
        assert_eq!(s[1]["labels"], json!({"state": "a \"b\"", "x": "1"}));
        assert_eq!(
            s[2],
            json!({"name": "swarm_up", "labels": {}, "value": 1.0})
        );
        assert_eq!(s[3]["value"], "NaN");
    }
}
