//! `tsrotate abandon`: give up a rotation that can be neither finished nor undone.
//!
//! An unfinished rotation blocks every other rotation of its keys, and that is right until a
//! person decides: a rotation whose old key is already revoked (`--revoke-first`) cannot be
//! rolled back, and one with a place that can no longer be written cannot be resumed. This
//! records that a person took over, shows what the keys are now, and changes nothing else:
//! revoking what nothing uses is the person's call (`tsrotate revoke`), made with the list
//! printed here.
//!
//! A containment (an ID starting with `c`) is settled the same way
//! (`crate::cmd_contain::abandon`): its journal records that a person took over, and each
//! device is shown with what the containment did to it and what the API says of it now.

use serde::Serialize;
use tsrotate::api;
use tsrotate::journal::{self, Event, Template};
use tsrotate::key::KeyId;
use tsrotate::rotate::plan::{self, KeyStatus};
use tsrotate::rotate::session::{Authority, StateDir};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::rotate::{Recorder, World as _};

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::api_error;
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation::{self, SinkReport};
use crate::settings::ApiSettings;

/// Arguments of `tsrotate abandon`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The unfinished rotation (or containment) to give up.
    #[arg(value_name = "ROTATION_ID")]
    rotation_id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Abandon it even though `rollback` could still undo it (a containment: even though
    /// `resume` could still finish it).
    #[arg(long)]
    force: bool,
}

/// A key of the rotation and what the API says of it now.
#[derive(Serialize)]
struct KeyNow {
    key_id: KeyId,
    /// `live`, `revoked`, `expired`, `invalid`, `not-found`; `not-checked` for webhook
    /// secrets, which the keys API does not know.
    status: String,
}

#[derive(Serialize)]
struct Report {
    rotation_id: String,
    outcome: &'static str,
    /// Why it stopped, as it last failed.
    last_failure: Option<String>,
    old_key: KeyNow,
    /// Every key it minted, including any found by its description after a mint whose answer
    /// was lost.
    minted: Vec<KeyNow>,
    /// Each place and the key the rotation last knew it to hold.
    places: Vec<SinkReport>,
    next: String,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let id = check_id(&args.rotation_id)?;
    let dir = context::trusted_state_dir(global)?;
    if tsrotate::contain::act::exists(dir.path(), id) {
        return crate::cmd_contain::abandon(global, &dir, id, args.yes, args.force).await;
    }
    abandon_rotation(global, &dir, args).await
}

/// `abandon` of a rotation.
async fn abandon_rotation(
    global: &GlobalArgs,
    dir: &StateDir,
    args: &Args,
) -> anyhow::Result<ExitStatus> {
    let mut session = rotation::reopen(dir, &args.rotation_id, &Authority::SETTLE)?;
    let state = session.state().clone();
    note_unsealed(global, &session, &args.rotation_id);
    if state.is_finished() {
        return Err(UserError::new(format!(
            "rotation {} already ended; there is nothing to abandon",
            args.rotation_id
        ))
        .into());
    }
    // Which keys are live is what the person needs to settle by hand: without the API's
    // answer about every one of them, nothing is recorded.
    let settings = ApiSettings::configured(global, &["auth_keys:read", "oauth_keys:read"])?;
    let settings = ApiSettings {
        tailnet: state.started.tailnet.clone(),
        ..settings
    };
    let client = settings.require_client()?;
    let mut minted_ids = state.minted.clone();
    if state.mint_attempts > state.mints_answered && state.started.template.sweepable() {
        // A mint whose answer was lost may have made a key the journal never heard of.
        let mut world = ApiWorld::new(client.clone(), Vec::new());
        let found = world
            .find_minted(&args.rotation_id)
            .await
            .map_err(|e| anyhow::anyhow!("looking for keys it minted: {e}"))?;
        for id in found {
            if !minted_ids.contains(&id) {
                minted_ids.push(id);
            }
        }
    }
    // Webhook secrets are not in the keys API: there is nothing to ask it.
    let webhook = matches!(state.started.template, Template::WebhookSecret { .. });
    let old_key = key_now(&client, state.old_key_id(), webhook).await?;
    // Rollback can undo it only while the API says the old key is live (a revoke whose
    // answer was lost may have killed it): only then is rollback the advice.
    let old_live = webhook || old_key.status == KeyStatus::Live.to_string();
    // An unsealed journal cannot be rolled back (nothing is done from it): settling it is
    // the only way on.
    if session.sealed() && state.next_rollback().is_ok() && old_live && !args.force {
        return Err(UserError::new(format!(
            "rotation {} can still be undone: `tsrotate rollback {}` puts the old key back and revokes what it minted",
            args.rotation_id, args.rotation_id
        ))
        .hint("to give it up anyway and settle its keys by hand, add --force")
        .into());
    }
    let mut minted = Vec::new();
    for id in &minted_ids {
        minted.push(key_now(&client, id, webhook).await?);
    }
    let live: Vec<&KeyId> = std::iter::once(&old_key)
        .chain(&minted)
        .filter(|k| k.status == KeyStatus::Live.to_string())
        .map(|k| &k.key_id)
        .collect();
    if !context::confirm(
        &format!(
            "Abandon rotation {}? tsrotate will not touch its keys again ({} live: {})",
            args.rotation_id,
            live.len(),
            join(&live)
        ),
        args.yes,
    )? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    session
        .record(Event::Abandoned {
            by: context::os_user(),
        })
        .map_err(|e: journal::Error| anyhow::Error::from(e).context("nothing was recorded"))?;
    let report = Report {
        rotation_id: args.rotation_id.clone(),
        outcome: "abandoned",
        last_failure: state.last_failure.clone(),
        places: state
            .sinks
            .iter()
            .zip(&state.holds)
            .map(|(sink, holds)| SinkReport {
                place: sink.describe(),
                holds: holds.clone(),
            })
            .collect(),
        next: if live.is_empty() {
            "no key of this rotation is live".to_owned()
        } else {
            format!(
                "live: {}; revoke each one nothing uses with `tsrotate revoke KEY_ID`",
                join(&live)
            )
        },
        old_key,
        minted,
    };
    if global.format == Format::Human {
        print_human(&report);
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &report)?;
        println!();
    }
    Ok(ExitStatus::Success)
}

/// An ID names a journal in its folder and nothing else: it is never made into a path before
/// it is known to be letters, digits and dashes.
fn check_id(id: &str) -> Result<&str, UserError> {
    if !tsrotate::journal::is_id(id) {
        return Err(UserError::new(format!(
            "`{}` is not a rotation or containment ID (letters, digits and dashes)",
            tsrotate::text::escape(id)
        ))
        .hint("`tsrotate status` lists unfinished rotations and containments"));
    }
    Ok(id)
}

/// Say that what is settled comes from a journal that is not believed (its seal does not
/// verify): the keys it names are looked up, nothing else it says is used.
fn note_unsealed(global: &GlobalArgs, session: &tsrotate::rotate::session::Session, id: &str) {
    if !session.sealed() && global.format == Format::Human && !global.quiet {
        eprintln!(
            "note: the journal of rotation {id} is not sealed with this journal key: the keys below are the ones it names, as the API describes them now"
        );
    }
}

async fn key_now(client: &api::Client, id: &KeyId, webhook: bool) -> anyhow::Result<KeyNow> {
    if webhook {
        return Ok(KeyNow {
            key_id: id.clone(),
            status: "not-checked (a webhook secret: see the webhook in the admin console)".into(),
        });
    }
    let (status, _) = plan::lookup(client, id)
        .await
        .map_err(|e| api_error(&format!("looking up key {id} (nothing was recorded)"), e))?;
    Ok(KeyNow {
        key_id: id.clone(),
        status: status.to_string().replace(' ', "-"),
    })
}

fn print_human(report: &Report) {
    println!("Abandoned rotation {}.", report.rotation_id);
    if let Some(failure) = &report.last_failure {
        println!("  it stopped at: {}", tsrotate::text::escape(failure));
    }
    println!(
        "  old key {}: {}",
        report.old_key.key_id, report.old_key.status
    );
    for key in &report.minted {
        println!("  minted  {}: {}", key.key_id, key.status);
    }
    for place in &report.places {
        let holds = place.holds.as_ref().map_or(
            "what it held before (not written by it)".to_owned(),
            ToString::to_string,
        );
        println!("  {} holds {holds}", tsrotate::text::escape(&place.place));
    }
    println!("{}", tsrotate::text::escape(&report.next));
}

fn join(ids: &[&KeyId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
