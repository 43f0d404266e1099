//! `tsrotate resume`: finish unfinished rotations from their journals.

use tsrotate::journal::{self, Journal};
use tsrotate::rotate::State;
use tsrotate::rotate::session::{Authority, Purpose, StateDir};
use tsrotate::rotate::world::ApiWorld;

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, Stopped, UserError};
use crate::rotation::{self, Outcome};
use crate::settings::{self, ApiSettings, Need};

/// Arguments of `tsrotate resume`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The rotation (or containment) to finish; default: every unfinished rotation.
    #[arg(value_name = "ROTATION_ID")]
    rotation_id: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The `--verify-cmd` the rotation was started with, given again: a journal keeps only
    /// its digest, and runs nothing that this command line or the configuration does not say.
    #[arg(long, value_name = "CMD")]
    verify_cmd: Option<String>,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    let state_dir = dir.path().to_owned();
    if let Some(id) = &args.rotation_id
        && tsrotate::contain::act::exists(&state_dir, id)
    {
        return crate::cmd_contain::resume(global, id).await;
    }
    let config = settings::load_config(global, Need::ApiOnly)?;
    let settings = ApiSettings::resolve(&["auth_keys"], config.as_ref())?;
    let authority = Authority {
        config: config.as_deref(),
        verify_cmd: args.verify_cmd.as_deref(),
        purpose: Purpose::Finish,
    };
    let ids = if let Some(id) = &args.rotation_id {
        vec![id.clone()]
    } else {
        let mut unfinished = Vec::new();
        for id in journal::list(&state_dir)? {
            let path = Journal::path_of(&state_dir, &id);
            let records = match journal::read_any(&path, dir.key()) {
                Ok((records, journal::Seal::Intact)) => records,
                // Never acted on; said when it may record an unfinished rotation.
                Ok((records, journal::Seal::Broken { line, why })) => {
                    if State::replay(&records).is_some_and(|s| !s.is_finished()) {
                        let error = journal::Error::Unsealed { path, line, why };
                        eprintln!(
                            "warning: {}; skipped\nhint: {}",
                            tsrotate::text::escape(&error.to_string()),
                            tsrotate::text::escape(&tsrotate::rotate::session::unsealed_hint(&id))
                        );
                    }
                    continue;
                }
                // Reported, not fatal: the other rotations still get finished.
                Err(e) => {
                    eprintln!(
                        "warning: {}; skipped",
                        tsrotate::text::escape(&e.to_string())
                    );
                    continue;
                }
            };
            if State::replay(&records).is_some_and(|s| !s.is_finished()) {
                unfinished.push(id);
            }
        }
        unfinished
    };
    if args.rotation_id.is_none() {
        // Containments are resumed by ID: they change devices, so each is named on purpose.
        match tsrotate::contain::act::unfinished(&dir) {
            Ok(containments) => {
                for c in containments {
                    eprintln!(
                        "note: containment {id} of key {key} is not finished: `tsrotate resume {id}` finishes it, `tsrotate rollback {id}` undoes it",
                        id = c.plan.containment_id,
                        key = c.plan.key_id
                    );
                }
            }
            Err(e) => eprintln!(
                "warning: {}; skipped",
                tsrotate::text::escape(&e.to_string())
            ),
        }
    }
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
    let named = args.rotation_id.is_some();
    let (outcomes, stopped) = resume_each(global, &settings, &dir, &ids, &authority, named).await?;
    if human {
        for o in &outcomes {
            o.write_human(&mut std::io::stdout().lock())?;
        }
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &outcomes)?;
        println!();
    }
    Ok(
        if stopped == 0
            && outcomes
                .iter()
                .all(|o| o.exit_status() == ExitStatus::Success)
        {
            ExitStatus::Success
        } else {
            ExitStatus::Incomplete
        },
    )
}

/// Resume `ids` in order; returns their outcomes and how many stopped before acting. When
/// resuming every rotation (not one `named`), one that stops (places found since, a journal
/// older than what the API says) is reported and must not keep the others from finishing.
async fn resume_each(
    global: &GlobalArgs,
    settings: &ApiSettings,
    dir: &StateDir,
    ids: &[String],
    authority: &Authority<'_>,
    named: bool,
) -> anyhow::Result<(Vec<Outcome>, usize)> {
    let mut outcomes = Vec::new();
    let mut stopped = 0;
    for id in ids {
        match resume_one(global, settings, dir, id, authority).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) if !named && e.downcast_ref::<Stopped>().is_some() => {
                report_stopped(&e);
                stopped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((outcomes, stopped))
}

async fn resume_one(
    global: &GlobalArgs,
    settings: &ApiSettings,
    dir: &StateDir,
    id: &str,
    authority: &Authority<'_>,
) -> anyhow::Result<Outcome> {
    let mut session = rotation::reopen(dir, id, authority)?;
    // The rotation acts on the tailnet it started on, whatever the environment says now.
    let settings = ApiSettings {
        tailnet: session.state().started.tailnet.clone(),
        ..settings.clone()
    };
    let client = settings.require_client()?;
    let human = global.format == Format::Human;
    if human && !global.quiet {
        eprintln!(
            "Resuming rotation {id} of key {}",
            session.state().old_key_id()
        );
    }
    // Look again where the plan looked: places found since stop the resume.
    if !session.state().is_finished() {
        let found = tsrotate::rotate::plan::found_since(session.state())
            .map_err(|e| UserError::new(e.to_string()))?;
        for root in &found.redirected_roots {
            eprintln!(
                "warning: `{}` leads elsewhere than when the rotation began (redirected since the rotation began); not searched again",
                tsrotate::text::path(root)
            );
        }
        if !found.unplanned.is_empty() {
            let listed: Vec<String> = found
                .unplanned
                .iter()
                .map(|p| format!("  {}", tsrotate::text::escape(p)))
                .collect();
            return Err(Stopped::new(format!(
                "rotation {id} stopped: since it began, the folders it searched gained places it did not plan for; nothing more was done and the old key is still live:\n{}",
                listed.join("\n")
            ))
            .hint(format!(
                "check who made them. If they are yours, undo with `tsrotate rollback {id}` and rotate again: the new plan lists them. If not, remove the key from them and resume"
            ))
            .into());
        }
    }
    let mut world = ApiWorld::new(client, Vec::new())
        .with_configured(
            crate::settings::sink_logins()?,
            std::collections::HashMap::new(),
        )
        .with_verify_cmd(authority.verify_cmd.map(str::to_owned))
        .redacting_old_values(session.state().old_key_id(), &session.state().sinks);
    let narrate = human && !global.quiet;
    rotation::execute(&mut world, &mut session, narrate, None).await
}

/// Say why one of several rotations stopped, as a failed command would (one line each).
fn report_stopped(error: &anyhow::Error) {
    eprintln!(
        "error: {}",
        tsrotate::text::escape(&tsrotate::key::redact_in(&crate::exit::chain(error)))
    );
    if let Some(hint) = error
        .downcast_ref::<Stopped>()
        .and_then(|s| s.hint.as_deref())
    {
        eprintln!("hint: {}", tsrotate::text::escape(hint));
    }
}
