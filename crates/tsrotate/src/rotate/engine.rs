//! The executor: performs the steps [`State::next`] asks for, journaling around each one.
//!
//! The world (API, sinks, verification command) and the journal are traits, so that tests can
//! run the real executor against an in-memory world and a journal that "crashes" after any
//! record.

use crate::api::{self, Key};
use crate::journal::{self, Event, SinkPlan, Template};
use crate::key::{Fingerprint, KeyId, Secret};
use crate::sink;

use futures_util::StreamExt as _;

use super::state::{RollbackRefused, RollbackStep, State, Step, VerifyCommand};

/// How many times a write that failed for a passing reason (a place unavailable, rate
/// limited) is tried in all. Writes are check-and-set, so trying again is safe.
pub const WRITE_ATTEMPTS: u32 = 3;

/// The first pause between write attempts; doubled each time.
pub const WRITE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// How many sinks are written at once. Enough to hide the latency of remote stores, few
/// enough not to trip their rate limits.
pub const WRITE_CONCURRENCY: usize = 8;

/// Why a step failed, keeping the error it came from so that retries and exit codes are
/// decided from types, not from words.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The Tailscale API.
    #[error(transparent)]
    Api(#[from] api::Error),
    /// A configured place (a secret store, a command, a file by path).
    #[error(transparent)]
    Sink(#[from] sink::Error),
    /// A verification or `after` command failed or could not run.
    #[error("{0}")]
    Command(String),
    /// A check of ours refused to go on (a place changed, a read-back differs, a token is
    /// wrong); trying again without a change will fail the same way.
    #[error("{0}")]
    Refused(String),
}

/// What it takes for a failed step to succeed, for the advice a report gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// A service was unavailable or rate limited: trying again later may work as it is.
    Wait,
    /// Something must change first (a permission, a place, a command, an input).
    Fix,
    /// The request may have taken effect without an answer: the next run asks first.
    FindOut,
}

/// A failed side effect, as the journal and the report show it. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub struct StepError {
    /// What was being done, for people (`reading back`, `the new token`), if the cause does
    /// not say.
    pub context: Option<String>,
    /// Why (boxed: API errors are large, and steps fail rarely).
    #[source]
    pub cause: Box<Cause>,
    /// What a person can do about it, shown on its own line.
    pub hint: Option<String>,
    /// The request may have had its effect anyway (a lost answer).
    pub outcome_unknown: bool,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.context {
            Some(context) => write!(f, "{context}: {}", self.cause),
            None => write!(f, "{}", self.cause),
        }
    }
}

impl StepError {
    /// A check of ours that refused, with a known outcome: nothing happened.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self::from(Cause::Refused(message.into()))
    }

    /// A failure of the API; a create whose answer was lost has an unknown outcome.
    #[must_use]
    pub fn api(error: api::Error) -> Self {
        let outcome_unknown = matches!(error, api::Error::OutcomeUnknown { .. });
        Self {
            outcome_unknown,
            ..Self::from(Cause::Api(error))
        }
    }

    /// A failure of a place.
    #[must_use]
    pub fn sink(error: sink::Error) -> Self {
        let hint = error.hint.clone();
        Self {
            hint,
            ..Self::from(Cause::Sink(error))
        }
    }

    /// A verification or `after` command that failed.
    #[must_use]
    pub fn command(message: impl Into<String>) -> Self {
        Self::from(Cause::Command(message.into()))
    }

    /// With what was being done.
    #[must_use]
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// With advice for people.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether the same step may succeed if tried again soon, unchanged: the API or a place
    /// was unavailable or rate limited. A lost answer is not retryable here: the caller must
    /// first find out what happened.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        if self.outcome_unknown {
            return false;
        }
        match self.cause.as_ref() {
            Cause::Api(e) => e.is_retryable(),
            Cause::Sink(e) => e.is_retryable(),
            Cause::Command(_) | Cause::Refused(_) => false,
        }
    }

    /// What it takes for the step to succeed: time, a person, or finding out what happened.
    #[must_use]
    pub fn remedy(&self) -> Remedy {
        if self.outcome_unknown {
            return Remedy::FindOut;
        }
        if self.is_retryable() {
            return Remedy::Wait;
        }
        Remedy::Fix
    }

    /// The API error behind this failure, if it came from the API.
    #[must_use]
    pub fn api_error(&self) -> Option<&api::Error> {
        match self.cause.as_ref() {
            Cause::Api(e) => Some(e),
            Cause::Sink(_) | Cause::Command(_) | Cause::Refused(_) => None,
        }
    }
}

impl From<Cause> for StepError {
    fn from(cause: Cause) -> Self {
        Self {
            context: None,
            cause: Box::new(cause),
            hint: None,
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
    /// The API answers "not found" both to the delete and to the check: the key is gone, or
    /// it never was in this tailnet (another tailnet's key), which the API cannot tell apart.
    NotFound,
}

/// What the API says of a key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It works: not revoked, not expired, not used up.
    Live,
    /// The API knows it and says it is dead.
    Dead,
    /// The API does not know it (deleted, or another tailnet's).
    NotFound,
}

/// The old key's state as far as anyone can tell, for the report and for rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKey {
    /// The API says it works now.
    Live,
    /// Confirmed dead (by this rotation or found so).
    Revoked,
    /// Retired by minting its replacement (webhook secrets).
    Retired,
    /// The API of this tailnet does not know it, and never did during this rotation: it
    /// could not be revoked here and may still be live elsewhere.
    NotInTailnet,
    /// The API did not answer: it may be live or revoked (a revoke whose answer was lost).
    Unknown,
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
    /// Put `old_value` back into sink `index` where it holds a key of `minted` (a rollback).
    /// A place that holds none of them was not written, or is already restored, and is left
    /// as it is: a rollback undoes exactly what the rotation wrote, and a place that could
    /// not be written does not stop it from revoking the minted key. The default writes,
    /// for worlds that cannot tell.
    async fn restore(
        &self,
        index: usize,
        sink: &SinkPlan,
        minted: &[KeyId],
        old_value: &Secret,
    ) -> Result<(), StepError> {
        self.write(index, sink, minted, old_value).await
    }
    /// Run the verification commands with `value`, in order; the first failure stops.
    async fn verify(&mut self, commands: &[VerifyCommand], value: &Secret)
    -> Result<(), StepError>;
    /// Revoke `key_id` and confirm it is dead.
    async fn revoke(&mut self, key_id: &KeyId) -> Result<Revocation, StepError>;
    /// Ask the API whether `key_id` works now.
    async fn liveness(&mut self, key_id: &KeyId) -> Result<Liveness, StepError>;
    /// Whether place `index` holds a key of `ids` now; `None` when the place cannot be read
    /// (a CI secret, a cloud secret without read access). The default cannot tell.
    async fn holds(
        &mut self,
        index: usize,
        sink: &SinkPlan,
        ids: &[KeyId],
    ) -> Result<Option<bool>, StepError> {
        let _ = (index, sink, ids);
        Ok(None)
    }
    /// Whether the API's record of `key_id` carries this rotation's marker (see
    /// [`minted_by`]), or the API no longer knows the key. A journal's word that a key was
    /// minted here is checked before that key is revoked or reused: a planted record must not
    /// turn a rotation against a key it never minted.
    async fn minted_here(&mut self, key_id: &KeyId, rotation_id: &str) -> Result<bool, StepError>;
    /// The value of minted key `key_id` as place `index` holds it, if the place can be read
    /// and holds a value with this fingerprint. Lets a later run reuse a key an earlier one
    /// minted (the API shows a secret only once) instead of minting one more.
    async fn recover(
        &mut self,
        index: usize,
        sink: &SinkPlan,
        key_id: &KeyId,
        fingerprint: Fingerprint,
    ) -> Result<Option<Secret>, StepError>;
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
    #[error("{step} failed: {error}{}", and_also(also))]
    Failed {
        /// Which step, for people.
        step: String,
        /// Why (the first failure, when several places failed at once).
        error: StepError,
        /// The other failures of the same step.
        also: Vec<StepError>,
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
    /// The journal does not match what the API says; nothing was done.
    #[error(transparent)]
    Stale(#[from] Stale),
}

/// Why a reopened journal is not trusted to mint: what it says does not match what the API
/// says, as when an older copy of it was put back. A seal proves who wrote a journal, not
/// that it is the latest copy; an older one reads like a crash at that point, and acting on
/// it would mint a key nobody holds, or start over a rotation that already finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// Live keys carry this rotation's marker, and the journal records no mint that could
    /// have made them.
    #[error(
        "the API has live key(s) {} minted by rotation {rotation_id}, which its journal does not know of: the journal may be an older copy, so nothing was minted and no key or place was changed",
        join(keys)
    )]
    UnknownMinted {
        /// The rotation.
        rotation_id: String,
        /// The keys the journal does not know.
        keys: Vec<KeyId>,
    },
    /// The old key is dead, and the journal records neither its revocation nor an attempt.
    #[error(
        "the API says the old key {key_id} no longer works (revoked or invalid), but the journal of rotation {rotation_id} says it is live: the journal may be an older copy (of a rotation that went on or finished since), so nothing was minted and no key or place was changed"
    )]
    OldKeyDead {
        /// The rotation.
        rotation_id: String,
        /// The old key.
        key_id: KeyId,
    },
    /// The old key expired, and no place tsrotate can read holds it, or a key the journal
    /// minted, any more: they hold another key.
    #[error(
        "the old key {key_id} has expired, and no place of rotation {rotation_id} that tsrotate can read holds it (or a key the journal minted) any more: they hold another key, so the journal may be an older copy of a rotation that went on or finished since; nothing was minted and no key or place was changed"
    )]
    PlacesMovedOn {
        /// The rotation.
        rotation_id: String,
        /// The old key.
        key_id: KeyId,
    },
}

impl Stale {
    /// What a person should check and do, for a `hint:` line.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::UnknownMinted { rotation_id, keys } => format!(
                "check whether the journal in the state directory was restored from an older copy (a backup, a CI cache); if the latest copy exists, put it back and run the command again. Otherwise settle the rotation with `tsrotate abandon {rotation_id}` (it changes no key), and revoke {} with `tsrotate revoke` once nothing uses it",
                join(keys)
            ),
            Self::PlacesMovedOn { rotation_id, .. } => format!(
                "check whether the journal in the state directory was restored from an older copy (a backup, a CI cache) and which key the places hold now (`tsrotate inspect`); if the latest copy exists, put it back. Otherwise settle it with `tsrotate abandon {rotation_id}` (it changes no key) and rotate the key the places hold if it needs it"
            ),
            Self::OldKeyDead { rotation_id, .. } => format!(
                "check whether the journal in the state directory was restored from an older copy (a backup, a CI cache) and whether rotation {rotation_id} finished (`audit.jsonl` in the state directory records each of its steps); if the latest copy exists, put it back. Otherwise, or if the old key was revoked on purpose since the rotation began, settle it with `tsrotate abandon {rotation_id}` (it changes no key) and rotate again if its places still need a key"
            ),
        }
    }
}

/// Key IDs for a message, separated by commas.
fn join(keys: &[KeyId]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The other failures of a step, each after "; ".
fn and_also(also: &[StepError]) -> String {
    use std::fmt::Write as _;
    also.iter().fold(String::new(), |mut out, e| {
        let _ = write!(out, "; {e}");
        out
    })
}

/// Progress callbacks, for the CLI's narration. Called after each record is durable.
pub trait Observer {
    /// A record was written.
    fn recorded(&mut self, _state: &State, _event: &Event) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Whether `description` (of a key, as the API has it) is one [`mint_description`] made
/// for `rotation_id`: its marker, alone or at the end.
#[must_use]
pub fn minted_by(description: &str, rotation_id: &str) -> bool {
    let marker = format!("tsrotate {rotation_id}");
    description == marker
        || description
            .strip_suffix(&marker)
            .is_some_and(|rest| rest.ends_with(' '))
}

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
    /// The replacement minted by this process (or recovered from a place), with its secret.
    held: Option<(KeyId, Secret)>,
    /// Whether this process already looked in the places for a key an earlier run minted.
    looked_for_reuse: bool,
    /// Whether the journal is known to be the latest copy: this process created it, or it
    /// was checked against the API (see [`Self::check_current`]).
    journal_current: bool,
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
            looked_for_reuse: false,
            journal_current: false,
        }
    }

    /// For a journal this process created just now: no older copy can stand in for it, so
    /// the API need not be asked whether it is the latest before minting.
    #[must_use]
    pub fn created_here(mut self) -> Self {
        self.journal_current = true;
        self
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

    /// Where the old key stands. What the journal confirms is taken as it is; otherwise the
    /// API is asked, and a death it reports is journaled (so that rollback is refused from
    /// then on). Never fails: a question the API does not answer is [`OldKey::Unknown`].
    pub async fn old_key(&mut self) -> Result<OldKey, Stop> {
        if self.state.old_revoked() {
            return Ok(OldKey::Revoked);
        }
        if self.state.old_not_in_tailnet() {
            return Ok(OldKey::NotInTailnet);
        }
        if self.state.started.template.mint_retires_old() {
            // Webhook secrets are not keys of the keys API: minting retired the old one.
            return Ok(if self.state.mint_attempts > 0 {
                OldKey::Retired
            } else {
                OldKey::Live
            });
        }
        let id = self.state.old_key_id().clone();
        match self.world.liveness(&id).await {
            Ok(Liveness::Live) => Ok(OldKey::Live),
            Ok(Liveness::NotFound) if !self.state.old_seen_by_api() => Ok(OldKey::NotInTailnet),
            Ok(Liveness::Dead | Liveness::NotFound) => {
                self.record(Event::Revoked {
                    key_id: id,
                    already: true,
                })?;
                Ok(OldKey::Revoked)
            }
            Err(error) => {
                tracing::warn!("could not ask the API whether key {id} is live: {error}");
                Ok(OldKey::Unknown)
            }
        }
    }

    /// Run steps until the rotation is done or a step fails.
    pub async fn run(&mut self) -> Result<State, Stop> {
        // A reopened journal may be an older copy; before anything that may lead to a mint,
        // the API is asked whether it knows more than the journal does.
        if !self.journal_current && self.held.is_none() && self.state.needs_key(None) {
            self.check_current().await?;
            self.journal_current = true;
        }
        // A key an earlier run minted and got into a place is reused rather than one more
        // minted: failed runs must not pile up live keys (issue 11, item 10).
        if !self.looked_for_reuse && self.held.is_none() && self.state.needs_key(None) {
            self.looked_for_reuse = true;
            self.reuse().await?;
        }
        loop {
            let held_id = self.held.as_ref().map(|(id, _)| id.clone());
            match self.state.next(held_id.as_ref()) {
                Step::Finished => return Ok(self.state.clone()),
                Step::Finish { key_id } => self.record(Event::Done { key_id })?,
                Step::RevokeOld => self.revoke_old().await?,
                Step::RevokeMinted { key_id } => {
                    self.check_minted_here(&key_id).await?;
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

    /// Stop unless the journal agrees with the API: no live key carries this rotation's
    /// marker that the journal's mints cannot account for, and the old key is live unless
    /// the journal records a revoke of it (or it passed the expiry the plan recorded). A
    /// restored older copy of the journal reads like a crash at that point: without this,
    /// a run would mint a key nobody holds, or start over a rotation that already finished.
    async fn check_current(&mut self) -> Result<(), Stop> {
        self.check_minted_known().await?;
        let rotation_id = self.state.rotation_id().to_owned();
        let step = "checking the journal against the API";
        let settled = self.state.old_revoked()
            || self.state.old_not_in_tailnet()
            || self.state.old_revoke_attempted()
            || self.state.started.template.mint_retires_old();
        if settled || !self.old_live_at_plan() {
            return Ok(());
        }
        let key_id = self.state.old_key_id().clone();
        match self.world.liveness(&key_id).await {
            Ok(Liveness::Live) => Ok(()),
            // Expired: its death is no sign of an older copy, but places that all hold some
            // other key are (red team 4: a copy put back after the old key expired and a
            // later rotation replaced the key this one minted).
            Ok(Liveness::Dead | Liveness::NotFound) if self.old_expired_since_plan() => {
                self.check_places_hold_ours(rotation_id, key_id).await
            }
            Ok(Liveness::Dead | Liveness::NotFound) => Err(Stale::OldKeyDead {
                rotation_id,
                key_id,
            }
            .into()),
            Err(error) => Err(Stop::Failed {
                step: step.into(),
                error,
                also: Vec::new(),
            }),
        }
    }

    /// Stop if every place tsrotate can read holds neither the old key nor a key the journal
    /// minted (and at least one can be read): what the journal would do next is for a state
    /// of the places that is gone.
    async fn check_places_hold_ours(
        &mut self,
        rotation_id: String,
        key_id: KeyId,
    ) -> Result<(), Stop> {
        let mut ours: Vec<KeyId> = vec![key_id.clone()];
        ours.extend(self.state.minted.iter().cloned());
        let mut read = 0;
        for (index, sink) in self.state.sinks.clone().iter().enumerate() {
            match self.world.holds(index, sink, &ours).await {
                Ok(Some(true)) => return Ok(()),
                Ok(Some(false)) => read += 1,
                // A place that cannot be read, or not now, tells nothing either way.
                Ok(None) | Err(_) => {}
            }
        }
        if read == 0 {
            return Ok(());
        }
        Err(Stale::PlacesMovedOn {
            rotation_id,
            key_id,
        }
        .into())
    }

    /// Stop if live keys carry this rotation's marker that the journal's mints cannot
    /// account for (more than its mints without an answer could have made): the journal
    /// is then an older copy, and acting on it would mint one more key, or undo places that
    /// hold a key it does not know.
    async fn check_minted_known(&mut self) -> Result<(), Stop> {
        let rotation_id = self.state.rotation_id().to_owned();
        let step = "checking the journal against the API";
        if self.state.started.template.sweepable() {
            let found = self
                .world
                .find_minted(&rotation_id)
                .await
                .map_err(|error| Stop::Failed {
                    step: step.into(),
                    error,
                    also: Vec::new(),
                })?;
            let unknown: Vec<KeyId> = found
                .into_iter()
                .filter(|id| !self.state.minted.contains(id))
                .collect();
            let unknown_count = u32::try_from(unknown.len()).unwrap_or(u32::MAX);
            if unknown_count > self.state.unanswered_mints() {
                return Err(Stale::UnknownMinted {
                    rotation_id,
                    keys: unknown,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Whether the plan saw the old key live: the API knew it, not revoked, not invalid.
    fn old_live_at_plan(&self) -> bool {
        self.state
            .started
            .old
            .metadata
            .as_ref()
            .is_some_and(|k| k.revoked.is_none() && !k.invalid)
    }

    /// Whether the old key's expiry, as the plan recorded it, has passed: its death is then
    /// no sign of an older journal (a stalled rotation may outlive the key it replaces).
    fn old_expired_since_plan(&self) -> bool {
        self.state
            .started
            .old
            .metadata
            .as_ref()
            .and_then(|k| k.expires)
            .is_some_and(|expires| expires <= time::OffsetDateTime::now_utc())
    }

    /// Look in the places for a live key an earlier run minted, newest first, and hold it
    /// if a place gives back a value with the fingerprint the journal recorded.
    async fn reuse(&mut self) -> Result<bool, Stop> {
        for (key_id, fingerprint, places) in self.state.reusable() {
            for index in places {
                let plan = self.state.sinks[index].clone();
                let found = match self.world.recover(index, &plan, &key_id, fingerprint).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::info!("could not read {} back: {error}", plan.describe());
                        None
                    }
                };
                let Some(secret) = found else { continue };
                self.check_minted_here(&key_id).await?;
                // Only a key the API still calls live is worth reusing.
                match self.world.liveness(&key_id).await {
                    Ok(Liveness::Live) => {
                        tracing::info!(
                            "reusing key {key_id}, minted by an earlier run, from {}",
                            plan.describe()
                        );
                        self.held = Some((key_id, secret));
                        return Ok(true);
                    }
                    Ok(Liveness::Dead | Liveness::NotFound) => {
                        self.record(Event::Revoked {
                            key_id: key_id.clone(),
                            already: true,
                        })?;
                        break;
                    }
                    Err(error) => {
                        tracing::info!("could not ask the API about key {key_id}: {error}");
                        break;
                    }
                }
            }
        }
        Ok(false)
    }

    /// Run a rollback: put `old_value` back into every sink the rotation touched, then revoke
    /// every key it minted. Refused unless the API confirms that the old key is live: putting
    /// a dead key back would leave no working key anywhere.
    pub async fn rollback(&mut self, old_value: &Secret) -> Result<State, Stop> {
        // Refuse on what the journal knows before asking the API.
        if !matches!(self.state.next_rollback()?, RollbackStep::Finished) {
            match self.old_key().await? {
                OldKey::Live => {}
                OldKey::Revoked | OldKey::Retired => {
                    return Err(Stop::Refused(RollbackRefused::OldKeyRevoked(
                        self.state.old_key_id().clone(),
                    )));
                }
                OldKey::NotInTailnet | OldKey::Unknown => {
                    return Err(Stop::Refused(RollbackRefused::OldKeyUnconfirmed(
                        self.state.old_key_id().clone(),
                    )));
                }
            }
        }
        // An older copy of the journal would undo too little: places that hold a key it does
        // not know are not put back, and the rollback would still say it finished.
        if !self.journal_current && !matches!(self.state.next_rollback()?, RollbackStep::Finished) {
            self.check_minted_known().await?;
            self.journal_current = true;
        }
        if !self.state.rolling_back {
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
                    let put = write_with_retries(
                        &*self.world,
                        Put::Back,
                        sink,
                        &plan,
                        &minted,
                        old_value,
                    );
                    match put.await {
                        Ok(()) => self.record(Event::Restored { sink })?,
                        Err(error) => {
                            self.record(Event::WriteFailed {
                                sink,
                                key_id: self.state.old_key_id().clone(),
                                error: error.to_string(),
                            })?;
                            return Err(Stop::Failed {
                                step: format!("restoring {}", plan.describe()),
                                error,
                                also: Vec::new(),
                            });
                        }
                    }
                }
                RollbackStep::Sweep => self.sweep().await?,
                RollbackStep::RevokeMinted { key_id } => {
                    self.check_minted_here(&key_id).await?;
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
                    error: error.to_string(),
                    outcome_unknown: error.outcome_unknown,
                })?;
                Err(Stop::Failed {
                    step: "minting the replacement".into(),
                    error,
                    also: Vec::new(),
                })
            }
        }
    }

    /// Write `key_id` into `sinks`, at most [`WRITE_CONCURRENCY`] at a time. Every intent is
    /// journaled before the first write starts; the outcomes are journaled once every write
    /// has finished (the writes borrow the world while the journal needs `self`), so a crash
    /// in between leaves intents without outcomes: resuming counts those places as not known
    /// to hold the new key and writes them again (a write is check-and-set and idempotent).
    /// One failure stops the rotation after all the writes have finished.
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
                async move {
                    (
                        *i,
                        write_with_retries(world, Put::New, *i, plan, replace, value).await,
                    )
                }
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
                        error: error.to_string(),
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
        let mut errors = failures.into_iter().map(|(_, e)| e);
        let Some(error) = errors.next() else {
            return Ok(());
        };
        Err(Stop::Failed {
            step: format!("writing {}", places.join(", ")),
            error,
            also: errors.collect(),
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
                    error: error.to_string(),
                })?;
                Err(Stop::Failed {
                    step: "verifying the new key".into(),
                    error,
                    also: Vec::new(),
                })
            }
        }
    }

    /// Revoke the old key. A key the API does not know, and never knew during this rotation,
    /// is not called revoked: it may be another tailnet's, still live there.
    async fn revoke_old(&mut self) -> Result<(), Stop> {
        let key_id = self.state.old_key_id().clone();
        self.record(Event::RevokeIntent {
            key_id: key_id.clone(),
        })?;
        match self.world.revoke(&key_id).await {
            Ok(Revocation::NotFound) if !self.state.old_seen_by_api() => {
                self.record(Event::NotInTailnet { key_id })
            }
            Ok(outcome) => self.record(Event::Revoked {
                key_id,
                already: outcome != Revocation::Revoked,
            }),
            Err(error) => self.revoke_failed(key_id, "revoking the old key", error),
        }
    }

    /// Stop unless the API says `key_id` was minted by this rotation (or is gone).
    async fn check_minted_here(&mut self, key_id: &KeyId) -> Result<(), Stop> {
        let rotation_id = self.state.rotation_id().to_owned();
        let step = format!("checking that key {key_id} was minted by rotation {rotation_id}");
        match self.world.minted_here(key_id, &rotation_id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Failed {
                step,
                error: StepError::new(format!(
                    "the journal says this rotation minted key {key_id}, but the API's description of that key does not name rotation {rotation_id}; the journal may have been changed by someone else, so nothing was done to the key"
                )),
                also: Vec::new(),
            }),
            Err(error) => Err(Stop::Failed {
                step,
                error,
                also: Vec::new(),
            }),
        }
    }

    async fn revoke(&mut self, key_id: KeyId, step: &str) -> Result<(), Stop> {
        self.record(Event::RevokeIntent {
            key_id: key_id.clone(),
        })?;
        match self.world.revoke(&key_id).await {
            // A key this rotation minted was in this tailnet: not found now means gone.
            Ok(outcome) => self.record(Event::Revoked {
                key_id,
                already: outcome != Revocation::Revoked,
            }),
            Err(error) => self.revoke_failed(key_id, step, error),
        }
    }

    fn revoke_failed(&mut self, key_id: KeyId, step: &str, error: StepError) -> Result<(), Stop> {
        self.record(Event::RevokeFailed {
            key_id,
            error: error.to_string(),
        })?;
        Err(Stop::Failed {
            step: step.to_owned(),
            error,
            also: Vec::new(),
        })
    }

    async fn sweep(&mut self) -> Result<(), Stop> {
        let rotation_id = self.state.rotation_id().to_owned();
        match self.world.find_minted(&rotation_id).await {
            Ok(found) => self.record(Event::Swept { found }),
            Err(error) => Err(Stop::Failed {
                step: "looking for keys minted by interrupted runs".into(),
                error,
                also: Vec::new(),
            }),
        }
    }
}

/// What a write puts in a place.
#[derive(Debug, Clone, Copy)]
enum Put {
    /// The replacement ([`World::write`]).
    New,
    /// The old value, where the replacement stands ([`World::restore`]).
    Back,
}

/// Write one place, trying again (a bounded number of times, with a growing pause) when it
/// failed for a passing reason. Writes are check-and-set and read back, so a write that
/// took effect without an answer is found as ours on the next attempt.
async fn write_with_retries<W: World>(
    world: &W,
    put: Put,
    index: usize,
    plan: &SinkPlan,
    replace: &[KeyId],
    value: &Secret,
) -> Result<(), StepError> {
    let mut pause = WRITE_BACKOFF;
    let mut attempt = 1;
    loop {
        let written = match put {
            Put::New => world.write(index, plan, replace, value).await,
            Put::Back => world.restore(index, plan, replace, value).await,
        };
        match written {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retryable() && attempt < WRITE_ATTEMPTS => {
                tracing::info!(
                    "writing {} failed ({error}); trying again in {}ms",
                    plan.describe(),
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
