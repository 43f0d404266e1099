//! SARIF 2.1.0, the format code-scanning services (GitHub, GitLab, Azure DevOps) take.
//!
//! Only the parts we fill are modelled. Each finding is a `result` with one physical location,
//! the rule it matched, a `partialFingerprints` entry built from the credential fingerprint (so
//! the service tracks one alert per value across commits, not per line), and properties with
//! the key ID, kind, status and commit. Messages name the key ID and the redacted form only.
//!
//! Columns: SARIF counts UTF-16 code units by default; we count bytes and say so with
//! `columnKind: "unicodeCodePoints"`, exact for ASCII lines, which is where keys are found.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::finding::{Encoding, Finding, Origin};
use crate::rule::RuleSet;

/// The schema URI that validators and GitHub expect.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A SARIF log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Log {
    /// The schema.
    #[serde(rename = "$schema")]
    pub schema: String,
    /// Always `2.1.0`.
    pub version: String,
    /// One run per scan.
    pub runs: Vec<Run>,
}

/// One run of the tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Who produced it.
    pub tool: Tool,
    /// How columns are counted.
    pub column_kind: String,
    /// The findings.
    pub results: Vec<SarifResult>,
}

/// The tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    /// Its main component.
    pub driver: Driver,
}

/// The tool's main component and its rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Driver {
    /// `tsrotate`.
    pub name: String,
    /// The version.
    pub semantic_version: String,
    /// Where to read about it.
    pub information_uri: String,
    /// Every rule, so `ruleIndex` can point into it.
    pub rules: Vec<ReportingDescriptor>,
}

/// A rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportingDescriptor {
    /// e.g. `tailscale.auth-key`.
    pub id: String,
    /// e.g. `TailscaleAuthKey`.
    pub name: String,
    /// One line.
    pub short_description: Message,
    /// Why it matters.
    pub full_description: Message,
    /// What to do.
    pub help: Message,
    /// Default level.
    pub default_configuration: Configuration,
    /// Tags and GitHub's `security-severity`.
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// A rule's default configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Configuration {
    /// `error`.
    pub level: String,
}

/// A text message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// The text.
    pub text: String,
}

/// One finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifResult {
    /// The rule's ID.
    pub rule_id: String,
    /// The rule's position in `driver.rules`.
    pub rule_index: usize,
    /// `error` for live or unverified keys, `warning` for dead ones.
    pub level: String,
    /// What was found, without the secret.
    pub message: Message,
    /// Where.
    pub locations: Vec<Location>,
    /// Stable identity of the alert: the credential's fingerprint.
    pub partial_fingerprints: BTreeMap<String, String>,
    /// Key ID, kind, fingerprint, status, commit.
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// A location.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// In a file.
    pub physical_location: PhysicalLocation,
}

/// A place in a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhysicalLocation {
    /// The file.
    pub artifact_location: ArtifactLocation,
    /// The span.
    pub region: Region,
}

/// A file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    /// Relative (to the scanned root) or `file://` URI.
    pub uri: String,
}

/// A span in a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// 1-based.
    pub start_line: u64,
    /// 1-based.
    pub start_column: u64,
    /// 1-based, exclusive; absent when the span continues on later lines (wrapped base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u64>,
    /// Byte offset in the file.
    pub byte_offset: u64,
    /// Byte length.
    pub byte_length: u64,
}

/// Build a SARIF log for `findings`.
#[must_use]
pub fn log(findings: &[Finding], version: &str) -> Log {
    let rules = RuleSet::builtin();
    let descriptors = rules.rules.iter().map(descriptor).collect();
    let results = findings
        .iter()
        .map(|f| result(f, rules.index_of(&f.rule).unwrap_or_default()))
        .collect();
    Log {
        schema: SCHEMA.to_owned(),
        version: "2.1.0".to_owned(),
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "tsrotate".to_owned(),
                    semantic_version: version.to_owned(),
                    information_uri: "https://github.com/tsrotate/tsrotate".to_owned(),
                    rules: descriptors,
                },
            },
            column_kind: "unicodeCodePoints".to_owned(),
            results,
        }],
    }
}

fn descriptor(rule: &crate::rule::Rule) -> ReportingDescriptor {
    let name = rule
        .name
        .split_whitespace()
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|c| c.to_uppercase().chain(cs).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<String>()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let mut properties = BTreeMap::new();
    properties.insert(
        "tags".to_owned(),
        serde_json::json!(["security", "secret", "tailscale"]),
    );
    // GitHub maps 9.0+ to "critical".
    properties.insert("security-severity".to_owned(), serde_json::json!("9.0"));
    properties.insert("precision".to_owned(), serde_json::json!("very-high"));
    ReportingDescriptor {
        id: rule.id.clone(),
        name,
        short_description: Message {
            text: rule.name.clone(),
        },
        full_description: Message {
            text: rule.description.clone(),
        },
        help: Message {
            text: rule.help.clone(),
        },
        default_configuration: Configuration {
            level: "error".to_owned(),
        },
        properties,
    }
}

fn result(f: &Finding, rule_index: usize) -> SarifResult {
    use crate::finding::Status;
    let level = match f.status {
        Some(Status::Revoked | Status::Expired | Status::NotFound) => "warning",
        Some(Status::Live | Status::Unknown) | None => "error",
    };
    let state = f
        .status
        .map_or_else(|| "not verified".to_owned(), |s| s.as_str().to_owned());
    let mut text = format!(
        "Tailscale {} {} ({}), {state}",
        f.type_word, f.key_id, f.redacted
    );
    if let Some(commit) = &f.commit {
        let _ = write!(text, ", in commit {commit}");
    }
    let mut properties = BTreeMap::new();
    properties.insert("key_id".to_owned(), serde_json::json!(f.key_id));
    properties.insert("kind".to_owned(), serde_json::json!(f.kind));
    properties.insert("fingerprint".to_owned(), serde_json::json!(f.fingerprint));
    properties.insert("encoding".to_owned(), serde_json::json!(f.encoding));
    if let Some(status) = f.status {
        properties.insert("status".to_owned(), serde_json::json!(status));
    }
    if let Some(commit) = &f.commit {
        properties.insert("commit".to_owned(), serde_json::json!(commit));
    }
    let mut partial = BTreeMap::new();
    partial.insert(
        "tsrotate/credential/v1".to_owned(),
        f.fingerprint.to_string(),
    );
    let end_column = (f.encoding == Encoding::Plain).then(|| f.column + f.length);
    SarifResult {
        rule_id: f.rule.clone(),
        rule_index,
        level: level.to_owned(),
        message: Message { text },
        locations: vec![Location {
            physical_location: PhysicalLocation {
                artifact_location: ArtifactLocation {
                    uri: uri(
                        &crate::PathName::bytes(&f.path, f.path_base64.as_deref())
                            .unwrap_or_else(|| f.path.clone().into_bytes()),
                        f.origin,
                    ),
                },
                region: Region {
                    start_line: f.line,
                    start_column: f.column,
                    end_column,
                    byte_offset: f.offset,
                    byte_length: f.length,
                },
            },
        }],
        partial_fingerprints: partial,
        properties,
    }
}

/// A URI reference for a path's bytes: relative paths stay relative (code scanning resolves
/// them against the repository root), absolute ones become `file://` URIs. Every other byte
/// is percent-encoded, so a name that is not UTF-8 keeps its exact bytes.
fn uri(path: &[u8], origin: Origin) -> String {
    let path = if origin == Origin::Stdin {
        &b"stdin"[..]
    } else {
        path
    };
    let mut out = String::with_capacity(path.len());
    if path.starts_with(b"/") {
        out.push_str("file://");
    }
    for &b in path {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_escaped_and_absolute_paths_are_file_uris() {
        assert_eq!(uri(b"src/a b.env", Origin::File), "src/a%20b.env");
        assert_eq!(uri(b"/etc/ts.env", Origin::File), "file:///etc/ts.env");
        assert_eq!(uri(b"-", Origin::Stdin), "stdin");
        // A name's bytes, whatever they are, and nothing else: a backslash is part of a Unix
        // name, and bytes that are not UTF-8 stay those bytes.
        assert_eq!(uri(b"a\\b\xff\xc3.env", Origin::File), "a%5Cb%FF%C3.env");
    }

    #[test]
    fn every_rule_has_a_descriptor_with_a_pascal_case_name() {
        let log = log(&[], "0.1.0");
        let rules = &log.runs[0].tool.driver.rules;
        assert_eq!(rules.len(), RuleSet::builtin().rules.len());
        assert_eq!(rules[0].name, "TailscaleAuthKey");
    }
}
