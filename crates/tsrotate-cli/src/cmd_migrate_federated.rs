//! `tsrotate migrate-to-federated`: move a credential's consumers to a federated identity, so
//! that no long-lived secret is stored at all (issue 14).
//!
//! # Steps, and why in this order
//!
//! 1. **Plan** (the default, a dry run): look the old key up (its scopes and tags become the
//!    identity's), find the GitHub Actions workflows under `--repo-dir` that pass the
//!    credential, work out the narrowest subject pattern they allow, check a sample identity
//!    token (`--id-token-file`), show the diff of every workflow and the change for every
//!    other consumer (`--consumer`). Nothing changes.
//! 2. **Switch** (`--apply`): create the federated identity (or find the one an earlier run
//!    created, by its description `tsrotate federated from <old key ID>`), then rewrite the
//!    workflows in place. The old credential still works, so nothing breaks while the
//!    rewritten workflows are pushed and run.
//! 3. **Finish** (`--apply` with `--confirmed`, or a `--verify-cmd` that succeeds): delete the
//!    GitHub secret through the GitHub sink, then revoke the old credential and confirm it is
//!    dead.
//!
//! There is no journal: every step is idempotent and found again from the world itself (the
//! identity by its description, rewritten workflows by no longer passing the secret, a deleted
//! secret or revoked key by the API's answer), and the only step that could lose a working
//! credential, the revocation, comes last, after the new path has been confirmed. A crash at
//! any point leaves the old credential working; running the same command again continues.
//! While `--apply` runs it holds the key's lock from `rotate::session`, and it refuses a key
//! with an unfinished rotation, so a rotation and a migration never race.
//!
//! Exit codes: 0 the dry run was shown, or everything asked was done (including "switched,
//! waiting for confirmation"); 1 the sample token would be refused, its issuer is not
//! reachable, the verification command failed, or the identity's creation got no answer
//! (the old credential is kept; run again); 2 usage or
//! input error (nothing passes the credential, ambiguous secret, malformed token file, no
//! GitHub token to delete the secret with); 3 unexpected failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::api::{self, FederatedIdentity, FederatedIdentityRequest, KeyType};
use tsrotate::audit::AuditLog;
use tsrotate::federation::subject::{self, Need};
use tsrotate::federation::workflow::{self, Repo, WorkflowFile};
use tsrotate::federation::{GITHUB_ACTIONS_ISSUER, Identity, consumer, token};
use tsrotate::journal::Event;
use tsrotate::key::{KeyId, Secret};
use tsrotate::rotate::plan::{self, KeyStatus};
use tsrotate::rotate::session::{Admission, Lock};
use tsrotate::sink::github::{self, ActionsSecretSink, Deleted, Target};
use tsrotate::text::escape;

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::api_error;
use crate::context;
use crate::exit::{ExitStatus, Stopped, UserError};
use crate::settings::{self, ApiSettings};

/// Placeholders shown in a dry run's diff for what Tailscale assigns at creation.
const PLACEHOLDER_ID: &str = "NEW_FEDERATED_IDENTITY_ID";
const PLACEHOLDER_AUDIENCE: &str = "NEW_FEDERATED_IDENTITY_AUDIENCE";

/// How long the sample token check waits for the issuer.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(15);

/// Consumers outside GitHub Actions, which tsrotate does not rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ConsumerArg {
    /// containerboot (`tailscale/tailscale` image, Docker, a Kubernetes sidecar).
    Containerboot,
    /// The Tailscale Kubernetes operator's Helm values.
    OperatorHelm,
    /// Anything else running `tailscale up`.
    Cli,
}

impl ConsumerArg {
    fn kind(self) -> consumer::Kind {
        match self {
            Self::Containerboot => consumer::Kind::Containerboot,
            Self::OperatorHelm => consumer::Kind::OperatorHelm,
            Self::Cli => consumer::Kind::Cli,
        }
    }
}

/// Arguments of `tsrotate migrate-to-federated`.
#[derive(Debug, clap::Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub(crate) struct Args {
    /// The auth key, OAuth client or API access token to replace: the credential, its key
    /// ID, or `-` for standard input.
    #[arg(value_name = "KEY | KEY_ID | -")]
    key: String,
    /// A checkout of the GitHub repository whose workflows (`.github/workflows`) pass the
    /// credential; they are rewritten in place.
    #[arg(long, value_name = "DIR")]
    repo_dir: Option<PathBuf>,
    /// The repository on GitHub, for the subject and the secret (required with --repo-dir).
    #[arg(long, value_name = "OWNER/REPO")]
    repo: Option<String>,
    /// The repository's default branch (where `schedule` and `workflow_dispatch` runs).
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    default_branch: String,
    /// The GitHub secret that holds the credential [default: the only secret the workflows
    /// pass to Tailscale]. GitHub never shows a secret's value, so this cannot be checked.
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// Also delete the secret of this deployment environment (repeatable); the repository
    /// secret is always deleted unless --keep-secret.
    #[arg(long, value_name = "NAME")]
    secret_environment: Vec<String>,
    /// Do not delete the GitHub secret (an organization secret other repositories read).
    #[arg(long)]
    keep_secret: bool,
    /// GitHub's API [env: `GITHUB_API_URL`; default: `https://api.github.com`].
    #[arg(long, value_name = "URL")]
    github_api_url: Option<String>,
    /// The OIDC issuer the identity trusts (GitHub Enterprise Server, a Kubernetes cluster).
    #[arg(long, value_name = "URL", default_value = GITHUB_ACTIONS_ISSUER)]
    issuer: String,
    /// The subject pattern [default: the narrowest the workflows allow]. Required without
    /// --repo-dir.
    #[arg(long, value_name = "PATTERN")]
    subject: Option<String>,
    /// A rule for another claim, `NAME=PATTERN` (repeatable), e.g. `repository_owner=acme`.
    #[arg(long = "claim", value_name = "NAME=PATTERN", value_parser = parse_claim)]
    claims: Vec<(String, String)>,
    /// The audience tokens must carry [default: generated by Tailscale].
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
    /// Scopes of the identity's tokens [default: the old credential's; required for an API
    /// access token].
    #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
    scopes: Vec<String>,
    /// Tags the identity's tokens may assign [default: the old credential's].
    #[arg(long, value_name = "TAGS", value_parser = context::parse_tags)]
    tags: Option<context::Tags>,
    /// A sample identity token from the consumer's identity provider: checked (issuer
    /// reachable, subject, claims) before anything changes.
    #[arg(long, value_name = "FILE")]
    id_token_file: Option<PathBuf>,
    /// A consumer outside GitHub Actions (repeatable): the change to make is printed, and the
    /// old credential is kept until --confirmed.
    #[arg(long = "consumer", value_enum, value_name = "KIND")]
    consumers: Vec<ConsumerArg>,
    /// Make the changes (without it, only show them).
    #[arg(long)]
    apply: bool,
    /// The rewritten workflows have run successfully and every other consumer has moved:
    /// delete the secret and revoke the old credential.
    #[arg(long)]
    confirmed: bool,
    /// A shell command that must succeed, after the switch, before the secret is deleted and
    /// the old credential revoked (e.g. one that waits for the workflow run).
    #[arg(long, value_name = "CMD")]
    verify_cmd: Option<String>,
}

fn parse_claim(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, pattern)) if !name.trim().is_empty() && !pattern.is_empty() => {
            Ok((name.trim().to_owned(), pattern.to_owned()))
        }
        _ => Err(format!(
            "invalid claim rule `{s}`: expected NAME=PATTERN, e.g. repository_owner=acme"
        )),
    }
}

/// The migration as planned and done, for `--format json` (and the human rendering).
#[derive(Debug, Default, Serialize)]
struct Report {
    key_id: String,
    key_type: String,
    issuer: String,
    subject: String,
    /// Why the subject has a wildcard.
    subject_broad_because: Vec<String>,
    scopes: Vec<String>,
    tags: Vec<String>,
    identity: Option<IdentityReport>,
    secret: Option<String>,
    workflows: Vec<WorkflowReport>,
    /// Changes tsrotate cannot make (workflows and other consumers).
    manual: Vec<String>,
    notes: Vec<String>,
    consumers: Vec<ConsumerReport>,
    token_check: Option<TokenReport>,
    dry_run: bool,
    workflows_written: bool,
    secrets_deleted: Vec<String>,
    revoked: bool,
    /// What has to happen before the old credential is revoked, when it was not.
    waiting_for: Option<String>,
}

#[derive(Debug, Serialize)]
struct IdentityReport {
    id: String,
    audience: String,
    /// `created`, `existing` (an earlier run made it) or `planned` (dry run).
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct WorkflowReport {
    file: String,
    diff: String,
}

#[derive(Debug, Serialize)]
struct ConsumerReport {
    kind: &'static str,
    change: String,
}

#[derive(Debug, Serialize)]
struct TokenReport {
    accepted: bool,
    mismatches: Vec<MismatchReport>,
    audience_checked: bool,
}

#[derive(Debug, Serialize)]
struct MismatchReport {
    claim: String,
    required: String,
    actual: Option<String>,
    message: String,
}

/// What the old key gives the identity.
struct OldKey {
    key_type: Option<KeyType>,
    scopes: Vec<String>,
    tags: Vec<String>,
}

/// Everything worked out before the first change.
struct Planned {
    /// Every secret this run holds (the old credential when given, tsrotate's own API
    /// credential): redacted from `--verify-cmd`'s output.
    in_play: Vec<Secret>,
    repo: Option<Repo>,
    existing: Option<FederatedIdentity>,
    claim_rules: BTreeMap<String, String>,
    marker: String,
    report: Report,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    let old_id = key.key_id().clone();
    let human = global.format == Format::Human;
    check_args(args)?;
    let repo = repo_arg(args)?;
    let client = ApiSettings::configured(
        global,
        &[
            "federated_keys",
            "auth_keys",
            "oauth_keys",
            "api_access_tokens",
        ],
    )?
    .require_client()?;
    let mut planned = plan(&client, &old_id, args, repo).await?;
    planned
        .in_play
        .extend(key.credential().map(|c| c.secret().clone()));
    planned
        .in_play
        .extend(client.auth().secrets().into_iter().cloned());
    planned.in_play.extend(client.auth().secrets_read_now());
    if human {
        render_plan(&planned.report, planned.existing.as_ref());
    }
    if planned
        .report
        .token_check
        .as_ref()
        .is_some_and(|c| !c.accepted)
    {
        if !human {
            print_json(&planned.report)?;
        }
        return Err(Stopped::new(
            "the sample identity token would be refused; nothing was changed",
        )
        .hint("fix the subject (--subject) or claim rules (--claim), or check that the token came from the consumer that will use the identity")
        .into());
    }
    if !args.apply {
        if human {
            println!();
            println!(
                "Dry run: nothing was changed. Run again with --apply to create the identity and rewrite the workflows."
            );
        } else {
            print_json(&planned.report)?;
        }
        return Ok(ExitStatus::Success);
    }
    apply(global, &client, &old_id, args, planned).await
}

fn repo_arg(args: &Args) -> anyhow::Result<Option<Repo>> {
    match (&args.repo_dir, &args.repo) {
        (Some(_), Some(repo)) => Ok(Some(repo.parse::<Repo>().map_err(|e| {
            UserError::new(e.to_string()).hint("pass --repo OWNER/REPO as on github.com")
        })?)),
        (Some(_), None) => Err(UserError::new("--repo-dir needs --repo OWNER/REPO")
            .hint("the repository's name on GitHub decides the subject and the secret")
            .into()),
        (None, _) => Ok(None),
    }
}

/// Step 1: read everything, change nothing.
async fn plan(
    client: &api::Client,
    old_id: &KeyId,
    args: &Args,
    repo: Option<Repo>,
) -> anyhow::Result<Planned> {
    let old = old_key(client, old_id, args).await?;
    let marker = marker(old_id);
    let existing = find_identity(client, &marker).await?;
    let mut report = Report {
        key_id: old_id.to_string(),
        key_type: old
            .key_type
            .as_ref()
            .map_or_else(|| "key".to_owned(), |t| type_name(t).to_owned()),
        issuer: args.issuer.clone(),
        scopes: old.scopes,
        tags: old.tags,
        dry_run: !args.apply,
        ..Report::default()
    };
    // The workflows, rewritten in memory for the identity we know (or placeholders).
    let shown = existing.as_ref().map_or_else(
        || Identity {
            client_id: PLACEHOLDER_ID.to_owned(),
            audience: args
                .audience
                .clone()
                .unwrap_or_else(|| PLACEHOLDER_AUDIENCE.to_owned()),
        },
        identity_of,
    );
    let workflows = match (&args.repo_dir, &repo) {
        (Some(dir), Some(repo)) => {
            Some(plan_workflows(dir, repo, args, &shown, existing.is_some())?)
        }
        _ => None,
    };
    if workflows.as_ref().is_none_or(|p| p.migrations.is_empty())
        && args.consumers.is_empty()
        && existing.is_none()
    {
        return Err(nothing_to_migrate(args, workflows.as_ref()));
    }
    let needs: Vec<Need> = workflows
        .as_ref()
        .map(|p| p.needs.clone())
        .unwrap_or_default();
    report.subject = choose_subject(existing.as_ref(), args, &needs, &mut report)?;
    report.identity = Some(IdentityReport {
        id: shown.client_id.clone(),
        audience: shown.audience.clone(),
        state: if existing.is_some() {
            "existing"
        } else {
            "planned"
        },
    });
    let claim_rules: BTreeMap<String, String> = match &existing {
        Some(e) => e.custom_claim_rules.clone(),
        None => args.claims.iter().cloned().collect(),
    };
    if let Some(workflows) = workflows {
        report.secret = workflows.secret;
        for m in &workflows.migrations {
            report.workflows.push(WorkflowReport {
                file: m.file.relative.clone(),
                diff: unified_diff(&m.file.relative, &m.file.text, &m.after),
            });
        }
        report.manual.extend(workflows.manual);
        report.notes.extend(workflows.notes);
    }
    report.consumers = consumer_reports(args, &shown);
    // The sample token, before anything changes.
    if let Some(path) = &args.id_token_file {
        let requirements = token::Requirements {
            issuer: report.issuer.clone(),
            subject: report.subject.clone(),
            audience: existing
                .as_ref()
                .map(|e| e.audience.clone())
                .or_else(|| args.audience.clone()),
            claim_rules: claim_rules.clone(),
        };
        report.token_check = Some(check_token(path, &requirements, client.server_now()).await?);
    }
    Ok(Planned {
        in_play: Vec::new(),
        repo,
        existing,
        claim_rules,
        marker,
        report,
    })
}

/// The subject: an existing identity's (with its issuer, scopes and tags), --subject, or the
/// narrowest pattern the workflows allow.
fn choose_subject(
    existing: Option<&FederatedIdentity>,
    args: &Args,
    needs: &[Need],
    report: &mut Report,
) -> anyhow::Result<String> {
    let wanted = if let Some(s) = &args.subject {
        check_covers(
            s,
            needs,
            "--subject",
            "widen it, or leave it out to get the narrowest pattern the workflows allow",
        )?;
        Some(s.clone())
    } else if let Some(folded) = subject::fold(needs) {
        report.subject_broad_because = folded.reasons;
        Some(folded.pattern)
    } else {
        None
    };
    if let Some(e) = existing {
        adopt(e, args, wanted.as_deref(), report)?;
        return Ok(e.subject.clone());
    }
    wanted.ok_or_else(|| {
        UserError::new("no subject pattern: no workflow says which tokens its consumers present")
            .hint(
                "pass --subject (a Kubernetes service account: `system:serviceaccount:NAMESPACE:NAME`)",
            )
            .into()
    })
}

/// An identity found by its description is used only if it is what this run would create:
/// anyone who may create keys could have named one so, with a subject or issuer of their own.
fn adopt(
    e: &FederatedIdentity,
    args: &Args,
    subject: Option<&str>,
    report: &Report,
) -> Result<(), UserError> {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let rules: BTreeMap<String, String> = args.claims.iter().cloned().collect();
    let differs: Option<(&str, String, String)> = if e.issuer != report.issuer {
        Some(("issuer", e.issuer.clone(), report.issuer.clone()))
    } else if subject.is_some_and(|s| s != e.subject) {
        Some((
            "subject",
            e.subject.clone(),
            subject.unwrap_or_default().to_owned(),
        ))
    } else if sorted(&e.scopes) != sorted(&report.scopes) {
        Some(("scopes", e.scopes.join(","), report.scopes.join(",")))
    } else if sorted(&e.tags) != sorted(&report.tags) {
        Some(("tags", e.tags.join(","), report.tags.join(",")))
    } else if e.custom_claim_rules != rules {
        let show = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(("claim rules", show(&e.custom_claim_rules), show(&rules)))
    } else {
        None
    };
    if let Some((what, theirs, ours)) = differs {
        return Err(UserError::new(format!(
            "federated identity {} is described as this migration's, but its {what} is `{theirs}` where this run would set `{ours}`; it is not used",
            e.id
        ))
        .hint(format!(
            "if an earlier run made it with other options, repeat them; otherwise delete it (`tsrotate revoke {}`) and run again",
            e.id
        )));
    }
    Ok(())
}

fn identity_of(e: &FederatedIdentity) -> Identity {
    Identity {
        client_id: e.id.to_string(),
        audience: e.audience.clone(),
    }
}

fn consumer_reports(args: &Args, identity: &Identity) -> Vec<ConsumerReport> {
    args.consumers
        .iter()
        .map(|c| ConsumerReport {
            kind: c.kind().name(),
            change: consumer::instructions(c.kind(), identity),
        })
        .collect()
}

/// Steps 2 and 3.
async fn apply(
    global: &GlobalArgs,
    client: &api::Client,
    old_id: &KeyId,
    args: &Args,
    planned: Planned,
) -> anyhow::Result<ExitStatus> {
    let human = global.format == Format::Human;
    let Planned {
        in_play,
        repo,
        existing,
        claim_rules,
        marker,
        mut report,
    } = planned;
    // Everything that could stop us is checked before the first change.
    let state_dir = context::trusted_state_dir(global)?;
    let _admission = Admission::check(&state_dir, old_id, None, Lock::Take)
        .map_err(crate::rotation::admission_error)?;
    let secret_sinks = secret_sinks(args, repo.as_ref(), report.secret.as_deref())?;

    // Step 2: the identity, then the workflows.
    let identity = if let Some(e) = existing {
        e
    } else {
        let request = FederatedIdentityRequest {
            key_type: KeyType::Federated,
            scopes: report.scopes.clone(),
            tags: report.tags.clone(),
            description: Some(marker),
            issuer: report.issuer.clone(),
            subject: report.subject.clone(),
            audience: args.audience.clone(),
            custom_claim_rules: claim_rules,
        };
        let created = client
            .create_federated_identity(&request)
            .await
            .map_err(|e| match e {
                api::Error::OutcomeUnknown { .. } => Stopped::new(format!(
                    "creating the federated identity: {e}; nothing was rewritten, deleted or revoked"
                ))
                .hint("run the same command again: it finds an identity this run created by its description")
                .into(),
                e => api_error("creating the federated identity", e),
            })?;
        if human {
            println!();
            println!(
                "Created federated identity {} (audience {}).",
                created.id, created.audience
            );
        }
        if let Some(i) = &mut report.identity {
            i.state = "created";
        }
        created
    };
    let real = identity_of(&identity);
    if let Some(i) = &mut report.identity {
        i.id.clone_from(&real.client_id);
        i.audience.clone_from(&real.audience);
    }
    report.consumers = consumer_reports(args, &real);
    if let (Some(dir), Some(repo)) = (&args.repo_dir, &repo) {
        // Computed again for the real identity, from the files as they are now: the write
        // refuses a file that changed since it was read.
        let workflows = plan_workflows(dir, repo, args, &real, true)?;
        for m in &workflows.migrations {
            tsrotate::fs::atomic_write(&m.file.path, &m.file.hash, m.after.as_bytes()).map_err(
                |e| anyhow::Error::from(e).context(format!("rewriting `{}`", m.file.relative)),
            )?;
            if human {
                println!("Rewrote {}.", m.file.relative);
            }
        }
        report.workflows_written = !workflows.migrations.is_empty();
    }
    if human && !report.consumers.is_empty() {
        println!();
        println!("Make these changes by hand:");
        for c in &report.consumers {
            print!("{}", indent(&c.change));
        }
    }
    if let Some(cmd) = &args.verify_cmd {
        verify(cmd, &in_play).await?;
        if human {
            println!("The verification command succeeded.");
        }
    }
    finish(
        client,
        old_id,
        args,
        human,
        state_dir.path(),
        &secret_sinks,
        report,
    )
    .await
}

/// Step 3, once the new path is confirmed (by a person, or by `--verify-cmd`, which has
/// passed when this runs): delete the secret, revoke the old credential.
async fn finish(
    client: &api::Client,
    old_id: &KeyId,
    args: &Args,
    human: bool,
    state_dir: &Path,
    secret_sinks: &[ActionsSecretSink],
    mut report: Report,
) -> anyhow::Result<ExitStatus> {
    let verified = args.verify_cmd.is_some();
    let manual_pending = !report.manual.is_empty() || !args.consumers.is_empty();
    let may_finish = args.confirmed
        || (verified && !manual_pending)
        || (!manual_pending && ask_confirmation(human)?);
    if !may_finish {
        let again = match (&args.secret, &report.secret) {
            (None, Some(secret)) => format!("--apply --confirmed --secret {secret}"),
            _ => "--apply --confirmed".to_owned(),
        };
        let waiting = if verified {
            format!("make the changes tsrotate cannot make, then run again with {again}")
        } else {
            format!(
                "commit and push the rewritten workflows; once a run has passed (and every other consumer has moved), run again with {again} (or with --verify-cmd)"
            )
        };
        if human {
            println!();
            println!("The old credential {old_id} still works and is kept. Next: {waiting}.");
        }
        report.waiting_for = Some(waiting);
        if !human {
            print_json(&report)?;
        }
        return Ok(ExitStatus::Success);
    }
    let secret = report.secret.clone().unwrap_or_default();
    for sink in secret_sinks {
        let what = format!("secret {secret} of {}", sink.target());
        let deleted = sink.delete().await.map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "deleting GitHub {what}; the old credential was not revoked"
            ))
        })?;
        if human {
            match deleted {
                Deleted::Deleted => println!("Deleted GitHub {what}."),
                Deleted::Absent => println!("GitHub {what} was already gone."),
            }
        }
        report.secrets_deleted.push(what);
    }
    report.revoked = revoke(client, old_id, human).await?;
    audit_revoked(state_dir, old_id, !report.revoked);
    if human {
        let id = report.identity.as_ref().map_or("", |i| i.id.as_str());
        println!("Done: the consumers use federated identity {id}, and no secret is stored.");
    } else {
        print_json(&report)?;
    }
    Ok(ExitStatus::Success)
}

/// Flags that contradict each other, before any network call.
fn check_args(args: &Args) -> Result<(), UserError> {
    if args.repo_dir.is_none() && args.consumers.is_empty() {
        return Err(UserError::new("nothing to migrate: name the consumers")
            .hint("pass --repo-dir DIR --repo OWNER/REPO for GitHub Actions workflows, or --consumer KIND for others"));
    }
    if (args.confirmed || args.verify_cmd.is_some()) && !args.apply {
        return Err(UserError::new(
            "--confirmed and --verify-cmd finish a migration, which changes things",
        )
        .hint("add --apply"));
    }
    if args.repo_dir.is_none() && (args.secret.is_some() || !args.secret_environment.is_empty()) {
        return Err(UserError::new(
            "--secret and --secret-environment name a GitHub secret of --repo-dir's workflows",
        )
        .hint("add --repo-dir DIR --repo OWNER/REPO"));
    }
    Ok(())
}

fn type_name(t: &KeyType) -> &'static str {
    match t {
        KeyType::Auth => "auth key",
        KeyType::Client => "OAuth client",
        KeyType::Api => "API access token",
        KeyType::Federated => "federated identity",
        KeyType::Unknown => "key",
    }
}

/// The description that finds the identity an earlier run created (at most 50 characters,
/// letters, digits and spaces, as Tailscale requires).
fn marker(old: &KeyId) -> String {
    let mut s = format!("tsrotate federated from {old}");
    s.truncate(50);
    s
}

/// The old key's kind, scopes and tags, with the command line's overrides.
async fn old_key(client: &api::Client, id: &KeyId, args: &Args) -> anyhow::Result<OldKey> {
    let (status, key) = plan::lookup(client, id)
        .await
        .map_err(|e| api_error(&format!("looking up key {id}"), e))?;
    let Some(key) = key else {
        return Err(
            UserError::new(format!("key {id} is not known to this tailnet's API"))
                .hint("check the key ID and TAILSCALE_TAILNET")
                .into(),
        );
    };
    if status != KeyStatus::Live {
        tracing::warn!(
            "key {id} is {status}: the identity still replaces it, but nothing uses it successfully now"
        );
    }
    let key_type = key.key_type.clone();
    let (scopes, tags) = match key_type {
        Some(KeyType::Auth) => (vec!["auth_keys".to_owned()], key.device_capabilities().tags),
        Some(KeyType::Client) => (key.scopes.clone(), key.tags.clone()),
        Some(KeyType::Federated) => {
            return Err(UserError::new(format!(
                "key {id} is already a federated identity: it holds no secret"
            ))
            .into());
        }
        Some(KeyType::Api | KeyType::Unknown) | None => (Vec::new(), Vec::new()),
    };
    let scopes = if args.scopes.is_empty() {
        scopes
    } else {
        args.scopes.clone()
    };
    let tags = args.tags.as_ref().map_or(tags, |t| t.0.clone());
    if scopes.is_empty() {
        return Err(UserError::new(format!(
            "key {id} is a personal API access token with its owner's full rights: say which scopes the identity's tokens need"
        ))
        .hint("pass --scopes (e.g. --scopes devices:core:read,auth_keys --tags tag:ci)")
        .into());
    }
    let needs_tags = scopes
        .iter()
        .any(|s| matches!(s.as_str(), "auth_keys" | "devices:core" | "devices" | "all"));
    if needs_tags && tags.is_empty() {
        return Err(UserError::new(format!(
            "key {id} has no tags, but a federated identity with `{}` must have tags: the devices it registers belong to the tailnet",
            scopes.join(",")
        ))
        .hint("pass --tags tag:name (tags the devices should get)")
        .into());
    }
    Ok(OldKey {
        key_type,
        scopes,
        tags,
    })
}

/// The identity an earlier run created for this key, if any.
async fn find_identity(
    client: &api::Client,
    marker: &str,
) -> anyhow::Result<Option<FederatedIdentity>> {
    let keys = client
        .list_keys(true)
        .await
        .map_err(|e| api_error("listing the tailnet's keys", e))?;
    let Some(found) = keys.into_iter().find(|k| {
        k.key_type == Some(KeyType::Federated)
            && !k.invalid
            && k.description.as_deref() == Some(marker)
    }) else {
        return Ok(None);
    };
    let identity = client
        .get_federated_identity(&found.id)
        .await
        .map_err(|e| api_error(&format!("reading federated identity {}", found.id), e))?;
    Ok(Some(identity))
}

/// The workflows of one repository, rewritten for one identity.
struct WorkflowPlan {
    secret: Option<String>,
    migrations: Vec<Rewrite>,
    needs: Vec<Need>,
    manual: Vec<String>,
    notes: Vec<String>,
}

struct Rewrite {
    file: WorkflowFile,
    after: String,
}

fn plan_workflows(
    dir: &Path,
    repo: &Repo,
    args: &Args,
    identity: &Identity,
    continuing: bool,
) -> anyhow::Result<WorkflowPlan> {
    let found = workflow::discover(dir).map_err(|e| UserError::new(e.to_string()))?;
    let mut manual = Vec::new();
    let mut notes: Vec<String> = found
        .skipped
        .iter()
        .map(|(file, why)| format!("{file}: {why}"))
        .collect();
    // Which secret: the one named, else the only one the workflows pass to Tailscale.
    let secret = if let Some(s) = &args.secret {
        Some(s.clone())
    } else {
        let mut names: Vec<String> = Vec::new();
        for file in &found.files {
            match workflow::sites(file) {
                Ok(sites) => names.extend(sites.into_iter().map(|s| s.secret)),
                Err(e) => notes.push(e.to_string()),
            }
        }
        names.sort();
        names.dedup();
        match names.len() {
            0 if continuing => None,
            0 => {
                return Err(UserError::new(format!(
                    "no workflow in `{}` passes a Tailscale credential from a secret",
                    dir.join(workflow::WORKFLOWS_DIR).display()
                ))
                .hint("check --repo-dir, or name the secret with --secret NAME")
                .into());
            }
            1 => names.pop(),
            _ => {
                return Err(UserError::new(format!(
                    "the workflows pass Tailscale credentials from several secrets: {}",
                    names.join(", ")
                ))
                .hint("name the one that holds this credential with --secret NAME")
                .into());
            }
        }
    };
    let options = workflow::Options {
        repo: repo.clone(),
        default_branch: args.default_branch.clone(),
    };
    let mut migrations = Vec::new();
    let mut needs = Vec::new();
    if let Some(secret) = &secret {
        for file in found.files {
            if !file.text.contains(secret.as_str()) {
                continue;
            }
            match workflow::migrate(&file, secret, identity, &options) {
                Ok(None) => {}
                Ok(Some(m)) => {
                    manual.extend(
                        m.manual
                            .iter()
                            .map(|x| format!("{} line {}: {}", x.file, x.line, x.change)),
                    );
                    notes.extend(m.notes.iter().map(|n| format!("{}: {}", n.file, n.text)));
                    needs.extend(m.needs);
                    if m.after != file.text {
                        migrations.push(Rewrite {
                            file,
                            after: m.after,
                        });
                    }
                }
                Err(e) => manual.push(e.to_string()),
            }
        }
    }
    Ok(WorkflowPlan {
        secret,
        migrations,
        needs,
        manual,
        notes,
    })
}

fn nothing_to_migrate(args: &Args, plan: Option<&WorkflowPlan>) -> anyhow::Error {
    let secret = plan.and_then(|p| p.secret.as_deref()).unwrap_or("?");
    UserError::new(format!(
        "no workflow passes secret {secret} in a way tsrotate can rewrite, and no other consumer was named"
    ))
    .hint(if args.secret.is_some() {
        "check --secret, or name other consumers with --consumer"
    } else {
        "name other consumers with --consumer"
    })
    .into()
}

/// Refuse a pattern that would not accept a subject some consumer presents.
fn check_covers(pattern: &str, needs: &[Need], whose: &str, fix: &str) -> Result<(), UserError> {
    if let Some(need) = needs
        .iter()
        .find(|n| !subject::matches(pattern, &n.pattern))
    {
        return Err(UserError::new(format!(
            "the subject pattern `{pattern}` of {whose} does not accept `{}`, which {} presents",
            need.pattern, need.consumer
        ))
        .hint(fix));
    }
    Ok(())
}

/// Check the sample token: claims first (pure), then whether its issuer is reachable and
/// publishes the key that signed it.
async fn check_token(
    path: &Path,
    requirements: &token::Requirements,
    now: OffsetDateTime,
) -> anyhow::Result<TokenReport> {
    let value: Secret = context::read_secret_file(path, "identity token")?;
    let claims = token::decode(&value).map_err(|e| {
        UserError::new(format!("`{}`: {e}", path.display()))
            .hint("give a file holding one identity token (a JWT: header.payload.signature)")
    })?;
    let mut mismatches: Vec<MismatchReport> = token::check(&claims, requirements, now)
        .into_iter()
        .map(|m| MismatchReport {
            message: m.to_string(),
            claim: m.claim,
            required: m.required,
            actual: m.actual,
        })
        .collect();
    // Only an issuer the identity would trust is asked (never one a stray token names).
    if claims.text("iss").as_deref() == Some(requirements.issuer.as_str())
        && let Err(e) =
            token::check_issuer(&requirements.issuer, claims.kid.as_deref(), ISSUER_TIMEOUT).await
    {
        mismatches.push(MismatchReport {
            claim: "iss".to_owned(),
            required: "an issuer that is reachable and publishes the token's signing key"
                .to_owned(),
            actual: Some(requirements.issuer.clone()),
            message: e.to_string(),
        });
    }
    Ok(TokenReport {
        accepted: mismatches.is_empty(),
        mismatches,
        audience_checked: requirements.audience.is_some(),
    })
}

/// The GitHub secrets to delete, built (and their token checked) before anything changes.
fn secret_sinks(
    args: &Args,
    repo: Option<&Repo>,
    secret: Option<&str>,
) -> anyhow::Result<Vec<ActionsSecretSink>> {
    let Some(repo) = repo else {
        return Ok(Vec::new());
    };
    if args.keep_secret {
        return Ok(Vec::new());
    }
    let Some(secret) = secret else {
        return Err(UserError::new(
            "the workflows no longer pass a Tailscale credential, so they do not say which secret to delete",
        )
        .hint("name it with --secret NAME, or pass --keep-secret")
        .into());
    };
    let Some(token) = settings::sink_logins()?.github_token else {
        return Err(UserError::new(format!(
            "no GitHub token to delete secret {secret} with once the workflows have moved"
        ))
        .hint("set GITHUB_TOKEN to a token that may write the repository's Actions secrets, or pass --keep-secret")
        .into());
    };
    let api = args
        .github_api_url
        .clone()
        .or_else(|| settings::env::var(settings::env::GITHUB_API_URL))
        .unwrap_or_else(|| github::DEFAULT_API_URL.to_owned());
    let mut targets = vec![Target::Repository {
        owner: repo.owner.clone(),
        repo: repo.name.clone(),
    }];
    targets.extend(args.secret_environment.iter().map(|e| Target::Environment {
        owner: repo.owner.clone(),
        repo: repo.name.clone(),
        environment: e.clone(),
    }));
    targets
        .into_iter()
        .map(|t| {
            ActionsSecretSink::new(t, secret, &api, token.clone())
                .map_err(|e| UserError::new(e.to_string()).into())
        })
        .collect()
}

/// Run `--verify-cmd`; a failure keeps the old credential. Its output is redacted of every
/// secret `in_play` (and of the variables passed to it), as `rotate` redacts its own.
async fn verify(cmd: &str, in_play: &[Secret]) -> anyhow::Result<()> {
    // The child gets no credential: the identity has none, and the old one is not its business.
    let nothing = Secret::new(String::new());
    let env = settings::child_env();
    let redactor = tsrotate::child::Redactor::new(in_play);
    tsrotate::child::run(tsrotate::child::Child {
        role: "verification command",
        program: tsrotate::child::Program::Shell(cmd),
        new_key: &nothing,
        stdin: false,
        env: &env,
        redactor: &redactor,
        timeout: tsrotate::rotate::world::VERIFY_TIMEOUT,
    })
    .await
    .map_err(|e| {
        Stopped::new(format!("{e}; the old credential is kept"))
            .hint("fix what the command checks, then run again with the same arguments")
            .into()
    })
}

/// On a terminal, ask whether the rewritten workflows have run; elsewhere, wait for
/// `--confirmed`.
fn ask_confirmation(human: bool) -> anyhow::Result<bool> {
    if !human || !context::interactive() {
        return Ok(false);
    }
    context::confirm(
        "Push the rewritten workflows and let them run. Has a run passed? (yes deletes the secret and revokes the old credential)",
        false,
    )
}

/// Revoke the old credential and confirm it is dead; `false` when it already was.
async fn revoke(client: &api::Client, id: &KeyId, human: bool) -> anyhow::Result<bool> {
    let revoked = match client.delete_key(id).await {
        Ok(()) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(api_error(&format!("revoking key {id}"), e)),
    };
    let (after, _) = plan::lookup(client, id)
        .await
        .map_err(|e| api_error(&format!("confirming key {id} is dead"), e))?;
    if after.is_live() {
        anyhow::bail!("the API still reports key {id} as live after deleting it");
    }
    if human {
        if revoked {
            println!("Revoked key {id}; the API confirms it is {after}.");
        } else {
            println!("Key {id} was already {after}.");
        }
    }
    Ok(revoked)
}

/// The revocation goes to the audit log, as `tsrotate revoke` records it; a log that cannot
/// be written is a warning, since the key is revoked either way.
fn audit_revoked(state_dir: &Path, id: &KeyId, already: bool) {
    match AuditLog::open(state_dir) {
        Ok(mut log) => {
            let event = Event::Revoked {
                key_id: id.clone(),
                already,
            };
            if let Err(e) = log.append(&context::os_user(), None, &event) {
                tracing::warn!("cannot write the audit log: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot open the audit log: {e}"),
    }
}

/// A unified diff with `a/` and `b/` names, as `git diff` shows it.
fn unified_diff(name: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The plan a person reads before `--apply`: every value from the checkout (workflow text,
/// environment names, secret names) or the API is escaped, so that a control character, an
/// escape sequence or a bidi override in a workflow cannot forge or hide a line of it.
fn render_plan(report: &Report, existing: Option<&FederatedIdentity>) {
    println!(
        "Migrating {} {} to a federated identity",
        report.key_type, report.key_id
    );
    println!("  issuer:  {}", escape(&report.issuer));
    println!("  subject: {}", escape(&report.subject));
    for why in &report.subject_broad_because {
        println!("           broader than one ref because {}", escape(why));
    }
    println!("  scopes:  {}", escape(&report.scopes.join(",")));
    println!(
        "  tags:    {}",
        if report.tags.is_empty() {
            "(none)".to_owned()
        } else {
            escape(&report.tags.join(",")).into_owned()
        }
    );
    match existing {
        Some(e) => println!(
            "  identity: {} (created by an earlier run), audience {}",
            e.id,
            escape(&e.audience)
        ),
        None => println!(
            "  identity: created with --apply; {PLACEHOLDER_ID} and {PLACEHOLDER_AUDIENCE} below stand for its ID and audience"
        ),
    }
    if let Some(secret) = &report.secret {
        println!(
            "  secret:  {} (deleted once the new workflows have run)",
            escape(secret)
        );
    }
    if !report.workflows.is_empty() {
        println!();
        for w in &report.workflows {
            print!("{}", escape_lines(&w.diff));
        }
    }
    if !report.notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &report.notes {
            println!("  {}", escape(n));
        }
    }
    if !report.manual.is_empty() {
        println!();
        println!("Changes tsrotate cannot make (the old credential is kept until --confirmed):");
        for m in &report.manual {
            println!("  {}", escape(m));
        }
    }
    if !report.consumers.is_empty() {
        println!();
        println!("Other consumers (the old credential is kept until --confirmed):");
        for c in &report.consumers {
            print!("{}", escape_lines(&indent(&c.change)));
        }
    }
    if let Some(check) = &report.token_check {
        println!();
        if check.accepted {
            println!("Sample identity token: would be accepted.");
        } else {
            println!("Sample identity token: would be refused:");
            for m in &check.mismatches {
                println!("  {}", escape(&m.message));
            }
        }
        if !check.audience_checked {
            println!(
                "  (its audience is not checked: Tailscale generates the identity's audience when it is created, and the consumer asks for a token with it)"
            );
        }
    }
}

/// `text` with each line escaped and its line breaks kept: for diffs and quoted changes.
fn escape_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (content, newline) = line
            .strip_suffix('\n')
            .map_or((line, ""), |content| (content, "\n"));
        out.push_str(&escape(content));
        out.push_str(newline);
    }
    out
}

fn print_json(report: &Report) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(std::io::stdout().lock(), report)?;
    println!();
    Ok(())
}
