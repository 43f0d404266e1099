//! `tsrotate emulator`: serve the built-in Tailscale API emulator.
//!
//! Prints exactly one JSON line on stdout once it accepts connections, with its URL and
//! bootstrap credentials (fake, full access), then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::args::GlobalArgs;
use crate::exit::{ExitStatus, UserError};

/// Arguments of `tsrotate emulator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on; port 0 picks a free port. Only loopback addresses unless
    /// --allow-remote.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Serve a non-loopback address. Anyone who can reach it gets the emulator's API; its
    /// `/_emulator/` admin routes then need the `admin_token` printed in the ready line.
    #[arg(long)]
    allow_remote: bool,
    /// Keep the emulator's state in FILE across restarts (mode 0600; keys created through the
    /// API are stored only as hashes, the fake bootstrap credentials in plain text).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The tailnet's name, accepted in API paths besides `-`.
    #[arg(long, default_value = tsrotate_emulator::DEFAULT_TAILNET)]
    tailnet: String,
}

pub(crate) async fn run(_global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let exposure = if args.listen.ip().is_loopback() {
        tsrotate_emulator::Exposure::Loopback
    } else if args.allow_remote {
        tsrotate_emulator::Exposure::Network
    } else {
        return Err(UserError::new(format!(
            "refusing to listen on {}: it is not a loopback address, and the emulator's admin \
             routes move its clock and show its state to anyone who can reach it",
            args.listen
        ))
        .hint(
            "listen on 127.0.0.1 (the default), or add --allow-remote to serve the network \
             with an admin token required on /_emulator/ routes",
        )
        .into());
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UserError::new(format!("cannot listen on {}: {e}", args.listen)))?;
    let options = tsrotate_emulator::Options {
        tailnet: args.tailnet.clone(),
        state_file: args.state.clone(),
        exposure,
    };
    let server = tsrotate_emulator::serve(listener, options)
        .await
        .map_err(state_error)?;
    let ready = serde_json::to_string(server.bootstrap())?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}")?;
        stdout.flush()?;
    }
    tracing::info!(url = server.url(), "emulator ready");
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(ExitStatus::Success)
}

/// A `--state` file that cannot be used is the user's input (exit 2), said in words with the
/// OS's reason; a failure to start the server itself is unexpected (exit 3).
fn state_error(error: tsrotate_emulator::Error) -> anyhow::Error {
    use tsrotate_emulator::Error;
    let hint = match &error {
        Error::ReadState { .. } | Error::WriteState { .. } => {
            "check that the file and its folder exist and are readable and writable by you"
        }
        Error::ParseState { .. } | Error::StateVersion { .. } => {
            "it was not written by this version of the emulator: move it away to start afresh"
        }
        Error::TailnetMismatch { .. } => "give the same --tailnet as when it was created",
        _ => return anyhow::Error::new(error).context("starting the emulator"),
    };
    // The chain, not just the top message: "cannot read state file `x`: Permission denied".
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    UserError::new(message).hint(hint).into()
}

/// Serve until SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
