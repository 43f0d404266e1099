//! Diagnostics go to stderr through `tracing`; stdout is for results only.

use tracing_subscriber::EnvFilter;

use crate::args::GlobalArgs;
use crate::settings::env;

pub(crate) fn init(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,tsrotate=info",
        (false, _) => "debug,hyper=info,reqwest=info,h2=info,rustls=info",
    };
    let filter = env::var(env::TSROTATE_LOG)
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && env::var(env::NO_COLOR).is_none(),
        )
        .with_target(false)
        .without_time()
        .init();
}
