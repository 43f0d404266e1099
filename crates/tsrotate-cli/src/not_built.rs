//! `demo` and `emulator` in a binary built without the `emulator` feature (a slim production
//! build): they say so and exit 2, whatever their arguments.

use crate::exit::{ExitStatus, UserError};

/// Any arguments: the command is refused before they would mean anything.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        hide = true,
        value_name = "ARGS"
    )]
    _args: Vec<String>,
}

pub(crate) fn run(command: &str) -> anyhow::Result<ExitStatus> {
    Err(UserError::new(format!(
        "`tsrotate {command}` is not built into this binary: it was compiled without the \
         `emulator` feature"
    ))
    .hint(
        "use a build with the emulator (the default: `cargo install --locked --path \
         crates/tsrotate-cli`)",
    )
    .into())
}
