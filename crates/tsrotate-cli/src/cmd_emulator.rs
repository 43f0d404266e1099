//! `tsrotate emulator`: serve the built-in Tailscale API emulator.
//!
//! Prints exactly one JSON line on stdout once it accepts connections, with its URL and
//! bootstrap credentials (fake, full access), then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::args::GlobalArgs;
use crate::exit::{ExitStatus, UserError};

/// Arguments of `tsrotate emulator`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Keep the emulator's state in FILE across restarts (mode 0600; keys created through the
    /// API are stored only as hashes, the fake bootstrap credentials in plain text).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The tailnet's name, accepted in API paths besides `-`.
    #[arg(long, default_value = tsrotate_emulator::DEFAULT_TAILNET)]
    tailnet: String,
}

pub(crate) async fn run(_global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UserError::new(format!("cannot listen on {}: {e}", args.listen)))?;
    let options = tsrotate_emulator::Options {
        tailnet: args.tailnet.clone(),
        state_file: args.state.clone(),
    };
    let server = tsrotate_emulator::serve(listener, options)
        .await
        .context("starting the emulator")?;
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
