//! `tsrotate scan`: find Tailscale credentials in files and git history.

use crate::args::GlobalArgs;
use crate::exit::ExitStatus;

/// Arguments of `tsrotate scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_global: &GlobalArgs, _args: &Args) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("scan is not implemented yet")
}
