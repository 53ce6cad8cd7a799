//! Human output: aligned tables, short durations (`4m12s`), relative times
//! (`12s ago`), and a stdout writer that a closed pipe does not crash.

use anyhow::Context;
use serde_json::Value;
use std::io::Write as _;

/// Writes human output to stdout, each line fitted to the terminal's width
/// ([`fit`]); a reader that went away (`swarm history | head`) ends the
/// output quietly instead of panicking like `println!`.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    emit_raw(&fit(text, columns(Stream::Stdout)))
}

/// Writes to stdout as is (JSON, and frames already cut to the screen).
pub(crate) fn emit_raw(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Prints the server's JSON, pretty, as `--json` promises (never wrapped).
pub(crate) fn emit_json(value: &Value) -> anyhow::Result<()> {
    emit_raw(&(serde_json::to_string_pretty(value)? + "\n"))
}

/// Where human output goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    /// Results.
    Stdout,
    /// Errors and progress.
    Stderr,
}

/// The columns human output may use: the terminal's width when the stream
/// is one, else `$COLUMNS` when set (a transcript, a test), else `None`: a
/// pipe or a file gets whole lines, for grep.
pub(crate) fn columns(stream: Stream) -> Option<usize> {
    let tty = match stream {
        Stream::Stdout => super::term::width_of(std::io::stdout()),
        Stream::Stderr => super::term::width_of(std::io::stderr()),
    };
    tty.or_else(|| {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
    })
    .filter(|w| *w >= 20)
}

/// Fits text to `width` columns: a longer line is wrapped at spaces, its
/// continuation lines indented to where its text column starts (after the
/// last run of two spaces in its first half, as in `label      value` or a
/// table's last column), else to its own indentation plus two. Lines that fit,
/// and all lines when `width` is `None`, are left alone.
pub(crate) fn fit(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let indent = hanging_indent(line, width);
        let opts = textwrap::Options::new(width)
            .subsequent_indent(&indent)
            .word_splitter(textwrap::WordSplitter::NoHyphenation)
            .break_words(true);
        out.push_str(&textwrap::fill(line.trim_end(), opts));
    }
    out
}

/// The continuation indent for a long line (see [`fit`]): where the text
/// after its first run of two or more spaces starts, when that is in the
/// line's first half; else its own indentation plus two.
fn hanging_indent(line: &str, width: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    let lead = chars.iter().take_while(|c| **c == ' ').count();
    let mut col = None;
    let mut i = lead;
    while i + 1 < chars.len() && i < width / 2 {
        if chars[i] == ' ' && chars[i + 1] == ' ' {
            let end = i + chars[i..].iter().take_while(|c| **c == ' ').count();
            col = (end <= width / 2).then_some(end);
            break;
        }
        i += 1;
    }
    " ".repeat(col.unwrap_or(lead + 2))
}

/// Milliseconds since the epoch by this machine's clock.
/// `1 lease`, `2 leases`: a count with its noun in the right number.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A duration for a table cell: `850ms`, `42s`, `4m12s`, `2h05m`, `3d04h`.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..=86_399 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A signed millisecond figure (store rows) as a duration; negatives are
/// clock skew and show as zero.
pub(crate) fn duration_i(ms: i64) -> String {
    duration(u64::try_from(ms).unwrap_or(0))
}

/// `at_ms` relative to `now_ms`: `12s ago`, `in 3m00s`, `just now`, or
/// `never` for a zero timestamp (a drone that never heartbeat).
pub(crate) fn ago(now_ms: u64, at_ms: u64) -> String {
    if at_ms == 0 {
        return "never".to_owned();
    }
    if at_ms > now_ms {
        let d = at_ms - now_ms;
        return if d < 1000 {
            "just now".to_owned()
        } else {
            format!("in {}", duration(d))
        };
    }
    let d = now_ms - at_ms;
    if d < 1000 {
        "just now".to_owned()
    } else {
        format!("{} ago", duration(d))
    }
}

/// [`ago`] for a signed store timestamp.
pub(crate) fn ago_i(now_ms: u64, at_ms: i64) -> String {
    ago(now_ms, u64::try_from(at_ms).unwrap_or(0))
}

/// `HH:MM:SS` (UTC) of a timestamp, for a followed feed whose lines must not
/// age.
pub(crate) fn clock(at_ms: u64) -> String {
    let s = at_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3_600) % 24, (s / 60) % 60, s % 60)
}

/// `YYYY-MM-DD HH:MM:SSZ` of a timestamp (UTC).
pub(crate) fn datetime(at_ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(at_ms / 1000).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| format!("{at_ms} ms"))
}

/// Text a drone wrote (a build log), made safe for a terminal: colour
/// (`ESC [ ... m`, as emerge writes it), newlines, tabs and carriage returns
/// pass; any other control character is shown as `^X` (`^[` for an escape
/// that is not colour), so a log cannot retitle, clear or reprogram the
/// operator's terminal.
pub(crate) fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' | '\t' | '\r' => out.push(c),
            '\u{1b}' => match sgr_len(&text[i..]) {
                Some(n) => {
                    out.push_str(&text[i..i + n]);
                    while chars.next_if(|(j, _)| *j < i + n).is_some() {}
                }
                None => out.push_str("^["),
            },
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(c as u8 ^ 0x40));
            }
            '\u{7f}' => out.push_str("^?"),
            c if c.is_control() => out.push('\u{fffd}'),
            // Bidi overrides and zero-width characters, as table cells show them (h38 F4).
            c if swarm_core::is_hidden(c) => out.push_str(&format!("<U+{:04X}>", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The length of a colour sequence (`ESC [` digits and `;` `m`) at the
/// start of `text`, if one is there.
fn sgr_len(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("\u{1b}[")?;
    let params = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    (params <= 32 && rest.as_bytes().get(params) == Some(&b'm')).then_some(2 + params + 1)
}

/// Replaces control characters (a newline in a failure detail, an escape
/// sequence a drone sent) so one cell stays one line and cannot drive the
/// terminal, shows characters that would hide or turn text around
/// ([`swarm_core::is_hidden`]) as `<U+XXXX>`, as the dashboard does, and
/// shortens it to `max` characters with an ellipsis.
pub(crate) fn cell(text: &str, max: usize) -> String {
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_control() => clean.push(' '),
            c if swarm_core::is_hidden(c) => {
                clean.push_str(&format!("<U+{:04X}>", u32::from(c)));
            }
            c => clean.push(c),
        }
    }
    if clean.chars().count() > max && max > 0 {
        let mut short: String = clean.chars().take(max - 1).collect();
        short.push('…');
        short
    } else {
        clean
    }
}

/// A JSON value as one short line: strings bare, objects as `k=v` pairs.
pub(crate) fn compact(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                // An exact atom starts with `=`: quoted, `package="=a/b-1"`
                // reads better than `package==a/b-1`.
                Value::String(s) if s.starts_with('=') || s.contains(' ') => {
                    format!("{k}={v}")
                }
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// How a column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// An aligned text table: a header row, then rows; columns two spaces apart,
/// no trailing blanks.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[(&'static str, Align)]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are cleaned of control characters.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| cell(c, usize::MAX)).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let mut parts = Vec::with_capacity(n);
            for (i, c) in cells.enumerate().take(n) {
                let (w, align) = (widths[i], self.header[i].1);
                let pad = w.saturating_sub(c.chars().count());
                parts.push(match align {
                    Align::Left => format!("{c}{}", " ".repeat(pad)),
                    Align::Right => format!("{}{c}", " ".repeat(pad)),
                });
            }
            parts.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&mut self.header.iter().map(|(h, _)| *h));
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        out
    }

    /// The table within `width` columns: when it is wider, the `below`
    /// column leaves the table and goes under its row (`  ↳ text`), then the
    /// columns in `drop` are left out, in that order, until it fits; a last
    /// line names what was left out. `None`: no limit, every column.
    pub(crate) fn render_within(
        &self,
        width: Option<usize>,
        below: Option<&str>,
        drop: &[&str],
    ) -> String {
        let full = self.render();
        let Some(width) = width else {
            return full;
        };
        if full.lines().all(|l| l.chars().count() <= width) {
            return full;
        }
        let mut keep: Vec<usize> = (0..self.header.len()).collect();
        let col = |name: &str| self.header.iter().position(|(h, _)| *h == name);
        let below = below.and_then(col);
        keep.retain(|i| Some(*i) != below);
        let narrowed = |keep: &[usize]| {
            let mut t = Table::new(&keep.iter().map(|i| self.header[*i]).collect::<Vec<_>>());
            for row in &self.rows {
                t.row(
                    keep.iter()
                        .map(|i| row.get(*i).cloned().unwrap_or_default())
                        .collect(),
                );
            }
            t.render()
        };
        let mut hidden = Vec::new();
        for name in drop {
            if narrowed(&keep).lines().all(|l| l.chars().count() <= width) {
                break;
            }
            if let Some(i) = col(name) {
                keep.retain(|k| *k != i);
                hidden.push(*name);
            }
        }
        let table = narrowed(&keep);
        let mut out = String::new();
        for (i, line) in table.lines().enumerate() {
            out += line;
            out.push('\n');
            let note = i
                .checked_sub(1)
                .and_then(|r| self.rows.get(r))
                .zip(below)
                .and_then(|(row, b)| row.get(b))
                .filter(|n| !n.is_empty());
            if let Some(note) = note {
                let opts = textwrap::Options::new(width)
                    .initial_indent("  ↳ ")
                    .subsequent_indent("    ");
                out += &textwrap::fill(note, opts);
                out.push('\n');
            }
        }
        if !hidden.is_empty() {
            out += &fit(
                &format!(
                    "(not shown at {width} columns: {}; --json has all)\n",
                    hidden.join(", ")
                ),
                Some(width),
            );
        }
        out
    }
}

/// `12%` or `-` when unknown.
pub(crate) fn percent(p: Option<u32>) -> String {
    p.map(|p| format!("{p}%")).unwrap_or_else(|| "-".to_owned())
}

/// Load ×100 as `1.50`, or `-`.
pub(crate) fn load(centi: Option<u32>) -> String {
    centi
        .map(|c| format!("{}.{:02}", c / 100, c % 100))
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_its_colour_but_cannot_drive_the_terminal() {
        let log =
            "\u{1b}[32;01m*\u{1b}[0m ok\tdone\r\n\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[m\u{7f}\u{9b}x";
        assert_eq!(
            terminal_safe(log),
            "\u{1b}[32;01m*\u{1b}[0m ok\tdone\r\n^[]0;pwned^G^[[2J\u{1b}[m^?\u{fffd}x"
        );
        assert_eq!(terminal_safe("\u{1b}["), "^[[", "cut short");
        assert_eq!(terminal_safe("plain ü"), "plain ü");
        assert_eq!(terminal_safe("a\u{202E}b\u{200B}"), "a<U+202E>b<U+200B>");
    }

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn long_lines_wrap_under_their_text_column_and_keep_every_word() {
        let status = "v3          needed 9  delegated 2  received 0  blocked 1  failed 0  total 12  nodes 2/2 online\nshort\n";
        let out = fit(status, Some(80));
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert_eq!(
            out.lines().nth(1),
            Some("            nodes 2/2 online"),
            "{out}"
        );
        assert_eq!(words(&out), words(status));
        assert!(out.ends_with("short\n"));
        // A path is not split at its hyphens; one longer than the line is cut.
        let err = "error: no admin token found (looked for /tmp/first-day.J89Kgx/.local/share/swarm/admin.token, x)";
        let out = fit(err, Some(60));
        assert!(out.lines().all(|l| l.chars().count() <= 60), "{out}");
        assert!(
            out.contains("/tmp/first-day.J89Kgx/.local/share/swarm/admin.token"),
            "{out}"
        );
        // No width (a pipe): untouched.
        assert_eq!(fit(status, None), status);
    }

    #[test]
    fn a_wide_table_moves_its_notes_under_the_row_and_drops_columns_in_order() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("STATUS", Align::Left),
            ("ADDRESS", Align::Left),
            ("LOAD", Align::Right),
            ("NOTES", Align::Left),
        ]);
        t.row(vec![
            "drone-a".into(),
            "stopped".into(),
            "10.0.0.5".into(),
            "0.50".into(),
            "stopped cleanly; back when its agent starts".into(),
        ]);
        t.row(vec![
            "drone-b".into(),
            "online".into(),
            "10.0.0.6".into(),
            "1.25".into(),
            String::new(),
        ]);
        let wide = t.render_within(None, Some("NOTES"), &["ADDRESS"]);
        assert_eq!(wide, t.render());
        let out = t.render_within(Some(30), Some("NOTES"), &["ADDRESS", "LOAD"]);
        assert!(out.lines().all(|l| l.chars().count() <= 30), "{out}");
        assert_eq!(
            out,
            "NAME     STATUS   LOAD\n\
             drone-a  stopped  0.50\n  \
             ↳ stopped cleanly; back\n    \
             when its agent starts\n\
             drone-b  online   1.25\n\
             (not shown at 30 columns:\n  \
             ADDRESS; --json has all)\n"
        );
    }

    #[test]
    fn durations_are_short_and_carry_the_next_unit() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(252_000), "4m12s");
        assert_eq!(duration(3_600_000 + 5 * 60_000), "1h05m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(duration_i(-5), "0ms");
    }

    #[test]
    fn times_are_relative_to_now() {
        let now = 1_000_000_000;
        assert_eq!(ago(now, now - 12_000), "12s ago");
        assert_eq!(ago(now, now - 252_000), "4m12s ago");
        assert_eq!(ago(now, now - 300), "just now");
        assert_eq!(ago(now, now + 180_000), "in 3m00s");
        assert_eq!(ago(now, 0), "never");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00Z");
        // 2026-02-17 14:03:12 UTC.
        assert_eq!(datetime(1_771_336_992_000), "2026-02-17 14:03:12Z");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("BUILDS", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["alpha".into(), "7".into(), "".into()]);
        t.row(vec!["b".into(), "1234".into(), "line\nbreak".into()]);
        assert_eq!(
            t.render(),
            "NAME   BUILDS  NOTE\n\
             alpha       7\n\
             b        1234  line break\n"
        );
    }

    #[test]
    fn long_cells_are_shortened_and_escapes_defused() {
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(cell("\u{1b}[2Jx", 10), " [2Jx");
        // A right-to-left override would show "-Os x" as "x sO-" (h30 F8).
        assert_eq!(cell("-Os\u{202E} x", 20), "-Os<U+202E> x");
        assert_eq!(cell("a\u{200B}b", 20), "a<U+200B>b");
    }

    #[test]
    fn json_bodies_compact_to_one_line() {
        let v = serde_json::json!({"event": "built", "duration_ms": 5});
        assert_eq!(compact(&v), "duration_ms=5 event=built");
        let v = serde_json::json!({"package": "=a/b-1", "summary": "blocked it"});
        assert_eq!(compact(&v), r#"package="=a/b-1" summary="blocked it""#);
        assert_eq!(load(Some(150)), "1.50");
        assert_eq!(percent(None), "-");
    }
}
