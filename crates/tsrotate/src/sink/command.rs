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
//! Exit status 0 is success. Anything else is [`ErrorKind::Other`](super::ErrorKind::Other) carrying the status; a
//! command that does not finish within the timeout ([`DEFAULT_TIMEOUT`], 5 minutes) is
//! killed and reported as [`ErrorKind::Unavailable`](super::ErrorKind::Unavailable): a hung network call may well work later.
//! A command that cannot be started is [`ErrorKind::Config`](super::ErrorKind::Config).
//!
//! The sink is write-only: a command has no way to report what it holds.
//!
//! # Security
//!
//! The command runs through [`crate::child`], like every child of tsrotate:
//!
//! - Arguments are world-readable on most systems (`ps`, `/proc/PID/cmdline`), so the value
//!   is never one. Its environment is cleaned ([`crate::child::Environment`]): tsrotate's
//!   own credentials never reach it.
//! - No shell is involved, so nothing in the value or the configuration is interpreted.
//! - Its output is third-party text that may echo the value: it never reaches an error (and
//!   so never a journal or an audit log); a bounded excerpt of its standard error is logged,
//!   after [`crate::child::Redactor`] removed every encoding of every secret in play.
//! - On timeout the command is killed; processes it started in the background are not.

use std::fmt;
use std::time::Duration;

use super::{BoxFuture, Error, Expect, Sink, Snapshot, Version};
use crate::child::{self, Environment, Redactor};
use crate::key::Secret;

/// The environment variable that carries the new value to the command.
pub const NEW_KEY_ENV: &str = child::NEW_KEY_ENV;

/// How long a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = child::DEFAULT_TIMEOUT;

/// A command that receives the new value.
#[derive(Clone)]
pub struct CommandSink {
    run: Vec<String>,
    timeout: Duration,
    env: Environment,
    /// Other secrets in play (tsrotate's own), redacted from its output with the value.
    others: Vec<Secret>,
}

impl fmt::Debug for CommandSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSink")
            .field("run", &self.run)
            .field("timeout", &self.timeout)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl CommandSink {
    /// A sink that runs `run[0]` with arguments `run[1..]`, in an empty environment (see
    /// [`Self::with_environment`]).
    pub fn new(run: Vec<String>) -> Result<Self, Error> {
        match run.first() {
            None => Err(Error::config(
                "command",
                "`run` is empty: name a program and its arguments".to_owned(),
            )),
            Some(program) if program.trim().is_empty() => Err(Error::config(
                "command",
                "`run` starts with an empty program name".to_owned(),
            )),
            Some(_) => Ok(Self {
                run,
                timeout: DEFAULT_TIMEOUT,
                env: Environment::default(),
                others: Vec::new(),
            }),
        }
    }

    /// Kill the command after `timeout` instead of [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run it in `env` (plus the value), and redact `others` from its output too.
    #[must_use]
    pub fn with_environment(mut self, env: Environment, others: Vec<Secret>) -> Self {
        self.env = env;
        self.others = others;
        self
    }

    #[tracing::instrument(skip_all, fields(sink = %self.describe()))]
    async fn run_with(&self, value: &Secret, expect: &Expect) -> Result<Option<Version>, Error> {
        if *expect != Expect::Unchecked {
            return Err(Error::config(
                self.describe(),
                "a command cannot check what the place holds; write with `Expect::Unchecked`"
                    .to_owned(),
            ));
        }
        let redactor = Redactor::new(std::iter::once(value).chain(&self.others));
        let result = child::run(child::Child {
            role: "command",
            program: child::Program::Argv(&self.run),
            new_key: value,
            stdin: true,
            env: &self.env,
            redactor: &redactor,
            timeout: self.timeout,
        })
        .await;
        let sink = self.describe();
        match result {
            Ok(()) => Ok(None),
            Err(e @ child::Error::Start { .. }) => Err(Error::config(sink, e.to_string())),
            Err(e @ child::Error::TimedOut { .. }) => Err(Error::unavailable(sink, e.to_string())),
            Err(e @ (child::Error::Failed { .. } | child::Error::Io { .. })) => {
                Err(Error::other(sink, e.to_string()))
            }
        }
    }
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
        Box::pin(async move { Err(Error::write_only(self.describe())) })
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
    use crate::sink::ErrorKind;

    #[test]
    fn empty_run_is_a_config_error() {
        assert!(matches!(
            CommandSink::new(vec![]),
            Err(Error {
                kind: ErrorKind::Config,
                ..
            })
        ));
        assert!(matches!(
            CommandSink::new(vec![" ".into(), "x".into()]),
            Err(Error {
                kind: ErrorKind::Config,
                ..
            })
        ));
    }
}
