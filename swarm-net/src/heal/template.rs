//! Command templates: a command line split into argv once, at load, with
//! `{name}` placeholders filled per run. Nothing ever goes through a local
//! shell, so a value can only ever become (part of) one argument.

use std::fmt;

/// The placeholders a probe command may use.
pub const PROBE_PLACEHOLDERS: &[&str] = &["drone", "address"];
/// The placeholders an escalation command may use.
pub const ESCALATION_PLACEHOLDERS: &[&str] = &["drone", "address", "action"];

/// A validated command template such as `ssh root@{address} rc-service swarm-drone restart`.
///
/// Parsed at load so a typo (`{adress}`) stops the server at start instead of
/// failing at 3 AM when the first escalation runs. Syntax: `{name}` is a
/// placeholder; `{{name}}` is the literal text `{name}`; any other brace is
/// literal, so awk programs like `'{print $5}'` need no escaping.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    text: String,
    words: Vec<Vec<Segment>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder(String),
}

/// Why a template was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Nothing to run.
    #[error("the command is empty")]
    Empty,
    /// Unbalanced quotes or a trailing backslash.
    #[error("cannot split the command into arguments: {0}")]
    Split(String),
    /// A `{name}` that is not one of the allowed placeholders.
    #[error(
        "unknown placeholder {{{name}}}; this command may use {allowed} (write {{{{{name}}}}} for a literal {{{name}}})"
    )]
    UnknownPlaceholder {
        /// The name between the braces.
        name: String,
        /// The allowed placeholders, formatted for the message.
        allowed: String,
    },
}

impl CommandTemplate {
    /// Splits `text` with shell quoting rules into argv and checks that every
    /// placeholder is one of `allowed`.
    pub fn parse(text: &str, allowed: &[&str]) -> Result<CommandTemplate, TemplateError> {
        let argv = shell_words::split(text).map_err(|e| TemplateError::Split(e.to_string()))?;
        if argv.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut words = Vec::with_capacity(argv.len());
        for word in &argv {
            let segments = parse_word(word);
            for segment in &segments {
                if let Segment::Placeholder(name) = segment {
                    if !allowed.contains(&name.as_str()) {
                        return Err(TemplateError::UnknownPlaceholder {
                            name: name.clone(),
                            allowed: allowed
                                .iter()
                                .map(|a| format!("{{{a}}}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
            }
            words.push(segments);
        }
        Ok(CommandTemplate {
            text: text.to_owned(),
            words,
        })
    }

    /// The template as the operator wrote it, for `swarm config show` and logs.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The placeholders used, so callers can tell whether a value is needed.
    pub fn placeholders(&self) -> Vec<&str> {
        self.words
            .iter()
            .flatten()
            .filter_map(|s| match s {
                Segment::Placeholder(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Fills the placeholders. Values must be validated by the caller (see
    /// [`crate::heal::check_target`]); a placeholder without a value becomes
    /// the empty string, which cannot happen for a template parsed with the
    /// same names.
    pub fn render(&self, values: &[(&str, &str)]) -> Vec<String> {
        self.words
            .iter()
            .map(|segments| {
                let mut word = String::new();
                for segment in segments {
                    match segment {
                        Segment::Literal(text) => word.push_str(text),
                        Segment::Placeholder(name) => {
                            if let Some((_, value)) = values.iter().find(|(n, _)| n == name) {
                                word.push_str(value);
                            }
                        }
                    }
                }
                word
            })
            .collect()
    }
}

impl fmt::Debug for CommandTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CommandTemplate").field(&self.text).finish()
    }
}

impl fmt::Display for CommandTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `{ident}` → placeholder, `{{ident}}` → literal `{ident}`, anything else literal.
fn parse_word(word: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            if let Some(len) = ident_then(inner, "}}") {
                literal.push('{');
                literal.push_str(&inner[..len]);
                literal.push('}');
                rest = &inner[len + 2..];
                continue;
            }
        } else if let Some(len) = ident_then(after, "}") {
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Placeholder(after[..len].to_owned()));
            rest = &after[len + 1..];
            continue;
        }
        literal.push('{');
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() || segments.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    segments
}

/// Length of an identifier at the start of `s` that is directly followed by `close`.
fn ident_then(s: &str, close: &str) -> Option<usize> {
    let len = s
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    (len > 0 && s[len..].starts_with(close)).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Vec<String> {
        match CommandTemplate::parse(text, ESCALATION_PLACEHOLDERS) {
            Ok(t) => t.render(&[
                ("drone", "d1"),
                ("address", "10.0.0.5"),
                ("action", "reboot"),
            ]),
            Err(e) => vec![format!("error: {e}")],
        }
    }

    #[test]
    fn substitutes_placeholders_inside_words_without_a_shell() {
        assert_eq!(
            render("ssh -o BatchMode=yes root@{address} 'rc-service swarm-drone-{drone} restart'"),
            vec![
                "ssh",
                "-o",
                "BatchMode=yes",
                "root@10.0.0.5",
                "rc-service swarm-drone-d1 restart"
            ]
        );
        assert_eq!(
            render("notify {action} {drone}"),
            vec!["notify", "reboot", "d1"]
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_stay_literal() {
        assert_eq!(
            render("sh -c \"awk '{print $5}' x; echo ${{HOME}} {{drone}} {\""),
            vec!["sh", "-c", "awk '{print $5}' x; echo ${HOME} {drone} {"]
        );
    }

    #[test]
    fn unknown_placeholders_are_refused_by_name() {
        let err = CommandTemplate::parse("ssh root@{host}", PROBE_PLACEHOLDERS)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "unknown placeholder {host}; this command may use {drone}, {address} \
                 (write {{host}} for a literal {host})"
            )
        );
        assert!(CommandTemplate::parse("x {action}", PROBE_PLACEHOLDERS).is_err());
    }

    #[test]
    fn empty_and_unbalanced_commands_are_refused() {
        assert_eq!(
            CommandTemplate::parse("  ", PROBE_PLACEHOLDERS),
            Err(TemplateError::Empty)
        );
        assert!(matches!(
            CommandTemplate::parse("ssh 'unclosed", PROBE_PLACEHOLDERS),
            Err(TemplateError::Split(_))
        ));
    }

    #[test]
    fn lists_the_placeholders_it_uses() {
        let t = CommandTemplate::parse("a {drone} b{address}{drone}", PROBE_PLACEHOLDERS);
        assert_eq!(
            t.map(|t| t.placeholders().join(",")).ok().as_deref(),
            Some("drone,address,drone")
        );
    }
}
