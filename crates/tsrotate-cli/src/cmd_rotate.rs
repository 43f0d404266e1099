//! `tsrotate rotate`: replace a leaked or expiring key everywhere, then revoke it.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::api;
use tsrotate::journal::{Event, Journal};
use tsrotate::rotate::State;
use tsrotate::rotate::places;
use tsrotate::rotate::plan::{self, Overrides, Plan, Request};
use tsrotate::rotate::world::ApiWorld;

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::managed;
use crate::rotation::{self, Outcome, Recording};
use crate::settings::{self, ApiSettings};

/// Arguments of `tsrotate rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key to replace: the credential itself, its key ID, or `-` to read it from standard
    /// input. A credential given here is visible in the process list: prefer `-` or the ID.
    /// With --credential, the key is found in the credential's configured places.
    #[arg(
        value_name = "KEY | KEY_ID | -",
        required_unless_present = "credential"
    )]
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
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = args.key.as_deref().map(context::key_arg).transpose()?;
    let config = settings::load_config(global, args.credential.is_some())?;
    let client = ApiSettings::resolve(&["auth_keys"], config.as_ref())?.require_client()?;
    let credentials = settings::sink_credentials();
    let mut overrides = Overrides {
        reusable: args.reusable,
        ephemeral: args.ephemeral,
        preauthorized: args.preauthorized,
        tags: args.tags.clone().map(|t| t.0),
        expiry_seconds: args.expiry,
        description: None,
    };
    let mut configured = Vec::new();
    let mut credential_name = None;
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
            if credential.kind != tsrotate::config::Kind::AuthKey {
                return Err(UserError::new(format!(
                    "credential `{name}` is a {:?}; `rotate --credential` handles auth keys",
                    credential.kind
                ))
                .into());
            }
            overrides = overrides
                .or_template(&credential.template)
                .map_err(|e| UserError::new(format!("credential `{name}`: {e}")))?;
            let readings = places::read(credential, &credentials).await;
            let key = match key {
                Some(key) => key,
                None => managed::current_key(global, &client, name, &readings).await?,
            };
            configured = readings;
            credential_name = Some(name.clone());
            key
        }
        (None, Some(config)) => {
            let key = key.expect("clap requires KEY without --credential");
            // Every configured place, of any credential, that holds this key.
            for credential in &config.credentials {
                let readings = places::read(credential, &credentials).await;
                if readings
                    .iter()
                    .any(|r| r.key_id().as_ref() == Some(key.key_id()))
                {
                    configured.extend(
                        readings
                            .into_iter()
                            .filter(|r| r.key_id().as_ref() == Some(key.key_id())),
                    );
                }
            }
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
    };
    let options = Options {
        dry_run: args.dry_run,
        yes: args.yes,
    };
    rotate(global, &client, request, options, credentials).await
}

/// How the person wants it run.
pub(crate) struct Options {
    pub(crate) dry_run: bool,
    pub(crate) yes: bool,
}

/// Plan, confirm, execute and report one rotation. Shared with `demo`.
pub(crate) async fn rotate(
    global: &GlobalArgs,
    client: &api::Client,
    request: Request,
    options: Options,
    credentials: tsrotate::sink::Credentials,
) -> anyhow::Result<ExitStatus> {
    for root in &request.roots {
        if std::fs::symlink_metadata(root).is_err() {
            return Err(UserError::new(format!("`{}` does not exist", root.display())).into());
        }
    }
    let state_dir = context::state_dir(global)?;
    let key_id = request.key.key_id().clone();
    let _lock = if options.dry_run {
        None
    } else {
        Some(rotation::lock_key(&state_dir, &key_id)?)
    };
    if let Some(id) = rotation::unfinished_for(&state_dir, &key_id)?.first() {
        return Err(
            UserError::new(format!("rotation {id} of key {key_id} is not finished"))
                .hint(format!(
                    "finish it with `tsrotate resume {id}` or undo it with `tsrotate rollback {id}`"
                ))
                .into(),
        );
    }
    let known = tsrotate::journal::last_known(&state_dir, &key_id).unwrap_or(None);
    let plan = plan::plan_auth_key(client, request, known, OffsetDateTime::now_utc())
        .await
        .map_err(plan_error)?;

    let human = global.format == Format::Human;
    if human {
        write_plan(&mut std::io::stdout().lock(), &plan, options.dry_run)?;
    }
    if options.dry_run {
        if !human {
            print_json(&Report {
                plan: PlanReport::of(&plan),
                outcome: None,
            })?;
        }
        return Ok(ExitStatus::Success);
    }
    if !context::confirm("Rotate now?", options.yes)? {
        return Err(UserError::new("cancelled; nothing was changed").into());
    }

    let rotation_id = plan.started.rotation_id.clone();
    let user = plan.started.user.clone();
    let journal = Journal::create(&state_dir, plan.started.clone())?;
    let mut recording = Recording::new(journal, &state_dir, &user, &rotation_id);
    recording.audit_only(&Event::Started(Box::new(plan.started.clone())));
    let state = State::replay(&tsrotate::journal::read(recording.journal_path())?)
        .expect("a new journal starts with its plan");
    let mut world = ApiWorld::new(client.clone(), plan.files.clone())
        .with_configured(credentials, plan.planned_versions.clone());
    let narrate = human && !global.quiet;
    let outcome =
        rotation::execute(state, &mut world, &mut recording, narrate, &state_dir, None).await?;
    report(global, Some(&plan), &outcome)?;
    Ok(outcome.exit_status())
}

/// Plan errors that are the person's to fix exit 2; API trouble is explained.
pub(crate) fn plan_error(e: plan::Error) -> anyhow::Error {
    match e {
        plan::Error::Api { key_id, source } => api_error(&format!("looking up key {key_id}"), source),
        plan::Error::UnknownProperties { .. }
        | plan::Error::InvalidOverride(_)
        | plan::Error::UnsupportedKind { .. } => UserError::new(e.to_string()).into(),
        plan::Error::NotFoundInFiles { .. } => UserError::new(e.to_string())
            .hint("check the --in paths; to revoke the key without replacing it, use `tsrotate revoke`")
            .into(),
        plan::Error::Files(e) => UserError::new(e.to_string()).into(),
        plan::Error::Unreadable(message) => anyhow::anyhow!("{message}")
            .context("a configured place cannot be read; nothing was changed"),
    }
}

/// Explain an API error in terms of what to do.
pub(crate) fn api_error(doing: &str, e: api::Error) -> anyhow::Error {
    let hint = match &e {
        api::Error::Unauthorized { .. } => Some(
            "the API credential is unknown, revoked or expired: check TAILSCALE_OAUTH_CLIENT_SECRET or TAILSCALE_API_KEY",
        ),
        api::Error::Forbidden { .. } => Some(
            "the credential lacks a scope: an OAuth client needs `auth_keys` (and tags it owns) to rotate auth keys",
        ),
        api::Error::Config(_) => Some("check TAILSCALE_BASE_URL"),
        _ => None,
    };
    match hint {
        Some(hint) => UserError::new(format!("{doing}: {e}")).hint(hint).into(),
        None => anyhow::Error::from(e).context(doing.to_owned()),
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
    writeln!(out, "  new key   {}", props.join(", "))?;
    let occurrences: usize = plan.files.iter().map(|m| m.occurrences.len()).sum();
    writeln!(
        out,
        "  files     {} file(s), {occurrences} occurrence(s)",
        plan.files.len()
    )?;
    for m in &plan.files {
        for o in &m.occurrences {
            writeln!(
                out,
                "    {}:{}:{}",
                m.display_path.display(),
                o.line,
                o.column
            )?;
        }
    }
    for m in &plan.discovery.binary {
        writeln!(out, "    {} (binary: NOT edited)", m.display_path.display())?;
    }
    let mut steps = Vec::new();
    if s.revoke_first {
        steps.push(format!("revoke {} NOW", s.old.key_id));
    }
    steps.push("mint the new key".to_owned());
    steps.push(format!("replace it in {} file(s)", plan.files.len()));
    if s.verify_cmd.is_some() {
        steps.push("run the verification command".to_owned());
    }
    if !s.revoke_first {
        steps.push(format!("revoke {}", s.old.key_id));
    }
    let steps: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    writeln!(out, "  steps     {}", steps.join("  "))?;
    for w in &plan.warnings {
        writeln!(out, "  warning   {w}")?;
    }
    for p in &plan.discovery.problems {
        writeln!(
            out,
            "  warning   {}: could not be read ({:?})",
            p.path.display(),
            p.kind
        )?;
    }
    for sk in &plan.discovery.skipped {
        writeln!(
            out,
            "  note      {} skipped ({:?})",
            sk.path.display(),
            sk.reason
        )?;
    }
    Ok(())
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
