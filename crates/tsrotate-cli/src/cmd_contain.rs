//! `tsrotate contain`: which devices a leaked auth key may have joined (see
//! `tsrotate::contain` for how they are found and ranked).
//!
//! This version reports only: it changes nothing in the tailnet. Exit 1 when candidates at or
//! above `--min-confidence` exist (someone has to act on them), 0 otherwise.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::contain::{self, Confidence, Expected, KeySource, Since};

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::api_error;
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::settings::ApiSettings;

/// Arguments of `tsrotate contain`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The leaked auth key: the credential, its key ID, or `-` to read it from standard input.
    #[arg(value_name = "KEY | KEY_ID | -")]
    key: String,
    /// When the key leaked: an RFC 3339 time, or a duration before now (`36h`, `7d`). Devices
    /// that joined earlier did not use the leaked copy and are not candidates.
    #[arg(long, value_name = "TIME | DURATION")]
    since: Option<String>,
    /// The legitimate fleet: a file of hostnames or node IDs, one a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
    /// The lowest confidence that counts as a finding: exact, strong or possible.
    #[arg(long, value_name = "LEVEL", default_value = "strong", value_parser = parse_confidence)]
    min_confidence: Confidence,
}

fn parse_confidence(text: &str) -> Result<Confidence, String> {
    Confidence::parse(text).ok_or_else(|| "expected exact, strong or possible".to_owned())
}

fn parse_since(text: &str) -> Result<Since, UserError> {
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(Since::At(at));
    }
    context::parse_duration(text)
        .map(|seconds| Since::Ago(time::Duration::seconds(seconds)))
        .map_err(|_| {
            UserError::new(format!("--since `{text}` is neither a time nor a duration")).hint(
                "give an RFC 3339 time (2030-01-31T12:00:00Z) or a duration before now (36h, 7d)",
            )
        })
}

#[derive(Serialize)]
struct JsonKey<'a> {
    id: &'a str,
    owner: Option<&'a str>,
    tags: &'a [String],
    reusable: bool,
    ephemeral: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    ended: Option<OffsetDateTime>,
    source: &'a KeySource,
}

#[derive(Serialize)]
struct JsonCandidate<'a> {
    node_id: &'a str,
    hostname: &'a str,
    confidence: Confidence,
    evidence: &'a [String],
    actions_taken: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    key: JsonKey<'a>,
    window: &'a contain::Window,
    candidates: Vec<JsonCandidate<'a>>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    let id = key.key_id().clone();
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let expected = match &args.expected {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UserError::new(format!(
                    "cannot read --expected file {}: {e}",
                    path.display()
                ))
            })?;
            Expected::parse(&text)
        }
        None => Expected::default(),
    };
    // No scopes asked for: the token gets all of the client's, and a missing one degrades
    // (audit log) or is explained (device list) instead of failing the token exchange.
    let client = ApiSettings::configured(global, &[])?.require_client()?;
    let state_dir = context::state_dir(global).ok();
    let report = contain::investigate(&client, state_dir.as_deref(), &id, since, &expected)
        .await
        .map_err(|e| match e {
            contain::Error::Api { what, source, .. } if source.status() != Some(403) => {
                api_error(what, source)
            }
            contain::Error::UnknownKey(_) | contain::Error::NotAuthKey(_) => {
                UserError::new(e.to_string()).into()
            }
            contain::Error::Api { .. } => UserError::new(e.to_string())
                .hint("tsrotate contain needs devices:core:read, and reads logs:configuration:read and users:read when it may")
                .into(),
            other @ contain::Error::Journal(_) => anyhow::Error::from(other),
        })?;
    let findings = report
        .analysis
        .candidates
        .iter()
        .filter(|c| c.confidence >= args.min_confidence)
        .count();
    if global.format == Format::Json {
        let json = JsonReport {
            key: JsonKey {
                id: report.key.id.as_str(),
                owner: report.key.owner.as_deref(),
                tags: &report.key.tags,
                reusable: report.key.reusable,
                ephemeral: report.key.ephemeral,
                created: report.key.created,
                ended: report.key.ended,
                source: &report.key.source,
            },
            window: &report.window,
            candidates: report
                .analysis
                .candidates
                .iter()
                .map(|c| JsonCandidate {
                    node_id: &c.node_id,
                    hostname: &c.hostname,
                    confidence: c.confidence,
                    evidence: &c.evidence,
                    actions_taken: Vec::new(),
                })
                .collect(),
        };
        serde_json::to_writer_pretty(std::io::stdout().lock(), &json)?;
        println!();
    } else {
        print_human(&report, args.min_confidence, findings);
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    Ok(if findings > 0 {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}

fn print_human(report: &contain::Report, min: Confidence, findings: usize) {
    let key = &report.key;
    let owner = key.owner.as_deref().map_or_else(
        || "tailnet-owned".to_owned(),
        |o| format!("owned by user {o}"),
    );
    let tags = if key.tags.is_empty() {
        "untagged".to_owned()
    } else {
        key.tags.join(",")
    };
    let source = match &key.source {
        KeySource::Api => "from the API".to_owned(),
        KeySource::Journal { rotation_id } => format!("from the journal of rotation {rotation_id}"),
    };
    println!(
        "Key {} ({owner}, {tags}, {}): record {source}.",
        key.id,
        if key.reusable {
            "reusable"
        } else {
            "single-use"
        }
    );
    println!(
        "Registration window: {} to {}.",
        rfc3339(report.window.start),
        rfc3339(report.window.end)
    );
    if report.analysis.candidates.is_empty() {
        println!("No device looks like it joined with this key.");
    }
    for c in &report.analysis.candidates {
        println!(
            "{:<8} {} ({})",
            c.confidence.as_str(),
            c.hostname,
            c.node_id
        );
        for line in &c.evidence {
            println!("         - {line}");
        }
    }
    if report.analysis.expected_skipped > 0 {
        println!(
            "{} device(s) left out because --expected lists them.",
            report.analysis.expected_skipped
        );
    }
    if findings > 0 {
        println!(
            "{findings} device(s) at or above {}: nothing was changed. Expire or deauthorize them in the admin console (Machines).",
            min.as_str()
        );
    }
}
