//! The structure of a template as Tera reads it: where its tags, expressions and comments
//! are, which tags, filters and functions it uses, and how deep its loops nest.
//!
//! Tera 2 keeps its parser and AST private (`tera::parsing` is not exported), so this reads
//! the template with the same rules as Tera's lexer: text runs to the first `{{`, `{%` or
//! `{#`; a tag or expression ends at the first `%}` / `}}` (or `-%}` / `-}}`) that is not
//! inside a string literal (`"`, `'` or `` ` ``, with backslash escapes); a comment ends at
//! the first `#}`. Whitespace control (`{%-`, `-%}`) is part of the delimiter, so it cannot
//! hide a tag. Tags, filters and functions are checked against allow-lists, so a construct
//! Tera adds later is refused until it is judged safe. Anything Tera reads differently
//! fails to compile and is refused anyway.
//!
//! The same reading puts a call to the render budget's loop counter at the top of every
//! loop body ([`instrument`]), so each iteration is counted while rendering.

/// Tags message templates may use; everything else (include, extends, import, macro,
/// block, raw, filter, set, set_global, component, ...) is refused.
const ALLOWED_TAGS: &[&str] = &[
    "if", "elif", "else", "endif", "for", "endfor", "break", "continue",
];

/// Filters message templates may use: none of them can multiply the size of a value
/// (`replace` is the gateway's own, capped by the render budget). Refused are those that
/// build lists or repeat values (`split`, `join`, `indent`, ...) and `safe`, which would let
/// a value's HTML through unescaped.
const ALLOWED_FILTERS: &[&str] = &[
    "default",
    "upper",
    "lower",
    "trim",
    "trim_start",
    "trim_end",
    "capitalize",
    "title",
    "truncate",
    "length",
    "replace",
    "first",
    "last",
    "nth",
    "reverse",
    "wordcount",
    "int",
    "float",
    "round",
    "abs",
    "str",
    "escape",
    "escape_html",
    "escape_xml",
    "newlines_to_br",
    "pluralize",
    "uk_date_time",
    "uk_date",
    "uk_time",
    "sentence",
];

/// Functions message templates may call (`range` is capped to [`super::MAX_RANGE`] items).
const ALLOWED_FUNCTIONS: &[&str] = &["range"];

/// Deepest nesting of `for` loops allowed.
pub const MAX_LOOP_DEPTH: usize = 2;

/// The function the render budget counts loop iterations with (see [`super::budget`]).
pub const TICK_FUNCTION: &str = "render_budget_tick";

/// What a piece of template source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// `{{ ... }}`.
    Expression,
    /// `{% ... %}`.
    Tag,
    /// `{# ... #}`.
    Comment,
}

/// One `{{ }}`, `{% %}` or `{# #}` of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// What it is.
    pub kind: PieceKind,
    /// Byte offset of its inside (after the opening delimiter and any `-`).
    pub inside_at: usize,
    /// Its inside, without delimiters or whitespace-control dashes.
    pub inside: &'a str,
    /// Byte offset just after its closing delimiter.
    pub end: usize,
    /// Whether it closes with `-%}` / `-}}` (trimming the whitespace after it).
    pub trims_after: bool,
}

impl Piece<'_> {
    /// A tag's name: its first word (`for`, `if`, ...); empty for other pieces.
    pub fn tag_name(&self) -> &str {
        if self.kind != PieceKind::Tag {
            return "";
        }
        let inside = self.inside.trim_start();
        let len = inside
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        &inside[..len]
    }
}

/// Why a template's source cannot be read or is not allowed, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureProblem {
    /// Byte offset in the source.
    pub at: usize,
    /// Whether it is a construct that is not allowed (else the source is malformed).
    pub not_allowed: bool,
    /// What is wrong.
    pub reason: String,
}

fn malformed(at: usize, reason: impl Into<String>) -> StructureProblem {
    StructureProblem {
        at,
        not_allowed: false,
        reason: reason.into(),
    }
}

fn refused(at: usize, reason: impl Into<String>) -> StructureProblem {
    StructureProblem {
        at,
        not_allowed: true,
        reason: reason.into(),
    }
}

/// Splits `text` into its tags, expressions and comments, as Tera's lexer does.
pub fn pieces(text: &str) -> Result<Vec<Piece<'_>>, StructureProblem> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(open) = next_opening(b, i) {
        let kind = match b[open + 1] {
            b'{' => PieceKind::Expression,
            b'%' => PieceKind::Tag,
            _ => PieceKind::Comment,
        };
        let mut start = open + 2;
        if b.get(start) == Some(&b'-') {
            start += 1;
        }
        if kind == PieceKind::Comment {
            let Some(len) = find(&b[start..], b"#}") else {
                return Err(malformed(open, "a comment `{#` is not closed with `#}`"));
            };
            let inside_end = start + len;
            let trims_after = len > 0 && b[inside_end - 1] == b'-';
            found.push(Piece {
                kind,
                inside_at: start,
                inside: &text[start..inside_end.max(start)],
                end: inside_end + 2,
                trims_after,
            });
            i = inside_end + 2;
            continue;
        }
        let close = if kind == PieceKind::Tag { b'%' } else { b'}' };
        let mut k = start;
        let (inside_end, end, trims_after) = loop {
            match b.get(k) {
                None => {
                    let what = if kind == PieceKind::Tag {
                        "a tag `{%` is not closed with `%}`"
                    } else {
                        "an expression `{{` is not closed with `}}`"
                    };
                    return Err(malformed(open, what));
                }
                Some(b'-') if b.get(k + 1) == Some(&close) && b.get(k + 2) == Some(&b'}') => {
                    break (k, k + 3, true)
                }
                Some(c) if *c == close && b.get(k + 1) == Some(&b'}') => break (k, k + 2, false),
                Some(q @ (b'"' | b'\'' | b'`')) => {
                    let q = *q;
                    let mut j = k + 1;
                    loop {
                        match b.get(j) {
                            None => {
                                return Err(malformed(
                                    k,
                                    format!("a string opened with {} is not closed", q as char),
                                ))
                            }
                            Some(b'\\') => j += 2,
                            Some(c) if *c == q => break,
                            Some(_) => j += 1,
                        }
                    }
                    k = j + 1;
                }
                Some(_) => k += 1,
            }
        };
        found.push(Piece {
            kind,
            inside_at: start,
            inside: &text[start..inside_end],
            end,
            trims_after,
        });
        i = end;
    }
    Ok(found)
}

/// The next `{{`, `{%` or `{#` at or after `from`.
fn next_opening(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len().saturating_sub(1))
        .find(|&p| b[p] == b'{' && matches!(b[p + 1], b'{' | b'%' | b'#'))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A word of an expression, for finding filters and function calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word<'a> {
    Name(&'a str),
    Punct(u8),
    Literal,
}

/// The words of a piece's inside, with their offsets in it (string literals as one word).
fn words(inside: &str) -> Vec<(usize, Word<'_>)> {
    let b = inside.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, Word::Name(&inside[start..i])));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push((i, Word::Literal));
        } else if matches!(c, b'"' | b'\'' | b'`') {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push((start, Word::Literal));
        } else {
            out.push((i, Word::Punct(c)));
            i += 1;
        }
    }
    out
}

/// Whether the name at `n` is a test (`x is starting_with("a")`, `is not odd`): tests only
/// answer true or false.
fn is_test(words: &[(usize, Word<'_>)], n: usize) -> bool {
    let name = |i: Option<usize>| i.and_then(|i| words.get(i)).map(|w| w.1);
    match name(n.checked_sub(1)) {
        Some(Word::Name("is")) => true,
        Some(Word::Name("not")) => name(n.checked_sub(2)) == Some(Word::Name("is")),
        _ => false,
    }
}

/// Everything about `text`'s structure that edited templates may not do: tags other than
/// if/elif/else/for/break/continue, filters and functions off the allow-lists, list
/// comprehensions, and `for` loops nested deeper than [`MAX_LOOP_DEPTH`].
pub fn problems(text: &str) -> Vec<StructureProblem> {
    let pieces = match pieces(text) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut open_blocks: Vec<&str> = Vec::new();
    for piece in &pieces {
        if piece.kind == PieceKind::Comment {
            continue;
        }
        let name = piece.tag_name();
        let words = words(piece.inside);
        if piece.kind == PieceKind::Tag {
            if !ALLOWED_TAGS.contains(&name) {
                problems.push(refused(
                    piece.inside_at,
                    format!("`{name}` is not allowed in message templates"),
                ));
                continue;
            }
            match name {
                "for" | "if" => {
                    open_blocks.push(name);
                    let depth = open_blocks.iter().filter(|b| **b == "for").count();
                    if name == "for" && depth > MAX_LOOP_DEPTH {
                        problems.push(refused(
                            piece.inside_at,
                            format!("loops may nest at most {MAX_LOOP_DEPTH} deep"),
                        ));
                    }
                }
                "endfor" | "endif" => {
                    let opener = &name[3..];
                    while let Some(top) = open_blocks.pop() {
                        if top == opener {
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        for (n, (at, word)) in words.iter().enumerate() {
            let Word::Name(word) = *word else { continue };
            let before = n.checked_sub(1).map(|p| words[p].1);
            let after = words.get(n + 1).map(|w| w.1);
            let at = piece.inside_at + at;
            if word == "for" && !(n == 0 && name == "for") {
                problems.push(refused(
                    at,
                    "list comprehensions (`[... for ...]`) are not allowed",
                ));
            } else if before == Some(Word::Punct(b'|')) {
                if !ALLOWED_FILTERS.contains(&word) {
                    problems.push(refused(
                        at,
                        format!(
                            "the `{word}` filter is not allowed in message templates; allowed: {}",
                            ALLOWED_FILTERS.join(", ")
                        ),
                    ));
                }
            } else if after == Some(Word::Punct(b'('))
                && before != Some(Word::Punct(b'.'))
                && !is_test(&words, n)
                && !ALLOWED_FUNCTIONS.contains(&word)
            {
                problems.push(refused(
                    at,
                    format!("the `{word}` function is not allowed in message templates"),
                ));
            }
        }
    }
    problems
}

/// `text` with a call to the render budget's loop counter at the top of every `for` body,
/// keeping the output and whitespace control the same. `None` if it cannot be read.
pub fn instrument(text: &str) -> Option<String> {
    let pieces = pieces(text).ok()?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut copied = 0;
    for piece in pieces.iter().filter(|p| p.tag_name() == "for") {
        out.push_str(&text[copied..piece.end]);
        // `-}}` carries on the trimming the loop tag's `-%}` would have done.
        let close = if piece.trims_after { "-}}" } else { "}}" };
        out.push_str(&format!("{{{{ {TICK_FUNCTION}() {close}"));
        copied = piece.end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_reasons(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.reason).collect()
    }

    #[test]
    fn three_deep_loops_are_found_whatever_the_whitespace_control() {
        for (open, close) in [("{%", "%}"), ("{%-", "-%}"), ("{%-", "%}"), ("{%", "-%}")] {
            let t = format!(
                "{open} for a in status.details {close}{open}for b in status.details{close}{open}  for c in status.details {close}x{open} endfor {close}{open} endfor {close}{open} endfor {close}"
            );
            let reasons = refused_reasons(&t);
            assert_eq!(reasons.len(), 1, "{t}: {reasons:?}");
            assert!(reasons[0].contains("nest at most 2"), "{reasons:?}");
        }
        assert!(problems(
            "{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}{% for c in x %}{% endfor %}"
        )
        .is_empty());
    }

    #[test]
    fn refused_tags_filters_and_functions_are_named() {
        for tag in [
            "include \"x\"",
            "extends \"x\"",
            "import \"m\" as m",
            "macro m()",
            "block b",
            "raw",
            "set x = 1",
            "set_global x = 1",
            "filter upper",
            "component C()",
        ] {
            let reasons = refused_reasons(&format!("a {{%- {tag} -%}} b"));
            assert!(
                !reasons.is_empty() && reasons[0].contains("not allowed"),
                "{tag}: {reasons:?}"
            );
        }
        assert!(refused_reasons("{{ x | join(sep=\",\") }}")[0].contains("`join` filter"));
        assert!(refused_reasons("{{ throw(message=\"x\") }}")[0].contains("`throw` function"));
        assert!(refused_reasons("{{ [c for c in status.details] }}")[0].contains("comprehensions"));
        assert!(problems(
            "{{ status.until | replace(from=\"on \", to=\"\") | default(value=\"\") }}"
        )
        .is_empty());
        assert!(problems("{% for i in range(end=3) %}{{ i }}{% endfor %}").is_empty());
    }

    #[test]
    fn strings_and_comments_do_not_hide_or_invent_tags() {
        // `%}` inside a string does not close the tag; a tag inside a comment is not a tag.
        let p = pieces("{% if x == \"%}\" %}y{% endif %}{# {% include \"x\" %} #}").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].inside.trim(), "if x == \"%}\"");
        assert!(problems("{# {% include \"x\" %} #}").is_empty());
        assert!(!problems("{{ \"}}\" }}{% include \"x\" %}").is_empty());
        assert!(pieces("{% if \"unclosed %}").is_err());
    }

    #[test]
    fn instrumenting_keeps_the_output() {
        let t = "{% for c in x -%}\n  {{ c }}\n{%- endfor %}|{% for c in x %} {{ c }}{% endfor %}";
        let i = instrument(t).unwrap();
        assert_eq!(i.matches(TICK_FUNCTION).count(), 2);
        let mut tera = tera::Tera::new();
        tera.register_function(TICK_FUNCTION, |_: tera::Kwargs, _: &tera::State| "");
        tera.add_raw_template("plain", t).unwrap();
        tera.add_raw_template("counted", &i).unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("x", &vec!["a", "b"]);
        assert_eq!(
            tera.render("plain", &ctx).unwrap(),
            tera.render("counted", &ctx).unwrap()
        );
    }
}
