//! One log setup for every long-running command (`serve`, `drone`).

/// Logs to stderr unless a subscriber is installed already; `SWARM_LOG` (or
/// `RUST_LOG`) sets the filter, default `info`. Colour only on a terminal, so
/// service logs stay plain text.
pub(crate) fn init() {
    let filter = std::env::var("SWARM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// An optional value for a log field: the value, or `-` when absent (never
/// `Some(1)` in an operator's log).
pub(crate) fn shown<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}
