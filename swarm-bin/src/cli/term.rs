//! The terminal, for `swarm monitor`: its size, and keys read one at a
//! time without echo (so `q` quits), restored on drop.

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};
use std::io::Read;

/// The terminal's columns and rows, if stdout is one.
pub(crate) fn size() -> Option<(usize, usize)> {
    size_of(std::io::stdout())
}

fn size_of(fd: impl rustix::fd::AsFd) -> Option<(usize, usize)> {
    if !termios::isatty(&fd) {
        return None;
    }
    let w = termios::tcgetwinsize(&fd).ok()?;
    (w.ws_col > 0 && w.ws_row > 0).then(|| (usize::from(w.ws_col), usize::from(w.ws_row)))
}

/// The columns of the terminal `fd` is, if it is one.
pub(crate) fn width_of(fd: impl rustix::fd::AsFd) -> Option<usize> {
    size_of(fd).map(|(w, _)| w)
}

/// The screen `swarm monitor --once` fills: the terminal's, else
/// `$COLUMNS` x `$LINES` when both are set (a transcript), else none.
pub(crate) fn screen() -> Option<(usize, usize)> {
    size().or_else(|| {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        Some((num("COLUMNS")?, num("LINES")?))
    })
}

/// Stdin in "one key at a time, no echo, never block" mode while alive.
pub(crate) struct Keys {
    saved: Termios,
}

impl Keys {
    /// `None` when stdin is not a terminal (then keys are not read).
    pub(crate) fn new() -> Option<Keys> {
        let stdin = std::io::stdin();
        if !termios::isatty(&stdin) {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.local_modes -= LocalModes::ICANON | LocalModes::ECHO;
        raw.special_codes[SpecialCodeIndex::VMIN] = 0;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(Keys { saved })
    }

    /// The keys typed since the last call (none if nothing was typed).
    pub(crate) fn pending(&self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        match std::io::stdin().lock().read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
