//! Snapshots of what people read (insta), made deterministic.
//!
//! A snapshot is compared after two kinds of replacement: values this test knows (a key ID,
//! a rotation ID, a temporary folder) become a name saying what they are, so the snapshot
//! still shows which row is which (table columns stay aligned); then whatever varies from run
//! to run and the test cannot name (other key IDs, dates, fingerprints, durations, ports)
//! becomes a placeholder of its kind.
//!
//! Snapshots live in `snapshots/` beside this module and are reviewed like code: they must
//! hold no secret (canaries are checked before anything is compared, and
//! `committed_snapshots_hold_no_credential` scans them). To accept a change in the output,
//! review the `.snap.new` files a failing run leaves (or run with `INSTA_UPDATE=always`), or
//! use `cargo insta review`. In CI (`CI` set) nothing is written and a missing snapshot fails.

use std::fmt::Write as _;

use crate::support::Run;

/// Replacements applied to a text before it is compared with its snapshot.
pub struct Redactions {
    /// Exact values and the `[NAME]` shown instead.
    literals: Vec<(String, String)>,
    /// Prefixes of lines whose order is not defined (places written concurrently).
    unordered: Vec<String>,
    /// Paragraphs ordered by a value the test named (a random key ID) after what their first
    /// line says before this separator.
    paragraphs_by: Option<String>,
}

/// Run-dependent values the tests cannot name, as (regex, replacement), applied in order
/// after the literals.
const PATTERNS: &[(&str, &str)] = &[
    // Timestamps before dates, so that a timestamp becomes one placeholder. Placeholders of
    // the same width keep tables aligned.
    (
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "YYYY-MM-DDTHH:MM:SSZ",
    ),
    (r"\b\d{4}-\d{2}-\d{2}\b", "YYYY-MM-DD"),
    // Rotation IDs: `r` + UTC timestamp + six random characters.
    (r"\br\d{14}[0-9a-z]{6}\b", "[ROTATION-ID]"),
    // Key IDs the emulator makes up (`k` + random + `CNTRL`), and the users' IDs are fixed.
    (r"\bk[0-9A-Za-z]+CNTRL\b", "[KEY-ID]"),
    // Fingerprints of random secrets (`fp 3f2a0b1c2d3e`, `[fp:3f2a0b1c2d3e]`).
    (r"\bfp([: ])[0-9a-f]{12}\b", "fp${1}[FP]"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
    // Elapsed times such as `0.42s`, `12 ms`, `1.3 s`.
    (r"\b\d+(\.\d+)? ?(ms|s)\b", "[ELAPSED]"),
];

impl Redactions {
    pub fn new() -> Self {
        Self {
            literals: Vec::new(),
            unordered: Vec::new(),
            paragraphs_by: None,
        }
    }

    /// Show `value` as `[name]`.
    pub fn name(mut self, value: impl AsRef<str>, name: &str) -> Self {
        let value = value.as_ref();
        assert!(!value.is_empty(), "an empty value cannot be redacted");
        self.literals.push((value.to_owned(), format!("[{name}]")));
        self
    }

    /// Show the folder `path` (and anything under it) as `[name]`.
    pub fn path(self, path: &std::path::Path, name: &str) -> Self {
        let shown = path.display().to_string();
        let canonical = path
            .canonicalize()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| shown.clone());
        let this = self.name(&shown, name);
        if canonical == shown {
            this
        } else {
            this.name(canonical, name)
        }
    }

    /// Consecutive lines starting with `prefix` are reported in no defined order (say, places
    /// written concurrently): compare them sorted.
    pub fn unordered(mut self, prefix: &str) -> Self {
        self.unordered.push(prefix.to_owned());
        self
    }

    /// Paragraphs (separated by blank lines) are ordered by what their first line says before
    /// `separator`, then by random IDs the names replace: compare paragraphs that agree up to
    /// `separator` sorted by their names instead.
    pub fn paragraphs_by(mut self, separator: &str) -> Self {
        self.paragraphs_by = Some(separator.to_owned());
        self
    }

    /// Compare a command's exit code, stdout and stderr, as a person sees them, with the
    /// snapshot `snapshot`, after the replacements (made in each output on its own).
    #[track_caller]
    pub fn assert_run(&self, snapshot: &str, run: &Run) {
        let mut out = format!("exit code {}\n", run.code);
        for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            let _ = writeln!(out, "----- {name} -----");
            out.push_str(&self.prepare(text));
            if !text.is_empty() && !text.ends_with('\n') {
                out.push_str("\n(no newline at the end)\n");
            }
        }
        compare(snapshot, &out);
    }

    /// Names, then the order of what has none.
    fn prepare(&self, text: &str) -> String {
        self.sort_paragraphs(&self.sort_unordered(&self.apply(text)))
    }

    /// The literal replacements, longest value first. Where a value is followed by two or
    /// more spaces (a table column), the spaces are adjusted so that the columns after it stay
    /// where they were.
    fn apply(&self, text: &str) -> String {
        let mut literals: Vec<&(String, String)> = self.literals.iter().collect();
        literals.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let mut text = text.to_owned();
        for (value, name) in literals {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(at) = rest.find(value.as_str()) {
                out.push_str(&rest[..at]);
                out.push_str(name);
                rest = &rest[at + value.len()..];
                let spaces = rest.len() - rest.trim_start_matches(' ').len();
                if spaces >= 2 {
                    let width =
                        (spaces + value.chars().count()).saturating_sub(name.chars().count());
                    out.push_str(&" ".repeat(width.max(2)));
                    rest = &rest[spaces..];
                }
            }
            out.push_str(rest);
            text = out;
        }
        text
    }

    fn sort_unordered(&self, text: &str) -> String {
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        for prefix in &self.unordered {
            let mut i = 0;
            while i < lines.len() {
                let run = lines[i..]
                    .iter()
                    .take_while(|l| l.starts_with(prefix.as_str()))
                    .count();
                lines[i..i + run].sort_unstable();
                i += run.max(1);
            }
        }
        lines.concat()
    }

    fn sort_paragraphs(&self, text: &str) -> String {
        let Some(separator) = &self.paragraphs_by else {
            return text.to_owned();
        };
        let head = |p: &str| {
            p.split(separator.as_str())
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let mut paragraphs: Vec<&str> = text.split_inclusive("\n\n").collect();
        let mut i = 0;
        while i < paragraphs.len() {
            let key = head(paragraphs[i]);
            let run = paragraphs[i..]
                .iter()
                .take_while(|p| p.ends_with("\n\n") && head(p) == key)
                .count();
            paragraphs[i..i + run].sort_unstable();
            i += run.max(1);
        }
        paragraphs.concat()
    }
}

/// The snapshot comparison, with the patterns of what varies.
#[track_caller]
fn compare(snapshot: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    // Snapshot names are unique across modules; the files are `snapshots/NAME.snap`.
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (pattern, replacement) in PATTERNS {
        settings.add_filter(pattern, *replacement);
    }
    settings.bind(|| insta::assert_snapshot!(snapshot, text));
}

/// Every committed snapshot is free of credentials: `tsrotate scan` (the project's own
/// scanner) finds nothing in the snapshot folder, and no placeholder hides one either.
#[test]
fn committed_snapshots_hold_no_credential() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let snaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert!(snaps.len() >= 5, "the snapshots are missing: {snaps:?}");
    let mut cmd = assert_cmd::Command::cargo_bin("tsrotate").unwrap();
    let output = cmd
        .env("NO_COLOR", "1")
        .args(["scan", "--no-ignore", "--placeholders", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    let run = Run::from(&output);
    assert_eq!(
        (run.code, run.stdout.trim()),
        (0, "[]"),
        "the snapshots hold credentials:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}
