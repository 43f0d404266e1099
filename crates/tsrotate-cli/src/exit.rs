//! The one place where outcomes become exit codes.

use std::io::ErrorKind;
use std::process::ExitCode;

/// What a command achieved, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Done, or nothing found: 0.
    Success,
    /// Findings reported, or a rotation that did not complete: 1.
    Incomplete,
}

/// An error caused by the user's input (arguments, config, a malformed key): exit 2.
/// Everything else that fails is unexpected: exit 3.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UserError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl UserError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A rotation refused before anything changed because it could not be completed as asked
/// (places it cannot update): exit 1, like any rotation that did not complete.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Stopped {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Stopped {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A federated identity's token that could not be had or was refused is a problem of the
/// settings (exit 2, like a bad credential), with what to look at when the message alone
/// does not say it (empty when it does).
fn identity_problem(error: &tsrotate::api::Error) -> Option<&'static str> {
    match error {
        tsrotate::api::Error::ExchangeRefused { .. } => Some(
            "compare the token's claims with the identity's issuer, subject pattern and audience (`tsrotate keys list` with another credential shows them); a token in TAILSCALE_IDENTITY_TOKEN or in a pipe cannot be renewed, so a long run needs TAILSCALE_IDENTITY_TOKEN_FILE or TAILSCALE_AUDIENCE",
        ),
        tsrotate::api::Error::IdentityToken { .. } => Some(""),
        tsrotate::api::Error::DeadlineExceeded { last, .. } => identity_problem(last),
        _ => None,
    }
}

/// The exit code of a run whose reader went away, as a program killed by SIGPIPE reports
/// it (128 + 13): not 0, since the run may have stopped before it acted (a rotation prints
/// its plan before it mints), and `… | head && echo ok` must not say a leaked key was
/// replaced when it was not (red team 5).
const READER_GONE: u8 = 141;

/// A reader that went away (`tsrotate contain KEY | head`) ends the run quietly with
/// [`READER_GONE`]: `print!` panics when stdout is a closed pipe (Rust ignores SIGPIPE), and
/// that panic is taken for what it is, as a write error reaching [`finish`] is. Every other
/// panic goes to the default hook. What was journaled stays journaled, and the run reads
/// like one that was killed (`tsrotate status` shows where it stopped).
pub(crate) fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if closed_stdout(message) {
            #[allow(
                clippy::exit,
                reason = "the run ends as finish() ends it on a closed pipe"
            )]
            std::process::exit(i32::from(READER_GONE));
        }
        default(info);
    }));
}

/// Whether a panic's message is `print!`'s on a closed pipe.
fn closed_stdout(message: &str) -> bool {
    message.starts_with("failed printing to stdout")
        && message.to_ascii_lowercase().contains("broken pipe")
}

pub(crate) fn finish(result: anyhow::Result<ExitStatus>) -> ExitCode {
    match result {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Incomplete) => ExitCode::from(1),
        Err(error) => {
            // A closed stdout (`tsrotate scan | head`): quietly, as SIGPIPE would end it.
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(READER_GONE);
            }
            let user = error.chain().find_map(|e| e.downcast_ref::<UserError>());
            let stopped = error.chain().find_map(|e| e.downcast_ref::<Stopped>());
            let identity = error
                .chain()
                .find_map(|e| e.downcast_ref::<tsrotate::api::Error>())
                .and_then(identity_problem);
            let code = match (user, stopped, identity) {
                (Some(_), _, _) | (None, None, Some(_)) => 2,
                (None, Some(_), _) => 1,
                (None, None, None) => 3,
            };
            let hint = user
                .and_then(|u| u.hint.as_deref())
                .or_else(|| stopped.and_then(|s| s.hint.as_deref()))
                .or(identity.filter(|h| !h.is_empty()));
            #[allow(clippy::print_stderr, reason = "the binary reports its own failure")]
            {
                // One line each, whatever file names or values the messages quote.
                let message = tsrotate::key::redact_in(&chain(&error));
                eprintln!("error: {}", tsrotate::text::escape(&message));
                if let Some(hint) = hint {
                    eprintln!("hint: {}", tsrotate::text::escape(hint));
                }
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line, `a: b: c`, like anyhow's `{:#}`, except that a cause
/// whose words the message already holds is not repeated (library errors put the system's
/// reason in their own message, so that it survives being carried as text).
pub(crate) fn chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_closed_stdout_is_taken_for_the_reader_going_away() {
        assert!(super::closed_stdout(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!super::closed_stdout(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!super::closed_stdout("index out of bounds: broken pipe"));
    }

    use super::chain;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = tsrotate::fs::Error::Io {
            action: tsrotate::fs::Action::CreateLock,
            path: "/srv/app/.env.lock".into(),
            source: io,
        };
        let error = anyhow::Error::new(error).context("writing /srv/app/.env");
        assert_eq!(
            chain(&error),
            "writing /srv/app/.env: could not create lock file `/srv/app/.env.lock`: \
             permission denied"
        );
    }
}
