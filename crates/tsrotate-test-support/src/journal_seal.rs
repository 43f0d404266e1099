//! Sealing journals as tsrotate does, for tests that plant or edit a journal on purpose to
//! test a check other than the seal: once resealed with the test's key, the journal reaches
//! that check.
//!
//! A second, independent implementation of the seal (`tsrotate::journal::seal`): each line
//! is `<record without its closing brace>,"mac":"<hex>"}` where the seal is
//! HMAC-SHA256(key, "tsrotate journal seal 2" ‖ u64 len ‖ kind ‖ u64 len ‖ id ‖ previous
//! seal ‖ record), the kind being `started` under `rotations/` and `planned` under
//! `containments/`, the ID the file's name without `.jsonl`.

use std::path::Path;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

const MAC_OPEN: &str = r#","mac":""#;

/// Reseal every line of the journal at `path` with the key in `key_file` (64 hexadecimal
/// digits), keeping each record's bytes as they are.
///
/// # Panics
///
/// If a file cannot be read or written, or the key file holds no key.
pub fn reseal(path: &Path, key_file: &Path) {
    let key = read_key(key_file);
    let kind = match path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("containments") => "planned",
        _ => "started",
    };
    let id = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".jsonl"))
        .expect("a journal is named <id>.jsonl");
    let text = std::fs::read_to_string(path).expect("read the journal");
    let mut prev = [0u8; 32];
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record = strip_seal(line);
        let mut mac = <Hmac<Sha256>>::new_from_slice(&key).expect("any key length");
        mac.update(b"tsrotate journal seal 2");
        for part in [kind.as_bytes(), id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&prev);
        mac.update(record.as_bytes());
        prev = mac.finalize().into_bytes().into();
        let body = record.strip_suffix('}').expect("a record is a JSON object");
        out.push_str(body);
        out.push_str(MAC_OPEN);
        out.push_str(&hex(&prev));
        out.push_str("\"}\n");
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "a test fixture, not a consumer's file"
    )]
    std::fs::write(path, out).expect("write the journal");
}

/// The record of a line: the line without its seal, if it has one.
fn strip_seal(line: &str) -> String {
    let tail = MAC_OPEN.len() + 64 + 2;
    if line.len() > tail && line.is_char_boundary(line.len() - tail) {
        let (record, seal) = line.split_at(line.len() - tail);
        if seal.starts_with(MAC_OPEN) && seal.ends_with("\"}") {
            return format!("{record}}}");
        }
    }
    line.to_owned()
}

fn read_key(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read the journal key file");
    let text = text.trim();
    assert_eq!(text.len(), 64, "a journal key is 64 hexadecimal digits");
    (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hexadecimal"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    })
}
