//! Finding the `crate::` and `super::` paths of a file, and what a facade re-exports.

use std::collections::HashMap;

use crate::lex::{Token, is_ident, tokens};

/// Every path starting `crate::` or `super::` in `text` (the file of `module`), resolved to a
/// path from the crate root, with its line. A `{...}` group gives one path per item (the
/// first segment of each).
pub(crate) fn uses_in(text: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let tokens = tokens(text);
    let mut found = Vec::new();
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = &tokens[i];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Token::Ident(w) if w == "mod" => {
                if let (Some((_, Token::Ident(name))), Some((_, Token::Punct('{')))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Token::Ident(w)
                if (w == "crate" || w == "super")
                    && tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Path) =>
            {
                let after_path = i > 0 && tokens[i - 1].1 == Token::Path;
                if !after_path {
                    let mut base: Vec<String> = if w == "crate" {
                        Vec::new()
                    } else {
                        module
                            .iter()
                            .cloned()
                            .chain(inline.iter().map(|(n, _)| n.clone()))
                            .collect()
                    };
                    let mut j = i;
                    // `super::super::...`
                    if w == "super" {
                        base.pop();
                        j += 2;
                        while is_ident(tokens.get(j), "super")
                            && tokens.get(j + 1).map(|t| &t.1) == Some(&Token::Path)
                        {
                            base.pop();
                            j += 2;
                        }
                    } else {
                        j += 2;
                    }
                    for tail in path_tails(&tokens, j) {
                        found.push((*line, base.iter().cloned().chain(tail).collect()));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The segments from `at`: `a::b::C` -> one path; `a::{b::X, c}` -> `a::b` and `a::c`.
fn path_tails(tokens: &[(usize, Token)], mut at: usize) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    loop {
        match tokens.get(at).map(|t| &t.1) {
            Some(Token::Ident(segment)) => {
                prefix.push(segment.clone());
                if tokens.get(at + 1).map(|t| &t.1) != Some(&Token::Path) {
                    return vec![prefix];
                }
                at += 2;
            }
            Some(Token::Punct('{')) => {
                let mut tails = Vec::new();
                let (mut depth, mut item_start) = (0, true);
                for (_, token) in &tokens[at + 1..] {
                    match token {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth == 0 => break,
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => item_start = true,
                        Token::Ident(segment) if item_start => {
                            item_start = false;
                            let mut tail = prefix.clone();
                            if segment != "self" {
                                tail.push(segment.clone());
                            }
                            tails.push(tail);
                        }
                        _ => {}
                    }
                }
                return tails;
            }
            _ => return vec![prefix],
        }
    }
}

/// The modules `text` (the crate root) declares: `mod x;` and `pub mod x;`.
pub(crate) fn declared_modules(text: &str) -> Vec<String> {
    let tokens = tokens(text);
    let mut modules = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        if matches!(token, Token::Ident(w) if w == "mod")
            && let (Some((_, Token::Ident(name))), Some((_, Token::Punct(';')))) =
                (tokens.get(i + 1), tokens.get(i + 2))
        {
            modules.push(name.clone());
        }
    }
    modules
}

/// What the facade module `at` (the crate root, or a folder's `mod.rs`) re-exports: each name
/// (or alias) -> the path, from the crate root, it comes from (an outside crate's path starts
/// with that crate's name).
pub(crate) fn facade(text: &str, at: &[String]) -> HashMap<String, Vec<String>> {
    let tokens = tokens(text);
    let children = declared_modules(text);
    let mut names = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        if is_ident(tokens.get(i), "use") {
            let end = (i..tokens.len())
                .find(|j| tokens[*j].1 == Token::Punct(';'))
                .unwrap_or(tokens.len());
            let statement = &tokens[i + 1..end];
            use_tree(statement, &mut Vec::new(), &mut |path, alias| {
                let path: Vec<String> = match path.first().map(String::as_str) {
                    Some("crate") => path[1..].to_vec(),
                    Some(first) if children.iter().any(|c| c == first) => {
                        at.iter().cloned().chain(path.iter().cloned()).collect()
                    }
                    _ => path.to_vec(),
                };
                names.insert(alias.to_owned(), path);
            });
            i = end;
        }
        i += 1;
    }
    names
}

/// Walks one use tree, calling `leaf(path, name it is known by)` for each imported item.
fn use_tree(
    tokens: &[(usize, Token)],
    prefix: &mut Vec<String>,
    leaf: &mut dyn FnMut(&[String], &str),
) {
    let mut i = 0;
    let depth_at_start = prefix.len();
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(segment) => {
                if tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Path) {
                    prefix.push(segment.clone());
                    i += 2;
                    continue;
                }
                let alias = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some((_, Token::Ident(kw))), Some((_, Token::Ident(alias)))) if kw == "as" => {
                        alias.clone()
                    }
                    _ => segment.clone(),
                };
                let mut path = prefix.clone();
                path.push(segment.clone());
                leaf(&path, &alias);
                break;
            }
            Token::Punct('{') => {
                let mut depth = 0;
                let mut start = i + 1;
                for j in i + 1..tokens.len() {
                    match tokens[j].1 {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth > 0 => depth -= 1,
                        Token::Punct(',') | Token::Punct('}') if depth == 0 => {
                            use_tree(&tokens[start..j], prefix, leaf);
                            start = j + 1;
                            if tokens[j].1 == Token::Punct('}') {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                break;
            }
            _ => i += 1,
        }
    }
    prefix.truncate(depth_at_start);
}
