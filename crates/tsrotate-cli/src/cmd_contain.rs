//! `tsrotate contain`: which devices a leaked auth key may have joined (see
//! `tsrotate::contain` for how they are found and ranked).
//!
//! Without `--action` it reports only. With `--action`, it shows the plan (a dry run) unless
//! `--yes` is given; then the action is journaled (`tsrotate::contain::act`) so that `resume`
//! finishes it after a crash and `rollback` restores what the API can restore. Exit 1 when
//! candidates at or above `--min-confidence` exist and no action was taken on them (or one
//! failed), 0 otherwise.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::contain::act::{self, Action, Containment, Plan, Progress};
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
    /// What to do to the devices at or above --min-confidence: expire, deauthorize,
    /// drop-routes or delete. Shows the plan only, unless --yes is given.
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    action: Option<Action>,
    /// Carry the --action out (journaled: `tsrotate rollback ID` restores authorization and
    /// routes; expire and delete cannot be undone).
    #[arg(long, short = 'y', requires = "action")]
    yes: bool,
}

fn parse_action(text: &str) -> Result<Action, String> {
    Action::parse(text)
        .ok_or_else(|| "expected expire, deauthorize, drop-routes or delete".to_owned())
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
    actions_taken: Vec<&'static str>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    key: JsonKey<'a>,
    window: &'a contain::Window,
    candidates: Vec<JsonCandidate<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    containment: Option<JsonContainment<'a>>,
}

/// What `--action` planned or did.
#[derive(Serialize)]
struct JsonContainment<'a> {
    /// The journal's ID (for `resume` and `rollback`); absent on a dry run.
    id: Option<&'a str>,
    action: &'static str,
    dry_run: bool,
    undoable: bool,
    devices: Vec<JsonProgress<'a>>,
}

impl<'a> JsonContainment<'a> {
    fn of(state: &'a act::State) -> Self {
        Self {
            id: Some(&state.plan.containment_id),
            action: state.plan.action.as_str(),
            dry_run: false,
            undoable: state.plan.action.undoable(),
            devices: state
                .plan
                .devices
                .iter()
                .zip(&state.progress)
                .map(|(d, p)| JsonProgress {
                    node_id: &d.node_id,
                    hostname: &d.hostname,
                    progress: p,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct JsonProgress<'a> {
    node_id: &'a str,
    hostname: &'a str,
    #[serde(flatten)]
    progress: &'a Progress,
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
        .map_err(investigate_error)?;
    let targets: Vec<&contain::Candidate> = report
        .analysis
        .candidates
        .iter()
        .filter(|c| c.confidence >= args.min_confidence && !c.device.is_external)
        .collect();
    let findings = targets.len();
    let mut containment = None;
    if let (Some(action), true, false) = (args.action, args.yes, targets.is_empty()) {
        let dir = context::trusted_state_dir(global)?;
        let plan = Plan {
            containment_id: act::new_id(time::OffsetDateTime::now_utc()),
            tailnet: client.tailnet().to_owned(),
            user: context::os_user(),
            key_id: id.clone(),
            action,
            // The device as the list just described it: what rollback restores.
            devices: targets.iter().map(|c| c.device.clone()).collect(),
        };
        let mut running = Containment::begin(&dir, plan).map_err(act_error)?;
        let outcome = running.carry_out(&client).await;
        containment = Some(running.state().clone());
        if let Err(e) = outcome {
            emit(global, &report, containment.as_ref(), args)?;
            return Err(act_error(e));
        }
    }
    emit(global, &report, containment.as_ref(), args)?;
    Ok(match (&containment, findings) {
        (_, 0) => ExitStatus::Success,
        (Some(state), _) if state.is_finished() => ExitStatus::Success,
        _ => ExitStatus::Incomplete,
    })
}

/// An investigation's failure: a 403 names the scope.
fn investigate_error(e: contain::Error) -> anyhow::Error {
    match e {
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
    }
}

/// A containment's refusal or failure, worded for the person (exit 2 when they must fix
/// something).
fn act_error(e: act::Error) -> anyhow::Error {
    if e.is_user_error() {
        let hint = e.hint();
        let error = UserError::new(e.to_string());
        match hint {
            Some(hint) => error.hint(hint).into(),
            None => error.into(),
        }
    } else {
        anyhow::Error::from(e)
    }
}

fn emit(
    global: &GlobalArgs,
    report: &contain::Report,
    containment: Option<&act::State>,
    args: &Args,
) -> anyhow::Result<()> {
    let min = args.min_confidence;
    let taken = |node_id: &str| -> Vec<&'static str> {
        containment
            .and_then(|s| {
                s.acted()
                    .find(|(d, _)| d.node_id == node_id)
                    .map(|_| vec![s.plan.action.as_str()])
            })
            .unwrap_or_default()
    };
    if global.format == Format::Json {
        let planned: Vec<&contain::Candidate> = report
            .analysis
            .candidates
            .iter()
            .filter(|c| c.confidence >= min)
            .collect();
        let pending = Progress::Pending;
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
                    actions_taken: taken(&c.node_id),
                })
                .collect(),
            containment: args.action.map(|action| match containment {
                Some(state) => JsonContainment::of(state),
                None => JsonContainment {
                    id: None,
                    action: action.as_str(),
                    dry_run: true,
                    undoable: action.undoable(),
                    devices: planned
                        .iter()
                        .map(|c| JsonProgress {
                            node_id: &c.node_id,
                            hostname: &c.hostname,
                            progress: &pending,
                        })
                        .collect(),
                },
            }),
        };
        write_json(&json)?;
    } else {
        let findings = report
            .analysis
            .candidates
            .iter()
            .filter(|c| c.confidence >= min)
            .count();
        print_human(report, min, findings, args.action.is_some());
        match (args.action, containment) {
            (Some(action), None) if findings > 0 => {
                println!(
                    "Plan: {} {findings} device(s) at or above {}. {}.",
                    action.as_str(),
                    min.as_str(),
                    capitalized(action.permanence())
                );
                println!(
                    "Dry run: nothing was changed. Run again with --yes to {} them.",
                    action.as_str()
                );
            }
            (_, Some(state)) => print_progress(state),
            _ => {}
        }
    }
    for note in &report.notes {
        eprintln!("note: {}", tsrotate::text::escape(note));
    }
    Ok(())
}

/// Pretty JSON and a newline on stdout, buffered: stdout flushes at every newline otherwise,
/// a write per line for thousands of candidates.
fn write_json(value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn print_progress(state: &act::State) {
    let action = state.plan.action;
    let id = &state.plan.containment_id;
    for (device, progress) in state.plan.devices.iter().zip(&state.progress) {
        let what = match progress {
            Progress::Done { already: false } => format!("{}: done", action.as_str()),
            Progress::Done { already: true } => {
                format!("{}: done (by an interrupted run)", action.as_str())
            }
            Progress::Gone => "no longer in the tailnet".to_owned(),
            Progress::Failed { error } => {
                format!(
                    "{} failed: {}",
                    action.as_str(),
                    tsrotate::text::escape(error)
                )
            }
            Progress::Pending | Progress::Intended => "not done yet".to_owned(),
            Progress::Undone => "restored".to_owned(),
            Progress::UndoIntended => "not restored yet".to_owned(),
            Progress::UndoFailed { error } => {
                format!("restoring failed: {}", tsrotate::text::escape(error))
            }
        };
        println!(
            "  {} ({}): {what}",
            tsrotate::text::escape(&device.hostname),
            tsrotate::text::escape(&device.node_id)
        );
    }
    match state.end {
        Some(act::End::Finished) if action.undoable() => println!(
            "Containment {id} finished. `tsrotate rollback {id}` restores the devices as they were."
        ),
        Some(act::End::Finished) => println!(
            "Containment {id} finished. It cannot be rolled back: {}.",
            action.permanence()
        ),
        Some(act::End::RolledBack) => println!("Containment {id} is rolled back."),
        None if state.undoing => println!(
            "Containment {id} is not fully rolled back: run `tsrotate rollback {id}` again."
        ),
        None => println!("Containment {id} is not finished: `tsrotate resume {id}` finishes it."),
    }
}

/// `rotate --contain`: the report of `tsrotate contain OLD_KEY_ID` with the defaults, after the
/// rotation. Returns whether devices rank at or above `strong` (someone has to act).
pub(crate) async fn after_rotation(
    global: &GlobalArgs,
    old_key: &tsrotate::key::KeyId,
) -> anyhow::Result<bool> {
    // Its own token: the rotation's asked only for the scopes a rotation needs.
    let client = ApiSettings::configured(global, &[])?.require_client()?;
    let state_dir = context::state_dir(global).ok();
    println!();
    println!("Devices key {old_key} may have joined:");
    let report = contain::investigate(
        &client,
        state_dir.as_deref(),
        old_key,
        None,
        &Expected::default(),
    )
    .await
    .map_err(investigate_error)?;
    let findings = report
        .analysis
        .candidates
        .iter()
        .filter(|c| c.confidence >= Confidence::Strong)
        .count();
    print_human(&report, Confidence::Strong, findings, false);
    for note in &report.notes {
        eprintln!("note: {}", tsrotate::text::escape(note));
    }
    Ok(findings > 0)
}

/// `tsrotate resume` of a containment: acts on the devices not acted on yet, never twice.
pub(crate) async fn resume(global: &GlobalArgs, id: &str) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    let mut running = Containment::reopen(&dir, id).map_err(act_error)?;
    let client = client_for(global, running.state())?;
    let outcome = running.carry_out(&client).await;
    finish(global, running.state(), outcome)
}

/// `tsrotate rollback` of a containment: restores authorization or routes from the snapshot.
pub(crate) async fn rollback(
    global: &GlobalArgs,
    id: &str,
    yes: bool,
) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    let mut running = Containment::reopen(&dir, id).map_err(act_error)?;
    let action = running.state().plan.action;
    if !action.undoable() {
        return Err(act_error(act::Error::CannotUndo {
            containment_id: id.to_owned(),
            action,
        }));
    }
    let client = client_for(global, running.state())?;
    if !context::confirm(
        &format!(
            "Restore the devices containment {id} changed ({}) from their snapshots?",
            action.as_str()
        ),
        yes,
    )? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    let outcome = running.roll_back(&client).await;
    finish(global, running.state(), outcome)
}

/// A client for the tailnet the containment started on, whatever the environment says now.
fn client_for(global: &GlobalArgs, state: &act::State) -> anyhow::Result<tsrotate::api::Client> {
    let settings = ApiSettings::configured(global, &[])?;
    ApiSettings {
        tailnet: state.plan.tailnet.clone(),
        ..settings
    }
    .require_client()
}

fn finish(
    global: &GlobalArgs,
    state: &act::State,
    outcome: Result<(), act::Error>,
) -> anyhow::Result<ExitStatus> {
    if global.format == Format::Json {
        write_json(&JsonContainment::of(state))?;
    } else {
        print_progress(state);
    }
    outcome.map_err(act_error)?;
    Ok(if state.is_finished() {
        ExitStatus::Success
    } else {
        ExitStatus::Incomplete
    })
}

fn print_human(report: &contain::Report, min: Confidence, findings: usize, acting: bool) {
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
            // Hostnames, os and client versions are the attacker's to choose.
            tsrotate::text::escape(&c.hostname),
            tsrotate::text::escape(&c.node_id)
        );
        for line in &c.evidence {
            println!("         - {}", tsrotate::text::escape(line));
        }
    }
    if report.analysis.expected_skipped > 0 {
        println!(
            "{} device(s) left out because --expected lists them.",
            report.analysis.expected_skipped
        );
    }
    if findings > 0 && !acting {
        println!(
            "{findings} device(s) at or above {}: nothing was changed. Quarantine them with --action expire|deauthorize|drop-routes|delete (a dry run until --yes).",
            min.as_str()
        );
    }
}
