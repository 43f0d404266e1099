//! Admission: who may begin or continue a rotation, and where it is recorded.
//!
//! Every front end (the CLI's `rotate`, `rotate --due`, `resume`, `rollback`, `abandon`) goes
//! through here, so each rule lives once:
//!
//! 1. **The state directory is trusted only if no one else can change it** ([`StateDir`]):
//!    owned by the user running tsrotate and writable by no one else, and so are the
//!    folders and files in it. Journals say which places to write and which keys to revoke;
//!    one written by someone else would steer a rotation.
//! 2. **One rotation of a key at a time**: a per-key lock for as long as a [`Session`] (or an
//!    [`Admission`]) lives; and one scheduled run per managed credential
//!    ([`CredentialLock`]).
//! 3. **No second rotation beside an unfinished one** of the same key (replacing it, or
//!    having minted it), and **none beside a damaged journal** that may record one.
//! 4. **A journal never chooses a command** ([`Authority`]): continuing a rotation runs only
//!    what the current configuration says (each configured place with its `after` and
//!    `verify`, each credential's `verify`) and the `--verify-cmd` given again on the command
//!    line (matched by digest, since the journal keeps no command).
//! 5. **Every record goes to the journal** (durable, authoritative) **and then to the audit
//!    log** ([`Session`] is the engine's [`Recorder`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::fs::{Fail, FileLock};
use crate::journal::{self, Event, Journal, SinkPlan, Started};
use crate::key::KeyId;

use super::engine::Recorder;
use super::state::State;

/// Why a rotation may not begin or continue. Each says what to do in [`Error::hint`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory, or something in it, could be changed by someone else.
    #[error("`{}` {problem}; tsrotate trusts what it finds there, so it stops", path.display())]
    Untrusted {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        problem: Untrusted,
    },
    /// The system refused to let this user read or write the state directory (a folder
    /// without write permission, a read-only file system, a parent folder that refuses a new
    /// folder): the person can fix that or choose another, so it is not a failure of tsrotate.
    #[error("cannot use the state directory `{}`: {source}", dir.display())]
    Unusable {
        /// The state directory.
        dir: PathBuf,
        /// What was refused, naming the file or folder and with the system's reason (a
        /// [`crate::fs::Error`] or a [`journal::Error`]).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another run holds the key's lock.
    #[error("another tsrotate run is working on key {key_id}")]
    Busy {
        /// The key.
        key_id: KeyId,
        /// What the lock said.
        #[source]
        source: crate::fs::Error,
    },
    /// A rotation of the key is not finished.
    #[error("{}", unfinished_message(key_id, rotation_id, old))]
    Unfinished {
        /// The key asked for.
        key_id: KeyId,
        /// The unfinished rotation.
        rotation_id: String,
        /// The key it replaces (the key asked for, or the one whose rotation minted it).
        old: KeyId,
    },
    /// A journal that may record an unfinished rotation of the key cannot be read.
    #[error("the journal of rotation {rotation_id}{} cannot be read ({error})", about.as_ref().map(|a| format!(" of {a}")).unwrap_or_default())]
    Damaged {
        /// The rotation.
        rotation_id: String,
        /// What it concerns (`key k…`, `credential web`), when known.
        about: Option<String>,
        /// What is wrong with it.
        error: String,
    },
    /// Continuing would run something the journal names and this run does not vouch for.
    #[error("rotation {rotation_id} {what}")]
    NotAuthorized {
        /// The rotation.
        rotation_id: String,
        /// What, in words.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A journal holds no records.
    #[error("the journal of rotation {0} is empty")]
    Empty(String),
    /// The state directory could not be prepared.
    #[error(transparent)]
    Fs(#[from] crate::fs::Error),
    /// A journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] journal::Error),
}

fn unfinished_message(key_id: &KeyId, rotation_id: &str, old: &KeyId) -> String {
    if old == key_id {
        format!("rotation {rotation_id} of key {key_id} is not finished")
    } else {
        format!("rotation {rotation_id} of key {old}, which minted {key_id}, is not finished")
    }
}

impl Error {
    /// What the person can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Untrusted { path, problem } => Some(problem.hint(path)),
            Self::Unusable { dir, .. } => Some(format!(
                "make `{}` (or the folder it is to be made in) readable and writable by you, or use another with --state-dir or TSROTATE_STATE_DIR",
                dir.display()
            )),
            Self::Busy { .. } => Some(
                "wait for it to finish; if none is running, the lock is released automatically"
                    .to_owned(),
            ),
            Self::Unfinished { rotation_id: id, .. } => Some(format!(
                "finish it with `tsrotate resume {id}` or undo it with `tsrotate rollback {id}`; if it can be neither, `tsrotate abandon {id}`"
            )),
            Self::Damaged { .. } => Some(
                "the rotation may be unfinished: repair the journal, or move it out of the state directory once you know its keys are in order".to_owned(),
            ),
            Self::NotAuthorized { hint, .. } => Some(hint.clone()),
            Self::Empty(_) | Self::Fs(_) | Self::Journal(_) => None,
        }
    }

    /// Whether the person must fix something before trying again (as opposed to the system
    /// failing): the CLI exits 2 for these.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Untrusted { .. }
            | Self::Unusable { .. }
            | Self::Busy { .. }
            | Self::Unfinished { .. }
            | Self::Damaged { .. }
            | Self::NotAuthorized { .. }
            | Self::Journal(journal::Error::UnknownRotation(_)) => true,
            Self::Empty(_) | Self::Fs(_) | Self::Journal(_) => false,
        }
    }
}

/// What makes a state directory, or an entry in it, untrustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// Owned by another user.
    Owner {
        /// Its owner.
        uid: u32,
        /// The user running tsrotate.
        me: u32,
    },
    /// Writable by its group or by everyone.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// Not a folder (or not a regular file) where one belongs.
    Kind {
        /// What it is instead.
        found: &'static str,
    },
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Owner { uid, me } => {
                write!(
                    f,
                    "is owned by uid {uid}, not by the user running tsrotate (uid {me})"
                )
            }
            Self::Writable { mode } => write!(
                f,
                "is writable by {} (mode {:o})",
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o7777
            ),
            Self::Kind { found } => write!(f, "is {found}"),
        }
    }
}

impl Untrusted {
    fn hint(&self, path: &Path) -> String {
        let shown = path.display();
        match self {
            Self::Owner { me, .. } => format!(
                "use one of your own (for the state directory: --state-dir or TSROTATE_STATE_DIR), or, once you have checked what is in it, `chown -R {me} {shown}`"
            ),
            Self::Writable { .. } => format!(
                "check what is in it, then `chmod go-w {shown}` (tsrotate creates its folders 0700 and its files 0600); keep state out of shared caches"
            ),
            Self::Kind { .. } => {
                "give a folder with --state-dir or TSROTATE_STATE_DIR, or move this away".to_owned()
            }
        }
    }
}

/// Whether the system refused an operation for a reason the person can fix (permissions, a
/// read-only file system, a path that is not a folder or leads nowhere), as opposed to the
/// system failing.
fn refused(error: &crate::fs::Error) -> bool {
    match error {
        crate::fs::Error::Io { source, .. }
        | crate::fs::Error::FolderNotWritable { source, .. } => refused_io(source),
        _ => false,
    }
}

/// [`refused`], for a system error.
fn refused_io(source: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        source.kind(),
        K::PermissionDenied
            | K::ReadOnlyFilesystem
            | K::NotADirectory
            | K::NotFound
            | K::StorageFull
            | K::QuotaExceeded
    )
}

/// An error of a file operation in state directory `dir`: [`Error::Unusable`] when the
/// system [`refused`] it.
fn in_state_dir(dir: &Path) -> impl FnOnce(crate::fs::Error) -> Error + '_ {
    move |source| {
        if refused(&source) {
            Error::Unusable {
                dir: dir.to_owned(),
                source: Box::new(source),
            }
        } else {
            Error::Fs(source)
        }
    }
}

/// A journal error in state directory `dir`: [`Error::Unusable`] when the system refused
/// to create or open it.
fn journal_in_state_dir(dir: &Path) -> impl FnOnce(journal::Error) -> Error + '_ {
    move |error| match error {
        journal::Error::File(source) => in_state_dir(dir)(source),
        journal::Error::Io { ref source, .. } if refused_io(source) => Error::Unusable {
            dir: dir.to_owned(),
            source: Box::new(error),
        },
        other => Error::Journal(other),
    }
}

/// The effective user ID of this process.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A state directory that only the user running tsrotate can change.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Check a state directory: it, its `rotations`, `containments` and `locks` folders and
    /// every file in them, and the audit log, must be owned by this user and writable by no one else. A
    /// directory that does not exist yet is fine: tsrotate creates it private.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let me = me();
        check(path, path, Entry::Folder, me)?;
        for folder in [
            Journal::dir(path),
            crate::contain::act::dir(path),
            path.join("locks"),
        ] {
            check(path, &folder, Entry::Folder, me)?;
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // A folder of ours that cannot be listed hides what is in it from the check.
                Err(source) => {
                    return Err(in_state_dir(path)(crate::fs::Error::Io {
                        action: crate::fs::Action::Read,
                        path: folder,
                        source,
                    }));
                }
            };
            for entry in entries.flatten() {
                check(path, &entry.path(), Entry::File, me)?;
            }
        }
        check(path, &AuditLog::path_in(path), Entry::File, me)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its journals.
    #[must_use]
    pub fn journals(&self) -> journal::Index {
        journal::Index::new(&self.path)
    }
}

#[derive(Clone, Copy)]
enum Entry {
    Folder,
    File,
}

/// One entry: absent, or of the right kind, owned by `me`, writable by no one else.
fn check(state: &Path, path: &Path, kind: Entry, me: u32) -> Result<(), Error> {
    let untrusted = |problem| Error::Untrusted {
        path: path.to_owned(),
        problem,
    };
    // The entry itself, not what a symlink points to: a link is someone's way in.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(in_state_dir(state)(crate::fs::Error::Io {
                action: crate::fs::Action::Read,
                path: path.to_owned(),
                source,
            }));
        }
    };
    let file_type = meta.file_type();
    let found = if file_type.is_symlink() {
        Some("a symbolic link")
    } else {
        match kind {
            Entry::Folder => (!file_type.is_dir()).then_some("not a folder"),
            Entry::File => (!file_type.is_file()).then_some("not a regular file"),
        }
    };
    // The state directory itself may be a link the person made on purpose (a link owned by
    // them to a private folder): judge it by its target, which is checked next.
    let top_link = file_type.is_symlink() && matches!(kind, Entry::Folder);
    if let Some(found) = found.filter(|_| !top_link) {
        return Err(untrusted(Untrusted::Kind { found }));
    }
    let meta = if top_link {
        std::fs::metadata(path).map_err(|source| {
            in_state_dir(state)(crate::fs::Error::Io {
                action: crate::fs::Action::Read,
                path: path.to_owned(),
                source,
            })
        })?
    } else {
        meta
    };
    if top_link && !meta.is_dir() {
        return Err(untrusted(Untrusted::Kind {
            found: "not a folder",
        }));
    }
    if meta.uid() != me {
        return Err(untrusted(Untrusted::Owner {
            uid: meta.uid(),
            me,
        }));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(untrusted(Untrusted::Writable { mode }));
    }
    Ok(())
}

/// Check a configuration file before it is read: it names programs that run and servers
/// that receive tokens, so it must be owned by the user running tsrotate (or by root) and
/// writable by no one else. Symbolic links are followed (a Kubernetes `ConfigMap` mount is
/// one) and the file they lead to is judged.
pub fn check_configuration(path: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|source| crate::fs::Error::Io {
        action: crate::fs::Action::Read,
        path: path.to_owned(),
        source,
    })?;
    let untrusted = |problem| Error::Untrusted {
        path: path.to_owned(),
        problem,
    };
    let me = me();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(untrusted(Untrusted::Owner {
            uid: meta.uid(),
            me,
        }));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(untrusted(Untrusted::Writable { mode }));
    }
    Ok(())
}

/// What this run vouches for when it continues a rotation from its journal.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    /// The configuration as it is now (`None` when there is none).
    pub config: Option<&'a Config>,
    /// `--verify-cmd` as given on this run's command line.
    pub verify_cmd: Option<&'a str>,
    /// What the run will do.
    pub purpose: Purpose,
}

/// Why a journal is reopened, which decides what it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `resume`: writes places (their `after` too) and runs every verification.
    Finish,
    /// `rotate --due`: as [`Purpose::Finish`], but unattended, so only with configured
    /// places: files that a journal names (from a `--in` search) are not written. Nobody is
    /// there to see where the key goes, and the state directory may be restored from
    /// somewhere else (a red-team finding).
    FinishScheduled,
    /// `rollback`: writes places (their `after` too), verifies nothing.
    Undo,
    /// `abandon`: runs nothing.
    Settle,
}

impl Authority<'_> {
    /// `abandon`: runs nothing, so vouches for nothing.
    pub const SETTLE: Authority<'static> = Authority {
        config: None,
        verify_cmd: None,
        purpose: Purpose::Settle,
    };

    /// Whether this run may carry out `started` (with `sinks`, the places known now).
    fn allows(&self, started: &Started, sinks: &[SinkPlan]) -> Result<(), Error> {
        if self.purpose == Purpose::Settle {
            return Ok(());
        }
        let refuse = |what: String, hint: String| Error::NotAuthorized {
            rotation_id: started.rotation_id.clone(),
            what,
            hint,
        };
        for sink in sinks {
            let SinkPlan::Configured {
                spec,
                credential,
                after,
                verify,
                ..
            } = sink
            else {
                if self.purpose == Purpose::FinishScheduled {
                    return Err(refuse(
                        format!(
                            "writes {}, which the configuration does not name; an unattended run writes only configured places",
                            sink.describe()
                        ),
                        format!(
                            "look at the journal, then finish it yourself with `tsrotate resume {}`, or settle it with `tsrotate abandon`",
                            started.rotation_id
                        ),
                    ));
                }
                continue;
            };
            let configured = self.config.is_some_and(|config| {
                config
                    .credentials
                    .iter()
                    .filter(|c| credential.as_ref().is_none_or(|name| *name == c.name))
                    .flat_map(|c| &c.sinks)
                    .any(|s| s.spec == *spec && s.after == *after && s.verify == *verify)
            });
            if !configured {
                return Err(refuse(
                    format!(
                        "writes {}{}, which the configuration does not name (so configured)",
                        crate::sink::describe(spec),
                        credential
                            .as_ref()
                            .map(|c| format!(" of credential `{c}`"))
                            .unwrap_or_default()
                    ),
                    "a journal never decides where a key goes or what runs: give the configuration the rotation started with (--config), or settle it with `tsrotate abandon`".to_owned(),
                ));
            }
        }
        if self.purpose == Purpose::Undo {
            return Ok(());
        }
        for check in &started.credential_verify {
            let same = self
                .config
                .and_then(|c| c.credential(&check.credential))
                .is_some_and(|c| c.verify == check.run);
            if !same {
                return Err(refuse(
                    format!(
                        "verifies with the `verify` of credential `{}` as it was configured, and the configuration no longer says the same",
                        check.credential
                    ),
                    "give the configuration the rotation started with (--config), or undo it with `tsrotate rollback`".to_owned(),
                ));
            }
        }
        if let Some(digest) = &started.verify_cmd {
            match self.verify_cmd {
                Some(line) if digest.matches(line) => {}
                Some(_) => {
                    return Err(refuse(
                        format!("was started with another --verify-cmd ({digest})"),
                        "give exactly the --verify-cmd it was started with; a journal keeps only its digest".to_owned(),
                    ));
                }
                None => {
                    return Err(refuse(
                        "was started with --verify-cmd, which a journal does not keep".to_owned(),
                        format!(
                            "give the same command again: `tsrotate resume {} --verify-cmd '…'`",
                            started.rotation_id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A key locked and cleared for a new rotation; [`Admission::begin`] journals its plan.
#[derive(Debug)]
pub struct Admission {
    dir: StateDir,
    lock: Option<FileLock>,
}

/// Whether an [`Admission`] takes the key's lock (a dry run only checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Hold the key's lock until the session ends.
    Take,
    /// Check only; nothing will be changed.
    CheckOnly,
}

/// The lock on a managed credential's name, held while a scheduled run (`rotate --due`)
/// decides again whether it is due and rotates it: a second runner finds it taken and
/// skips the credential.
#[derive(Debug)]
pub struct CredentialLock {
    _lock: FileLock,
}

impl CredentialLock {
    /// Take the lock of credential `name`, or `Ok(None)` when another run holds it.
    pub fn try_take(dir: &StateDir, name: &str) -> Result<Option<Self>, Error> {
        let locks = dir.path.join("locks");
        crate::fs::create_private_dir_all(&locks).map_err(in_state_dir(&dir.path))?;
        match FileLock::acquire(
            &locks.join(format!("credential-{name}.lock")),
            Fail::Immediately,
        ) {
            Ok(lock) => Ok(Some(Self { _lock: lock })),
            Err(crate::fs::Error::Busy { .. }) => Ok(None),
            Err(e) => Err(in_state_dir(&dir.path)(e)),
        }
    }
}

/// Take the per-key lock of `key_id`.
fn lock_key(dir: &StateDir, key_id: &KeyId) -> Result<FileLock, Error> {
    let locks = dir.path.join("locks");
    crate::fs::create_private_dir_all(&locks).map_err(in_state_dir(&dir.path))?;
    FileLock::acquire(&locks.join(format!("{key_id}.lock")), Fail::Immediately).map_err(|source| {
        match source {
            crate::fs::Error::Busy { .. } => Error::Busy {
                key_id: key_id.clone(),
                source,
            },
            other => in_state_dir(&dir.path)(other),
        }
    })
}

impl Admission {
    /// Lock `key_id` (unless `lock` says not to), then check that no unfinished rotation
    /// concerns it and that no damaged journal may; `credential`, when the rotation is of a
    /// managed credential, must have no damaged journal either.
    pub fn check(
        dir: &StateDir,
        key_id: &KeyId,
        credential: Option<&str>,
        lock: Lock,
    ) -> Result<Self, Error> {
        let held = match lock {
            Lock::Take => Some(lock_key(dir, key_id)?),
            Lock::CheckOnly => None,
        };
        let journals = dir.journals();
        if let Some((rotation_id, old)) = unfinished_for(&journals, key_id)?.into_iter().next() {
            return Err(Error::Unfinished {
                key_id: key_id.clone(),
                rotation_id,
                old,
            });
        }
        if let Some(damaged) = journals.damaged_for(credential, Some(key_id)).first() {
            let about = match (&damaged.credential, &damaged.old_key) {
                (Some(c), _) if Some(c.as_str()) == credential => Some(format!("credential `{c}`")),
                (_, Some(k)) => Some(format!("key {k}")),
                (Some(c), None) => Some(format!("credential `{c}`")),
                (None, None) => None,
            };
            return Err(Error::Damaged {
                rotation_id: damaged.rotation_id.clone(),
                about,
                error: damaged.error.clone(),
            });
        }
        Ok(Self {
            dir: dir.clone(),
            lock: held,
        })
    }

    /// Journal the plan and start recording. `user` is who runs it (for the audit log).
    pub fn begin(self, started: Started) -> Result<Session, Error> {
        let Some(lock) = self.lock else {
            unreachable!("a check-only admission never begins a rotation");
        };
        let rotation_id = started.rotation_id.clone();
        let user = started.user.clone();
        let journal = Journal::create(&self.dir.path, started.clone())
            .map_err(journal_in_state_dir(&self.dir.path))?;
        let records = journal::read(journal.path())?;
        let state = State::replay(&records).ok_or_else(|| Error::Empty(rotation_id.clone()))?;
        let mut session = Session::recording(&self.dir, lock, journal, &user, state);
        session.audit_only(&Event::Started(Box::new(started)));
        Ok(session)
    }
}

/// The unfinished rotations that replace `key_id` or minted it, each with the key it
/// replaces. Either way, another rotation of `key_id` would race it.
pub fn unfinished_for(
    journals: &journal::Index,
    key_id: &KeyId,
) -> Result<Vec<(String, KeyId)>, journal::Error> {
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

/// A rotation in progress under its key's lock: its state as journaled, and the recorder
/// the engine writes through (the journal first, then the audit log).
pub struct Session {
    _lock: FileLock,
    dir: PathBuf,
    journal: Journal,
    audit: Option<AuditLog>,
    user: String,
    rotation_id: String,
    state: State,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("rotation_id", &self.rotation_id)
            .field("journal", &self.journal.path())
            .finish_non_exhaustive()
    }
}

impl Session {
    fn recording(
        dir: &StateDir,
        lock: FileLock,
        journal: Journal,
        user: &str,
        state: State,
    ) -> Self {
        // The journal is what recovery relies on; an audit log that cannot be opened is
        // reported and the rotation goes on.
        let audit = match AuditLog::open(&dir.path) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::warn!("cannot open the audit log in {}: {e}", dir.path.display());
                None
            }
        };
        Self {
            _lock: lock,
            dir: dir.path.clone(),
            journal,
            audit,
            user: user.to_owned(),
            rotation_id: state.rotation_id().to_owned(),
            state,
        }
    }

    /// Reopen rotation `rotation_id` under its key's lock, if `authority` vouches for what it
    /// would run. The journal is read once to learn the key, then again once the lock is
    /// held: a run that held the lock may have just finished the rotation.
    pub fn reopen(
        dir: &StateDir,
        rotation_id: &str,
        user: &str,
        authority: &Authority<'_>,
    ) -> Result<Self, Error> {
        let path = Journal::path_of(&dir.path, rotation_id);
        if !path.exists() {
            return Err(journal::Error::UnknownRotation(rotation_id.to_owned()).into());
        }
        let empty = || Error::Empty(rotation_id.to_owned());
        let before = State::replay(&journal::read(&path)?).ok_or_else(empty)?;
        let lock = lock_key(dir, before.old_key_id())?;
        let (journal, records) =
            Journal::open(&dir.path, rotation_id).map_err(journal_in_state_dir(&dir.path))?;
        let state = State::replay(&records).ok_or_else(empty)?;
        if !state.is_finished() {
            authority.allows(&state.started, &state.sinks)?;
        }
        Ok(Self::recording(dir, lock, journal, user, state))
    }

    /// The rotation as journaled.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Record `event` and apply it to [`Self::state`] (for events the front end adds, such
    /// as places `resume` found).
    pub fn add(&mut self, event: &Event) -> Result<(), journal::Error> {
        self.record(event.clone())?;
        self.state.apply(event);
        Ok(())
    }

    /// The state directory it is recorded in.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's path.
    #[must_use]
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Log an event that is already in the journal (the plan, written at creation).
    fn audit_only(&mut self, event: &Event) {
        if let Some(audit) = &mut self.audit
            && let Err(e) = audit.append(&self.user, Some(&self.rotation_id), event)
        {
            tracing::warn!("cannot write the audit log {}: {e}", audit.path().display());
        }
    }
}

impl Recorder for Session {
    fn record(&mut self, event: Event) -> Result<(), journal::Error> {
        self.journal.append(event.clone())?;
        self.audit_only(&event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::journal::{AuthKeyTemplate, CommandDigest, CredentialVerify, OldKey, Template};
    use crate::sink::SinkSpec;

    const CONFIG: &str = "[[credential]]\nname = \"web\"\nkind = \"auth-key\"\nverify = [\"check\"]\n[[credential.sink]]\ntype = \"command\"\nrun = [\"push\"]\nafter = [\"reload\"]\n";

    fn started(
        sinks: Vec<SinkPlan>,
        verify_cmd: Option<&str>,
        checks: Vec<CredentialVerify>,
    ) -> Started {
        Started {
            rotation_id: "r1".into(),
            tailnet: "-".into(),
            user: "t".into(),
            credential: Some("web".into()),
            old: OldKey {
                key_id: "kOLD1CNTRL".parse().unwrap(),
                kind: "auth-key".into(),
                fingerprint: None,
                metadata: None,
            },
            template: Template::AuthKey(AuthKeyTemplate {
                reusable: false,
                ephemeral: false,
                preauthorized: false,
                tags: Vec::new(),
                expiry_seconds: None,
                description: None,
            }),
            roots: Vec::new(),
            resolved_roots: Vec::new(),
            sinks,
            revoke_first: false,
            verify_cmd: verify_cmd.map(CommandDigest::of),
            credential_verify: checks,
            not_updated: Vec::new(),
        }
    }

    fn place(run: &str, after: &str) -> SinkPlan {
        SinkPlan::Configured {
            spec: SinkSpec::Command {
                run: vec![run.into()],
            },
            credential: Some("web".into()),
            after: vec![after.into()],
            verify: Vec::new(),
            held_at_plan: None,
            resolved: None,
        }
    }

    /// The library's rule, for any front end: a journal runs only what the configuration
    /// and the command line say now.
    #[test]
    fn a_journal_runs_only_what_the_configuration_and_command_line_vouch_for() {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let check = |run: &str| CredentialVerify {
            credential: "web".into(),
            run: vec![run.into()],
        };
        let finish = |verify_cmd| Authority {
            config: Some(&config),
            verify_cmd,
            purpose: Purpose::Finish,
        };
        let ok = started(
            vec![place("push", "reload")],
            Some("true"),
            vec![check("check")],
        );
        assert!(finish(Some("true")).allows(&ok, &ok.sinks).is_ok());
        // Each way a journal could choose a command is refused.
        let cases = [
            (started(vec![place("evil", "reload")], None, vec![]), None),
            (started(vec![place("push", "evil")], None, vec![]), None),
            (started(vec![], None, vec![check("evil")]), None),
            (started(vec![], Some("true"), vec![]), None),
            (started(vec![], Some("true"), vec![]), Some("evil")),
        ];
        for (journal, given) in &cases {
            let refused = finish(*given).allows(journal, &journal.sinks);
            assert!(
                matches!(refused, Err(Error::NotAuthorized { .. })),
                "{journal:?}"
            );
        }
        // Without a configuration, no configured place is vouched for.
        let none = Authority {
            config: None,
            verify_cmd: None,
            purpose: Purpose::Undo,
        };
        assert!(none.allows(&ok, &ok.sinks).is_err());
        // Undoing runs no verification; settling runs nothing.
        let undo = Authority {
            purpose: Purpose::Undo,
            ..finish(None)
        };
        assert!(undo.allows(&ok, &ok.sinks).is_ok());
        assert!(
            Authority::SETTLE
                .allows(&cases[0].0, &cases[0].0.sinks)
                .is_ok()
        );
    }

    #[test]
    fn a_state_directory_is_trusted_only_if_no_one_else_can_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(
            StateDir::open(&state).is_ok(),
            "absent: created private later"
        );
        std::fs::create_dir_all(state.join("rotations")).unwrap();
        assert!(StateDir::open(&state).is_ok());
        for (path, mode) in [(state.clone(), 0o770), (state.join("rotations"), 0o757)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = StateDir::open(&state).unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::Untrusted {
                        problem: Untrusted::Writable { .. },
                        ..
                    }
                ),
                "{error}"
            );
            assert!(error.is_user_error() && error.hint().unwrap().contains("chmod"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let journal = state.join("rotations/r1.jsonl");
        std::os::unix::fs::symlink("/etc/passwd", &journal).unwrap();
        assert!(matches!(
            StateDir::open(&state),
            Err(Error::Untrusted {
                problem: Untrusted::Kind { .. },
                ..
            })
        ));
    }
}
