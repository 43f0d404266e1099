//! `rotate --due`: rotating every due managed credential, safely from several runners at
//! once. What each credential holds and whether it is due is the library's
//! `tsrotate::schedule` (shared with `status`).
//!
//! Several schedulers may fire together (two hosts sharing a state directory, an overlapping
//! cron run). Each credential is rotated under a lock on its name in the state directory, and
//! whether it is due is decided again once the lock is held: the second runner finds the
//! first one's work done and does nothing.

use std::fmt::Write as _;

use futures_util::StreamExt as _;
use serde::Serialize;
use tsrotate::api;
use tsrotate::config::{Config, Credential};
use tsrotate::journal;
use tsrotate::key::{KeyRef, Secret};
use tsrotate::rotate::places::Reading;
use tsrotate::rotate::plan::{self, Overrides, Request};
use tsrotate::rotate::session::{
    Admission, Authority, CredentialLock, Lock, Purpose, Session, StateDir,
};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::schedule::{Due, Observed, observe, observe_all};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, Stopped, UserError};
use crate::rotation::{self, Outcome};
use crate::settings::{self, ApiSettings, Need, env};

/// How many credentials `status` observes, and `rotate --due` rotates, at once by default.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;

/// What `rotate --due` did with one credential.
#[derive(Debug, Serialize)]
struct DueResult {
    credential: String,
    /// `rotated`, `resumed`, `failed`, `skipped`, `not-due`.
    action: &'static str,
    detail: Option<String>,
    outcome: Option<Outcome>,
}

/// `rotate --due`: rotate (or resume) every credential that is due, `concurrency` at a time.
pub(crate) async fn rotate_due(
    global: &GlobalArgs,
    yes: bool,
    concurrency: usize,
    notify: Option<Secret>,
) -> anyhow::Result<ExitStatus> {
    let config = settings::load_config(global, Need::Required)?.expect("required");
    let client = ApiSettings::resolve(&[], Some(&config))?.require_client()?;
    let dir = context::trusted_state_dir(global)?;
    let journals = dir.journals();
    let credentials = settings::sink_logins()?;
    let notify = match notify {
        Some(url) => Some(url),
        None => notify_url(&config)?,
    };
    let observed = observe_all(&client, &config, &credentials, &journals, concurrency).await;
    // `observe_all` keeps configuration order.
    let due: Vec<(&Credential, &Observed)> = config
        .credentials
        .iter()
        .zip(&observed)
        .filter(|(_, o)| o.due.is_due())
        .collect();
    let human = global.format == Format::Human;
    if due.is_empty() {
        if human {
            println!("Nothing is due.");
        } else {
            serde_json::to_writer_pretty(std::io::stdout().lock(), &Vec::<DueResult>::new())?;
            println!();
        }
        post_summary(notify.as_ref(), &[], &observed).await;
        return Ok(if observed.iter().any(|o| o.due.needs_attention()) {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        });
    }
    if !context::confirm(&format!("Rotate {} due credential(s)?", due.len()), yes)? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }
    let results: Vec<DueResult> = futures_util::stream::iter(due)
        .map(|(credential, earlier)| {
            rotate_one(
                &client,
                &config,
                credential,
                earlier,
                &credentials,
                &dir,
                &journals,
            )
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if human {
        let cells: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    r.credential.clone(),
                    r.action.to_string(),
                    r.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!("{}", crate::table::render(&[], &cells));
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &results)?;
        println!();
    }
    post_summary(notify.as_ref(), &results, &observed).await;
    // Broken credentials were not rotated (nothing could be), and still need a person.
    let broken = observed
        .iter()
        .any(|o| o.due.needs_attention() && !o.due.is_due());
    Ok(if broken || results.iter().any(|r| r.action == "failed") {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}

/// Rotate or resume one credential under its lock, deciding again once the lock is held.
async fn rotate_one(
    client: &api::Client,
    config: &Config,
    credential: &Credential,
    earlier: &Observed,
    credentials: &tsrotate::sink::Logins,
    dir: &StateDir,
    journals: &journal::Index,
) -> DueResult {
    let result = |action, detail: Option<String>, outcome| DueResult {
        credential: credential.name.clone(),
        action,
        detail,
        outcome,
    };
    let _lock = match CredentialLock::try_take(dir, &credential.name) {
        Ok(Some(lock)) => lock,
        Ok(None) => return result("skipped", Some("another run is rotating it".into()), None),
        Err(e) => return result("failed", Some(e.to_string()), None),
    };
    let (observed, readings) =
        observe(client, credential, credentials, journals, Some(earlier)).await;
    if !observed.due.is_due() {
        return result(
            "not-due",
            Some("rotated by another run meanwhile".into()),
            None,
        );
    }
    let outcome = match &observed.due {
        Due::Unfinished { rotation_id } => resume(client, config, credentials, dir, rotation_id)
            .await
            .map(|o| ("resumed", o)),
        _ => fresh(client, credential, credentials, dir, observed, readings)
            .await
            .map(|o| ("rotated", o)),
    };
    match outcome {
        Ok((action, outcome)) if outcome.outcome == crate::rotation::RunOutcome::Done => {
            let detail = format!(
                "{} -> {}",
                outcome.old_key_id,
                outcome
                    .new_key_id
                    .as_ref()
                    .map_or("?".to_owned(), ToString::to_string)
            );
            result(action, Some(detail), Some(outcome))
        }
        Ok((_, outcome)) => result("failed", outcome.error.clone(), Some(outcome)),
        Err(e) => {
            // A refusal says what to do: keep its hint on the one line a scheduler shows.
            let hint = e
                .downcast_ref::<UserError>()
                .and_then(|u| u.hint.as_deref())
                .or_else(|| e.downcast_ref::<Stopped>().and_then(|s| s.hint.as_deref()))
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            result(
                "failed",
                Some(tsrotate::key::redact_in(&format!("{e:#}{hint}"))),
                None,
            )
        }
    }
}

async fn fresh(
    client: &api::Client,
    credential: &Credential,
    credentials: &tsrotate::sink::Logins,
    dir: &StateDir,
    observed: Observed,
    readings: Vec<Reading>,
) -> anyhow::Result<Outcome> {
    let key_id = observed
        .key_id
        .ok_or_else(|| anyhow::anyhow!("the current key of `{}` is not known", credential.name))?;
    // The same admission as `rotate KEY`: the key's lock, no unfinished rotation of it (one
    // begun by hand, or under another credential sharing the key), no damaged journal of the
    // key or the credential.
    let admission = Admission::check(dir, &key_id, Some(&credential.name), Lock::Take)
        .map_err(rotation::admission_error)?;
    let overrides = Overrides::default()
        .or_template(&credential.template)
        .map_err(|e| anyhow::anyhow!(e))?;
    let request = Request {
        key: KeyRef::Id(key_id.clone()),
        roots: Vec::new(),
        configured: readings,
        overrides,
        revoke_first: false,
        verify_cmd: None,
        user: context::os_user(),
        credential: Some(credential.name.clone()),
        kind_hint: Some(credential.kind.clone()),
        migrate_to: None,
        webhook_endpoint: credential.webhook_endpoint_id.clone(),
        looked_up: observed.looked_up,
        skip_unwritable: false,
    };
    let known_values = request.known_values();
    let known = dir.journals().last_known(&key_id).unwrap_or(None);
    let plan = plan::plan_rotation(client, request, known, client.server_now())
        .await
        .map_err(crate::cmd_rotate::plan_error)?;
    let with = crate::cmd_rotate::Started {
        credentials: credentials.clone(),
        new_token: None,
        verify_cmd: None,
        known_values,
    };
    crate::cmd_rotate::start(admission, client, &plan, with, false).await
}

async fn resume(
    client: &api::Client,
    config: &Config,
    credentials: &tsrotate::sink::Logins,
    dir: &StateDir,
    rotation_id: &str,
) -> anyhow::Result<Outcome> {
    // Only what the configuration says runs; a rotation started with --verify-cmd is for a
    // person to resume with that command given again.
    let authority = Authority {
        config: Some(config),
        verify_cmd: None,
        purpose: Purpose::FinishScheduled,
    };
    let mut session = Session::reopen(dir, rotation_id, &context::os_user(), &authority)
        .map_err(rotation::admission_error)?;
    let mut world = ApiWorld::new(client.clone(), Vec::new())
        .with_configured(credentials.clone(), std::collections::HashMap::new())
        .redacting_old_values(session.state().old_key_id(), &session.state().sinks);
    rotation::execute(&mut world, &mut session, false, None).await
}

/// The notification URL from the configuration's `[notify]` (an environment variable or a
/// file: the URL is a secret, so it is never in the configuration itself).
fn notify_url(config: &Config) -> anyhow::Result<Option<Secret>> {
    let Some(notify) = &config.notify else {
        return Ok(None);
    };
    if let Some(var) = &notify.url_env {
        return Ok(env::var(var).map(Secret::new));
    }
    if let Some(file) = &notify.url_file {
        return Ok(Some(context::read_secret_file(file, "notification URL")?));
    }
    Ok(None)
}

#[derive(Serialize)]
struct Summary<'a> {
    rotated: Vec<&'a str>,
    failed: Vec<&'a str>,
    expiring_soon: Vec<&'a str>,
    needs_attention: Vec<&'a str>,
}

/// Post what happened and what will expire soon. A failure is reported on stderr, not fatal:
/// the rotations themselves are what matter.
async fn post_summary(url: Option<&Secret>, results: &[DueResult], observed: &[Observed]) {
    let Some(url) = url else { return };
    let summary = Summary {
        rotated: results
            .iter()
            .filter(|r| matches!(r.action, "rotated" | "resumed"))
            .map(|r| r.credential.as_str())
            .collect(),
        failed: results
            .iter()
            .filter(|r| r.action == "failed")
            .map(|r| r.credential.as_str())
            .collect(),
        expiring_soon: observed
            .iter()
            .filter(|o| o.days_left.is_some_and(|d| d <= 30))
            .map(|o| o.name.as_str())
            .collect(),
        needs_attention: observed
            .iter()
            .filter(|o| matches!(o.due, Due::Broken { .. }))
            .map(|o| o.name.as_str())
            .collect(),
    };
    let mut text = format!(
        "tsrotate: {} rotated, {} failed",
        summary.rotated.len(),
        summary.failed.len()
    );
    if !summary.failed.is_empty() {
        let _ = write!(text, " ({})", summary.failed.join(", "));
    }
    if !summary.expiring_soon.is_empty() {
        let _ = write!(
            text,
            "; expiring within 30 days: {}",
            summary.expiring_soon.join(", ")
        );
    }
    if let Err(e) = tsrotate::notify::post(url, &text, &summary).await {
        tracing::warn!("{e}");
    }
}
