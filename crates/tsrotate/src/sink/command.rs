//! A command that puts the new value wherever it belongs (`gh secret set`, a deploy hook,
//! `systemctl restart` behind a wrapper): the escape hatch for places without a sink.
//!
//! The command runs without a shell, exactly as configured (`run[0]` with `run[1..]` as
//! arguments), with the value
//!
//! - on its standard input, exactly the value with no trailing newline (so that
//!   `gh secret set NAME` stores it as it is), then end of file;
//! - in the environment variable [`NEW_KEY_ENV`] (`TSROTATE_NEW_KEY`);
//! - never in its arguments.
//!
//! Exit status 0 is success. Anything else is [`Error::Other`] carrying the status and the
//! last lines of its standard error, redacted. A command that does not finish within the
//! timeout ([`DEFAULT_TIMEOUT`], 5 minutes) is killed and reported as [`Error::Unavailable`]:
//! a hung network call may well work later. Its standard output is read and discarded, so a
//! chatty command neither blocks on a full pipe nor prints through a library that never
//! prints. A command that cannot be started is [`Error::Config`].
//!
//! The sink is write-only: a command has no way to report what it holds.
//!
//! # Security
//!
//! - Arguments are world-readable on most systems (`ps`, `/proc/PID/cmdline`), so the value
//!   is never one. The environment is readable only by the same user and root
//!   (`/proc/PID/environ` is mode 0400), and is inherited by anything the command starts;
//!   a command that does not need the variable can ignore it, and stdin is a private pipe.
//! - No shell is involved, so nothing in the value or the configuration is interpreted.
//! - Standard error is third-party text: before it reaches an error, every exact occurrence
//!   of the value becomes `[new key]` and every Tailscale credential is redacted with
//!   [`redact_in`]. Only its tail is kept, and a line cut by that limit is dropped rather
//!   than shown in part, so that no fragment of a value slips past the replacement.
//! - On timeout the command is killed; processes it started in the background are not.

use std::fmt;
use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{BoxFuture, Error, Expect, Sink, Snapshot, Version};
use crate::key::{Secret, redact_in};

/// The environment variable that carries the new value to the command.
pub const NEW_KEY_ENV: &str = "TSROTATE_NEW_KEY";

/// How long a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How many trailing lines of standard error an error shows.
const STDERR_LINES: usize = 10;
/// How many trailing bytes of standard error are kept while the command runs.
const STDERR_KEEP: usize = 16 * 1024;
/// The longest line shown, after redaction.
const LINE_CHARS: usize = 300;

/// A command that receives the new value.
#[derive(Clone)]
pub struct CommandSink {
    run: Vec<String>,
    timeout: Duration,
}

impl fmt::Debug for CommandSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSink")
            .field("run", &self.run)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CommandSink {
    /// A sink that runs `run[0]` with arguments `run[1..]`.
    pub fn new(run: Vec<String>) -> Result<Self, Error> {
        match run.first() {
            None => Err(Error::Config {
                sink: "command".to_owned(),
                message: "`run` is empty: name a program and its arguments".to_owned(),
            }),
            Some(program) if program.trim().is_empty() => Err(Error::Config {
                sink: "command".to_owned(),
                message: "`run` starts with an empty program name".to_owned(),
            }),
            Some(_) => Ok(Self {
                run,
                timeout: DEFAULT_TIMEOUT,
            }),
        }
    }

    /// Kill the command after `timeout` instead of [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn program(&self) -> &str {
        self.run.first().map_or("", String::as_str)
    }

    fn error(&self, make: fn(String, String) -> Error, message: String) -> Error {
        make(self.describe(), message)
    }

    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    async fn run_with(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        if *expect != Expect::Unchecked {
            return Err(self.error(
                config,
                "a command cannot check what the place holds; write with `Expect::Unchecked`"
                    .to_owned(),
            ));
        }
        let bytes = value.expose_secret();
        let mut child = tokio::process::Command::new(self.program())
            .args(&self.run[1..])
            .env(NEW_KEY_ENV, bytes)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                self.error(config, format!("could not start `{}`: {e}", self.program()))
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let write_stdin = async move {
            let Some(mut stdin) = stdin else {
                return Ok(());
            };
            let written = match stdin.write_all(bytes.as_bytes()).await {
                Ok(()) => stdin.shutdown().await,
                other => other,
            };
            // A command that does not read its input closes the pipe early: not an error.
            match written {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        };
        let drain = async move {
            if let Some(mut stdout) = stdout {
                let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
            }
        };
        let collect = async move {
            let mut tail = Tail::default();
            if let Some(mut stderr) = stderr {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.push(&buf[..n]);
                }
            }
            tail
        };
        let work = async { tokio::join!(write_stdin, drain, collect, child.wait()) };
        let Ok((stdin_result, (), tail, status)) = tokio::time::timeout(self.timeout, work).await
        else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(self.error(
                unavailable,
                format!(
                    "`{}` did not finish within {}s and was killed",
                    self.program(),
                    self.timeout.as_secs_f32()
                ),
            ));
        };
        let status = status.map_err(|e| {
            self.error(
                other,
                format!("could not wait for `{}`: {e}", self.program()),
            )
        })?;
        if status.success() {
            return match stdin_result {
                Ok(()) => Ok(None),
                Err(e) => Err(self.error(
                    other,
                    format!(
                        "could not pass the value to `{}` on stdin: {e}",
                        self.program()
                    ),
                )),
            };
        }
        let shown = tail.render(value);
        let mut message = format!("`{}` failed ({status})", self.program());
        if shown.is_empty() {
            message.push_str(" and wrote nothing to stderr");
        } else {
            message.push_str("; the end of its stderr:");
            for line in shown {
                message.push_str("\n  ");
                message.push_str(&line);
            }
        }
        Err(self.error(other, message))
    }
}

/// The last [`STDERR_KEEP`] bytes of a stream.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > STDERR_KEEP {
            let excess = self.bytes.len() - STDERR_KEEP;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// The last lines, safe to show: the value replaced, credentials redacted, then cut to
    /// length (cutting after redaction cannot expose part of a value).
    fn render(&self, value: &Secret) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        if self.cut && !lines.is_empty() {
            // Its start was cut off, maybe in the middle of the value.
            lines.remove(0);
        }
        let secret = value.expose_secret();
        let start = lines.len().saturating_sub(STDERR_LINES);
        lines[start..]
            .iter()
            .map(|line| {
                let line = if secret.is_empty() {
                    (*line).to_owned()
                } else {
                    line.replace(secret, "[new key]")
                };
                let line = redact_in(&line);
                let mut shown: String = line
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .take(LINE_CHARS)
                    .collect();
                if line.chars().count() > LINE_CHARS {
                    shown.push('…');
                }
                shown
            })
            .collect()
    }
}

fn other(sink: String, message: String) -> Error {
    Error::Other { sink, message }
}

fn config(sink: String, message: String) -> Error {
    Error::Config { sink, message }
}

fn unavailable(sink: String, message: String) -> Error {
    Error::Unavailable { sink, message }
}

impl Sink for CommandSink {
    fn describe(&self) -> String {
        let shown: Vec<String> = self
            .run
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect();
        format!("command `{}`", shown.join(" "))
    }

    fn readable(&self) -> bool {
        false
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move {
            Err(Error::WriteOnly {
                sink: self.describe(),
            })
        })
    }

    fn write<'a>(
        &'a self,
        value: &'a Secret,
        expect: &'a Expect,
    ) -> BoxFuture<'a, Result<Option<Version>, Error>> {
        Box::pin(self.run_with(value, expect))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_run_is_a_config_error() {
        assert!(matches!(
            CommandSink::new(vec![]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            CommandSink::new(vec![" ".into(), "x".into()]),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn a_cut_first_line_is_dropped() {
        let value = Secret::new("VALUE-0123456789".into());
        let mut tail = Tail::default();
        tail.push(b"x VALUE-0123456789\n");
        tail.push(&vec![b'a'; STDERR_KEEP]);
        tail.push(b"\nlast VALUE-0123456789\n");
        let shown = tail.render(&value);
        assert_eq!(shown.last().map(String::as_str), Some("last [new key]"));
        assert!(shown.iter().all(|l| !l.contains("0123456789")), "{shown:?}");
        assert!(tail.cut && shown.len() == 1, "{shown:?}");
    }
}
