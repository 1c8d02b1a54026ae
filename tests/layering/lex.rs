//! Source text made safe to scan: comments, doc comments and literals blanked (lines kept),
//! then cut into identifiers, `::` and punctuation.

/// True when the `r` at `i` may begin a raw string (`r"`, `br"`), not end an identifier.
fn raw_start(c: &[char], i: usize) -> bool {
    let ident = |ch: &char| ch.is_alphanumeric() || *ch == '_';
    match i.checked_sub(1).map(|p| c[p]) {
        None => true,
        Some('b') => i < 2 || !ident(&c[i - 2]),
        Some(before) => !ident(&before),
    }
}

/// `text` with comments blanked and string and char literals emptied; lines are kept.
pub(crate) fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Skips to `end` (exclusive), keeping only newlines.
    let skip = |out: &mut String, from: usize, end: usize| {
        out.extend(c[from..end.min(c.len())].iter().filter(|ch| **ch == '\n'));
    };
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..c.len()).find(|j| c[*j] == '\n').unwrap_or(c.len());
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            skip(&mut out, i, j);
            i = j;
        } else if c[i] == 'r' && raw_start(&c, i) && matches!(next, Some('"' | '#')) {
            let hashes = c[i + 1..].iter().take_while(|ch| **ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let start = i + 2 + hashes;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = c[start..].iter().collect();
            let end = rest
                .find(&close)
                .map(|n| start + rest[..n].chars().count())
                .unwrap_or(c.len());
            out.push_str("\"\"");
            skip(&mut out, start, end);
            i = end + 1 + hashes;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            skip(&mut out, i + 1, j);
            i = j + 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // `'\''` and `'\\'`: an escape's closing quote is at least three on.
            let from = if next == Some('\\') { i + 3 } else { i + 2 };
            let end = (from..c.len()).find(|j| c[*j] == '\'').unwrap_or(c.len());
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, PartialEq)]
pub(crate) enum Token {
    Ident(String),
    Path,
    Punct(char),
}

/// The tokens of stripped text, each with its line.
pub(crate) fn tokens(text: &str) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i].is_alphanumeric() || c[i] == '_' {
                let end = (i..c.len())
                    .find(|j| !(c[*j].is_alphanumeric() || c[*j] == '_'))
                    .unwrap_or(c.len());
                out.push((n + 1, Token::Ident(c[i..end].iter().collect())));
                i = end;
            } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
                out.push((n + 1, Token::Path));
                i += 2;
            } else {
                if !c[i].is_whitespace() {
                    out.push((n + 1, Token::Punct(c[i])));
                }
                i += 1;
            }
        }
    }
    out
}

pub(crate) fn is_ident(t: Option<&(usize, Token)>, word: &str) -> bool {
    matches!(t, Some((_, Token::Ident(w))) if w == word)
}
