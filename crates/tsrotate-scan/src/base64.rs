//! Finding `tskey-` inside base64 without decoding everything.
//!
//! Base64 turns 3 bytes into 4 characters, so `tskey-` encodes to one of three fixed strings
//! depending on where it falls in a 3-byte group (its *alignment*). The characters at the edges
//! also depend on the neighbouring bytes and are left out. Searching for these fixed strings
//! next to `tskey-` costs the prefilter nothing extra; only a hit is decoded, starting at the
//! 4-character group boundary that the alignment tells us, so we never need to know where the
//! base64 value began. Kubernetes Secrets keep values this way under `data:`.
//!
//! The decoder accepts the standard and the URL-safe alphabet at once, stops at the first
//! character outside them (`=` padding included), and follows a line break only where
//! `base64(1)` or PEM would wrap (after 76 or 64 characters on the line), so that wrapped
//! output decodes while an unrelated next line does not.

use crate::matcher::PREFIX;

/// One base64 form of `tskey-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alignment {
    /// The fixed characters, as searched for.
    pub(crate) pattern: String,
    /// How many characters before the pattern its 4-character group starts.
    pub(crate) chars_before: usize,
    /// How many decoded bytes of that group come before `t`.
    pub(crate) bytes_before: usize,
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The three alignments of [`PREFIX`], computed rather than written down so they cannot be
/// mistyped.
pub(crate) fn alignments() -> Vec<Alignment> {
    (0..3)
        .map(|lead| {
            let mut bytes = vec![0u8; lead];
            bytes.extend_from_slice(PREFIX);
            bytes.extend_from_slice(&[0, 0]);
            let encoded = encode(&bytes);
            // Character i carries bits [6i, 6i + 6); the prefix holds bits [8·lead, 8·lead + 48).
            let first = (8 * lead).div_ceil(6);
            let end = (8 * lead + 8 * PREFIX.len()) / 6;
            Alignment {
                pattern: String::from_utf8_lossy(&encoded[first..end]).into_owned(),
                chars_before: first,
                bytes_before: lead,
            }
        })
        .collect()
}

/// Standard base64 with padding left out: enough to compute the patterns (and for tests).
pub(crate) fn encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=group.len() {
            out.push(STANDARD[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

/// The 6-bit value of a base64 character in either alphabet.
pub(crate) fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// What [`decode_at`] produced.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The decoded bytes.
    pub(crate) bytes: Vec<u8>,
    /// For each base64 character consumed, its index in the input.
    pub(crate) char_at: Vec<usize>,
}

impl Decoded {
    /// The input range `[start, end)` of the characters that encode decoded bytes
    /// `[from, to)`.
    pub(crate) fn source_range(&self, from: usize, to: usize) -> (usize, usize) {
        let first = (8 * from) / 6;
        let last = (8 * to).div_ceil(6).saturating_sub(1);
        let start = self.char_at.get(first).copied().unwrap_or_default();
        let end = self
            .char_at
            .get(last)
            .or(self.char_at.last())
            .map_or(start, |&i| i + 1);
        (start, end)
    }
}

/// Line widths at which base64 encoders wrap.
const WRAP_WIDTHS: [usize; 2] = [76, 64];

/// Decode base64 from `input[at..]`, at most `max_chars` characters. `line_start` is the index
/// where the line holding `at` begins, to recognise wrapped output.
pub(crate) fn decode_at(input: &[u8], at: usize, line_start: usize, max_chars: usize) -> Decoded {
    let mut out = Decoded::default();
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut i = at;
    let mut line_start = line_start;
    while out.char_at.len() < max_chars && i < input.len() {
        let c = input[i];
        if let Some(v) = value(c) {
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.bytes.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
            out.char_at.push(i);
            i += 1;
            continue;
        }
        let newline = match (c, input.get(i + 1)) {
            (b'\n', _) => 1,
            (b'\r', Some(b'\n')) => 2,
            _ => break,
        };
        let wrapped = WRAP_WIDTHS.contains(&(i - line_start));
        let continues = input.get(i + newline).copied().and_then(value).is_some();
        if !(wrapped && continues) {
            break;
        }
        i += newline;
        line_start = i;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignments_are_the_known_strings() {
        let a = alignments();
        let patterns: Vec<_> = a.iter().map(|a| a.pattern.as_str()).collect();
        assert_eq!(patterns, ["dHNrZXkt", "Rza2V5L", "0c2tleS"]);
        assert_eq!(
            a.iter().map(|a| a.chars_before).collect::<Vec<_>>(),
            [0, 2, 3]
        );
    }

    #[test]
    fn decodes_both_alphabets_and_stops_at_padding() {
        let d = decode_at(b"aGk_Pz8-=rest", 0, 0, 100);
        assert_eq!(d.bytes, b"hi???>");
        let d = decode_at(b"aGk/Pz8+\"", 0, 0, 100);
        assert_eq!(d.bytes, b"hi???>");
    }

    #[test]
    fn follows_wrapping_only_at_wrap_widths() {
        let line = "QUFB".repeat(19); // 76 characters of "AAA…"
        let wrapped = format!("{line}\nQkJC\n");
        assert_eq!(
            decode_at(wrapped.as_bytes(), 0, 0, 1000).bytes.len(),
            57 + 3
        );
        let short = "QUFB\nQkJC\n";
        assert_eq!(decode_at(short.as_bytes(), 0, 0, 1000).bytes, b"AAA");
    }

    #[test]
    fn source_range_maps_bytes_to_characters() {
        let d = decode_at(b"xxdHNrZXkt", 2, 0, 100);
        assert_eq!(d.bytes, b"tskey-");
        assert_eq!(d.source_range(0, 6), (2, 10));
    }
}
