//! `tsrotate abandon`: give up a rotation that can be neither finished nor undone.
//!
//! An unfinished rotation blocks every other rotation of its keys, and that is right until a
//! person decides: a rotation whose old key is already revoked (`--revoke-first`) cannot be
//! rolled back, and one with a place that can no longer be written cannot be resumed. This
//! records that a person took over, shows what the keys are now, and changes nothing else:
//! revoking what nothing uses is the person's call (`tsrotate revoke`), made with the list
//! printed here.

use serde::Serialize;
use tsrotate::api;
use tsrotate::journal::{self, Event};
use tsrotate::key::KeyId;
use tsrotate::rotate::Recorder;
use tsrotate::rotate::plan::{self, KeyStatus};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation::{self, Recording};
use crate::settings::ApiSettings;

/// Arguments of `tsrotate abandon`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The unfinished rotation to give up.
    #[arg(value_name = "ROTATION_ID")]
    rotation_id: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// A key of the rotation and what the API says of it now.
#[derive(Serialize)]
struct KeyNow {
    key_id: KeyId,
    /// `live`, `revoked`, ..., or `unknown` when the API could not say.
    status: String,
}

#[derive(Serialize)]
struct Report {
    rotation_id: String,
    outcome: &'static str,
    old_key: KeyNow,
    minted: Vec<KeyNow>,
    /// Each place and the key it held when the rotation last wrote or read it.
    places: Vec<(String, Option<KeyId>)>,
    next: String,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let state_dir = context::state_dir(global)?;
    let (_lock, journal, state) = rotation::open_locked(&state_dir, &args.rotation_id, |e| {
        UserError::new(e.to_string()).into()
    })?;
    if state.is_finished() {
        return Err(UserError::new(format!(
            "rotation {} already ended; there is nothing to abandon",
            args.rotation_id
        ))
        .into());
    }
    let settings = ApiSettings::configured(global, &["auth_keys:read", "oauth_keys:read"])?;
    let settings = ApiSettings {
        tailnet: state.started.tailnet.clone(),
        ..settings
    };
    // Best effort: without the API the person still learns which keys to look at.
    let client = settings.client()?;
    let old_key = key_now(client.as_ref(), state.old_key_id()).await;
    let mut minted = Vec::new();
    for id in &state.minted {
        minted.push(key_now(client.as_ref(), id).await);
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
    let mut recording = Recording::new(journal, &state_dir, &context::os_user(), &args.rotation_id);
    recording
        .record(Event::Abandoned {
            by: context::os_user(),
        })
        .map_err(|e: journal::Error| anyhow::Error::from(e).context("nothing was recorded"))?;
    let report = Report {
        rotation_id: args.rotation_id.clone(),
        outcome: "abandoned",
        places: state
            .sinks
            .iter()
            .zip(&state.holds)
            .map(|(sink, holds)| (sink.describe(), holds.clone()))
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

async fn key_now(client: Option<&api::Client>, id: &KeyId) -> KeyNow {
    let status = match client {
        Some(client) => match plan::lookup(client, id).await {
            Ok((status, _)) => status.to_string().replace(' ', "-"),
            Err(e) => {
                tracing::warn!("looking up key {id}: {e}");
                "unknown".to_owned()
            }
        },
        None => "unknown".to_owned(),
    };
    KeyNow {
        key_id: id.clone(),
        status,
    }
}

fn print_human(report: &Report) {
    println!("Abandoned rotation {}.", report.rotation_id);
    println!(
        "  old key {}: {}",
        report.old_key.key_id, report.old_key.status
    );
    for key in &report.minted {
        println!("  minted  {}: {}", key.key_id, key.status);
    }
    for (place, holds) in &report.places {
        let holds = holds.as_ref().map_or("?".to_owned(), ToString::to_string);
        println!("  {place} held {holds}");
    }
    println!("{}", report.next);
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
