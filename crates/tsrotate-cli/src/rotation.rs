//! Running a rotation from the CLI: narration on stderr, the report. Admission and recording
//! (locks, journal, audit log) are the library's `rotate::session`.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tsrotate::audit::AuditLog;
use tsrotate::journal::{self, Event, Journal};
use tsrotate::key::{Fingerprint, KeyId};
use tsrotate::rotate::session::{self, Authority, Session, StateDir};
use tsrotate::rotate::{End, Executor, Observer, OldKey, Remedy, State, Stop, World};

use crate::exit::{ExitStatus, Stopped, UserError};

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
            Event::NotInTailnet { key_id } => format!(
                "  ✗ {key_id} is not known to this tailnet's API: it could not be revoked here"
            ),
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
            Event::Done { key_id } if state.started.not_updated.is_empty() => {
                format!("  ✓ done: every place holds {key_id}")
            }
            Event::Done { key_id } => format!(
                "  ✓ done: every place tsrotate updates holds {key_id}; NOT updated (they keep the revoked key): {}",
                state.started.not_updated.join("; ")
            ),
            _ => return,
        };
        #[allow(clippy::print_stderr, reason = "progress narration goes to stderr")]
        {
            eprintln!("{}", tsrotate::text::escape(&line));
        }
    }
}

fn join_ids(ids: &[KeyId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A refusal to begin or continue a rotation, for people: exit 2 with what to do, or an
/// unexpected failure.
pub(crate) fn admission_error(e: session::Error) -> anyhow::Error {
    if e.is_user_error() {
        let hint = e.hint();
        let error = UserError::new(e.to_string());
        match hint {
            Some(hint) => error.hint(hint).into(),
            None => error.into(),
        }
    } else {
        anyhow::Error::from(e)
    }
}

/// Reopen a rotation under its key's lock, if `authority` vouches for what it would run.
pub(crate) fn reopen(
    dir: &StateDir,
    rotation_id: &str,
    authority: &Authority<'_>,
) -> anyhow::Result<Session> {
    Session::reopen(dir, rotation_id, &crate::context::os_user(), authority).map_err(|e| match e {
        session::Error::Journal(journal::Error::UnknownRotation(_)) => {
            UserError::new(e.to_string())
                .hint("list rotations with `ls $TSROTATE_STATE_DIR/rotations`")
                .into()
        }
        e @ session::Error::Journal(journal::Error::Unsealed { .. }) => admission_error(e),
        session::Error::Journal(e) => UserError::new(e.to_string()).into(),
        e => admission_error(e),
    })
}

/// How a rotation run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RunOutcome {
    /// Every place holds the new key.
    Done,
    /// Stopped before the end; `next` says what to do.
    Incomplete,
    /// Every place holds the old key again.
    RolledBack,
    /// Given up by a person.
    Abandoned,
}

/// Where the old key stands, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OldKeyReport {
    /// The API says it works.
    Live,
    /// Confirmed dead.
    Revoked,
    /// Retired when its replacement was made (webhook secrets).
    Retired,
    /// The API of this tailnet does not know it: not revoked here, may be live elsewhere.
    NotInTailnet,
    /// The API did not answer: live or revoked, nobody knows yet.
    Unknown,
}

impl From<OldKey> for OldKeyReport {
    fn from(old: OldKey) -> Self {
        match old {
            OldKey::Live => Self::Live,
            OldKey::Revoked => Self::Revoked,
            OldKey::Retired => Self::Retired,
            OldKey::NotInTailnet => Self::NotInTailnet,
            OldKey::Unknown => Self::Unknown,
        }
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
    pub(crate) outcome: RunOutcome,
    pub(crate) old_key_id: KeyId,
    pub(crate) old_key_revoked: bool,
    /// Where the old key stands: what the journal confirms, else what the API says now.
    pub(crate) old_key: OldKeyReport,
    pub(crate) new_key_id: Option<KeyId>,
    pub(crate) new_key_fingerprint: Option<Fingerprint>,
    pub(crate) sinks: Vec<SinkReport>,
    pub(crate) error: Option<String>,
    pub(crate) hint: Option<String>,
    pub(crate) next: Option<String>,
    pub(crate) journal: PathBuf,
    pub(crate) audit_log: PathBuf,
}

#[derive(Debug, Serialize)]
pub(crate) struct SinkReport {
    pub(crate) place: String,
    pub(crate) holds: Option<KeyId>,
}

/// What to do after a run that stopped, given where the old key stands. Rollback is offered
/// only when the journal allows it and the API confirms the old key is live (issue 11,
/// item 1): putting a revoked key back would leave no working key anywhere.
fn advice(state: &State, old: OldKeyReport, remedy: Remedy) -> String {
    let id = state.rotation_id();
    // What to do before resuming, from the kind of failure.
    let first = match remedy {
        Remedy::Wait => "once the service answers again, run",
        Remedy::Fix => "fix the cause, then run",
        Remedy::FindOut => "run",
    };
    match old {
        OldKeyReport::Revoked | OldKeyReport::Retired => {
            format!("the old key no longer works; {first} `tsrotate resume {id}`")
        }
        OldKeyReport::Live if state.next_rollback().is_ok() => format!(
            "the old key still works; {first} `tsrotate resume {id}`, or undo with `tsrotate rollback {id}`"
        ),
        OldKeyReport::Live => {
            format!("the old key still works; {first} `tsrotate resume {id}`")
        }
        OldKeyReport::Unknown => format!(
            "the API did not say whether the old key still works (a revoke may have taken effect without an answer); {first} `tsrotate resume {id}`, which asks again (rollback is refused until the API confirms the old key is live)"
        ),
        OldKeyReport::NotInTailnet => format!(
            "the API does not know the old key, so it cannot be revoked here and may still be live in another tailnet; run `tsrotate resume {id}` to finish, and revoke the old key where it belongs"
        ),
    }
}

/// Run the executor (or a rollback) and turn its end into an [`Outcome`].
pub(crate) async fn execute<W: World>(
    world: &mut W,
    session: &mut Session,
    narrate: bool,
    rollback_with: Option<&tsrotate::key::Secret>,
) -> anyhow::Result<Outcome> {
    let mut narrator = Narrator { enabled: narrate };
    let state = session.state().clone();
    let state_dir = session.state_dir().to_owned();
    let created_here = session.created_here();
    let mut executor = Executor::new(state, world, session, &mut narrator);
    if created_here {
        executor = executor.created_here();
    }
    let result = match rollback_with {
        Some(old) => executor.rollback(old).await,
        None => executor.run().await,
    };
    let fingerprint = executor.held_fingerprint();
    let failure = match result {
        Ok(_) => None,
        Err(Stop::Journal(e)) => {
            return Err(anyhow::Error::from(e).context("the journal could not be written; stopped"));
        }
        Err(Stop::Internal(e)) => anyhow::bail!("internal error: {e}"),
        Err(Stop::Refused(e)) => return Err(UserError::new(e.to_string()).into()),
        // Nothing was done, and nothing is asked of the API about the old key: a death it
        // reports would be journaled, and the next run would then trust the older copy.
        Err(Stop::Stale(e)) => return Err(Stopped::new(e.to_string()).hint(e.hint()).into()),
        Err(failed @ Stop::Failed { .. }) => Some(failed),
    };
    // Where the old key stands: from the journal when it is settled, else from the API.
    let old_key = match executor.state().end {
        Some(End::RolledBack | End::Abandoned) => OldKeyReport::Live,
        _ => match executor.old_key().await {
            Ok(old) => OldKeyReport::from(old),
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context("the journal could not be written; stopped")
                );
            }
        },
    };
    let state = executor.state().clone();
    let (outcome, error, hint, next) = match (&state.end, failure) {
        (_, Some(failed)) => {
            let (hint, remedy) = match &failed {
                Stop::Failed { error, .. } => (error.hint.clone(), error.remedy()),
                _ => (None, Remedy::Fix),
            };
            (
                RunOutcome::Incomplete,
                Some(failed.to_string()),
                hint,
                Some(advice(&state, old_key, remedy)),
            )
        }
        (Some(End::Done(_)), _) if old_key == OldKeyReport::NotInTailnet => (
            RunOutcome::Done,
            None,
            None,
            Some(format!(
                "the API of tailnet `{}` does not know key {id} (another tailnet's key, or one removed long ago); if it belongs to another tailnet, revoke it there: `tsrotate inspect {id}` shows whether a tailnet still knows it",
                state.started.tailnet,
                id = state.old_key_id(),
            )),
        ),
        (Some(End::Done(_)), _) => (RunOutcome::Done, None, None, None),
        (Some(End::RolledBack), _) => (RunOutcome::RolledBack, None, None, None),
        (Some(End::Abandoned), _) => (RunOutcome::Abandoned, None, None, None),
        (None, _) => (
            RunOutcome::Incomplete,
            None,
            None,
            Some(format!("tsrotate resume {}", state.rotation_id())),
        ),
    };
    let new_key_id = match &state.end {
        Some(End::Done(id)) => Some(id.clone()),
        _ => state.minted.last().cloned(),
    };
    Ok(Outcome {
        rotation_id: state.rotation_id().to_owned(),
        outcome,
        old_key_id: state.old_key_id().clone(),
        old_key_revoked: matches!(old_key, OldKeyReport::Revoked | OldKeyReport::Retired),
        old_key,
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
        hint,
        next,
        journal: Journal::path_of(&state_dir, state.rotation_id()),
        audit_log: AuditLog::path_in(&state_dir),
    })
}

impl Outcome {
    pub(crate) fn exit_status(&self) -> ExitStatus {
        match (self.outcome, self.old_key) {
            (RunOutcome::Incomplete, _) | (RunOutcome::Done, OldKeyReport::NotInTailnet) => {
                ExitStatus::Incomplete
            }
            (RunOutcome::Done | RunOutcome::RolledBack | RunOutcome::Abandoned, _) => {
                ExitStatus::Success
            }
        }
    }

    /// The human report, on stdout.
    pub(crate) fn write_human(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self.outcome {
            RunOutcome::Done => {
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
                if self.old_key == OldKeyReport::NotInTailnet {
                    writeln!(
                        out,
                        "  {} place(s) updated; old key {} NOT revoked: the API does not know it, so it could not be revoked here and may still be live",
                        self.sinks.len(),
                        self.old_key_id
                    )?;
                    if let Some(next) = &self.next {
                        writeln!(out, "  next: {}", tsrotate::text::escape(next))?;
                    }
                } else {
                    writeln!(
                        out,
                        "  {} place(s) updated; old key {} revoked",
                        self.sinks.len(),
                        self.old_key_id
                    )?;
                }
            }
            RunOutcome::Abandoned => {
                writeln!(
                    out,
                    "Rotation {}: abandoned by a person; its keys are as it left them (`tsrotate keys list` shows them).",
                    self.rotation_id
                )?;
            }
            RunOutcome::RolledBack => {
                writeln!(
                    out,
                    "Rotation {}: rolled back. Every place holds {} again; keys minted by the rotation are revoked.",
                    self.rotation_id, self.old_key_id
                )?;
            }
            RunOutcome::Incomplete => {
                writeln!(out, "Rotation {}: NOT completed.", self.rotation_id)?;
                if let Some(error) = &self.error {
                    writeln!(out, "  {}", tsrotate::text::escape(error))?;
                }
                if let Some(hint) = &self.hint {
                    writeln!(out, "  hint: {}", tsrotate::text::escape(hint))?;
                }
                writeln!(
                    out,
                    "  old key {}: {}",
                    self.old_key_id,
                    match self.old_key {
                        OldKeyReport::Live => "still live",
                        OldKeyReport::Revoked => "revoked",
                        OldKeyReport::Retired => "retired by the new one",
                        OldKeyReport::NotInTailnet =>
                            "unknown to this tailnet's API (not revoked; may be live elsewhere)",
                        OldKeyReport::Unknown =>
                            "unknown (the API did not answer; it may already be revoked)",
                    }
                )?;
                for sink in &self.sinks {
                    writeln!(
                        out,
                        "  {}: {}",
                        tsrotate::text::escape(&sink.place),
                        sink.holds
                            .as_ref()
                            .map_or_else(|| "not updated".to_owned(), |id| format!("holds {id}"))
                    )?;
                }
                if let Some(next) = &self.next {
                    writeln!(out, "  next: {}", tsrotate::text::escape(next))?;
                }
            }
        }
        writeln!(out, "  journal: {}", tsrotate::text::path(&self.journal))?;
        writeln!(
            out,
            "  audit log: {}",
            tsrotate::text::path(&self.audit_log)
        )
    }
}
