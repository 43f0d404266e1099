//! The `tsrotate` binary: parse arguments, resolve settings, call the library, render, exit.
//!
//! Exit codes (documented in the README and `--help`):
//! 0 done or clean, 1 findings or a rotation that did not complete, 2 usage, input or
//! configuration error, 3 unexpected failure.

mod args;
mod cmd_emulator;
mod cmd_scan;
mod exit;
mod logging;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.global);
    let result = run(cli);
    exit::finish(result)
}

fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let Cli { global, command } = cli;
    match command {
        Command::Scan(args) => cmd_scan::run(&global, &args),
        Command::Emulator(args) => runtime()?.block_on(cmd_emulator::run(&global, &args)),
    }
}

/// The async runtime for commands that talk to the network. Two worker threads: the work is
/// I/O-bound and CI machines have two cores.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
