//! `tsrotate rotate`: replace a leaked or expiring key everywhere, then revoke it.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tsrotate::api;
use tsrotate::journal::{SinkPlan, Template};
use tsrotate::key::KeyKind;
use tsrotate::rotate::places;
use tsrotate::rotate::plan::{self, Overrides, Plan, Request};
use tsrotate::rotate::session::{Admission, Lock};
use tsrotate::rotate::world::ApiWorld;
use tsrotate::text;

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, Stopped, UserError};
use crate::rotation::{self, Outcome};
use crate::settings::{self, ApiSettings, Need};

/// Arguments of `tsrotate rotate`.
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools, reason = "command-line flags")]
pub(crate) struct Args {
    /// The key to replace: the credential itself, its key ID, or `-` to read it from standard
    /// input. A credential given here is visible in the process list: prefer `-` or the ID.
    /// With --credential, the key is found in the credential's configured places.
    #[arg(value_name = "KEY | KEY_ID | -", required_unless_present_any = ["credential", "due", "from_scan"])]
    key: Option<String>,
    /// A file or folder to search for the key (recursively; `.git` folders are skipped).
    #[arg(long = "in", value_name = "PATH")]
    in_paths: Vec<PathBuf>,
    /// Rotate this managed credential of the configuration file through all of its places.
    #[arg(long, value_name = "NAME")]
    credential: Option<String>,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Revoke the old key before anything else (it is being abused right now). Its consumers
    /// fail until the new key is in place.
    #[arg(long)]
    revoke_first: bool,
    /// Go on when files under --in that hold (or may hold) the key cannot be updated (binary
    /// or unreadable files): they keep the old key, which is revoked. The plan names them.
    /// Without this, such a rotation stops before anything changes (exit 1).
    #[arg(long)]
    skip_unwritable: bool,
    /// Lifetime of the new key (e.g. 90d, 12h); default: the old key's original lifetime.
    #[arg(long, value_name = "DURATION", value_parser = context::parse_duration)]
    expiry: Option<i64>,
    /// Whether the new key can register more than one device; default: as the old key.
    #[arg(long, value_name = "BOOL")]
    reusable: Option<bool>,
    /// Whether devices registered with the new key are ephemeral; default: as the old key.
    #[arg(long, value_name = "BOOL")]
    ephemeral: Option<bool>,
    /// Whether devices registered with the new key skip approval; default: as the old key.
    #[arg(long, value_name = "BOOL")]
    preauthorized: Option<bool>,
    /// Tags of the new key (`tag:a,tag:b`; empty for none); default: as the old key.
    #[arg(long, value_name = "TAGS", value_parser = context::parse_tags)]
    tags: Option<context::Tags>,
    /// A shell command that must succeed before the old key is revoked. It gets the new key in
    /// the environment variable `TSROTATE_NEW_KEY`, never in its arguments.
    #[arg(long, value_name = "CMD")]
    verify_cmd: Option<String>,
    /// OAuth clients: the new client's scopes (`a,b`); default: as the old client.
    #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// API access tokens: a file holding the replacement you made in the admin console
    /// (`-` for standard input); without it, tsrotate asks on the terminal, without echo.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
    /// Rotate every managed credential of the configuration that is due: expiring within its
    /// `rotate_before`, already invalid, or with places out of sync (and resume unfinished
    /// ones). Safe to run from several schedulers at once.
    #[arg(long, conflicts_with_all = ["key", "credential", "in_paths", "dry_run"])]
    due: bool,
    /// With --due: how many credentials to rotate at once.
    #[arg(long, default_value_t = crate::due::DEFAULT_CONCURRENCY, value_name = "N", requires = "due")]
    concurrency: usize,
    /// With --due: post a summary to this incoming-webhook URL (Slack, Teams). The URL is a
    /// secret and is visible in the process list: prefer `[notify] url_env` in the configuration.
    #[arg(long, value_name = "URL", requires = "due")]
    notify: Option<String>,
    /// Rotate every live key a `tsrotate scan --format json` found (FILE, or `-` for standard
    /// input), each in its own rotation, with the files it was found in as its places.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "credential", "due"])]
    from_scan: Option<PathBuf>,
    /// Then look for the devices the old key may have joined, as `tsrotate contain OLD_KEY_ID`
    /// does with the same --since, --expected, --min-confidence and --action (carried out
    /// with --yes): exit 1 when some rank at or above --min-confidence and no action was taken.
    #[arg(long, conflicts_with_all = ["due", "from_scan", "dry_run"])]
    contain: bool,
    /// With --contain: the containment's options (see `tsrotate contain --help`).
    #[command(flatten)]
    contain_options: crate::cmd_contain::Options,
    /// Webhook secrets: the webhook's endpoint ID; default: the tailnet's only webhook.
    #[arg(long, value_name = "ID")]
    webhook_endpoint: Option<String>,
}

/// The OAuth scopes a rotation of this kind needs, so that tsrotate asks for no more.
pub(crate) fn scopes_for(kind: Option<&KeyKind>) -> &'static [&'static str] {
    match kind {
        Some(KeyKind::AuthKey) => &["auth_keys"],
        // A new client can only get scopes the token creating it holds: the old client's
        // scopes are known only after a look-up, so the token keeps all of tsrotate's.
        // A bare key ID: the kind is known only after a look-up; ask for the client's scopes.
        Some(KeyKind::OAuthClientSecret | KeyKind::Scim | KeyKind::Other(_)) | None => &[],
        Some(KeyKind::ApiAccessToken) => &["api_access_tokens"],
        Some(KeyKind::Webhook) => &["webhooks"],
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one branch per way of naming what to rotate"
)]
pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    if !args.contain && args.contain_options.any() {
        return Err(UserError::new(
            "--since, --expected, --min-confidence and --action go with --contain",
        )
        .hint("add --contain to look for the devices the old key joined after the rotation")
        .into());
    }
    if args.due {
        let notify = args.notify.clone().map(tsrotate::key::Secret::new);
        return crate::due::rotate_due(global, args.yes, args.concurrency, notify).await;
    }
    if let Some(file) = &args.from_scan {
        return from_scan(global, args, file).await;
    }
    let key = args.key.as_deref().map(context::key_arg).transpose()?;
    // Checked (and --expected read) before the rotation changes anything.
    let contain_options = args.contain_options.resolve()?;
    if args.contain && global.format == Format::Json {
        return Err(UserError::new(
            "--contain adds a second report, which --format json cannot hold",
        )
        .hint("run `tsrotate --format json contain OLD_KEY_ID` after the rotation")
        .into());
    }
    let config = settings::load_config(
        global,
        if args.credential.is_some() {
            Need::Required
        } else {
            Need::Optional
        },
    )?;
    if args.credential.is_none()
        && let Some(hint) = settings::unread_local_hint()
        && config
            .as_ref()
            .is_none_or(|c| c.origin == settings::Origin::User)
    {
        tracing::warn!("the places ./tsrotate.toml names are not updated: {hint}");
    }
    let managed_kind = match (&args.credential, config.as_ref()) {
        (Some(name), Some(config)) => config.credential(name).map(|c| c.kind.clone()),
        _ => None,
    };
    let kind = managed_kind.clone().or_else(|| {
        key.as_ref()
            .and_then(|k| k.credential().map(|c| c.kind().clone()))
    });
    let client =
        ApiSettings::resolve(scopes_for(kind.as_ref()), config.as_ref())?.require_client()?;
    let credentials = settings::sink_logins()?;
    let mut overrides = Overrides {
        reusable: args.reusable,
        ephemeral: args.ephemeral,
        preauthorized: args.preauthorized,
        tags: args.tags.clone().map(|t| t.0),
        expiry_seconds: args.expiry,
        description: None,
        scopes: args.scopes.clone(),
    };
    let mut configured = Vec::new();
    let mut credential_name = None;
    let mut webhook_endpoint = args.webhook_endpoint.clone();
    let key = match (&args.credential, config.as_ref()) {
        (Some(name), Some(config)) => {
            let Some(credential) = config.credential(name) else {
                let names: Vec<&str> = config.credentials.iter().map(|c| c.name.as_str()).collect();
                return Err(
                    UserError::new(format!("no credential `{name}` in the configuration"))
                        .hint(format!("configured: {}", names.join(", ")))
                        .into(),
                );
            };
            webhook_endpoint.clone_from(&credential.webhook_endpoint_id);
            overrides = overrides
                .or_template(&credential.template)
                .map_err(|e| UserError::new(format!("credential `{name}`: {e}")))?;
            let readings = places::read(credential, &credentials).await;
            let key = match key {
                Some(key) => key,
                None => current_key(global, &client, name, &readings).await?,
            };
            configured = readings;
            credential_name = Some(name.clone());
            key
        }
        (None, Some(config)) => {
            let key = key.expect("clap requires KEY without --credential");
            configured = places_holding(config, key.key_id(), &credentials).await;
            key
        }
        (_, None) => {
            if args.in_paths.is_empty() {
                return Err(UserError::new("nowhere to look for the key")
                    .hint("give --in PATH (files or folders), or --config FILE with --credential NAME")
                    .into());
            }
            key.expect("clap requires KEY without --credential")
        }
    };
    let request = Request {
        key,
        roots: args.in_paths.clone(),
        configured,
        overrides,
        revoke_first: args.revoke_first,
        verify_cmd: args.verify_cmd.clone(),
        user: context::os_user(),
        credential: credential_name,
        kind_hint: managed_kind,
        migrate_to: None,
        webhook_endpoint,
        looked_up: None,
        skip_unwritable: args.skip_unwritable,
    };
    let options = Options {
        dry_run: args.dry_run,
        yes: args.yes,
        new_key_file: args.new_key_file.clone(),
        json_into: None,
    };
    let old_key = request.key.key_id().clone();
    let status = rotate(global, &client, request, options, credentials).await?;
    if !args.contain {
        return Ok(status);
    }
    // The rotation has changed things by now: whatever stops the containment is reported
    // as a run that did not complete (exit 1), never as a usage error (exit 2 says that
    // nothing was changed).
    let contained = match crate::cmd_contain::after_rotation(
        global,
        &old_key,
        &contain_options,
        args.yes,
    )
    .await
    {
        Ok(contained) => contained,
        Err(error) => {
            let hint = error
                .chain()
                .find_map(|e| e.downcast_ref::<UserError>())
                .and_then(|u| u.hint.clone());
            return Err(Stopped::new(format!(
                    "after the rotation, containing the devices key {old_key} may have joined failed: {}",
                    crate::exit::chain(&error)
                ))
                .hint(hint.unwrap_or_else(|| {
                    format!("once the cause is fixed, run `tsrotate contain {old_key}`")
                }))
                .into());
        }
    };
    Ok(if status == ExitStatus::Success {
        contained
    } else {
        status
    })
}

/// The key credential `name` holds now (see `tsrotate::schedule::current_key`), or why it
/// cannot be told.
async fn current_key(
    global: &GlobalArgs,
    client: &api::Client,
    name: &str,
    readings: &[places::Reading],
) -> anyhow::Result<tsrotate::key::KeyRef> {
    let held = places::held_ids(readings);
    let last_done = if held.is_empty() {
        context::trusted_state_dir(global)?
            .journals()
            .last_done_for(name)?
    } else {
        None
    };
    match tsrotate::schedule::current_key(client, &held, last_done).await? {
        Some(id) => Ok(tsrotate::key::KeyRef::Id(id)),
        None => Err(UserError::new(format!(
            "cannot tell which key credential `{name}` holds: none of its places can be read, and tsrotate has not rotated it before"
        ))
        .hint("give the current key or its ID: `tsrotate rotate KEY_ID --credential NAME`")
        .into()),
    }
}

/// Every configured place, of any credential, that holds `key_id`.
async fn places_holding(
    config: &tsrotate::config::Config,
    key_id: &tsrotate::key::KeyId,
    credentials: &tsrotate::sink::Logins,
) -> Vec<places::Reading> {
    let mut holding = Vec::new();
    for credential in &config.credentials {
        let readings = places::read(credential, credentials).await;
        holding.extend(
            readings
                .into_iter()
                .filter(|r| r.key_id().as_ref() == Some(key_id)),
        );
    }
    holding
}

/// One finding of `scan --format json`, as much of it as a rotation needs.
#[derive(serde::Deserialize)]
struct ScanFinding {
    key_id: tsrotate::key::KeyId,
    path: String,
    /// The exact bytes of a name that is not UTF-8 (`path` is then only readable).
    #[serde(default)]
    path_base64: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    placeholder: bool,
    #[serde(default)]
    encoding: Option<String>,
}

/// `rotate --from-scan`: every live key found in files, each in its own rotation.
#[allow(
    clippy::too_many_lines,
    reason = "read, group, then one rotation per key"
)]
async fn from_scan(
    global: &GlobalArgs,
    args: &Args,
    file: &std::path::Path,
) -> anyhow::Result<ExitStatus> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| crate::context::stdin_error(&e, "scan report"))?;
        text
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| UserError::new(format!("cannot read `{}`: {e}", text::path(file))))?
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        UserError::new(format!(
            "not the JSON output of `tsrotate scan --format json`: line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let list = value.get("findings").cloned().unwrap_or(value);
    let findings: Vec<ScanFinding> = serde_json::from_value(list)
        .map_err(|_| UserError::new("not the JSON output of `tsrotate scan --format json` (an array of findings with key_id and path)"))?;
    // Files on disk, per key; findings in git history or stdin have no place to write.
    let mut keys: Vec<(tsrotate::key::KeyId, Vec<PathBuf>, Option<String>, bool)> = Vec::new();
    for f in findings.into_iter().filter(|f| !f.placeholder) {
        if f.encoding.as_deref().is_some_and(|e| e != "plain") {
            eprintln!(
                "{}: found {}-encoded in {}; tsrotate replaces plain values only: re-encode the new key there by hand",
                f.key_id,
                tsrotate::text::escape(f.encoding.as_deref().unwrap_or_default()),
                tsrotate::text::escape(&f.path)
            );
            continue;
        }
        let on_disk =
            f.commit.is_none() && f.origin.as_deref().is_none_or(|o| o == "file") && f.path != "-";
        let index = if let Some(i) = keys.iter().position(|(id, ..)| *id == f.key_id) {
            i
        } else {
            keys.push((f.key_id.clone(), Vec::new(), f.status.clone(), false));
            keys.len() - 1
        };
        let entry = &mut keys[index];
        if on_disk {
            let Some(bytes) = tsrotate_scan::PathName::bytes(&f.path, f.path_base64.as_deref())
            else {
                return Err(UserError::new(format!(
                    "the finding at `{}` has a path_base64 that is not base64",
                    f.path
                ))
                .hint("give the JSON output of `tsrotate scan --format json` as it was written")
                .into());
            };
            let path = PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
            );
            if !entry.1.contains(&path) {
                entry.1.push(path);
            }
        } else {
            entry.3 = true;
        }
    }
    // Like `rotate KEY`: the places a named or the user's configuration lists are updated too.
    let config = settings::load_config(global, Need::Optional)?;
    let client = ApiSettings::resolve(&[], config.as_ref())?.require_client()?;
    let credentials = settings::sink_logins()?;
    let mut status = ExitStatus::Success;
    let mut summary = FromScan::default();
    for (key_id, paths, scanned_status, in_history) in keys {
        // The scan's verdict stands when it is a definite one; `unknown` (the scanner's
        // credentials could not tell) or none at all is asked again, with these credentials.
        let verdict = match scanned_status.as_deref() {
            Some(s @ ("live" | "revoked" | "expired" | "invalid" | "not-found")) => s.to_owned(),
            _ => match plan::lookup(&client, &key_id).await {
                // In the scanner's words (`not-found`), whichever asked.
                Ok((status, _)) => status.to_string().replace(' ', "-"),
                Err(e) => {
                    let error = format!("{:#}", api_error(&format!("looking up key {key_id}"), e));
                    let error = tsrotate::key::redact_in(&error);
                    eprintln!("error: {key_id}: {error}");
                    summary.failed.push(Failed { key_id, error });
                    status = ExitStatus::Incomplete;
                    continue;
                }
            },
        };
        if verdict == "not-found" {
            // Not known here is not dead: it may be another tailnet's key, live there
            // (issue 11, item 13).
            let reason = "not known to this tailnet's API (another tailnet's key, a used single-use key, or one long removed): not rotated, and it may still be live in another tailnet".to_owned();
            eprintln!("{key_id}: {reason}");
            summary.failed.push(Failed {
                key_id,
                error: reason,
            });
            status = ExitStatus::Incomplete;
            continue;
        }
        if verdict != "live" {
            eprintln!("{key_id}: {verdict}; nothing to rotate");
            summary.skipped.push(Skipped {
                key_id,
                reason: verdict,
            });
            continue;
        }
        let configured = match &config {
            Some(config) => places_holding(config, &key_id, &credentials).await,
            None => Vec::new(),
        };
        if paths.is_empty() && configured.is_empty() {
            let reason = format!(
                "live, but found only {} and in no configured place; revoke it with `tsrotate revoke {key_id}` or rotate it with --in PATH",
                if in_history {
                    "in git history"
                } else {
                    "on standard input"
                }
            );
            eprintln!("{key_id}: {reason}");
            summary.failed.push(Failed {
                key_id,
                error: reason,
            });
            status = ExitStatus::Incomplete;
            continue;
        }
        let request = Request {
            key: tsrotate::key::KeyRef::Id(key_id.clone()),
            roots: paths,
            configured,
            overrides: Overrides::default(),
            revoke_first: args.revoke_first,
            verify_cmd: args.verify_cmd.clone(),
            user: context::os_user(),
            credential: None,
            kind_hint: None,
            migrate_to: None,
            webhook_endpoint: None,
            looked_up: None,
            skip_unwritable: args.skip_unwritable,
        };
        let options = Options {
            dry_run: args.dry_run,
            yes: args.yes,
            new_key_file: None,
            json_into: Some(&mut summary.rotations),
        };
        match rotate(global, &client, request, options, credentials.clone()).await {
            Ok(ExitStatus::Success) => {}
            Ok(ExitStatus::Incomplete) => status = ExitStatus::Incomplete,
            Err(e) => {
                let error = tsrotate::key::redact_in(&format!("{e:#}"));
                eprintln!("error: {key_id}: {error}");
                summary.failed.push(Failed { key_id, error });
                status = ExitStatus::Incomplete;
            }
        }
    }
    if global.format != Format::Human {
        print_json(&summary)?;
    }
    Ok(status)
}

/// `rotate --from-scan --format json`: one document for the whole run.
#[derive(Default, Serialize)]
struct FromScan {
    /// The report of each rotation (plan and outcome), as `rotate --format json` prints it.
    rotations: Vec<serde_json::Value>,
    /// Keys found but not rotated because there was nothing to do.
    skipped: Vec<Skipped>,
    /// Keys that could not be rotated.
    failed: Vec<Failed>,
}

#[derive(Serialize)]
struct Skipped {
    key_id: tsrotate::key::KeyId,
    reason: String,
}

#[derive(Serialize)]
struct Failed {
    key_id: tsrotate::key::KeyId,
    error: String,
}

/// How the person wants it run.
pub(crate) struct Options<'a> {
    pub(crate) dry_run: bool,
    pub(crate) yes: bool,
    /// API access tokens: where the replacement made in the admin console is.
    pub(crate) new_key_file: Option<PathBuf>,
    /// With `--format json`: collect the report here instead of printing it (`--from-scan`
    /// prints one document for all its rotations).
    pub(crate) json_into: Option<&'a mut Vec<serde_json::Value>>,
}

/// Plan, confirm, execute and report one rotation. Shared with `demo`.
pub(crate) async fn rotate(
    global: &GlobalArgs,
    client: &api::Client,
    request: Request,
    mut options: Options<'_>,
    credentials: tsrotate::sink::Logins,
) -> anyhow::Result<ExitStatus> {
    for root in &request.roots {
        if std::fs::symlink_metadata(root).is_err() {
            return Err(UserError::new(format!("`{}` does not exist", text::path(root))).into());
        }
    }
    let state_dir = context::trusted_state_dir(global)?;
    let key_id = request.key.key_id().clone();
    let admission = Admission::check(
        &state_dir,
        &key_id,
        request.credential.as_deref(),
        if options.dry_run {
            Lock::CheckOnly
        } else {
            Lock::Take
        },
    )
    .map_err(rotation::admission_error)?;
    let journals = state_dir.journals();
    let verify_cmd = request.verify_cmd.clone();
    let known_values = request.known_values();
    let known = journals.last_known(&key_id).unwrap_or(None);
    let plan = plan::plan_rotation(client, request, known, client.server_now())
        .await
        .map_err(plan_error)?;

    let human = global.format == Format::Human;
    if human {
        write_plan(&mut std::io::stdout().lock(), &plan, options.dry_run)?;
    }
    if options.dry_run {
        if !human {
            let report = Report {
                plan: PlanReport::of(&plan),
                outcome: None,
            };
            match options.json_into.as_deref_mut() {
                Some(reports) => reports.push(serde_json::to_value(&report)?),
                None => print_json(&report)?,
            }
        }
        return Ok(ExitStatus::Success);
    }
    // An API access token cannot be minted: a person makes it in the admin console.
    let new_token = match &plan.started.template {
        Template::ApiToken(t) => Some(new_api_token(t, &options)?),
        _ => None,
    };
    if !context::confirm("Rotate now?", options.yes)? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }

    let narrate = human && !global.quiet;
    let outcome = start(
        admission,
        client,
        &plan,
        Started {
            credentials,
            new_token,
            verify_cmd,
            known_values,
        },
        narrate,
    )
    .await?;
    match options.json_into {
        Some(reports) if !human => reports.push(serde_json::to_value(Report {
            plan: PlanReport::of(&plan),
            outcome: Some(&outcome),
        })?),
        _ => report(global, Some(&plan), &outcome)?,
    }
    Ok(outcome.exit_status())
}

/// What a new rotation's world needs besides the plan.
pub(crate) struct Started {
    /// Logins to the services of configured places (and the children's environment).
    pub(crate) credentials: tsrotate::sink::Logins,
    /// API access tokens: the replacement a person made.
    pub(crate) new_token: Option<tsrotate::key::Secret>,
    /// `--verify-cmd`: the journal keeps only its digest.
    pub(crate) verify_cmd: Option<String>,
    /// Values of the old key known to this run, redacted from children's output.
    pub(crate) known_values: Vec<tsrotate::key::Secret>,
}

/// Journal a planned rotation under its admission and run it to its end or first failure.
pub(crate) async fn start(
    admission: Admission,
    client: &api::Client,
    plan: &Plan,
    with: Started,
    narrate: bool,
) -> anyhow::Result<Outcome> {
    let mut session = admission
        .begin(plan.started.clone())
        .map_err(rotation::admission_error)?;
    let mut world = ApiWorld::new(client.clone(), plan.files.clone())
        .with_configured(with.credentials, plan.planned_versions.clone())
        .with_verify_cmd(with.verify_cmd)
        .with_redacted(with.known_values)
        .redacting_old_values(&plan.started.old.key_id, &plan.started.sinks);
    if let Some(token) = with.new_token {
        world = world.with_new_token(token, plan.started.old.key_id.clone());
    }
    rotation::execute(&mut world, &mut session, narrate, None).await
}

/// Plan errors that are the person's to fix exit 2; API trouble is explained.
pub(crate) fn plan_error(e: plan::Error) -> anyhow::Error {
    match e {
        plan::Error::Api { key_id, source } => api_error(&format!("looking up key {key_id}"), source),
        plan::Error::Webhooks { source } => api_error(
            "listing the tailnet's webhooks to find this secret's",
            source,
        ),
        plan::Error::UnknownProperties { .. }
        | plan::Error::InvalidOverride(_)
        | plan::Error::UnsupportedKind { .. } => UserError::new(e.to_string()).into(),
        plan::Error::NotFoundInFiles { .. } => UserError::new(e.to_string())
            .hint("check the --in paths; to revoke the key without replacing it, use `tsrotate revoke`")
            .into(),
        plan::Error::Files(e) => UserError::new(e.to_string()).into(),
        plan::Error::KindMismatch { .. } => UserError::new(e.to_string())
            .hint("fix `kind` of the credential in the configuration")
            .into(),
        plan::Error::CannotUpdate { .. } => Stopped::new(e.to_string())
            .hint("update those files by hand after the rotation and rerun with --skip-unwritable, or make them readable text and rerun")
            .into(),
        plan::Error::Unwritable { .. } => UserError::new(e.to_string())
            .hint("create the missing folders or fields, or fix the places in the configuration, then run again; `tsrotate config check` checks every place")
            .into(),
        plan::Error::Unreadable(message) => anyhow::anyhow!("{message}")
            .context("a configured place cannot be read; nothing was changed"),
    }
}

/// Explain an API error in terms of what to do.
pub(crate) fn api_error(doing: &str, e: api::Error) -> anyhow::Error {
    let hint = match &e {
        api::Error::Unauthorized { .. } => Some(
            "the API credential is unknown, revoked or expired: check TAILSCALE_OAUTH_CLIENT_SECRET or TAILSCALE_API_KEY".to_owned(),
        ),
        api::Error::Forbidden { message } => Some(forbidden_hint(message)),
        api::Error::BadRequest { message } if message.contains("tag") => Some(
            "keys minted by an OAuth client must carry tags the client owns: give the client those tags (or tags that own them in the policy's tagOwners), or pass --tags with the client's tags".to_owned(),
        ),
        api::Error::Config(_) => Some("check TAILSCALE_BASE_URL".to_owned()),
        _ => None,
    };
    match hint {
        Some(hint) => UserError::new(format!("{doing}: {e}")).hint(hint).into(),
        None => anyhow::Error::from(e).context(doing.to_owned()),
    }
}

/// A 403 in terms of what to change: the scope the API named, and what each scope is for.
fn forbidden_hint(message: &str) -> String {
    const SCOPES: [(&str, &str); 5] = [
        ("auth_keys", "auth keys"),
        ("oauth_keys", "OAuth clients"),
        ("api_access_tokens", "API access tokens"),
        ("webhooks", "webhook secrets"),
        ("federated_keys", "federated identities"),
    ];
    let named = SCOPES.iter().find(|(scope, _)| message.contains(scope));
    match named {
        Some((scope, what)) => format!(
            "the OAuth client lacks the `{scope}` scope ({what}): give tsrotate a client with it (admin console > Settings > OAuth clients), or use a client that has it"
        ),
        None => "the credential lacks a permission: tsrotate needs `auth_keys` for auth keys, `oauth_keys` for OAuth clients, `api_access_tokens` for API tokens and `webhooks` for webhook secrets".to_owned(),
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Serialize)]
struct Report<'a> {
    plan: PlanReport<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a Outcome>,
}

#[derive(Serialize)]
struct PlanReport<'a> {
    rotation_id: &'a str,
    old_key: &'a tsrotate::journal::OldKey,
    old_key_status: plan::KeyStatus,
    new_key: &'a tsrotate::journal::Template,
    revoke_first: bool,
    files: Vec<FileReport<'a>>,
    binary_files: Vec<String>,
    skipped: Vec<String>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct FileReport<'a> {
    path: String,
    occurrences: &'a [tsrotate::sink::file::Occurrence],
}

impl<'a> PlanReport<'a> {
    fn of(plan: &'a Plan) -> Self {
        Self {
            rotation_id: &plan.started.rotation_id,
            old_key: &plan.started.old,
            old_key_status: plan.status,
            new_key: &plan.started.template,
            revoke_first: plan.started.revoke_first,
            files: plan
                .files
                .iter()
                .map(|m| FileReport {
                    path: m.display_path.display().to_string(),
                    occurrences: &m.occurrences,
                })
                .collect(),
            binary_files: plan
                .discovery
                .binary
                .iter()
                .map(|m| m.display_path.display().to_string())
                .collect(),
            skipped: plan
                .discovery
                .skipped
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
            warnings: &plan.warnings,
        }
    }
}

/// Print the outcome: human on stdout, or the JSON document.
pub(crate) fn report(
    global: &GlobalArgs,
    plan: Option<&Plan>,
    outcome: &Outcome,
) -> anyhow::Result<()> {
    match (global.format, plan) {
        (Format::Human, _) => outcome.write_human(&mut std::io::stdout().lock())?,
        (_, Some(plan)) => print_json(&Report {
            plan: PlanReport::of(plan),
            outcome: Some(outcome),
        })?,
        (_, None) => print_json(outcome)?,
    }
    Ok(())
}

#[allow(clippy::too_many_lines, reason = "one line of output after another")]
fn write_plan(out: &mut impl Write, plan: &Plan, dry_run: bool) -> std::io::Result<()> {
    let s = &plan.started;
    let t = &s.template;
    writeln!(
        out,
        "Rotation plan {}{}",
        s.rotation_id,
        if dry_run {
            " (dry run: nothing will change)"
        } else {
            ""
        }
    )?;
    let fp = s
        .old
        .fingerprint
        .map(|f| format!(", fp {f}"))
        .unwrap_or_default();
    let expires = s
        .old
        .metadata
        .as_ref()
        .and_then(|k| k.expires)
        .map(|e| format!(", expires {}", e.date()))
        .unwrap_or_default();
    writeln!(
        out,
        "  old key   {} ({}; {}{expires}{fp})",
        s.old.key_id, s.old.kind, plan.status
    )?;
    writeln!(out, "  new key   {}", describe_template(t))?;
    let configured: Vec<String> = s
        .sinks
        .iter()
        .filter(|p| matches!(p, SinkPlan::Configured { .. }))
        .map(SinkPlan::describe)
        .collect();
    if !configured.is_empty() {
        writeln!(out, "  places    {} configured place(s)", configured.len())?;
        for place in &configured {
            writeln!(out, "    {}", text::escape(place))?;
        }
    }
    let occurrences: usize = plan.files.iter().map(|m| m.occurrences.len()).sum();
    if !plan.files.is_empty() || configured.is_empty() {
        writeln!(
            out,
            "  files     {} file(s), {occurrences} occurrence(s)",
            plan.files.len()
        )?;
    }
    for m in &plan.files {
        for o in &m.occurrences {
            writeln!(
                out,
                "    {}:{}:{}",
                text::path(&m.display_path),
                o.line,
                o.column
            )?;
        }
    }
    for m in &plan.discovery.binary {
        writeln!(
            out,
            "    {} (binary: NOT edited)",
            text::path(&m.display_path)
        )?;
    }
    let mut steps = Vec::new();
    if s.revoke_first {
        steps.push(format!("revoke {} NOW", s.old.key_id));
    }
    steps.push(
        match t {
            Template::AuthKey(_) => "mint the new key",
            Template::OauthClient(_) => "create the new OAuth client and check it gets a token",
            Template::ApiToken(_) => "check the API access token you made in the admin console",
            Template::WebhookSecret { .. } => {
                "rotate the webhook's secret (the old one stops working at once)"
            }
        }
        .to_owned(),
    );
    steps.push(format!("replace it in {} place(s)", s.sinks.len()));
    if s.verify_cmd.is_some()
        || !s.credential_verify.is_empty()
        || s.sinks
            .iter()
            .any(|p| matches!(p, SinkPlan::Configured { verify, .. } if !verify.is_empty()))
    {
        steps.push("run the verification commands".to_owned());
    }
    if !s.revoke_first && !t.mint_retires_old() {
        steps.push(match t {
            Template::OauthClient(c) if c.migrated_from.is_none() => {
                format!("delete the old client {}", s.old.key_id)
            }
            _ => format!("revoke {}", s.old.key_id),
        });
    }
    let steps: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    writeln!(out, "  steps     {}", steps.join("  "))?;
    for w in &plan.warnings {
        writeln!(out, "  warning   {}", text::escape(w))?;
    }
    for p in &plan.discovery.problems {
        let what = match &p.kind {
            tsrotate::sink::file::ProblemKind::Unreadable { .. } => {
                format!("could not be read ({})", p.kind)
            }
            other => other.to_string(),
        };
        writeln!(
            out,
            "  warning   {}: {}",
            text::path(&p.path),
            text::escape(&what)
        )?;
    }
    for sk in &plan.discovery.skipped {
        writeln!(
            out,
            "  note      {} skipped ({})",
            text::path(&sk.path),
            sk.reason
        )?;
    }
    Ok(())
}

/// The replacement API access token: from `--new-key-file`, else asked for without echo.
fn new_api_token(
    t: &tsrotate::journal::TokenTemplate,
    options: &Options,
) -> anyhow::Result<tsrotate::key::Secret> {
    if let Some(file) = &options.new_key_file {
        return context::read_secret_file(file, "new API access token");
    }
    if !context::interactive() {
        return Err(UserError::new("API access tokens cannot be created through the API, and there is no terminal to ask for the new one")
            .hint("make it in the admin console (Settings > Keys) and give it with --new-key-file FILE (or `-` for standard input)")
            .into());
    }
    eprintln!(
        "Make the replacement in the admin console: https://login.tailscale.com/admin/settings/keys > Generate access token{}{}.",
        t.expiry_days
            .map(|d| format!(", expiry {d} days"))
            .unwrap_or_default(),
        t.description
            .as_deref()
            .map(|d| format!(", description \"{d}\""))
            .unwrap_or_default()
    );
    context::read_secret_stdin("new API access token (not echoed)")
}

/// The replacement's properties in one line.
fn describe_template(t: &Template) -> String {
    match t {
        Template::AuthKey(t) => {
            let mut props = vec![
                if t.reusable { "reusable" } else { "single-use" }.to_owned(),
                if t.ephemeral {
                    "ephemeral"
                } else {
                    "not ephemeral"
                }
                .to_owned(),
                if t.preauthorized {
                    "preauthorized"
                } else {
                    "needs approval"
                }
                .to_owned(),
                if t.tags.is_empty() {
                    "no tags".to_owned()
                } else {
                    format!("tags {}", t.tags.join(","))
                },
            ];
            props.push(t.expiry_seconds.map_or_else(
                || "expires after the API default (90 days)".to_owned(),
                |s| format!("expires after {}", human_duration(s)),
            ));
            props.join(", ")
        }
        Template::OauthClient(c) => format!(
            "OAuth client, scopes {}, tags {}{}",
            c.scopes.join(","),
            if c.tags.is_empty() {
                "none".to_owned()
            } else {
                c.tags.join(",")
            },
            c.migrated_from
                .as_ref()
                .map(|id| format!(", replacing API access token {id}"))
                .unwrap_or_default()
        ),
        Template::ApiToken(t) => format!(
            "API access token made by you in the admin console{}",
            t.expiry_days
                .map(|d| format!(", expiring in {d} days like the old one"))
                .unwrap_or_default()
        ),
        Template::WebhookSecret { endpoint_id } => {
            format!("new signing secret of webhook {endpoint_id}")
        }
    }
}

fn human_duration(seconds: i64) -> String {
    if seconds % 86_400 == 0 {
        format!("{} days", seconds / 86_400)
    } else if seconds % 3600 == 0 {
        format!("{} hours", seconds / 3600)
    } else {
        format!("{seconds} seconds")
    }
}
