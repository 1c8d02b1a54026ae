//! A look at a YAML document's tokens before it is parsed: what the parser would spend on it,
//! decided before the parser spends it.
//!
//! libyaml, under serde_yaml, does work per token that grows with the flow nesting depth (it
//! walks one possible simple key per open `[` or `{` for every token), so a document of
//! 100,000 nested `{a: ` costs minutes of one thread before any limit of ours sees a value.
//! serde_yaml also reads the whole event stream of a document into memory before the first
//! value is built, so a document of millions of tiny scalars costs hundreds of MiB before
//! the node budget trips. And YAML tags (`!!binary`, `!Local`) change what a scalar means in
//! ways a config has no use for.
//!
//! This pass runs libyaml's own scanner (the same tokenizer the parser uses, so what it counts
//! is exactly what the parser would see) and stops at the first token that crosses a limit:
//! nesting deeper than the document limit, more value tokens than the node budget, or any tag.
//! Each token it reads costs at most the depth limit, so the pass is linear in the size of the
//! document. A syntax error ends the pass quietly: the parser then reports it, with its own
//! message.

use std::mem::MaybeUninit;

// The crate's name says `unsafe`; its scanner is the one serde_yaml's parser runs, and every
// call into it is confined to `Scanner` below.
#[allow(clippy::unsafe_removed_from_name)]
use unsafe_libyaml as yaml;

use super::document::DocumentLimits;

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// What was wrong, without its place.
    pub(super) message: String,
    /// 1-based line of the token that crossed the limit.
    pub(super) line: usize,
    /// 1-based column of that token.
    pub(super) column: usize,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// Checks `text` against `limits` token by token, stopping at the first problem.
pub(super) fn check(text: &str, limits: &DocumentLimits) -> Result<(), Refusal> {
    let scanner = Scanner::new(text);
    // The value tokens seen: each scalar and each collection's start. Aliases, implicit nulls
    // and indentless sequences are not among them, so this never counts more values than the
    // node budget later does; it only stops documents the budget would refuse anyway.
    let mut values = 0usize;
    let mut depth = 0usize;
    for token in scanner {
        let refuse = |message: String| Refusal {
            message,
            line: token.line + 1,
            column: token.column + 1,
        };
        match token.kind {
            Kind::Open => {
                depth += 1;
                values += 1;
                // The parser's own limit applies within one level of this: a top-level
                // collection is depth 1 here and 0 to the value builder.
                if depth > limits.max_depth + 1 {
                    return Err(refuse(format!(
                        "nesting is deeper than {} levels; refusing it",
                        limits.max_depth
                    )));
                }
            }
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Scalar => values += 1,
            Kind::Tag => {
                return Err(refuse(
                    "YAML tags (such as !!binary or !Name) are not supported in configs; write the value plainly"
                        .to_owned(),
                ));
            }
            Kind::Other => {}
        }
        if values > limits.max_nodes {
            return Err(refuse(format!(
                "document has more than {} values; refusing it",
                limits.max_nodes
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The start of a block or flow collection.
    Open,
    /// The end of one.
    Close,
    Scalar,
    /// A tag, or a `%TAG` directive.
    Tag,
    Other,
}

struct Token {
    kind: Kind,
    line: usize,
    column: usize,
}

/// libyaml's scanner over a borrowed text; the parser state is freed on drop.
struct Scanner<'t> {
    parser: Box<MaybeUninit<yaml::yaml_parser_t>>,
    /// Whether `parser` was initialized (and so must be deleted).
    initialized: bool,
    done: bool,
    _text: std::marker::PhantomData<&'t str>,
}

impl<'t> Scanner<'t> {
    #[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
    fn new(text: &'t str) -> Self {
        let mut parser = Box::new(MaybeUninit::<yaml::yaml_parser_t>::uninit());
        // SAFETY: `yaml_parser_initialize` fills the whole struct it is given (it zeroes it
        // first) and reports whether its buffers could be allocated; the input is set once on a
        // freshly initialized parser, as libyaml requires, and `text` outlives the scanner (the
        // lifetime `'t` ties them), so the pointer stays valid for every later scan.
        let initialized = unsafe {
            let parser = parser.as_mut_ptr();
            let ok = yaml::yaml_parser_initialize(parser).ok;
            if ok {
                yaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
            }
            ok
        };
        Self {
            parser,
            initialized,
            done: !initialized,
            _text: std::marker::PhantomData,
        }
    }
}

impl Iterator for Scanner<'_> {
    type Item = Token;

    #[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
    fn next(&mut self) -> Option<Token> {
        if self.done {
            return None;
        }
        let mut token = MaybeUninit::<yaml::yaml_token_t>::uninit();
        // SAFETY: the parser was initialized with an input that is still alive (see `new`);
        // `yaml_parser_scan` writes a whole token (zeroed first) on success and on failure,
        // and every token it produced is deleted once, here, after its fields were read.
        unsafe {
            let parser = self.parser.as_mut_ptr();
            let token = token.as_mut_ptr();
            if yaml::yaml_parser_scan(parser, token).fail {
                self.done = true;
                return None;
            }
            let kind = match (*token).type_ {
                yaml::YAML_STREAM_END_TOKEN => {
                    self.done = true;
                    Kind::Other
                }
                yaml::YAML_BLOCK_SEQUENCE_START_TOKEN
                | yaml::YAML_BLOCK_MAPPING_START_TOKEN
                | yaml::YAML_FLOW_SEQUENCE_START_TOKEN
                | yaml::YAML_FLOW_MAPPING_START_TOKEN => Kind::Open,
                yaml::YAML_BLOCK_END_TOKEN
                | yaml::YAML_FLOW_SEQUENCE_END_TOKEN
                | yaml::YAML_FLOW_MAPPING_END_TOKEN => Kind::Close,
                yaml::YAML_SCALAR_TOKEN => Kind::Scalar,
                yaml::YAML_TAG_TOKEN | yaml::YAML_TAG_DIRECTIVE_TOKEN => Kind::Tag,
                _ => Kind::Other,
            };
            let mark = (*token).start_mark;
            yaml::yaml_token_delete(token);
            Some(Token {
                kind,
                line: mark.line as usize,
                column: mark.column as usize,
            })
        }
    }
}

impl Drop for Scanner<'_> {
    #[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: initialized in `new` and deleted only here, once.
            unsafe { yaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Result<(), String> {
        check(text, &DocumentLimits::default()).map_err(|r| r.to_string())
    }

    #[test]
    fn ordinary_documents_pass() {
        assert_eq!(scan("a: [1, {b: c}]\nd:\n  - e\n  - 'f'\n"), Ok(()));
        assert_eq!(scan("x: &a [1]\ny: *a\n"), Ok(()));
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_the_first_token_past_the_limit() {
        let deep = "{a: ".repeat(100_000);
        let started = std::time::Instant::now();
        let error = scan(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            error,
            "nesting is deeper than 64 levels; refusing it at line 1 column 261"
        );
    }

    #[test]
    fn tags_are_refused_with_their_place() {
        assert_eq!(
            scan("a: 1\nb: !!binary aGVsbG8=\n").unwrap_err(),
            "YAML tags (such as !!binary or !Name) are not supported in configs; write the value plainly at line 2 column 4"
        );
        assert!(scan("a: !Local x\n").is_err());
        assert!(scan("%TAG ! tag:example.com,2000:\n---\na: 1\n").is_err());
    }

    #[test]
    fn too_many_values_are_refused_before_parsing() {
        let limits = DocumentLimits {
            max_nodes: 100,
            ..DocumentLimits::default()
        };
        let many = "- 1\n".repeat(200);
        let error = check(&many, &limits).unwrap_err();
        assert_eq!(
            error.message,
            "document has more than 100 values; refusing it"
        );
    }

    #[test]
    fn a_syntax_error_is_left_to_the_parser() {
        assert_eq!(scan("a: [1, 2\nb: }"), Ok(()));
    }
}
