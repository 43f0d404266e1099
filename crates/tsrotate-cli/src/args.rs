//! Command-line arguments (clap). Only shapes here: meaning is resolved in `settings.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Rotate Tailscale credentials without breaking what uses them.
///
/// Exit codes: 0 done or clean, 1 findings or a rotation that did not complete,
/// 2 usage, input or configuration error, 3 unexpected failure, 141 the reader of stdout
/// went away.
#[derive(Debug, Parser)]
#[command(name = "tsrotate", version, about, long_about = None, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// More detail on stderr (-v: info, -vv: debug). `TSROTATE_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// How to write results on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    pub(crate) format: Format,
    /// Where rotation journals, locks and the audit log live
    /// [env: `TSROTATE_STATE_DIR`; default: `$XDG_STATE_HOME/tsrotate`].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// The configuration file of managed credentials and their places
    /// [env: `TSROTATE_CONFIG`; default: `~/.config/tsrotate/config.toml`. A `./tsrotate.toml`
    /// is read only when named: it could have come with a checkout].
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Human,
    /// One JSON document.
    Json,
    /// SARIF 2.1.0 (scan only).
    Sarif,
}

// Without the `emulator` feature, `demo` and `emulator` stay as hidden commands that take any
// arguments and say they were not built in (exit 2), rather than "unrecognized subcommand".
#[cfg(feature = "emulator")]
type DemoArgs = crate::cmd_demo::Args;
#[cfg(feature = "emulator")]
type EmulatorArgs = crate::cmd_emulator::Args;
#[cfg(not(feature = "emulator"))]
type DemoArgs = crate::not_built::Args;
#[cfg(not(feature = "emulator"))]
type EmulatorArgs = crate::not_built::Args;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check the tailnet's credential hygiene; exit 1 on findings at or above --fail-on.
    Audit(crate::cmd_audit::Args),
    /// Validate the configuration file and read its places (`check`), or show the settings.
    Config(crate::cmd_config::Args),
    /// Run the whole leak response against the built-in emulator: see what tsrotate does.
    #[cfg_attr(not(feature = "emulator"), command(hide = true))]
    Demo(DemoArgs),
    /// Which credential this is and what the API says of it. Never prints the secret.
    Inspect(crate::cmd_inspect::Args),
    /// The tailnet's keys: kind, owner, tags, expiry, and whether tsrotate minted them.
    Keys(crate::cmd_keys::Args),
    /// Replace a key everywhere it is used, verify, then revoke the old one.
    Rotate(crate::cmd_rotate::Args),
    /// Finish unfinished rotations after a crash, a kill or a failure.
    Resume(crate::cmd_resume::Args),
    /// Undo a rotation that has not revoked the old key yet, or a containment's
    /// deauthorization or dropped routes.
    #[command(
        after_help = "Exit codes: 0 done; 1 not complete (the output says what to run next; for a containment: a device changed since and was left alone, or a restore failed); 2 usage or input error, nothing changed (for a containment that expired or deleted devices: the API cannot undo that, and each device is named with what it needs); 3 unexpected failure."
    )]
    Rollback(crate::cmd_rollback::Args),
    /// Give up a rotation that can be neither resumed nor rolled back; its keys stay as they are.
    Abandon(crate::cmd_abandon::Args),
    /// Move an API access token's consumers to a new, scoped OAuth client, then revoke it.
    #[command(name = "migrate-to-oauth")]
    MigrateToOauth(crate::cmd_migrate::Args),
    /// Move a credential's consumers (GitHub Actions workflows, containerboot, the operator)
    /// to a federated identity that stores no secret; dry run unless --apply.
    #[command(
        name = "migrate-to-federated",
        after_help = "Exit codes: 0 done (the dry run shown, switched and waiting for --confirmed, or finished); 1 the sample token would be refused, the verification failed or the identity's creation got no answer (the old credential is kept: run again); 2 usage or input error, nothing changed; 3 unexpected failure."
    )]
    MigrateToFederated(crate::cmd_migrate_federated::Args),
    /// Each managed credential: current key, expiry, places in sync, last rotation, next due;
    /// then the containments, unfinished first. Exit 1 when something is due, broken or out of
    /// sync, or a containment is unfinished.
    Status(crate::cmd_status::Args),
    /// Revoke a key and confirm it is dead, without replacing it.
    Revoke(crate::cmd_revoke::Args),
    /// Find the devices a leaked auth key may have joined, ranked with evidence. Exit 1 when
    /// some rank at or above --min-confidence.
    #[command(
        after_help = "Exit codes: 0 nothing at or above --min-confidence, or the --action finished on every candidate; 1 candidates and no action taken (a dry run), or an action not finished (`tsrotate resume ID`); 2 usage or input error, or a scope the credential lacks (named); 3 unexpected failure."
    )]
    Contain(crate::cmd_contain::Args),
    /// Find Tailscale credentials in files and git history.
    Scan(crate::cmd_scan::Args),
    /// Serve the built-in Tailscale API emulator (for tests, demos and trying tsrotate out).
    #[cfg_attr(not(feature = "emulator"), command(hide = true))]
    Emulator(EmulatorArgs),
}
