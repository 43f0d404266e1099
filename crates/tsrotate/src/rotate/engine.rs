//! The executor: performs the steps [`State::next`] asks for, journaling around each one.
//!
//! The world (API, sinks, verification command) and the journal are traits, so that tests can
//! run the real executor against an in-memory world and a journal that "crashes" after any
//! record.

use crate::api::Key;
use crate::journal::{self, Event, SinkPlan, Template};
use crate::key::{Fingerprint, KeyId, Secret};

use futures_util::StreamExt as _;

use super::state::{RollbackRefused, RollbackStep, State, Step, VerifyCommand};

/// How many sinks are written at once. Enough to hide the latency of remote stores, few
/// enough not to trip their rate limits.
pub const WRITE_CONCURRENCY: usize = 8;

/// A failed side effect, as the journal and the report show it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// What went wrong, for people.
    pub message: String,
    /// The request may have had its effect anyway (a lost answer).
    pub outcome_unknown: bool,
}

impl StepError {
    /// A failure with a known outcome: nothing happened.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            outcome_unknown: false,
        }
    }
}

/// A key just minted.
pub struct MintedKey {
    /// Its ID.
    pub key_id: KeyId,
    /// Its secret, shown once by the API.
    pub secret: Secret,
    /// What the API said of it.
    pub metadata: Option<Key>,
}

/// What revoking found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// We deleted it and the API confirms it is dead.
    Revoked,
    /// It was already dead (revoked, expired, used up, or gone).
    AlreadyDead,
}

/// The side effects a rotation needs. Implementations must make each one idempotent.
#[allow(
    async_fn_in_trait,
    reason = "used with concrete types; no Send bound needed"
)]
pub trait World {
    /// Create a replacement with `template`'s properties and this description.
    async fn mint(
        &mut self,
        template: &Template,
        description: &str,
    ) -> Result<MintedKey, StepError>;
    /// The IDs of live keys whose description carries `rotation_id`.
    async fn find_minted(&mut self, rotation_id: &str) -> Result<Vec<KeyId>, StepError>;
    /// Make sink `index` hold `value` wherever it holds a key in `replace`, then read it
    /// back. Takes `&self`: the engine writes several sinks at once.
    async fn write(
        &self,
        index: usize,
        sink: &SinkPlan,
        replace: &[KeyId],
        value: &Secret,
    ) -> Result<(), StepError>;
    /// Run the verification commands with `value`, in order; the first failure stops.
    async fn verify(&mut self, commands: &[VerifyCommand], value: &Secret)
    -> Result<(), StepError>;
    /// Revoke `key_id` and confirm it is dead.
    async fn revoke(&mut self, key_id: &KeyId) -> Result<Revocation, StepError>;
}

/// Where records go: the journal, or a test double.
pub trait Recorder {
    /// Make `event` durable, or fail (the process cannot go on safely).
    fn record(&mut self, event: Event) -> Result<(), journal::Error>;
}

impl Recorder for journal::Journal {
    fn record(&mut self, event: Event) -> Result<(), journal::Error> {
        self.append(event)
    }
}

/// Why an execution stopped.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// A side effect failed; the rotation is resumable.
    #[error("{step} failed: {error}")]
    Failed {
        /// Which step, for people.
        step: String,
        /// Why.
        error: StepError,
    },
    /// The journal could not be written; nothing more may be done.
    #[error("could not write the journal")]
    Journal(#[from] journal::Error),
    /// A broken invariant of the state machine (a bug); nothing was done.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Rollback was refused.
    #[error(transparent)]
    Refused(#[from] RollbackRefused),
}

/// Progress callbacks, for the CLI's narration. Called after each record is durable.
pub trait Observer {
    /// A record was written.
    fn recorded(&mut self, _state: &State, _event: &Event) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// The description of a key minted by a rotation: the old description, shortened, and the
/// rotation's ID, within Tailscale's 50 characters of letters, digits, hyphens and spaces.
#[must_use]
pub fn mint_description(old: Option<&str>, rotation_id: &str) -> String {
    let marker = format!("tsrotate {rotation_id}");
    let room = 50usize.saturating_sub(marker.len() + 1);
    let old: String = old
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ' ')
        .collect();
    // A previous rotation's marker is replaced, not stacked.
    let old = old.split(" tsrotate ").next().unwrap_or_default();
    let old = old.strip_prefix("tsrotate ").map_or(old, |_| "");
    let old: String = old.trim().chars().take(room).collect();
    let old = old.trim();
    if old.is_empty() {
        marker
    } else {
        format!("{old} {marker}")
    }
}

/// Runs one rotation to its end or to the first failure.
pub struct Executor<'a, W, R, O> {
    world: &'a mut W,
    recorder: &'a mut R,
    observer: &'a mut O,
    state: State,
    /// The replacement minted by this process, with its secret.
    held: Option<(KeyId, Secret)>,
}

impl<'a, W: World, R: Recorder, O: Observer> Executor<'a, W, R, O> {
    /// An executor continuing from `state`.
    pub fn new(state: State, world: &'a mut W, recorder: &'a mut R, observer: &'a mut O) -> Self {
        Self {
            world,
            recorder,
            observer,
            state,
            held: None,
        }
    }

    /// The state so far.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The fingerprint of the replacement this process holds.
    #[must_use]
    pub fn held_fingerprint(&self) -> Option<Fingerprint> {
        self.held.as_ref().map(|(_, s)| s.fingerprint())
    }

    #[allow(clippy::needless_pass_by_value, reason = "callers hand the event over")]
    fn record(&mut self, event: Event) -> Result<(), Stop> {
        self.recorder.record(event.clone())?;
        self.state.apply(&event);
        self.observer.recorded(&self.state, &event);
        Ok(())
    }

    /// Run steps until the rotation is done or a step fails.
    pub async fn run(&mut self) -> Result<State, Stop> {
        loop {
            let held_id = self.held.as_ref().map(|(id, _)| id.clone());
            match self.state.next(held_id.as_ref()) {
                Step::Finished => return Ok(self.state.clone()),
                Step::Finish { key_id } => self.record(Event::Done { key_id })?,
                Step::RevokeOld => {
                    let id = self.state.old_key_id().clone();
                    self.revoke(id, "revoking the old key").await?;
                }
                Step::RevokeMinted { key_id } => {
                    self.revoke(key_id, "revoking a key minted by an interrupted run")
                        .await?;
                }
                Step::Mint { attempt } => self.mint(attempt).await?,
                Step::Write { sinks, key_id } => {
                    // `next` targets a key without its secret only once every sink has it.
                    let value = match &self.held {
                        Some((id, secret)) if *id == key_id => secret.clone(),
                        _ => {
                            return Err(Stop::Internal(
                                "a write targeted a key this process did not mint",
                            ));
                        }
                    };
                    self.write(&sinks, &key_id, &value).await?;
                }
                Step::Verify { key_id } => {
                    let Some((_, value)) = self.held.clone() else {
                        return Err(Stop::Internal(
                            "verification targeted a key this process did not mint",
                        ));
                    };
                    self.verify(key_id, &value).await?;
                }
                Step::Sweep => self.sweep().await?,
            }
        }
    }

    /// Run a rollback: put `old_value` back into every sink the rotation touched, then revoke
    /// every key it minted.
    pub async fn rollback(&mut self, old_value: &Secret) -> Result<State, Stop> {
        if !self.state.rolling_back {
            // Refuse before recording anything.
            self.state.next_rollback()?;
            self.record(Event::RollbackStarted)?;
        }
        loop {
            match self.state.next_rollback()? {
                RollbackStep::Finished => return Ok(self.state.clone()),
                RollbackStep::Finish => self.record(Event::RolledBack)?,
                RollbackStep::Restore { sink } => {
                    let plan = self.state.sinks[sink].clone();
                    let minted = self.state.minted.clone();
                    // Record the intent as a write of the old key, so the sink counts as touched.
                    self.record(Event::WriteIntent {
                        sink,
                        key_id: self.state.old_key_id().clone(),
                    })?;
                    match self.world.write(sink, &plan, &minted, old_value).await {
                        Ok(()) => self.record(Event::Restored { sink })?,
                        Err(error) => {
                            self.record(Event::WriteFailed {
                                sink,
                                key_id: self.state.old_key_id().clone(),
                                error: error.message.clone(),
                            })?;
                            return Err(Stop::Failed {
                                step: format!("restoring {}", plan.describe()),
                                error,
                            });
                        }
                    }
                }
                RollbackStep::Sweep => self.sweep().await?,
                RollbackStep::RevokeMinted { key_id } => {
                    self.revoke(key_id, "revoking a key minted by this rotation")
                        .await?;
                }
            }
        }
    }

    async fn mint(&mut self, attempt: u32) -> Result<(), Stop> {
        let old_description = self.state.started.template.description().map(str::to_owned);
        let description = mint_description(old_description.as_deref(), self.state.rotation_id());
        self.record(Event::MintIntent {
            attempt,
            description: description.clone(),
        })?;
        let template = self.state.started.template.clone();
        match self.world.mint(&template, &description).await {
            Ok(minted) => {
                let fingerprint = minted.secret.fingerprint();
                self.held = Some((minted.key_id.clone(), minted.secret));
                self.record(Event::Minted {
                    attempt,
                    key_id: minted.key_id,
                    fingerprint,
                    metadata: minted.metadata,
                })
            }
            Err(error) => {
                self.record(Event::MintFailed {
                    attempt,
                    error: error.message.clone(),
                    outcome_unknown: error.outcome_unknown,
                })?;
                Err(Stop::Failed {
                    step: "minting the replacement".into(),
                    error,
                })
            }
        }
    }

    /// Write `key_id` into `sinks`, at most [`WRITE_CONCURRENCY`] at a time. Every intent is
    /// journaled before the first write starts and every outcome as it arrives; one failure
    /// stops the rotation after the writes under way have finished.
    async fn write(&mut self, sinks: &[usize], key_id: &KeyId, value: &Secret) -> Result<(), Stop> {
        let replace = self.state.known_ids();
        for &sink in sinks {
            self.record(Event::WriteIntent {
                sink,
                key_id: key_id.clone(),
            })?;
        }
        let plans: Vec<(usize, SinkPlan)> = sinks
            .iter()
            .map(|&i| (i, self.state.sinks[i].clone()))
            .collect();
        let world = &*self.world;
        let mut outcomes = futures_util::stream::iter(plans.iter())
            .map(|(i, plan)| {
                let replace = &replace;
                async move { (*i, world.write(*i, plan, replace, value).await) }
            })
            .buffer_unordered(WRITE_CONCURRENCY);
        let mut results = Vec::with_capacity(sinks.len());
        while let Some(outcome) = outcomes.next().await {
            results.push(outcome);
        }
        drop(outcomes);
        let mut failures = Vec::new();
        for (sink, result) in results {
            match result {
                Ok(()) => self.record(Event::Written {
                    sink,
                    key_id: key_id.clone(),
                })?,
                Err(error) => {
                    self.record(Event::WriteFailed {
                        sink,
                        key_id: key_id.clone(),
                        error: error.message.clone(),
                    })?;
                    failures.push((sink, error));
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|(sink, _)| *sink);
        let places: Vec<String> = failures
            .iter()
            .map(|(i, _)| self.state.sinks[*i].describe())
            .collect();
        let message = failures
            .iter()
            .map(|(_, e)| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        Err(Stop::Failed {
            step: format!("writing {}", places.join(", ")),
            error: StepError {
                message,
                outcome_unknown: false,
            },
        })
    }

    async fn verify(&mut self, key_id: KeyId, value: &Secret) -> Result<(), Stop> {
        let commands = self.state.verify_commands();
        self.record(Event::VerifyIntent {
            key_id: key_id.clone(),
        })?;
        match self.world.verify(&commands, value).await {
            Ok(()) => self.record(Event::Verified { key_id }),
            Err(error) => {
                self.record(Event::VerifyFailed {
                    key_id,
                    error: error.message.clone(),
                })?;
                Err(Stop::Failed {
                    step: "verifying the new key".into(),
                    error,
                })
            }
        }
    }

    async fn revoke(&mut self, key_id: KeyId, step: &str) -> Result<(), Stop> {
        self.record(Event::RevokeIntent {
            key_id: key_id.clone(),
        })?;
        match self.world.revoke(&key_id).await {
            Ok(outcome) => self.record(Event::Revoked {
                key_id,
                already: outcome == Revocation::AlreadyDead,
            }),
            Err(error) => {
                self.record(Event::RevokeFailed {
                    key_id,
                    error: error.message.clone(),
                })?;
                Err(Stop::Failed {
                    step: step.to_owned(),
                    error,
                })
            }
        }
    }

    async fn sweep(&mut self) -> Result<(), Stop> {
        let rotation_id = self.state.rotation_id().to_owned();
        match self.world.find_minted(&rotation_id).await {
            Ok(found) => self.record(Event::Swept { found }),
            Err(error) => Err(Stop::Failed {
                step: "looking for keys minted by interrupted runs".into(),
                error,
            }),
        }
    }
}
