//! `tsrotate status`: one row per managed credential (what the library's `schedule`
//! observes), then the containments of the state directory (unfinished first, with the
//! command that goes on with each), and exit 1 when something needs attention.

use tsrotate::contain::act::{self, Progress};
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
    let (containments, mut unreadable) = match act::all(&state_dir) {
        Ok(all) => (all, false),
        Err(e) => {
            tracing::warn!("cannot read the containment journals: {e}");
            (Vec::new(), true)
        }
    };
    // One whose seal does not verify is shown, never offered to resume or roll back.
    for (containment, error) in act::unsealed(&state_dir).unwrap_or_default() {
        tracing::warn!(
            "containment {}: {error}; nothing is done from it: {}",
            containment.plan.containment_id,
            act::unsealed_hint(&containment.plan.containment_id)
        );
        unreadable = true;
    }
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
        print!(
            "{}",
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
        );
        if !containments.is_empty() {
            println!();
            print!("{}", containment_table(containments));
        }
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &rows)?;
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
