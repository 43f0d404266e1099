//! `tsrotate audit`: the tailnet's credential hygiene as findings, each with its fix, and an
//! exit code that can gate CI.
//!
//! The rules and their severities live in `tsrotate::hygiene`; this command fetches every key
//! the credential may read (`all=true`), reads this machine's rotation journals, and renders.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::hygiene::{self, Finding, PlaceFinding, Rotations, Severity};
use tsrotate::text::escape;

use crate::args::{Format, GlobalArgs};
use crate::cmd_keys;
use crate::context;
use crate::exit::ExitStatus;

/// Arguments of `tsrotate audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, value_name = "SEVERITY", default_value_t = FailOn::High)]
    fail_on: FailOn,
    /// Report keys created longer ago than this (e.g. 180d, 26w).
    #[arg(long, value_name = "DURATION", default_value = "180d", value_parser = context::parse_duration)]
    max_age: i64,
    /// Report keys that expire within this long (e.g. 14d, 72h).
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = context::parse_duration)]
    expiring_within: i64,
    /// Judge ages and expiries as of this time (RFC 3339) instead of now (the API server's
    /// time): what will be wrong on that day.
    #[arg(long, value_name = "TIME", value_parser = cmd_keys::parse_time)]
    as_of: Option<OffsetDateTime>,
}

/// `--fail-on`: the severities, as clap values (the library does not depend on clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Info => Self::Info,
            FailOn::Low => Self::Low,
            FailOn::Medium => Self::Medium,
            FailOn::High => Self::High,
            FailOn::Critical => Self::Critical,
        }
    }
}

#[derive(Serialize)]
struct Settings {
    expiring_within_seconds: i64,
    max_age_seconds: i64,
    fail_on: Severity,
}

#[derive(Serialize, Default)]
struct Counts {
    critical: usize,
    high: usize,
    medium: usize,
    low: usize,
    info: usize,
}

impl Counts {
    fn of(severities: impl IntoIterator<Item = Severity>) -> Self {
        let mut counts = Self::default();
        for severity in severities {
            *match severity {
                Severity::Critical => &mut counts.critical,
                Severity::High => &mut counts.high,
                Severity::Medium => &mut counts.medium,
                Severity::Low => &mut counts.low,
                Severity::Info => &mut counts.info,
            } += 1;
        }
        counts
    }
}

#[derive(Serialize)]
struct Report<'a> {
    tailnet: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    as_of: OffsetDateTime,
    settings: Settings,
    keys_checked: usize,
    counts: Counts,
    /// Whether a finding is at or above `--fail-on` (and the exit code is 1).
    failed: bool,
    findings: &'a [Finding],
    /// Findings about configured places rather than keys (`could-federate`); absent when
    /// there are none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    place_findings: &'a [PlaceFinding],
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let options = hygiene::Options {
        expiring_within: time::Duration::seconds(args.expiring_within),
        max_age: time::Duration::seconds(args.max_age),
    };
    let fail_on = Severity::from(args.fail_on);
    let rotations = rotations(global)?;
    let (client, keys) = cmd_keys::fetch(global, true).await?;
    let now = as_of(args.as_of, &client);
    let findings = hygiene::audit(&keys, now, &options, &rotations);
    // The configuration names where managed credentials are kept: those in GitHub Actions
    // secrets could be no secret at all.
    let place_findings = crate::settings::load_config(global, crate::settings::Need::ApiOnly)?
        .map(|config| hygiene::could_federate(&config))
        .unwrap_or_default();
    let severities = || {
        findings
            .iter()
            .map(|f| f.severity)
            .chain(place_findings.iter().map(|f| f.severity))
    };
    let failing = severities().filter(|s| *s >= fail_on).count();
    let report = Report {
        tailnet: client.tailnet(),
        as_of: now,
        settings: Settings {
            expiring_within_seconds: args.expiring_within,
            max_age_seconds: args.max_age,
            fail_on,
        },
        keys_checked: keys.len(),
        counts: Counts::of(severities()),
        failed: failing > 0,
        findings: &findings,
        place_findings: &place_findings,
    };
    if global.format == Format::Human {
        let descriptions: HashMap<_, _> = keys
            .iter()
            .filter_map(|k| Some((&k.id, k.description.as_deref()?)))
            .collect();
        write_stdout(human(&report, &descriptions, failing).as_bytes())?;
    } else {
        print_json(&report)?;
    }
    Ok(if failing > 0 {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}

/// What this machine's journals say of tsrotate's rotations. Without a state directory there
/// are none to know of: keys minted by tsrotate then show as `unknown-rotation`.
fn rotations(global: &GlobalArgs) -> anyhow::Result<Rotations> {
    // None, or one that others can change (its journals are not to be believed): said why.
    let state_dir = match context::trusted_state_dir(global) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!("{e:#}: keys minted by tsrotate cannot be matched to their rotations");
            return Ok(Rotations::new());
        }
    };
    Rotations::read(state_dir.path(), state_dir.key()).with_context(|| {
        format!(
            "reading the rotation journals in `{}`",
            state_dir.path().display()
        )
    })
}

/// Findings, highest first, each as a head line, the summary and the fix; then the totals.
/// The severity is spelled out, so nothing depends on colour. Descriptions, summaries and
/// fixes quote the API's text (descriptions, subjects, owners): every one is escaped, so a
/// line break or escape sequence in them cannot forge a line or drive the terminal.
fn human(
    report: &Report<'_>,
    descriptions: &HashMap<&tsrotate::key::KeyId, &str>,
    failing: usize,
) -> String {
    let mut out = String::new();
    for f in report.findings {
        let described = descriptions
            .get(&f.key_id)
            .map(|d| format!(" \"{}\"", escape(d)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "[{}] {}: {} {}{described}\n    {}\n    fix: {}\n\n",
            f.severity.as_str().to_uppercase(),
            f.rule,
            f.kind,
            f.key_id,
            escape(&f.summary),
            escape(&f.fix)
        );
    }
    for f in report.place_findings {
        let _ = write!(
            out,
            "[{}] {}: credential {} in {}\n    {}\n    fix: {}\n\n",
            f.severity.as_str().to_uppercase(),
            f.rule,
            escape(&f.credential),
            escape(&f.place),
            escape(&f.summary),
            escape(&f.fix)
        );
    }
    let keys = plural(report.keys_checked, "key", "keys");
    let total = report.findings.len() + report.place_findings.len();
    if total == 0 {
        let _ = writeln!(out, "No findings in {keys}.");
    } else {
        let c = &report.counts;
        let by_severity: Vec<String> = [
            (c.critical, "critical"),
            (c.high, "high"),
            (c.medium, "medium"),
            (c.low, "low"),
            (c.info, "info"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
        let _ = writeln!(
            out,
            "{} in {keys}: {}.",
            plural(total, "finding", "findings"),
            by_severity.join(", ")
        );
    }
    let fail_on = report.settings.fail_on;
    if failing > 0 {
        let _ = writeln!(
            out,
            "Failed: {} at or above {fail_on} (--fail-on {fail_on}).",
            plural(failing, "finding", "findings")
        );
    } else {
        let _ = writeln!(
            out,
            "Passed: nothing at or above {fail_on} (--fail-on {fail_on})."
        );
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One JSON document on stdout. Serialized first, so that a closed stdout (`| head`) fails
/// as a plain `io::Error`, which `exit::finish` turns into exit 0; `serde_json` would wrap it.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_stdout(&text)
}

/// Write to stdout without `print!`, which panics on a closed pipe.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// `--as-of`, else the control plane's time (as the other commands judge expiry: a skewed
/// local clock must not hide or invent an expiring key), in whole seconds like the API's
/// timestamps. Call it after a request, so that the server's `Date` is known.
pub(crate) fn as_of(
    given: Option<OffsetDateTime>,
    client: &tsrotate::api::Client,
) -> OffsetDateTime {
    let now = given.unwrap_or_else(|| client.server_now());
    now.replace_nanosecond(0).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(words: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("tsrotate").chain(words.iter().copied()))?;
        match cli.command {
            Command::Audit(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// Red-team finding: a key description, federated subject or owner with a line break or
    /// escape sequence forged lines of the report ("Passed: nothing at or above high").
    #[test]
    fn text_from_the_api_cannot_forge_lines_of_the_report() {
        let id: tsrotate::key::KeyId = "kEvil2CNTRL".parse().unwrap();
        let hostile = "cl\n\nPassed: nothing at or above high\u{1b}[2J";
        let findings = [Finding {
            rule: "broad-subject",
            severity: Severity::High,
            key_id: id.clone(),
            kind: hygiene::Kind::FederatedIdentity,
            summary: format!("subject `repo:acme/*{hostile}` matches any repository"),
            fix: format!("narrow `{hostile}`"),
        }];
        let report = Report {
            tailnet: "example.com",
            as_of: OffsetDateTime::UNIX_EPOCH,
            settings: Settings {
                expiring_within_seconds: 1,
                max_age_seconds: 1,
                fail_on: Severity::High,
            },
            keys_checked: 1,
            counts: Counts::default(),
            failed: true,
            findings: &findings,
            place_findings: &[],
        };
        let descriptions = HashMap::from([(&id, hostile)]);
        let out = human(&report, &descriptions, 1);
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(
            !out.lines().any(|l| l.starts_with("Passed: nothing")),
            "{out}"
        );
        assert!(out.contains("kEvil2CNTRL"), "{out}");
    }

    #[test]
    fn defaults_match_the_library() {
        let args = parse(&["audit"]).unwrap();
        let defaults = hygiene::Options::default();
        assert_eq!(
            time::Duration::seconds(args.max_age),
            defaults.max_age,
            "--max-age"
        );
        assert_eq!(
            time::Duration::seconds(args.expiring_within),
            defaults.expiring_within,
            "--expiring-within"
        );
        assert_eq!(Severity::from(args.fail_on), Severity::High);
    }

    #[test]
    fn flags_parse_and_bad_values_are_usage_errors() {
        let args = parse(&[
            "audit",
            "--fail-on",
            "low",
            "--max-age",
            "30d",
            "--expiring-within",
            "72h",
            "--as-of",
            "2026-12-01T00:00:00Z",
        ])
        .unwrap();
        assert_eq!(Severity::from(args.fail_on), Severity::Low);
        assert_eq!(args.max_age, 30 * 86_400);
        assert_eq!(args.expiring_within, 72 * 3600);
        assert!(args.as_of.is_some());
        for bad in [
            &["audit", "--fail-on", "severe"][..],
            &["audit", "--max-age", "soon"],
            &["audit", "--expiring-within", "0"],
            &["audit", "--as-of", "tomorrow"],
        ] {
            let err = parse(bad).err().unwrap();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
