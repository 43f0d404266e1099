//! `tsrotate inspect`: which credential this is and what the API says of it.

use serde::Serialize;
use time::OffsetDateTime;
use tsrotate::api::Key;
use tsrotate::key::{Fingerprint, KeyId, KeyRef};
use tsrotate::rotate::plan::{self, KeyStatus};
use tsrotate::text::escape;

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::api_error;
use crate::context;
use crate::exit::ExitStatus;
use crate::settings::ApiSettings;

/// Arguments of `tsrotate inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key: the credential, its key ID, or `-` to read it from standard input.
    #[arg(value_name = "KEY | KEY_ID | -")]
    key: String,
}

#[derive(Serialize)]
struct Report {
    key_id: KeyId,
    kind: Option<String>,
    fingerprint: Option<Fingerprint>,
    tailnet_lock_wrapped: bool,
    attributes: Option<String>,
    tailnet: String,
    status: KeyStatus,
    reusable: Option<bool>,
    ephemeral: Option<bool>,
    preauthorized: Option<bool>,
    tags: Vec<String>,
    scopes: Vec<String>,
    description: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires: Option<OffsetDateTime>,
    owner: Option<String>,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let key = context::key_arg(&args.key)?;
    let id = key.key_id().clone();
    let client = ApiSettings::configured(
        global,
        &[
            "auth_keys:read",
            "oauth_keys:read",
            "api_access_tokens:read",
        ],
    )?
    .require_client()?;
    let (status, meta) = plan::lookup(&client, &id)
        .await
        .map_err(|e| api_error(&format!("looking up key {id}"), e))?;
    let report = build(&key, client.tailnet(), status, meta.as_ref());
    if global.format == Format::Human {
        print_human(&report);
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &report)?;
        println!();
    }
    Ok(ExitStatus::Success)
}

fn build(key: &KeyRef, tailnet: &str, status: KeyStatus, meta: Option<&Key>) -> Report {
    let credential = key.credential();
    let caps = meta
        .filter(|k| k.capabilities.is_some())
        .map(Key::device_capabilities);
    // The API knows more than the string: `tskey-api-` is both a person's API access token and
    // an OAuth client's access token. Same names as `keys list` and `audit`.
    let kind = meta
        .map(tsrotate::hygiene::Kind::of)
        .filter(|k| *k != tsrotate::hygiene::Kind::Unknown)
        .map(|k| k.slug().to_owned())
        .or_else(|| credential.map(|c| c.kind().slug().to_owned()));
    Report {
        key_id: key.key_id().clone(),
        kind,
        fingerprint: credential.map(tsrotate::key::Credential::fingerprint),
        tailnet_lock_wrapped: credential.is_some_and(tsrotate::key::Credential::is_wrapped),
        attributes: credential.and_then(|c| c.attributes().map(str::to_owned)),
        tailnet: tailnet.to_owned(),
        status,
        reusable: caps.as_ref().map(|c| c.reusable),
        ephemeral: caps.as_ref().map(|c| c.ephemeral),
        preauthorized: caps.as_ref().map(|c| c.preauthorized),
        tags: caps
            .map(|c| c.tags)
            .or_else(|| meta.map(|k| k.tags.clone()))
            .unwrap_or_default(),
        scopes: meta.map(|k| k.scopes.clone()).unwrap_or_default(),
        description: meta.and_then(|k| k.description.clone()),
        created: meta.and_then(|k| k.created),
        expires: meta.and_then(|k| k.expires),
        owner: meta.map(|k| {
            if k.is_tailnet_owned() {
                "tailnet".to_owned()
            } else {
                k.user_id.clone().unwrap_or_default()
            }
        }),
    }
}

fn print_human(r: &Report) {
    println!("key ID        {}", r.key_id);
    println!("kind          {}", r.kind.as_deref().unwrap_or("unknown"));
    if let Some(fp) = r.fingerprint {
        println!("fingerprint   {fp}");
    }
    if r.tailnet_lock_wrapped {
        println!("tailnet lock  wrapped (signed)");
    }
    if let Some(a) = &r.attributes {
        println!("attributes    {a}");
    }
    println!("tailnet       {}", r.tailnet);
    println!("status        {}", r.status);
    if let (Some(reusable), Some(ephemeral), Some(pre)) = (r.reusable, r.ephemeral, r.preauthorized)
    {
        println!(
            "capabilities  {}, {}, {}",
            if reusable { "reusable" } else { "single-use" },
            if ephemeral {
                "ephemeral"
            } else {
                "not ephemeral"
            },
            if pre {
                "preauthorized"
            } else {
                "needs approval"
            }
        );
    }
    if !r.tags.is_empty() {
        println!("tags          {}", escape(&r.tags.join(", ")));
    }
    if !r.scopes.is_empty() {
        println!("scopes        {}", escape(&r.scopes.join(", ")));
    }
    if let Some(d) = &r.description {
        println!("description   {}", escape(d));
    }
    if let Some(c) = r.created {
        println!("created       {c}");
    }
    if let Some(e) = r.expires {
        let days = (e - OffsetDateTime::now_utc()).whole_days();
        println!(
            "expires       {e} ({})",
            if days >= 0 {
                format!("in {days} days")
            } else {
                format!("{} days ago", -days)
            }
        );
    }
    if let Some(o) = &r.owner {
        println!("owner         {}", escape(o));
    }
}
