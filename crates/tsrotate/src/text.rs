//! Text from outside shown to a person: file names, field names, values read from files.
//!
//! A file name may hold any byte but `/` and NUL. Printed raw, a newline in a name forges a
//! line of the plan a person confirms ("    ./app/.env:1:1" that is not a place at all), an
//! escape sequence rewrites what the terminal already shows, and a bidi override makes a name
//! read backwards. Every path and outside value in human output goes through [`escape`] or
//! [`path`], so that what is printed is one line of visible characters that can be read back.
//!
//! Escaped: C0 controls (including newline and tab), DEL, C1 controls, the Unicode line and
//! paragraph separators and the bidi controls; a path's bytes that are not UTF-8 are shown as
//! `\xNN`. Backslashes are left alone: the point is that nothing can forge output, and a name
//! with a literal `\n` in it is rare, harmless and still readable.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

/// `s` with every character a terminal could act on escaped (`\n`, `\t`, `\r`, else
/// `\u{…}`); borrowed when there is nothing to escape, which is nearly always.
#[must_use]
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

/// A path as it is shown to a person: [`escape`]d, with bytes that are not UTF-8 as `\xNN`.
#[must_use]
pub fn path(path: &Path) -> Cow<'_, str> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if let Ok(s) = std::str::from_utf8(bytes) {
        return escape(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// Whether a character must not reach a terminal as it is.
fn is_dangerous(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{061c}' // Arabic letter mark
            | '\u{200e}' | '\u{200f}' // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
        )
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(escape("./app/.env"), Cow::Borrowed("./app/.env")));
        assert!(matches!(escape("café ✓"), Cow::Borrowed("café ✓")));
        assert!(matches!(path(Path::new("a b/c")), Cow::Borrowed("a b/c")));
    }

    #[test]
    fn controls_newlines_and_bidi_overrides_are_escaped() {
        assert_eq!(
            escape("a\nb\r\tc\u{1b}[2Jd\u{7f}\u{9b}e\u{202e}f\u{2028}"),
            "a\\nb\\r\\tc\\u{1b}[2Jd\\u{7f}\\u{9b}e\\u{202e}f\\u{2028}"
        );
    }

    #[test]
    fn escaped_text_is_one_line_of_printable_characters() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = escape(&all);
        assert!(!shown.chars().any(is_dangerous));
        assert!(!shown.contains('\n'));
    }

    #[cfg(unix)]
    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"a\xff\n\xc3"));
        assert_eq!(path(p), "a\\xff\\n\\xc3");
    }
}
