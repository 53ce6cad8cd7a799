//! Asking before a destructive action: on a terminal the operator types
//! `yes`; without one (a script, a pipe) the command refuses unless `--yes`
//! says it was meant.

use std::io::{BufRead, IsTerminal, Write};

/// Goes on if `yes` was given, or if the operator confirms `what` on a
/// terminal; otherwise an error that says nothing was changed and how to
/// proceed. `what` is one sentence: what the action will do.
pub(crate) fn confirm(what: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "{what}\nnot done: this cannot be undone, and there is no terminal to ask on; \
             pass --yes to do it anyway"
        );
    }
    let answer = ask(what, &mut stdin.lock(), &mut std::io::stderr())?;
    anyhow::ensure!(answer, "cancelled: nothing was changed");
    Ok(())
}

/// Prints the question to `out` and reads one line from `input`: true for
/// `y` or `yes` (any case).
fn ask(what: &str, input: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<bool> {
    write!(out, "{what}\nThis cannot be undone. Go on? [y/N] ")?;
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let a = line.trim().to_ascii_lowercase();
    Ok(a == "y" || a == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_goes_on() {
        for (typed, go) in [
            ("yes\n", true),
            ("Y\n", true),
            ("\n", false),
            ("no\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let got = ask("drop 3 packages", &mut typed.as_bytes(), &mut out).expect("asks");
            assert_eq!(got, go, "{typed:?}");
            let shown = String::from_utf8(out).expect("utf-8");
            assert!(shown.contains("drop 3 packages"), "{shown}");
        }
    }

    #[test]
    fn yes_skips_the_question() {
        confirm("anything", true).expect("--yes goes on");
    }
}
