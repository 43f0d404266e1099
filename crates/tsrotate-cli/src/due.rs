//! Managed credentials on a schedule: what each holds and whether it is due (`status`), and
//! rotating every due one (`rotate --due`), safely from several runners at once.
//!
//! Several schedulers may fire together (two hosts sharing a state directory, an overlapping
//! cron run). Each credential is rotated under a lock on its name in the state directory, and
//! whether it is due is decided again once the lock is held: the second runner finds the
//! first one's work done and does nothing.

use std::fmt::Write as _;

use futures_util::StreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::api;
use tsrotate::config::{Config, Credential, Kind as ConfigKind};
use tsrotate::fs::{Fail, FileLock};
use tsrotate::journal;
use tsrotate::key::{KeyId, KeyRef, Secret};
use tsrotate::rotate::places::{self, Reading};
use tsrotate::rotate::plan::{self, KeyStatus, Overrides, Request};
use tsrotate::rotate::session::{Admission, Authority, Lock, Purpose, Session, StateDir};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::rotate::{End, State};
use tsrotate::schedule::{self, Due, Observation};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::rotation::{self, Outcome};
use crate::settings::{self, ApiSettings, Need, env};

/// The last rotation of a credential.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastRotation {
    rotation_id: String,
    /// `done`, `rolled-back`, `abandoned` or `unfinished`.
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
    /// What the API said of the key, so that planning need not ask again.
    #[serde(skip)]
    looked_up: Option<(KeyStatus, Option<api::Key>)>,
    /// What the places and journals said, to tell later whether anything changed since.
    #[serde(skip)]
    evidence: Evidence,
}

/// Everything local an observation was based on: what each place holds and every rotation of
/// the credential with how it ended. If none of it changed, neither did the key the
/// credential holds, and the API's answer about that key still stands.
#[derive(Debug, PartialEq, Eq)]
struct Evidence {
    places: Vec<(String, Option<KeyId>, bool)>,
    rotations: Vec<(String, &'static str)>,
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
///
/// With an `earlier` observation of the same credential whose places and journals say the
/// same as now, its API answer is reused instead of asking again: `rotate --due` observes
/// each due credential a second time under its lock, and only another runner's work (which
/// shows in the places or the journals) can have changed the answer in between.
pub(crate) async fn observe(
    client: &api::Client,
    credential: &Credential,
    credentials: &tsrotate::sink::Credentials,
    journals: &journal::Index,
    earlier: Option<&Observed>,
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
        outcome: outcome_word(s),
        started: *at,
    });
    let evidence = Evidence {
        places: readings
            .iter()
            .map(|r| {
                (
                    tsrotate::sink::describe(&r.sink.spec),
                    r.key_id(),
                    r.snapshot.is_ok(),
                )
            })
            .collect(),
        rotations: rotations
            .iter()
            .map(|(id, s, _)| (id.clone(), outcome_word(s)))
            .collect(),
    };
    let unchanged =
        earlier.filter(|e| e.evidence == evidence && (e.looked_up.is_some() || e.key_id.is_none()));
    let (key_id, looked_up, undecided) =
        match find_key(client, credential, &held, &rotations, unchanged).await {
            Ok((key_id, looked_up)) => (key_id, looked_up, None),
            Err(problem) => (None, None, Some(problem)),
        };
    let key_status = looked_up.as_ref().map(|(status, _)| *status);
    let expires = looked_up
        .as_ref()
        .and_then(|(_, meta)| meta.as_ref()?.expires);
    let now = client.server_now();
    let observation = Observation {
        status: key_status,
        expires,
        in_sync: held.len() <= 1,
        unfinished,
        problem: problem
            .or(undecided)
            .or_else(|| damaged_problem(journals, &credential.name, key_id.as_ref()))
            .or_else(|| {
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
        places: evidence
            .places
            .iter()
            .map(|(place, holds, readable)| PlaceState {
                place: place.clone(),
                holds: holds.clone(),
                readable: *readable,
            })
            .collect(),
        last_rotation,
        due,
        looked_up,
        evidence,
    };
    (observed, readings)
}

/// The key a credential holds and what the API says of it: an unchanged `earlier`
/// observation's answer (re-judged by the clock), or found afresh.
async fn find_key(
    client: &api::Client,
    credential: &Credential,
    held: &[(KeyId, usize)],
    rotations: &[(String, State, OffsetDateTime)],
    unchanged: Option<&Observed>,
) -> Result<(Option<KeyId>, Option<(KeyStatus, Option<api::Key>)>), String> {
    if let Some(earlier) = unchanged {
        // The key is the same; whether it has expired meanwhile is the clock's to say.
        let looked_up = earlier.looked_up.clone().map(|(status, meta)| match &meta {
            Some(key) => (KeyStatus::of(key, client.server_now()), meta),
            None => (status, meta),
        });
        Ok((earlier.key_id.clone(), looked_up))
    } else if credential.kind == ConfigKind::WebhookSecret {
        // The keys API does not know webhook secrets, and they do not expire: such a
        // credential is due only when its places disagree or a rotation is unfinished.
        let key_id = held
            .first()
            .map(|(id, _)| id.clone())
            .or_else(|| last_done(rotations));
        let looked_up = key_id.as_ref().map(|_| (KeyStatus::Live, None));
        Ok((key_id, looked_up))
    } else {
        let key_id = current_key(client, held, rotations).await?;
        let looked_up = match &key_id {
            Some(id) => plan::lookup(client, id)
                .await
                .inspect_err(|e| tracing::warn!("looking up key {id}: {e}"))
                .ok(),
            None => None,
        };
        Ok((key_id, looked_up))
    }
}

/// The key a credential holds: what its places hold (the newest live one when they disagree),
/// else what its last finished rotation left in its write-only places.
async fn current_key(
    client: &api::Client,
    held: &[(KeyId, usize)],
    rotations: &[(String, State, OffsetDateTime)],
) -> Result<Option<KeyId>, String> {
    match held {
        [] => Ok(last_done(rotations)),
        [(id, _)] => Ok(Some(id.clone())),
        // None live: the most common. The API could not say: not decided this run, since
        // rotating a dead copy's key would leave the live one running unreferenced.
        many => match crate::managed::newest_live(client, many).await {
            Ok(live) => Ok(live.or_else(|| many.first().map(|(id, _)| id.clone()))),
            Err(e) => Err(format!(
                "its places disagree and the API could not say which key is live: {e}"
            )),
        },
    }
}

/// A journal of a rotation of this credential or key that cannot be read: the rotation may be
/// unfinished, so nothing is rotated until a person looks.
fn damaged_problem(
    journals: &journal::Index,
    name: &str,
    key_id: Option<&KeyId>,
) -> Option<String> {
    journals.damaged_for(Some(name), key_id).first().map(|d| {
        format!(
            "the journal of its rotation {} cannot be read ({}): repair it, or move it out of the state directory once you know the rotation's keys are in order",
            d.rotation_id, d.error
        )
    })
}

/// The key the last finished rotation left in the places.
fn last_done(rotations: &[(String, State, OffsetDateTime)]) -> Option<KeyId> {
    rotations.iter().rev().find_map(|(_, s, _)| match &s.end {
        Some(End::Done(id)) => Some(id.clone()),
        _ => None,
    })
}

fn outcome_word(state: &State) -> &'static str {
    match state.end {
        Some(End::Done(_)) => "done",
        Some(End::RolledBack) => "rolled-back",
        Some(End::Abandoned) => "abandoned",
        None => "unfinished",
    }
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
        .map(|credential| async {
            observe(client, credential, credentials, journals, None)
                .await
                .0
        })
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
    let config = settings::load_config(global, Need::Required)?.expect("required");
    let client = ApiSettings::resolve(&[], Some(&config))?.require_client()?;
    let dir = context::trusted_state_dir(global)?;
    let journals = dir.journals();
    let credentials = settings::sink_credentials();
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
    credentials: &tsrotate::sink::Credentials,
    dir: &StateDir,
    journals: &journal::Index,
) -> DueResult {
    let result = |action, detail: Option<String>, outcome| DueResult {
        credential: credential.name.clone(),
        action,
        detail,
        outcome,
    };
    let lock_dir = dir.path().join("locks");
    if let Err(e) = tsrotate::fs::create_private_dir_all(&lock_dir) {
        return result("failed", Some(e.to_string()), None);
    }
    let Ok(_lock) = FileLock::acquire(
        &lock_dir.join(format!("credential-{}.lock", credential.name)),
        Fail::Immediately,
    ) else {
        return result("skipped", Some("another run is rotating it".into()), None);
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
        Err(e) => {
            // A refusal says what to do: keep its hint on the one line a scheduler shows.
            let hint = e
                .downcast_ref::<UserError>()
                .and_then(|u| u.hint.as_deref())
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
    credentials: &tsrotate::sink::Credentials,
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
        kind_hint: Some(crate::cmd_rotate::config_kind(credential.kind)),
        migrate_to: None,
        webhook_endpoint: credential.webhook_endpoint_id.clone(),
        looked_up: observed.looked_up,
    };
    let known = dir.journals().last_known(&key_id).unwrap_or(None);
    let plan = plan::plan_rotation(client, request, known, client.server_now())
        .await
        .map_err(crate::cmd_rotate::plan_error)?;
    let with = crate::cmd_rotate::Started {
        credentials: credentials.clone(),
        new_token: None,
        verify_cmd: None,
    };
    crate::cmd_rotate::start(admission, client, &plan, with, false).await
}

async fn resume(
    client: &api::Client,
    config: &Config,
    credentials: &tsrotate::sink::Credentials,
    dir: &StateDir,
    rotation_id: &str,
) -> anyhow::Result<Outcome> {
    // Only what the configuration says runs; a rotation started with --verify-cmd is for a
    // person to resume with that command given again.
    let authority = Authority {
        config: Some(config),
        verify_cmd: None,
        purpose: Purpose::Finish,
    };
    let mut session = Session::reopen(dir, rotation_id, &context::os_user(), &authority)
        .map_err(rotation::admission_error)?;
    let mut world = ApiWorld::new(client.clone(), Vec::new())
        .with_configured(credentials.clone(), std::collections::HashMap::new());
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tsrotate::api::{Auth, ClientBuilder};
    use tsrotate::journal::Journal;
    use tsrotate_test_support::{emulator, http};

    use super::*;

    fn mint(emu: &emulator::ThreadServer) -> String {
        let auth = format!("Bearer {}", emu.bootstrap().api_key);
        let body = json!({
            "capabilities": {"devices": {"create": {"reusable": true, "tags": ["tag:ci"]}}},
            "expirySeconds": 90 * 86400,
        });
        let response = http::send(
            emu.url(),
            "POST",
            "/api/v2/tailnet/-/keys",
            &[("Authorization", &auth)],
            Some(&body),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        response.json()["key"].as_str().unwrap().to_owned()
    }

    fn api_calls(emu: &emulator::ThreadServer) -> usize {
        emulator::requests(emu.url()).len()
    }

    fn put(path: &std::path::Path, value: &str) {
        #[allow(
            clippy::disallowed_methods,
            reason = "a test fixture: another runner's write"
        )]
        std::fs::write(path, value).unwrap();
    }

    /// Another runner's rotation of `name`, as its journal shows it.
    fn journal_of(state_dir: &std::path::Path, name: &str, old: &KeyId) {
        let started = journal::Started {
            rotation_id: "r20261128000000other0".into(),
            tailnet: "-".into(),
            user: "other".into(),
            credential: Some(name.into()),
            old: journal::OldKey {
                key_id: old.clone(),
                kind: "auth-key".into(),
                fingerprint: None,
                metadata: None,
            },
            template: journal::Template::AuthKey(journal::AuthKeyTemplate {
                reusable: true,
                ephemeral: false,
                preauthorized: false,
                tags: vec!["tag:ci".into()],
                expiry_seconds: None,
                description: None,
            }),
            roots: Vec::new(),
            sinks: Vec::new(),
            revoke_first: false,
            verify_cmd: None,
            credential_verify: Vec::new(),
        };
        Journal::create(state_dir, started).unwrap();
    }

    /// The second observation under the lock asks the API again exactly when the places or
    /// the journals changed since the first: that is how a runner sees another's work.
    #[tokio::test]
    async fn an_observation_is_reused_only_while_places_and_journals_say_the_same() {
        let emu = emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let place = dir.path().join("authkey");
        let first = mint(&emu);
        put(&place, &first);
        let config = Config::parse(
            &format!(
                "[[credential]]\nname = \"ci\"\nkind = \"auth-key\"\n\n[[credential.sink]]\ntype = \"file\"\npath = \"{}\"\n",
                place.display()
            ),
            &dir.path().join("tsrotate.toml"),
        )
        .unwrap();
        let credential = &config.credentials[0];
        let client = ClientBuilder::new(Auth::ApiAccessToken(Secret::new(
            emu.bootstrap().api_key.clone(),
        )))
        .base_url(emu.url())
        .build()
        .unwrap();
        let creds = tsrotate::sink::Credentials::default();
        let state_dir = dir.path().join("state");
        let journals = journal::Index::new(&state_dir);
        let _ = emulator::advance_clock(emu.url(), 80 * 86_400);

        let (earlier, _) = observe(&client, credential, &creds, &journals, None).await;
        assert!(earlier.due.is_due(), "{:?}", earlier.due);
        let calls = api_calls(&emu);

        // Nothing changed: the API's answer stands, and nothing is asked.
        let (again, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls);
        assert_eq!(
            (again.key_id.as_ref(), &again.due),
            (earlier.key_id.as_ref(), &earlier.due)
        );

        // Another runner started rotating it: the API is asked again.
        let old = earlier.key_id.clone().unwrap();
        journal_of(&state_dir, "ci", &old);
        let calls = api_calls(&emu);
        let (started, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls + 1);
        assert_eq!(
            started.due,
            Due::Unfinished {
                rotation_id: "r20261128000000other0".into()
            }
        );

        // Another runner put a fresh key in place: the API is asked about that key.
        let second = mint(&emu);
        put(&place, &second);
        let calls = api_calls(&emu);
        let (after, _) = observe(&client, credential, &creds, &journals, Some(&earlier)).await;
        assert_eq!(api_calls(&emu), calls + 1);
        assert_ne!(after.key_id, earlier.key_id);
        assert_eq!(after.key_status, Some(KeyStatus::Live));
    }
}
