//! The rotation protocol as a pure function of the journal.
//!
//! [`State::replay`] folds journal records into what is known; [`State::next`] says which side
//! effect comes next. Neither does I/O, so every crash point is a unit test: stop after any
//! record, replay, and check that the next steps lead to a safe end.
//!
//! The order, and why:
//!
//! 1. `--revoke-first` revokes the old key before anything else (explicit, shown in the plan).
//! 2. A replacement is minted. Only the process that minted it knows its secret, so a process
//!    that finds no key of its own mints a fresh one, unless an earlier run already got a key
//!    into every sink and through verification (then nothing needs its secret again).
//! 3. Every sink gets the replacement. Sinks are matched by key ID, so a sink holding the old
//!    key or a key from an interrupted attempt is rewritten alike.
//! 4. The verification command runs with the replacement.
//! 5. Only now is the old key revoked (invariant 1).
//! 6. The tailnet is swept for keys whose description carries this rotation's ID: a key
//!    minted by a run that died before it could journal the answer is found here.
//! 7. Every minted key other than the replacement is revoked (invariant 2).

use std::collections::{BTreeMap, BTreeSet};

use super::super::journal::{Event, Record, SinkPlan, Started};
use crate::key::{Fingerprint, KeyId};

/// What the journal says has happened in one rotation.
#[derive(Debug, Clone)]
pub struct State {
    /// The plan.
    pub started: Started,
    /// Planned sinks plus any that `resume` found later.
    pub sinks: Vec<SinkPlan>,
    /// How many mints were attempted.
    pub mint_attempts: u32,
    /// Keys minted by this rotation, from the journal and from sweeps, in order.
    pub minted: Vec<KeyId>,
    /// Per sink: the key it was last confirmed to hold, `None` for the old one or unknown.
    pub holds: Vec<Option<KeyId>>,
    /// Per sink: whether any write was attempted (it may hold a minted key).
    pub touched: Vec<bool>,
    /// The key the verification command last passed with.
    pub verified: Option<KeyId>,
    /// Keys confirmed dead.
    pub revoked: BTreeSet<KeyId>,
    /// The old key could not be revoked: the API does not know it (another tailnet's?).
    pub old_not_in_tailnet: bool,
    /// Keys a revoke was attempted for (its outcome may be unknown): a dead old key among
    /// them is no sign that the journal is an older copy.
    pub revoke_attempted: BTreeSet<KeyId>,
    /// The fingerprint of each key minted with an answer, to recognise it in a place.
    pub fingerprints: BTreeMap<KeyId, Fingerprint>,
    /// Whether the tailnet was swept after the last mint attempt.
    pub swept: bool,
    /// How many mints ended with an answer (`minted`); fewer than `mint_attempts` means a
    /// mint may have created a key nobody heard of, which only a sweep can find.
    pub mints_answered: u32,
    /// A rollback was started.
    pub rolling_back: bool,
    /// Per sink: restored to the old key by a rollback.
    pub restored: Vec<bool>,
    /// The rotation ended: `Some(key)` done with `key`, or rolled back.
    pub end: Option<End>,
    /// The last failure recorded, for reports.
    pub last_failure: Option<String>,
}

/// A check that must pass with the new key before the old one is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyCommand {
    /// `--verify-cmd`, run by `sh -c`: the journal keeps only its digest, and the command
    /// itself comes from the command line of the run that executes it.
    Shell(crate::journal::CommandDigest),
    /// A configured place's `verify`, run without a shell.
    Program(Vec<String>),
}

/// How a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every sink holds this key and every other key is revoked.
    Done(KeyId),
    /// Every sink holds the old key again and every minted key is revoked.
    RolledBack,
    /// Given up by a person, keys as they were (`tsrotate abandon`).
    Abandoned,
}

/// The next side effect of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Revoke the old key.
    RevokeOld,
    /// Mint a replacement.
    Mint {
        /// The attempt number, for the description.
        attempt: u32,
    },
    /// Write `key_id` into these sinks (concurrently).
    Write {
        /// Indexes into `State::sinks`, in order.
        sinks: Vec<usize>,
        /// The key to write.
        key_id: KeyId,
    },
    /// Run the verification command with `key_id`.
    Verify {
        /// The key to verify.
        key_id: KeyId,
    },
    /// Look for keys minted by this rotation that the journal does not know.
    Sweep,
    /// Revoke a key minted by this rotation that is not the replacement.
    RevokeMinted {
        /// The key.
        key_id: KeyId,
    },
    /// Record the end.
    Finish {
        /// The key that remains.
        key_id: KeyId,
    },
    /// Nothing left to do.
    Finished,
}

/// The next side effect of a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackStep {
    /// Put the old value back into sink `sink`.
    Restore {
        /// Index into `State::sinks`.
        sink: usize,
    },
    /// Look for keys minted by this rotation that the journal does not know.
    Sweep,
    /// Revoke a minted key.
    RevokeMinted {
        /// The key.
        key_id: KeyId,
    },
    /// Record the end.
    Finish,
    /// Nothing left to do.
    Finished,
}

/// Why a rollback cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefused {
    /// The old key is dead; putting it back would break every consumer.
    #[error(
        "the old key {0} is already revoked; putting it back would break its consumers (finish the rotation with `tsrotate resume` instead)"
    )]
    OldKeyRevoked(KeyId),
    /// The API did not confirm that the old key is live (it did not answer, or does not know
    /// the key): a revoke whose answer was lost may have killed it.
    #[error(
        "the API did not confirm that the old key {0} is live; it may already be revoked, and putting it back could leave no working key anywhere (finish the rotation with `tsrotate resume`, which asks the API again)"
    )]
    OldKeyUnconfirmed(KeyId),
    /// The old value stopped working when the new one was made (webhook secrets).
    #[error(
        "the old secret was retired when the new one was made; finish with `tsrotate resume` instead"
    )]
    Irreversible,
    /// The rotation completed.
    #[error("the rotation already finished with key {0}")]
    AlreadyDone(KeyId),
    /// The rotation was given up.
    #[error("the rotation was abandoned; its keys are as it left them")]
    Abandoned,
}

impl State {
    /// Fold journal records into a state. The first record must be `started`.
    #[must_use]
    pub fn replay(records: &[Record]) -> Option<Self> {
        let mut events = records.iter().map(|r| &r.event);
        let Some(Event::Started(started)) = events.next() else {
            return None;
        };
        let mut state = Self::new((**started).clone());
        for event in events {
            state.apply(event);
        }
        Some(state)
    }

    fn new(started: Started) -> Self {
        let n = started.sinks.len();
        Self {
            sinks: started.sinks.clone(),
            started,
            mint_attempts: 0,
            minted: Vec::new(),
            holds: vec![None; n],
            touched: vec![false; n],
            verified: None,
            revoked: BTreeSet::new(),
            old_not_in_tailnet: false,
            revoke_attempted: BTreeSet::new(),
            fingerprints: BTreeMap::new(),
            swept: false,
            mints_answered: 0,
            rolling_back: false,
            restored: vec![false; n],
            end: None,
            last_failure: None,
        }
    }

    /// Apply one record.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Started(_) => {}
            Event::RevokeIntent { key_id } => {
                self.revoke_attempted.insert(key_id.clone());
            }
            Event::MintIntent { attempt, .. } => {
                self.mint_attempts = self.mint_attempts.max(*attempt);
                self.swept = false;
            }
            Event::Minted {
                key_id,
                fingerprint,
                ..
            } => {
                self.mints_answered += 1;
                self.fingerprints.insert(key_id.clone(), *fingerprint);
                self.add_minted(key_id);
            }
            Event::MintFailed { error, .. }
            | Event::WriteFailed { error, .. }
            | Event::VerifyFailed { error, .. }
            | Event::RevokeFailed { error, .. } => self.last_failure = Some(error.clone()),
            Event::WriteIntent { sink, .. } => {
                if let Some(h) = self.holds.get_mut(*sink) {
                    *h = None;
                    self.touched[*sink] = true;
                }
                if let Some(r) = self.restored.get_mut(*sink) {
                    *r = false;
                }
            }
            Event::Written { sink, key_id } => {
                if let Some(h) = self.holds.get_mut(*sink) {
                    *h = Some(key_id.clone());
                }
            }
            Event::SinkAdded { sink } => {
                self.sinks.push(sink.clone());
                self.holds.push(None);
                self.touched.push(false);
                self.restored.push(false);
            }
            Event::VerifyIntent { .. } => self.verified = None,
            Event::Verified { key_id } => self.verified = Some(key_id.clone()),
            Event::Revoked { key_id, .. } => {
                self.revoked.insert(key_id.clone());
            }
            Event::NotInTailnet { key_id } => {
                if key_id == self.old_key_id() {
                    self.old_not_in_tailnet = true;
                }
            }
            Event::Swept { found } => {
                for id in found {
                    self.add_minted(id);
                }
                self.swept = true;
            }
            Event::RollbackStarted => self.rolling_back = true,
            Event::Restored { sink } => {
                if let Some(r) = self.restored.get_mut(*sink) {
                    *r = true;
                }
                if let Some(h) = self.holds.get_mut(*sink) {
                    *h = None;
                }
            }
            Event::RolledBack => self.end = Some(End::RolledBack),
            Event::Done { key_id } => self.end = Some(End::Done(key_id.clone())),
            Event::Abandoned { .. } => self.end = Some(End::Abandoned),
        }
    }

    fn add_minted(&mut self, id: &KeyId) {
        if !self.minted.contains(id) {
            self.minted.push(id.clone());
        }
    }

    /// The rotation's ID.
    #[must_use]
    pub fn rotation_id(&self) -> &str {
        &self.started.rotation_id
    }

    /// The old key's ID.
    #[must_use]
    pub fn old_key_id(&self) -> &KeyId {
        &self.started.old.key_id
    }

    /// Whether the old key is confirmed dead.
    #[must_use]
    pub fn old_revoked(&self) -> bool {
        self.revoked.contains(self.old_key_id())
    }

    /// Whether a revoke of the old key was attempted, whatever its outcome.
    #[must_use]
    pub fn old_revoke_attempted(&self) -> bool {
        self.revoke_attempted.contains(self.old_key_id())
    }

    /// Whether the old key could not be revoked because the API does not know it.
    #[must_use]
    pub fn old_not_in_tailnet(&self) -> bool {
        self.old_not_in_tailnet
    }

    /// Whether the API knew the old key when the rotation was planned: a key it knew and no
    /// longer finds is gone, a key it never knew may be another tailnet's.
    #[must_use]
    pub fn old_seen_by_api(&self) -> bool {
        self.started.old.metadata.is_some()
    }

    /// How many keys minted by this rotation the journal may not know of: one per mint
    /// attempt without an answer since the last sweep (a lost answer may have created a key).
    /// Any more found in the tailnet were minted by runs this journal does not record.
    #[must_use]
    pub fn unanswered_mints(&self) -> u32 {
        if self.swept {
            0
        } else {
            self.mint_attempts.saturating_sub(self.mints_answered)
        }
    }

    /// Whether the old key needs no more revoking here: confirmed dead, or unknown to the API.
    fn old_settled(&self) -> bool {
        self.old_revoked() || self.old_not_in_tailnet
    }

    /// Whether some place is confirmed to hold `id`.
    fn held_by_a_place(&self, id: &KeyId) -> bool {
        self.holds.iter().any(|h| h.as_ref() == Some(id))
    }

    /// Minted keys, newest first, that are not known dead and whose fingerprint the journal
    /// has, each with the places that may hold it (confirmed first, then places a write was
    /// attempted on): a run without a key of its own may take one of them back from a place
    /// instead of minting another.
    #[must_use]
    pub fn reusable(&self) -> Vec<(KeyId, Fingerprint, Vec<usize>)> {
        self.minted
            .iter()
            .rev()
            .filter(|id| !self.revoked.contains(*id))
            .filter_map(|id| {
                let fingerprint = *self.fingerprints.get(id)?;
                let mut places: Vec<usize> = (0..self.sinks.len())
                    .filter(|&i| self.holds[i].as_ref() == Some(id))
                    .collect();
                places.extend(
                    (0..self.sinks.len()).filter(|&i| self.touched[i] && self.holds[i].is_none()),
                );
                (!places.is_empty()).then(|| (id.clone(), fingerprint, places))
            })
            .collect()
    }

    /// Whether a run holding `held` (or nothing) needs a key it does not have: it would mint
    /// one, unless it can reuse one from a place.
    #[must_use]
    pub fn needs_key(&self, held: Option<&KeyId>) -> bool {
        self.end.is_none()
            && held
                .filter(|id| !self.revoked.contains(*id))
                .or_else(|| self.settled_key())
                .is_none()
    }

    /// Whether the rotation ended (done or rolled back).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// Every key ID a sink of this rotation may hold: the old key, every minted key, and any
    /// other key a configured place held when the rotation was planned (a place out of sync).
    #[must_use]
    pub fn known_ids(&self) -> Vec<KeyId> {
        let mut ids = vec![self.old_key_id().clone()];
        for sink in &self.sinks {
            if let SinkPlan::Configured {
                held_at_plan: Some(id),
                ..
            } = sink
                && !ids.contains(id)
            {
                ids.push(id.clone());
            }
        }
        ids.extend(self.minted.iter().cloned());
        ids
    }

    /// The verification commands: the rotation's (`--verify-cmd`, by digest), each managed
    /// credential's, then each configured place's.
    #[must_use]
    pub fn verify_commands(&self) -> Vec<VerifyCommand> {
        let mut commands: Vec<VerifyCommand> = self
            .started
            .verify_cmd
            .iter()
            .map(|c| VerifyCommand::Shell(c.clone()))
            .collect();
        commands.extend(
            self.started
                .credential_verify
                .iter()
                .map(|c| VerifyCommand::Program(c.run.clone())),
        );
        for sink in &self.sinks {
            if let SinkPlan::Configured { verify, .. } = sink
                && !verify.is_empty()
            {
                commands.push(VerifyCommand::Program(verify.clone()));
            }
        }
        commands
    }

    /// Whether the tailnet must be searched for keys this rotation may have minted without
    /// hearing the answer: only when a mint was attempted and not answered (a crash, a lost
    /// or failed response). A rotation whose every mint was answered knows all its keys, and
    /// skips listing the whole tailnet.
    fn needs_sweep(&self) -> bool {
        !self.swept && self.started.template.sweepable() && self.mint_attempts > self.mints_answered
    }

    /// A minted key that an earlier run already got into every sink and verified, so that
    /// finishing needs no secret.
    fn settled_key(&self) -> Option<&KeyId> {
        let must_verify = !self.verify_commands().is_empty();
        self.minted.iter().rev().find(|id| {
            !self.revoked.contains(*id)
                && !self.sinks.is_empty()
                && self.holds.iter().all(|h| h.as_ref() == Some(*id))
                && (!must_verify || self.verified.as_ref() == Some(*id))
        })
    }

    /// The next step of the rotation. `held` is the minted key whose secret this process
    /// holds, if any.
    #[must_use]
    pub fn next(&self, held: Option<&KeyId>) -> Step {
        if self.end.is_some() {
            return Step::Finished;
        }
        if self.started.revoke_first && !self.old_settled() {
            return Step::RevokeOld;
        }
        let Some(target) = held
            .filter(|id| !self.revoked.contains(*id))
            .or_else(|| self.settled_key())
        else {
            // Before minting again, account for what earlier attempts minted (issue 11,
            // item 10): find any key a lost answer may have created, and revoke every minted
            // key no place is known to hold. (A place that holds one is looked at by the
            // executor, which reuses the key from there when it can read it.)
            if self.needs_sweep() {
                return Step::Sweep;
            }
            if let Some(orphan) = self
                .minted
                .iter()
                .find(|id| !self.revoked.contains(*id) && !self.held_by_a_place(id))
            {
                return Step::RevokeMinted {
                    key_id: orphan.clone(),
                };
            }
            return Step::Mint {
                attempt: self.mint_attempts + 1,
            };
        };
        let pending: Vec<usize> = (0..self.holds.len())
            .filter(|&i| self.holds[i].as_ref() != Some(target))
            .collect();
        if !pending.is_empty() {
            return Step::Write {
                sinks: pending,
                key_id: target.clone(),
            };
        }
        if !self.verify_commands().is_empty() && self.verified.as_ref() != Some(target) {
            return Step::Verify {
                key_id: target.clone(),
            };
        }
        let retired_by_mint = self.started.template.mint_retires_old();
        if !self.old_settled() && !retired_by_mint {
            return Step::RevokeOld;
        }
        if self.needs_sweep() {
            return Step::Sweep;
        }
        if let Some(stale) = self
            .minted
            .iter()
            .find(|id| *id != target && !self.revoked.contains(*id))
        {
            return Step::RevokeMinted {
                key_id: stale.clone(),
            };
        }
        Step::Finish {
            key_id: target.clone(),
        }
    }

    /// The next step of a rollback.
    pub fn next_rollback(&self) -> Result<RollbackStep, RollbackRefused> {
        match &self.end {
            Some(End::RolledBack) => return Ok(RollbackStep::Finished),
            Some(End::Done(id)) => return Err(RollbackRefused::AlreadyDone(id.clone())),
            Some(End::Abandoned) => return Err(RollbackRefused::Abandoned),
            None => {}
        }
        if self.old_revoked() {
            return Err(RollbackRefused::OldKeyRevoked(self.old_key_id().clone()));
        }
        if self.started.template.mint_retires_old() && self.mint_attempts > 0 {
            return Err(RollbackRefused::Irreversible);
        }
        if let Some(sink) = (0..self.sinks.len()).find(|&i| self.touched[i] && !self.restored[i]) {
            return Ok(RollbackStep::Restore { sink });
        }
        if self.needs_sweep() {
            return Ok(RollbackStep::Sweep);
        }
        if let Some(id) = self.minted.iter().find(|id| !self.revoked.contains(*id)) {
            return Ok(RollbackStep::RevokeMinted { key_id: id.clone() });
        }
        Ok(RollbackStep::Finish)
    }
}
