//! `tsrotate migrate-to-oauth`: move an API access token's consumers to a scoped OAuth client.
//!
//! A personal API access token carries its owner's full rights and dies with their account.
//! This creates an OAuth client with only the scopes named, puts its secret wherever the token
//! was, verifies, and revokes the token: the same protocol as a rotation, so a crash is
//! resumable and nothing is revoked before every place holds the client.

use std::path::PathBuf;

use tsrotate::rotate::plan::{MigrateTo, Overrides, Request};

use crate::args::GlobalArgs;
use crate::cmd_rotate::{self, Options};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::settings::{self, ApiSettings, Need};

/// Arguments of `tsrotate migrate-to-oauth`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The API access token: the credential, its key ID, or `-` for standard input.
    #[arg(value_name = "KEY | KEY_ID | -")]
    key: String,
    /// Scopes of the new OAuth client: only what the consumers need (`a,b`).
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// Tags the client may assign (required with `auth_keys` or `devices:core`).
    #[arg(long, value_name = "TAGS", value_parser = context::parse_tags)]
    tags: Option<context::Tags>,
    /// The new client's description.
    #[arg(long)]
    description: Option<String>,
    /// A file or folder to search for the token.
    #[arg(long = "in", value_name = "PATH", required = true)]
    in_paths: Vec<PathBuf>,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// A shell command that must succeed with the new secret (in `TSROTATE_NEW_KEY`) before the
    /// token is revoked.
    #[arg(long, value_name = "CMD")]
    verify_cmd: Option<String>,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    if let Some(c) = key
        .credential()
        .filter(|c| c.kind() != &tsrotate::key::KeyKind::ApiAccessToken)
    {
        return Err(UserError::new(format!(
            "{} is a {}, not an API access token",
            c.key_id(),
            c.kind()
        ))
        .into());
    }
    let tags = args.tags.clone().map(|t| t.0).unwrap_or_default();
    let needs_tags = args
        .scopes
        .iter()
        .any(|s| matches!(s.as_str(), "auth_keys" | "devices:core" | "devices" | "all"));
    if needs_tags && tags.is_empty() {
        return Err(UserError::new(
            "OAuth clients with `auth_keys` or `devices:core` must have tags",
        )
        .hint("add --tags tag:name")
        .into());
    }
    let config = settings::load_config(global, Need::ApiOnly)?;
    // The token that creates the client must itself hold every scope the client gets.
    let mut scopes: Vec<&str> = vec!["oauth_keys", "api_access_tokens"];
    for scope in &args.scopes {
        if !scopes.contains(&scope.as_str()) {
            scopes.push(scope);
        }
    }
    let client = ApiSettings::resolve(&scopes, config.as_ref())?.require_client()?;
    let request = Request {
        key,
        roots: args.in_paths.clone(),
        configured: Vec::new(),
        overrides: Overrides::default(),
        revoke_first: false,
        verify_cmd: args.verify_cmd.clone(),
        user: context::os_user(),
        credential: None,
        kind_hint: Some(tsrotate::key::KeyKind::ApiAccessToken),
        migrate_to: Some(MigrateTo {
            scopes: args.scopes.clone(),
            tags,
            description: args.description.clone(),
        }),
        webhook_endpoint: None,
        looked_up: None,
        skip_unwritable: false,
    };
    let options = Options {
        dry_run: args.dry_run,
        yes: args.yes,
        new_key_file: None,
        json_into: None,
    };
    cmd_rotate::rotate(global, &client, request, options, settings::sink_logins()?).await
}
