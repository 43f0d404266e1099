//! `tsrotate status`: one row per managed credential (what the library's `schedule`
//! observes), then the containments of the state directory (unfinished first, with the
//! command that goes on with each), and exit 1 when something needs attention.

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::contain::act::{self, Action, Progress};
use tsrotate::journal::Seal;
use tsrotate::key::KeyId;
use tsrotate::schedule::{Due, observe_all};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::ExitStatus;
use crate::settings::{self, ApiSettings, Need};

fn bar(days_left: Option<i64>) -> String {
    let Some(days) = days_left else {
        return "          ".to_owned();
    };
    let filled = usize::try_from(days.clamp(0, 90) * 10 / 90).unwrap_or(0);
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}

fn state_word(due: &Due) -> String {
    match due {
        Due::NotDue { .. } => "ok".into(),
        Due::Expiring { .. } => "DUE (expiring)".into(),
        Due::Invalid { status } => format!("DUE ({status})"),
        Due::OutOfSync => "DUE (places out of sync)".into(),
        Due::Unfinished { rotation_id } => format!("DUE (unfinished {rotation_id})"),
        Due::Broken { problem } => format!("BROKEN: {problem}"),
    }
}

/// Arguments of `tsrotate status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// `tsrotate status`: one row per managed credential. Exit 1 when something needs attention.
pub(crate) async fn run(global: &GlobalArgs, _args: &Args) -> anyhow::Result<ExitStatus> {
    let config = settings::load_config(global, Need::Required)?.expect("required");
    let client = ApiSettings::resolve(
        &[
            "auth_keys:read",
            "oauth_keys:read",
            "api_access_tokens:read",
        ],
        Some(&config),
    )?
    .require_client()?;
    let state_dir = context::trusted_state_dir(global)?;
    let journals = state_dir.journals();
    // A containment journal that cannot be read must not hide the credentials: it is
    // reported, and counts as something to look at.
    let (surveyed, folder_unreadable) = match act::survey(&state_dir) {
        Ok(surveyed) => (surveyed, false),
        Err(e) => {
            tracing::warn!("cannot read the containment journals: {e}");
            (Vec::new(), true)
        }
    };
    let (containments, unreadable) = shown_containments(&state_dir, &surveyed);
    let unreadable = unreadable || folder_unreadable;
    let unfinished = containments.iter().filter(|c| !c.is_finished()).count();
    let credentials = settings::sink_logins()?;
    let rows = observe_all(
        &client,
        &config,
        &credentials,
        &journals,
        crate::due::DEFAULT_CONCURRENCY,
    )
    .await;
    if global.format == Format::Human {
        print!("{}", credential_table(&rows));
        if !containments.is_empty() {
            println!();
            print!("{}", containment_table(containments));
        }
    } else {
        // One element per credential as always, then one per containment journal, marked
        // `"type": "containment"`: without containments the document is what it was.
        let mut out = Vec::with_capacity(rows.len() + surveyed.len());
        for row in &rows {
            out.push(serde_json::to_value(row)?);
        }
        for containment in json_containments(&surveyed) {
            out.push(serde_json::to_value(containment)?);
        }
        serde_json::to_writer_pretty(std::io::stdout().lock(), &out)?;
        println!();
    }
    Ok(
        if rows.iter().any(|r| r.due.needs_attention()) || unfinished > 0 || unreadable {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        },
    )
}

/// The containments, unfinished first, then newest first: what each did and what to run next.
fn containment_table(mut containments: Vec<act::State>) -> String {
    containments.sort_by(|a, b| {
        a.is_finished()
            .cmp(&b.is_finished())
            .then(b.started.cmp(&a.started))
            .then(b.plan.containment_id.cmp(&a.plan.containment_id))
    });
    let rows: Vec<Vec<String>> = containments
        .iter()
        .map(|c| {
            let id = &c.plan.containment_id;
            let count = |f: fn(&Progress) -> bool| c.progress.iter().filter(|p| f(p)).count();
            let total = c.progress.len();
            let (state, next) = match c.end {
                None if c.undoing => (
                    format!(
                        "rolling back ({} of {total} restored)",
                        count(|p| matches!(p, Progress::Undone { .. }))
                    ),
                    format!("tsrotate rollback {id}"),
                ),
                None => (
                    format!(
                        "UNFINISHED ({} of {total} done)",
                        count(|p| matches!(p, Progress::Done { .. } | Progress::Gone))
                    ),
                    format!("tsrotate resume {id} (or rollback {id})"),
                ),
                Some(act::End::Finished) => ("finished".to_owned(), "-".to_owned()),
                Some(act::End::Abandoned) => ("abandoned".to_owned(), "-".to_owned()),
                Some(act::End::RolledBack) => {
                    let left = count(|p| matches!(p, Progress::Kept { changed: true, .. }));
                    if left > 0 {
                        (
                            format!("rolled back ({left} changed since, left alone)"),
                            "-".to_owned(),
                        )
                    } else {
                        ("rolled back".to_owned(), "-".to_owned())
                    }
                }
            };
            vec![
                id.clone(),
                c.plan.key_id.to_string(),
                c.plan.action.as_str().to_owned(),
                total.to_string(),
                c.started.date().to_string(),
                state,
                next,
            ]
        })
        .collect();
    crate::table::render(
        &[
            "CONTAINMENT",
            "KEY",
            "ACTION",
            "DEVICES",
            "STARTED",
            "STATE",
            "NEXT",
        ],
        &rows,
    )
}

/// A containment journal in `status --format json`.
#[derive(Serialize)]
struct JsonContainment<'a> {
    /// Always `containment` (credential rows have no `type`).
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    /// `unfinished`, `rolling-back`, `finished`, `rolled-back`, `abandoned`, or `unreadable`.
    state: &'static str,
    finished: bool,
    /// Whether its journal's seal verifies; one that does not is never acted on.
    sealed: bool,
    /// Why it cannot be read, or why its seal does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    key_id: Option<&'a KeyId>,
    action: Option<Action>,
    #[serde(with = "time::serde::rfc3339::option")]
    started: Option<OffsetDateTime>,
    devices: Vec<JsonDevice<'a>>,
    /// The command that goes on with it, while it is unfinished.
    next: Option<String>,
}

/// A device of a containment, in `status --format json`.
#[derive(Serialize)]
struct JsonDevice<'a> {
    node_id: &'a str,
    hostname: &'a str,
    /// `pending`, `intended`, `done`, `found_done`, `gone`, `failed`, `undo_intended`,
    /// `undone`, `kept` or `undo_failed`.
    state: &'static str,
    /// The action happened (now or in an interrupted run).
    done: bool,
    /// The last call (the action, or restoring it) failed.
    failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The containments for `status --format json`: unfinished (and unreadable) first, then
/// newest first.
fn json_containments(surveyed: &[act::Surveyed]) -> Vec<JsonContainment<'_>> {
    let mut out: Vec<JsonContainment<'_>> = surveyed
        .iter()
        .map(|found| match &found.found {
            Err(problem) => JsonContainment {
                kind: "containment",
                id: &found.id,
                state: "unreadable",
                finished: false,
                sealed: false,
                problem: Some(format!(
                    "{problem}; check its devices by hand, then move the journal out of the state directory"
                )),
                key_id: None,
                action: None,
                started: None,
                devices: Vec::new(),
                next: None,
            },
            Ok((state, seal)) => json_containment(&found.id, state, *seal),
        })
        .collect();
    out.sort_by(|a, b| {
        a.finished
            .cmp(&b.finished)
            .then(b.started.cmp(&a.started))
            .then(b.id.cmp(a.id))
    });
    out
}

fn json_containment<'a>(id: &'a str, state: &'a act::State, seal: Seal) -> JsonContainment<'a> {
    let sealed = seal == Seal::Intact;
    let (word, next) = match state.end {
        None if !sealed => ("unfinished", Some(format!("tsrotate abandon {id}"))),
        None if state.undoing => ("rolling-back", Some(format!("tsrotate rollback {id}"))),
        None => ("unfinished", Some(format!("tsrotate resume {id}"))),
        Some(act::End::Finished) => ("finished", None),
        Some(act::End::RolledBack) => ("rolled-back", None),
        Some(act::End::Abandoned) => ("abandoned", None),
    };
    let problem = match seal {
        Seal::Intact => None,
        Seal::Broken { line, why } => Some(format!(
            "{}; nothing is done from it",
            tsrotate::journal::Error::Unsealed {
                path: std::path::PathBuf::from(format!("containments/{id}.jsonl")),
                line,
                why,
            }
        )),
    };
    JsonContainment {
        kind: "containment",
        id,
        state: word,
        finished: state.is_finished(),
        sealed,
        problem,
        key_id: Some(&state.plan.key_id),
        action: Some(state.plan.action),
        started: Some(state.started),
        devices: state
            .plan
            .devices
            .iter()
            .zip(&state.progress)
            .map(|(d, p)| JsonDevice {
                node_id: &d.node_id,
                hostname: &d.hostname,
                state: p.as_str(),
                done: matches!(p, Progress::Done { .. }),
                failed: matches!(p, Progress::Failed { .. } | Progress::UndoFailed { .. }),
                error: match p {
                    Progress::Failed { error, .. } | Progress::UndoFailed { error } => Some(error),
                    _ => None,
                },
            })
            .collect(),
        next,
    }
}

/// The containments whose journal's seal verifies (the table), and whether some journal
/// needs a look: one whose seal does not verify and says it is unfinished, or one that cannot
/// be read (each warned about).
fn shown_containments(
    state_dir: &tsrotate::rotate::session::StateDir,
    surveyed: &[act::Surveyed],
) -> (Vec<act::State>, bool) {
    let mut unreadable = false;
    let mut containments = Vec::new();
    for found in surveyed {
        match &found.found {
            Ok((state, Seal::Intact)) => containments.push(state.clone()),
            // One whose seal does not verify is shown, never offered to resume or roll back.
            Ok((state, Seal::Broken { line, why })) if !state.is_finished() => {
                let error = tsrotate::journal::Error::Unsealed {
                    path: act::path_of(state_dir.path(), &found.id),
                    line: *line,
                    why: *why,
                };
                tracing::warn!(
                    "containment {}: {error}; nothing is done from it: {}",
                    found.id,
                    act::unsealed_hint(&found.id)
                );
                unreadable = true;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    "cannot read one of the containment journals ({}): {e}",
                    found.id
                );
                unreadable = true;
            }
        }
    }
    (containments, unreadable)
}

/// One row per credential, for people.
fn credential_table(rows: &[tsrotate::schedule::Observed]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let next = match &r.due {
                Due::NotDue { next: Some(n) } => n.date().to_string(),
                Due::NotDue { next: None } => "never".into(),
                _ => "now".into(),
            };
            vec![
                r.name.clone(),
                r.kind.slug().to_owned(),
                r.key_id
                    .as_ref()
                    .map_or("?".to_owned(), ToString::to_string),
                r.expires.map_or("-".to_owned(), |e| e.date().to_string()),
                r.days_left.map_or("-".to_owned(), |d| format!("{d}d")),
                bar(r.days_left),
                if r.in_sync { "yes" } else { "NO" }.to_owned(),
                r.last_rotation.as_ref().map_or("never".to_owned(), |l| {
                    format!("{} {}", l.started.date(), l.outcome)
                }),
                next,
                state_word(&r.due),
            ]
        })
        .collect();
    crate::table::render(
        &[
            "CREDENTIAL",
            "KIND",
            "KEY",
            "EXPIRES",
            "LEFT",
            "",
            "IN SYNC",
            "LAST ROTATION",
            "NEXT DUE",
            "STATE",
        ],
        &cells,
    )
}
