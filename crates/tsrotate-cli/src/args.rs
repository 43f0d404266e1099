//! Command-line arguments (clap). Only shapes here: meaning is resolved in `settings.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Rotate Tailscale credentials without breaking what uses them.
///
/// Exit codes: 0 done or clean, 1 findings or a rotation that did not complete,
/// 2 usage, input or configuration error, 3 unexpected failure.
#[derive(Debug, Parser)]
#[command(name = "tsrotate", version, about, long_about = None, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
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
    /// [env: TSROTATE_STATE_DIR; default: $XDG_STATE_HOME/tsrotate].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Find Tailscale credentials in files and git history.
    Scan(crate::cmd_scan::Args),
    /// Serve the built-in Tailscale API emulator (for tests, demos and trying tsrotate out).
    Emulator(crate::cmd_emulator::Args),
}
