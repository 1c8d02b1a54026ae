//! Shared secrets (the admin token, the cluster cookie): long enough not to be guessed, and
//! usable as they are written.

/// The fewest characters a token (or a cluster cookie) may have: 16 random characters are
/// beyond guessing online; fewer, or a word, are not.
pub(crate) const MIN_CHARS: usize = 16;

/// Checks that `secret` (what `what` names: "the admin token") is long enough and can be sent
/// as it is: at least [`MIN_CHARS`] characters, not all whitespace, with no whitespace
/// at either end (HTTP trims it from header values and files are read trimmed, so such a
/// secret could never match).
pub(crate) fn check(what: &str, secret: &str) -> Result<(), String> {
    let length = secret.chars().count();
    if secret.trim().is_empty() {
        return Err(format!(
            "{what} must not be empty or only whitespace; use at least {MIN_CHARS} random characters (for example: openssl rand -hex 16)"
        ));
    }
    if secret.trim() != secret {
        return Err(format!(
            "{what} begins or ends with whitespace, which a header or a file read would drop; remove it"
        ));
    }
    if length < MIN_CHARS {
        return Err(format!(
            "{what} has {length} characters; use at least {MIN_CHARS} random characters (for example: openssl rand -hex 16)"
        ));
    }
    Ok(())
}
