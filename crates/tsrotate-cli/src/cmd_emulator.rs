//! `tsrotate emulator`: serve the built-in Tailscale API emulator.

use crate::args::GlobalArgs;
use crate::exit::ExitStatus;

/// Arguments of `tsrotate emulator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_global: &GlobalArgs, _args: &Args) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("the emulator is not wired in yet")
}
