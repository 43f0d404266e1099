//! Running a rotation from the CLI: journal plus audit log, narration on stderr, the report.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tsrotate::audit::AuditLog;
use tsrotate::fs::{Fail, FileLock};
use tsrotate::journal::{self, Event, Journal};
use tsrotate::key::{Fingerprint, KeyId};
use tsrotate::rotate::{End, Executor, Observer, Recorder, State, Stop, World};

use crate::exit::{ExitStatus, UserError};

/// Writes each record to the journal (authoritative, fsync'd) and then to the audit log.
pub(crate) struct Recording {
    journal: Journal,
    audit: Option<AuditLog>,
    user: String,
    rotation_id: String,
}

impl Recording {
    pub(crate) fn new(journal: Journal, state_dir: &Path, user: &str, rotation_id: &str) -> Self {
        let audit = match AuditLog::open(state_dir) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::warn!("cannot open the audit log in {}: {e}", state_dir.display());
                None
            }
        };
        Self {
            journal,
            audit,
            user: user.to_owned(),
            rotation_id: rotation_id.to_owned(),
        }
    }

    pub(crate) fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Log an event that is already in the journal (the plan, written at creation).
    pub(crate) fn audit_only(&mut self, event: &Event) {
        if let Some(audit) = &mut self.audit
            && let Err(e) = audit.append(&self.user, Some(&self.rotation_id), event)
        {
            tracing::warn!("cannot write the audit log {}: {e}", audit.path().display());
        }
    }
}

impl Recorder for Recording {
    fn record(&mut self, event: Event) -> Result<(), journal::Error> {
        self.journal.append(event.clone())?;
        self.audit_only(&event);
        Ok(())
    }
}

/// Narrates each durable step on stderr, for people watching.
pub(crate) struct Narrator {
    pub(crate) enabled: bool,
}

impl Observer for Narrator {
    fn recorded(&mut self, state: &State, event: &Event) {
        if !self.enabled {
            return;
        }
        let sink = |i: &usize| {
            state
                .sinks
                .get(*i)
                .map(tsrotate::journal::SinkPlan::describe)
                .unwrap_or_default()
        };
        let line = match event {
            Event::Minted {
                key_id,
                fingerprint,
                ..
            } => format!("  ✓ minted replacement {key_id} (fp {fingerprint})"),
            Event::MintFailed { error, .. } => format!("  ✗ minting failed: {error}"),
            Event::Written { sink: i, key_id } => format!("  ✓ wrote {key_id} to {}", sink(i)),
            Event::WriteFailed { sink: i, error, .. } => format!("  ✗ {}: {error}", sink(i)),
            Event::SinkAdded { sink } => format!("  + also found in {}", sink.describe()),
            Event::Verified { .. } => "  ✓ verification command passed".to_owned(),
            Event::VerifyFailed { error, .. } => format!("  ✗ verification failed: {error}"),
            Event::Revoked {
                key_id,
                already: false,
            } => format!("  ✓ revoked {key_id} (confirmed dead)"),
            Event::Revoked {
                key_id,
                already: true,
            } => format!("  ✓ {key_id} was already dead"),
            Event::RevokeFailed { key_id, error } => {
                format!("  ✗ revoking {key_id} failed: {error}")
            }
            Event::Swept { found }
                if found.len() > 1 || found.iter().any(|id| Some(id) != state.minted.last()) =>
            {
                format!(
                    "  • keys minted by this rotation in the tailnet: {}",
                    join_ids(found)
                )
            }
            Event::Restored { sink: i } => format!("  ✓ restored the old key in {}", sink(i)),
            Event::RolledBack => "  ✓ rolled back".to_owned(),
            Event::Done { key_id } => format!("  ✓ done: every place holds {key_id}"),
            _ => return,
        };
        #[allow(clippy::print_stderr, reason = "progress narration goes to stderr")]
        {
            eprintln!("{line}");
        }
    }
}

fn join_ids(ids: &[KeyId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Take the per-key lock so that two runs never rotate the same key at once.
pub(crate) fn lock_key(state_dir: &Path, key_id: &KeyId) -> anyhow::Result<FileLock> {
    let dir = state_dir.join("locks");
    tsrotate::fs::create_private_dir_all(&dir)?;
    let path = dir.join(format!("{key_id}.lock"));
    FileLock::acquire(&path, Fail::Immediately).map_err(|e| {
        UserError::new(format!(
            "another tsrotate run is working on key {key_id}: {e}"
        ))
        .hint("wait for it to finish; if none is running, the lock is released automatically")
        .into()
    })
}

/// Open a rotation's journal under the lock of its old key. The journal is read once to learn
/// the key, then again once the lock is held: a run that held the lock may have just finished
/// the rotation. `map` turns journal errors into the caller's kind of error.
pub(crate) fn open_locked(
    state_dir: &Path,
    rotation_id: &str,
    map: impl Fn(journal::Error) -> anyhow::Error,
) -> anyhow::Result<(FileLock, Journal, State)> {
    let path = Journal::path_of(state_dir, rotation_id);
    if !path.exists() {
        return Err(map(journal::Error::UnknownRotation(rotation_id.to_owned())));
    }
    let empty = || anyhow::anyhow!("journal of {rotation_id} is empty");
    let before = State::replay(&journal::read(&path).map_err(&map)?).ok_or_else(empty)?;
    let lock = lock_key(state_dir, before.old_key_id())?;
    let (journal, records) = Journal::open(state_dir, rotation_id).map_err(&map)?;
    let state = State::replay(&records).ok_or_else(empty)?;
    Ok((lock, journal, state))
}

/// The unfinished rotations that replace `key_id` or minted it, each with the key it
/// replaces. Either way, another rotation of `key_id` would race it.
pub(crate) fn unfinished_for(
    journals: &journal::Index,
    key_id: &KeyId,
) -> anyhow::Result<Vec<(String, KeyId)>> {
    Ok(journals
        .of_key(key_id)?
        .into_iter()
        .filter_map(|(id, records)| {
            let state = State::replay(&records)?;
            (!state.is_finished()
                && (state.old_key_id() == key_id || state.minted.contains(key_id)))
            .then(|| (id, state.old_key_id().clone()))
        })
        .collect())
}

/// Why a key cannot be rotated while `rotation` (replacing `old`) is unfinished.
pub(crate) fn unfinished_message(key_id: &KeyId, (rotation, old): &(String, KeyId)) -> String {
    if old == key_id {
        format!("rotation {rotation} of key {key_id} is not finished")
    } else {
        format!("rotation {rotation} of key {old}, which minted {key_id}, is not finished")
    }
}

/// What a rotation run ended with, as reported.
#[derive(Debug, Serialize)]
#[allow(
    clippy::struct_field_names,
    reason = "`outcome` is the JSON field people read"
)]
pub(crate) struct Outcome {
    pub(crate) rotation_id: String,
    /// `done`, `incomplete`, `rolled-back`, `abandoned`.
    pub(crate) outcome: &'static str,
    pub(crate) old_key_id: KeyId,
    pub(crate) old_key_revoked: bool,
    pub(crate) new_key_id: Option<KeyId>,
    pub(crate) new_key_fingerprint: Option<Fingerprint>,
    pub(crate) sinks: Vec<SinkReport>,
    pub(crate) error: Option<String>,
    pub(crate) next: Option<String>,
    pub(crate) journal: PathBuf,
    pub(crate) audit_log: PathBuf,
}

#[derive(Debug, Serialize)]
pub(crate) struct SinkReport {
    pub(crate) place: String,
    pub(crate) holds: Option<KeyId>,
}

/// Run the executor (or a rollback) and turn its end into an [`Outcome`].
pub(crate) async fn execute<W: World>(
    state: State,
    world: &mut W,
    recording: &mut Recording,
    narrate: bool,
    state_dir: &Path,
    rollback_with: Option<&tsrotate::key::Secret>,
) -> anyhow::Result<Outcome> {
    let mut narrator = Narrator { enabled: narrate };
    let mut executor = Executor::new(state, world, recording, &mut narrator);
    let result = match rollback_with {
        Some(old) => executor.rollback(old).await,
        None => executor.run().await,
    };
    let fingerprint = executor.held_fingerprint();
    let state = executor.state().clone();
    let (outcome, error, next) = match result {
        Ok(s) => match s.end {
            Some(End::Done(_)) => ("done", None, None),
            Some(End::RolledBack) => ("rolled-back", None, None),
            Some(End::Abandoned) => ("abandoned", None, None),
            None => (
                "incomplete",
                None,
                Some(format!("tsrotate resume {}", s.rotation_id())),
            ),
        },
        Err(Stop::Journal(e)) => {
            return Err(anyhow::Error::from(e).context("the journal could not be written; stopped"));
        }
        Err(Stop::Internal(e)) => anyhow::bail!("internal error: {e}"),
        Err(Stop::Refused(e)) => return Err(UserError::new(e.to_string()).into()),
        Err(Stop::Failed { step, error }) => {
            let next = if state.old_revoked() {
                format!(
                    "fix the cause, then run `tsrotate resume {}`",
                    state.rotation_id()
                )
            } else {
                format!(
                    "the old key still works; fix the cause and run `tsrotate resume {id}`, or undo with `tsrotate rollback {id}`",
                    id = state.rotation_id()
                )
            };
            (
                "incomplete",
                Some(format!("{step} failed: {error}")),
                Some(next),
            )
        }
    };
    let new_key_id = match &state.end {
        Some(End::Done(id)) => Some(id.clone()),
        _ => state.minted.last().cloned(),
    };
    Ok(Outcome {
        rotation_id: state.rotation_id().to_owned(),
        outcome,
        old_key_id: state.old_key_id().clone(),
        old_key_revoked: state.old_revoked(),
        new_key_fingerprint: fingerprint.filter(|_| new_key_id.is_some()),
        new_key_id,
        sinks: state
            .sinks
            .iter()
            .zip(&state.holds)
            .map(|(s, h)| SinkReport {
                place: s.describe(),
                holds: h.clone(),
            })
            .collect(),
        error,
        next,
        journal: Journal::path_of(state_dir, state.rotation_id()),
        audit_log: AuditLog::path_in(state_dir),
    })
}

impl Outcome {
    pub(crate) fn exit_status(&self) -> ExitStatus {
        if self.outcome == "incomplete" {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        }
    }

    /// The human report, on stdout.
    pub(crate) fn write_human(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self.outcome {
            "done" => {
                writeln!(
                    out,
                    "Rotation {}: done. {} → {}{}",
                    self.rotation_id,
                    self.old_key_id,
                    self.new_key_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    self.new_key_fingerprint
                        .map(|f| format!(" (fp {f})"))
                        .unwrap_or_default()
                )?;
                writeln!(
                    out,
                    "  {} place(s) updated; old key {} revoked",
                    self.sinks.len(),
                    self.old_key_id
                )?;
            }
            "abandoned" => {
                writeln!(
                    out,
                    "Rotation {}: abandoned by a person; its keys are as it left them (`tsrotate keys list` shows them).",
                    self.rotation_id
                )?;
            }
            "rolled-back" => {
                writeln!(
                    out,
                    "Rotation {}: rolled back. Every place holds {} again; keys minted by the rotation are revoked.",
                    self.rotation_id, self.old_key_id
                )?;
            }
            _ => {
                writeln!(out, "Rotation {}: NOT completed.", self.rotation_id)?;
                if let Some(error) = &self.error {
                    writeln!(out, "  {error}")?;
                }
                writeln!(
                    out,
                    "  old key {}: {}",
                    self.old_key_id,
                    if self.old_key_revoked {
                        "revoked"
                    } else {
                        "still live"
                    }
                )?;
                for sink in &self.sinks {
                    writeln!(
                        out,
                        "  {}: {}",
                        sink.place,
                        sink.holds
                            .as_ref()
                            .map_or_else(|| "not updated".to_owned(), |id| format!("holds {id}"))
                    )?;
                }
                if let Some(next) = &self.next {
                    writeln!(out, "  next: {next}")?;
                }
            }
        }
        writeln!(out, "  journal: {}", self.journal.display())?;
        writeln!(out, "  audit log: {}", self.audit_log.display())
    }
}
