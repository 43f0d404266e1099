//! `tsrotate revoke`: revoke a key and confirm it is dead, without replacing it.

use serde::Serialize;
use tsrotate::audit::AuditLog;
use tsrotate::journal::Event;
use tsrotate::key::KeyId;
use tsrotate::rotate::plan::{self, KeyStatus};

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::api_error;
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::settings::ApiSettings;

/// Arguments of `tsrotate revoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key to revoke: the credential, its key ID, or `-` to read it from standard input.
    #[arg(value_name = "KEY | KEY_ID | -")]
    key: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Serialize)]
struct Report {
    key_id: KeyId,
    status_before: KeyStatus,
    status_after: KeyStatus,
    revoked: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    let id = key.key_id().clone();
    // The state directory is checked before anything changes: an error after the revoke
    // would claim (exit 2) that nothing was changed (red-team finding).
    let state_dir = context::state_dir(global)?;
    let mut audit_log = AuditLog::open(&state_dir)
        .inspect_err(|e| {
            tracing::warn!(
                "cannot open the audit log `{}`: {e}; the revoke will not be recorded there (make the state directory writable by you, or give another with --state-dir)",
                tsrotate::text::path(&AuditLog::path_in(&state_dir))
            );
        })
        .ok();
    let client =
        ApiSettings::configured(global, &["auth_keys", "oauth_keys", "api_access_tokens"])?
            .require_client()?;
    let (before, _) = plan::lookup(&client, &id)
        .await
        .map_err(|e| api_error(&format!("looking up key {id}"), e))?;
    let human = global.format == Format::Human;
    if human {
        println!("Key {id} is {before}.");
    }
    // The API answers "not found" for a key of another tailnet as for one long removed: it
    // cannot be called revoked (issue 11, item 13).
    if before == KeyStatus::NotFound {
        if human {
            println!(
                "Key {id} is not known to this tailnet's API: it could not be revoked here. If it belongs to another tailnet, it may still be live there: revoke it with that tailnet's credentials."
            );
        } else {
            print_json(&Report {
                key_id: id,
                status_before: before,
                status_after: before,
                revoked: false,
            })?;
        }
        return Ok(ExitStatus::Incomplete);
    }
    let mut revoked = false;
    if before != KeyStatus::Revoked {
        if !context::confirm(
            &format!("Revoke key {id}? Everything that uses it stops working."),
            args.yes,
        )? {
            return Err(UserError::new("cancelled; nothing was changed").into());
        }
        match client.delete_key(&id).await {
            Ok(()) => revoked = true,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(api_error(&format!("revoking key {id}"), e)),
        }
    }
    let (after, _) = plan::lookup(&client, &id)
        .await
        .map_err(|e| api_error(&format!("confirming key {id} is dead"), e))?;
    if after.is_live() {
        anyhow::bail!("the API still reports key {id} as live after deleting it");
    }
    if let Some(log) = audit_log.as_mut() {
        let event = Event::Revoked {
            key_id: id.clone(),
            already: !revoked,
        };
        if let Err(e) = log.append(&context::os_user(), None, &event) {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }
    if human {
        if revoked {
            println!("Revoked key {id}; the API confirms it is {after}.");
        } else {
            println!("Nothing to revoke: key {id} is {after}.");
        }
    } else {
        print_json(&Report {
            key_id: id,
            status_before: before,
            status_after: after,
            revoked,
        })?;
    }
    Ok(ExitStatus::Success)
}

fn print_json(report: &Report) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(std::io::stdout().lock(), report)?;
    println!();
    Ok(())
}
