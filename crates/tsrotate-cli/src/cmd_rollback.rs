//! `tsrotate rollback`: undo a rotation that has not revoked the old key yet.
//!
//! tsrotate never stores a secret, so the old value has to come from somewhere: a place the
//! rotation did not overwrite yet (a failed sink usually still holds it), or the person
//! (`--old-key-file`, standard input, or a prompt without echo).

use std::path::PathBuf;

use tsrotate::key::{Credential, Secret};
use tsrotate::rotate::session::{Authority, Purpose};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::rotate::{Liveness, RollbackRefused, State, World as _};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation;
use crate::settings::{self, ApiSettings, Need};

/// Arguments of `tsrotate rollback`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The rotation (or containment) to undo.
    #[arg(value_name = "ROTATION_ID")]
    rotation_id: String,
    /// Where to read the old key if no file still holds it (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    old_key_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let dir = context::trusted_state_dir(global)?;
    if tsrotate::contain::act::exists(dir.path(), &args.rotation_id) {
        return crate::cmd_contain::rollback(global, &args.rotation_id, args.yes).await;
    }
    let config = settings::load_config(global, Need::ApiOnly)?;
    // Undoing writes the places back (their `after` runs): only those the configuration
    // still names.
    let authority = Authority {
        config: config.as_deref(),
        verify_cmd: None,
        purpose: Purpose::Undo,
    };
    let mut session = rotation::reopen(&dir, &args.rotation_id, &authority)?;
    let state = session.state().clone();
    // Refuse before asking anything, and find the API before asking for the old key.
    state
        .next_rollback()
        .map_err(|e| UserError::new(e.to_string()))?;
    let settings = ApiSettings::resolve(&["auth_keys"], config.as_ref())?;
    let settings = ApiSettings {
        tailnet: state.started.tailnet.clone(),
        ..settings
    };
    let client = settings.require_client()?;
    let mut world = ApiWorld::new(client, Vec::new()).with_configured(
        crate::settings::sink_logins()?,
        std::collections::HashMap::new(),
    );
    // Ask the API before asking for the old key: a key that is not confirmed live is never
    // put back (the executor asks again, and journals a death it hears of).
    refuse_unless_live(&state, &mut world).await?;
    let old = old_value(&state, &world, args).await?;
    if !context::confirm(
        &format!(
            "Put key {} back everywhere and revoke the keys this rotation minted?",
            state.old_key_id()
        ),
        args.yes,
    )? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    let human = global.format == Format::Human;
    let outcome =
        rotation::execute(&mut world, &mut session, human && !global.quiet, Some(&old)).await?;
    crate::cmd_rotate::report(global, None, &outcome)?;
    Ok(outcome.exit_status())
}

/// Refuse a rollback unless the API says the old key works now.
async fn refuse_unless_live(state: &State, world: &mut ApiWorld) -> anyhow::Result<()> {
    if state.started.template.mint_retires_old() {
        return Ok(());
    }
    let id = state.old_key_id();
    let refused = match world.liveness(id).await {
        Ok(Liveness::Live) => return Ok(()),
        Ok(Liveness::Dead) => RollbackRefused::OldKeyRevoked(id.clone()),
        Ok(Liveness::NotFound) if state.old_seen_by_api() => {
            RollbackRefused::OldKeyRevoked(id.clone())
        }
        Ok(Liveness::NotFound) => RollbackRefused::OldKeyUnconfirmed(id.clone()),
        Err(e) => {
            return Err(UserError::new(format!(
                "{}",
                RollbackRefused::OldKeyUnconfirmed(id.clone())
            ))
            .hint(format!("the API answered: {e}"))
            .into());
        }
    };
    Err(UserError::new(refused.to_string()).into())
}

/// The old key's value: from a place that still holds it, else from the person. Checked
/// against the key ID and, when the journal has it, the fingerprint.
async fn old_value(state: &State, world: &ApiWorld, args: &Args) -> anyhow::Result<Secret> {
    let id = state.old_key_id();
    let expected = state.started.old.fingerprint;
    let matches = |s: &Secret| expected.is_none_or(|f| s.fingerprint() == f);
    // A place that was not overwritten yet, read the way the rotation reads it (a file by
    // the path its plan resolved, following no link).
    for (index, sink) in state.sinks.iter().enumerate() {
        let found = world.value_held(index, sink, id).await.ok().flatten();
        if let Some(value) = found.filter(matches) {
            return Ok(value);
        }
    }
    let value = match &args.old_key_file {
        Some(file) => context::read_secret_file(file, "old key")?,
        None if context::interactive() => context::read_secret_stdin(&format!("old key {id}"))?,
        None => {
            return Err(UserError::new(format!(
                "no place holds key {id} any more, and tsrotate does not store secrets"
            ))
            .hint("give the old key with --old-key-file FILE (or `-` for standard input)")
            .into());
        }
    };
    let credential = Credential::parse(value.expose_secret())
        .map_err(|e| UserError::new(format!("the old key given: {e}")))?;
    if credential.key_id() != id || !matches(credential.secret()) {
        return Err(
            UserError::new(format!("the key given is not key {id} of this rotation")).into(),
        );
    }
    Ok(credential.secret().clone())
}
