//! Acting on containment candidates: expire, deauthorize, drop routes or delete them,
//! journaled like a rotation.
//!
//! A containment's journal (`<state dir>/containments/<id>.jsonl`, same format and crash rules
//! as a rotation's, see [`crate::journal`]) starts with the plan: the action and a snapshot of
//! every device as the API described it just before anything changed. Each call is announced
//! by an intent and confirmed by an outcome, so after a crash:
//!
//! - `resume` ([`Containment::carry_out`]) asks the API about each device whose intent has no
//!   outcome and acts only where the snapshot shows the action has not happened (an expiry
//!   moved `expires`, a deauthorization cleared `authorized`, …): nothing is done twice;
//! - `rollback` ([`Containment::roll_back`]) puts back authorization and enabled routes as the
//!   snapshot has them. Expiring a node key and deleting a device cannot be undone through the
//!   API (the device must log in again, or join again), and the plan says so up front.
//!
//! A journal is attack surface: whoever can write one could ask `rollback` to authorize a
//! device or enable routes. So rollback takes a snapshot as a claim and checks it against the
//! API's description of the device now ([`restoration`]): it restores a device only while the
//! device is still as the action left it (still deauthorized, routes still dropped), enables
//! only routes the device still advertises, and never turns on what the snapshot did not have.
//! A device that changed since is left alone, and named.
//!
//! Every step also goes to the audit log (`audit.jsonl`, [`crate::audit`]) with the device's
//! node ID and hostname only: never the snapshot.
//!
//! Admission is a rotation's: the state directory must be trusted ([`StateDir`]), a lock per
//! key keeps two containments of one key apart, and no new containment of a key starts beside
//! an unfinished one. Journals are sealed as a rotation's are ([`crate::journal::seal`]):
//! `resume` and `rollback` act only on one whose seal verifies (a planted snapshot would
//! otherwise choose which devices get authorized and which routes get enabled), and an
//! unsealed one that says it is unfinished holds back new containments of its key until a
//! person looks. Shared-in (external) devices are refused at every step: they belong to
//! another tailnet.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{Client, Device};
use crate::audit::AuditLog;
use crate::fs::{Fail, FileLock};
use crate::journal::{self, Entry, Journal, Record};
use crate::key::KeyId;
use crate::rotate::session::StateDir;

/// What to do to each candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Expire its node key: it must log in again (`POST /device/{id}/expire`).
    Expire,
    /// Take its authorization away (`POST /device/{id}/authorized {"authorized": false}`).
    Deauthorize,
    /// Disable every route it exposes (`POST /device/{id}/routes {"routes": []}`).
    DropRoutes,
    /// Remove it from the tailnet (`DELETE /device/{id}`).
    Delete,
}

impl Action {
    /// Parses `expire`, `deauthorize`, `drop-routes` or `delete`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "expire" => Some(Self::Expire),
            "deauthorize" => Some(Self::Deauthorize),
            "drop-routes" => Some(Self::DropRoutes),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The name on the command line and in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expire => "expire",
            Self::Deauthorize => "deauthorize",
            Self::DropRoutes => "drop-routes",
            Self::Delete => "delete",
        }
    }

    /// Whether `rollback` can put a device back as it was.
    #[must_use]
    pub fn undoable(self) -> bool {
        matches!(self, Self::Deauthorize | Self::DropRoutes)
    }

    /// What undoing it would take when the API cannot, for plans and refusals.
    #[must_use]
    pub fn permanence(self) -> &'static str {
        match self {
            Self::Expire => {
                "`tsrotate rollback` cannot undo an expiry: the API cannot renew a node key, so each device's owner must log in again (`tailscale up`) to bring it back"
            }
            Self::Delete => {
                "`tsrotate rollback` cannot undo a deletion: each device must join the tailnet again with a new auth key"
            }
            Self::Deauthorize | Self::DropRoutes => {
                "`tsrotate rollback` restores it from the snapshot taken before"
            }
        }
    }

    /// What a person must know before this action is taken on `device`, if anything: an
    /// expiry on a device whose key expiry is disabled. Tailscale documents
    /// `POST /device/{id}/expire` as "Mark a device's node key as expired" and
    /// `keyExpiryDisabled: true` as "the keys for the device will not expire", and does not
    /// say which wins; tagged devices join with key expiry disabled by default. So the plan
    /// says it may not take effect, and names the quarantine that does not depend on it.
    #[must_use]
    pub fn caveat(self, device: &Device) -> Option<&'static str> {
        (self == Self::Expire && device.key_expiry_disabled).then_some(
            "its key expiry is disabled (tagged devices join so by default): Tailscale does not document whether an expiry takes effect on such a device; `--action deauthorize` is the sure quarantine",
        )
    }

    /// The scope the call needs, to explain a 403.
    #[must_use]
    pub fn scope(self) -> &'static str {
        match self {
            Self::DropRoutes => "devices:routes",
            Self::Expire | Self::Deauthorize | Self::Delete => "devices:core",
        }
    }

    /// Whether `device` now shows the effect of this action, compared with its `snapshot`.
    fn happened(self, snapshot: &Device, device: &Device) -> bool {
        match self {
            Self::Expire => device.expires != snapshot.expires,
            Self::Deauthorize => !device.authorized,
            Self::DropRoutes => device.enabled_routes.is_empty(),
            // A device that still answers was not deleted.
            Self::Delete => false,
        }
    }
}

/// The folder of containment journals in a state directory.
#[must_use]
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("containments")
}

/// The journal of containment `id`.
#[must_use]
pub fn path_of(state_dir: &Path, id: &str) -> PathBuf {
    dir(state_dir).join(format!("{id}.jsonl"))
}

/// Whether `id` names a containment journal in `state_dir` (rather than a rotation).
#[must_use]
pub fn exists(state_dir: &Path, id: &str) -> bool {
    is_id(id) && path_of(state_dir, id).is_file()
}

/// Containment IDs are `c` and the characters of a rotation ID: nothing that walks paths.
fn is_id(id: &str) -> bool {
    id.starts_with('c') && id.len() > 1 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new containment ID: `c`, the UTC time to the second, six random characters.
#[must_use]
pub fn new_id(now: time::OffsetDateTime) -> String {
    let rotation = crate::rotate::plan::new_rotation_id(now);
    format!("c{}", &rotation[1..])
}

/// What a containment will do, journaled before anything changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its ID.
    pub containment_id: String,
    /// The tailnet, as the API client names it.
    pub tailnet: String,
    /// Who ran it (the OS user).
    pub user: String,
    /// The leaked key whose devices these are.
    pub key_id: KeyId,
    /// What is done to each.
    pub action: Action,
    /// Every device acted on, as the API described it just before: what rollback restores.
    pub devices: Vec<Device>,
}

/// One record of a containment journal. IDs, snapshots and messages only: no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// The plan, first in every containment journal.
    Planned(Box<Plan>),
    /// About to act on a device.
    Intent {
        /// The device.
        node_id: String,
    },
    /// The action happened (`already`: a crashed run's call had done it).
    Done {
        /// The device.
        node_id: String,
        /// Found done, not done now.
        already: bool,
        /// Found done after the containment's own call was answered with a failure: someone
        /// else made the change, so `rollback` leaves it (it is not the containment's to undo).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_others: bool,
    },
    /// The device is no longer in the tailnet: nothing to do, nothing to restore.
    Gone {
        /// The device.
        node_id: String,
    },
    /// The call failed; `resume` tries again.
    Failed {
        /// The device.
        node_id: String,
        /// Why.
        error: String,
        /// The HTTP status the API answered with; none when no answer came (the call may
        /// have happened).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// `rollback` began.
    UndoStarted,
    /// About to restore a device from its snapshot.
    UndoIntent {
        /// The device.
        node_id: String,
    },
    /// The device is as its snapshot again (as far as the API allows it now).
    Undone {
        /// The device.
        node_id: String,
        /// Routes the snapshot had enabled that the device no longer advertises: not enabled.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_restored: Vec<String>,
    },
    /// `rollback` left the device as it is (see [`restoration`]).
    Kept {
        /// The device.
        node_id: String,
        /// Why, in words.
        reason: String,
        /// It changed since the action (someone else acted on it): a person should look.
        changed: bool,
    },
    /// Restoring failed; `rollback` again tries again.
    UndoFailed {
        /// The device.
        node_id: String,
        /// Why.
        error: String,
    },
    /// Every device was acted on.
    Finished,
    /// Every device acted on is restored.
    RolledBack,
    /// A person settled it (`tsrotate abandon`): tsrotate acts on its devices no more.
    Abandoned {
        /// Who (the OS user).
        by: String,
    },
}

impl Entry for Step {
    fn opens(&self) -> bool {
        matches!(self, Self::Planned(_))
    }
    const OPENING: &'static str = "planned";
}

/// Where one device of the plan stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Progress {
    /// Not acted on yet.
    Pending,
    /// A call was announced; it may or may not have happened.
    Intended,
    /// Done (`already`: found done after a crash).
    Done {
        /// Found done rather than done now.
        already: bool,
        /// Found done after the containment's own call failed with an answer: someone else
        /// did it.
        by_others: bool,
    },
    /// No longer in the tailnet.
    Gone,
    /// The last call failed.
    Failed {
        /// Why.
        error: String,
        /// The HTTP status of the answer; none when no answer came.
        status: Option<u16>,
    },
    /// A restore was announced.
    UndoIntended,
    /// Restored from the snapshot.
    Undone {
        /// Routes not enabled again: the device no longer advertises them.
        not_restored: Vec<String>,
    },
    /// Left as it is by `rollback`.
    Kept {
        /// Why.
        reason: String,
        /// It changed since the action.
        changed: bool,
    },
    /// The last restore failed.
    UndoFailed {
        /// Why.
        error: String,
    },
}

impl Progress {
    /// One word for it (the `state` of its JSON), for the audit log and settled reports.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Intended => "intended",
            Self::Done {
                by_others: true, ..
            } => "done_by_others",
            Self::Done { already: false, .. } => "done",
            Self::Done { already: true, .. } => "found_done",
            Self::Gone => "gone",
            Self::Failed { .. } => "failed",
            Self::UndoIntended => "undo_intended",
            Self::Undone { .. } => "undone",
            Self::Kept { .. } => "kept",
            Self::UndoFailed { .. } => "undo_failed",
        }
    }

    /// Whether the action may have changed the device and nothing restored it since: what
    /// a person who takes over must check.
    #[must_use]
    pub fn may_be_changed(&self) -> bool {
        matches!(
            self,
            Self::Intended
                | Self::Done { .. }
                | Self::Failed { .. }
                | Self::UndoIntended
                | Self::UndoFailed { .. }
        )
    }
}

/// How a containment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Every device was acted on.
    Finished,
    /// Every device acted on was restored.
    RolledBack,
    /// Given up by a person (`tsrotate abandon`): its devices are as it left them.
    Abandoned,
}

impl End {
    /// The word for it, in tables and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::RolledBack => "rolled back",
            Self::Abandoned => "abandoned",
        }
    }
}

/// A containment as its journal tells it.
#[derive(Debug, Clone)]
pub struct State {
    /// The plan.
    pub plan: Plan,
    /// When the plan was journaled.
    pub started: time::OffsetDateTime,
    /// Per device of the plan, in its order.
    pub progress: Vec<Progress>,
    /// `rollback` has begun.
    pub undoing: bool,
    /// `rollback` announced, made or decided a restore (not only began and failed to look):
    /// from then on only `rollback` carries the containment on.
    pub restore_began: bool,
    /// Per device: a call of the containment was answered with a failure (it changed nothing)
    /// since its last call that succeeded. What the device shows then may be someone else's
    /// doing, even after a later call that got no answer, and `rollback` leaves it alone.
    pub refused: Vec<bool>,
    /// How it ended, if it has.
    pub end: Option<End>,
}

impl State {
    /// Replays a journal's records; `None` if it does not start with a plan.
    #[must_use]
    pub fn replay(records: &[Record<Step>]) -> Option<Self> {
        let first = records.first()?;
        let Step::Planned(plan) = &first.event else {
            return None;
        };
        let mut state = Self {
            started: first.at,
            progress: vec![Progress::Pending; plan.devices.len()],
            refused: vec![false; plan.devices.len()],
            plan: (**plan).clone(),
            undoing: false,
            restore_began: false,
            end: None,
        };
        for record in &records[1..] {
            state.apply(&record.event);
        }
        Some(state)
    }

    fn index(&self, node_id: &str) -> Option<usize> {
        self.plan.devices.iter().position(|d| d.node_id == node_id)
    }

    fn mark_refused(&mut self, node_id: &str, refused: bool) {
        if let Some(i) = self.index(node_id) {
            self.refused[i] = refused;
        }
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Failed {
                node_id,
                status: Some(_),
                ..
            } => self.mark_refused(node_id, true),
            Step::Done {
                node_id,
                already: false,
                ..
            } => self.mark_refused(node_id, false),
            Step::UndoIntent { .. } | Step::Undone { .. } | Step::Kept { .. } => {
                self.restore_began = true;
            }
            _ => {}
        }
        let set = |state: &mut Self, node_id: &str, progress: Progress| {
            if let Some(i) = state.index(node_id) {
                state.progress[i] = progress;
            }
        };
        match step {
            Step::Planned(_) => {}
            Step::Intent { node_id } => set(self, node_id, Progress::Intended),
            Step::Done {
                node_id,
                already,
                by_others,
            } => set(
                self,
                node_id,
                Progress::Done {
                    already: *already,
                    by_others: *by_others,
                },
            ),
            Step::Gone { node_id } => set(self, node_id, Progress::Gone),
            Step::Failed {
                node_id,
                error,
                status,
            } => set(
                self,
                node_id,
                Progress::Failed {
                    error: error.clone(),
                    status: *status,
                },
            ),
            Step::UndoStarted => self.undoing = true,
            Step::UndoIntent { node_id } => set(self, node_id, Progress::UndoIntended),
            Step::Undone {
                node_id,
                not_restored,
            } => set(
                self,
                node_id,
                Progress::Undone {
                    not_restored: not_restored.clone(),
                },
            ),
            Step::Kept {
                node_id,
                reason,
                changed,
            } => set(
                self,
                node_id,
                Progress::Kept {
                    reason: reason.clone(),
                    changed: *changed,
                },
            ),
            Step::UndoFailed { node_id, error } => set(
                self,
                node_id,
                Progress::UndoFailed {
                    error: error.clone(),
                },
            ),
            Step::Finished => self.end = Some(End::Finished),
            Step::RolledBack => self.end = Some(End::RolledBack),
            Step::Abandoned { .. } => self.end = Some(End::Abandoned),
        }
    }

    /// Whether nothing more happens in it unless someone rolls it back.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }

    /// The devices acted on (done now or found done), as `(snapshot, found_done)`; not
    /// those someone else changed after the containment's own call failed.
    pub fn acted(&self) -> impl Iterator<Item = (&Device, bool)> {
        self.plan
            .devices
            .iter()
            .zip(&self.progress)
            .filter_map(|(d, p)| match p {
                Progress::Done {
                    already,
                    by_others: false,
                } => Some((d, *already)),
                _ => None,
            })
    }
}

/// What can stop a containment's actions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory cannot be trusted, or could not be prepared.
    #[error(transparent)]
    Session(#[from] crate::rotate::session::Error),
    /// A journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// Another run holds the key's containment lock.
    #[error("another tsrotate run is containing key {0}")]
    Busy(KeyId),
    /// A containment of the key is not finished.
    #[error("containment {containment_id} of key {key_id} is not finished")]
    Unfinished {
        /// The key.
        key_id: KeyId,
        /// The unfinished containment.
        containment_id: String,
    },
    /// No containment journal by that ID.
    #[error("no containment `{0}` in the state directory")]
    Unknown(String),
    /// A plan names a shared-in device: tsrotate never changes another tailnet's devices.
    #[error("device {0} is shared in from another tailnet; tsrotate never changes it")]
    External(String),
    /// The credential lacks the scope the action needs.
    #[error("{what} device {node_id} was refused: the credential lacks the `{scope}` scope")]
    Forbidden {
        /// What was being done.
        what: &'static str,
        /// The device.
        node_id: String,
        /// The scope.
        scope: &'static str,
    },
    /// The action cannot be undone through the API.
    #[error("containment {containment_id} used `{}`: {}", action.as_str(), action.permanence())]
    CannotUndo {
        /// The containment.
        containment_id: String,
        /// Its action.
        action: Action,
    },
    /// Rolled back already, or never acted on anything.
    #[error("containment {0} has nothing to undo")]
    NothingToUndo(String),
    /// `abandon` of a containment that already ended.
    #[error("containment {containment_id} already ended ({}); there is nothing to abandon", end.as_str())]
    NothingToAbandon {
        /// The containment.
        containment_id: String,
        /// How it ended.
        end: End,
    },
    /// `abandon` of a containment that `resume` (and, for a reversible action, `rollback`)
    /// can still carry on, without `force`.
    #[error("{}", can_go_on(containment_id, *action, *undoing))]
    CanGoOn {
        /// The containment.
        containment_id: String,
        /// Its action.
        action: Action,
        /// Its rollback began: only `rollback` carries it on.
        undoing: bool,
    },
    /// A containment journal that cannot be read names the key a new containment is for: it
    /// may be an unfinished containment of it.
    #[error(
        "containment journal {containment_id} cannot be read ({}), and it names key {key_id}: it may be an unfinished containment of this key",
        crate::text::escape(problem)
    )]
    Unreadable {
        /// The journal's ID (its file's name).
        containment_id: String,
        /// The key.
        key_id: KeyId,
        /// Why it cannot be read.
        problem: String,
    },
    /// `resume` or `rollback` of a containment a person settled.
    #[error("containment {0} was abandoned: tsrotate acts on its devices no more")]
    Abandoned(String),
    /// `resume` of a containment whose rollback began: it would act again on the devices the
    /// rollback restored.
    #[error(
        "containment {0} is being rolled back: resuming it would act again on the devices it restored"
    )]
    Undoing(String),
}

/// The refusal to abandon a containment that `resume` or `rollback` can still carry on.
fn can_go_on(id: &str, action: Action, undoing: bool) -> String {
    if undoing {
        format!("containment {id} can still be rolled back with `tsrotate rollback {id}`")
    } else if action.undoable() {
        format!(
            "containment {id} can still be finished with `tsrotate resume {id}` or undone with `tsrotate rollback {id}`"
        )
    } else {
        format!("containment {id} can still be finished with `tsrotate resume {id}`")
    }
}

impl Error {
    /// What the person can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Session(e) => e.hint(),
            Self::Busy(_) => {
                Some("wait for it to finish; the lock is released when it ends".to_owned())
            }
            Self::Unfinished { containment_id, .. } => Some(format!(
                "finish it with `tsrotate resume {containment_id}` or undo it with `tsrotate rollback {containment_id}` (or give it up with `tsrotate abandon {containment_id} --force` and check its devices by hand)"
            )),
            Self::Forbidden { scope, .. } => Some(format!(
                "give the credential the `{scope}` scope, then `tsrotate resume` finishes the containment"
            )),
            Self::Journal(journal::Error::Unsealed { path, .. }) => Some(unsealed_hint(
                &path
                    .file_stem()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default(),
            )),
            Self::Journal(journal::Error::Damaged { path, .. }) => Some(format!(
                "nothing can be done from it: check by hand what its devices are now (`tsrotate contain KEY` lists the key's devices), then move it aside (`mv {0} {0}.damaged`)",
                crate::text::path(path)
            )),
            Self::CanGoOn { .. } => {
                Some("to give it up anyway and check its devices by hand, add --force".to_owned())
            }
            Self::Undoing(id) => Some(format!(
                "finish the rollback with `tsrotate rollback {id}`; to quarantine the devices again, give this one up (`tsrotate abandon {id} --force`), then start a new containment (`tsrotate contain KEY --action …`)"
            )),
            Self::Abandoned(_) => Some(
                "check its devices by hand (`tsrotate contain KEY` lists the key's devices anew)"
                    .to_owned(),
            ),
            Self::Unreadable { containment_id, .. } => Some(format!(
                "check the devices it names, then repair it or move it aside (`mv containments/{containment_id}.jsonl containments/{containment_id}.jsonl.damaged` in the state directory: only *.jsonl files are read), and run again"
            )),
            Self::Journal(_)
            | Self::Unknown(_)
            | Self::External(_)
            | Self::CannotUndo { .. }
            | Self::NothingToUndo(_)
            | Self::NothingToAbandon { .. } => None,
        }
    }

    /// Whether the person must fix something (the CLI exits 2) rather than the system failing.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Session(e) => e.is_user_error(),
            // A damaged journal is something in the state directory to look at and move
            // aside, like an unsealed one.
            Self::Journal(e) => e.is_unsealed() || matches!(e, journal::Error::Damaged { .. }),
            _ => true,
        }
    }
}

/// What to do about containment `id`, whose journal's seal does not verify: nothing is done
/// from it, a person checks its devices and settles it.
#[must_use]
pub fn unsealed_hint(id: &str) -> String {
    format!(
        "check by hand what its devices are now (`tsrotate contain KEY` lists the key's devices), then settle it with `tsrotate abandon {}`; if it is yours and was sealed with another journal key, run with that key (TSROTATE_JOURNAL_KEY_FILE)",
        crate::text::escape(id)
    )
}

/// A containment under its key's lock, recording to its journal.
pub struct Containment {
    _lock: FileLock,
    journal: Journal<Step>,
    audit: Option<AuditLog>,
    user: String,
    state: State,
    /// Whether its journal's seal verifies: always, except when opened to settle it
    /// ([`Containment::settle`]); then nothing is done from it.
    seal: journal::Seal,
}

impl std::fmt::Debug for Containment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containment")
            .field("containment_id", &self.state.plan.containment_id)
            .finish_non_exhaustive()
    }
}

fn lock(dir: &StateDir, key_id: &KeyId) -> Result<FileLock, Error> {
    let locks = dir.path().join("locks");
    crate::fs::create_private_dir_all(&locks).map_err(crate::rotate::session::Error::from)?;
    FileLock::acquire(
        &locks.join(format!("contain-{key_id}.lock")),
        Fail::Immediately,
    )
    .map_err(|e| match e {
        crate::fs::Error::Busy { .. } => Error::Busy(key_id.clone()),
        other => Error::Session(other.into()),
    })
}

/// A containment's step as the audit log keeps it: who and what (node IDs, hostnames, the
/// outcome), never a device snapshot. Tagged `containment_*` so that it reads apart from a
/// rotation's events in the same log.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::enum_variant_names,
    reason = "the names are the audit log's `type` tags, which must read apart from a rotation's"
)]
enum Audited<'a> {
    /// The plan: which devices, what action, because of which key.
    ContainmentPlanned {
        containment_id: &'a str,
        key_id: &'a KeyId,
        tailnet: &'a str,
        action: Action,
        devices: Vec<Named<'a>>,
    },
    /// One device's step: `intent`, `done`, `found_done`, `gone`, `failed`, `restore_intent`,
    /// `restored`, `restore_failed` or `left_alone`.
    ContainmentDevice {
        containment_id: &'a str,
        action: Action,
        node_id: String,
        hostname: String,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    ContainmentFinished {
        containment_id: &'a str,
    },
    ContainmentRollbackStarted {
        containment_id: &'a str,
    },
    ContainmentRolledBack {
        containment_id: &'a str,
    },
    /// A person took over: each device with where the containment left it.
    ContainmentAbandoned {
        containment_id: &'a str,
        key_id: &'a KeyId,
        action: Action,
        /// Whether the journal's seal verified (if not, the devices are what it claims).
        sealed: bool,
        devices: Vec<Left<'a>>,
    },
}

/// A device by its IDs, with where a settled containment left it ([`Progress::as_str`]).
#[derive(Serialize)]
struct Left<'a> {
    node_id: &'a str,
    hostname: &'a str,
    state: &'static str,
}

/// A device by its IDs.
#[derive(Serialize)]
struct Named<'a> {
    node_id: &'a str,
    hostname: &'a str,
}

/// The audit log beside the journals; `None` (with a warning) when it cannot be opened.
fn open_audit(dir: &StateDir) -> Option<AuditLog> {
    AuditLog::open(dir.path())
        .inspect_err(|e| {
            tracing::warn!("cannot open the audit log in {}: {e}", dir.path().display());
        })
        .ok()
}

/// The IDs of every containment journal, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<String>, journal::Error> {
    let folder = dir(state_dir);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(journal::Error::Io {
                path: folder,
                source,
            });
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .filter(|id| is_id(id))
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Every containment whose journal's seal verifies, as its journal tells it, oldest first
/// ([`unsealed`] lists the others: never acted on).
pub fn all(dir: &StateDir) -> Result<Vec<State>, journal::Error> {
    let mut found = Vec::new();
    for id in list(dir.path())? {
        let records = match journal::read_as::<Step>(&path_of(dir.path(), &id), dir.key()) {
            Ok(records) => records,
            Err(e) if e.is_unsealed() => continue,
            Err(e) => return Err(e),
        };
        found.extend(State::replay(&records));
    }
    Ok(found)
}

/// One containment journal as `status` shows it: what it says and whether its seal verifies,
/// or why it cannot be read.
#[derive(Debug)]
pub struct Surveyed {
    /// Its ID (the file's name).
    pub id: String,
    /// What it says (named by its ID, whatever an unsealed plan claims) and its seal, or why
    /// it cannot be read.
    pub found: Result<(State, journal::Seal), String>,
}

/// Every containment journal, oldest first, sealed or not, readable or not: for showing them
/// (`status`), never for acting on them. Fails only when the folder cannot be listed.
pub fn survey(dir: &StateDir) -> Result<Vec<Surveyed>, journal::Error> {
    let mut found = Vec::new();
    for id in list(dir.path())? {
        let read = journal::read_any::<Step>(&path_of(dir.path(), &id), dir.key())
            .map_err(|e| e.to_string())
            .and_then(|(records, seal)| {
                let mut state = State::replay(&records)
                    .ok_or_else(|| "it does not start with a containment plan".to_owned())?;
                id.clone_into(&mut state.plan.containment_id);
                Ok((state, seal))
            });
        found.push(Surveyed { id, found: read });
    }
    Ok(found)
}

/// The containments not finished (neither finished nor rolled back), oldest first. Only
/// journals whose seal verifies; see [`unsealed`] for the others.
pub fn unfinished(dir: &StateDir) -> Result<Vec<State>, journal::Error> {
    let mut found = all(dir)?;
    found.retain(|s| !s.is_finished());
    Ok(found)
}

/// The containment journals whose seal does not verify and that say they are unfinished,
/// with what they say and why they are not believed: shown, never acted on.
pub fn unsealed(dir: &StateDir) -> Result<Vec<(State, journal::Error)>, journal::Error> {
    let mut found = Vec::new();
    for id in list(dir.path())? {
        let path = path_of(dir.path(), &id);
        // Unreadable: `resume` or `rollback` of it says so.
        let Ok((records, seal)) = journal::read_any::<Step>(&path, dir.key()) else {
            continue;
        };
        if let journal::Seal::Broken { line, why } = seal
            && let Some(mut state) = State::replay(&records).filter(|s| !s.is_finished())
        {
            // Named by its file (what `abandon` takes), not by what the unsealed plan claims.
            state.plan.containment_id = id;
            found.push((state, journal::Error::Unsealed { path, line, why }));
        }
    }
    Ok(found)
}

/// The unfinished containment of `key_id` whose journal's seal verifies, if any. A journal
/// that cannot be read is skipped with a warning naming it (one damaged file must not stop
/// the containment of every key), unless its bytes name this key: then it may be an
/// unfinished containment of it, and nothing begins until a person settles it.
fn unfinished_of(dir: &StateDir, key_id: &KeyId) -> Result<Option<State>, Error> {
    for id in list(dir.path())? {
        let path = path_of(dir.path(), &id);
        match journal::read_as::<Step>(&path, dir.key()) {
            Ok(records) => {
                if let Some(state) =
                    State::replay(&records).filter(|s| !s.is_finished() && s.plan.key_id == *key_id)
                {
                    return Ok(Some(state));
                }
            }
            // Held back by `unsealed`, checked before.
            Err(e) if e.is_unsealed() => {}
            Err(e) => {
                let quoted = format!("\"{key_id}\"");
                if std::fs::read(&path)
                    .is_ok_and(|b| b.windows(quoted.len()).any(|w| w == quoted.as_bytes()))
                {
                    return Err(Error::Unreadable {
                        containment_id: id,
                        key_id: key_id.clone(),
                        problem: e.to_string(),
                    });
                }
                tracing::warn!(
                    "{}; skipped: it does not name key {key_id}",
                    crate::text::escape(&e.to_string())
                );
            }
        }
    }
    Ok(None)
}

impl Containment {
    /// Locks the key's containments, checks that none of them is unfinished, and journals
    /// the plan (and audits it, as run by `plan.user`). Refuses a plan that names a shared-in
    /// device.
    pub fn begin(dir: &StateDir, plan: Plan) -> Result<Self, Error> {
        if let Some(external) = plan.devices.iter().find(|d| d.is_external) {
            return Err(Error::External(external.node_id.clone()));
        }
        let held = lock(dir, &plan.key_id)?;
        if let Some((_, error)) = unsealed(dir)?
            .into_iter()
            .find(|(s, _)| s.plan.key_id == plan.key_id)
        {
            return Err(Error::Journal(error));
        }
        if let Some(other) = unfinished_of(dir, &plan.key_id)? {
            return Err(Error::Unfinished {
                key_id: plan.key_id.clone(),
                containment_id: other.plan.containment_id,
            });
        }
        let id = plan.containment_id.clone();
        let user = plan.user.clone();
        let first = Step::Planned(Box::new(plan));
        let journal = Journal::create_in(&self::dir(dir.path()), dir.key(), &id, first.clone())?;
        let records = journal::read_as::<Step>(journal.path(), dir.key())?;
        let state = State::replay(&records).ok_or_else(|| Error::Unknown(id.clone()))?;
        let mut containment = Self {
            _lock: held,
            journal,
            audit: open_audit(dir),
            user,
            state,
            seal: journal::Seal::Intact,
        };
        containment.audit(&first);
        Ok(containment)
    }

    /// Reopens containment `id` under its key's lock (read again once the lock is held: the
    /// run that held it may just have finished it). `user` (who runs this) goes to the audit
    /// log with every step from now on.
    pub fn reopen(dir: &StateDir, id: &str, user: &str) -> Result<Self, Error> {
        if !exists(dir.path(), id) {
            return Err(Error::Unknown(id.to_owned()));
        }
        let path = path_of(dir.path(), id);
        let before = State::replay(&journal::read_as::<Step>(&path, dir.key())?)
            .ok_or_else(|| Error::Unknown(id.to_owned()))?;
        let held = lock(dir, &before.plan.key_id)?;
        let (journal, records) = Journal::<Step>::open_at(&path, dir.key())?;
        let state = State::replay(&records).ok_or_else(|| Error::Unknown(id.to_owned()))?;
        if let Some(external) = state.plan.devices.iter().find(|d| d.is_external) {
            return Err(Error::External(external.node_id.clone()));
        }
        Ok(Self {
            _lock: held,
            journal,
            audit: open_audit(dir),
            user: user.to_owned(),
            state,
            seal: journal::Seal::Intact,
        })
    }

    /// Reopens containment `id` whatever its journal's seal, under its key's lock, only to
    /// settle it ([`Containment::abandon`]): nothing is ever done from a journal opened so
    /// ([`Containment::carry_out`] and [`Containment::roll_back`] refuse it). The ID shown
    /// and audited is the file's, not the one an unsealed plan claims.
    pub fn settle(dir: &StateDir, id: &str, user: &str) -> Result<Self, Error> {
        if !exists(dir.path(), id) {
            return Err(Error::Unknown(id.to_owned()));
        }
        let path = path_of(dir.path(), id);
        let (records, _) = journal::read_any::<Step>(&path, dir.key())?;
        let before = State::replay(&records).ok_or_else(|| Error::Unknown(id.to_owned()))?;
        let held = lock(dir, &before.plan.key_id)?;
        let (journal, records, seal) = Journal::<Step>::open_to_settle(&path, dir.key())?;
        let mut state = State::replay(&records).ok_or_else(|| Error::Unknown(id.to_owned()))?;
        id.clone_into(&mut state.plan.containment_id);
        Ok(Self {
            _lock: held,
            journal,
            audit: open_audit(dir),
            user: user.to_owned(),
            state,
            seal,
        })
    }

    /// Whether its journal's seal verifies (always, except when opened to settle it).
    #[must_use]
    pub fn sealed(&self) -> bool {
        self.seal == journal::Seal::Intact
    }

    /// Refuses to act from a journal whose seal does not verify.
    fn require_sealed(&self) -> Result<(), Error> {
        match self.seal {
            journal::Seal::Intact => Ok(()),
            journal::Seal::Broken { line, why } => Err(Error::Journal(journal::Error::Unsealed {
                path: self.journal.path().to_owned(),
                line,
                why,
            })),
        }
    }

    /// Records that a person takes over (`tsrotate abandon`): tsrotate acts on its devices no
    /// more, and a new containment of the key may begin. Changes no device. Refuses one that
    /// already ended, and, unless `force`, one whose journal's seal verifies (`resume` can
    /// still finish it, and `rollback` undo a reversible action); one whose seal does not
    /// verify is settled without `force`: nothing else can be done from it.
    pub fn abandon(&mut self, force: bool) -> Result<(), Error> {
        self.abandonable(force)?;
        self.record(Step::Abandoned {
            by: self.user.clone(),
        })
    }

    /// Whether [`Containment::abandon`] would record (its refusal if not), to refuse before
    /// asking anything.
    pub fn abandonable(&self, force: bool) -> Result<(), Error> {
        let containment_id = self.state.plan.containment_id.clone();
        if let Some(end) = self.state.end {
            return Err(Error::NothingToAbandon {
                containment_id,
                end,
            });
        }
        if self.sealed() && !force {
            return Err(Error::CanGoOn {
                containment_id,
                action: self.state.plan.action,
                undoing: self.state.undoing,
            });
        }
        Ok(())
    }

    /// The containment as journaled.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The journal first (recovery relies on it), then the audit log.
    fn record(&mut self, step: Step) -> Result<(), Error> {
        self.state.apply(&step);
        let audited = step.clone();
        self.journal.append(step)?;
        self.audit(&audited);
        Ok(())
    }

    /// Writes `step` to the audit log as [`Audited`] (IDs and hostnames only). A log that
    /// cannot be written is reported and the containment goes on: the journal is what counts.
    fn audit(&mut self, step: &Step) {
        let plan = &self.state.plan;
        let hostname = |node_id: &str| {
            plan.devices
                .iter()
                .find(|d| d.node_id == node_id)
                .map_or("", |d| d.hostname.as_str())
        };
        let device = |node_id: &'_ str, outcome, detail| Audited::ContainmentDevice {
            containment_id: &plan.containment_id,
            action: plan.action,
            node_id: node_id.to_owned(),
            hostname: hostname(node_id).to_owned(),
            outcome,
            detail,
        };
        let entry = match step {
            Step::Planned(plan) => Audited::ContainmentPlanned {
                containment_id: &plan.containment_id,
                key_id: &plan.key_id,
                tailnet: &plan.tailnet,
                action: plan.action,
                devices: plan
                    .devices
                    .iter()
                    .map(|d| Named {
                        node_id: &d.node_id,
                        hostname: &d.hostname,
                    })
                    .collect(),
            },
            Step::Intent { node_id } => device(node_id, "intent", None),
            Step::Done {
                node_id,
                by_others: true,
                ..
            } => device(node_id, "done_by_others", None),
            Step::Done {
                node_id,
                already: false,
                ..
            } => device(node_id, "done", None),
            Step::Done {
                node_id,
                already: true,
                ..
            } => device(node_id, "found_done", None),
            Step::Gone { node_id } => device(node_id, "gone", None),
            Step::Failed { node_id, error, .. } => device(node_id, "failed", Some(error.clone())),
            Step::UndoIntent { node_id } => device(node_id, "restore_intent", None),
            Step::Undone {
                node_id,
                not_restored,
            } => device(
                node_id,
                "restored",
                (!not_restored.is_empty()).then(|| {
                    format!(
                        "routes no longer advertised, not restored: {}",
                        not_restored.join(",")
                    )
                }),
            ),
            Step::UndoFailed { node_id, error } => {
                device(node_id, "restore_failed", Some(error.clone()))
            }
            Step::Kept {
                node_id, reason, ..
            } => device(node_id, "left_alone", Some(reason.clone())),
            Step::UndoStarted => Audited::ContainmentRollbackStarted {
                containment_id: &plan.containment_id,
            },
            Step::Finished => Audited::ContainmentFinished {
                containment_id: &plan.containment_id,
            },
            Step::RolledBack => Audited::ContainmentRolledBack {
                containment_id: &plan.containment_id,
            },
            Step::Abandoned { .. } => Audited::ContainmentAbandoned {
                containment_id: &plan.containment_id,
                key_id: &plan.key_id,
                action: plan.action,
                sealed: self.seal == journal::Seal::Intact,
                devices: plan
                    .devices
                    .iter()
                    .zip(&self.state.progress)
                    .map(|(d, p)| Left {
                        node_id: &d.node_id,
                        hostname: &d.hostname,
                        state: p.as_str(),
                    })
                    .collect(),
            },
        };
        if let Some(log) = &mut self.audit
            && let Err(e) = log.append(&self.user, None, &entry)
        {
            tracing::warn!("cannot write the audit log {}: {e}", log.path().display());
        }
    }

    /// Acts on every device not acted on yet. A device whose last call may have happened
    /// (intent without outcome) is looked at first and left alone if it shows the effect.
    /// Failures are journaled and the rest go on; a 403 stops (every other call would meet
    /// it too). Journals `finished` once every device is done or gone.
    pub async fn carry_out(&mut self, client: &Client) -> Result<(), Error> {
        self.require_sealed()?;
        if self.state.end == Some(End::Abandoned) {
            return Err(Error::Abandoned(self.state.plan.containment_id.clone()));
        }
        if self.state.end == Some(End::RolledBack) {
            return Ok(());
        }
        // Before `finished`: a finished containment whose rollback began is carried on by
        // `rollback`, not reported as finished.
        if self.state.restore_began {
            return Err(Error::Undoing(self.state.plan.containment_id.clone()));
        }
        if self.state.is_finished() {
            return Ok(());
        }
        let action = self.state.plan.action;
        for i in 0..self.state.plan.devices.len() {
            let snapshot = self.state.plan.devices[i].clone();
            let node_id = snapshot.node_id.clone();
            if snapshot.is_external {
                return Err(Error::External(node_id));
            }
            match &self.state.progress[i] {
                Progress::Done { .. } | Progress::Gone => continue,
                // The last call may have happened (a failure can be a lost answer too): look.
                Progress::Intended | Progress::Failed { .. } => {
                    // A call the API answered with a failure did not change the device: if it
                    // shows the effect now, someone else made the change, and it is not the
                    // containment's to undo (even if a later call got no answer: the safe
                    // side is to leave it quarantined). Without any answered failure, the
                    // call may have done it.
                    let by_others = self.state.refused[i];
                    match client.get_device(&node_id).await {
                        Ok(now) if !action.happened(&snapshot, &now) => {}
                        Ok(_) => {
                            self.record(Step::Done {
                                node_id,
                                already: true,
                                by_others,
                            })?;
                            continue;
                        }
                        Err(e) if e.is_not_found() => {
                            self.not_found(client, &snapshot, &e).await?;
                            continue;
                        }
                        // Acting again is harmless for the others; an expiry would move twice.
                        // Left as it is: the next `resume` looks again.
                        Err(_) if action == Action::Expire => continue,
                        Err(_) => {}
                    }
                }
                _ => {}
            }
            self.record(Step::Intent {
                node_id: node_id.clone(),
            })?;
            let result = match action {
                Action::Expire => client.expire_device(&node_id).await,
                Action::Deauthorize => client.set_device_authorized(&node_id, false).await,
                Action::DropRoutes => client.set_device_routes(&node_id, &[]).await.map(|_| ()),
                Action::Delete => client.delete_device(&node_id).await,
            };
            match result {
                Ok(()) => self.record(Step::Done {
                    node_id,
                    already: false,
                    by_others: false,
                })?,
                Err(e) if e.is_not_found() => self.not_found(client, &snapshot, &e).await?,
                Err(e) => {
                    let forbidden = e.status() == Some(403);
                    self.record(Step::Failed {
                        node_id: node_id.clone(),
                        error: e.to_string(),
                        status: e.status(),
                    })?;
                    if forbidden {
                        return Err(Error::Forbidden {
                            what: action.as_str(),
                            node_id,
                            scope: action.scope(),
                        });
                    }
                }
            }
        }
        if self
            .state
            .progress
            .iter()
            .all(|p| matches!(p, Progress::Done { .. } | Progress::Gone))
        {
            self.record(Step::Finished)?;
        }
        Ok(())
    }

    /// Journals a device the API says it does not know (`error`, a 404): gone (for a
    /// deletion: done), but only once the credential is seen to look at the tailnet the
    /// containment ran in ([`Containment::same_tailnet`]). A credential of another tailnet
    /// answers 404 for every device, and taking that as "gone" would end the containment
    /// with the devices untouched; then it is a failure, and `resume` tries again.
    async fn not_found(
        &mut self,
        client: &Client,
        snapshot: &Device,
        error: &crate::api::Error,
    ) -> Result<(), Error> {
        let node_id = snapshot.node_id.clone();
        if !self.same_tailnet(client, snapshot).await {
            return self.record(Step::Failed {
                node_id,
                error: format!(
                    "{error}, and this credential sees no device of the tailnet the containment ran in ({}): run it with a credential of that tailnet",
                    tailnet_domain(&snapshot.name).unwrap_or("unknown")
                ),
                // An answer all the same: the call changed nothing on this device.
                status: error.status(),
            });
        }
        self.record(if self.state.plan.action == Action::Delete {
            Step::Done {
                node_id,
                already: true,
                by_others: false,
            }
        } else {
            Step::Gone { node_id }
        })
    }

    /// Whether `client` looks at the tailnet `snapshot` was read from: the API describes
    /// the containment's key (key IDs are unique across tailnets, and a revoked key stays
    /// readable for a while), or some device of its own that it lists has a name in the same
    /// tailnet domain (`host.tailnet-name.ts.net`; a device's name never leaves its tailnet's
    /// domain). A device shared in from elsewhere keeps its home tailnet's name, so it says
    /// nothing about the tailnet listing it. A snapshot without a domain cannot be checked by
    /// name and is taken at its word, as before names were kept.
    async fn same_tailnet(&mut self, client: &Client, snapshot: &Device) -> bool {
        if client.get_key(&self.state.plan.key_id).await.is_ok() {
            return true;
        }
        let Some(domain) = tailnet_domain(&snapshot.name) else {
            return true;
        };
        match client.list_devices(&[]).await {
            Ok(devices) => devices
                .iter()
                .any(|d| !d.is_external && tailnet_domain(&d.name) == Some(domain)),
            Err(_) => false,
        }
    }

    /// The device as the API describes it now, or `None` once its absence or the failure to
    /// read it is journaled.
    async fn look_before_restoring(
        &mut self,
        client: &Client,
        snapshot: &Device,
    ) -> Result<Option<Device>, Error> {
        let node_id = snapshot.node_id.as_str();
        match client.get_device(node_id).await {
            Ok(now) => Ok(Some(now)),
            Err(e) if e.is_not_found() && !self.same_tailnet(client, snapshot).await => {
                self.record(Step::UndoFailed {
                    node_id: node_id.to_owned(),
                    error: format!(
                        "{e}, and this credential sees no device of the tailnet the containment ran in ({}): run it with a credential of that tailnet",
                        tailnet_domain(&snapshot.name).unwrap_or("unknown")
                    ),
                })?;
                Ok(None)
            }
            Err(e) if e.is_not_found() => {
                self.record(Step::Kept {
                    node_id: node_id.to_owned(),
                    reason: "no longer in the tailnet".to_owned(),
                    changed: true,
                })?;
                Ok(None)
            }
            Err(e) => {
                self.undo_failed(node_id, &e, "reading", "devices:core:read")?;
                Ok(None)
            }
        }
    }

    /// Puts one device back, announced and confirmed in the journal; a 403 stops the rollback.
    async fn restore(
        &mut self,
        client: &Client,
        node_id: String,
        restore: Restore,
    ) -> Result<(), Error> {
        self.record(Step::UndoIntent {
            node_id: node_id.clone(),
        })?;
        let (result, not_restored) = match restore {
            Restore::Authorize => (client.set_device_authorized(&node_id, true).await, vec![]),
            Restore::Routes {
                routes,
                not_restored,
            } => (
                client
                    .set_device_routes(&node_id, &routes)
                    .await
                    .map(|_| ()),
                not_restored,
            ),
        };
        match result {
            Ok(()) => self.record(Step::Undone {
                node_id,
                not_restored,
            }),
            Err(e) => {
                let scope = self.state.plan.action.scope();
                self.undo_failed(&node_id, &e, "restoring", scope)
            }
        }
    }

    /// Journals a failed call of `rollback`; a 403 stops it (every other call would meet it
    /// too) and names the scope.
    fn undo_failed(
        &mut self,
        node_id: &str,
        error: &crate::api::Error,
        what: &'static str,
        scope: &'static str,
    ) -> Result<(), Error> {
        self.record(Step::UndoFailed {
            node_id: node_id.to_owned(),
            error: error.to_string(),
        })?;
        if error.status() == Some(403) {
            return Err(Error::Forbidden {
                what,
                node_id: node_id.to_owned(),
                scope,
            });
        }
        Ok(())
    }

    /// Restores every device acted on (or perhaps acted on) as far as [`restoration`]
    /// allows: each is looked up first, and one that changed since is left alone (journaled
    /// as [`Step::Kept`]). Refuses the actions the API cannot undo. Journals `rolled_back`
    /// once every device is restored or left alone.
    pub async fn roll_back(&mut self, client: &Client) -> Result<(), Error> {
        self.require_sealed()?;
        let id = self.state.plan.containment_id.clone();
        let action = self.state.plan.action;
        if self.state.end == Some(End::Abandoned) {
            return Err(Error::Abandoned(id));
        }
        if !action.undoable() {
            return Err(Error::CannotUndo {
                containment_id: id,
                action,
            });
        }
        if self.state.end == Some(End::RolledBack) {
            return Err(Error::NothingToUndo(id));
        }
        if !self.state.undoing {
            self.record(Step::UndoStarted)?;
        }
        for i in 0..self.state.plan.devices.len() {
            let snapshot = self.state.plan.devices[i].clone();
            let node_id = snapshot.node_id.clone();
            if snapshot.is_external {
                return Err(Error::External(node_id));
            }
            let progress = self.state.progress[i].clone();
            if matches!(
                progress,
                Progress::Pending
                    | Progress::Gone
                    | Progress::Undone { .. }
                    | Progress::Kept { .. }
            ) {
                continue;
            }
            let Some(now) = self.look_before_restoring(client, &snapshot).await? else {
                continue;
            };
            let refused = self.state.refused[i];
            let restore = match decide(action, &snapshot, &now, &progress, refused) {
                Restoration::Keep { reason, changed } => {
                    self.record(Step::Kept {
                        node_id,
                        reason,
                        changed,
                    })?;
                    continue;
                }
                Restoration::AlreadyDone { not_restored } => {
                    self.record(Step::Undone {
                        node_id,
                        not_restored,
                    })?;
                    continue;
                }
                Restoration::Restore(restore) => restore,
            };
            self.restore(client, node_id, restore).await?;
        }
        if self.state.progress.iter().all(|p| {
            matches!(
                p,
                Progress::Pending
                    | Progress::Gone
                    | Progress::Undone { .. }
                    | Progress::Kept { .. }
            )
        }) {
            self.record(Step::RolledBack)?;
        }
        Ok(())
    }
}

/// Why a device is left as it is when the containment's own call never changed it.
const NOT_ACTED: &str =
    "nothing to restore: the containment's call failed or was interrupted before changing it";

/// [`restoration`] of a device whose containment call the API answered with a failure (so
/// the call changed nothing): what the device shows was done by someone else and is not the
/// containment's to undo, since turning it back on could free a device an administrator
/// quarantined by hand. `None` when the call was not answered so, or the snapshot had
/// nothing to restore.
fn changed_by_others(
    action: Action,
    snapshot: &Device,
    now: &Device,
    progress: &Progress,
    refused: bool,
) -> Option<Restoration> {
    let answered = refused
        || matches!(
            progress,
            Progress::Done {
                by_others: true,
                ..
            } | Progress::Failed {
                status: Some(_),
                ..
            }
        );
    let (had, shows, what) = match action {
        Action::Deauthorize => (snapshot.authorized, !now.authorized, "deauthorized"),
        Action::DropRoutes => (
            !snapshot.enabled_routes.is_empty(),
            now.enabled_routes.is_empty(),
            "its routes were disabled",
        ),
        Action::Expire | Action::Delete => return None,
    };
    (answered && had).then(|| Restoration::Keep {
        reason: if shows {
            format!(
                "{what} by someone else: the containment's own call failed, so it is not the containment's to undo (restore it by hand if it should be)"
            )
        } else {
            NOT_ACTED.to_owned()
        },
        changed: shows,
    })
}

/// The tailnet's domain in a device's name (`host.tailnet-name.ts.net` gives
/// `tailnet-name.ts.net`), when it has one.
fn tailnet_domain(name: &str) -> Option<&str> {
    let name = name.trim_end_matches('.');
    let (_, domain) = name.split_once('.')?;
    domain.contains('.').then_some(domain)
}

/// What `rollback` puts back on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Authorize it again.
    Authorize,
    /// Enable these routes again.
    Routes {
        /// The snapshot's enabled routes the device still advertises.
        routes: Vec<String>,
        /// The snapshot's enabled routes it no longer advertises: left off.
        not_restored: Vec<String>,
    },
}

/// What `rollback` does with one device, given its snapshot and the API's word now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restoration {
    /// Put it back.
    Restore(Restore),
    /// It is as the snapshot already (an interrupted rollback restored it).
    AlreadyDone {
        /// Routes that were left off then.
        not_restored: Vec<String>,
    },
    /// Leave it as it is.
    Keep {
        /// Why, in words (names what changed).
        reason: String,
        /// It changed since the action: someone else acted on it.
        changed: bool,
    },
}

/// Decides how to roll back one device. The snapshot (from the journal) is a claim, `now`
/// (from the API) is the fact: the device must be the one the snapshot names (node ID, legacy
/// ID, join time: what never changes) and still as the action left it (deauthorized, or with
/// no enabled routes); only what the snapshot had is turned back on (authorization only if it
/// was authorized, routes only from its enabled routes), and routes only while the device
/// still advertises them. `progress` tells an interrupted restore (already done) from a
/// device someone changed since.
#[must_use]
pub fn restoration(
    action: Action,
    snapshot: &Device,
    now: &Device,
    progress: &Progress,
) -> Restoration {
    decide(action, snapshot, now, progress, false)
}

/// [`restoration`], knowing whether a call of the containment on this device was answered
/// with a failure since its last success ([`State::refused`]): the device's last progress
/// alone may no longer show it (a later call without an answer, a failed look of an earlier
/// rollback), and what the device shows may then be someone else's doing (red team 5).
fn decide(
    action: Action,
    snapshot: &Device,
    now: &Device,
    progress: &Progress,
    refused: bool,
) -> Restoration {
    let keep = |reason: String, changed| Restoration::Keep { reason, changed };
    // What never changes for a device must agree: a snapshot that was not read from this
    // device (a forged or mixed-up journal) does not steer the restore.
    let differs = |a: &str, b: &str| !a.is_empty() && !b.is_empty() && a != b;
    if now.node_id != snapshot.node_id
        || now.is_external
        || differs(&now.id, &snapshot.id)
        || (now.created.is_some() && snapshot.created.is_some() && now.created != snapshot.created)
    {
        return keep(
            "the API describes another device under its ID".to_owned(),
            true,
        );
    }
    let restoring = matches!(
        progress,
        Progress::UndoIntended | Progress::UndoFailed { .. }
    );
    // An announced call that failed or was interrupted may not have happened at all.
    let acted = !matches!(progress, Progress::Intended | Progress::Failed { .. });
    let not_acted = NOT_ACTED;
    if let Some(kept) = changed_by_others(action, snapshot, now, progress, refused) {
        return kept;
    }
    match action {
        Action::Deauthorize => {
            if !snapshot.authorized {
                keep(
                    "nothing to restore: it was not authorized before the containment".to_owned(),
                    false,
                )
            } else if !now.authorized {
                Restoration::Restore(Restore::Authorize)
            } else if restoring {
                Restoration::AlreadyDone {
                    not_restored: Vec::new(),
                }
            } else if !acted {
                keep(not_acted.to_owned(), false)
            } else {
                keep("authorized again since the containment".to_owned(), true)
            }
        }
        Action::DropRoutes => {
            let (routes, not_restored): (Vec<String>, Vec<String>) = snapshot
                .enabled_routes
                .iter()
                .cloned()
                .partition(|r| now.advertised_routes.contains(r));
            if !now.enabled_routes.is_empty() {
                if restoring && now.enabled_routes == routes {
                    return Restoration::AlreadyDone { not_restored };
                }
                if !acted {
                    return keep(not_acted.to_owned(), false);
                }
                return keep(
                    format!(
                        "routes {} enabled since the containment",
                        now.enabled_routes.join(",")
                    ),
                    true,
                );
            }
            if snapshot.enabled_routes.is_empty() {
                keep(
                    "nothing to restore: it had no enabled routes before the containment"
                        .to_owned(),
                    false,
                )
            } else if routes.is_empty() {
                keep(
                    format!("it no longer advertises routes {}", not_restored.join(",")),
                    true,
                )
            } else {
                Restoration::Restore(Restore::Routes {
                    routes,
                    not_restored,
                })
            }
        }
        Action::Expire | Action::Delete => keep(
            format!("`{}` cannot be undone through the API", action.as_str()),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn device(node: &str, authorized: bool) -> Device {
        Device {
            node_id: node.to_owned(),
            authorized,
            ..Device::default()
        }
    }

    fn plan(devices: Vec<Device>) -> Plan {
        Plan {
            containment_id: "c20300101000000abcdef".into(),
            tailnet: "-".into(),
            user: "t".into(),
            key_id: "kLeak123CNTRL".parse().unwrap(),
            action: Action::Deauthorize,
            devices,
        }
    }

    #[test]
    fn replay_tracks_each_device_and_a_crash_leaves_an_intent() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir =
            StateDir::open(dir.path(), crate::journal::JournalKey::from_bytes([7; 32])).unwrap();
        let mut c = Containment::begin(
            &state_dir,
            plan(vec![device("nA", true), device("nB", true)]),
        )
        .unwrap();
        c.record(Step::Intent {
            node_id: "nA".into(),
        })
        .unwrap();
        c.record(Step::Done {
            node_id: "nA".into(),
            already: false,
            by_others: false,
        })
        .unwrap();
        c.record(Step::Intent {
            node_id: "nB".into(),
        })
        .unwrap();
        // A second containment of the key waits for this one (the lock, then the journal).
        assert!(matches!(
            Containment::begin(&state_dir, plan(vec![])),
            Err(Error::Busy(_))
        ));
        drop(c);
        assert!(matches!(
            Containment::begin(&state_dir, plan(vec![])),
            Err(Error::Unfinished { .. })
        ));
        let c = Containment::reopen(&state_dir, "c20300101000000abcdef", "t").unwrap();
        assert_eq!(
            c.state().progress,
            [
                Progress::Done {
                    already: false,
                    by_others: false,
                },
                Progress::Intended
            ]
        );
        assert!(!c.state().is_finished());
        assert_eq!(
            unfinished(&state_dir).unwrap()[0].plan.containment_id,
            "c20300101000000abcdef"
        );
    }

    #[test]
    fn a_plan_with_a_shared_in_device_is_refused_and_ids_never_walk_paths() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir =
            StateDir::open(dir.path(), crate::journal::JournalKey::from_bytes([7; 32])).unwrap();
        let mut shared = device("nShared", true);
        shared.is_external = true;
        assert!(matches!(
            Containment::begin(&state_dir, plan(vec![shared])),
            Err(Error::External(_))
        ));
        assert!(!exists(dir.path(), "c../../etc/passwd"));
        // The folder is under the state directory's trust rule, as rotations are.
        std::fs::create_dir_all(super::dir(dir.path())).unwrap();
        std::fs::set_permissions(
            super::dir(dir.path()),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        assert!(
            StateDir::open(dir.path(), crate::journal::JournalKey::from_bytes([7; 32])).is_err()
        );
        assert!(!exists(dir.path(), "r2030"));
        assert!(new_id(time::OffsetDateTime::now_utc()).starts_with('c'));
    }

    fn routed(node: &str, advertised: &[&str], enabled: &[&str]) -> Device {
        Device {
            node_id: node.to_owned(),
            authorized: true,
            advertised_routes: advertised.iter().map(|r| (*r).to_owned()).collect(),
            enabled_routes: enabled.iter().map(|r| (*r).to_owned()).collect(),
            ..Device::default()
        }
    }

    fn kept(r: &Restoration) -> Option<bool> {
        match r {
            Restoration::Keep { changed, .. } => Some(*changed),
            _ => None,
        }
    }

    #[test]
    fn rollback_restores_authorization_only_while_deauthorized_and_only_if_it_was_there() {
        let done = Progress::Done {
            already: false,
            by_others: false,
        };
        let before = device("nA", true);
        let deauthorized = device("nA", false);
        assert_eq!(
            restoration(Action::Deauthorize, &before, &deauthorized, &done),
            Restoration::Restore(Restore::Authorize)
        );
        // Someone authorized it again since: left alone, and flagged.
        let reauthorized = device("nA", true);
        assert_eq!(
            kept(&restoration(
                Action::Deauthorize,
                &before,
                &reauthorized,
                &done
            )),
            Some(true)
        );
        // A snapshot without authorization never authorizes (a journal is only a claim).
        assert_eq!(
            kept(&restoration(
                Action::Deauthorize,
                &device("nA", false),
                &deauthorized,
                &done
            )),
            Some(false)
        );
        // A call that failed never changed it; an interrupted restore did.
        let failed = Progress::Failed {
            error: "x".into(),
            status: None,
        };
        assert_eq!(
            kept(&restoration(
                Action::Deauthorize,
                &before,
                &reauthorized,
                &failed
            )),
            Some(false)
        );
        assert!(matches!(
            restoration(
                Action::Deauthorize,
                &before,
                &reauthorized,
                &Progress::UndoIntended
            ),
            Restoration::AlreadyDone { .. }
        ));
        // The API answering for another device under the ID is never acted on, and neither is
        // a snapshot whose legacy ID or join time is not the device's.
        assert_eq!(
            kept(&restoration(
                Action::Deauthorize,
                &before,
                &device("nB", false),
                &done
            )),
            Some(true)
        );
        let mut joined = deauthorized.clone();
        joined.id = "123".into();
        joined.created = Some(time::OffsetDateTime::UNIX_EPOCH);
        let mut forged = before.clone();
        forged.id = "456".into();
        assert_eq!(
            kept(&restoration(Action::Deauthorize, &forged, &joined, &done)),
            Some(true)
        );
        forged.id = "123".into();
        forged.created = Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1));
        assert_eq!(
            kept(&restoration(Action::Deauthorize, &forged, &joined, &done)),
            Some(true)
        );
        forged.created = joined.created;
        assert_eq!(
            restoration(Action::Deauthorize, &forged, &joined, &done),
            Restoration::Restore(Restore::Authorize)
        );
    }

    #[test]
    fn rollback_never_undoes_a_change_made_after_its_own_call_failed_with_an_answer() {
        // Red-team finding: the deauthorization failed (HTTP 500), an administrator then
        // deauthorized the device by hand, and rollback authorized it again.
        let before = device("nA", true);
        let deauthorized = device("nA", false);
        let answered = Progress::Failed {
            error: "the API answered 500".into(),
            status: Some(500),
        };
        let found_later = Progress::Done {
            already: true,
            by_others: true,
        };
        for progress in [&answered, &found_later] {
            let decided = restoration(Action::Deauthorize, &before, &deauthorized, progress);
            assert_eq!(kept(&decided), Some(true), "{decided:?}");
            assert!(
                matches!(&decided, Restoration::Keep { reason, .. } if reason.contains("by someone else")),
                "{decided:?}"
            );
        }
        // Still authorized: nothing happened to it at all.
        assert_eq!(
            kept(&restoration(
                Action::Deauthorize,
                &before,
                &before,
                &answered
            )),
            Some(false)
        );
        // No answer came (a lost connection, a kill): the call may have done it, so the
        // change is taken as the containment's and restored.
        let unanswered = Progress::Failed {
            error: "connection reset".into(),
            status: None,
        };
        for progress in [&unanswered, &Progress::Intended] {
            assert_eq!(
                restoration(Action::Deauthorize, &before, &deauthorized, progress),
                Restoration::Restore(Restore::Authorize)
            );
        }
        // The same for routes.
        let routed_before = routed("nA", &["10.0.0.0/8"], &["10.0.0.0/8"]);
        let dropped = routed("nA", &["10.0.0.0/8"], &[]);
        assert_eq!(
            kept(&restoration(
                Action::DropRoutes,
                &routed_before,
                &dropped,
                &answered
            )),
            Some(true)
        );
        assert!(matches!(
            restoration(Action::DropRoutes, &routed_before, &dropped, &unanswered),
            Restoration::Restore(Restore::Routes { .. })
        ));
    }

    #[test]
    fn the_tailnet_domain_is_read_from_a_device_name() {
        assert_eq!(
            tailnet_domain("web-1.tail1234.ts.net"),
            Some("tail1234.ts.net")
        );
        assert_eq!(
            tailnet_domain("web-1.tail1234.ts.net."),
            Some("tail1234.ts.net")
        );
        assert_eq!(tailnet_domain("web-1"), None);
        assert_eq!(tailnet_domain("web-1.local"), None);
        assert_eq!(tailnet_domain(""), None);
    }

    #[test]
    fn rollback_enables_only_snapshot_routes_the_device_still_advertises() {
        let done = Progress::Done {
            already: false,
            by_others: false,
        };
        let before = routed(
            "nA",
            &["10.1.0.0/16", "10.2.0.0/16"],
            &["10.1.0.0/16", "10.2.0.0/16"],
        );
        // The node stopped advertising one route: only the other comes back.
        let now = routed("nA", &["10.1.0.0/16", "10.3.0.0/16"], &[]);
        assert_eq!(
            restoration(Action::DropRoutes, &before, &now, &done),
            Restoration::Restore(Restore::Routes {
                routes: vec!["10.1.0.0/16".into()],
                not_restored: vec!["10.2.0.0/16".into()],
            })
        );
        // Routes enabled since: left alone.
        let changed = routed("nA", &["10.1.0.0/16"], &["10.1.0.0/16"]);
        assert_eq!(
            kept(&restoration(Action::DropRoutes, &before, &changed, &done)),
            Some(true)
        );
        // A journal claiming a route the device advertises but never had enabled, or one it
        // does not advertise: nothing the snapshot did not have, nothing not advertised.
        let forged = routed("nA", &[], &["0.0.0.0/0"]);
        let advertising = routed("nA", &["10.1.0.0/16"], &[]);
        assert!(
            kept(&restoration(
                Action::DropRoutes,
                &forged,
                &advertising,
                &done
            ))
            .is_some()
        );
        let nothing = routed("nA", &["10.1.0.0/16"], &[]);
        assert_eq!(
            kept(&restoration(
                Action::DropRoutes,
                &nothing,
                &advertising,
                &done
            )),
            Some(false)
        );
    }
}
