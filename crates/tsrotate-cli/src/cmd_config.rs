//! `tsrotate config check|show`: validate the configuration, see what tsrotate would use.

use serde::Serialize;
use tsrotate::api::Auth;
use tsrotate::key::KeyId;
use tsrotate::rotate::places;
use tsrotate::rotate::plan::{self, KeyStatus};

use crate::args::{Format, GlobalArgs};
use crate::context;
use crate::exit::{ExitStatus, UserError};
use crate::settings::{self, ApiSettings, Need, env};
use crate::table;

/// Arguments of `tsrotate config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate the file, read every place it names and check that each could be written,
    /// changing nothing. Exit 1 when a place cannot be read or written (a missing folder, a
    /// field that cannot be added) or the API cannot be reached.
    Check,
    /// Print the settings tsrotate resolves, with where each comes from; secrets redacted.
    Show,
}

#[derive(Serialize)]
struct PlaceCheck {
    credential: String,
    place: String,
    /// `ok`, `write-only`, `empty`, `unwritable` or `error`.
    state: &'static str,
    key_id: Option<KeyId>,
    key_status: Option<KeyStatus>,
    error: Option<String>,
}

#[derive(Serialize)]
struct CheckReport {
    config: String,
    api: String,
    api_ok: bool,
    places: Vec<PlaceCheck>,
}

pub(crate) async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    match args.command {
        Command::Check => check(global).await,
        Command::Show => show(global),
    }
}

async fn check(global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let config = settings::load_config(global, Need::Required)?.expect("required");
    let path = settings::config_path(global)
        .map(|(p, _)| p.display().to_string())
        .unwrap_or_default();
    let api = ApiSettings::resolve(&["auth_keys:read"], Some(&config))?;
    let client = api.client()?;
    let (api_line, api_ok) = match &client {
        None => ("no Tailscale API credentials configured".to_owned(), false),
        Some(c) => match c.list_keys(false).await {
            Ok(_) => (
                format!("ok ({} as {})", c.base_url(), c.auth().describe()),
                true,
            ),
            Err(e) => (format!("{e}"), false),
        },
    };
    let credentials = settings::sink_logins()?;
    let mut checks = Vec::new();
    for credential in &config.credentials {
        for reading in places::read(credential, &credentials).await {
            let place = tsrotate::sink::describe(&reading.sink.spec);
            let key_id = reading.key_id();
            let key_status = match (&key_id, &client) {
                (Some(id), Some(c)) => plan::lookup(c, id).await.ok().map(|(s, _)| s),
                _ => None,
            };
            let (state, error) = match &reading.snapshot {
                Ok(s) if s.value.is_some() => ("ok", None),
                Ok(_) => ("empty", None),
                Err(tsrotate::sink::Error {
                    kind: tsrotate::sink::ErrorKind::WriteOnly,
                    ..
                }) => ("write-only", None),
                Err(e) => ("error", Some(with_hint(e))),
            };
            // A place that cannot be written stops every rotation of it before a key is
            // minted: say so here first.
            let (state, error) = match &reading.writable {
                Err(e) => ("unwritable", Some(e.to_string())),
                Ok(()) => (state, error),
            };
            checks.push(PlaceCheck {
                credential: credential.name.clone(),
                place,
                state,
                key_id,
                key_status,
                error,
            });
        }
    }
    let failed = !api_ok
        || checks
            .iter()
            .any(|c| c.state == "error" || c.state == "unwritable");
    let report = CheckReport {
        config: path,
        api: api_line,
        api_ok,
        places: checks,
    };
    if global.format == Format::Human {
        print!("{}", render_check(&report, config.credentials.len()));
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &report)?;
        println!();
    }
    Ok(if failed {
        ExitStatus::Incomplete
    } else {
        ExitStatus::Success
    })
}

#[derive(Serialize)]
struct Setting {
    name: &'static str,
    value: String,
    source: String,
}

fn show(global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let located = settings::config_path(global);
    let config = settings::load_config(global, Need::Optional)?;
    let api =
        ApiSettings::resolve(&[], config.as_ref()).map_err(|e| UserError::new(e.to_string()))?;
    let source = |var: &str, in_config: bool| {
        if env::var(var).is_some() {
            format!("env {var}")
        } else if in_config {
            "configuration".to_owned()
        } else {
            "default".to_owned()
        }
    };
    let section = config.as_ref().map(|c| &c.tailscale);
    let auth = match &api.auth {
        Some(a @ Auth::OAuthClient { .. }) => (a.describe(), "OAuth client".to_owned()),
        Some(a @ Auth::ApiAccessToken(_)) => (a.describe(), "personal API access token".to_owned()),
        Some(a @ Auth::Federated { .. }) => (a.describe(), "federated identity".to_owned()),
        None => ("none".to_owned(), "not configured".to_owned()),
    };
    let state_dir = context::state_dir(global)?;
    let settings = vec![
        Setting {
            name: "config",
            value: located
                .as_ref()
                .map_or_else(|| "none".to_owned(), |(p, _)| p.display().to_string()),
            source: located.as_ref().map_or_else(
                || "not found".to_owned(),
                |(_, origin)| origin.describe().to_owned(),
            ),
        },
        Setting {
            name: "base_url",
            value: api.base_url.clone(),
            source: source(
                env::TAILSCALE_BASE_URL,
                section.is_some_and(|s| s.base_url.is_some()),
            ),
        },
        Setting {
            name: "tailnet",
            value: api.tailnet.clone(),
            source: source(
                env::TAILSCALE_TAILNET,
                section.is_some_and(|s| s.tailnet.is_some()),
            ),
        },
        Setting {
            name: "auth",
            value: auth.0,
            source: auth.1,
        },
        Setting {
            name: "state_dir",
            value: state_dir.display().to_string(),
            source: if global.state_dir.is_some() {
                "--state-dir".to_owned()
            } else {
                source(env::TSROTATE_STATE_DIR, false)
            },
        },
        Setting {
            name: "credentials",
            value: config
                .as_ref()
                .map(|c| {
                    c.credentials
                        .iter()
                        .map(|c| format!("{} ({} places)", c.name, c.sinks.len()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            source: "configuration".to_owned(),
        },
    ];
    if global.format == Format::Human {
        let rows: Vec<Vec<String>> = settings
            .iter()
            .map(|s| vec![s.name.to_owned(), s.value.clone(), s.source.clone()])
            .collect();
        print!("{}", table::render(&["SETTING", "VALUE", "SOURCE"], &rows));
    } else {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &settings)?;
        println!();
    }
    Ok(ExitStatus::Success)
}

/// `config check` as people read it: what was checked, then one row per place, laid out by
/// the CLI's one table renderer (which escapes every cell: place names and errors come from
/// the configuration and the files).
fn render_check(report: &CheckReport, credentials: usize) -> String {
    let summary = vec![
        vec![
            "configuration".to_owned(),
            format!("{} (valid, {credentials} credential(s))", report.config),
        ],
        vec!["Tailscale API".to_owned(), report.api.clone()],
    ];
    let rows: Vec<Vec<String>> = report
        .places
        .iter()
        .map(|c| {
            let detail = match (c.state, &c.key_id, &c.error) {
                ("error", _, Some(e)) => format!("ERROR: {e}"),
                ("unwritable", _, Some(e)) => format!("CANNOT BE WRITTEN: {e}"),
                ("ok", Some(id), _) => format!(
                    "holds key {id}{}",
                    c.key_status.map(|s| format!(" ({s})")).unwrap_or_default()
                ),
                ("ok", None, _) => "holds a value that is not a Tailscale credential".to_owned(),
                ("write-only", _, _) => {
                    "reachable only by writing (its value cannot be read back)".to_owned()
                }
                _ => "empty: the first rotation fills it".to_owned(),
            };
            vec![c.credential.clone(), c.place.clone(), detail]
        })
        .collect();
    let mut out = table::render(&[], &summary);
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table::render(&["CREDENTIAL", "PLACE", "STATE"], &rows));
    }
    out
}

/// A place's error with its advice, on the one line a check shows.
fn with_hint(error: &tsrotate::sink::Error) -> String {
    match &error.hint {
        Some(hint) => format!("{error} (hint: {hint})"),
        None => error.to_string(),
    }
}
