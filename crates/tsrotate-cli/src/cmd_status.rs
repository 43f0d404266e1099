//! `tsrotate status`: one row per managed credential (what the library's `schedule`
//! observes), and exit 1 when something needs attention.

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
    let journals = context::trusted_state_dir(global)?.journals();
    let credentials = settings::sink_logins();
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
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &rows)?;
        println!();
    }
    Ok(if rows.iter().any(|r| r.due.needs_attention()) {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}
