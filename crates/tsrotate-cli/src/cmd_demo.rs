//! `tsrotate demo`: the whole leak response against the built-in emulator, in seconds.
//!
//! Starts the emulator in-process, mints an auth key there, writes a small sample project
//! that "leaked" it in several kinds of config files, and rotates it with the normal output.
//! The project folder is kept so that the person can look at the files afterwards.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use tsrotate::api::{Auth, ClientBuilder, CreateAuthKey, DeviceCreateCapabilities};
use tsrotate::key::{KeyRef, Secret};
use tsrotate::rotate::plan::{Overrides, Request};

use crate::args::{Format, GlobalArgs};
use crate::cmd_rotate::{self, Options};
use crate::context;
use crate::exit::ExitStatus;

/// Arguments of `tsrotate demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to create the sample project; default: a new temporary folder.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

#[allow(
    clippy::too_many_lines,
    reason = "a script: set up, explain, rotate, explain"
)]
pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = tsrotate_emulator::serve(listener, tsrotate_emulator::Options::default())
        .await
        .context("starting the emulator")?;
    let boot = server.bootstrap().clone();

    // Someone with admin rights made a key for the web servers, and it leaked.
    let admin = ClientBuilder::new(Auth::ApiAccessToken(Secret::new(boot.api_key.clone())))
        .base_url(&boot.url)
        .build()?;
    let mut request = CreateAuthKey::new(DeviceCreateCapabilities {
        reusable: true,
        ephemeral: false,
        preauthorized: true,
        tags: vec!["tag:server".into()],
    });
    request.expiry_seconds = Some(30 * 86_400);
    request.description = Some("web servers".into());
    let leaked = admin
        .create_auth_key(&request)
        .await
        .context("minting the demo key")?;

    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("tsrotate-demo-")
            .tempdir()?
            .keep(),
    };
    write_sample_project(&dir, &leaked.secret)?;
    let human = global.format == Format::Human;
    if human {
        println!(
            "tsrotate demo: a Tailscale API emulator runs at {} (tailnet {}).",
            boot.url, boot.tailnet
        );
        println!(
            "Auth key {} leaked: it sits in 5 config files of the sample project in {}",
            leaked.key.id,
            dir.display()
        );
        println!(
            "tsrotate authenticates as OAuth client {} and responds:\n",
            boot.oauth_client_id
        );
    }

    // tsrotate itself runs on a scoped OAuth client, as it should in production.
    let client = ClientBuilder::new(Auth::OAuthClient {
        client_id: boot.oauth_client_id.clone(),
        client_secret: Secret::new(boot.oauth_client_secret.clone()),
        scopes: vec!["auth_keys".into()],
    })
    .base_url(&boot.url)
    .build()?;
    let mut global = global.clone();
    global.state_dir = Some(
        global
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join(".tsrotate-state")),
    );
    let verify = format!(
        "test -n \"$TSROTATE_NEW_KEY\" && grep -qF \"$TSROTATE_NEW_KEY\" {}",
        shell_quote(&dir.join("app/.env").display().to_string())
    );
    let request = Request {
        key: KeyRef::Credential(tsrotate::key::Credential::parse(
            leaked.secret.expose_secret(),
        )?),
        roots: vec![dir.clone()],
        configured: Vec::new(),
        overrides: Overrides::default(),
        revoke_first: false,
        verify_cmd: Some(verify),
        user: context::os_user(),
        credential: None,
        kind_hint: None,
        migrate_to: None,
        webhook_endpoint: None,
        looked_up: None,
        skip_unwritable: false,
    };
    let status = cmd_rotate::rotate(
        &global,
        &client,
        request,
        Options {
            dry_run: false,
            yes: true,
            new_key_file: None,
            json_into: None,
        },
        // No place credentials of the person's; children get the usual cleaned environment.
        tsrotate::sink::Logins {
            child_env: crate::settings::child_env(),
            ..tsrotate::sink::Logins::default()
        },
    )
    .await?;
    if human {
        let old = admin.get_key(&leaked.key.id).await;
        let state = match old {
            Ok(k) if k.invalid => "invalid (revoked)".to_owned(),
            Ok(_) => "still live".to_owned(),
            Err(e) if e.is_not_found() => "gone".to_owned(),
            Err(e) => format!("unknown ({e})"),
        };
        println!(
            "\nThe API now says the leaked key {} is {state}.",
            leaked.key.id
        );
        println!("Look at the files: {}", dir.display());
        println!(
            "  grep -rn tskey- {}   (the new key, only in the files tsrotate rewrote)",
            dir.display()
        );
        println!(
            "  cat {}/.tsrotate-state/audit.jsonl   (what happened, without secrets)",
            dir.display()
        );
        println!("The emulator stops with this command; its keys were never real.");
    }
    server.shutdown().await;
    Ok(status)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sample project: one leaked key in the places keys usually end up.
#[allow(
    clippy::disallowed_methods,
    reason = "the demo creates its own sample files, not a consumer's"
)]
fn write_sample_project(dir: &Path, key: &Secret) -> std::io::Result<()> {
    let k = key.expose_secret();
    let files: [(&str, String); 6] = [
        (
            "app/.env",
            format!("APP_ENV=production\nTS_AUTHKEY={k}\nLOG_LEVEL=info\n"),
        ),
        (
            "deploy/values.yaml",
            format!(
                "tailscale:\n  hostname: web-1\n  authKey: \"{k}\"\n  tags: [\"tag:server\"]\n"
            ),
        ),
        (
            "config/settings.json",
            format!(
                "{{\n  \"tailscale\": {{\n    \"authkey\": \"{k}\",\n    \"advertise_tags\": [\"tag:server\"]\n  }}\n}}\n"
            ),
        ),
        (
            "systemd/tailscaled.service.d/override.conf",
            format!("[Service]\nEnvironment=TS_AUTHKEY={k}\n"),
        ),
        (
            "scripts/bootstrap.sh",
            format!(
                "#!/bin/sh\nset -eu\ntailscale up --authkey='{k}' --hostname=web-1 --advertise-tags=tag:server\n"
            ),
        ),
        (
            "README.md",
            "# web servers\n\nThe auth key is in app/.env (it should not be in git).\n".to_owned(),
        ),
    ];
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
    }
    std::fs::set_permissions(dir.join("app/.env"), std::fs::Permissions::from_mode(0o600))?;
    std::fs::set_permissions(
        dir.join("scripts/bootstrap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    Ok(())
}
