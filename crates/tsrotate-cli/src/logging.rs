//! Diagnostics go to stderr through `tracing`; stdout is for results only.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
        .with_writer(OneLine)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && env::var(env::NO_COLOR).is_none(),
        )
        .with_target(false)
        .without_time()
        .init();
}

/// Stderr for diagnostics, one line per event whatever the message quotes. `tracing` escapes
/// an ESC in a message but not a line break, so a file name or a journal field with `\n` in
/// it could forge whole lines ("INFO: …") under a warning that names it (red team 3, F8).
/// Each event reaches the writer as one buffer ending in its newline; a line break or
/// carriage return before that is written as `\n` or `\r`.
struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(std::io::stderr())
    }
}

/// The writer of [`OneLine`].
struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                other => line.push(other),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_one_line_whatever_its_message_quotes() {
        let mut out = OneLineWriter(Vec::new());
        let event = b"WARN containment c1\nINFO: all clear\r\n";
        assert_eq!(out.write(event).unwrap(), event.len());
        assert_eq!(out.0, b"WARN containment c1\\nINFO: all clear\\r\n");
        assert_eq!(std::str::from_utf8(&out.0).unwrap().lines().count(), 1);
    }
}
