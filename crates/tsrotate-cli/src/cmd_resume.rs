//! `tsrotate resume`: finish unfinished rotations from their journals.

use std::collections::BTreeSet;

use tsrotate::journal::{self, Event, Journal, SinkPlan};
use tsrotate::rotate::State;
use tsrotate::rotate::world::ApiWorld;
use tsrotate::sink::file;

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation::{self, Outcome, Recording};
use crate::settings::ApiSettings;

/// Arguments of `tsrotate resume`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The rotation to finish; default: every unfinished one.
    #[arg(value_name = "ROTATION_ID")]
    rotation_id: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let state_dir = context::state_dir(global)?;
    let settings = ApiSettings::configured(global, &["auth_keys"])?;
    let ids = if let Some(id) = &args.rotation_id {
        vec![id.clone()]
    } else {
        let mut unfinished = Vec::new();
        for id in journal::list(&state_dir)? {
            let records = match journal::read(&Journal::path_of(&state_dir, &id)) {
                Ok(records) => records,
                // Reported, not fatal: the other rotations still get finished.
                Err(e) => {
                    eprintln!("warning: {e}; skipped");
                    continue;
                }
            };
            if State::replay(&records).is_some_and(|s| !s.is_finished()) {
                unfinished.push(id);
            }
        }
        unfinished
    };
    let human = global.format == Format::Human;
    if ids.is_empty() {
        if human {
            println!("No unfinished rotations.");
        } else {
            println!("[]");
        }
        return Ok(ExitStatus::Success);
    }
    if !context::confirm(&format!("Resume {} rotation(s)?", ids.len()), args.yes)? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    let mut outcomes = Vec::new();
    for id in ids {
        outcomes.push(resume_one(global, &settings, &state_dir, &id).await?);
    }
    if human {
        for o in &outcomes {
            o.write_human(&mut std::io::stdout().lock())?;
        }
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &outcomes)?;
        println!();
    }
    Ok(
        if outcomes
            .iter()
            .all(|o| o.exit_status() == ExitStatus::Success)
        {
            ExitStatus::Success
        } else {
            ExitStatus::Incomplete
        },
    )
}

async fn resume_one(
    global: &GlobalArgs,
    settings: &ApiSettings,
    state_dir: &std::path::Path,
    id: &str,
) -> anyhow::Result<Outcome> {
    let (_lock, journal, state) = rotation::open_locked(state_dir, id, |e| match e {
        journal::Error::UnknownRotation(_) => UserError::new(e.to_string())
            .hint("list rotations with `ls $TSROTATE_STATE_DIR/rotations`")
            .into(),
        e => anyhow::Error::from(e),
    })?;
    let mut recording = Recording::new(journal, state_dir, &context::os_user(), id);
    // The rotation acts on the tailnet it started on, whatever the environment says now.
    let settings = ApiSettings {
        tailnet: state.started.tailnet.clone(),
        ..settings.clone()
    };
    let client = settings.require_client()?;
    let human = global.format == Format::Human;
    if human && !global.quiet {
        eprintln!("Resuming rotation {id} of key {}", state.old_key_id());
    }
    // Look again where the plan looked: a file may have gained a copy meanwhile.
    let mut state = state;
    if !state.is_finished() {
        let known: BTreeSet<_> = state
            .sinks
            .iter()
            .filter_map(|s| match s {
                SinkPlan::File { path, .. } => Some(path.clone()),
                SinkPlan::Configured { .. } => None,
            })
            .collect();
        let roots: Vec<_> = state
            .started
            .roots
            .iter()
            .filter(|r| r.exists())
            .cloned()
            .collect();
        if !roots.is_empty() {
            let found = file::locate(&roots, &state.known_ids())
                .map_err(|e| UserError::new(e.to_string()))?;
            for m in found
                .matches
                .into_iter()
                .filter(|m| !known.contains(&m.path))
            {
                let event = Event::SinkAdded {
                    sink: SinkPlan::File {
                        path: m.path.clone(),
                        display: m.display_path.display().to_string(),
                    },
                };
                tsrotate::rotate::Recorder::record(&mut recording, event.clone())?;
                state.apply(&event);
            }
        }
    }
    let mut world = ApiWorld::new(client, Vec::new()).with_configured(
        crate::settings::sink_credentials(),
        std::collections::HashMap::new(),
    );
    let narrate = human && !global.quiet;
    let outcome =
        rotation::execute(state, &mut world, &mut recording, narrate, state_dir, None).await?;
    Ok(outcome)
}
