//! One log setup for every long-running command (`serve`, `drone`).

/// Logs to stderr unless a subscriber is installed already; `SWARM_LOG` (or
/// `RUST_LOG`) sets the filter, default `info`. Colour only on a terminal, so
/// service logs stay plain text.
pub(crate) fn init() {
    let filter = std::env::var("SWARM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || OneLine {
            inner: std::io::stderr(),
            ansi,
        })
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Writes each event as one line: a newline, carriage return or other control character
/// inside it is escaped (`\n`, `\x1b`), so text a client chose (a tar member's name in a
/// refusal, a server's error body) cannot forge a log line or recolour a terminal (h21). The
/// formatter hands over one whole event per write. Escape sequences stay only when the
/// formatter colours the output itself (`ansi`, a terminal).
struct OneLine<W> {
    inner: W,
    ansi: bool,
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(&one_line(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `event` with its control characters escaped but for its final newline (and ESC when
/// `ansi`).
fn one_line(event: &[u8], ansi: bool) -> Vec<u8> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b),
            0x1b if ansi => out.push(b),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

/// An optional value for a log field: the value, or `-` when absent (never
/// `Some(1)` in an operator's log).
pub(crate) fn shown<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_whatever_its_fields_hold() {
        let forged = b"WARN artifact refused error=\"a\nWARN FORGED \x1b[31mred\r\" x=1\n";
        let line = one_line(forged, false);
        assert_eq!(
            String::from_utf8(line).expect("utf-8"),
            "WARN artifact refused error=\"a\\nWARN FORGED \\x1b[31mred\\r\" x=1\n"
        );
        assert_eq!(
            one_line(b"\x1b[2mINFO\x1b[0m ok\n", true),
            b"\x1b[2mINFO\x1b[0m ok\n"
        );
        assert_eq!(
            one_line("tab\tand é\n".as_bytes(), false),
            "tab\tand é\n".as_bytes()
        );
    }
}
