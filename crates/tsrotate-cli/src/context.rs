//! What several commands share: the state directory, who is running, reading a key safely,
//! asking for confirmation.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use tsrotate::key::{KeyRef, Secret};

use crate::args::GlobalArgs;
use crate::exit::UserError;
use crate::settings::env;

/// The state directory: `--state-dir`, else `TSROTATE_STATE_DIR`, else
/// `$XDG_STATE_HOME/tsrotate`, else `~/.local/state/tsrotate`; refused (exit 2) when anyone
/// but the user running tsrotate can change it or what is in it, since its journals steer
/// rotations. For commands that do not read journals (its audit log, its path).
pub(crate) fn state_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let path = state_dir_path(global)?;
    tsrotate::rotate::session::StateDir::check(&path).map_err(crate::rotation::admission_error)?;
    Ok(path)
}

/// [`state_dir`], checked, with the key its journals are sealed with ([`journal_key`]), for
/// what the library's `rotate::session` takes.
pub(crate) fn trusted_state_dir(
    global: &GlobalArgs,
) -> anyhow::Result<tsrotate::rotate::session::StateDir> {
    let path = state_dir_path(global)?;
    tsrotate::rotate::session::StateDir::check(&path).map_err(crate::rotation::admission_error)?;
    let key = journal_key(&path)?;
    tsrotate::rotate::session::StateDir::open(&path, key).map_err(crate::rotation::admission_error)
}

/// The key that seals journals: from `TSROTATE_JOURNAL_KEY_FILE`, else
/// `$XDG_CONFIG_HOME/tsrotate/journal.key`, else `~/.config/tsrotate/journal.key`, made on
/// first need. Refused (exit 2), in words, when it is inside `state_dir`, not the user's, or
/// open to others ([`tsrotate::journal::JournalKey::load_or_create`]).
fn journal_key(state_dir: &std::path::Path) -> anyhow::Result<tsrotate::journal::JournalKey> {
    let path = journal_key_path()?;
    tsrotate::journal::JournalKey::load_or_create(&path, state_dir).map_err(|e| {
        let hint = e.hint();
        UserError::new(e.to_string()).hint(hint).into()
    })
}

/// Where the journal key file is (see [`journal_key`]).
pub(crate) fn journal_key_path() -> anyhow::Result<PathBuf> {
    if let Some(file) = env::var(env::TSROTATE_JOURNAL_KEY_FILE) {
        return Ok(PathBuf::from(file));
    }
    let config = env::var(env::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env::var(env::HOME).map(|h| PathBuf::from(h).join(".config")));
    match config {
        Some(folder) => Ok(folder.join("tsrotate/journal.key")),
        None => Err(UserError::new(
            "no journal key file: set TSROTATE_JOURNAL_KEY_FILE, XDG_CONFIG_HOME or HOME",
        )
        .into()),
    }
}

fn state_dir_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &global.state_dir {
        return Ok(dir.clone());
    }
    if let Some(dir) = env::var(env::TSROTATE_STATE_DIR) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = env::var(env::XDG_STATE_HOME) {
        return Ok(PathBuf::from(xdg).join("tsrotate"));
    }
    if let Some(home) = env::var(env::HOME) {
        return Ok(PathBuf::from(home).join(".local/state/tsrotate"));
    }
    Err(UserError::new("no state directory: set --state-dir, TSROTATE_STATE_DIR or HOME").into())
}

/// The OS user running tsrotate, for the journal and audit log.
pub(crate) fn os_user() -> String {
    if let Some(user) = env::var("USER").or_else(|| env::var("LOGNAME")) {
        return user;
    }
    // No login variables (a container, a cron job): fall back to the numeric ID.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|v| v.split_whitespace().next().unwrap_or("?").to_owned())
            })
        })
        .map_or_else(|| "unknown".to_owned(), |uid| format!("uid {uid}"))
}

/// Whether we may ask the person questions: both stdin and stderr are a terminal.
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Read a secret value from standard input: without echo on a terminal, else the first line.
pub(crate) fn read_secret_stdin(what: &str) -> anyhow::Result<Secret> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: "))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(64 * 1024)
            .read_line(&mut line)
            .map_err(|e| stdin_error(&e, what))?;
        line
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(UserError::new(format!("no {what} on standard input")).into());
    }
    Ok(Secret::new(value))
}

/// A failure to read standard input, in words: bytes that are not UTF-8 are the user's input
/// (exit 2), anything else is unexpected. Never quotes what was read.
pub(crate) fn stdin_error(error: &std::io::Error, what: &str) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::InvalidData {
        UserError::new(format!(
            "standard input is not UTF-8 text, so it holds no {what}"
        ))
        .hint("pipe the value itself (e.g. `printf %s \"$KEY\" | tsrotate …`), not a binary file")
        .into()
    } else {
        anyhow::anyhow!("cannot read the {what} from standard input: {error}")
    }
}

/// Read a secret from a file (`-` for standard input): its first line
/// ([`tsrotate::key::read_secret_file`]).
pub(crate) fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<Secret> {
    if path.as_os_str() == "-" {
        return read_secret_stdin(what);
    }
    tsrotate::key::read_secret_file(path, what).map_err(|e| UserError::new(e.to_string()).into())
}

/// Parse a `<KEY | KEY_ID | ->` argument. `-` reads the key from standard input, which keeps
/// it out of the process list and shell history.
pub(crate) fn key_arg(arg: &str) -> anyhow::Result<KeyRef> {
    if arg == "-" {
        let secret = read_secret_stdin("key")?;
        return KeyRef::parse(secret.expose_secret()).map_err(|e| bad_key(&e).into());
    }
    KeyRef::parse(arg).map_err(|e| bad_key(&e).into())
}

fn bad_key(e: &tsrotate::key::ParseError) -> UserError {
    UserError::new(e.to_string()).hint("give a credential (`tskey-auth-…`), a key ID (`k…CNTRL`), or `-` to read it from standard input")
}

/// Ask for confirmation, or refuse when nobody can answer.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !interactive() {
        return Err(UserError::new(
            "refusing to go ahead without confirmation: there is no terminal to ask on",
        )
        .hint("review the plan (add --dry-run to see it only) and pass --yes")
        .into());
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Durations in arguments (`--older-than 90d`) follow the configuration's rule
/// (`rotate_before = "14d"`): one parser, in the library.
pub(crate) use tsrotate::config::parse_duration;

/// Device tags from `--tags` (a newtype so that clap takes one comma-separated value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tags(pub(crate) Vec<String>);

/// Parse `--tags tag:a,tag:b`; an empty value means no tags.
pub(crate) fn parse_tags(s: &str) -> Result<Tags, String> {
    let tags: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = tags.iter().find(|t| !t.starts_with("tag:") || t.len() == 4) {
        return Err(format!("invalid tag `{bad}`: tags look like `tag:name`"));
    }
    Ok(Tags(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(
            parse_tags("tag:a, tag:b").unwrap().0,
            vec!["tag:a", "tag:b"]
        );
        assert!(parse_tags("").unwrap().0.is_empty());
        assert!(parse_tags("ci").is_err());
    }
}
