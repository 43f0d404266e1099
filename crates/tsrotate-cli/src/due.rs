//! Managed credentials on a schedule: what each holds and whether it is due (`status`), and
//! rotating every due one (`rotate --due`), safely from several runners at once.
//!
//! Several schedulers may fire together (two hosts sharing a state directory, an overlapping
//! cron run). Each credential is rotated under a lock on its name in the state directory, and
//! whether it is due is decided again once the lock is held: the second runner finds the
//! first one's work done and does nothing.

use std::fmt::Write as _;
use std::path::Path;

use futures_util::StreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::api;
use tsrotate::config::{Config, Credential};
use tsrotate::fs::{Fail, FileLock};
use tsrotate::journal::{self, Journal};
use tsrotate::key::{KeyId, KeyRef, Secret};
use tsrotate::rotate::places::{self, Reading};
use tsrotate::rotate::plan::{self, KeyStatus, Overrides, Request};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::rotate::{End, State};
use tsrotate::schedule::{self, Due, Observation};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation::{self, Outcome, Recording};
use crate::settings::{self, ApiSettings, env};

/// The last rotation of a credential.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastRotation {
    rotation_id: String,
    /// `done`, `rolled-back` or `unfinished`.
    outcome: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
}

/// One credential as observed now.
#[derive(Debug, Serialize)]
pub(crate) struct Observed {
    name: String,
    kind: tsrotate::config::Kind,
    key_id: Option<KeyId>,
    key_status: Option<KeyStatus>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires: Option<OffsetDateTime>,
    days_left: Option<i64>,
    in_sync: bool,
    places: Vec<PlaceState>,
    last_rotation: Option<LastRotation>,
    due: Due,
}

#[derive(Debug, Serialize)]
struct PlaceState {
    place: String,
    holds: Option<KeyId>,
    readable: bool,
}

/// The rotations of credential `name`, oldest first, with their states.
fn rotations_of(journals: &journal::Index, name: &str) -> Vec<(String, State, OffsetDateTime)> {
    let rotations = journals.of_credential(name).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        Vec::new()
    });
    rotations
        .into_iter()
        .filter_map(|(id, records)| {
            let started = records[0].at;
            State::replay(&records).map(|state| (id, state, started))
        })
        .collect()
}

/// Read a credential's places, find its key, ask the API, decide whether it is due.
pub(crate) async fn observe(
    client: &api::Client,
    credential: &Credential,
    credentials: &tsrotate::sink::Credentials,
    journals: &journal::Index,
) -> (Observed, Vec<Reading>) {
    let readings = places::read(credential, credentials).await;
    let problem = readings
        .iter()
        .find_map(Reading::failed)
        .map(ToString::to_string);
    let held = places::held_ids(&readings);
    let rotations = rotations_of(journals, &credential.name);
    let unfinished = rotations
        .iter()
        .rev()
        .find(|(_, s, _)| !s.is_finished())
        .map(|(id, _, _)| id.clone());
    let last_rotation = rotations.last().map(|(id, s, at)| LastRotation {
        rotation_id: id.clone(),
        outcome: match s.end {
            Some(End::Done(_)) => "done",
            Some(End::RolledBack) => "rolled-back",
            None => "unfinished",
        },
        started: *at,
    });
    let last_done = rotations.iter().rev().find_map(|(_, s, _)| match &s.end {
        Some(End::Done(id)) => Some(id.clone()),
        _ => None,
    });
    let key_id = match held.as_slice() {
        [] => last_done,
        [(id, _)] => Some(id.clone()),
        many => choose_live(client, many).await,
    };
    let (key_status, expires) = match &key_id {
        Some(id) => match plan::lookup(client, id, client.server_now()).await {
            Ok((status, meta)) => (Some(status), meta.and_then(|k| k.expires)),
            Err(e) => {
                tracing::warn!("looking up key {id}: {e}");
                (None, None)
            }
        },
        None => (None, None),
    };
    let now = client.server_now();
    let observation = Observation {
        status: key_status,
        expires,
        in_sync: held.len() <= 1,
        unfinished,
        problem: problem.or_else(|| {
            key_id.is_none().then(|| {
                "no place can be read and tsrotate never rotated it: rotate it once by key ID"
                    .to_owned()
            })
        }),
    };
    let due = schedule::due(&observation, credential.rotate_before_seconds, now);
    let observed = Observed {
        name: credential.name.clone(),
        kind: credential.kind,
        days_left: expires.map(|e| (e - now).whole_days()),
        key_id,
        key_status,
        expires,
        in_sync: held.len() <= 1,
        places: readings
            .iter()
            .map(|r| PlaceState {
                place: tsrotate::sink::describe(&r.sink.spec),
                holds: r.key_id(),
                readable: r.snapshot.is_ok(),
            })
            .collect(),
        last_rotation,
        due,
    };
    (observed, readings)
}

/// Among keys held by places that disagree: the live one created last, else the first.
async fn choose_live(client: &api::Client, held: &[(KeyId, usize)]) -> Option<KeyId> {
    let mut best: Option<(OffsetDateTime, KeyId)> = None;
    for (id, _) in held {
        if let Ok((KeyStatus::Live, meta)) = plan::lookup(client, id, client.server_now()).await {
            let created = meta
                .and_then(|k| k.created)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(c, _)| created > *c) {
                best = Some((created, id.clone()));
            }
        }
    }
    best.map(|(_, id)| id)
        .or_else(|| held.first().map(|(id, _)| id.clone()))
}

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
pub(crate) struct StatusArgs {}

/// `tsrotate status`: one row per managed credential. Exit 1 when something needs attention.
pub(crate) async fn status(global: &GlobalArgs, _args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let config = settings::load_config(global, true)?.expect("required");
    let client = ApiSettings::resolve(
        &[
            "auth_keys:read",
            "oauth_keys:read",
            "api_access_tokens:read",
        ],
        Some(&config),
    )?
    .require_client()?;
    let journals = journal::Index::new(&context::state_dir(global)?);
    let credentials = settings::sink_credentials();
    let rows = observe_all(
        &client,
        &config,
        &credentials,
        &journals,
        DEFAULT_CONCURRENCY,
    )
    .await;
    if global.format == Format::Human {
        println!(
            "{:<16} {:<13} {:<14} {:<11} {:>5} {:<10} {:<7} {:<22} {:<11} STATE",
            "CREDENTIAL",
            "KIND",
            "KEY",
            "EXPIRES",
            "LEFT",
            "",
            "IN SYNC",
            "LAST ROTATION",
            "NEXT DUE"
        );
        for r in &rows {
            let next = match &r.due {
                Due::NotDue { next: Some(n) } => n.date().to_string(),
                Due::NotDue { next: None } => "never".into(),
                _ => "now".into(),
            };
            println!(
                "{:<16} {:<13} {:<14} {:<11} {:>5} {} {:<7} {:<22} {:<11} {}",
                r.name,
                format!("{:?}", r.kind).to_lowercase(),
                r.key_id
                    .as_ref()
                    .map_or("?".to_owned(), ToString::to_string),
                r.expires.map_or("-".to_owned(), |e| e.date().to_string()),
                r.days_left.map_or("-".to_owned(), |d| format!("{d}d")),
                bar(r.days_left),
                if r.in_sync { "yes" } else { "NO" },
                r.last_rotation
                    .as_ref()
                    .map_or("never".to_owned(), |l| format!(
                        "{} {}",
                        l.started.date(),
                        l.outcome
                    )),
                next,
                state_word(&r.due)
            );
        }
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

/// How many credentials `status` observes, and `rotate --due` rotates, at once by default.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;

/// Observe every configured credential, `concurrency` at a time, in configuration order.
/// Observing is an API lookup or two per credential plus reading its places; nothing is
/// locked or changed here (`rotate --due` observes each due credential again under its lock).
async fn observe_all(
    client: &api::Client,
    config: &Config,
    credentials: &tsrotate::sink::Credentials,
    journals: &journal::Index,
    concurrency: usize,
) -> Vec<Observed> {
    futures_util::stream::iter(&config.credentials)
        .map(|credential| async { observe(client, credential, credentials, journals).await.0 })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

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
    let config: Config = settings::load_config(global, true)?.expect("required");
    let client = ApiSettings::resolve(&[], Some(&config))?.require_client()?;
    let journals = journal::Index::new(&context::state_dir(global)?);
    let credentials = settings::sink_credentials();
    let notify = match notify {
        Some(url) => Some(url),
        None => notify_url(&config)?,
    };
    let observed = observe_all(&client, &config, &credentials, &journals, concurrency).await;
    let due: Vec<&Credential> = config
        .credentials
        .iter()
        .filter(|c| observed.iter().any(|o| o.name == c.name && o.due.is_due()))
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
        .map(|credential| rotate_one(&client, credential, &credentials, &journals))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if human {
        for r in &results {
            println!(
                "{:<16} {:<8} {}",
                r.credential,
                r.action,
                r.detail.as_deref().unwrap_or("")
            );
        }
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &results)?;
        println!();
    }
    post_summary(notify.as_ref(), &results, &observed).await;
    Ok(if results.iter().any(|r| r.action == "failed") {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}

/// Rotate or resume one credential under its lock, deciding again once the lock is held.
async fn rotate_one(
    client: &api::Client,
    credential: &Credential,
    credentials: &tsrotate::sink::Credentials,
    journals: &journal::Index,
) -> DueResult {
    let result = |action, detail: Option<String>, outcome| DueResult {
        credential: credential.name.clone(),
        action,
        detail,
        outcome,
    };
    let state_dir = journals.state_dir();
    let lock_dir = state_dir.join("locks");
    if let Err(e) = tsrotate::fs::create_private_dir_all(&lock_dir) {
        return result("failed", Some(e.to_string()), None);
    }
    let Ok(_lock) = FileLock::acquire(
        &lock_dir.join(format!("credential-{}.lock", credential.name)),
        Fail::Immediately,
    ) else {
        return result("skipped", Some("another run is rotating it".into()), None);
    };
    let (observed, readings) = observe(client, credential, credentials, journals).await;
    if !observed.due.is_due() {
        return result(
            "not-due",
            Some("rotated by another run meanwhile".into()),
            None,
        );
    }
    let outcome = match &observed.due {
        Due::Unfinished { rotation_id } => resume(client, credentials, state_dir, rotation_id)
            .await
            .map(|o| ("resumed", o)),
        _ => fresh(
            client,
            credential,
            credentials,
            journals,
            observed.key_id.clone(),
            readings,
        )
        .await
        .map(|o| ("rotated", o)),
    };
    match outcome {
        Ok((action, outcome)) if outcome.outcome == "done" => {
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
        Err(e) => result(
            "failed",
            Some(tsrotate::key::redact_in(&format!("{e:#}"))),
            None,
        ),
    }
}

async fn fresh(
    client: &api::Client,
    credential: &Credential,
    credentials: &tsrotate::sink::Credentials,
    journals: &journal::Index,
    key_id: Option<KeyId>,
    readings: Vec<Reading>,
) -> anyhow::Result<Outcome> {
    let key_id = key_id
        .ok_or_else(|| anyhow::anyhow!("the current key of `{}` is not known", credential.name))?;
    let state_dir = journals.state_dir();
    let _key_lock = rotation::lock_key(state_dir, &key_id)?;
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
        kind_hint: None,
        migrate_to: None,
        webhook_endpoint: credential.webhook_endpoint_id.clone(),
    };
    let known = journals.last_known(&key_id).unwrap_or(None);
    let plan = plan::plan_rotation(client, request, known, client.server_now())
        .await
        .map_err(crate::cmd_rotate::plan_error)?;
    crate::cmd_rotate::start(state_dir, client, &plan, credentials.clone(), None, false).await
}

async fn resume(
    client: &api::Client,
    credentials: &tsrotate::sink::Credentials,
    state_dir: &Path,
    rotation_id: &str,
) -> anyhow::Result<Outcome> {
    let (journal, records) = Journal::open(state_dir, rotation_id)?;
    let state = State::replay(&records)
        .ok_or_else(|| anyhow::anyhow!("journal of {rotation_id} is empty"))?;
    let _key_lock = rotation::lock_key(state_dir, state.old_key_id())?;
    let mut recording = Recording::new(journal, state_dir, &context::os_user(), rotation_id);
    let mut world = ApiWorld::new(client.clone(), Vec::new())
        .with_configured(credentials.clone(), std::collections::HashMap::new());
    rotation::execute(state, &mut world, &mut recording, false, state_dir, None).await
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
