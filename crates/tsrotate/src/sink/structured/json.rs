//! Finding and setting one field of a JSON document by byte spans, so that every other byte
//! (number spelling, key order, indentation, escapes elsewhere) stays as it was.
//!
//! The document is first checked whole by `serde_json` (into [`serde::de::IgnoredAny`], which
//! accepts numbers of any size); this scanner then only walks valid JSON.

use std::ops::Range;

/// Why a field cannot be found or set. Messages name keys, never values.
#[derive(Debug)]
pub(super) enum JsonError {
    /// Not JSON; the 1-based line of the first error.
    Invalid(usize),
    /// A part of the path is not an object.
    NotAnObject(String),
    /// The field is present and not a string.
    NotAString,
    /// A key along the path appears more than once: which one is meant is not clear.
    Duplicate(String),
}

/// Where a field stands, or where its nearest existing object is.
pub(super) enum Located {
    /// The field's value: its span (a string literal's span includes the quotes).
    Present(Range<usize>),
    /// The field is absent. `object` is the span of the deepest existing object on the path,
    /// `missing` the index of the first path part it lacks.
    Absent {
        object: Range<usize>,
        missing: usize,
    },
}

/// Check that `text` is JSON and locate `path` in it.
pub(super) fn locate(text: &str, path: &[&str]) -> Result<Located, JsonError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| JsonError::Invalid(e.line()))?;
    let s = text.as_bytes();
    let mut at = skip_ws(s, 0);
    for (depth, part) in path.iter().enumerate() {
        if s[at] != b'{' {
            let shown = if depth == 0 {
                "the document".to_owned()
            } else {
                format!("`{}`", path[..depth].join("."))
            };
            return Err(JsonError::NotAnObject(shown));
        }
        let object = at..skip_value(s, at);
        let mut found = None;
        for (key, value) in members(s, at) {
            if decode(&text[key]) == *part {
                if found.is_some() {
                    return Err(JsonError::Duplicate(path[..=depth].join(".")));
                }
                found = Some(value);
            }
        }
        match found {
            Some(value) => at = value,
            None => {
                return Ok(Located::Absent {
                    object,
                    missing: depth,
                });
            }
        }
    }
    Ok(Located::Present(at..skip_value(s, at)))
}

/// The string a located value holds.
pub(super) fn string_at(text: &str, span: Range<usize>) -> Result<String, JsonError> {
    if !text[span.clone()].starts_with('"') {
        return Err(JsonError::NotAString);
    }
    Ok(decode(&text[span]))
}

/// `text` with the field at `path` set to the string `value`: the old literal's bytes replaced
/// where the field stands, otherwise the missing part inserted as the last member of the
/// deepest existing object (indented like that object's first member). Every other byte stays.
pub(super) fn set(text: &str, path: &[&str], value: &str) -> Result<String, JsonError> {
    let literal = serde_json::to_string(value).expect("a string serializes");
    if text.trim().is_empty() {
        return Ok(format!("{{{}}}\n", nested(path, &literal)));
    }
    match locate(text, path)? {
        Located::Present(span) => {
            string_at(text, span.clone())?;
            Ok(format!(
                "{}{literal}{}",
                &text[..span.start],
                &text[span.end..]
            ))
        }
        Located::Absent { object, missing } => {
            let s = text.as_bytes();
            let member = nested(&path[missing..], &literal);
            let last = members(s, object.start)
                .last()
                .map(|(_, v)| skip_value(s, *v));
            let (at, insert) = match last {
                Some(end) => {
                    let first_key = skip_ws(s, object.start + 1);
                    let indent = &text[object.start + 1..first_key];
                    let sep = if indent.is_empty() { " " } else { indent };
                    (end, format!(",{sep}{member}"))
                }
                None => (object.start + 1, member),
            };
            Ok(format!("{}{insert}{}", &text[..at], &text[at..]))
        }
    }
}

/// `"a": {"b": <literal>}` for the path `[a, b]`.
fn nested(path: &[&str], literal: &str) -> String {
    let mut out = String::new();
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push('{');
        }
        out.push_str(&serde_json::to_string(part).expect("a string serializes"));
        out.push_str(": ");
    }
    out.push_str(literal);
    out.push_str(&"}".repeat(path.len().saturating_sub(1)));
    out
}

/// A JSON string literal's value (the document was checked, so this cannot fail).
fn decode(literal: &str) -> String {
    serde_json::from_str(literal).unwrap_or_default()
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the string literal starting at `i`.
fn skip_string(s: &[u8], mut i: usize) -> usize {
    i += 1;
    while s[i] != b'"' {
        i += if s[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The end of the value starting at `i` (which is not whitespace). Iterative, so nesting
/// depth costs no stack.
fn skip_value(s: &[u8], i: usize) -> usize {
    match s[i] {
        b'"' => skip_string(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match s[j] {
                    b'"' => {
                        j = skip_string(s, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            j
        }
    }
}

/// The (key span, value start) of each member of the object starting at `i`.
fn members(s: &[u8], i: usize) -> Vec<(Range<usize>, usize)> {
    let mut out = Vec::new();
    let mut j = skip_ws(s, i + 1);
    while s[j] != b'}' {
        let key_end = skip_string(s, j);
        let colon = skip_ws(s, key_end);
        let value = skip_ws(s, colon + 1);
        out.push((j..key_end, value));
        j = skip_ws(s, skip_value(s, value));
        if s[j] == b',' {
            j = skip_ws(s, j + 1);
        }
    }
    out
}
