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
    #[command(flatten)]
    options: Options,
    /// Carry the --action out (journaled: `tsrotate rollback ID` restores authorization and
    /// routes; expire and delete cannot be undone).
    #[arg(long, short = 'y', requires = "action")]
    yes: bool,
}

/// The options of a containment, the same for `tsrotate contain` and `rotate --contain`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// When the key leaked: an RFC 3339 time, or a duration before now (`36h`, `7d`). Devices
    /// that joined earlier did not use the leaked copy and are not candidates.
    #[arg(long, value_name = "TIME | DURATION")]
    since: Option<String>,
    /// The legitimate fleet: a file of hostnames or node IDs, one a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    expected: Option<PathBuf>,
    /// The lowest confidence that counts as a finding: exact, strong (the default) or
    /// possible.
    #[arg(long, value_name = "LEVEL", value_parser = parse_confidence)]
    min_confidence: Option<Confidence>,
    /// What to do to the devices at or above --min-confidence: expire, deauthorize,
    /// drop-routes or delete. Shows the plan only, unless --yes is given.
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    action: Option<Action>,
}

impl Options {
    /// Whether any option was given (`rotate` takes them only with `--contain`).
    pub(crate) fn any(&self) -> bool {
        let Self {
            since,
            expected,
            min_confidence,
            action,
        } = self;
        since.is_some() || expected.is_some() || min_confidence.is_some() || action.is_some()
    }

    /// Checks and reads them (the `--expected` file too), before anything changes.
    pub(crate) fn resolve(&self) -> Result<Resolved, UserError> {
        let since = self.since.as_deref().map(parse_since).transpose()?;
        let expected = match &self.expected {
            Some(path) => {
                let expected = Expected::parse(&read_expected(path)?);
                if expected.is_empty() {
                    // A FIFO whose writer never came reads as empty too.
                    return Err(UserError::new(format!(
                        "--expected file {} lists no hostname or node ID",
                        tsrotate::text::escape(&path.display().to_string())
                    ))
                    .hint("give a file of hostnames or node IDs of the legitimate fleet, one a line, or leave --expected out"));
                }
                expected
            }
            None => Expected::default(),
        };
        Ok(Resolved {
            since,
            expected,
            min: self.min_confidence.unwrap_or(Confidence::Strong),
            action: self.action,
        })
    }
}

/// The largest `--expected` file: 16 MiB is some 500,000 node IDs, far more than a tailnet has.
const MAX_EXPECTED_BYTES: u64 = 16 << 20;

/// The `--expected` file's text, read without blocking on a FIFO that has no writer (it reads
/// as empty) and never more than [`MAX_EXPECTED_BYTES`] (`/dev/zero` would otherwise be read
/// until memory runs out).
fn read_expected(path: &std::path::Path) -> Result<String, UserError> {
    use std::io::Read as _;
    let name = tsrotate::text::escape(&path.display().to_string()).into_owned();
    let cannot =
        |e: std::io::Error| UserError::new(format!("cannot read --expected file {name}: {e}"));
    let file = tsrotate::key::open_secret_file(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_EXPECTED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_EXPECTED_BYTES {
        return Err(UserError::new(format!(
            "--expected file {name} is larger than {} MiB",
            MAX_EXPECTED_BYTES >> 20
        ))
        .hint("give a file of hostnames or node IDs of the legitimate fleet, one a line"));
    }
    String::from_utf8(bytes).map_err(|_| {
        UserError::new(format!("--expected file {name} is not UTF-8 text"))
            .hint("give a file of hostnames or node IDs of the legitimate fleet, one a line")
    })
}

/// [`Options`] checked and read.
#[derive(Debug)]
pub(crate) struct Resolved {
    since: Option<Since>,
    expected: Expected,
    min: Confidence,
    action: Option<Action>,
}

fn parse_action(text: &str) -> Result<Action, String> {
    Action::parse(text)
        .ok_or_else(|| "expected expire, deauthorize, drop-routes or delete".to_owned())
}

fn parse_confidence(text: &str) -> Result<Confidence, String> {
    Confidence::parse(text).ok_or_else(|| "expected exact, strong or possible".to_owned())
}

/// The longest `--since` duration: 100 years.
const MAX_SINCE_SECONDS: i64 = 100 * 365 * 86_400;

fn parse_since(text: &str) -> Result<Since, UserError> {
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(Since::At(at));
    }
    context::parse_duration(text)
        .ok()
        // Further back than Tailscale has existed is a typo, and would overflow the clock.
        .filter(|seconds| *seconds <= MAX_SINCE_SECONDS)
        .map(|seconds| Since::Ago(time::Duration::seconds(seconds)))
        .ok_or_else(|| {
            UserError::new(format!(
                "--since `{}` is neither a time nor a duration of at most 100 years",
                tsrotate::text::escape(text)
            ))
            .hint("give an RFC 3339 time (2030-01-31T12:00:00Z) or a duration before now (36h, 7d)")
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
    /// Neither revoked, used up nor expired: it can still join devices.
    live: bool,
    /// While it is live, the command that revokes it.
    revoke_with: Option<String>,
}

#[derive(Serialize)]
struct JsonCandidate<'a> {
    node_id: &'a str,
    hostname: &'a str,
    confidence: Confidence,
    /// The ranking's evidence, then what the `--action` planned may not do on it
    /// ([`Action::caveat`]).
    evidence: Vec<&'a str>,
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
    /// The candidates left alone because they rank below `--min-confidence` (`contain` only;
    /// absent when there are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    below_threshold: Option<JsonBelow>,
}

/// Candidates below `--min-confidence`: how many, and the option that would include them.
#[derive(Serialize)]
struct JsonBelow {
    candidates: usize,
    /// How many of them stand out from their fleet (`outlier:` evidence).
    outliers: usize,
    include_with: String,
}

/// The candidates below `min`, if any.
struct Below {
    count: usize,
    outliers: usize,
    /// The lowest confidence among them: `--min-confidence` of it includes them all.
    lowest: Confidence,
}

impl Below {
    fn of(report: &contain::Report, min: Confidence) -> Option<Self> {
        let below: Vec<&contain::Candidate> = report
            .analysis
            .candidates
            .iter()
            .filter(|c| c.confidence < min)
            .collect();
        Some(Self {
            count: below.len(),
            outliers: below.iter().filter(|c| c.outliers > 0).count(),
            lowest: below.iter().map(|c| c.confidence).min()?,
        })
    }

    fn include_with(&self) -> String {
        format!("--min-confidence {}", self.lowest.as_str())
    }

    fn json(&self) -> JsonBelow {
        JsonBelow {
            candidates: self.count,
            outliers: self.outliers,
            include_with: self.include_with(),
        }
    }

    fn words(&self, min: Confidence) -> String {
        format!(
            "{} candidate(s) rank below {} ({} of them with outlier marks) and were left alone: {} includes them.",
            self.count,
            min.as_str(),
            self.outliers,
            self.include_with()
        )
    }
}

impl<'a> JsonContainment<'a> {
    fn of(state: &'a act::State) -> Self {
        Self {
            below_threshold: None,
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
                    note: state.plan.action.caveat(d),
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
    /// What the action may not do on it ([`Action::caveat`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

/// The command that revokes a live key.
fn revoke_command(id: &tsrotate::key::KeyId) -> String {
    format!("tsrotate revoke {id}")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    let options = args.options.resolve()?;
    contain_key(global, key.key_id(), &options, args.yes).await
}

/// Investigates key `id` and, with an action and `yes`, carries the action out: `contain`'s
/// work, and `rotate --contain`'s after the rotation.
async fn contain_key(
    global: &GlobalArgs,
    id: &tsrotate::key::KeyId,
    options: &Resolved,
    yes: bool,
) -> anyhow::Result<ExitStatus> {
    // No scopes asked for: the token gets all of the client's, and a missing one degrades
    // (audit log) or is explained (device list) instead of failing the token exchange.
    let client = ApiSettings::configured(global, &[])?.require_client()?;
    // Only a key the API forgot needs the journals: a state directory that is refused stops
    // nothing else, but then it, not "unknown to every journal", is what the person must hear.
    let (state_dir, refused) = match context::trusted_state_dir(global) {
        Ok(dir) => (Some(dir), None),
        Err(e) => (None, Some(e)),
    };
    let report = contain::investigate(
        &client,
        state_dir.as_ref(),
        id,
        options.since,
        &options.expected,
    )
    .await
    .map_err(|e| match (e, refused) {
        (contain::Error::UnknownKey(id), Some(refused)) => refused.context(format!(
            "the API no longer knows key {id}, and the journals that may record it cannot be read"
        )),
        (e, _) => investigate_error(e),
    })?;
    let targets: Vec<&contain::Candidate> = report
        .analysis
        .candidates
        .iter()
        .filter(|c| c.confidence >= options.min && !c.device.is_external)
        .collect();
    let findings = targets.len();
    let mut containment = None;
    if let (Some(action), true, false) = (options.action, yes, targets.is_empty()) {
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
            emit(global, &report, containment.as_ref(), options, yes)?;
            return Err(act_error(e));
        }
    }
    emit(global, &report, containment.as_ref(), options, yes)?;
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
        contain::Error::SinceInFuture { .. } => UserError::new(format!("--since: {e}"))
            .hint("give the time the key leaked (an RFC 3339 time in the past) or a duration before now (36h, 7d)")
            .into(),
        contain::Error::Api { .. } => UserError::new(e.to_string())
            .hint("tsrotate contain needs devices:core:read, and reads logs:configuration:read and users:read when it may")
            .into(),
        contain::Error::UnreadableJournal { ref path, .. } => {
            let path = tsrotate::text::path(path).into_owned();
            UserError::new(e.to_string())
                .hint(format!("check what it says, then repair it or move it aside (`mv {path} {path}.damaged`: only *.jsonl files are read), and run again"))
                .into()
        }
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
    options: &Resolved,
    yes: bool,
) -> anyhow::Result<()> {
    let min = options.min;
    let below = Below::of(report, min);
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
                live: report.key_live,
                revoke_with: report.key_live.then(|| revoke_command(&report.key.id)),
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
                    evidence: c
                        .evidence
                        .iter()
                        .map(String::as_str)
                        .chain(options.action.and_then(|a| a.caveat(&c.device)))
                        .collect(),
                    actions_taken: taken(&c.node_id),
                })
                .collect(),
            containment: options.action.map(|action| match containment {
                Some(state) => JsonContainment {
                    below_threshold: below.as_ref().map(Below::json),
                    ..JsonContainment::of(state)
                },
                None => JsonContainment {
                    id: None,
                    action: action.as_str(),
                    // With --yes and nothing at or above the threshold, nothing was planned:
                    // not a dry run.
                    dry_run: !yes,
                    undoable: action.undoable(),
                    below_threshold: below.as_ref().map(Below::json),
                    devices: planned
                        .iter()
                        .map(|c| JsonProgress {
                            node_id: &c.node_id,
                            hostname: &c.hostname,
                            progress: &pending,
                            note: action.caveat(&c.device),
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
        print_human(report, min, findings, options.action.is_some());
        match (options.action, containment) {
            (Some(action), None) if findings > 0 => print_plan(report, action, min, findings),
            (_, Some(state)) => print_progress(state),
            (Some(action), None) => println!(
                "Nothing to {}: no candidate ranks at or above {}; nothing was changed.",
                action.as_str(),
                min.as_str()
            ),
            (None, None) => {}
        }
        if let Some(below) = &below {
            println!("{}", below.words(min));
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

/// What happened to one device, in words.
fn outcome(action: Action, progress: &Progress) -> String {
    let action = action.as_str();
    match progress {
        Progress::Done {
            by_others: true, ..
        } => format!("{action}: found done by someone else after this containment's call failed"),
        Progress::Done { already: false, .. } => format!("{action}: done"),
        Progress::Done { already: true, .. } => {
            format!("{action}: done (by an interrupted run)")
        }
        Progress::Gone => "no longer in the tailnet".to_owned(),
        Progress::Failed { error, .. } => format!("{action} failed: {error}"),
        Progress::Pending | Progress::Intended => "not done yet".to_owned(),
        Progress::Undone { not_restored } if not_restored.is_empty() => "restored".to_owned(),
        Progress::Undone { not_restored } => format!(
            "restored, except routes {} (no longer advertised)",
            not_restored.join(",")
        ),
        Progress::Kept {
            reason,
            changed: true,
        } => format!("left alone: {reason}"),
        Progress::Kept {
            reason,
            changed: false,
        } => reason.clone(),
        Progress::UndoIntended => "not restored yet".to_owned(),
        Progress::UndoFailed { error } => format!("restoring failed: {error}"),
    }
}

/// One row per device of the plan: hostname, node ID, and the cell `what` makes of it.
fn device_rows(state: &act::State, what: impl Fn(&Progress) -> String) -> Vec<Vec<String>> {
    state
        .plan
        .devices
        .iter()
        .zip(&state.progress)
        .map(|(d, p)| vec![d.hostname.clone(), d.node_id.clone(), what(p)])
        .collect()
}

/// A dry run's plan: what `action` would do to the `findings` devices at or above `min`,
/// what it cannot undo, and each device it may not quarantine.
fn print_plan(report: &contain::Report, action: Action, min: Confidence, findings: usize) {
    println!(
        "Plan: {} {findings} device(s) at or above {}. {}.",
        action.as_str(),
        min.as_str(),
        capitalized(action.permanence())
    );
    let planned = report
        .analysis
        .candidates
        .iter()
        .filter(|c| c.confidence >= min && !c.device.is_external)
        .map(|c| &c.device);
    print_caveats(action, planned);
    println!(
        "Dry run: nothing was changed. Run again with --yes to {} them.",
        action.as_str()
    );
}

/// One line per device that `action` may not quarantine ([`Action::caveat`]).
fn print_caveats<'a>(action: Action, devices: impl Iterator<Item = &'a tsrotate::api::Device>) {
    for device in devices {
        if let Some(caveat) = action.caveat(device) {
            println!(
                "  {} ({}): {caveat}.",
                tsrotate::text::escape(&device.hostname),
                tsrotate::text::escape(&device.node_id)
            );
        }
    }
}

fn print_progress(state: &act::State) {
    let action = state.plan.action;
    let id = &state.plan.containment_id;
    print!(
        "{}",
        crate::table::render(
            &["DEVICE", "NODE ID", "OUTCOME"],
            &device_rows(state, |p| outcome(action, p))
        )
    );
    print_caveats(action, state.plan.devices.iter());
    let changed = changed_since(state);
    match state.end {
        Some(act::End::Finished) if action.undoable() => println!(
            "Containment {id} finished. `tsrotate rollback {id}` restores the devices as they were."
        ),
        Some(act::End::Finished) => println!(
            "Containment {id} finished. {}.",
            capitalized(action.permanence())
        ),
        Some(act::End::RolledBack) if changed > 0 => println!(
            "Containment {id} is rolled back, except {changed} device(s) that changed since it: they were left alone (see above)."
        ),
        Some(act::End::RolledBack) => println!("Containment {id} is rolled back."),
        Some(act::End::Abandoned) => println!(
            "Containment {id} was abandoned: tsrotate acts on its devices no more; check them by hand."
        ),
        None if state.undoing => println!(
            "Containment {id} is not fully rolled back: run `tsrotate rollback {id}` again."
        ),
        None => println!("Containment {id} is not finished: `tsrotate resume {id}` finishes it."),
    }
}

/// How many devices rollback left alone because they changed since the containment.
fn changed_since(state: &act::State) -> usize {
    state
        .progress
        .iter()
        .filter(|p| matches!(p, Progress::Kept { changed: true, .. }))
        .count()
}

/// `rotate --contain`: `tsrotate contain OLD_KEY_ID` with the same options after the
/// rotation; the rotation's `--yes` also carries an `--action` out.
pub(crate) async fn after_rotation(
    global: &GlobalArgs,
    old_key: &tsrotate::key::KeyId,
    options: &Resolved,
    yes: bool,
) -> anyhow::Result<ExitStatus> {
    println!();
    println!("Devices key {old_key} may have joined:");
    // Its own token (in `contain_key`): the rotation's asked only for the scopes a rotation
    // needs.
    contain_key(global, old_key, options, yes).await
}

/// `tsrotate resume` of a containment: acts on the devices not acted on yet, never twice.
pub(crate) async fn resume(global: &GlobalArgs, id: &str) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    let mut running = Containment::reopen(&dir, id, &context::os_user()).map_err(act_error)?;
    let client = client_for(global, running.state())?;
    let outcome = running.carry_out(&client).await;
    finish(global, running.state(), outcome)
}

/// `tsrotate rollback` of a containment: restores authorization or routes from the snapshot,
/// where the API shows the device still as the action left it. Exit 0 when every device is
/// restored (or had nothing to restore), 1 when some changed since and were left alone, 2
/// for an action the API cannot undo (expire, delete: nothing is changed, and each device is
/// named with what it needs instead).
pub(crate) async fn rollback(
    global: &GlobalArgs,
    id: &str,
    yes: bool,
) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    let mut running = Containment::reopen(&dir, id, &context::os_user()).map_err(act_error)?;
    let action = running.state().plan.action;
    if !action.undoable() {
        cannot_undo(global, running.state())?;
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

/// Per device of a containment whose action the API cannot undo, what it would take (the
/// refusal itself follows on stderr).
fn cannot_undo(global: &GlobalArgs, state: &act::State) -> anyhow::Result<()> {
    if global.format == Format::Json {
        return write_json(&JsonContainment::of(state));
    }
    let action = state.plan.action;
    let what = |d: &tsrotate::api::Device, p: &Progress| -> String {
        match (p, action) {
            (Progress::Done { .. }, Action::Expire) if d.key_expiry_disabled => {
                "not undone: its node key was expired (the API cannot renew it), though its key expiry is disabled and whether the expiry took effect is not documented: if it is cut off, it must log in again (`tailscale up`; a tagged device with a new auth key)".to_owned()
            }
            (Progress::Done { .. }, Action::Expire) => {
                "not undone: its node key stays expired (the API cannot renew it); its owner must log in again (`tailscale up`)".to_owned()
            }
            (Progress::Done { .. }, _) => {
                "not undone: it stays deleted; it must join the tailnet again with a new auth key"
                    .to_owned()
            }
            (Progress::Intended | Progress::Failed { .. }, _) => format!(
                "not undone: `{}` may have happened (the call failed or was interrupted); `tsrotate resume {}` finds out",
                action.as_str(),
                state.plan.containment_id
            ),
            (Progress::Gone, _) => "no longer in the tailnet".to_owned(),
            _ => "nothing to undo: this containment did not change it".to_owned(),
        }
    };
    let rows: Vec<Vec<String>> = state
        .plan
        .devices
        .iter()
        .zip(&state.progress)
        .map(|(d, p)| vec![d.hostname.clone(), d.node_id.clone(), what(d, p)])
        .collect();
    print!(
        "{}",
        crate::table::render(&["DEVICE", "NODE ID", "ROLLBACK"], &rows)
    );
    Ok(())
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
    Ok(if state.is_finished() && changed_since(state) == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Incomplete
    })
}

fn print_human(report: &contain::Report, min: Confidence, findings: usize, acting: bool) {
    let key = &report.key;
    // The owner and tags come from the API (or a journal): escaped like every outside value.
    let owner = key.owner.as_deref().map_or_else(
        || "tailnet-owned".to_owned(),
        |o| format!("owned by user {}", tsrotate::text::escape(o)),
    );
    let tags = if key.tags.is_empty() {
        "untagged".to_owned()
    } else {
        tsrotate::text::escape(&key.tags.join(",")).into_owned()
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
    if report.key_live {
        println!(
            "The key is still live: it can join more devices until it is revoked. Revoke it with `{}` (or replace it where it is used with `tsrotate rotate {} --in DIR`, which revokes it after).",
            revoke_command(&key.id),
            key.id
        );
    }
    println!(
        "Registration window: {} to {}.",
        rfc3339(report.window.start),
        rfc3339(report.window.end)
    );
    if report.analysis.candidates.is_empty() {
        println!("No device looks like it joined with this key.");
    } else {
        // One row per candidate, then one per further piece of evidence under the first.
        // Hostnames, os and client versions are the attacker's to choose: the table escapes.
        let mut rows = Vec::new();
        for c in &report.analysis.candidates {
            let mut evidence = c.evidence.iter();
            rows.push(vec![
                c.confidence.as_str().to_owned(),
                c.hostname.clone(),
                c.node_id.clone(),
                evidence.next().cloned().unwrap_or_default(),
            ]);
            rows.extend(
                evidence.map(|e| vec![String::new(), String::new(), String::new(), e.clone()]),
            );
        }
        print!(
            "{}",
            crate::table::render(&["CONFIDENCE", "DEVICE", "NODE ID", "EVIDENCE"], &rows)
        );
    }
    let (by_id, by_hostname) = (
        report.analysis.expected_by_id,
        report.analysis.expected_by_hostname,
    );
    if by_id + by_hostname > 0 {
        println!(
            "{} device(s) left out because --expected lists them: {by_id} by node ID, {by_hostname} by hostname alone{}.",
            by_id + by_hostname,
            if by_hostname > 0 {
                " (nothing else spoke against them, but a device chooses its own hostname: list node IDs to be sure)"
            } else {
                ""
            }
        );
    }
    if findings > 0 && !acting {
        println!(
            "{findings} device(s) at or above {}: nothing was changed. Quarantine them with --action expire|deauthorize|drop-routes|delete (a dry run until --yes).",
            min.as_str()
        );
    }
}

/// A device of a settled containment: what the containment did to it, and what the API says
/// of it now (`now` absent: no longer in the tailnet).
#[derive(Serialize)]
struct SettledDevice<'a> {
    node_id: &'a str,
    hostname: &'a str,
    #[serde(flatten)]
    progress: &'a Progress,
    now: Option<DeviceNow>,
}

/// What the API says of a device when its containment is settled: what a person checks.
#[derive(Serialize)]
struct DeviceNow {
    authorized: bool,
    enabled_routes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires: Option<OffsetDateTime>,
    key_expiry_disabled: bool,
}

impl DeviceNow {
    fn words(&self) -> String {
        let routes = if self.enabled_routes.is_empty() {
            "no routes enabled".to_owned()
        } else {
            format!("routes {} enabled", self.enabled_routes.join(","))
        };
        let expiry = match (self.expires, self.key_expiry_disabled) {
            (_, true) => "key expiry disabled".to_owned(),
            (Some(at), false) => format!("key expires {}", rfc3339(at)),
            (None, false) => "key expiry unknown".to_owned(),
        };
        format!(
            "{}, {routes}, {expiry}",
            if self.authorized {
                "authorized"
            } else {
                "NOT authorized"
            }
        )
    }
}

/// `tsrotate abandon` of a containment.
#[derive(Serialize)]
struct Settled<'a> {
    containment_id: &'a str,
    outcome: &'static str,
    key_id: &'a tsrotate::key::KeyId,
    action: Action,
    /// Whether its journal's seal verified (if not, the devices are the ones it names).
    sealed: bool,
    devices: Vec<SettledDevice<'a>>,
    next: String,
}

/// `tsrotate abandon` of a containment: records that a person takes over, so that tsrotate
/// acts on its devices no more and a new containment of the key may begin; changes no
/// device. Each device is named with what the containment did to it and what the API says
/// of it now, so that the person knows what to check. One whose journal's seal does not
/// verify is settled without `--force` (nothing else can be done from it); one that
/// `resume` or `rollback` can still carry on needs `--force`; one that ended is refused
/// (exit 2).
pub(crate) async fn abandon(
    global: &GlobalArgs,
    dir: &tsrotate::rotate::session::StateDir,
    id: &str,
    yes: bool,
    force: bool,
) -> anyhow::Result<ExitStatus> {
    let mut settling = Containment::settle(dir, id, &context::os_user()).map_err(act_error)?;
    settling.abandonable(force).map_err(act_error)?;
    let state = settling.state().clone();
    let human = global.format == Format::Human;
    if !settling.sealed() && human && !global.quiet {
        eprintln!(
            "note: the journal of containment {id} is not sealed with this journal key: the devices below are the ones it names, as the API describes them now"
        );
    }
    // What each device is now is what the person needs to settle it by hand: without the
    // API's answer about every one of them, nothing is recorded.
    let now = devices_now(&client_for(global, &state)?, &state).await?;
    let touched: Vec<&str> = state
        .plan
        .devices
        .iter()
        .zip(&state.progress)
        .filter(|(_, p)| p.may_be_changed())
        .map(|(d, _)| d.node_id.as_str())
        .collect();
    if !context::confirm(
        &format!(
            "Abandon containment {id}? tsrotate will not act on its {} device(s) again ({} it may have changed: {})",
            state.plan.devices.len(),
            touched.len(),
            if touched.is_empty() {
                "none".to_owned()
            } else {
                tsrotate::text::escape(&touched.join(", ")).into_owned()
            }
        ),
        yes,
    )? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    settling.abandon(force).map_err(|e| match e {
        act::Error::Journal(e) => anyhow::Error::from(e).context("nothing was recorded"),
        e => act_error(e),
    })?;
    let action = state.plan.action;
    let next = settled_next(&state, !touched.is_empty());
    let report = Settled {
        containment_id: id,
        outcome: "abandoned",
        key_id: &state.plan.key_id,
        action,
        sealed: settling.sealed(),
        devices: state
            .plan
            .devices
            .iter()
            .zip(&state.progress)
            .zip(now)
            .map(|((d, p), now)| SettledDevice {
                node_id: &d.node_id,
                hostname: &d.hostname,
                progress: p,
                now,
            })
            .collect(),
        next,
    };
    if human {
        print_settled(&report);
    } else {
        write_json(&report)?;
    }
    Ok(ExitStatus::Success)
}

/// What the API says now of each device of `state` (`None`: no longer in the tailnet).
async fn devices_now(
    client: &tsrotate::api::Client,
    state: &act::State,
) -> anyhow::Result<Vec<Option<DeviceNow>>> {
    let mut now = Vec::with_capacity(state.plan.devices.len());
    for device in &state.plan.devices {
        now.push(match client.get_device(&device.node_id).await {
            Ok(d) => Some(DeviceNow {
                authorized: d.authorized,
                enabled_routes: d.enabled_routes,
                expires: d.expires,
                key_expiry_disabled: d.key_expiry_disabled,
            }),
            Err(e) if e.is_not_found() => None,
            Err(e) if e.status() == Some(403) => {
                return Err(UserError::new(format!(
                    "looking up device {} was refused (nothing was recorded): {e}",
                    tsrotate::text::escape(&device.node_id)
                ))
                .hint("give the credential the `devices:core:read` scope")
                .into());
            }
            Err(e) => {
                return Err(api_error(
                    &format!(
                        "looking up device {} (nothing was recorded)",
                        tsrotate::text::escape(&device.node_id)
                    ),
                    e,
                ));
            }
        });
    }
    Ok(now)
}

/// What a person who took a containment over does next.
fn settled_next(state: &act::State, touched: bool) -> String {
    let action = state.plan.action;
    if !touched {
        return "no device was changed by it as far as its journal tells".to_owned();
    }
    format!(
        "check by hand each device it may have changed ({}): {}; `tsrotate contain {}` lists the key's devices anew",
        action.as_str(),
        match action {
            Action::Expire => "an expired one is back once its owner logs in again",
            Action::Deauthorize => "authorize again in the admin console the ones that should be",
            Action::DropRoutes => "approve again in the admin console the routes that should be",
            Action::Delete => "a deleted one must join again with a new auth key",
        },
        state.plan.key_id
    )
}

fn print_settled(report: &Settled<'_>) {
    let action = report.action;
    println!(
        "Abandoned containment {} ({} of the devices key {} may have joined): tsrotate acts on them no more.",
        report.containment_id,
        action.as_str(),
        report.key_id
    );
    let rows: Vec<Vec<String>> = report
        .devices
        .iter()
        .map(|d| {
            vec![
                d.hostname.to_owned(),
                d.node_id.to_owned(),
                outcome(action, d.progress),
                d.now
                    .as_ref()
                    .map_or("no longer in the tailnet".to_owned(), DeviceNow::words),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(&["DEVICE", "NODE ID", "BY THIS CONTAINMENT", "NOW"], &rows)
    );
    println!("{}", tsrotate::text::escape(&report.next));
}
