//! The `tsrotate` binary: parse arguments, resolve settings, call the library, render, exit.
//!
//! Exit codes (documented in the README and `--help`):
//! 0 done or clean, 1 findings or a rotation that did not complete, 2 usage, input or
//! configuration error, 3 unexpected failure, 141 the reader of stdout went away.

// The binary is where output happens: stdout for results, stderr for the rest.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod cmd_abandon;
mod cmd_audit;
mod cmd_config;
mod cmd_contain;
#[cfg(feature = "emulator")]
mod cmd_demo;
#[cfg(feature = "emulator")]
mod cmd_emulator;
mod cmd_inspect;
mod cmd_keys;
mod cmd_migrate;
mod cmd_migrate_federated;
mod cmd_resume;
mod cmd_revoke;
mod cmd_rollback;
mod cmd_rotate;
mod cmd_scan;
mod cmd_status;
mod context;
mod due;
mod exit;
mod logging;
#[cfg(not(feature = "emulator"))]
mod not_built;
mod rotation;
mod settings;
mod table;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::ExitStatus;

fn main() -> ExitCode {
    exit::quiet_on_closed_stdout();
    let cli = Cli::parse();
    logging::init(&cli.global);
    let result = run(cli);
    exit::finish(result)
}

fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let Cli { global, command } = cli;
    match command {
        Command::Scan(args) => cmd_scan::run(&global, &args),
        Command::Audit(args) => runtime()?.block_on(cmd_audit::run(&global, &args)),
        Command::Keys(args) => runtime()?.block_on(cmd_keys::run(&global, &args)),
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => runtime()?.block_on(cmd_emulator::run(&global, &args)),
        #[cfg(not(feature = "emulator"))]
        Command::Emulator(_) => not_built::run("emulator"),
        Command::Config(args) => runtime()?.block_on(cmd_config::run(&global, &args)),
        #[cfg(feature = "emulator")]
        Command::Demo(args) => runtime()?.block_on(cmd_demo::run(&global, &args)),
        #[cfg(not(feature = "emulator"))]
        Command::Demo(_) => not_built::run("demo"),
        Command::MigrateToOauth(args) => runtime()?.block_on(cmd_migrate::run(&global, &args)),
        Command::MigrateToFederated(args) => {
            runtime()?.block_on(cmd_migrate_federated::run(&global, &args))
        }
        Command::Inspect(args) => runtime()?.block_on(cmd_inspect::run(&global, &args)),
        Command::Rotate(args) => runtime()?.block_on(cmd_rotate::run(&global, &args)),
        Command::Resume(args) => runtime()?.block_on(cmd_resume::run(&global, &args)),
        Command::Rollback(args) => runtime()?.block_on(cmd_rollback::run(&global, &args)),
        Command::Abandon(args) => runtime()?.block_on(cmd_abandon::run(&global, &args)),
        Command::Status(args) => runtime()?.block_on(cmd_status::run(&global, &args)),
        Command::Revoke(args) => runtime()?.block_on(cmd_revoke::run(&global, &args)),
        Command::Contain(args) => runtime()?.block_on(cmd_contain::run(&global, &args)),
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
