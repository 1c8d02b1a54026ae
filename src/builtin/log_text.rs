//! Text from a config or a request, made safe to write into a log line.
//!
//! A text log line ends at a newline, and a terminal obeys escape sequences, so a step's
//! message or a plugin's stderr line carrying either could forge a line that looks like the
//! runtime's own (`... INFO reload activated`). Control characters are written escaped, the
//! way Rust writes them in a string literal (`\n`, `\r`, `\u{1b}`); everything else is kept.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character escaped.
pub(crate) fn log_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(log_safe("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            log_safe("a\n2026-01-01T00:00:00Z  INFO forged\r\x1b[2K"),
            "a\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[2K"
        );
    }
}
